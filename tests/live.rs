//! `c2watch run` on a live interface, as the service runs on a tap: frames replayed by
//! tcpreplay into a veth pair arrive on the interface the sensor captures on, and its
//! records go to a real rsyslogd next to it.
//!
//! What counts is what an operator relies on: no frame lost (the sensor's frame count
//! equals what tcpreplay sent, whatever the number of workers), exactly one record per
//! indicator flow, SIGHUP changing the indicators for later flows only and keeping the
//! old ones when a feed is broken, and SIGTERM losing no alert already raised.
//!
//! Everything happens in two network namespaces each test creates and removes (see
//! `common`): the captures hold frames to real C2 addresses and must never reach a real
//! network. The tests need root; `veth_pair_carries_exactly_the_replayed_frames` checks
//! the bench itself with tcpdump, so a failure there is the bench's, not the sensor's.

mod common;

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use c2watch::decode::LinkType;
use c2watch::testkit::{self, CaptureWriter, Format, Tcp};
use common::{
    LogLines, POLL, Process, Record, Rsyslog, SENSOR_IF, WAIT, Wire, metric, privileged, replay,
    tcpreplay, tool,
};
use tempfile::TempDir;

/// Replay rate of the delivery and reload tests, frames per second.
const PPS: u32 = 20_000;
/// Replay rate of the shutdown test.
const FAST_PPS: u32 = 50_000;
/// How long after SIGTERM the sensor may take to exit.
const STOP_LIMIT: Duration = Duration::from_secs(5);
/// How long the shutdown test lets traffic run before SIGTERM.
const TRAFFIC_BEFORE_STOP: Duration = Duration::from_millis(500);
/// The shipped Remcos endpoints (the built-in feed).
const REMCOS_A: &str = "2.26.75.239:1971";
const REMCOS_B: &str = "192.177.111.89:7788";
/// Servers of the ordinary traffic around the indicator flows.
const BENIGN: [&str; 3] = ["93.184.215.14:443", "151.101.1.69:443", "140.82.121.4:443"];

mod every_indicator_flow_reaches_rsyslog_and_no_packet_is_lost {
    #[test]
    fn with_one_worker() {
        super::delivers_every_flow_and_loses_no_frame(1);
    }

    #[test]
    fn with_two_workers() {
        super::delivers_every_flow_and_loses_no_frame(2);
    }
}

/// Replays mixed traffic to a sensor with `workers` capture workers; checks the frame
/// count, and that each indicator flow raised exactly one record, which rsyslog got.
fn delivers_every_flow_and_loses_no_frame(workers: usize) {
    if !privileged("every_indicator_flow_reaches_rsyslog_and_no_packet_is_lost") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let traffic = mixed_traffic();
    let capture = traffic.write(dir.path(), "mixed.pcap");
    let wire = Wire::create();
    let rsyslog = Rsyslog::start(&wire.sensor);
    let mut sensor = Sensor::start(&wire, &rsyslog, &dir, workers, &[]);

    let sent = replay(&wire, &capture, PPS);
    // SIGTERM as soon as the wire has delivered the last frame: a frame the kernel has
    // handed to the sensor's socket must still be counted and matched, even if it sits
    // in a ring block the sensor has not read yet. (The reload test checks that records
    // arrive while the sensor runs, not only at the flush on exit.)
    wire.wait_delivered(sent);
    let metrics = sensor.stop();

    assert_no_frame_lost(&metrics, sent, &wire);
    let records = rsyslog.wait_for_records(traffic.expected.len());
    assert_records(&records, &traffic.expected, "rsyslog");
    assert_counts_match_records(&metrics, &traffic);
}

