//! CEF records: an [`Alert`] written in ArcSight Common Event Format, the form Microsoft
//! Sentinel files into `CommonSecurityLog`.
//!
//! The header (`CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|`) is fixed per hit
//! kind and escaped once when the writer is built. Extension values are escaped per
//! record. Escaping follows the CEF specification ("Character Encoding"): in the header,
//! `\` and `|`; in extension values, `\`, `=`, and line breaks written as `\n` / `\r`.
//! Other control characters are replaced by a space, so nothing from a feed can break the
//! syslog framing. Key to column mapping (Microsoft's CEF reference): `src` SourceIP,
//! `spt` SourcePort, `dst` DestinationIP, `dpt` DestinationPort, `proto` Protocol, `act`
//! DeviceAction, `rt` ReceiptTime, `cnt` EventCount, `deviceDirection`
//! CommunicationDirection, `dvchost` DeviceName; the CEF Name becomes Activity.
//!
//! A record never exceeds the byte budget it is given: the flow fields always fit, and
//! feed text (threat type, malware, feed id, feed name, reference, in that order of
//! importance) is shortened, at a character boundary, to what is left.

use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::alert::Alert;
use crate::decode::proto_name;
use crate::indicator::HitKind;

/// The CEF vendor and product name.
pub const PRODUCT: &str = "c2watch";
/// The DeviceAction of every record: the sensor observes, it does not block.
pub const ACTION: &str = "alert";

/// Class id, name (Activity) and CEF severity of each hit kind.
pub fn class(kind: HitKind) -> (&'static str, &'static str, u8) {
    match kind {
        HitKind::Endpoint => ("ioc-endpoint", "Connection to threat-intel C2 endpoint", 8),
        HitKind::Address => ("ioc-address", "Connection to threat-intel C2 address", 7),
        HitKind::AddressOtherPort => (
            "ioc-address-other-port",
            "Connection to threat-intel C2 address on another port",
            5,
        ),
    }
}

/// Writes alerts as CEF records. Built once at start-up (or reload of the settings).
#[derive(Debug, Clone)]
pub struct CefWriter {
    headers: [String; 3],
    dvchost: String,
    home: Vec<IpNet>,
}

impl CefWriter {
    /// A writer for a sensor named `sensor` whose home networks decide `deviceDirection`.
    pub fn new(sensor: &str, home: Vec<IpNet>) -> CefWriter {
        let header = |kind| {
            let (id, name, severity) = class(kind);
            let mut h = String::from("CEF:0|");
            for field in [PRODUCT, PRODUCT, env!("CARGO_PKG_VERSION"), id, name] {
                push_header_escaped(&mut h, field);
                h.push('|');
            }
            let _ = write!(h, "{severity}|");
            h
        };
        let mut dvchost = String::new();
        push_escaped(&mut dvchost, sensor, usize::MAX);
        CefWriter {
            headers: HitKind::ALL.map(header),
            dvchost,
            home,
        }
    }

    /// The CEF severity (0-10) of an alert.
    pub fn severity(alert: &Alert) -> u8 {
        class(alert.kind).2
    }

    /// Appends the CEF record of `alert` to `out`, using at most `max_bytes` bytes.
    pub fn write(&self, alert: &Alert, max_bytes: usize, out: &mut String) {
        let start = out.len();
        out.push_str(&self.headers[alert.kind.index()]);
        self.write_flow(alert, out);
        let used = out.len() - start;
        self.write_context(alert, max_bytes.saturating_sub(used), out);
    }

