//! Threat-intelligence indicators and the per-packet lookup against them.
//!
//! An [`IndicatorSet`] is built once per (re)load from parsed feeds and never mutated
//! afterwards: capture threads read it through an atomic pointer swap, so matching takes
//! no lock. Matching a packet costs two hash lookups of its addresses in the common case
//! (no hit); the endpoint table is consulted only when an address is known.

use std::fmt;
use std::net::IpAddr;

/// One intel entry: an endpoint (`ip:port`) or an address (`ip`), with its context.
///
/// Text fields are as the feed gave them (unescaped); the CEF writer escapes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    /// The indicator's address.
    pub addr: IpAddr,
    /// The port for `ip:port` indicators; `None` for address indicators.
    pub port: Option<u16>,
    /// Printable malware family name (ThreatFox `malware_printable`), empty if unknown.
    pub malware: Box<str>,
    /// Threat type (ThreatFox `threat_type`, e.g. `botnet_cc`), empty if unknown.
    pub threat_type: Box<str>,
    /// Confidence 0-100, if the feed gives one.
    pub confidence: Option<u8>,
    /// First-seen time in milliseconds since the Unix epoch (UTC), if the feed gives one.
    pub first_seen_ms: Option<i64>,
    /// Identifier within the source, e.g. `threatfox:1500001`; empty if the feed has none.
    pub feed_id: Box<str>,
    /// Reference URL or text, empty if none.
    pub reference: Box<str>,
    /// Name of the feed this indicator came from (from the configuration).
    pub feed: Box<str>,
}

impl Indicator {
    /// An indicator with the given endpoint and no context.
    pub fn bare(addr: IpAddr, port: Option<u16>, feed: &str) -> Indicator {
        Indicator {
            addr,
            port,
            malware: "".into(),
            threat_type: "".into(),
            confidence: None,
            first_seen_ms: None,
            feed_id: "".into(),
            reference: "".into(),
            feed: feed.into(),
        }
    }

    /// The indicator value in its canonical text form: `1.2.3.4:80`, `[2001:db8::1]:443`,
    /// `1.2.3.4` or `2001:db8::1`.
    pub fn value(&self) -> IndicatorValue<'_> {
        IndicatorValue(self)
    }
}

/// Display adapter for [`Indicator::value`].
pub struct IndicatorValue<'a>(&'a Indicator);

impl fmt::Display for IndicatorValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.addr, self.0.port) {
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

/// What kind of match a packet made. Each kind is its own alert class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HitKind {
    /// The packet's source or destination endpoint equals an `ip:port` indicator.
    Endpoint,
    /// The packet's source or destination address equals an address indicator (`ip`).
    Address,
    /// The address of an `ip:port` indicator, on another port (or a packet with no
    /// ports, such as a later fragment or ICMP). Lower confidence: the host may be shared.
    AddressOtherPort,
}

impl HitKind {
    /// Every kind, in metric label order.
    pub const ALL: [HitKind; 3] = [
        HitKind::Endpoint,
        HitKind::Address,
        HitKind::AddressOtherPort,
    ];

    /// Position in [`HitKind::ALL`] (the declaration order), for per-kind tables.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label and the stem of the CEF class id.
    pub fn as_str(self) -> &'static str {
        match self {
            HitKind::Endpoint => "endpoint",
            HitKind::Address => "address",
            HitKind::AddressOtherPort => "address_other_port",
        }
    }
}

/// Which side of a packet matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The packet's source.
    Src,
    /// The packet's destination.
    Dst,
}

/// A packet's match against the indicator set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The kind of match.
    pub kind: HitKind,
    /// The side of the packet that matched.
    pub side: Side,
    /// Index of the indicator in its set ([`IndicatorSet::get`]).
    pub index: u32,
}

/// Everything known about one indicator address.
#[derive(Debug, Default)]
struct AddrEntry {
    /// `(port, indicator index)` for each `ip:port` indicator at this address.
    endpoints: Vec<(u16, u32)>,
    /// The address indicator (`ip`) for this address, if any.
    address: Option<u32>,
    /// The indicator reported for an address-only hit on another port: the most
    /// confident endpoint indicator at this address.
    other_port: Option<u32>,
}

