//! Frame decoding: a captured frame becomes a [`Packet`] summary, or a [`DecodeError`].
//!
//! This layer is pure: no I/O, no logging, no allocation. It borrows the frame from the
//! capture buffer, walks the link layer with etherparse's header slices, slices the IP
//! layer with its lax IP slicer (so frames cut short by the capture's snap length still
//! yield their addresses and ports) and copies out the few fields matching needs. It
//! does not parse the transport header beyond the ports and TCP flags: the whole-packet
//! slicer did, and cost a third of the replay time in doing so. Nothing reachable from frame bytes panics: every length is
//! checked before it is read, and a frame that cannot be decoded is reported as data so
//! the caller can count it by reason and move on.
//!
//! Link types: Ethernet (with up to three 802.1Q / 802.1ad tags), Linux cooked capture
//! v1 and v2, raw IP, and BSD loopback. Transport ports are read for TCP, UDP and SCTP,
//! which share the port layout (RFC 9293 3.1, RFC 768, RFC 9260 3.1), straight from the
//! IP payload, so a truncated or odd transport header still gives its ports. A later IP
//! fragment carries no transport header and decodes without ports.

use std::net::{IpAddr, Ipv6Addr};

use etherparse::err::ip::LaxHeaderSliceError;
use etherparse::{
    EtherType, Ethernet2HeaderSlice, IpNumber, Ipv4HeaderSlice, LaxIpPayloadSlice, LaxIpSlice,
    SingleVlanSlice,
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
/// IPv6 extension header numbers (IANA "Protocol Numbers", RFC 8200 4).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const AUTHENTICATION: u8 = 51;
const DESTINATION: u8 = 60;
const MOBILITY: u8 = 135;
const HIP: u8 = 139;
const SHIM6: u8 = 140;

/// VLAN tags skipped before giving up on a frame (as etherparse's own slicer).
const MAX_VLAN_TAGS: usize = 3;
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

    /// Position in [`DecodeError::ALL`] (the declaration order), for per-reason tables.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

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
        tags.take_while(|t| t & 0x8000 != 0)
            .last()
            .map(|t| (t & 0x0fff) as u16)
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
#[inline]
pub fn decode(
    link: LinkType,
    frame: &[u8],
    wire_len: u32,
    time_ns: i64,
) -> Result<Packet, DecodeError> {
    let (vlans, ip) = network_layer(link, frame)?;
    let mut packet = summarize(ip)?;
    packet.vlans = vlans;
    packet.time_ns = time_ns;
    packet.wire_len = wire_len;
    Ok(packet)
}

/// Finds the network layer of a frame according to its link type, collecting VLAN tags
/// on the way.
#[inline]
fn network_layer(link: LinkType, frame: &[u8]) -> Result<(VlanStack, &[u8]), DecodeError> {
    match link {
        LinkType::Ethernet => {
            let eth =
                Ethernet2HeaderSlice::from_slice(frame).map_err(|_| DecodeError::Truncated)?;
            ether_payload(eth.ether_type(), &frame[eth.slice().len()..])
        }
        LinkType::LinuxSll => cooked(frame, SLL_HEADER_LEN, SLL_HEADER_LEN - 2),
        LinkType::LinuxSll2 => cooked(frame, SLL2_HEADER_LEN, 0),
        LinkType::RawIp => Ok((VlanStack::default(), frame)),
        LinkType::Null => {
            let ip = frame.get(NULL_HEADER_LEN..).ok_or(DecodeError::Truncated)?;
            Ok((VlanStack::default(), ip))
        }
    }
}

/// A Linux cooked capture frame: a fixed header holding the protocol (an EtherType) at
/// `protocol_at`, then the network layer.
fn cooked(
    frame: &[u8],
    header_len: usize,
    protocol_at: usize,
) -> Result<(VlanStack, &[u8]), DecodeError> {
    let payload = frame.get(header_len..).ok_or(DecodeError::Truncated)?;
    let protocol = u16::from_be_bytes([frame[protocol_at], frame[protocol_at + 1]]);
    ether_payload(EtherType(protocol), payload)
}

/// Skips up to three VLAN tags (802.1Q, 802.1ad, and the pre-standard 0x9100) and
/// returns the IP packet after them.
#[inline]
fn ether_payload(
    mut ether_type: EtherType,
    mut payload: &[u8],
) -> Result<(VlanStack, &[u8]), DecodeError> {
    let mut vlans = VlanStack::default();
    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(
            ether_type,
            EtherType::VLAN_TAGGED_FRAME
                | EtherType::PROVIDER_BRIDGING
                | EtherType::VLAN_DOUBLE_TAGGED_FRAME
        ) {
            break;
        }
        let tag = SingleVlanSlice::from_slice(payload).map_err(|_| DecodeError::Truncated)?;
        vlans = vlans.push(tag.vlan_identifier().value());
        ether_type = tag.ether_type();
        payload = &payload[tag.header_slice().len()..];
    }
    match ether_type {
        EtherType::IPV4 | EtherType::IPV6 => Ok((vlans, payload)),
        _ => Err(DecodeError::NotIp),
    }
}

