//! Capture sources: live interfaces and capture files (pcap with micro- or nanosecond
//! timestamps, pcapng) through libpcap, each frame fed to an engine worker.
//!
//! libpcap is asked for nanosecond precision, so timestamps reach the pipeline in one
//! unit whatever the source. The frame is borrowed from libpcap's buffer, never copied.
//!
//! Live capture spreads an interface over several workers with Linux's AF_PACKET fanout
//! (`packet(7)`, `PACKET_FANOUT`): every worker opens its own libpcap handle on the
//! interface and joins one fanout group in hash mode, in which the kernel picks the
//! socket from a flow hash that is the same for both directions of a flow, so one flow
//! is seen by one worker. The defragment flag sends every IP fragment of a datagram to
//! the worker that sees its first fragment.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pcap::{Active, Capture, Precision};
use prometheus::IntCounter;

use crate::decode::LinkType;
use crate::engine::Worker;

/// How long a worker waits for frames before it looks at the stop flag again; also the
/// kernel's block timeout, the longest a frame waits in a partly filled ring block.
const READ_TIMEOUT_MS: i32 = 100;
/// Longest a stopping worker spends reading frames the kernel had already queued.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// How often a worker reads its socket's drop counters.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Smallest interval between two warnings about drops from one worker.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// `SOL_PACKET` socket level (`linux/socket.h`).
const SOL_PACKET: libc::c_int = 263;
/// `PACKET_FANOUT` socket option (`linux/if_packet.h`).
const PACKET_FANOUT: libc::c_int = 18;
/// Fanout mode: pick the socket by the flow hash, which is direction-symmetric.
const PACKET_FANOUT_HASH: u32 = 0;
/// Fanout flag: defragment IP before hashing, so fragments follow their datagram.
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;

/// A capture file that could not be read (whole or in part).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// libpcap could not open the file.
    #[error("{file}: cannot open capture: {message}")]
    Open {
        /// The file.
        file: String,
        /// libpcap's message.
        message: String,
    },
    /// The file's link type is not one the decoder knows.
    #[error(
        "{file}: link type {dlt} is not supported (Ethernet, Linux cooked v1/v2, raw IP, BSD loopback are)"
    )]
    LinkType {
        /// The file.
        file: String,
        /// The `LINKTYPE_` number.
        dlt: i32,
    },
    /// A live capture could not be opened or set up.
    #[error("interface {interface}: {message}")]
    Interface {
        /// The interface.
        interface: String,
        /// What failed, with libpcap's or the kernel's message.
        message: String,
    },
    /// Reading stopped partway, for example at a truncated last record.
    #[error("{file}: read error after {frames} frames: {message}")]
    Read {
        /// The file.
        file: String,
        /// Frames read before the error.
        frames: u64,
        /// libpcap's message.
        message: String,
    },
}

/// Reads every frame of a capture file into `worker`. Returns the number of frames read.
pub fn replay_file(path: &Path, worker: &mut Worker) -> Result<u64, CaptureError> {
    let file = path.display().to_string();
    let mut capture = Capture::from_file_with_precision(path, Precision::Nano).map_err(|e| {
        CaptureError::Open {
            file: file.clone(),
            message: e.to_string(),
        }
    })?;
    let dlt = capture.get_datalink().0;
    let link = LinkType::from_dlt(dlt).ok_or(CaptureError::LinkType {
        file: file.clone(),
        dlt,
    })?;
    let mut frames = 0u64;
    // libpcap's own read loop with a callback, rather than one call per frame.
    let read = capture.for_each(None, |packet| {
        let h = packet.header;
        worker.process(
            link,
            packet.data,
            h.len,
            timeval_ns(h.ts.tv_sec, h.ts.tv_usec),
        );
        frames += 1;
    });
    match read {
        Ok(()) | Err(pcap::Error::NoMorePackets) => Ok(frames),
        Err(e) => Err(CaptureError::Read {
            file,
            frames,
            message: e.to_string(),
        }),
    }
}

