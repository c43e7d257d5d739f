//! The test bench the live-capture tests stand on: two network namespaces joined by a
//! veth pair, child processes that die with the test, an rsyslogd inside a namespace,
//! tcpreplay, and readers for what comes back (CEF records, Prometheus text, logs).
//!
//! Safety of the network around the tests is the first concern here. Every frame is
//! sent by tcpreplay into the `tap` end of a veth pair whose other end lives in the
//! `sensor` namespace; both namespaces are created by the test, hold no address, route
//! or bridge, and are deleted on drop, failed assertion or not. The veth pair is created
//! inside the namespaces, so the machine's own namespace never holds one of its ends.
//! The captures carry frames to real C2 addresses: they never leave the pair.
//!
//! The bench never skips silently: without root it fails under `CI=true` and prints a
//! notice otherwise; a missing program fails naming the Debian package to install.

pub mod cef;

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Longest wait for any one thing: a log line, a record, a socket, a link.
pub const WAIT: Duration = Duration::from_secs(10);
/// Pause between two polls.
pub const POLL: Duration = Duration::from_millis(20);
/// Time allowed for stray extra records after the expected ones have arrived.
const SETTLE: Duration = Duration::from_millis(300);
/// The veth end tcpreplay sends on, in the `tap` namespace.
pub const TAP_IF: &str = "vethT";
/// The veth end the sensor captures on, in the `sensor` namespace.
pub const SENSOR_IF: &str = "vethS";
/// Prefix of every namespace these tests create, followed by the test process id.
const NETNS_PREFIX: &str = "c2w-";

// ---------------------------------------------------------------------------------------
// Preconditions: root and the external programs.
// ---------------------------------------------------------------------------------------

/// Whether the test can run, which takes root (namespaces, veth, AF_PACKET). Without it
/// a test fails when `CI=true`, so a misconfigured runner cannot pass by skipping, and
/// otherwise prints a notice and returns false.
pub fn privileged(test: &str) -> bool {
    if effective_uid() == 0 {
        return true;
    }
    let why = format!("{test} needs root: network namespaces, veth pairs, AF_PACKET capture");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "{why}; CI=true, so not running is a failure");
    // Written to the stderr handle, not with `eprintln!`, which the test harness
    // captures and shows only for failed tests: the notice must be seen.
    let notice = format!("notice: {why}; not run (run as root to include it)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
    false
}

/// The effective uid, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let ids = status.lines().find_map(|line| line.strip_prefix("Uid:"));
    let effective = ids.and_then(|ids| ids.split_whitespace().nth(1));
    effective
        .and_then(|id| id.parse().ok())
        .expect("a Uid line in /proc/self/status")
}

/// The path of an external program; fails naming the Debian package that provides it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/sbin", "/sbin"].map(PathBuf::from);
    let found = std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` not found in PATH, /usr/sbin or /sbin. The live tests do not skip: \
             install the Debian package `{package}` (apt-get install -y {package})"
        )
    })
}

fn ip_tool() -> PathBuf {
    tool("ip", "iproute2")
}

/// Runs a command to completion and fails with its output unless it succeeds.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{command:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// Processes that do not outlive the test.
// ---------------------------------------------------------------------------------------

/// A child process that is killed and reaped on drop, so that a failed assertion leaves
/// no sensor, rsyslogd or tcpreplay behind (and no process keeps a namespace alive).
pub struct Process {
    child: Child,
    name: String,
}

impl Process {
    /// Starts `command`, naming the process `name` in messages.
    pub fn spawn(name: &str, command: &mut Command) -> Process {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        Process {
            child,
            name: name.to_owned(),
        }
    }

    /// The process id. Under `ip netns exec` it is the program's own: `ip` enters the
    /// namespace and then execs the program rather than forking it.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Takes the child's piped stderr.
    pub fn take_stderr(&mut self) -> impl Read + Send + 'static {
        self.child.stderr.take().expect("stderr was piped")
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGHUP`, ...).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.id()).expect("pid fits i32");
        // SAFETY: kill(2) only reads its two integer arguments; the pid is our own
        // child's, not yet reaped (we hold its `Child`), so it cannot name another
        // process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed for {}", self.name);
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll a child process")
    }

    /// Waits up to `limit` for the process to end; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.exited();
            if status.is_some() || Instant::now() >= deadline {
                return status;
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines a child writes to stderr, gathered by a thread as they come, so a test can
/// wait for a log message while the child keeps running.
pub struct LogLines {
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl LogLines {
    /// Reads `stream` to its end on a thread of its own.
    pub fn follow(stream: impl Read + Send + 'static) -> LogLines {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        LogLines {
            lines,
            reader: Some(reader),
        }
    }

    /// Waits until the stream has ended (the child exited), so no line is still on its
    /// way through the pipe.
    pub fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader thread");
        }
    }

    /// The lines so far that contain `text`.
    pub fn matching(&self, text: &str) -> Vec<String> {
        let lines = self.lines.lock().expect("log lock");
        lines.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    /// Everything so far, for failure messages.
    pub fn text(&self) -> String {
        self.lines.lock().expect("log lock").join("\n")
    }
}