    /// The fields that are never shortened: time, endpoints, protocol, action, sensor.
    fn write_flow(&self, alert: &Alert, out: &mut String) {
        let _ = write!(out, "rt={}", alert.time_ms);
        if alert.count != 1 {
            let _ = write!(out, " cnt={}", alert.count);
        }
        if let Some((start, end)) = alert.window_ms {
            let _ = write!(out, " start={start} end={end}");
        }
        let (c, s) = (alert.client, alert.server);
        let _ = write!(out, " src={} ", c.addr);
        write_opt(out, "spt=", c.port);
        let _ = write!(out, "dst={} ", s.addr);
        write_opt(out, "dpt=", s.port);
        match proto_name(alert.proto) {
            Some(name) => {
                let _ = write!(out, "proto={name}");
            }
            None => {
                let _ = write!(out, "proto={}", alert.proto);
            }
        }
        let _ = write!(out, " act={ACTION}");
        if let Some(direction) = self.direction(c.addr, s.addr) {
            let _ = write!(out, " deviceDirection={direction}");
        }
        let _ = write!(out, " dvchost={}", self.dvchost);
        self.write_interface(alert, out);
        write_ipv6(out, c.addr, s.addr);
        let _ = write!(out, " cs1Label=Indicator cs1={}", alert.indicator.value());
        if let Some(confidence) = alert.indicator.confidence {
            let _ = write!(out, " cn1Label=Confidence cn1={confidence}");
        }
        if let Some(vlan) = alert.vlan {
            let _ = write!(out, " cn2Label=VlanId cn2={vlan}");
        }
        if let Some(first_seen) = alert.indicator.first_seen_ms {
            let _ = write!(
                out,
                " deviceCustomDate1Label=FirstSeen deviceCustomDate1={first_seen}"
            );
        }
    }

    /// `deviceInboundInterface`, when the alert came from a live interface.
    fn write_interface(&self, alert: &Alert, out: &mut String) {
        if let Some(interface) = &alert.interface {
            out.push_str(" deviceInboundInterface=");
            push_escaped(out, interface, usize::MAX);
        }
    }

    /// The feed's text fields, each shortened to the bytes still free.
    fn write_context(&self, alert: &Alert, mut budget: usize, out: &mut String) {
        let i = &alert.indicator;
        let fields: [(&str, &str); 5] = [
            (" cs3Label=ThreatType cs3=", &i.threat_type),
            (" cs2Label=Malware cs2=", &i.malware),
            (" cs4Label=FeedId cs4=", &i.feed_id),
            (" cs6Label=Feed cs6=", &i.feed),
            (" cs5Label=Reference cs5=", &i.reference),
        ];
        for (key, value) in fields {
            if value.is_empty() || budget <= key.len() {
                continue;
            }
            out.push_str(key);
            budget -= key.len();
            budget -= push_escaped(out, value, budget);
        }
    }

    /// 1 (outbound) when only the client is in a home network, 0 (inbound) when only the
    /// server is; unknown otherwise.
    fn direction(&self, client: IpAddr, server: IpAddr) -> Option<u8> {
        let home = |a: IpAddr| self.home.iter().any(|n| n.contains(&a));
        match (home(client), home(server)) {
            (true, false) => Some(1),
            (false, true) => Some(0),
            _ => None,
        }
    }
}

/// Writes `key` and the value followed by a space, if there is a value.
fn write_opt(out: &mut String, key: &str, value: Option<u16>) {
    if let Some(v) = value {
        let _ = write!(out, "{key}{v} ");
    }
}

/// Sentinel maps `c6a2`/`c6a3` to the IPv6 source and destination columns.
fn write_ipv6(out: &mut String, client: IpAddr, server: IpAddr) {
    if let IpAddr::V6(a) = client {
        let _ = write!(out, " c6a2Label=SourceIPv6 c6a2={a}");
    }
    if let IpAddr::V6(a) = server {
        let _ = write!(out, " c6a3Label=DestinationIPv6 c6a3={a}");
    }
}

