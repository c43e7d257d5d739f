//! Flow state for packets that hit an indicator: one alert per flow.
//!
//! Only flows that touched an indicator get an entry, so the table stays small however
//! busy the tap. Entries expire after an idle time measured in packet time, not wall
//! time, so replaying a capture file behaves exactly like watching the same traffic
//! live. The table is bounded: when it is full, idle entries are swept and, if that is
//! not enough, the least recently seen eighth is evicted in one pass and counted.
//!
//! The table also remembers the ports of a first IP fragment that hit, so the later
//! fragments of the same datagram (which carry no transport header) join its flow
//! instead of raising a second, port-less alert.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dashmap::DashMap;

use crate::decode::{Fragment, Packet, VlanStack};
use crate::indicator::{Hit, HitKind, Side};

/// Nanoseconds per second.
const NANOS: i64 = 1_000_000_000;
/// How often (packet time) idle flows are swept.
const SWEEP_INTERVAL_NS: i64 = NANOS;
/// How long a first fragment's ports are remembered (Linux `ipfrag_time` default).
const FRAGMENT_TIMEOUT_NS: i64 = 30 * NANOS;

/// One side of a flow: an address and, for TCP, UDP and SCTP, a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The address.
    pub addr: IpAddr,
    /// The port, when the protocol has ports and the packet carried them.
    pub port: Option<u16>,
}

impl From<std::net::SocketAddr> for Endpoint {
    fn from(sa: std::net::SocketAddr) -> Endpoint {
        Endpoint {
            addr: sa.ip(),
            port: Some(sa.port()),
        }
    }
}

/// The direction-normalised 5-tuple plus VLAN tags: both directions of a flow map to
/// the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    vlans: VlanStack,
    proto: u8,
    lo: Endpoint,
    hi: Endpoint,
}

impl FlowKey {
    /// The key of the flow a packet belongs to.
    pub fn of(packet: &Packet) -> FlowKey {
        let a = Endpoint {
            addr: packet.src,
            port: packet.src_port,
        };
        let b = Endpoint {
            addr: packet.dst,
            port: packet.dst_port,
        };
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        FlowKey {
            vlans: packet.vlans,
            proto: packet.proto,
            lo,
            hi,
        }
    }
}

/// Counters and times of a tracked flow.
#[derive(Debug, Clone, Copy)]
struct FlowState {
    last_ns: i64,
    packets: u64,
    bytes: u64,
}

/// A flow seen for the first time: the alert's endpoints, written client -> server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFlow {
    /// The side that opened (or is taken to have opened) the flow.
    pub client: Endpoint,
    /// The side that served it; for an endpoint hit, always the indicator endpoint.
    pub server: Endpoint,
}

/// Flow table limits, from the `[flow]` configuration.
#[derive(Debug, Clone, Copy)]
pub struct FlowLimits {
    /// Idle time after which a flow is forgotten, in nanoseconds.
    pub idle_timeout_ns: i64,
    /// Largest number of flows tracked at once.
    pub max_flows: usize,
}

/// Counts of flows leaving the table since they were last taken for the metrics.
#[derive(Debug, Default)]
pub struct FlowStats {
    /// Flows forgotten after their idle time.
    pub expired: AtomicU64,
    /// Flows evicted early because the table was full.
    pub evicted: AtomicU64,
}

/// Key of a fragmented datagram (RFC 791 3.2: source, destination, protocol, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragmentKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

/// The flows that hit an indicator, shared by all capture workers.
pub struct FlowTable {
    flows: DashMap<FlowKey, FlowState>,
    fragments: DashMap<FragmentKey, (u16, u16, i64)>,
    limits: FlowLimits,
    next_sweep_ns: AtomicI64,
    /// Flows that left the table, by cause.
    pub stats: FlowStats,
}

impl FlowTable {
    /// An empty table with the given limits.
    pub fn new(limits: FlowLimits) -> FlowTable {
        FlowTable {
            flows: DashMap::new(),
            fragments: DashMap::new(),
            limits,
            next_sweep_ns: AtomicI64::new(i64::MIN),
            stats: FlowStats::default(),
        }
    }