/// Copies the addresses, ports and fragment state out of an IP packet.
#[inline(always)]
fn summarize(ip: &[u8]) -> Result<Packet, DecodeError> {
    if ip.first().is_some_and(|b| b >> 4 == 4) {
        if let Some(packet) = ipv4(ip)? {
            return Ok(packet);
        }
    }
    let (sliced, _stopped_in_extensions) = LaxIpSlice::from_slice(ip).map_err(|e| match e {
        LaxHeaderSliceError::Len(_) => DecodeError::Truncated,
        LaxHeaderSliceError::Content(_) => DecodeError::Malformed,
    })?;
    let packet = match &sliced {
        LaxIpSlice::Ipv4(ip) => ipv4_packet(&ip.header(), ip.payload()),
        LaxIpSlice::Ipv6(ip) => {
            let h = ip.header();
            let (fragment, frag_id) = ipv6_fragment(ip.extensions());
            let src = IpAddr::V6(Ipv6Addr::from(h.source()));
            let dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
            transport(src, dst, fragment, frag_id, ip.payload())
        }
    };
    Ok(packet)
}

/// The common case, IPv4 without an authentication header, read through etherparse's
/// header slice alone: it checks version and header length once, and the payload is
/// what the total length and the captured bytes allow (RFC 791 3.1), as the lax IP
/// slicer would give it. `None` for a packet with an authentication header, which the
/// full IP slicer walks.
#[inline(always)]
fn ipv4(ip: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let h = Ipv4HeaderSlice::from_slice(ip).map_err(|e| match e {
        etherparse::err::ipv4::HeaderSliceError::Len(_) => DecodeError::Truncated,
        etherparse::err::ipv4::HeaderSliceError::Content(_) => DecodeError::Malformed,
    })?;
    if h.protocol() == IpNumber::AUTHENTICATION_HEADER {
        return Ok(None);
    }
    let header_len = h.slice().len();
    // A total length below the header length is one not yet filled in (captured on the
    // sending host before segmentation offload): the captured bytes are the packet.
    let total_len = match usize::from(h.total_len()) {
        n if n < header_len => ip.len(),
        n => n,
    };
    let end = total_len.min(ip.len());
    let payload = LaxIpPayloadSlice {
        incomplete: end < total_len,
        ip_number: h.protocol(),
        fragmented: h.is_fragmenting_payload(),
        len_source: etherparse::LenSource::Ipv4HeaderTotalLen,
        payload: &ip[header_len..end],
    };
    Ok(Some(ipv4_packet(&h, &payload)))
}

/// The summary of an IPv4 packet from its header and payload.
#[inline(always)]
fn ipv4_packet(h: &Ipv4HeaderSlice<'_>, payload: &LaxIpPayloadSlice<'_>) -> Packet {
    let fragment = ipv4_fragment(h.more_fragments(), h.fragments_offset().value());
    let frag_id = if fragment == Fragment::No {
        0
    } else {
        u32::from(h.identification())
    };
    let (src, dst) = (
        IpAddr::V4(h.source_addr()),
        IpAddr::V4(h.destination_addr()),
    );
    transport(src, dst, fragment, frag_id, payload)
}

