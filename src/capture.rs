//! Capture sources: frames from capture files (pcap with micro- or nanosecond
//! timestamps, pcapng) through libpcap, fed one by one to an engine worker.
//!
//! libpcap is asked for nanosecond precision, so every file's timestamps reach the
//! pipeline in the same unit whatever the file stores. The frame is borrowed from
//! libpcap's buffer and never copied.

use std::path::Path;

use pcap::{Capture, Precision};

use crate::decode::LinkType;
use crate::engine::Worker;

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
    loop {
        match capture.next_packet() {
            Ok(packet) => {
                let h = packet.header;
                let time_ns = timeval_ns(h.ts.tv_sec, h.ts.tv_usec);
                worker.process(link, packet.data, h.len, time_ns);
                frames += 1;
            }
            Err(pcap::Error::NoMorePackets) => return Ok(frames),
            Err(e) => {
                return Err(CaptureError::Read {
                    file,
                    frames,
                    message: e.to_string(),
                });
            }
        }
    }
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