/// A reload changes the indicators for flows that start after it, never for flows
/// already matched; a broken feed is refused, naming its file and line, and the
/// indicators in force stay.
#[test]
fn sighup_adds_an_indicator_for_later_flows_only() {
    if !privileged("sighup_adds_an_indicator_for_later_flows_only") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let feed = dir.path().join("remcos.txt");
    fs::write(&feed, plain_feed(&[REMCOS_A])).expect("write the feed");
    let parts = reload_parts();
    let wire = Wire::create();
    let rsyslog = Rsyslog::start(&wire.sensor);
    // One worker, so frames are matched in the order sent: once the record of a part's
    // last flow is in, every earlier frame of the part was matched (see `reload_parts`).
    let mut sensor = Sensor::start(&wire, &rsyslog, &dir, 1, &[&feed]);
    let mut expected = Vec::new();
    let mut sent = 0;

    sent += replay_part(&wire, &rsyslog, &dir, &parts[0], &mut expected);
    fs::write(&feed, plain_feed(&[REMCOS_A, REMCOS_B])).expect("rewrite the feed");
    sensor.reload("Indicators reloaded");
    sent += replay_part(&wire, &rsyslog, &dir, &parts[1], &mut expected);

    let bad = "999.1.1.1:80";
    fs::write(&feed, plain_feed(&[REMCOS_A, REMCOS_B, bad])).expect("break the feed");
    let refusal = sensor.reload("Reload refused");
    assert_names_file_and_line(&refusal, &feed, bad);
    sent += replay_part(&wire, &rsyslog, &dir, &parts[2], &mut expected);

    let metrics = sensor.stop();
    assert_no_frame_lost(&metrics, sent, &wire);
}

/// SIGTERM in the middle of a stream of indicator flows: the sensor exits 0 in time, and
/// every alert it raised reached rsyslog (none dropped in its queue or output).
#[test]
fn sigterm_during_traffic_flushes_every_alert() {
    if !privileged("sigterm_during_traffic_flushes_every_alert") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let traffic = beacon_storm(15_000);
    let capture = traffic.write(dir.path(), "storm.pcap");
    let wire = Wire::create();
    let rsyslog = Rsyslog::start(&wire.sensor);
    let mut sensor = Sensor::start(&wire, &rsyslog, &dir, 2, &[]);

    let mut replay = tcpreplay(&wire, &capture, FAST_PPS);
    replay.stdout(Stdio::null()).stderr(Stdio::null());
    let mut replay = Process::spawn("tcpreplay", &mut replay);
    thread::sleep(TRAFFIC_BEFORE_STOP);
    assert!(replay.exited().is_none(), "the storm ended before SIGTERM");
    let metrics = sensor.stop();
    drop(replay);

    let flushed = assert_every_alert_flushed(&metrics);
    let records = rsyslog.wait_for_records(flushed);
    assert_eq!(
        records.len(),
        flushed,
        "records at rsyslog vs sent to syslog0"
    );
    assert_records_from(&records, &traffic.expected);
}

/// The bench alone, with tcpdump standing in for the sensor: the sensor's interface gets
/// exactly the frames tcpreplay sent, none of the kernel's own, and none lost. The other
/// tests count on it; if this one fails, their frame counts mean nothing.
#[test]
fn veth_pair_carries_exactly_the_replayed_frames() {
    if !privileged("veth_pair_carries_exactly_the_replayed_frames") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let capture = mixed_traffic().write(dir.path(), "mixed.pcap");
    let wire = Wire::create();
    // Not `--immediate-mode`: libpcap then uses a ring of fixed slots the size of the
    // snapshot length (256 KiB), so its default 2 MiB buffer holds 8 frames and drops
    // at 20 000 frames per second. The frames a ring block still holds reach tcpdump at
    // the block timeout (1 s), well within the wait below.
    let mut tcpdump = wire.sensor.command(tool("tcpdump", "tcpdump"));
    tcpdump.args(["-i", SENSOR_IF, "-n", "-w", "/dev/null"]);
    tcpdump.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut tcpdump = Process::spawn("tcpdump", &mut tcpdump);
    let mut log = LogLines::follow(tcpdump.take_stderr());
    wait_for_line(&log, "listening on", &mut tcpdump);

    let sent = replay(&wire, &capture, PPS);
    // Well past tcpreplay's last frame, so that any frame of the kernel's own (IPv6
    // autoconfiguration sends its first within a second of the link coming up) is seen.
    thread::sleep(Duration::from_secs(2));
    tcpdump.signal(libc::SIGTERM);
    let stopped = tcpdump.wait_exit(STOP_LIMIT);
    log.finish();

    assert!(
        stopped.is_some_and(|s| s.success()),
        "tcpdump: {}",
        log.text()
    );
    let count = |what: &str| tcpdump_count(&log, what);
    let seen = (
        count("packets captured"),
        count("packets dropped by kernel"),
    );
    assert_eq!(
        seen,
        (sent, 0),
        "frames captured and dropped; {}",
        wire.sensor_rx()
    );
}

