//! The feed parsers (format detection, ThreatFox CSV and JSON, plain list) on arbitrary
//! text: they must accept or refuse, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = c2watch::feed::parse_feed("fuzz", "fuzz", text);
    }
});