    /// Number of flows tracked now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True if no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Records a packet that hit an indicator. Returns the flow's endpoints if the flow
    /// is new (it raises an alert), `None` if the flow was already tracked.
    pub fn observe(&self, packet: &Packet, hit: &Hit) -> Option<NewFlow> {
        let key = FlowKey::of(packet);
        let len = u64::from(packet.wire_len);
        if let Some(mut state) = self.flows.get_mut(&key) {
            state.last_ns = state.last_ns.max(packet.time_ns);
            state.packets += 1;
            state.bytes += len;
            return None;
        }
        if self.flows.len() >= self.limits.max_flows {
            self.make_room(packet.time_ns);
        }
        let state = FlowState {
            last_ns: packet.time_ns,
            packets: 1,
            bytes: len,
        };
        match self.flows.entry(key) {
            dashmap::Entry::Occupied(_) => None, // another worker raced us to it
            dashmap::Entry::Vacant(v) => {
                v.insert(state);
                Some(orient(packet, hit))
            }
        }
    }

    /// Remembers the ports of a first fragment that hit, for its later fragments.
    pub fn remember_fragment(&self, packet: &Packet) {
        if packet.fragment != Fragment::First || self.fragments.len() >= self.limits.max_flows {
            return;
        }
        if let (Some(sp), Some(dp)) = (packet.src_port, packet.dst_port) {
            self.fragments
                .insert(fragment_key(packet), (sp, dp, packet.time_ns));
        }
    }

    /// Gives a later fragment the ports of its datagram's first fragment, if that was
    /// seen. Returns true if the ports were filled in.
    pub fn fill_fragment_ports(&self, packet: &mut Packet) -> bool {
        if packet.fragment != Fragment::Later {
            return false;
        }
        match self.fragments.get(&fragment_key(packet)) {
            Some(ports) => {
                (packet.src_port, packet.dst_port) = (Some(ports.0), Some(ports.1));
                true
            }
            None => false,
        }
    }

    /// Expires idle flows if a sweep is due at packet time `now_ns`. Cheap when not due;
    /// at most one worker sweeps at a time.
    #[inline]
    pub fn maybe_sweep(&self, now_ns: i64) {
        let due = self.next_sweep_ns.load(Ordering::Relaxed);
        if now_ns < due {
            return;
        }
        let next = now_ns.saturating_add(SWEEP_INTERVAL_NS);
        let won =
            self.next_sweep_ns
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed);
        if won.is_ok() {
            self.expire(now_ns);
        }
    }

    /// Forgets flows idle for longer than the timeout, and stale fragment entries.
    fn expire(&self, now_ns: i64) {
        let cutoff = now_ns.saturating_sub(self.limits.idle_timeout_ns);
        let before = self.flows.len();
        self.flows.retain(|_, s| s.last_ns >= cutoff);
        let gone = before.saturating_sub(self.flows.len());
        self.stats.expired.fetch_add(gone as u64, Ordering::Relaxed);
        let fragment_cutoff = now_ns.saturating_sub(FRAGMENT_TIMEOUT_NS);
        self.fragments.retain(|_, f| f.2 >= fragment_cutoff);
    }

    /// Frees space in a full table: idle flows first, then the least recently seen
    /// eighth of the table.
    fn make_room(&self, now_ns: i64) {
        self.expire(now_ns);
        if self.flows.len() < self.limits.max_flows {
            return;
        }
        let mut times: Vec<i64> = self.flows.iter().map(|e| e.last_ns).collect();
        let nth = times.len() / 8;
        let (_, cutoff, _) = times.select_nth_unstable(nth);
        let cutoff = *cutoff;
        let before = self.flows.len();
        self.flows.retain(|_, s| s.last_ns > cutoff);
        let gone = before.saturating_sub(self.flows.len());
        self.stats.evicted.fetch_add(gone as u64, Ordering::Relaxed);
    }
}

/// The fragment-table key of a packet.
fn fragment_key(packet: &Packet) -> FragmentKey {
    FragmentKey {
        src: packet.src,
        dst: packet.dst,
        proto: packet.proto,
        id: packet.frag_id,
    }
}