/// The bench and the expectations, without live capture: `c2watch replay` of the same
/// capture, run inside the sensor namespace, raises exactly the records the traffic
/// expects, and rsyslog there files them. If this passes and a live test fails on its
/// records, the difference lies in `c2watch run`.
#[test]
fn replay_of_the_capture_raises_the_expected_records_at_rsyslog_in_the_namespace() {
    if !privileged("replay_of_the_capture_raises_the_expected_records_at_rsyslog_in_the_namespace")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let traffic = mixed_traffic();
    let capture = traffic.write(dir.path(), "mixed.pcap");
    let wire = Wire::create();
    let rsyslog = Rsyslog::start(&wire.sensor);
    let metrics_file = dir.path().join("replay.prom");

    let mut command = wire.sensor.command(env!("CARGO_BIN_EXE_c2watch"));
    command.args([
        "replay",
        "--syslog",
        &rsyslog.url(),
        "--aggregate-window-secs",
        "0",
    ]);
    command
        .arg("--metrics-file")
        .arg(&metrics_file)
        .arg(&capture);
    command
        .env_remove("C2WATCH_CONFIG")
        .env_remove("C2WATCH_SENSOR_NAME");
    let out = command.output().expect("run c2watch replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "c2watch replay: {stderr}");

    let records = rsyslog.wait_for_records(traffic.expected.len());
    assert_records(&records, &traffic.expected, "replay");
    let metrics = fs::read_to_string(&metrics_file).expect("read the replay metrics");
    assert_counts_match_records(&metrics, &traffic);
}

// ---------------------------------------------------------------------------------------
// The sensor.
// ---------------------------------------------------------------------------------------

/// `c2watch run` capturing on the sensor end of the wire and sending to rsyslog, with
/// its stderr followed. Killed on drop.
struct Sensor {
    process: Process,
    log: LogLines,
    metrics_file: PathBuf,
}

impl Sensor {
    /// Starts the sensor with `workers` workers and the given feeds (none: the built-in
    /// Remcos feed), and waits until every worker has started capturing.
    fn start(
        wire: &Wire,
        rsyslog: &Rsyslog,
        dir: &TempDir,
        workers: usize,
        feeds: &[&Path],
    ) -> Sensor {
        let metrics_file = dir.path().join("metrics.prom");
        let mut command = wire.sensor.command(env!("CARGO_BIN_EXE_c2watch"));
        command.args(run_args(rsyslog, workers, &metrics_file, feeds));
        // Lifecycle messages are at `info`: a filter from the caller's shell must not
        // hide them, nor a configuration from the environment change the set-up.
        command.env("C2WATCH_LOG", "info").env_remove("RUST_LOG");
        command
            .env_remove("C2WATCH_CONFIG")
            .env_remove("C2WATCH_SENSOR_NAME");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());

        let mut process = Process::spawn("c2watch run", &mut command);
        let log = LogLines::follow(process.take_stderr());
        let mut sensor = Sensor {
            process,
            log,
            metrics_file,
        };
        sensor.wait_for_log("Capture started", workers);
        sensor
    }

    /// Waits until `message` has been logged `n` times in all; returns those lines.
    fn wait_for_log(&mut self, message: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.log.matching(message);
            if found.len() >= n {
                return found;
            }
            let status = self.process.exited();
            assert!(
                status.is_none() && Instant::now() < deadline,
                "waited for `{message}` x{n}; c2watch {}:\n{}",
                status.map_or("still running".into(), |s| s.to_string()),
                self.log.text()
            );
            thread::sleep(POLL);
        }
    }

    /// Sends SIGHUP and waits for the next `outcome` message; returns its line.
    fn reload(&mut self, outcome: &str) -> String {
        let before = self.log.matching(outcome).len();
        self.process.signal(libc::SIGHUP);
        let mut lines = self.wait_for_log(outcome, before + 1);
        lines.swap_remove(before)
    }

    /// Sends SIGTERM, checks the sensor exits 0 within [`STOP_LIMIT`] after logging
    /// `Stopped`, and returns the metrics it wrote.
    fn stop(&mut self) -> String {
        self.process.signal(libc::SIGTERM);
        let status = self.process.wait_exit(STOP_LIMIT);
        let status = status.unwrap_or_else(|| {
            panic!("running {STOP_LIMIT:?} after SIGTERM:\n{}", self.log.text())
        });
        self.log.finish();

        let log = self.log.text();
        assert!(status.success(), "exit after SIGTERM: {status}\n{log}");
        assert!(
            !self.log.matching("Stopped").is_empty(),
            "no `Stopped`:\n{log}"
        );
        fs::read_to_string(&self.metrics_file)
            .unwrap_or_else(|e| panic!("read {}: {e}\n{log}", self.metrics_file.display()))
    }
}