/// Settings of a live capture, from `[capture]` and the command line.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Interface to capture on.
    pub interface: String,
    /// Bytes kept of each frame.
    pub snaplen_bytes: u32,
    /// Kernel buffer (ring) size per worker, in bytes.
    pub buffer_bytes: u64,
    /// Optional BPF prefilter, empty for none.
    pub bpf_filter: String,
}

/// Opens one promiscuous live capture handle on the interface.
pub fn open_live(settings: &LiveSettings) -> Result<Capture<Active>, CaptureError> {
    let fail = |message: String| CaptureError::Interface {
        interface: settings.interface.clone(),
        message,
    };
    let buffer = i32::try_from(settings.buffer_bytes).unwrap_or(i32::MAX);
    let snaplen = i32::try_from(settings.snaplen_bytes).unwrap_or(i32::MAX);
    let mut capture = Capture::from_device(settings.interface.as_str())
        .map_err(|e| fail(e.to_string()))?
        .promisc(true)
        .snaplen(snaplen)
        .buffer_size(buffer)
        .timeout(READ_TIMEOUT_MS)
        .precision(Precision::Nano)
        .open()
        .map_err(|e| fail(e.to_string()))?;
    if !settings.bpf_filter.is_empty() {
        let filter = &settings.bpf_filter;
        capture
            .filter(filter, true)
            .map_err(|e| fail(format!("BPF filter `{filter}`: {e}")))?;
    }
    let dlt = capture.get_datalink().0;
    if LinkType::from_dlt(dlt).is_none() {
        return Err(fail(format!("link type {dlt} is not supported")));
    }
    Ok(capture)
}

/// Joins a capture handle to the process's fanout group `group` in flow-hash mode.
pub fn join_fanout(
    capture: &Capture<Active>,
    interface: &str,
    group: u16,
) -> Result<(), CaptureError> {
    let arg: u32 = u32::from(group) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
    // SAFETY: the descriptor is the open packet socket owned by `capture`, and the option
    // value is a live u32 whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            capture.as_raw_fd(),
            SOL_PACKET,
            PACKET_FANOUT,
            (&arg as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let message = format!(
            "joining fanout group {group}: {}",
            std::io::Error::last_os_error()
        );
        return Err(CaptureError::Interface {
            interface: interface.into(),
            message,
        });
    }
    Ok(())
}

/// Kernel drop accounting for one capture handle.
struct Drops {
    counter: IntCounter,
    seen: u32,
    last_check: Instant,
    last_warning: Option<Instant>,
}

impl Drops {
    /// Folds new kernel and interface drops into the metric, warning (rate-limited)
    /// when they grow.
    fn check(&mut self, capture: &mut Capture<Active>, interface: &str, worker: usize) {
        self.last_check = Instant::now();
        let Ok(stats) = capture.stats() else { return };
        let total = stats.dropped.wrapping_add(stats.if_dropped);
        let new = total.wrapping_sub(self.seen);
        self.seen = total;
        if new == 0 {
            return;
        }
        self.counter.inc_by(u64::from(new));
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= DROP_WARNING_INTERVAL)
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                interface,
                worker,
                dropped = new,
                total,
                "Kernel dropped packets"
            );
        }
    }
}

/// One live capture handle in non-blocking mode with what reading it needs.
struct LiveReader<'a> {
    capture: Capture<Active>,
    link: LinkType,
    not_before_ns: i64,
    interface: &'a str,
}

/// The result of one read from the ring.
enum Read {
    /// Frames were processed (or skipped as older than the worker's start).
    Frames,
    /// Nothing is ready.
    Empty,
}

