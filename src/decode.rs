//! Frame decoding: a captured frame becomes a [`Packet`] summary, or a [`DecodeError`].
//!
//! This layer is pure: no I/O, no logging, no allocation. It borrows the frame from the
//! capture buffer, slices it with etherparse's lax slicer (so frames cut short by the
//! capture's snap length still yield their addresses and ports) and copies out the few
//! fields matching needs. Nothing reachable from frame bytes panics: every length is
//! checked before it is read, and a frame that cannot be decoded is reported as data so
//! the caller can count it by reason and move on.
//!
//! Link types: Ethernet (with up to three 802.1Q / 802.1ad tags), Linux cooked capture
//! v1 and v2, raw IP, and BSD loopback. Transport ports are read for TCP, UDP and SCTP,
//! which share the port layout (RFC 9293 3.1, RFC 768, RFC 9260 3.1), straight from the
//! IP payload, so a truncated or odd transport header still gives its ports. A later IP
//! fragment carries no transport header and decodes without ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::err::packet::SliceError;
use etherparse::{
    EtherType, IpNumber, Ipv6ExtensionSlice, LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket,
};

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of SCTP.
pub const PROTO_SCTP: u8 = 132;

/// TCP SYN flag bit (RFC 9293 3.1).
pub const TCP_SYN: u8 = 0x02;
/// TCP ACK flag bit (RFC 9293 3.1).
pub const TCP_ACK: u8 = 0x10;

/// Length of the Linux cooked capture v1 header (`LINKTYPE_LINUX_SLL`).
const SLL_HEADER_LEN: usize = 16;
/// Length of the Linux cooked capture v2 header (`LINKTYPE_LINUX_SLL2`).
const SLL2_HEADER_LEN: usize = 20;
/// Length of the BSD loopback header (`LINKTYPE_NULL`, `LINKTYPE_LOOP`).
const NULL_HEADER_LEN: usize = 4;

/// The link-layer framing of a capture, from its `LINKTYPE_` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// IEEE 802.3 Ethernet (`LINKTYPE_ETHERNET`, 1).
    Ethernet,
    /// Linux cooked capture v1 (`LINKTYPE_LINUX_SLL`, 113).
    LinuxSll,
    /// Linux cooked capture v2 (`LINKTYPE_LINUX_SLL2`, 276), what libpcap gives on `any`.
    LinuxSll2,
    /// Raw IPv4 or IPv6 with no link header (`LINKTYPE_RAW` 101, `DLT_RAW` 12 and 14,
    /// `LINKTYPE_IPV4` 228, `LINKTYPE_IPV6` 229).
    RawIp,
    /// BSD loopback with a 4-byte address family (`LINKTYPE_NULL` 0, `LINKTYPE_LOOP` 108).
    Null,
}

impl LinkType {
    /// The link type for a `LINKTYPE_`/`DLT_` number, or `None` if it is not supported.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            12 | 14 | 101 | 228 | 229 => Some(LinkType::RawIp),
            0 | 108 => Some(LinkType::Null),
            _ => None,
        }
    }

    /// The `LINKTYPE_` number written to capture files for this link type.
    pub fn dlt(self) -> i32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 101,
            LinkType::Null => 0,
        }
    }
}

/// Why a frame was not decoded. The variants are a small fixed set so they can label a
/// metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The frame ends inside a link or IP header.
    Truncated,
    /// A header is present but invalid (wrong IP version, bad header length, ...).
    Malformed,
    /// The frame carries something other than IPv4 or IPv6 (ARP, LLDP, ...). Not an error
    /// of the frame; counted separately.
    NotIp,
}

impl DecodeError {
    /// Every variant, in metric label order.
    pub const ALL: [DecodeError; 3] = [
        DecodeError::Truncated,
        DecodeError::Malformed,
        DecodeError::NotIp,
    ];

    /// The metric label for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::Malformed => "malformed",
            DecodeError::NotIp => "not_ip",
        }
    }
}

/// Where a packet stands in IP fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    No,
    /// The first fragment (offset 0, more fragments follow): it carries the ports.
    First,
    /// A later fragment: no transport header, so no ports.
    Later,
}