/// The `c2watch run` arguments: one record per flow, no metrics endpoint, metrics to a
/// file at exit.
fn run_args(rsyslog: &Rsyslog, workers: usize, metrics: &Path, feeds: &[&Path]) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["run", "--interface", SENSOR_IF, "--workers"]
        .map(OsString::from)
        .to_vec();
    args.push(workers.to_string().into());
    for arg in ["--syslog", &rsyslog.url(), "--sensor-name", "sensor-live"] {
        args.push(arg.into());
    }
    for arg in [
        "--aggregate-window-secs",
        "0",
        "--metrics",
        "off",
        "--metrics-file",
    ] {
        args.push(arg.into());
    }
    args.push(metrics.into());
    for feed in feeds {
        args.push("--ioc".into());
        args.push(feed.into());
    }
    args
}

/// Waits until a line containing `text` has been logged by `process`.
fn wait_for_line(log: &LogLines, text: &str, process: &mut Process) {
    let deadline = Instant::now() + WAIT;
    while log.matching(text).is_empty() {
        let running = process.exited().is_none();
        assert!(
            running && Instant::now() < deadline,
            "no `{text}`:\n{}",
            log.text()
        );
        thread::sleep(POLL);
    }
}

/// A count from tcpdump's report at exit (`511 packets captured`).
fn tcpdump_count(log: &LogLines, what: &str) -> u64 {
    let line = log.matching(what).pop();
    let count = line.and_then(|l| l.split_whitespace().next()?.parse().ok());
    count.unwrap_or_else(|| panic!("no `{what}` in tcpdump's report:\n{}", log.text()))
}

// ---------------------------------------------------------------------------------------
// Checks.
// ---------------------------------------------------------------------------------------

/// The sensor counted every frame sent, and the kernel dropped none. The wire's own
/// receive counters go in the message, to tell a loss on the wire from one in the
/// sensor.
fn assert_no_frame_lost(metrics: &str, sent: u64, wire: &Wire) {
    let series = |name: &str| format!("{name}{{interface=\"{SENSOR_IF}\"}}");
    let captured = metric(metrics, &series("c2watch_packets_total"));
    let dropped = metric(metrics, &series("c2watch_kernel_drops_total"));
    assert_eq!(
        (captured, dropped),
        (sent, 0),
        "frames captured and dropped by the kernel, for {sent} sent; {}",
        wire.sensor_rx()
    );
}