impl AddrEntry {
    /// The best hit for a packet side with this address and the given port.
    #[inline]
    fn hit(&self, port: Option<u16>) -> Option<(HitKind, u32)> {
        if let Some(port) = port {
            if let Some(&(_, index)) = self.endpoints.iter().find(|(p, _)| *p == port) {
                return Some((HitKind::Endpoint, index));
            }
        }
        if let Some(index) = self.address {
            return Some((HitKind::Address, index));
        }
        self.other_port
            .map(|index| (HitKind::AddressOtherPort, index))
    }
}

/// An immutable, indexed set of indicators.
#[derive(Debug, Default)]
pub struct IndicatorSet {
    indicators: Vec<std::sync::Arc<Indicator>>,
    v4: rustc_hash::FxHashMap<u32, AddrEntry>,
    v6: rustc_hash::FxHashMap<u128, AddrEntry>,
    duplicates: u64,
}

impl IndicatorSet {
    /// Builds a set. When two indicators have the same value the first one is kept and
    /// the other counted in [`IndicatorSet::duplicates`]; pass feeds in priority order.
    pub fn new(indicators: impl IntoIterator<Item = Indicator>) -> IndicatorSet {
        let mut set = IndicatorSet::default();
        for indicator in indicators {
            set.insert(indicator);
        }
        set
    }

    /// Adds one indicator while building.
    fn insert(&mut self, indicator: Indicator) {
        let index = self.indicators.len() as u32;
        let confidence = indicator.confidence;
        let entry = match indicator.addr {
            IpAddr::V4(a) => self.v4.entry(u32::from(a)).or_default(),
            IpAddr::V6(a) => self.v6.entry(u128::from(a)).or_default(),
        };
        match indicator.port {
            Some(port) if entry.endpoints.iter().any(|(p, _)| *p == port) => {
                self.duplicates += 1;
                return;
            }
            Some(port) => {
                entry.endpoints.push((port, index));
                let better = entry
                    .other_port
                    .is_none_or(|best| confidence > self.indicators[best as usize].confidence);
                if better {
                    entry.other_port = Some(index);
                }
            }
            None if entry.address.is_some() => {
                self.duplicates += 1;
                return;
            }
            None => entry.address = Some(index),
        }
        self.indicators.push(std::sync::Arc::new(indicator));
    }

    /// The indicator at `index`, as given in a [`Hit`].
    pub fn get(&self, index: u32) -> &std::sync::Arc<Indicator> {
        &self.indicators[index as usize]
    }

    /// Number of indicators in the set.
    pub fn len(&self) -> usize {
        self.indicators.len()
    }

    /// True if the set holds no indicators.
    pub fn is_empty(&self) -> bool {
        self.indicators.is_empty()
    }

    /// Number of `ip:port` indicators and of `ip` indicators.
    pub fn counts(&self) -> (usize, usize) {
        let endpoints = self.indicators.iter().filter(|i| i.port.is_some()).count();
        (endpoints, self.indicators.len() - endpoints)
    }

    /// Indicators dropped while building because an earlier one had the same value.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Matches one side of a packet.
    #[inline]
    fn lookup(&self, addr: IpAddr, port: Option<u16>) -> Option<(HitKind, u32)> {
        let entry = match addr {
            IpAddr::V4(a) => self.v4.get(&u32::from(a)),
            IpAddr::V6(a) => self.v6.get(&u128::from(a)),
        };
        entry.and_then(|e| e.hit(port))
    }