/// Decides which side of a new flow is the server (DESIGN.md, alert record): the
/// indicator endpoint for an endpoint hit; otherwise the TCP handshake; otherwise the
/// lower port; otherwise the indicator side.
fn orient(packet: &Packet, hit: &Hit) -> NewFlow {
    let src = Endpoint {
        addr: packet.src,
        port: packet.src_port,
    };
    let dst = Endpoint {
        addr: packet.dst,
        port: packet.dst_port,
    };
    let src_is_server = match (hit.kind, packet.src_port, packet.dst_port) {
        (HitKind::Endpoint, _, _) => hit.side == Side::Src,
        _ if packet.is_syn() => false,
        _ if packet.is_syn_ack() => true,
        (_, Some(sp), Some(dp)) if sp != dp => sp < dp,
        _ => hit.side == Side::Src,
    };
    if src_is_server {
        NewFlow {
            client: dst,
            server: src,
        }
    } else {
        NewFlow {
            client: src,
            server: dst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{TCP_ACK, TCP_SYN};

    fn packet(src: &str, dst: &str, flags: u8, time_s: i64) -> Packet {
        let (s, d): (std::net::SocketAddr, std::net::SocketAddr) =
            (src.parse().unwrap(), dst.parse().unwrap());
        Packet {
            time_ns: time_s * NANOS,
            src: s.ip(),
            dst: d.ip(),
            proto: 6,
            src_port: Some(s.port()),
            dst_port: Some(d.port()),
            tcp_flags: flags,
            wire_len: 100,
            vlans: VlanStack::default(),
            fragment: Fragment::No,
            frag_id: 0,
        }
    }

    fn hit(kind: HitKind, side: Side) -> Hit {
        Hit {
            kind,
            side,
            index: 0,
        }
    }

    fn table(max_flows: usize) -> FlowTable {
        FlowTable::new(FlowLimits {
            idle_timeout_ns: 60 * NANOS,
            max_flows,
        })
    }

    #[test]
    fn one_new_flow_for_both_directions() {
        let t = table(100);
        let h = hit(HitKind::Endpoint, Side::Dst);
        let out = t.observe(&packet("10.0.0.1:5000", "2.26.75.239:1971", TCP_SYN, 1), &h);
        assert!(out.is_some());
        let back = hit(HitKind::Endpoint, Side::Src);
        let reply = packet("2.26.75.239:1971", "10.0.0.1:5000", TCP_SYN | TCP_ACK, 1);
        assert_eq!(t.observe(&reply, &back), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn endpoint_hit_puts_the_indicator_as_server_even_from_the_reply() {
        let t = table(100);
        let p = packet("2.26.75.239:1971", "10.0.0.1:5000", TCP_ACK, 1);
        let flow = t.observe(&p, &hit(HitKind::Endpoint, Side::Src)).unwrap();
        assert_eq!(flow.server.port, Some(1971));
        assert_eq!(flow.client.port, Some(5000));
    }

    #[test]
    fn address_hit_follows_the_syn_then_the_lower_port() {
        let t = table(100);
        let h = hit(HitKind::AddressOtherPort, Side::Src);
        let syn = packet("10.0.0.1:80", "10.0.0.2:40000", TCP_SYN, 1);
        assert_eq!(t.observe(&syn, &h).unwrap().client.port, Some(80));
        let mid = packet("10.0.0.3:40000", "10.0.0.4:443", TCP_ACK, 1);
        assert_eq!(t.observe(&mid, &h).unwrap().server.port, Some(443));
    }

    #[test]
    fn idle_flows_expire_in_packet_time() {
        let t = table(100);
        let h = hit(HitKind::Endpoint, Side::Dst);
        assert!(
            t.observe(&packet("10.0.0.1:5000", "1.2.3.4:80", 0, 1), &h)
                .is_some()
        );
        t.maybe_sweep(30 * NANOS);
        assert_eq!(t.len(), 1);
        t.maybe_sweep(62 * NANOS);
        assert_eq!(t.len(), 0);
        assert_eq!(t.stats.expired.load(Ordering::Relaxed), 1);
        assert!(
            t.observe(&packet("10.0.0.1:5000", "1.2.3.4:80", 0, 63), &h)
                .is_some()
        );
    }

    #[test]
    fn a_full_table_evicts_the_oldest_and_counts_them() {
        let t = table(16);
        let h = hit(HitKind::Endpoint, Side::Dst);
        for port in 0..40u16 {
            let p = packet(
                &format!("10.0.0.1:{}", 1000 + port),
                "1.2.3.4:80",
                0,
                1 + i64::from(port),
            );
            assert!(t.observe(&p, &h).is_some());
            assert!(t.len() <= 16);
        }
        assert!(t.stats.evicted.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn later_fragments_borrow_the_first_fragments_ports() {
        let t = table(100);
        let mut first = packet("10.0.0.1:5000", "1.2.3.4:80", 0, 1);
        (first.fragment, first.frag_id) = (Fragment::First, 77);
        t.remember_fragment(&first);
        let mut later = first;
        (later.fragment, later.src_port, later.dst_port) = (Fragment::Later, None, None);
        assert!(t.fill_fragment_ports(&mut later));
        assert_eq!(later.dst_port, Some(80));
        later.frag_id = 78;
        later.dst_port = None;
        assert!(!t.fill_fragment_ports(&mut later));
    }
}
