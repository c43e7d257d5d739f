//! End-to-end replay throughput against a reference measured in the same run.
//!
//! Writes a capture of 64-byte frames (5 million under `cargo bench`; a small smoke run
//! under `cargo test`), then times, alternately, `c2watch replay` on it and `tcpdump -nr
//! FILE -w /dev/null` with a BPF filter selecting the same indicator traffic. Prints the
//! median wall time of each, c2watch's packets per second, the ratio of the two, and
//! c2watch's peak resident memory. Figures, not assertions: the machines are shared.
//!
//! `C2WATCH_BENCH_FRAMES` and `C2WATCH_BENCH_RUNS` override the frame count and runs;
//! `C2WATCH_BENCH_CAPTURE` names where to write (and keep) the capture for profiling.

use std::io::BufWriter;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use c2watch::decode::LinkType;
use c2watch::testkit::{self, CaptureWriter, Format, Tcp};

/// BPF filter equivalent to the built-in feed: both Remcos addresses, any port (c2watch
/// also reports address-only hits).
const FILTER: &str = "host 2.26.75.239 or host 192.177.111.89";

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let frames = env_or(
        "C2WATCH_BENCH_FRAMES",
        if bench { 5_000_000 } else { 20_000 },
    );
    let runs = env_or("C2WATCH_BENCH_RUNS", if bench { 5 } else { 1 }) as usize;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = std::env::var_os("C2WATCH_BENCH_CAPTURE")
        .map_or_else(|| dir.path().join("bench-64b.pcap"), Into::into);
    let hits = write_capture(&path, frames);
    println!("capture: {frames} frames of 64 bytes, {hits} to Remcos endpoints, {runs} runs each");
    time(c2watch(&path)); // warm-up: page cache, and the only child so far for the RSS
    let rss_kib = peak_child_rss_kib();
    let mut ours = Vec::new();
    let mut reference = Vec::new();
    for _ in 0..runs {
        ours.push(time(c2watch(&path)));
        reference.push(time(tcpdump(&path)));
    }
    report(frames, &mut ours, &mut reference, rss_kib);
}

/// An environment override or the default.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `frames` 64-byte TCP frames between varied hosts; one in 1000 goes to a Remcos
/// endpoint. Returns the number of those.
fn write_capture(path: &Path, frames: u64) -> u64 {
    let file = std::fs::File::create(path).expect("create capture");
    let mut w = CaptureWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        Format::PcapMicro,
        LinkType::Ethernet,
    )
    .expect("write capture header");
    let mut hits = 0;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..frames {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let client = format!(
            "10.{}.{}.{}:{}",
            (state >> 8) as u8,
            (state >> 16) as u8,
            (state >> 24) as u8,
            1024 + (state >> 32) as u16 % 60000
        );
        let server = if i % 1000 == 999 {
            hits += 1;
            "2.26.75.239:1971".to_string()
        } else {
            format!(
                "{}.{}.{}.{}:443",
                20 + (state >> 40) as u8 % 180,
                (state >> 48) as u8,
                (state >> 56) as u8,
                1 + (state >> 4) as u8 % 250
            )
        };
        let frame = testkit::tcp(
            client.parse().unwrap(),
            server.parse().unwrap(),
            Tcp::Ack,
            &[0; 10],
        );
        debug_assert_eq!(frame.len(), 64);
        w.write(1_780_822_800_000_000_000 + i as i64 * 1_000, &frame)
            .expect("write frame");
    }
    w.finish().expect("flush capture");
    hits
}

fn c2watch(path: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c2watch"));
    cmd.args(["replay", "--aggregate-window-secs", "0"])
        .arg(path);
    cmd
}

fn tcpdump(path: &Path) -> Command {
    let mut cmd = Command::new("tcpdump");
    cmd.args(["-nr"])
        .arg(path)
        .args(["-w", "/dev/null", FILTER]);
    cmd
}

/// Runs a command to completion with its output discarded; returns the wall time.
fn time(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (tcpdump: apt-get install tcpdump)"));
    assert!(status.success(), "{cmd:?} failed: {status}");
    start.elapsed()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Prints the figures.
fn report(frames: u64, ours: &mut [Duration], reference: &mut [Duration], rss_kib: i64) {
    let (o, r) = (median(ours), median(reference));
    let pps = frames as f64 / o.as_secs_f64();
    println!(
        "c2watch replay:         median {:.3} s  ({:.2} M packets/s)",
        o.as_secs_f64(),
        pps / 1e6
    );
    println!(
        "tcpdump -nr -w /dev/null '{FILTER}': median {:.3} s",
        r.as_secs_f64()
    );
    println!(
        "ratio c2watch / tcpdump: {:.2}",
        o.as_secs_f64() / r.as_secs_f64()
    );
    println!("c2watch peak RSS: {:.1} MiB", rss_kib as f64 / 1024.0);
}

/// Largest resident set of any finished child process, in KiB (getrusage(2)).
fn peak_child_rss_kib() -> i64 {
    // SAFETY: getrusage writes one rusage struct into the zeroed value we own.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    usage.ru_maxrss
}