/// The records are exactly the expected ones, one per flow, field by field.
fn assert_records(got: &[Record], want: &[Record], context: &str) {
    let mut want = want.to_vec();
    want.sort();
    let missing: Vec<String> = want.iter().filter(|r| !got.contains(r)).map(show).collect();
    let extra: Vec<String> = got.iter().filter(|r| !want.contains(r)).map(show).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: missing {missing:#?}\nunexpected {extra:#?}"
    );
    assert_eq!(got, want, "{context}: a flow has more than one record");
}

/// Each record is one of the expected ones, and no flow has two.
fn assert_records_from(got: &[Record], want: &[Record]) {
    let stray: Vec<String> = got.iter().filter(|r| !want.contains(r)).map(show).collect();
    assert!(stray.is_empty(), "records of no indicator flow: {stray:#?}");
    let mut flows: Vec<(SocketAddr, SocketAddr)> = got.iter().map(|r| (r.src, r.dst)).collect();
    flows.dedup();
    assert_eq!(flows.len(), got.len(), "a flow has more than one record");
}

fn show(record: &Record) -> String {
    record.to_string()
}

/// The sensor's own counts agree with the traffic: one alert per expected record, each
/// sent, and every frame of an exact-hit flow counted as an endpoint hit.
fn assert_counts_match_records(metrics: &str, traffic: &Traffic) {
    let records = traffic.expected.len() as u64;
    let counts = [
        metric(metrics, "c2watch_alerts_total{result=\"emitted\"}"),
        metric(metrics, "c2watch_alerts_total{result=\"dropped\"}"),
        metric(
            metrics,
            "c2watch_output_records_total{output=\"syslog0\",result=\"sent\"}",
        ),
        metric(metrics, "c2watch_hits_total{kind=\"endpoint\"}"),
    ];
    let want = [records, 0, records, traffic.endpoint_frames];
    assert_eq!(
        counts, want,
        "alerts emitted and dropped, records sent, endpoint hits"
    );
}

/// Every alert raised was sent to syslog: none dropped, none failed; returns how many.
fn assert_every_alert_flushed(metrics: &str) -> usize {
    let alerts = |result: &str| {
        metric(
            metrics,
            &format!("c2watch_alerts_total{{result=\"{result}\"}}"),
        )
    };
    let records = |result: &str| {
        let series =
            format!("c2watch_output_records_total{{output=\"syslog0\",result=\"{result}\"}}");
        metric(metrics, &series)
    };
    let emitted = alerts("emitted");
    assert!(
        emitted > 0,
        "no alert before SIGTERM: the test did not stop mid-traffic"
    );
    let outcome = [
        alerts("dropped"),
        records("sent"),
        records("failed"),
        records("dropped"),
    ];
    assert_eq!(
        outcome,
        [0, emitted, 0, 0],
        "alerts dropped; records sent, failed, dropped"
    );
    usize::try_from(emitted).expect("a count that fits")
}

/// The refusal names the feed file and the line of the bad entry (`FILE:LINE`).
fn assert_names_file_and_line(refusal: &str, feed: &Path, bad: &str) {
    let text = fs::read_to_string(feed).expect("read the feed");
    let line = text.lines().position(|l| l == bad).expect("the bad line") + 1;
    let place = format!("{}:{line}", feed.display());
    assert!(
        refusal.contains(&place),
        "refusal does not name {place}: {refusal}"
    );
}

// ---------------------------------------------------------------------------------------
// Traffic.
// ---------------------------------------------------------------------------------------

/// The CEF class a flow raises.
#[derive(Clone, Copy)]
enum Class {
    /// Exact `ip:port` hit.
    Endpoint,
    /// An endpoint indicator's address on another port.
    OtherPort,
}

impl Class {
    fn id(self) -> &'static str {
        match self {
            Class::Endpoint => "ioc-endpoint",
            Class::OtherPort => "ioc-address-other-port",
        }
    }
}