    /// Matches a packet: the strongest hit of its two sides (endpoint over address over
    /// address on another port), the destination winning a tie.
    #[inline]
    pub fn match_packet(&self, packet: &crate::decode::Packet) -> Option<Hit> {
        let dst = self.lookup(packet.dst, packet.dst_port);
        let src = self.lookup(packet.src, packet.src_port);
        let hit = |(kind, index), side| Hit { kind, side, index };
        match (src, dst) {
            (None, None) => None,
            (None, Some(d)) => Some(hit(d, Side::Dst)),
            (Some(s), None) => Some(hit(s, Side::Src)),
            (Some(s), Some(d)) if s.0 < d.0 => Some(hit(s, Side::Src)),
            (Some(_), Some(d)) => Some(hit(d, Side::Dst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Fragment, Packet, VlanStack};

    fn endpoint(text: &str, confidence: u8) -> Indicator {
        let sa: std::net::SocketAddr = text.parse().unwrap();
        let mut i = Indicator::bare(sa.ip(), Some(sa.port()), "test");
        i.confidence = Some(confidence);
        i
    }

    fn packet(src: &str, dst: &str) -> Packet {
        let (s, d): (std::net::SocketAddr, std::net::SocketAddr) =
            (src.parse().unwrap(), dst.parse().unwrap());
        Packet {
            time_ns: 0,
            src: s.ip(),
            dst: d.ip(),
            proto: 6,
            src_port: Some(s.port()),
            dst_port: Some(d.port()),
            tcp_flags: 0,
            wire_len: 60,
            vlans: VlanStack::default(),
            fragment: Fragment::No,
            frag_id: 0,
        }
    }

    fn remcos() -> IndicatorSet {
        IndicatorSet::new([
            endpoint("2.26.75.239:1971", 75),
            endpoint("192.177.111.89:7788", 75),
            endpoint("[2001:db8::66]:443", 50),
            Indicator::bare("198.51.100.7".parse().unwrap(), None, "test"),
        ])
    }

    #[test]
    fn exact_endpoint_hits_in_either_direction() {
        let set = remcos();
        let out = set
            .match_packet(&packet("10.0.0.5:49200", "2.26.75.239:1971"))
            .unwrap();
        assert_eq!((out.kind, out.side), (HitKind::Endpoint, Side::Dst));
        let back = set
            .match_packet(&packet("2.26.75.239:1971", "10.0.0.5:49200"))
            .unwrap();
        assert_eq!((back.kind, back.side), (HitKind::Endpoint, Side::Src));
        assert_eq!(set.get(back.index).value().to_string(), "2.26.75.239:1971");
    }

    #[test]
    fn indicator_address_on_another_port_is_an_address_only_hit() {
        let set = remcos();
        let hit = set
            .match_packet(&packet("10.0.0.5:49200", "2.26.75.239:443"))
            .unwrap();
        assert_eq!(hit.kind, HitKind::AddressOtherPort);
    }

    #[test]
    fn indicator_port_on_another_address_does_not_hit() {
        let set = remcos();
        assert_eq!(
            set.match_packet(&packet("10.0.0.5:49200", "2.26.75.240:1971")),
            None
        );
        assert_eq!(
            set.match_packet(&packet("10.0.0.5:1971", "8.8.8.8:7788")),
            None
        );
    }

    #[test]
    fn ipv6_endpoints_and_address_indicators_hit() {
        let set = remcos();
        let v6 = set.match_packet(&packet("[2001:db8::5]:50000", "[2001:db8::66]:443"));
        assert_eq!(v6.unwrap().kind, HitKind::Endpoint);
        let addr = set
            .match_packet(&packet("198.51.100.7:53", "10.0.0.5:5353"))
            .unwrap();
        assert_eq!((addr.kind, addr.side), (HitKind::Address, Side::Src));
    }

    #[test]
    fn stronger_side_wins() {
        let set = remcos();
        let hit = set
            .match_packet(&packet("2.26.75.239:1971", "198.51.100.7:80"))
            .unwrap();
        assert_eq!((hit.kind, hit.side), (HitKind::Endpoint, Side::Src));
    }

    #[test]
    fn kind_index_is_the_position_in_all() {
        for (i, kind) in HitKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        for (i, reason) in crate::decode::DecodeError::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let set = IndicatorSet::new([endpoint("1.2.3.4:80", 50), endpoint("1.2.3.4:80", 90)]);
        assert_eq!((set.len(), set.duplicates()), (1, 1));
    }

    #[test]
    fn other_port_hit_reports_the_most_confident_indicator() {
        let set = IndicatorSet::new([endpoint("1.2.3.4:80", 50), endpoint("1.2.3.4:81", 90)]);
        let hit = set
            .match_packet(&packet("10.0.0.1:5000", "1.2.3.4:22"))
            .unwrap();
        assert_eq!(set.get(hit.index).port, Some(81));
    }
}
