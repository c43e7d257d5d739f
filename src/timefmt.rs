//! UTC calendar arithmetic and the timestamp texts c2watch reads and writes.
//!
//! Feeds state times as `YYYY-MM-DD HH:MM:SS` in UTC, the rest of the sensor counts
//! milliseconds since the Unix epoch, and the syslog sinks need those milliseconds back as
//! text: RFC 3164 section 4.1.2 (`Dec  3 16:15:00`) or the RFC 5424 TIMESTAMP, a profile of
//! RFC 3339 (`2026-12-03T16:15:00.123Z`). This module owns every one of those conversions
//! so that no other module does date arithmetic, and it is the one place that reads the
//! wall clock ([`now_ns`]).
//!
//! Everything is UTC in the proleptic Gregorian calendar, so no time-zone database is
//! needed. Dates are converted by counting days in 400-year eras (146 097 days each) from a
//! year that starts on 1 March, which puts the leap day at the end of the year and makes
//! the month lengths a linear formula. The writers take any [`fmt::Write`] and never
//! allocate, so a sink can format into one reused buffer per alert.

use std::fmt;

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Days in one 400-year cycle of the Gregorian calendar.
const DAYS_PER_ERA: i64 = 146_097;

/// Days from 0000-03-01 (day 0 of the March-based count) to 1970-01-01.
const EPOCH_DAY_OFFSET: i64 = 719_468;

/// Month abbreviations of RFC 3164 section 4.1.2, January first.
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Wall-clock time in nanoseconds since the Unix epoch: the clock the kernel stamps
/// captured frames with, so live packet times and this compare directly.
pub fn now_ns() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A UTC date and time of day in the proleptic Gregorian calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Astronomical year: 0 is 1 BC, -1 is 2 BC.
    pub year: i32,
    /// Month of the year, 1-12.
    pub month: u8,
    /// Day of the month, 1-31.
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-59 (leap seconds are not represented).
    pub second: u8,
    /// Millisecond within the second, 0-999.
    pub millis: u16,
}

/// Parses `YYYY-MM-DD HH:MM:SS` as UTC and returns milliseconds since the Unix epoch.
///
/// `T` may stand for the space, a fraction of a second (`.1` to `.123456789`, truncated to
/// milliseconds) may follow the seconds, and `Z` or ` UTC` may end the text. Surrounding
/// whitespace is not accepted. A leap second (`:60`) is read as `:59` of the same minute,
/// so that a time the feed's clock really printed is kept rather than refused. Returns
/// `None` for anything else, including days that do not exist (`2026-02-29`).
pub fn parse_utc(text: &str) -> Option<i64> {
    let body = text
        .strip_suffix(" UTC")
        .or_else(|| text.strip_suffix('Z'))
        .unwrap_or(text);
    let civil = parse_civil(body.as_bytes())?;

    unix_ms_from_civil(&civil)
}

/// Splits milliseconds since the Unix epoch into a UTC date and time of day.
///
/// Correct for the whole `i64` range, before 1970 included; the years then stay within
/// about ±292 million, far inside `i32`.
pub fn civil_from_unix_ms(ms: i64) -> Civil {
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);

    // Each quotient below is bounded by the divisor above it (e.g. hours < 24), so the
    // narrowing casts cannot truncate; the year bound is stated in the doc comment.
    Civil {
        year: year as i32,
        month,
        day,
        hour: (ms_of_day / MS_PER_HOUR) as u8,
        minute: (ms_of_day % MS_PER_HOUR / MS_PER_MINUTE) as u8,
        second: (ms_of_day % MS_PER_MINUTE / MS_PER_SECOND) as u8,
        millis: (ms_of_day % MS_PER_SECOND) as u16,
    }
}