/// Up to three VLAN ids, outermost first, packed so that a flow key can carry them by
/// value. Each tag takes 16 bits: a presence bit and the 12-bit id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct VlanStack(u64);

impl VlanStack {
    /// The stack with `id` pushed as the next inner tag.
    #[inline]
    pub fn push(self, id: u16) -> VlanStack {
        VlanStack((self.0 << 16) | 0x8000 | u64::from(id & 0x0fff))
    }

    /// The outermost VLAN id, if the frame was tagged.
    pub fn outer(self) -> Option<u16> {
        let tags = (0..3).map(|i| (self.0 >> (16 * i)) & 0xffff);
        tags.take_while(|t| t & 0x8000 != 0).last().map(|t| (t & 0x0fff) as u16)
    }
}

/// The network and transport summary of one captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Capture time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number of the payload (after IPv6 extension headers).
    pub proto: u8,
    /// Source port, for TCP, UDP and SCTP when the transport header was captured.
    pub src_port: Option<u16>,
    /// Destination port, as `src_port`.
    pub dst_port: Option<u16>,
    /// TCP flags byte (0 for other protocols or when not captured).
    pub tcp_flags: u8,
    /// Length of the frame on the wire, in bytes.
    pub wire_len: u32,
    /// VLAN tags of the frame.
    pub vlans: VlanStack,
    /// Fragmentation state.
    pub fragment: Fragment,
    /// IP identification (IPv4) or fragment identification (IPv6); 0 when unfragmented.
    pub frag_id: u32,
}

impl Packet {
    /// True for a TCP segment with SYN set and ACK clear: the client's opening segment.
    #[inline]
    pub fn is_syn(&self) -> bool {
        self.proto == PROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    /// True for a TCP segment with SYN and ACK set: the server's answer.
    #[inline]
    pub fn is_syn_ack(&self) -> bool {
        self.proto == PROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
    }
}

/// Decodes one captured frame.
///
/// `frame` is the captured part, `wire_len` the frame's original length, `time_ns` its
/// capture time.
pub fn decode(
    link: LinkType,
    frame: &[u8],
    wire_len: u32,
    time_ns: i64,
) -> Result<Packet, DecodeError> {
    let sliced = slice(link, frame)?;
    let mut packet = summarize(&sliced)?;
    packet.time_ns = time_ns;
    packet.wire_len = wire_len;
    Ok(packet)
}

/// Slices the frame down to its network layer according to the link type.
fn slice(link: LinkType, frame: &[u8]) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    match link {
        LinkType::Ethernet => {
            LaxSlicedPacket::from_ethernet(frame).map_err(|_| DecodeError::Truncated)
        }
        LinkType::LinuxSll => cooked(frame, SLL_HEADER_LEN, SLL_HEADER_LEN - 2),
        LinkType::LinuxSll2 => cooked(frame, SLL2_HEADER_LEN, 0),
        LinkType::RawIp => raw_ip(frame),
        LinkType::Null => raw_ip(frame.get(NULL_HEADER_LEN..).ok_or(DecodeError::Truncated)?),
    }
}

/// Slices a Linux cooked capture frame: a fixed header holding the protocol (an
/// EtherType) at `protocol_at`, then the network layer.
fn cooked(
    frame: &[u8],
    header_len: usize,
    protocol_at: usize,
) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    let payload = frame.get(header_len..).ok_or(DecodeError::Truncated)?;
    let protocol = u16::from_be_bytes([frame[protocol_at], frame[protocol_at + 1]]);
    Ok(LaxSlicedPacket::from_ether_type(EtherType(protocol), payload))
}

/// Slices a frame that starts with the IP header.
fn raw_ip(frame: &[u8]) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    match frame.first() {
        None => Err(DecodeError::Truncated),
        Some(b) if b >> 4 != 4 && b >> 4 != 6 => Err(DecodeError::NotIp),
        Some(_) => LaxSlicedPacket::from_ip(frame).map_err(|e| match e {
            etherparse::err::ip::LaxHeaderSliceError::Len(_) => DecodeError::Truncated,
            etherparse::err::ip::LaxHeaderSliceError::Content(_) => DecodeError::Malformed,
        }),
    }
}

