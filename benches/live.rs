//! Live capture under load: the highest rate `tcpreplay --topspeed` reaches into a veth
//! pair, and what c2watch (1 and 2 workers) and `tcpdump -i` receive and drop at that
//! rate, each run the same way in the same session. tcpdump runs without a filter, so it
//! takes every frame to user space as c2watch does.
//!
//! Needs root: it creates two network namespaces joined by a veth pair (no addresses,
//! no routes), replays a capture of 64-byte frames from one side and captures on the
//! other. Nothing leaves the namespaces. Under `cargo bench --bench live` it replays 1
//! million frames, 3 runs per capturer; under `cargo test` a small smoke run (and, when
//! not root and CI is unset, nothing). `C2WATCH_BENCH_FRAMES` / `C2WATCH_BENCH_RUNS`
//! override the sizes.

use std::io::BufWriter;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use c2watch::decode::LinkType;
use c2watch::testkit::{self, CaptureWriter, Format, Tcp};

/// What one capture run saw.
#[derive(Debug, Clone, Copy)]
struct Run {
    sent: u64,
    rate_pps: f64,
    received: u64,
    dropped: u64,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the live bench needs root under CI"
        );
        println!("live bench skipped: needs root (network namespaces)");
        return;
    }
    let frames = env_or(
        "C2WATCH_BENCH_FRAMES",
        if bench { 1_000_000 } else { 5_000 },
    );
    let runs = env_or("C2WATCH_BENCH_RUNS", if bench { 3 } else { 1 }) as usize;
    let dir = tempfile::tempdir().expect("temporary directory");
    let capture = dir.path().join("live-64b.pcap");
    write_capture(&capture, frames);
    let net = Namespaces::new();
    println!(
        "tcpreplay --topspeed --preload-pcap, {frames} frames of 64 bytes, {runs} runs per capturer"
    );
    for (name, workers) in [
        ("tcpdump -i", 0),
        ("c2watch run, 1 worker", 1),
        ("c2watch run, 2 workers", 2),
    ] {
        let results: Vec<Run> = (0..runs)
            .map(|_| net.measure(&capture, workers, dir.path()))
            .collect();
        report(name, results);
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// 64-byte TCP frames between varied hosts; one in 500 to a Remcos endpoint.
fn write_capture(path: &Path, frames: u64) {
    let file = std::fs::File::create(path).expect("create capture");
    let mut w = CaptureWriter::new(BufWriter::new(file), Format::PcapMicro, LinkType::Ethernet)
        .expect("header");
    for i in 0..frames {
        let client = format!("10.1.{}.{}:{}", (i >> 8) as u8, i as u8, 1024 + i % 60_000);
        let server = if i % 500 == 499 {
            "2.26.75.239:1971".into()
        } else {
            format!("100.64.{}.1:443", (i >> 4) as u8)
        };
        let frame = testkit::tcp(
            client.parse().unwrap(),
            server.parse().unwrap(),
            Tcp::Ack,
            &[0; 10],
        );
        w.write(1_780_822_800_000_000_000 + i as i64 * 1_000, &frame)
            .expect("frame");
    }
    w.finish().expect("flush");
}

/// Two namespaces joined by a veth pair, removed on drop.
struct Namespaces {
    tap: String,
    sensor: String,
}

impl Namespaces {
    fn new() -> Namespaces {
        let id = std::process::id();
        let net = Namespaces {
            tap: format!("c2wb-tap-{id}"),
            sensor: format!("c2wb-sen-{id}"),
        };
        let (t, s) = (format!("c2wbT{id}"), format!("c2wbS{id}"));
        for ns in [&net.tap, &net.sensor] {
            sh(&["ip", "netns", "add", ns]);
        }
        sh(&["ip", "link", "add", &t, "type", "veth", "peer", "name", &s]);
        for (dev, ns) in [(&t, &net.tap), (&s, &net.sensor)] {
            sh(&["ip", "link", "set", dev, "netns", ns]);
            // No IPv6 autoconfiguration: the kernel would send its own packets on the link.
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        net
    }

    fn tap_dev(&self) -> String {
        format!("c2wbT{}", std::process::id())
    }

    fn sensor_dev(&self) -> String {
        format!("c2wbS{}", std::process::id())
    }

    /// One run: start the capturer, replay at top speed, stop it, read its counts.
    fn measure(&self, capture: &Path, workers: usize, dir: &Path) -> Run {
        let metrics = dir.join("metrics.prom");
        let mut child = self.start_capturer(workers, &metrics);
        std::thread::sleep(Duration::from_millis(800));
        let (sent, rate_pps) = self.replay(capture);
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = wait_output(&mut child);
        let (received, dropped) = if workers == 0 {
            tcpdump_counts(&out)
        } else {
            c2watch_counts(&metrics, &self.sensor_dev())
        };
        Run {
            sent,
            rate_pps,
            received,
            dropped,
        }
    }

    fn start_capturer(&self, workers: usize, metrics: &Path) -> Child {
        let dev = self.sensor_dev();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.sensor]);
        if workers == 0 {
            cmd.args([
                "tcpdump",
                "-i",
                &dev,
                "-n",
                "-B",
                "65536",
                "-w",
                "/dev/null",
            ]);
        } else {
            cmd.arg(env!("CARGO_BIN_EXE_c2watch"));
            cmd.args([
                "run",
                "--interface",
                &dev,
                "--workers",
                &workers.to_string(),
                "--metrics",
                "off",
            ]);
            cmd.arg("--metrics-file").arg(metrics);
        }
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start capturer")
    }

    /// Replays the capture at top speed; returns frames sent and the rate tcpreplay
    /// reports.
    fn replay(&self, capture: &Path) -> (u64, f64) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.tap,
                "tcpreplay",
                "--topspeed",
                "--preload-pcap",
                "-i",
                &self.tap_dev(),
            ])
            .arg(capture)
            .output()
            .expect("tcpreplay (apt-get install tcpreplay)");
        let text = String::from_utf8_lossy(&out.stdout);
        let sent = number_after(&text, "Successful packets:").unwrap_or(0.0) as u64;
        let rate = pps(&text).unwrap_or(0.0);
        (sent, rate)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.tap, &self.sensor] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("run command");
    assert!(status.success(), "{args:?} failed");
}