/// Appends a header field with `\` and `|` escaped (CEF "Character Encoding"); line
/// breaks and other control characters, which the header may not hold, become spaces.
pub fn push_header_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Appends an extension value with `\`, `=`, CR and LF escaped, other control characters
/// replaced by spaces, stopping before the output would exceed `max` bytes. Returns the
/// number of bytes written. Never splits a character or an escape.
pub fn push_escaped(out: &mut String, value: &str, max: usize) -> usize {
    let mut written = 0;
    for c in value.chars() {
        let mut buf = [0u8; 4];
        let piece: &str = match c {
            '\\' => "\\\\",
            '=' => "\\=",
            '\n' => "\\n",
            '\r' => "\\r",
            c if c.is_control() => " ",
            c => c.encode_utf8(&mut buf),
        };
        if written + piece.len() > max {
            break;
        }
        out.push_str(piece);
        written += piece.len();
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::Indicator;
    use std::sync::Arc;

    fn remcos() -> Indicator {
        Indicator {
            addr: "2.26.75.239".parse().unwrap(),
            port: Some(1971),
            malware: "Remcos".into(),
            threat_type: "botnet_cc".into(),
            confidence: Some(75),
            first_seen_ms: Some(1_780_733_521_000),
            feed_id: "threatfox:1500001".into(),
            reference: "".into(),
            feed: "threatfox-remcos".into(),
        }
    }

    fn alert(indicator: Indicator) -> Alert {
        let client: std::net::SocketAddr = "10.20.1.10:49200".parse().unwrap();
        let server: std::net::SocketAddr = "2.26.75.239:1971".parse().unwrap();
        let flow = (client.into(), server.into());
        Alert::new(
            HitKind::Endpoint,
            Arc::new(indicator),
            1_780_000_000_123,
            flow,
            6,
        )
    }

    fn writer() -> CefWriter {
        CefWriter::new("sensor01", vec!["10.0.0.0/8".parse().unwrap()])
    }

    fn record(alert: &Alert, max: usize) -> String {
        let mut out = String::new();
        writer().write(alert, max, &mut out);
        out
    }

    #[test]
    fn exact_hit_record_matches_the_design_example() {
        let line = record(&alert(remcos()), 1024);
        let version = env!("CARGO_PKG_VERSION");
        let expected = format!(
            "CEF:0|c2watch|c2watch|{version}|ioc-endpoint|Connection to threat-intel C2 \
             endpoint|8|rt=1780000000123 src=10.20.1.10 spt=49200 dst=2.26.75.239 dpt=1971 \
             proto=TCP act=alert deviceDirection=1 dvchost=sensor01 cs1Label=Indicator \
             cs1=2.26.75.239:1971 cn1Label=Confidence cn1=75 deviceCustomDate1Label=FirstSeen \
             deviceCustomDate1=1780733521000 cs3Label=ThreatType cs3=botnet_cc \
             cs2Label=Malware cs2=Remcos cs4Label=FeedId cs4=threatfox:1500001 \
             cs6Label=Feed cs6=threatfox-remcos"
        );
        assert_eq!(line, expected);
    }

    #[test]
    fn feed_text_is_escaped() {
        let mut i = remcos();
        i.malware = "Rem|cos=x\\y\nz\r\0".into();
        let line = record(&alert(i), 1024);
        assert!(line.contains(r"cs2=Rem|cos\=x\\y\nz\r "), "{line}");
        let mut header = String::new();
        push_header_escaped(&mut header, "a|b\\c\nd");
        assert_eq!(header, r"a\|b\\c d");
    }

    #[test]
    fn long_feed_text_is_shortened_and_flow_fields_kept() {
        let mut i = remcos();
        i.reference = "x".repeat(5000).into();
        i.malware = "é".repeat(3000).into();
        let line = record(&alert(i), 1024);
        assert!(line.len() <= 1024, "{}", line.len());
        assert!(line.contains("dst=2.26.75.239 dpt=1971"));
        assert!(line.contains("cs3=botnet_cc"));
    }

    #[test]
    fn escapes_are_never_split_by_the_budget() {
        let mut out = String::new();
        assert_eq!(push_escaped(&mut out, "a=b", 2), 1);
        assert_eq!(out, "a");
    }

    #[test]
    fn ipv6_endpoints_fill_the_ipv6_columns_and_direction_follows_home_networks() {
        let mut a = alert(remcos());
        a.client.addr = "2001:db8::5".parse().unwrap();
        a.server.addr = "10.1.1.1".parse().unwrap();
        let line = record(&a, 1024);
        assert!(line.contains("src=2001:db8::5 "));
        assert!(line.contains("c6a2Label=SourceIPv6 c6a2=2001:db8::5"));
        assert!(line.contains("deviceDirection=0"));
    }

    #[test]
    fn kinds_have_distinct_classes_and_address_only_is_lower() {
        let ids: Vec<_> = HitKind::ALL.iter().map(|k| class(*k).0).collect();
        assert_eq!(
            ids,
            ["ioc-endpoint", "ioc-address", "ioc-address-other-port"]
        );
        assert!(class(HitKind::AddressOtherPort).2 < class(HitKind::Endpoint).2);
    }
}