// ---------------------------------------------------------------------------------------
// Network namespaces and the veth pair.
// ---------------------------------------------------------------------------------------

/// A network namespace this test created; deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace. A new one holds only `lo`, which is down.
    fn add(name: String) -> Netns {
        run(Command::new(ip_tool()).args(["netns", "add", &name]));
        Netns { name }
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(ip_tool());
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `ip -n NAME ARGS...` and returns its output.
    fn ip(&self, args: &[&str]) -> String {
        run(Command::new(ip_tool()).args(["-n", &self.name]).args(args))
    }

    /// Reads a file under `/sys/class/net/` as the namespace sees it (`ip netns exec`
    /// mounts the namespace's own sysfs).
    fn sys_net(&self, file: &str) -> String {
        let out = run(self.command("cat").arg(format!("/sys/class/net/{file}")));
        out.trim().to_owned()
    }

    /// Turns off IPv6 on an interface before it comes up. Otherwise the kernel sends
    /// frames of its own as soon as the link is up (duplicate address detection, MLD
    /// reports, router solicitations every few seconds), which the sensor would capture
    /// and count on top of what tcpreplay sent. `addrgenmode none` keeps a link-local
    /// address from being generated should IPv6 come back on. The interface gets no
    /// IPv4 address either, so it never answers ARP.
    fn keep_quiet(&self, interface: &str) {
        if !Path::new("/proc/sys/net/ipv6").exists() {
            return; // IPv6 is off in this kernel: nothing to silence.
        }
        // What `sysctl -w net.ipv6.conf.IF.disable_ipv6=1` does, without needing procps
        // (not in a minimal Debian). /proc/sys/net shows the namespace of the process
        // that opens it, so the write must happen inside the namespace.
        let knob = format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6");
        run(self.command("sh").args(["-c", &format!("echo 1 > {knob}")]));
        self.ip(&["link", "set", interface, "addrgenmode", "none"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new(ip_tool())
            .args(["netns", "del", &self.name])
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}

/// The two namespaces and the veth pair between them: tcpreplay sends on [`TAP_IF`] in
/// `tap`, and what it sends arrives on [`SENSOR_IF`] in `sensor`, nowhere else.
pub struct Wire {
    /// The sending side.
    pub tap: Netns,
    /// The capturing side, where the sensor and rsyslogd run.
    pub sensor: Netns,
}

impl Wire {
    /// Creates both namespaces, names unique to this process and call, and the pair.
    pub fn create() -> Wire {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale_namespaces();
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tap = Netns::add(format!("{NETNS_PREFIX}{id}-tap"));
        let sensor = Netns::add(format!("{NETNS_PREFIX}{id}-sensor"));
        // Created inside `tap` with its peer moved straight into `sensor`, so no end
        // ever sits in the machine's namespace, where the fixed names could clash
        // between tests running at once.
        let peer = ["peer", "name", SENSOR_IF, "netns", &sensor.name];
        tap.ip(&[&["link", "add", TAP_IF, "type", "veth"][..], &peer].concat());

        let wire = Wire { tap, sensor };
        for (ns, interface) in [(&wire.tap, TAP_IF), (&wire.sensor, SENSOR_IF)] {
            ns.keep_quiet(interface);
            ns.ip(&["link", "set", "lo", "up"]);
            ns.ip(&["link", "set", interface, "up"]);
        }
        wire.wait_for_carrier();
        wire
    }

    /// Waits until both ends report the link up. The carrier comes up asynchronously
    /// after `ip link set up`; frames sent before that are dropped by veth without an
    /// error to tcpreplay, which would count them as sent.
    fn wait_for_carrier(&self) {
        let deadline = Instant::now() + WAIT;
        for (ns, interface) in [(&self.tap, TAP_IF), (&self.sensor, SENSOR_IF)] {
            while ns.sys_net(&format!("{interface}/operstate")) != "up" {
                assert!(Instant::now() < deadline, "{interface} never came up");
                thread::sleep(POLL);
            }
        }
    }

    /// Waits until the sensor's interface has received `frames` frames in all. veth
    /// counts a frame when it hands it to the receive queue, a moment before capture
    /// sockets see it; the queue is served within microseconds.
    pub fn wait_delivered(&self, frames: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let received = self
                .sensor
                .sys_net(&format!("{SENSOR_IF}/statistics/rx_packets"));
            let received: u64 = received.parse().expect("a frame count");
            if received >= frames {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{SENSOR_IF} received {received} of {frames} frames"
            );
            thread::sleep(POLL);
        }
    }

    /// Frames the sensor's interface has received, and dropped, by the kernel's count:
    /// tells a frame lost on the wire from one lost by the sensor.
    pub fn sensor_rx(&self) -> String {
        let stat = |name: &str| {
            let file = format!("{SENSOR_IF}/statistics/{name}");
            self.sensor.sys_net(&file)
        };
        format!(
            "{SENSOR_IF} rx_packets={} rx_dropped={}",
            stat("rx_packets"),
            stat("rx_dropped")
        )
    }
}

/// Deletes namespaces left by an earlier test process that was killed before its drop
/// guards ran (the name carries its pid, and no such process exists any more).
fn remove_stale_namespaces() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let pid = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|r| r.split('-').next());
        let stale = pid.is_some_and(|p| p.parse::<u32>().is_ok() && !proc_exists(p));
        if stale {
            drop(Netns { name });
        }
    }
}