/// One flow's frames, in order, and the record it must raise, if any.
struct Flow {
    frames: Vec<Vec<u8>>,
    record: Option<Record>,
    /// Whether every frame hits an `ip:port` indicator exactly.
    exact: bool,
}

impl Flow {
    /// A flow that raises no record.
    fn quiet(frames: Vec<Vec<u8>>) -> Flow {
        Flow {
            frames,
            record: None,
            exact: false,
        }
    }

    /// A flow between `client` and `server` that raises a record of `class` for
    /// `indicator`. The record shows it client -> server whoever spoke first.
    fn hit(class: Class, indicator: &str, client: &str, server: &str, shape: Shape) -> Flow {
        let (c, s) = (ep(client), ep(server));
        let record = Record {
            src: c,
            dst: s,
            proto: shape.proto().into(),
            class: class.id().into(),
            indicator: indicator.into(),
        };
        Flow {
            frames: shape.frames(c, s),
            record: Some(record),
            exact: matches!(class, Class::Endpoint),
        }
    }
}

/// How a flow starts, as seen on the tap.
#[derive(Clone, Copy)]
enum Shape {
    /// A whole TCP session from the client's SYN.
    Session,
    /// TCP from the server's SYN-ACK: the tap missed the SYN, the server is seen first.
    FromSynAck,
    /// UDP in which the server sends first.
    UdpServerFirst,
}

impl Shape {
    fn frames(self, client: SocketAddr, server: SocketAddr) -> Vec<Vec<u8>> {
        let data = [0x17; 80];
        match self {
            Shape::Session => testkit::tcp_session(client, server, 2),
            Shape::FromSynAck => vec![
                testkit::tcp(server, client, Tcp::SynAck, b""),
                testkit::tcp(client, server, Tcp::Ack, &data),
                testkit::tcp(server, client, Tcp::Ack, &data),
            ],
            Shape::UdpServerFirst => vec![
                testkit::udp(server, client, &data),
                testkit::udp(client, server, &data),
            ],
        }
    }

    fn proto(self) -> &'static str {
        match self {
            Shape::UdpServerFirst => "UDP",
            Shape::Session | Shape::FromSynAck => "TCP",
        }
    }
}

/// Frames to replay and the records they must raise.
#[derive(Default)]
struct Traffic {
    frames: Vec<Vec<u8>>,
    expected: Vec<Record>,
    /// Frames that hit an `ip:port` indicator exactly.
    endpoint_frames: u64,
}

impl Traffic {
    /// The flows with their frames interleaved one by one, so that flows overlap as they
    /// do on a real link; each flow keeps its own order.
    fn interleave(flows: Vec<Flow>) -> Traffic {
        let mut traffic = Traffic::default();
        let longest = flows.iter().map(|f| f.frames.len()).max().unwrap_or(0);
        for i in 0..longest {
            let nth = flows.iter().filter_map(|f| f.frames.get(i));
            traffic.frames.extend(nth.cloned());
        }
        for flow in flows {
            traffic.count(flow);
        }
        traffic
    }

    /// Notes a flow's record and endpoint hits (its frames are already in place).
    fn count(&mut self, flow: Flow) {
        if flow.exact {
            self.endpoint_frames += flow.frames.len() as u64;
        }
        self.expected.extend(flow.record);
    }

    /// `self`, then `next`.
    fn then(mut self, next: Traffic) -> Traffic {
        self.frames.extend(next.frames);
        self.expected.extend(next.expected);
        self.endpoint_frames += next.endpoint_frames;
        self
    }

    /// Writes the frames as a microsecond pcap, which tcpreplay reads, 50 µs apart
    /// (tcpreplay's `--pps` ignores the times).
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let file = File::create(&path).expect("create a capture");
        let mut writer = CaptureWriter::new(file, Format::PcapMicro, LinkType::Ethernet)
            .expect("write the pcap header");
        for (i, frame) in self.frames.iter().enumerate() {
            let time_ns = testkit::SAMPLE_START_NS + i as i64 * 50_000;
            writer.write(time_ns, frame).expect("write a frame");
        }
        writer.finish().expect("flush the capture");
        path
    }
}