/// Writes `ms` as an RFC 3164 TIMESTAMP: `Mmm dd hh:mm:ss`, the day padded with a space
/// (`Dec  3 16:15:00`, RFC 3164 section 4.1.2). The format has no year and no fraction.
pub fn write_rfc3164(out: &mut impl fmt::Write, ms: i64) -> fmt::Result {
    let c = civil_from_unix_ms(ms);
    let month = month_name(c.month);

    write!(
        out,
        "{month} {:>2} {:02}:{:02}:{:02}",
        c.day, c.hour, c.minute, c.second
    )
}

/// Writes `ms` as an RFC 5424 TIMESTAMP in UTC with milliseconds:
/// `2026-12-03T16:15:00.123Z`.
///
/// RFC 3339 only knows years 0000-9999; a year outside that range is written with as many
/// digits as it needs (and a `-` sign), which no RFC 5424 receiver will accept.
pub fn write_rfc3339(out: &mut impl fmt::Write, ms: i64) -> fmt::Result {
    let c = civil_from_unix_ms(ms);

    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// The RFC 3164 abbreviation of `month` (1-12).
fn month_name(month: u8) -> &'static str {
    let index = usize::from(month.saturating_sub(1));

    MONTH_NAMES.get(index).copied().unwrap_or("???")
}

/// Where each part of `YYYY-MM-DD HH:MM:SS` sits: `0` marks a digit, the space may also
/// be `T`, anything else must match exactly.
const LAYOUT: &[u8; 19] = b"0000-00-00 00:00:00";

/// Reads `YYYY-MM-DD HH:MM:SS[.f]` (zone suffix already removed) and checks every field.
fn parse_civil(bytes: &[u8]) -> Option<Civil> {
    let (head, fraction) = bytes.split_at_checked(LAYOUT.len())?;
    if !matches_layout(head) {
        return None;
    }
    let two = |at: usize| {
        let value = digits(head.get(at..at + 2)?)?;
        u8::try_from(value).ok()
    };
    let raw_second = two(17)?;
    let civil = Civil {
        year: i32::try_from(digits(head.get(0..4)?)?).ok()?,
        month: two(5)?,
        day: two(8)?,
        hour: two(11)?,
        minute: two(14)?,
        // A leap second is folded into the last ordinary second of its minute.
        second: raw_second.min(59),
        millis: parse_millis(fraction)?,
    };

    is_valid(&civil, raw_second).then_some(civil)
}

/// Whether `head` has the shape of [`LAYOUT`].
fn matches_layout(head: &[u8]) -> bool {
    head.len() == LAYOUT.len()
        && head.iter().zip(LAYOUT).all(|(&byte, &slot)| match slot {
            b'0' => byte.is_ascii_digit(),
            b' ' => byte == b' ' || byte == b'T',
            _ => byte == slot,
        })
}

/// Whether the fields of `civil` name a real time; `raw_second` is the second as written.
fn is_valid(civil: &Civil, raw_second: u8) -> bool {
    (1..=12).contains(&civil.month)
        && (1..=days_in_month(civil.year, civil.month)).contains(&civil.day)
        && civil.hour < 24
        && civil.minute < 60
        && raw_second <= 60
}

/// Reads an optional `.fraction` of 1-9 digits as whole milliseconds (truncating).
fn parse_millis(fraction: &[u8]) -> Option<u16> {
    let digits_text = match fraction {
        [] => return Some(0),
        [b'.', rest @ ..] if (1..=9).contains(&rest.len()) => rest,
        _ => return None,
    };
    let value = digits(digits_text)?;
    let len = digits_text.len() as u32;
    let millis = if len <= 3 {
        value * 10u32.pow(3 - len)
    } else {
        value / 10u32.pow(len - 3)
    };

    u16::try_from(millis).ok()
}