fn proc_exists(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

// ---------------------------------------------------------------------------------------
// tcpreplay.
// ---------------------------------------------------------------------------------------

/// A tcpreplay command sending `capture` on the tap end at `pps` frames per second.
/// `--pps` paces frames evenly and ignores the capture's timestamps.
pub fn tcpreplay(wire: &Wire, capture: &Path, pps: u32) -> Command {
    let mut command = wire.tap.command(tool("tcpreplay", "tcpreplay"));
    command
        .args(["-i", TAP_IF, &format!("--pps={pps}")])
        .arg(capture);
    command
}

/// Replays `capture` and returns how many frames tcpreplay sent.
pub fn replay(wire: &Wire, capture: &Path, pps: u32) -> u64 {
    sent_frames(&run(&mut tcpreplay(wire, capture, pps)))
}

/// Reads the number of frames sent from tcpreplay's report on stdout (4.4):
///
/// ```text
/// Actual: 511 packets (47924 bytes) sent in 0.025507 seconds
/// ...
/// Statistics for network device: vethT
///         Successful packets:        511
///         Failed packets:            0
/// ```
///
/// Exit status 0 does not mean every frame went out, so a failed frame fails the test,
/// and the two counts must agree.
pub fn sent_frames(report: &str) -> u64 {
    let field = |label: &str| -> u64 {
        let line = report
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(label));
        let value = line.and_then(|l| l.split_whitespace().next());
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` count in tcpreplay's report:\n{report}"))
    };
    let successful = field("Successful packets:");
    assert_eq!(
        field("Failed packets:"),
        0,
        "tcpreplay failed frames:\n{report}"
    );
    assert_eq!(
        field("Actual:"),
        successful,
        "tcpreplay counts differ:\n{report}"
    );
    successful
}

// ---------------------------------------------------------------------------------------
// rsyslogd inside the sensor namespace.
// ---------------------------------------------------------------------------------------

/// The UDP port rsyslogd listens on. The namespace is new and holds nothing else, so a
/// fixed port cannot clash with another test or with the machine's own syslog.
const RSYSLOG_PORT: u16 = 5514;

/// A running rsyslogd, listening on 127.0.0.1 inside a namespace, that writes every
/// record it receives as one line of CEF text. Killed on drop.
pub struct Rsyslog {
    process: Process,
    dir: TempDir,
}

impl Rsyslog {
    /// Writes and validates the configuration, starts rsyslogd inside `ns` and waits
    /// until its UDP socket is bound.
    pub fn start(ns: &Netns) -> Rsyslog {
        let bin = tool("rsyslogd", "rsyslog");
        let dir = tempfile::tempdir().expect("temporary directory");
        let conf = dir.path().join("rsyslog.conf");
        fs::write(&conf, rsyslog_config(dir.path())).expect("write rsyslog.conf");
        run(Command::new(&bin).arg("-N1").arg("-f").arg(&conf));

        let out = fs::File::create(dir.path().join("rsyslogd.out")).expect("rsyslogd.out");
        let err = out.try_clone().expect("clone a file handle");
        // `-n` keeps it in the foreground, so the drop guard holds its pid; `-i` keeps
        // it off a system rsyslogd's /run/rsyslogd.pid.
        let mut command = ns.command(bin);
        command.arg("-n").arg("-f").arg(&conf).arg("-i");
        command.arg(dir.path().join("rsyslogd.pid"));
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let mut rsyslog = Rsyslog {
            process: Process::spawn("rsyslogd", &mut command),
            dir,
        };
        rsyslog.wait_bound();
        rsyslog
    }

    /// The `--syslog` URL of the input.
    pub fn url(&self) -> String {
        format!("udp://127.0.0.1:{RSYSLOG_PORT}")
    }

    /// Waits until the input's socket is bound. A datagram sent before that is lost
    /// without error; one sent after waits in the socket until rsyslogd reads it. A
    /// probe message cannot be used as in the loopback tests, since this process is not
    /// in the namespace; `/proc/PID/net/udp` lists the sockets of PID's namespace.
    fn wait_bound(&mut self) {
        let port = format!(":{RSYSLOG_PORT:04X}");
        let table = format!("/proc/{}/net/udp", self.process.id());
        let deadline = Instant::now() + WAIT;
        loop {
            let sockets = fs::read_to_string(&table).unwrap_or_default();
            let local = sockets.lines().filter_map(|l| l.split_whitespace().nth(1));
            if local.into_iter().any(|addr| addr.ends_with(&port)) {
                return;
            }
            assert!(
                self.process.exited().is_none() && Instant::now() < deadline,
                "rsyslogd did not bind UDP {RSYSLOG_PORT}:\n{}",
                self.diagnostics()
            );
            thread::sleep(POLL);
        }
    }

    /// The records received so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        let text = fs::read_to_string(self.dir.path().join("records.log")).unwrap_or_default();
        // omfile may be caught mid-write: only lines with their line feed count.
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        let parse = |line: &str| {
            Record::parse(line).unwrap_or_else(|e| panic!("rsyslog received {line:?}: {e}"))
        };
        complete.lines().map(parse).collect()
    }

    /// Polls until at least `n` records have arrived, allows [`SETTLE`] for extra ones,
    /// and returns them all, sorted. Fails after [`WAIT`].
    pub fn wait_for_records(&self, n: usize) -> Vec<Record> {
        let deadline = Instant::now() + WAIT;
        while self.records().len() < n {
            assert!(
                Instant::now() < deadline,
                "rsyslog received {} of {n} records in {WAIT:?}: {:#?}\n{}",
                self.records().len(),
                self.records(),
                self.diagnostics()
            );
            thread::sleep(POLL);
        }
        thread::sleep(SETTLE);
        let mut records = self.records();
        records.sort();
        records
    }

    /// rsyslogd's own output, for failure messages.
    pub fn diagnostics(&self) -> String {
        let out = fs::read_to_string(self.dir.path().join("rsyslogd.out"));
        format!("rsyslogd output:\n{}", out.unwrap_or_default())
    }
}

/// The configuration: one UDP input on loopback whose ruleset writes the CEF text of each
/// message to `records.log`.
fn rsyslog_config(dir: &Path) -> String {
    let dir = dir.to_str().expect("temporary directory is UTF-8");
    assert!(!dir.contains('"'), "rsyslog strings cannot hold {dir:?}");
    // No imuxsock or imklog: nothing from the machine's /dev/log or kernel log. The input
    // has its own ruleset because rsyslogd's own messages (start-up, errors) go to the
    // default ruleset and would otherwise be filed as records.
    // A burst of alerts must not overflow the socket: `rcvbufSize` is set with
    // SO_RCVBUFFORCE as root, past net.core.rmem_max.
    // In the header form c2watch writes by default (`HOST CEF:0|...`, RFC 3164) rsyslog
    // takes `CEF:` as the tag and `0|c2watch|...` as the message; together they are the
    // CEF text as sent.
    format!(
        "global(workDirectory=\"{dir}\")\n\
         module(load=\"imudp\")\n\
         template(name=\"cef\" type=\"list\") {{\n\
         \x20   property(name=\"syslogtag\") property(name=\"msg\") constant(value=\"\\n\")\n\
         }}\n\
         ruleset(name=\"records\") {{\n\
         \x20   action(type=\"omfile\" file=\"{dir}/records.log\" template=\"cef\")\n\
         }}\n\
         input(type=\"imudp\" address=\"127.0.0.1\" port=\"{RSYSLOG_PORT}\" \
         rcvbufSize=\"8m\" ruleset=\"records\")\n"
    )
}

// ---------------------------------------------------------------------------------------
// What comes back: CEF records and Prometheus text.
// ---------------------------------------------------------------------------------------

/// What a record says about its flow and why it was raised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// `src`/`spt`: the client.
    pub src: SocketAddr,
    /// `dst`/`dpt`: the server (for an exact hit, the indicator).
    pub dst: SocketAddr,
    /// `proto`: `TCP` or `UDP`.
    pub proto: String,
    /// `DeviceEventClassID`, the fifth header field: `ioc-endpoint`, ...
    pub class: String,
    /// `cs1`: the indicator the flow touched.
    pub indicator: String,
}

impl Record {
    /// Reads the flow fields of a CEF record with the strict reader.
    pub fn parse(text: &str) -> Result<Record, String> {
        let cef = cef::parse_cef(text)?;
        let get = |key: &str| cef.ext.get(key).cloned().ok_or(format!("no `{key}`"));
        let endpoint = |ip: &str, port: &str| -> Result<SocketAddr, String> {
            let ip = get(ip)?.parse().map_err(|e| format!("`{ip}`: {e}"))?;
            let port = get(port)?.parse().map_err(|e| format!("`{port}`: {e}"))?;
            Ok(SocketAddr::new(ip, port))
        };
        Ok(Record {
            src: endpoint("src", "spt")?,
            dst: endpoint("dst", "dpt")?,
            proto: get("proto")?,
            class: cef.header[4].clone(),
            indicator: get("cs1")?,
        })
    }
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Record { src, dst, .. } = self;
        write!(
            f,
            "{} {src} -> {dst} {} ({})",
            self.proto, self.class, self.indicator
        )
    }
}

/// The value of one series in Prometheus text, named with its labels exactly as the
/// exposition writes them (`name{label="value"}`); fails if it is missing.
pub fn metric(text: &str, series: &str) -> u64 {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
    let value = line.and_then(|v| v.trim().parse::<f64>().ok());
    let value = value.unwrap_or_else(|| panic!("no series {series} in the metrics:\n{text}"));
    assert!(value >= 0.0 && value.fract() == 0.0, "{series} is {value}");
    value as u64
}