/// A socket address written as text.
fn ep(text: &str) -> SocketAddr {
    text.parse().expect("test endpoint")
}

/// Ordinary traffic with, among it, flows to both Remcos endpoints seen from either side
/// and as TCP and UDP, flows to a Remcos address on another port, flows to a Remcos port
/// on unrelated addresses (no record), and an ARP frame (counted, not decoded).
fn mixed_traffic() -> Traffic {
    let mut flows = ordinary_flows(0, 400);
    flows.extend(endpoint_flows(REMCOS_A, 1));
    flows.extend(endpoint_flows(REMCOS_B, 2));
    flows.extend(other_port_flows());
    flows.extend(port_only_flows());
    flows.push(Flow::quiet(vec![testkit::arp_request()]));
    Traffic::interleave(flows)
}

/// `n` web sessions and as many DNS exchanges from clients in 10.40.`net`.0/24 and up.
fn ordinary_flows(net: u8, n: u16) -> Vec<Flow> {
    let resolver = ep("10.40.255.53:53");
    let mut flows = Vec::new();
    for i in 0..n {
        let host = format!("10.{}.{}.{}", 40 + net, i / 200, i % 200 + 1);
        let server = ep(BENIGN[usize::from(i) % BENIGN.len()]);
        let web = ep(&format!("{host}:{}", 50_000 + i));
        flows.push(Flow::quiet(testkit::tcp_session(web, server, 2)));
        let dns = ep(&format!("{host}:{}", 30_000 + i));
        let query = testkit::udp(dns, resolver, b"\x12\x34query");
        flows.push(Flow::quiet(vec![
            query,
            testkit::udp(resolver, dns, b"\x12\x34answer"),
        ]));
    }
    flows
}

/// Eight flows to one endpoint indicator from hosts in 10.50.`net`.0/24: four whole
/// sessions, two seen from the SYN-ACK, two UDP exchanges the indicator starts.
fn endpoint_flows(indicator: &str, net: u8) -> Vec<Flow> {
    let shapes = [Shape::Session; 4]
        .into_iter()
        .chain([Shape::FromSynAck; 2])
        .chain([Shape::UdpServerFirst; 2]);
    let flow = |(i, shape)| {
        let client = format!("10.50.{net}.{}:{}", 10 + i, 45_000 + i);
        Flow::hit(Class::Endpoint, indicator, &client, indicator, shape)
    };
    shapes.enumerate().map(flow).collect()
}

/// Sessions to both Remcos addresses on ports other than their indicators'.
fn other_port_flows() -> Vec<Flow> {
    let targets = [
        (REMCOS_A, "2.26.75.239:443"),
        (REMCOS_A, "2.26.75.239:8080"),
        (REMCOS_B, "192.177.111.89:80"),
        (REMCOS_B, "192.177.111.89:7789"),
    ];
    let flow = |(i, (indicator, server))| {
        let client = format!("10.50.3.{}:{}", 10 + i, 46_000 + i);
        Flow::hit(Class::OtherPort, indicator, &client, server, Shape::Session)
    };
    targets.into_iter().enumerate().map(flow).collect()
}

/// Sessions to the Remcos ports on unrelated addresses: no record.
fn port_only_flows() -> Vec<Flow> {
    let servers = ["198.51.100.7:7788", "8.8.4.4:1971"];
    let flow = |(i, server)| {
        let client = ep(&format!("10.50.4.{}:{}", 10 + i, 47_000 + i));
        Flow::quiet(testkit::tcp_session(client, ep(server), 2))
    };
    servers.into_iter().enumerate().map(flow).collect()
}