impl LiveReader<'_> {
    /// Reads every frame that is ready (one ring block, with TPACKET_V3) into `worker`
    /// through libpcap's callback loop.
    #[inline]
    fn read(&mut self, worker: &mut Worker) -> Result<Read, CaptureError> {
        let (link, not_before_ns) = (self.link, self.not_before_ns);
        let read = self.capture.dispatch(None, |packet| {
            let h = packet.header;
            let time_ns = timeval_ns(h.ts.tv_sec, h.ts.tv_usec);
            if time_ns >= not_before_ns {
                worker.process(link, packet.data, h.len, time_ns);
            }
        });
        match read {
            Ok(0) => Ok(Read::Empty),
            Ok(_) => Ok(Read::Frames),
            Err(e) => Err(CaptureError::Interface {
                interface: self.interface.into(),
                message: format!("capture stopped: {e}"),
            }),
        }
    }

    /// Reads what the kernel already holds for this socket: until the ring has stayed
    /// empty for longer than the block timeout (after which the kernel has handed over
    /// every partly filled block), or `limit` has passed.
    fn drain(&mut self, worker: &mut Worker, limit: Duration) -> Result<(), CaptureError> {
        let deadline = Instant::now() + limit;
        let fd = self.capture.as_raw_fd();
        while Instant::now() < deadline {
            if let Read::Empty = self.read(worker)? {
                if !wait_readable(fd, 2 * READ_TIMEOUT_MS) {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Captures on a live handle into `worker` until `stop` is set, then reads what the
/// kernel had already queued. Frames stamped before `not_before_ns` are skipped: with
/// several workers, frames queued before every socket had joined the fanout group were
/// delivered to all of them, and only the first worker keeps them.
pub fn run_live(
    capture: Capture<Active>,
    worker: &mut Worker,
    stop: &AtomicBool,
    not_before_ns: i64,
    (interface, index): (&str, usize),
    drops: IntCounter,
) -> Result<(), CaptureError> {
    let fail = |message: String| CaptureError::Interface {
        interface: interface.into(),
        message,
    };
    let dlt = capture.get_datalink().0;
    let link =
        LinkType::from_dlt(dlt).ok_or_else(|| fail(format!("link type {dlt} is not supported")))?;
    // Non-blocking reads with our own poll: with TPACKET_V3, libpcap's read timeout does
    // not fire while no packet arrives, and an idle worker must still notice a stop,
    // publish its counters and read its drop statistics.
    let capture = capture
        .setnonblock()
        .map_err(|e| fail(format!("non-blocking mode: {e}")))?;
    let mut reader = LiveReader {
        capture,
        link,
        not_before_ns,
        interface,
    };
    let fd = reader.capture.as_raw_fd();
    let mut drops = Drops {
        counter: drops,
        seen: 0,
        last_check: Instant::now(),
        last_warning: None,
    };
    while !stop.load(Ordering::Relaxed) {
        if let Read::Empty = reader.read(worker)? {
            worker.tick(crate::timefmt::now_ns());
            worker.flush();
            wait_readable(fd, READ_TIMEOUT_MS);
        }
        if drops.last_check.elapsed() >= STATS_INTERVAL {
            drops.check(&mut reader.capture, interface, index);
        }
    }
    reader.drain(worker, DRAIN_LIMIT)?;
    drops.check(&mut reader.capture, interface, index);
    worker.flush();
    Ok(())
}

/// Waits until the capture socket has frames or `timeout_ms` passes; true if it has.
fn wait_readable(fd: std::os::fd::RawFd, timeout_ms: i32) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; a failed poll is followed
    // by a read that reports any error.
    let ready = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
    ready > 0
}

/// Nanoseconds since the epoch from a timeval that libpcap filled with nanoseconds.
// `time_t` and `suseconds_t` are narrower than i64 on some targets.
#[allow(clippy::useless_conversion)]
fn timeval_ns(secs: libc::time_t, nanos: libc::suseconds_t) -> i64 {
    i64::from(secs) * 1_000_000_000 + i64::from(nanos)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use tokio::sync::mpsc;

    use super::*;
    use crate::alert::Alert;
    use crate::engine::{Engine, EngineSettings, QueueFull};
    use crate::flow::FlowLimits;
    use crate::indicator::{HitKind, Indicator, IndicatorSet};
    use crate::metrics::Metrics;
    use crate::testkit::{self, CaptureWriter, Format, Tcp};

    const T0: i64 = 1_780_822_800_000_000_000;

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn indicators() -> IndicatorSet {
        let endpoint = |s: &str| Indicator::bare(ep(s).ip(), Some(ep(s).port()), "test");
        IndicatorSet::new([
            endpoint("2.26.75.239:1971"),
            endpoint("192.177.111.89:7788"),
            endpoint("[2001:db8::66]:443"),
            Indicator::bare("198.51.100.7".parse().unwrap(), None, "test"),
        ])
    }

    /// Writes `frames` (one every 1.000001 ms) to a capture file of the given format and
    /// link type, replays it, and returns the alerts in order.
    fn replay(frames: &[Vec<u8>], format: Format, link: LinkType) -> Vec<Alert> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.cap");
        let file = std::fs::File::create(&path).unwrap();
        let mut w = CaptureWriter::new(std::io::BufWriter::new(file), format, link).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write(T0 + i as i64 * 1_000_001, f).unwrap();
        }
        w.finish().unwrap();
        let (tx, mut rx) = mpsc::channel(1024);
        let settings = EngineSettings {
            flow: FlowLimits {
                idle_timeout_ns: 60_000_000_000,
                max_flows: 1000,
            },
            aggregate_window_ms: 0,
            queue_full: QueueFull::Wait,
        };
        let set = Arc::new(ArcSwap::from_pointee(indicators()));
        let engine = Arc::new(Engine::new(set, settings, tx, Arc::new(Metrics::new())));
        let read = replay_file(&path, &mut engine.worker(None)).unwrap();
        assert_eq!(read, frames.len() as u64);
        engine.finish();
        drop(engine);
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn summary(a: &Alert) -> (HitKind, String, String) {
        let side = |e: crate::flow::Endpoint| match e.port {
            Some(p) => SocketAddr::new(e.addr, p).to_string(),
            None => e.addr.to_string(),
        };
        (a.kind, side(a.client), side(a.server))
    }

    #[test]
    fn every_file_format_gives_the_same_alerts_and_exact_times() {
        let frames = testkit::tcp_session(ep("10.0.0.5:49200"), ep("2.26.75.239:1971"), 2);
        for format in [Format::PcapMicro, Format::PcapNano, Format::Pcapng] {
            let alerts = replay(&frames, format, LinkType::Ethernet);
            assert_eq!(alerts.len(), 1, "{format:?}");
            assert_eq!(alerts[0].time_ms, T0 / 1_000_000, "{format:?}");
            let s = summary(&alerts[0]);
            assert_eq!(
                s,
                (
                    HitKind::Endpoint,
                    "10.0.0.5:49200".into(),
                    "2.26.75.239:1971".into()
                )
            );
        }
    }

    #[test]
    fn every_link_type_gives_the_same_alerts() {
        let eth = testkit::tcp_session(ep("10.0.0.5:49200"), ep("192.177.111.89:7788"), 1);
        type Convert = fn(&[u8]) -> Vec<u8>;
        let conversions: [(LinkType, Convert); 3] = [
            (LinkType::LinuxSll, testkit::to_sll),
            (LinkType::LinuxSll2, testkit::to_sll2),
            (LinkType::RawIp, testkit::to_raw_ip),
        ];
        let expected: Vec<_> = replay(&eth, Format::Pcapng, LinkType::Ethernet)
            .iter()
            .map(summary)
            .collect();
        assert_eq!(expected.len(), 1);
        for (link, convert) in conversions {
            let frames: Vec<_> = eth.iter().map(|f| convert(f)).collect();
            let got: Vec<_> = replay(&frames, Format::PcapNano, link)
                .iter()
                .map(summary)
                .collect();
            assert_eq!(got, expected, "{link:?}");
        }
    }

    #[test]
    fn indicator_is_the_server_even_when_its_reply_is_seen_first() {
        let client = ep("10.0.0.5:49200");
        let c2 = ep("2.26.75.239:1971");
        let frames = vec![
            testkit::tcp(c2, client, Tcp::Ack, b"hello"),
            testkit::tcp(client, c2, Tcp::Ack, b""),
        ];
        let alerts = replay(&frames, Format::PcapMicro, LinkType::Ethernet);
        let s: Vec<_> = alerts.iter().map(summary).collect();
        assert_eq!(s, [(HitKind::Endpoint, client.to_string(), c2.to_string())]);
    }

    #[test]
    fn hit_kinds_and_non_hits() {
        let frames = [
            testkit::tcp(ep("10.0.0.5:50001"), ep("2.26.75.239:443"), Tcp::Syn, b""), // other port
            testkit::tcp(ep("10.0.0.5:50002"), ep("2.26.75.240:1971"), Tcp::Syn, b""), // other address
            testkit::udp(ep("10.0.0.5:50003"), ep("198.51.100.7:53"), b"q"), // address indicator
            testkit::tcp(
                ep("[2001:db8::5]:50004"),
                ep("[2001:db8::66]:443"),
                Tcp::Syn,
                b"",
            ), // IPv6
            testkit::ip_only(
                "10.0.0.5".parse().unwrap(),
                "2.26.75.239".parse().unwrap(),
                1,
                &[8, 0, 0, 0],
            ),
        ];
        let alerts = replay(&frames, Format::PcapMicro, LinkType::Ethernet);
        let s: Vec<_> = alerts.iter().map(summary).collect();
        assert_eq!(
            s,
            [
                (
                    HitKind::AddressOtherPort,
                    "10.0.0.5:50001".into(),
                    "2.26.75.239:443".into()
                ),
                (
                    HitKind::Address,
                    "10.0.0.5:50003".into(),
                    "198.51.100.7:53".into()
                ),
                (
                    HitKind::Endpoint,
                    "[2001:db8::5]:50004".into(),
                    "[2001:db8::66]:443".into()
                ),
                (
                    HitKind::AddressOtherPort,
                    "10.0.0.5".into(),
                    "2.26.75.239".into()
                ),
            ]
        );
    }

    #[test]
    fn fragments_join_their_flow_and_a_lone_later_fragment_is_address_only() {
        let datagram = testkit::udp(ep("10.0.0.5:50000"), ep("192.177.111.89:7788"), &[1; 64]);
        let (first, later) = testkit::fragment_ipv4(&datagram, 32);
        let both = replay(
            &[first, later.clone()],
            Format::PcapMicro,
            LinkType::Ethernet,
        );
        let s: Vec<_> = both.iter().map(summary).collect();
        assert_eq!(
            s,
            [(
                HitKind::Endpoint,
                "10.0.0.5:50000".into(),
                "192.177.111.89:7788".into()
            )]
        );
        let alone = replay(&[later], Format::PcapMicro, LinkType::Ethernet);
        let s: Vec<_> = alone.iter().map(summary).collect();
        assert_eq!(
            s,
            [(
                HitKind::AddressOtherPort,
                "10.0.0.5".into(),
                "192.177.111.89".into()
            )]
        );
    }

    #[test]
    fn the_same_tuple_in_two_vlans_is_two_flows() {
        let syn = testkit::tcp(ep("10.0.0.5:50000"), ep("2.26.75.239:1971"), Tcp::Syn, b"");
        let frames = [
            testkit::with_vlans(&syn, &[10]),
            testkit::with_vlans(&syn, &[20, 30]),
        ];
        let alerts = replay(&frames, Format::Pcapng, LinkType::Ethernet);
        let vlans: Vec<_> = alerts.iter().map(|a| a.vlan).collect();
        assert_eq!(vlans, [Some(10), Some(20)]);
    }

    #[test]
    fn unreadable_and_unsupported_files_are_named() {
        let (tx, _rx) = mpsc::channel(1);
        let settings = EngineSettings {
            flow: FlowLimits {
                idle_timeout_ns: 1,
                max_flows: 1,
            },
            aggregate_window_ms: 0,
            queue_full: QueueFull::Drop,
        };
        let set = Arc::new(ArcSwap::from_pointee(IndicatorSet::default()));
        let engine = Arc::new(Engine::new(set, settings, tx, Arc::new(Metrics::new())));
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pcap");
        std::fs::write(&junk, b"not a capture file at all").unwrap();
        let err = replay_file(&junk, &mut engine.worker(None)).unwrap_err();
        assert!(
            err.to_string().starts_with(&junk.display().to_string()),
            "{err}"
        );
        let mut bytes = testkit::remcos_sample();
        bytes.truncate(bytes.len() - 30);
        std::fs::write(&junk, bytes).unwrap();
        let err = replay_file(&junk, &mut engine.worker(None)).unwrap_err();
        assert!(matches!(err, CaptureError::Read { .. }), "{err}");
    }
}