/// ASCII digits as a number; callers pass at most 9 digits, so `u32` cannot overflow.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Number of days in `month` (1-12) of `year`.
fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Gregorian leap-year rule: every fourth year, except centuries not divisible by 400.
fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Milliseconds since the Unix epoch of `civil`, `None` if that is outside `i64`.
fn unix_ms_from_civil(civil: &Civil) -> Option<i64> {
    let days = days_from_civil(
        i64::from(civil.year),
        i64::from(civil.month),
        i64::from(civil.day),
    );
    let ms_of_day = i64::from(civil.hour) * MS_PER_HOUR
        + i64::from(civil.minute) * MS_PER_MINUTE
        + i64::from(civil.second) * MS_PER_SECOND
        + i64::from(civil.millis);

    // In i128 the sum cannot overflow, and the day of `i64::MIN` starts before it.
    let ms = i128::from(days) * i128::from(MS_PER_DAY) + i128::from(ms_of_day);

    i64::try_from(ms).ok()
}

/// Days since 1970-01-01 of a valid date (`month` 1-12, `day` within the month).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Count years from March, so January and February belong to the previous year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let march_month = (month + 9) % 12;
    // Month lengths from March repeat 31,30,31,30,31 — on average 30.6 days a month.
    let day_of_year = (153 * march_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;

    era * DAYS_PER_ERA + day_of_era - EPOCH_DAY_OFFSET
}