/// Waits (bounded) for a child to exit and returns its stderr.
fn wait_output(child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "capturer did not stop within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    err
}

/// The first number after `label` in `text`.
fn number_after(text: &str, label: &str) -> Option<f64> {
    let rest = &text[text.find(label)? + label.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// tcpreplay's "Rated: B Bps, M Mbps, P pps" packets-per-second figure.
fn pps(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("Rated:"))?;
    let before = line.split("pps").next()?;
    before.rsplit(',').next()?.trim().parse().ok()
}

/// tcpdump's exit summary: "N packets received by filter", "N packets dropped by kernel".
fn tcpdump_counts(stderr: &str) -> (u64, u64) {
    let count = |label: &str| {
        stderr
            .lines()
            .find(|l| l.contains(label))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (count("received by filter"), count("dropped by kernel"))
}

/// c2watch's packet and drop counters from its metrics file.
fn c2watch_counts(metrics: &Path, dev: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
    let value = |name: &str| {
        let key = format!("{name}{{interface=\"{dev}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        value("c2watch_packets_total"),
        value("c2watch_kernel_drops_total"),
    )
}

fn report(name: &str, mut runs: Vec<Run>) {
    runs.sort_by(|a, b| a.rate_pps.total_cmp(&b.rate_pps));
    let m = runs[runs.len() / 2];
    println!(
        "{name:<24} median run: sent {} at {:.0} pps; received {} ({:.2}%), dropped {}",
        m.sent,
        m.rate_pps,
        m.received,
        100.0 * m.received as f64 / m.sent.max(1) as f64,
        m.dropped
    );
    for r in &runs {
        println!(
            "    run: sent {} at {:.0} pps, received {}, dropped {}",
            r.sent, r.rate_pps, r.received, r.dropped
        );
    }
}