/// Reads the ports and TCP flags from the IP payload, where the protocol has them.
#[inline(always)]
fn transport(
    src: IpAddr,
    dst: IpAddr,
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
        vlans: VlanStack::default(),
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
///
/// Walks the raw extension bytes with every length checked rather than with
/// etherparse's extension iterator, which reads past the end of a lax slice whose
/// extension chain was cut short (found by the `decode` fuzz target).
fn ipv6_fragment(exts: &etherparse::Ipv6ExtensionsSlice<'_>) -> (Fragment, u32) {
    let none = (Fragment::No, 0);
    let Some(mut next) = exts.first_header() else {
        return none;
    };
    let mut rest = exts.slice();
    loop {
        let len = match (next.0, rest.get(1)) {
            (IPV6_FRAGMENT, _) => return rest.get(..8).map_or(none, fragment_header),
            (AUTHENTICATION, Some(&n)) => (usize::from(n) + 2) * 4,
            (HOP_BY_HOP | ROUTING | DESTINATION | MOBILITY | HIP | SHIM6, Some(&n)) => {
                (usize::from(n) + 1) * 8
            }
            _ => return none,
        };
        next = IpNumber(rest[0]);
        rest = match rest.get(len..) {
            Some(r) => r,
            None => return none,
        };
    }
}

/// Reads an 8-byte IPv6 Fragment header: offset and M flag, identification.
fn fragment_header(h: &[u8]) -> (Fragment, u32) {
    let offset_and_flags = u16::from_be_bytes([h[2], h[3]]);
    let fragment = match (offset_and_flags & 1 == 1, offset_and_flags >> 3) {
        (false, 0) => Fragment::No,
        (true, 0) => Fragment::First,
        _ => Fragment::Later,
    };
    (fragment, u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, Tcp};
    use proptest::prelude::*;

    const CLIENT: &str = "10.20.1.10:49200";
    const C2: &str = "2.26.75.239:1971";

    fn ep(s: &str) -> std::net::SocketAddr {
        s.parse().unwrap()
    }

    fn syn() -> Vec<u8> {
        testkit::tcp(ep(CLIENT), ep(C2), Tcp::Syn, b"")
    }

    fn ports(p: &Packet) -> (Option<u16>, Option<u16>) {
        (p.src_port, p.dst_port)
    }

    #[test]
    fn ethernet_ipv4_tcp_syn() {
        let p = decode(LinkType::Ethernet, &syn(), 60, 7).unwrap();
        assert_eq!((p.src, p.dst), (ep(CLIENT).ip(), ep(C2).ip()));
        assert_eq!(ports(&p), (Some(49200), Some(1971)));
        assert_eq!((p.proto, p.time_ns, p.wire_len), (PROTO_TCP, 7, 60));
        assert!(p.is_syn() && !p.is_syn_ack());
        assert_eq!(p.fragment, Fragment::No);
    }

    #[test]
    fn every_link_type_gives_the_same_packet() {
        let eth = syn();
        let expected = decode(LinkType::Ethernet, &eth, 0, 0).unwrap();
        let mut null = 2u32.to_ne_bytes().to_vec(); // AF_INET in host byte order
        null.extend_from_slice(&testkit::to_raw_ip(&eth));
        let cases = [
            (LinkType::LinuxSll, testkit::to_sll(&eth)),
            (LinkType::LinuxSll2, testkit::to_sll2(&eth)),
            (LinkType::RawIp, testkit::to_raw_ip(&eth)),
            (LinkType::Null, null),
        ];
        for (link, frame) in cases {
            assert_eq!(decode(link, &frame, 0, 0), Ok(expected), "{link:?}");
        }
    }

    #[test]
    fn link_types_map_from_their_numbers() {
        for dlt in [1, 113, 276, 101, 12, 14, 228, 229, 0, 108] {
            assert!(LinkType::from_dlt(dlt).is_some(), "{dlt}");
        }
        assert_eq!(LinkType::from_dlt(105), None); // 802.11
    }

    #[test]
    fn up_to_three_vlan_tags_are_skipped_and_kept_in_the_key() {
        for ids in [&[100][..], &[100, 200], &[100, 200, 300]] {
            let frame = testkit::with_vlans(&syn(), ids);
            let p = decode(LinkType::Ethernet, &frame, 0, 0).unwrap();
            assert_eq!(ports(&p), (Some(49200), Some(1971)), "{ids:?}");
            assert_eq!(p.vlans.outer(), Some(100));
        }
        let one = decode(LinkType::Ethernet, &testkit::with_vlans(&syn(), &[7]), 0, 0).unwrap();
        let two = decode(
            LinkType::Ethernet,
            &testkit::with_vlans(&syn(), &[7, 8]),
            0,
            0,
        )
        .unwrap();
        assert_ne!(one.vlans, two.vlans);
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let header = etherparse::Ipv4Header {
            options: [1, 1, 1, 0].into(), // NOP, NOP, NOP, end of options list
            ..etherparse::Ipv4Header::new(20, 64, IpNumber::TCP, [10, 0, 0, 1], [2, 26, 75, 239])
                .unwrap()
        };
        let tcp = etherparse::TcpHeader::new(40000, 1971, 1, 1024);
        let mut frame = syn()[..14].to_vec();
        header.write(&mut frame).unwrap();
        tcp.write(&mut frame).unwrap();
        let p = decode(LinkType::Ethernet, &frame, 0, 0).unwrap();
        assert_eq!(ports(&p), (Some(40000), Some(1971)));
    }

    #[test]
    fn ipv4_fragments_first_has_ports_later_has_none() {
        let frame = testkit::udp(ep(CLIENT), ep(C2), &[0xaa; 64]);
        let (first, later) = testkit::fragment_ipv4(&frame, 32);
        let f = decode(LinkType::Ethernet, &first, 0, 0).unwrap();
        let l = decode(LinkType::Ethernet, &later, 0, 0).unwrap();
        assert_eq!(
            (f.fragment, ports(&f)),
            (Fragment::First, (Some(49200), Some(1971)))
        );
        assert_eq!((l.fragment, ports(&l)), (Fragment::Later, (None, None)));
        assert_eq!(f.frag_id, l.frag_id);
        assert_eq!(l.dst, ep(C2).ip());
    }

    /// An Ethernet frame with IPv6 (next header `first`) and the given extension headers
    /// and upper-layer bytes.
    fn ipv6_frame(first: u8, rest: &[u8]) -> Vec<u8> {
        let mut frame = syn()[..12].to_vec(); // MAC addresses
        frame.extend_from_slice(&[0x86, 0xdd]); // EtherType IPv6
        frame.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class, flow label
        frame.extend_from_slice(&(rest.len() as u16).to_be_bytes()); // payload length
        frame.extend_from_slice(&[first, 64]); // next header, hop limit
        frame.extend_from_slice(&"2001:db8::5".parse::<Ipv6Addr>().unwrap().octets());
        frame.extend_from_slice(&"2001:db8::66".parse::<Ipv6Addr>().unwrap().octets());
        frame.extend_from_slice(rest);
        frame
    }

    /// A 20-byte TCP header from port 50000 to 443 with the given flags.
    fn tcp_header(flags: u8) -> Vec<u8> {
        let mut h = vec![0xc3, 0x50, 0x01, 0xbb]; // ports 50000 -> 443
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // sequence, acknowledgment
        h.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]); // offset 5, flags, window, checksum, urgent
        h
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_transport() {
        let mut rest = vec![60, 0, 1, 4, 0, 0, 0, 0]; // Hop-by-Hop: next DestOpts, PadN
        rest.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // Destination Options: next TCP, PadN
        rest.extend_from_slice(&tcp_header(TCP_SYN));
        let p = decode(LinkType::Ethernet, &ipv6_frame(0, &rest), 0, 0).unwrap();
        assert_eq!((p.proto, ports(&p)), (PROTO_TCP, (Some(50000), Some(443))));
        assert_eq!(p.dst, "2001:db8::66".parse::<IpAddr>().unwrap());
        assert!(p.is_syn());
    }

    #[test]
    fn ipv6_fragments_first_has_ports_later_has_none() {
        let mut first = vec![6, 0, 0x00, 0x01, 0, 0, 0, 9]; // Fragment: next TCP, offset 0, M=1, id 9
        first.extend_from_slice(&tcp_header(TCP_ACK));
        let p = decode(LinkType::Ethernet, &ipv6_frame(44, &first), 0, 0).unwrap();
        assert_eq!(
            (p.fragment, ports(&p), p.frag_id),
            (Fragment::First, (Some(50000), Some(443)), 9)
        );
        let mut later = vec![6, 0, 0x00, 0x08, 0, 0, 0, 9]; // Fragment: offset 1 (8 bytes), M=0, id 9
        later.extend_from_slice(&[0xaa; 16]);
        let p = decode(LinkType::Ethernet, &ipv6_frame(44, &later), 0, 0).unwrap();
        assert_eq!(
            (p.fragment, ports(&p), p.frag_id),
            (Fragment::Later, (None, None), 9)
        );
    }

    #[test]
    fn snaplen_cut_inside_tcp_still_gives_ports() {
        let frame = testkit::tcp(ep(CLIENT), ep(C2), Tcp::Ack, &[0; 400]);
        let p = decode(LinkType::Ethernet, &frame[..14 + 20 + 4], 454, 0).unwrap();
        assert_eq!(ports(&p), (Some(49200), Some(1971)));
        let p = decode(LinkType::Ethernet, &frame[..14 + 20 + 2], 454, 0).unwrap();
        assert_eq!(ports(&p), (None, None));
    }

    #[test]
    fn broken_frames_are_reported_by_reason() {
        let frame = syn();
        assert_eq!(
            decode(LinkType::Ethernet, &frame[..10], 0, 0),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(LinkType::Ethernet, &frame[..20], 0, 0),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(LinkType::LinuxSll2, &frame[..19], 0, 0),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(LinkType::RawIp, &[], 0, 0),
            Err(DecodeError::Truncated)
        );
        let mut bad_ihl = frame.clone();
        bad_ihl[14] = 0x41; // IPv4 with a 4-byte header: below the minimum of 20
        assert_eq!(
            decode(LinkType::Ethernet, &bad_ihl, 0, 0),
            Err(DecodeError::Malformed)
        );
        let arp = testkit::arp_request();
        assert_eq!(
            decode(LinkType::Ethernet, &arp, 0, 0),
            Err(DecodeError::NotIp)
        );
    }

    #[test]
    fn ipv4_total_length_left_at_zero_by_offload_still_decodes() {
        let mut frame = syn();
        frame[16..18].copy_from_slice(&[0, 0]); // IPv4 total length: not filled in
        let p = decode(LinkType::Ethernet, &frame, 0, 0).unwrap();
        assert_eq!(ports(&p), (Some(49200), Some(1971)));
    }

    #[test]
    fn icmp_has_no_ports() {
        let frame = testkit::ip_only(ep(CLIENT).ip(), ep(C2).ip(), 1, &[8, 0, 0, 0]);
        let p = decode(LinkType::Ethernet, &frame, 0, 0).unwrap();
        assert_eq!((p.proto, ports(&p)), (1, (None, None)));
    }

    /// Inputs the `decode` fuzz target found: IPv6 packets whose extension chain ends
    /// inside a header. etherparse's extension iterator read past the captured bytes on
    /// them; the decoder walks the chain itself.
    #[test]
    fn cut_short_ipv6_extension_chain_is_not_read_past_its_end() {
        let inputs: [&[u8]; 2] = [
            &[
                0x68, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x68, 0x68, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0x1d, 0x40, 0xff, 0xff, 0x7a, 0x31, 0x19, 0x48, 0xd1, 0x00, 0x00,
                0x1d, 0x00, 0x23, 0x45, 0x00, 0x00, 0x23,
            ],
            &[
                0x68, 0xa1, 0x68, 0x00, 0x00, 0x40, 0x00, 0x41, 0xff, 0xf9, 0xff, 0xff, 0xc5, 0xc5,
                0xc5, 0xc5, 0xc5, 0xc5, 0xc5, 0xc5, 0xff, 0xff, 0xff, 0x3d, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x05, 0x00, 0x00, 0x00,
                0x1d, 0x00, 0x00, 0x45, 0x00, 0x00, 0x23,
            ],
        ];
        for input in inputs {
            for link in [LinkType::RawIp, LinkType::Null] {
                let _ = decode(link, input, 0, 0);
            }
        }
        // Hop-by-Hop announcing a Fragment header, then only 4 of its 8 bytes.
        let cut = ipv6_frame(0, &[44, 0, 1, 4, 0, 0, 0, 0, 6, 0, 0x00, 0x01]);
        let p = decode(LinkType::Ethernet, &cut, 0, 0).unwrap();
        assert_eq!((p.fragment, ports(&p)), (Fragment::No, (None, None)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Null] {
                let _ = decode(link, &bytes, 0, 0);
            }
        }

        #[test]
        fn mutated_real_frames_never_panic(at in 0usize..80, value in any::<u8>(), cut in 0usize..80) {
            let mut frame = testkit::with_vlans(&syn(), &[5]);
            let at = at % frame.len();
            frame[at] = value;
            frame.truncate(frame.len() - cut.min(frame.len()));
            let _ = decode(LinkType::Ethernet, &frame, 0, 0);
        }
    }
}
