//! Builders for test traffic: frames made with etherparse's `PacketBuilder` and capture
//! files (pcap with micro- or nanosecond timestamps, pcapng) written byte by byte.
//!
//! The unit tests, the integration tests, the benches and the shipped sample capture all
//! make their traffic here, so every capture the project uses is reproducible from code.
//! The writers follow the file formats directly (pcap: the `pcap-savefile(5)` layout;
//! pcapng: draft-ietf-opsawg-pcapng sections 4.1, 4.2 and 4.3) rather than going through
//! libpcap, which cannot write pcapng.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};

use crate::decode::LinkType;

/// Source MAC address of built frames.
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// Destination MAC address of built frames.
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// TCP flags a built segment carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tcp {
    /// The client's SYN.
    Syn,
    /// The server's SYN-ACK.
    SynAck,
    /// An ACK with data (or none).
    Ack,
}

/// An Ethernet frame carrying a TCP segment between two endpoints of the same family.
pub fn tcp(src: SocketAddr, dst: SocketAddr, flags: Tcp, payload: &[u8]) -> Vec<u8> {
    let builder = ip_builder(src.ip(), dst.ip()).tcp(src.port(), dst.port(), 1000, 64240);
    let builder = match flags {
        Tcp::Syn => builder.syn(),
        Tcp::SynAck => builder.syn().ack(1),
        Tcp::Ack => builder.ack(1),
    };
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// An Ethernet frame carrying a UDP datagram between two endpoints of the same family.
pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let builder = ip_builder(src.ip(), dst.ip()).udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// An Ethernet frame carrying an IP packet of protocol `proto` with no ports (ICMP, GRE).
pub fn ip_only(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let builder = ip_builder(src, dst);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, IpNumber(proto), payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// Starts an Ethernet + IP packet builder for the given address pair.
fn ip_builder(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("test frame mixes address families: {src} -> {dst}"),
    }
}

/// Inserts 802.1Q tags with the given ids (outermost first) after the MAC addresses of
/// an Ethernet frame. The outermost tag uses TPID 0x88a8 (802.1ad) when there is more
/// than one, as provider bridges do.
pub fn with_vlans(frame: &[u8], ids: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (i, id) in ids.iter().enumerate() {
        let tpid: u16 = if i == 0 && ids.len() > 1 {
            0x88a8
        } else {
            0x8100
        };
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// Turns an Ethernet frame into a Linux cooked capture v1 frame (16-byte header).
pub fn to_sll(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 2);
    out.extend_from_slice(&0u16.to_be_bytes()); // packet type: to us
    out.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
    out.extend_from_slice(&6u16.to_be_bytes()); // link-layer address length
    out.extend_from_slice(&frame[6..12]); // source MAC
    out.extend_from_slice(&[0, 0]); // address padding to 8 bytes
    out.extend_from_slice(&frame[12..]); // EtherType, then the network layer
    out
}

/// Turns an Ethernet frame into a Linux cooked capture v2 frame (20-byte header).
pub fn to_sll2(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 6);
    out.extend_from_slice(&frame[12..14]); // protocol (EtherType)
    out.extend_from_slice(&[0, 0]); // reserved
    out.extend_from_slice(&3u32.to_be_bytes()); // interface index
    out.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
    out.push(0); // packet type: to us
    out.push(6); // link-layer address length
    out.extend_from_slice(&frame[6..12]); // source MAC
    out.extend_from_slice(&[0, 0]); // address padding to 8 bytes
    out.extend_from_slice(&frame[14..]);
    out
}

/// Strips the Ethernet header: the raw IP packet (`LINKTYPE_RAW`).
pub fn to_raw_ip(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// Splits the IPv4 packet of an untagged Ethernet frame into two fragments at the
/// given payload offset (a multiple of 8), returning the two Ethernet frames.
pub fn fragment_ipv4(frame: &[u8], at: usize) -> (Vec<u8>, Vec<u8>) {
    assert!(at % 8 == 0, "fragment offset must be a multiple of 8");
    let (header, _) = Ipv4Header::from_slice(&frame[14..]).expect("an IPv4 frame");
    let payload = &frame[14 + header.header_len()..];
    let part = |bytes: &[u8], offset: usize, more: bool| {
        let mut h = header.clone();
        h.more_fragments = more;
        h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
        h.set_payload_len(bytes.len()).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut out = frame[..14].to_vec();
        h.write(&mut out).unwrap();
        out.extend_from_slice(bytes);
        out
    };
    (
        part(&payload[..at], 0, true),
        part(&payload[at..], at, false),
    )
}

/// Capture file format written by [`CaptureWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap with microsecond timestamps (magic `a1b2c3d4`).
    PcapMicro,
    /// Classic pcap with nanosecond timestamps (magic `a1b23c4d`).
    PcapNano,
    /// pcapng with one interface and nanosecond timestamps (`if_tsresol` = 9).
    Pcapng,
}

/// Writes frames to a capture file, in host byte order as capture tools do.
pub struct CaptureWriter<W: Write> {
    out: W,
    format: Format,
}

impl<W: Write> CaptureWriter<W> {
    /// Starts a capture of the given link type, writing the file header.
    pub fn new(mut out: W, format: Format, link: LinkType) -> io::Result<Self> {
        match format {
            Format::PcapMicro => pcap_header(&mut out, 0xa1b2_c3d4, link)?,
            Format::PcapNano => pcap_header(&mut out, 0xa1b2_3c4d, link)?,
            Format::Pcapng => pcapng_header(&mut out, link)?,
        }
        Ok(CaptureWriter { out, format })
    }

    /// Appends one frame captured at `time_ns` (nanoseconds since the epoch).
    pub fn write(&mut self, time_ns: i64, frame: &[u8]) -> io::Result<()> {
        let len = frame.len() as u32;
        match self.format {
            Format::PcapMicro | Format::PcapNano => {
                let frac = if self.format == Format::PcapMicro {
                    1_000
                } else {
                    1
                };
                let secs = time_ns.div_euclid(1_000_000_000) as u32;
                let sub = (time_ns.rem_euclid(1_000_000_000) / frac) as u32;
                for field in [secs, sub, len, len] {
                    self.out.write_all(&field.to_ne_bytes())?;
                }
                self.out.write_all(frame)
            }
            Format::Pcapng => self.enhanced_packet(time_ns as u64, frame),
        }
    }

    /// Writes a pcapng Enhanced Packet Block (type 6).
    fn enhanced_packet(&mut self, time_ns: u64, frame: &[u8]) -> io::Result<()> {
        let padded = frame.len().div_ceil(4) * 4;
        let total = (32 + padded) as u32;
        let words = [6, total, 0, (time_ns >> 32) as u32, time_ns as u32];
        for w in words
            .into_iter()
            .chain([frame.len() as u32, frame.len() as u32])
        {
            self.out.write_all(&w.to_ne_bytes())?;
        }
        self.out.write_all(frame)?;
        self.out.write_all(&[0u8; 3][..padded - frame.len()])?;
        self.out.write_all(&total.to_ne_bytes())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes the 24-byte pcap global header.
fn pcap_header(out: &mut impl Write, magic: u32, link: LinkType) -> io::Result<()> {
    out.write_all(&magic.to_ne_bytes())?;
    out.write_all(&2u16.to_ne_bytes())?; // version major
    out.write_all(&4u16.to_ne_bytes())?; // version minor
    out.write_all(&0i32.to_ne_bytes())?; // thiszone
    out.write_all(&0u32.to_ne_bytes())?; // sigfigs
    out.write_all(&262_144u32.to_ne_bytes())?; // snaplen
    out.write_all(&(link.dlt() as u32).to_ne_bytes())
}

/// Writes a pcapng Section Header Block and one Interface Description Block whose
/// `if_tsresol` option says timestamps count nanoseconds.
fn pcapng_header(out: &mut impl Write, link: LinkType) -> io::Result<()> {
    // Section Header Block: type, length 28, byte-order magic, version 1.0,
    // section length unknown (-1), length again.
    for w in [0x0a0d_0d0au32, 28, 0x1a2b_3c4d] {
        out.write_all(&w.to_ne_bytes())?;
    }
    out.write_all(&1u16.to_ne_bytes())?;
    out.write_all(&0u16.to_ne_bytes())?;
    out.write_all(&(-1i64).to_ne_bytes())?;
    out.write_all(&28u32.to_ne_bytes())?;
    // Interface Description Block: type 1, length 32, link type, reserved, snaplen,
    // option if_tsresol (code 9, length 1, value 9, 3 bytes padding), opt_endofopt.
    out.write_all(&1u32.to_ne_bytes())?;
    out.write_all(&32u32.to_ne_bytes())?;
    out.write_all(&(link.dlt() as u16).to_ne_bytes())?;
    out.write_all(&0u16.to_ne_bytes())?;
    out.write_all(&262_144u32.to_ne_bytes())?;
    out.write_all(&9u16.to_ne_bytes())?;
    out.write_all(&1u16.to_ne_bytes())?;
    out.write_all(&[9, 0, 0, 0])?;
    out.write_all(&0u32.to_ne_bytes())?;
    out.write_all(&32u32.to_ne_bytes())
}

/// Capture time of the first frame of the shipped sample: 2026-06-07 09:00:00 UTC.
pub const SAMPLE_START_NS: i64 = 1_780_822_800 * 1_000_000_000;

/// The shipped sample capture (`tests/data/remcos-sample.pcap`): ordinary web and DNS
/// traffic with, among it, Remcos beacons to both shipped endpoints, a connection to a
/// Remcos address on another port, traffic to a Remcos port on an unrelated address,
/// an ARP frame and a truncated frame. Deterministic, so the committed file can be
/// checked against this code.
pub fn remcos_sample() -> Vec<u8> {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let ep = |s: &str| s.parse::<SocketAddr>().expect("sample endpoint");
    for i in 0..40u16 {
        let client = ep(&format!("10.20.1.{}:{}", 20 + i % 7, 50_000 + i));
        let server =
            ep(["93.184.215.14:443", "151.101.1.69:443", "140.82.121.4:443"][usize::from(i % 3)]);
        frames.extend(tcp_session(client, server, 3));
        let resolver = ep("10.20.0.53:53");
        frames.push(udp(
            ep(&format!("10.20.1.{}:{}", 20 + i % 7, 40_000 + i)),
            resolver,
            b"\x12\x34query",
        ));
        frames.push(udp(
            resolver,
            ep(&format!("10.20.1.{}:{}", 20 + i % 7, 40_000 + i)),
            b"\x12\x34answer",
        ));
        if i % 10 == 0 {
            frames.extend(tcp_session(
                ep(&format!("10.20.1.10:{}", 49_200 + i)),
                ep("2.26.75.239:1971"),
                4,
            ));
        }
        if i == 15 {
            frames.extend(tcp_session(
                ep("192.168.50.23:51515"),
                ep("192.177.111.89:7788"),
                4,
            ));
            frames.extend(tcp_session(
                ep("10.20.1.11:52000"),
                ep("2.26.75.239:443"),
                2,
            ));
            frames.extend(tcp_session(ep("10.20.1.12:52001"), ep("8.8.4.4:1971"), 2));
            frames.push(arp_request());
            let mut cut = tcp(
                ep("10.20.1.13:52002"),
                ep("93.184.215.14:80"),
                Tcp::Ack,
                b"",
            );
            cut.truncate(20);
            frames.push(cut);
        }
    }
    let mut writer = CaptureWriter::new(Vec::new(), Format::PcapMicro, LinkType::Ethernet)
        .expect("writing to a Vec cannot fail");
    for (i, frame) in frames.iter().enumerate() {
        let time_ns = SAMPLE_START_NS + i as i64 * 250_000_000;
        writer
            .write(time_ns, frame)
            .expect("writing to a Vec cannot fail");
    }
    writer.finish().expect("writing to a Vec cannot fail")
}

/// A short TCP session: handshake, `data` segments each way, and the client's last ACK.
pub fn tcp_session(client: SocketAddr, server: SocketAddr, data: usize) -> Vec<Vec<u8>> {
    let mut frames = vec![
        tcp(client, server, Tcp::Syn, b""),
        tcp(server, client, Tcp::SynAck, b""),
        tcp(client, server, Tcp::Ack, b""),
    ];
    for _ in 0..data {
        frames.push(tcp(client, server, Tcp::Ack, &[0x17; 48]));
        frames.push(tcp(server, client, Tcp::Ack, &[0x17; 96]));
    }
    frames
}

/// An ARP who-has request: a frame that is not IP.
pub fn arp_request() -> Vec<u8> {
    let mut frame = [0xff; 6].to_vec(); // broadcast destination
    frame.extend_from_slice(&MAC_A);
    frame.extend_from_slice(&[0x08, 0x06]); // EtherType ARP
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame.extend_from_slice(&MAC_A);
    frame.extend_from_slice(&[10, 20, 1, 20]); // sender address
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[10, 20, 0, 1]); // target address
    frame
}