/// Copies the addresses, ports and tags out of a sliced frame.
fn summarize(sliced: &LaxSlicedPacket<'_>) -> Result<Packet, DecodeError> {
    let vlans = sliced
        .vlan_ids()
        .iter()
        .fold(VlanStack::default(), |s, id| s.push(id.value()));
    let (src, dst, fragment, frag_id, payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let fragment = ipv4_fragment(h.more_fragments(), h.fragments_offset().value());
            let frag_id = if fragment == Fragment::No { 0 } else { u32::from(h.identification()) };
            let (src, dst) = (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()));
            (src, dst, fragment, frag_id, ip.payload())
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let (fragment, frag_id) = ipv6_fragment(ip.extensions());
            let src = IpAddr::V6(Ipv6Addr::from(h.source()));
            let dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
            (src, dst, fragment, frag_id, ip.payload())
        }
        Some(LaxNetSlice::Arp(_)) => return Err(DecodeError::NotIp),
        None => return Err(no_network_layer(sliced)),
    };
    Ok(transport(src, dst, vlans, fragment, frag_id, payload))
}

/// Reads the ports and TCP flags from the IP payload, where the protocol has them.
fn transport(
    src: IpAddr,
    dst: IpAddr,
    vlans: VlanStack,
    fragment: Fragment,
    frag_id: u32,
    payload: &LaxIpPayloadSlice<'_>,
) -> Packet {
    let proto = payload.ip_number.0;
    let bytes = payload.payload;
    let has_ports = matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
        && fragment != Fragment::Later
        && bytes.len() >= 4;
    let port = |at: usize| has_ports.then(|| u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    // TCP flags sit in byte 13 of the header (RFC 9293 3.1).
    let tcp_flags = match (proto, fragment, bytes.get(13)) {
        (PROTO_TCP, Fragment::No | Fragment::First, Some(&flags)) => flags,
        _ => 0,
    };
    Packet {
        time_ns: 0,
        src,
        dst,
        proto,
        src_port: port(0),
        dst_port: port(2),
        tcp_flags,
        wire_len: 0,
        vlans,
        fragment,
        frag_id,
    }
}

/// Classifies an IPv4 fragment from its header fields (RFC 791 3.1).
fn ipv4_fragment(more_fragments: bool, offset: u16) -> Fragment {
    match (more_fragments, offset) {
        (false, 0) => Fragment::No,
        (true, 0) => Fragment::First,
        _ => Fragment::Later,
    }
}

/// Classifies an IPv6 packet by its Fragment extension header, if any (RFC 8200 4.5).
fn ipv6_fragment(exts: &etherparse::Ipv6ExtensionsSlice<'_>) -> (Fragment, u32) {
    for ext in exts.clone() {
        if let Ipv6ExtensionSlice::Fragment(f) = ext {
            let offset = f.fragment_offset().value();
            let fragment = match (f.more_fragments(), offset) {
                (false, 0) => Fragment::No,
                (true, 0) => Fragment::First,
                _ => Fragment::Later,
            };
            return (fragment, f.identification());
        }
    }
    (Fragment::No, 0)
}

/// Names why slicing stopped before the network layer.
fn no_network_layer(sliced: &LaxSlicedPacket<'_>) -> DecodeError {
    match &sliced.stop_err {
        Some((SliceError::Len(_), _)) => DecodeError::Truncated,
        Some(_) => DecodeError::Malformed,
        None => DecodeError::NotIp,
    }
}

/// The IP protocol's conventional name as CEF's `proto` field wants it, if it has one.
pub fn proto_name(proto: u8) -> Option<&'static str> {
    match IpNumber(proto) {
        IpNumber::TCP => Some("TCP"),
        IpNumber::UDP => Some("UDP"),
        IpNumber::ICMP => Some("ICMP"),
        IpNumber::IPV6_ICMP => Some("ICMPv6"),
        IpNumber::SCTP => Some("SCTP"),
        IpNumber::GRE => Some("GRE"),
        IpNumber::ENCAPSULATING_SECURITY_PAYLOAD => Some("ESP"),
        _ => None,
    }
}

/// An address's family-independent ordering key, used to normalise flow direction.
#[inline]
pub fn addr_key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The unspecified IPv4 address, a placeholder in tests and defaults.
pub const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