/// The date (year, month 1-12, day 1-31) of `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let shifted = days + EPOCH_DAY_OFFSET;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted.rem_euclid(DAYS_PER_ERA);
    // Undo the leap days of the 4-, 100- and 400-year cycles before dividing by 365.
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524
        - day_of_era / (DAYS_PER_ERA - 1))
        / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);

    (year, month as u8, day as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Milliseconds of 0000-01-01 00:00:00 and 9999-12-31 23:59:59.999 UTC.
    const YEAR_0_MS: i64 = -62_167_219_200_000;
    const YEAR_9999_END_MS: i64 = 253_402_300_799_999;

    /// Text shaped almost like a timestamp, to reach the field checks.
    const NEAR_MISS: &str = "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9:.]{8,14}Z?";

    fn civil(year: i32, month: u8, day: u8, hms: (u8, u8, u8), millis: u16) -> Civil {
        let (hour, minute, second) = hms;
        Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
            millis,
        }
    }

    fn rfc3164(ms: i64) -> String {
        let mut out = String::new();
        write_rfc3164(&mut out, ms).unwrap();
        out
    }

    fn rfc3339(ms: i64) -> String {
        let mut out = String::new();
        write_rfc3339(&mut out, ms).unwrap();
        out
    }

    #[test]
    fn epoch_is_1970_01_01() {
        assert_eq!(civil_from_unix_ms(0), civil(1970, 1, 1, (0, 0, 0), 0));
        assert_eq!(parse_utc("1970-01-01 00:00:00"), Some(0));
    }

    #[test]
    fn leap_day_2000() {
        assert_eq!(
            civil_from_unix_ms(951_782_400_000),
            civil(2000, 2, 29, (0, 0, 0), 0)
        );
        assert_eq!(parse_utc("2000-02-29 00:00:00"), Some(951_782_400_000));
    }

    #[test]
    fn negative_times_count_back_from_epoch() {
        assert_eq!(
            civil_from_unix_ms(-1),
            civil(1969, 12, 31, (23, 59, 59), 999)
        );
        let ms = -2_203_845_904_000;
        assert_eq!(civil_from_unix_ms(ms), civil(1900, 3, 1, (12, 34, 56), 0));
        assert_eq!(parse_utc("1900-03-01 12:34:56"), Some(ms));
        assert_eq!(
            parse_utc("1600-02-29T06:07:08.009Z"),
            Some(-11_670_976_371_991)
        );
    }

    #[test]
    fn threatfox_first_seen_forms() {
        let ms = Some(1_780_733_521_000);
        assert_eq!(parse_utc("2026-06-06 08:12:01"), ms);
        assert_eq!(parse_utc("2026-06-06T08:12:01"), ms);
        assert_eq!(parse_utc("2026-06-06T08:12:01Z"), ms);
        assert_eq!(parse_utc("2026-06-06 08:12:01 UTC"), ms);
    }

    #[test]
    fn fractions_truncate_to_millis() {
        assert_eq!(parse_utc("1970-01-01 00:00:00.5"), Some(500));
        assert_eq!(parse_utc("1970-01-01 00:00:00.123"), Some(123));
        assert_eq!(parse_utc("1970-01-01 00:00:00.123999999"), Some(123));
        assert_eq!(parse_utc("1970-01-01 00:00:00."), None);
        assert_eq!(parse_utc("1970-01-01 00:00:00.1234567890"), None);
    }

    #[test]
    fn leap_second_reads_as_59() {
        assert_eq!(
            parse_utc("2016-12-31 23:59:60"),
            parse_utc("2016-12-31 23:59:59")
        );
        assert_eq!(parse_utc("2016-12-31 23:59:61"), None);
    }

    #[test]
    fn rejects_days_that_do_not_exist() {
        for text in [
            "2026-02-29 00:00:00",
            "1900-02-29 00:00:00",
            "2026-04-31 00:00:00",
            "2026-00-10 00:00:00",
            "2026-13-10 00:00:00",
            "2026-01-00 00:00:00",
            "2026-01-32 00:00:00",
        ] {
            assert_eq!(parse_utc(text), None, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "",
            "None",
            "2026-06-06",
            "2026-06-06 24:00:00",
            "2026-06-06 23:60:00",
            "2026-06-06_08:12:01",
            " 2026-06-06 08:12:01",
            "2026-06-06 08:12:01 ",
            "2026-06-06 08:12:01+02:00",
            "2026-6-06 08:12:01",
            "+026-06-06 08:12:01",
            "2026-06-06 08:12:0é",
            "2026-06-06 08:12:01ZZ",
        ] {
            assert_eq!(parse_utc(text), None, "{text:?}");
        }
    }

    #[test]
    fn extremes_of_i64_round_trip() {
        for ms in [i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX] {
            assert_eq!(
                unix_ms_from_civil(&civil_from_unix_ms(ms)),
                Some(ms),
                "{ms}"
            );
        }
    }

    #[test]
    fn rfc3164_pads_single_digit_days_with_a_space() {
        assert_eq!(rfc3164(1_796_314_500_123), "Dec  3 16:15:00");
        assert_eq!(rfc3164(1_780_733_521_000), "Jun  6 08:12:01");
        assert_eq!(rfc3164(0), "Jan  1 00:00:00");
        assert_eq!(
            rfc3164(parse_utc("2026-10-13 01:02:03").unwrap()),
            "Oct 13 01:02:03"
        );
    }

    #[test]
    fn rfc3339_has_millis_and_z() {
        assert_eq!(rfc3339(1_796_314_500_123), "2026-12-03T16:15:00.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(YEAR_0_MS), "0000-01-01T00:00:00.000Z");
    }

    proptest! {
        #[test]
        fn civil_round_trips_over_the_whole_range(ms in any::<i64>()) {
            let c = civil_from_unix_ms(ms);
            prop_assert!((1..=12).contains(&c.month));
            prop_assert!((1..=days_in_month(c.year, c.month)).contains(&c.day));
            prop_assert!(c.hour < 24 && c.minute < 60 && c.second < 60 && c.millis < 1000);
            prop_assert_eq!(unix_ms_from_civil(&c), Some(ms));
        }

        #[test]
        fn next_millisecond_is_next_civil_time(ms in -10i64.pow(16)..10i64.pow(16)) {
            let (a, b) = (civil_from_unix_ms(ms), civil_from_unix_ms(ms + 1));
            let key = |c: Civil| (c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis);
            prop_assert!(key(a) < key(b));
        }

        #[test]
        fn rfc3339_text_parses_back(ms in YEAR_0_MS..=YEAR_9999_END_MS) {
            prop_assert_eq!(parse_utc(&rfc3339(ms)), Some(ms));
        }

        #[test]
        fn parse_utc_never_panics(text in any::<String>()) {
            let _ = parse_utc(&text);
        }

        #[test]
        fn parse_utc_never_panics_on_near_misses(text in NEAR_MISS) {
            let _ = parse_utc(&text);
        }
    }
}