/// A plain-list feed of the given lines.
fn plain_feed(lines: &[&str]) -> String {
    let mut text = String::from("# c2watch live test feed: one ip:port per line\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The three parts of the reload test. The feed holds only Remcos A during part A, both
/// endpoints during B, and a broken file (old set in force) during C. Each part's flows
/// come from clients of their own, so no part continues another's flow.
///
/// Part A sends its flows to Remcos B (not yet an indicator) first and its Remcos A
/// flows last: with one worker, the last flow's record means the whole part was matched
/// before the test reloads.
fn reload_parts() -> [Traffic; 3] {
    let part = |n: u8, indicators: &[&str], expect: bool| {
        let mut flows = ordinary_flows(n, 20);
        for (i, indicator) in indicators.iter().enumerate() {
            for j in 0..2 {
                let client = format!("10.60.{n}.{}:{}", 10 + 2 * i + j, 41_000 + 2 * i + j);
                let flow = Flow::hit(
                    Class::Endpoint,
                    indicator,
                    &client,
                    indicator,
                    Shape::Session,
                );
                flows.push(if expect {
                    flow
                } else {
                    Flow::quiet(flow.frames)
                });
            }
        }
        Traffic::interleave(flows)
    };
    [
        part(1, &[REMCOS_B], false).then(part(2, &[REMCOS_A], true)),
        part(3, &[REMCOS_B], true),
        part(4, &[REMCOS_B, REMCOS_A], true),
    ]
}

/// Replays one part of the reload test and checks that rsyslog now holds the records of
/// every part so far, and only those; returns the frames sent.
fn replay_part(
    wire: &Wire,
    rsyslog: &Rsyslog,
    dir: &TempDir,
    part: &Traffic,
    expected: &mut Vec<Record>,
) -> u64 {
    let name = format!("part-{}.pcap", expected.len());
    let sent = replay(wire, &part.write(dir.path(), &name), PPS);
    expected.extend(part.expected.iter().cloned());
    let records = rsyslog.wait_for_records(expected.len());
    assert_records(&records, expected, &format!("after {name}"));
    sent
}

/// About `flows` sessions, one in five to a Remcos endpoint, in groups of five that
/// overlap within the group only, so that alerts come at a steady rate.
fn beacon_storm(flows: u32) -> Traffic {
    let mut traffic = Traffic::default();
    for group in 0..flows / 5 {
        let (x, y) = (group / 250, group % 250 + 1);
        let indicator = [REMCOS_A, REMCOS_B][group as usize % 2];
        let client = format!("10.80.{x}.{y}:{}", 40_000 + group % 20_000);
        let mut members = vec![Flow::hit(
            Class::Endpoint,
            indicator,
            &client,
            indicator,
            Shape::Session,
        )];
        for k in 0..4u16 {
            let host = ep(&format!("10.90.{x}.{y}:{}", 50_000 + k));
            let server = ep(BENIGN[usize::from(k) % BENIGN.len()]);
            members.push(Flow::quiet(testkit::tcp_session(host, server, 2)));
        }
        traffic = traffic.then(Traffic::interleave(members));
    }
    traffic
}

#[test]
fn record_reader_takes_the_flow_fields_and_refuses_malformed_records() {
    let text = "CEF:0|c2watch|c2watch|0.1.0|ioc-endpoint|Connection to threat-intel C2 \
                endpoint|8|rt=1 src=10.0.0.1 spt=40000 dst=2.26.75.239 dpt=1971 proto=TCP \
                act=alert cs1Label=Indicator cs1=2.26.75.239:1971 cs2Label=Malware cs2=a b\\=c";
    let record = Record::parse(text).expect("a valid record");
    let want = "TCP 10.0.0.1:40000 -> 2.26.75.239:1971 ioc-endpoint (2.26.75.239:1971)";
    assert_eq!(record.to_string(), want);
    assert!(Record::parse("CEF:0|a|b|c|d|e|5|src=1.2.3.4 src=1.2.3.4").is_err());
    assert!(Record::parse("CEF:0|a|b|c|d|e|").is_err());
}
