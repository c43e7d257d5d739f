//! c2watch against a real rsyslog, the forwarder Sentinel's agent sits behind.
//!
//! What counts is what rsyslog makes of our bytes: facility, severity and host taken from
//! the syslog header, and a CEF text that still unescapes to the feed's exact context.
//! Each test starts its own rsyslogd on free loopback ports, replays captures written
//! here (the shipped Remcos sample plus crafted flows) with a feed whose text holds every
//! character CEF must escape, and reads back what rsyslog wrote: first the syslog fields
//! as rsyslog parsed them, then the CEF text with a strict reader, field by field against
//! the records the captures should raise.
//!
//! rsyslog pitfalls are noted where they bite. The test never skips: without `rsyslogd`
//! it fails and says which package to install.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use c2watch::decode::LinkType;
use c2watch::testkit::{self, CaptureWriter, Format, Tcp};
use tempfile::TempDir;

#[path = "common/cef.rs"]
mod cef;
use cef::{Cef, parse_cef};

/// `--sensor-name`: the syslog HOSTNAME and the CEF `dvchost`.
const SENSOR: &str = "sensor-07.lab";
/// File stem of the test feed, which c2watch reports as the feed name (`cs6`).
const FEED_STEM: &str = "tricky-remcos";
/// Longest wait for rsyslogd to start, or for its files to hold every record.
const WAIT: Duration = Duration::from_secs(10);
/// Pause between polls of a port or a file.
const POLL: Duration = Duration::from_millis(25);
/// Time allowed for stray extra records after the expected ones have arrived.
const SETTLE: Duration = Duration::from_millis(250);
/// APP-NAME of the readiness probes, which rsyslog files apart from the records.
const PROBE: &str = "c2watch-probe";
/// Capture time of the first crafted frame: ten minutes after the sample starts, so that
/// no flow of the sample is still open, and not on a whole second.
const CRAFTED_START_NS: i64 = testkit::SAMPLE_START_NS + 600_123_000_000;
/// Capture time between two crafted frames.
const FRAME_GAP_NS: i64 = 250_000_000;

#[test]
fn rfc3164_records_reach_rsyslog_over_udp_and_tcp_with_every_field_intact() {
    delivers_every_record_intact(Header::Rfc3164);
}

#[test]
fn rfc5424_records_reach_rsyslog_over_udp_and_tcp_with_every_field_intact() {
    delivers_every_record_intact(Header::Rfc5424);
}

#[test]
fn cef_reader_unescapes_values_and_refuses_malformed_records() {
    let cef = parse_cef(r"CEF:0|a\|b|c\\d|1|id|name|5|k=x\=y\\n\n|z k2=C:\\new\\ k3=").unwrap();
    assert_eq!(cef.header[1..3], ["a|b", r"c\d"]);
    assert_eq!(cef.ext["k"], "x=y\\n\n|z");
    assert_eq!(cef.ext["k2"], r"C:\new\");
    assert_eq!(cef.ext["k3"], "");

    for bad in [
        "CEF:0|a|b|c|d|e|",
        r"CEF:0|a\x|b|c|d|e|5|k=v",
        "CEF:0|a|b|c|d|e|5|k=v=w",
        r"CEF:0|a|b|c|d|e|5|k=v\|w",
        "CEF:0|a|b|c|d|e|5|k=v k=w",
        "CEF:0|a|b|c|d|e|5|k=v\tw",
        "CEF:0|a|b|c|d|e|5| k=v",
    ] {
        assert!(parse_cef(bad).is_err(), "accepted {bad:?}");
    }
}

/// Replays the scenario to rsyslog over UDP and TCP and checks what rsyslog wrote.
fn delivers_every_record_intact(header: Header) {
    let rsyslog = Rsyslog::start();
    let scenario = Scenario::write();
    let stdout = replay(&scenario, &rsyslog, header);

    rsyslog.wait_for_lines(Input::Udp, scenario.expected.len());
    rsyslog.wait_for_lines(Input::Tcp, scenario.expected.len());
    thread::sleep(SETTLE);

    let mut printed: Vec<&str> = stdout.lines().collect();
    printed.sort_unstable();
    let mut by_input = Vec::new();
    for input in [Input::Udp, Input::Tcp] {
        let (texts, records) = received_records(&rsyslog.lines(input), header);
        // Byte for byte what c2watch printed: rsyslog neither trimmed nor re-escaped.
        assert_eq!(texts, printed, "{input:?}: CEF text differs from stdout");
        assert_records(&records, &scenario.expected, input);
        by_input.push(records);
    }
    assert_eq!(
        by_input[0], by_input[1],
        "UDP and TCP received different records"
    );
}

/// Checks rsyslog's view of each message's syslog header and parses its CEF text.
/// Returns the CEF texts (sorted) and the parsed records (sorted by flow).
fn received_records(lines: &[String], header: Header) -> (Vec<String>, Vec<Cef>) {
    let mut texts = Vec::new();
    let mut records = Vec::new();
    for line in lines {
        let received = Received::parse(line);
        let text = header.cef_text(&received);
        let cef = parse_cef(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        received.check(header, &cef);
        texts.push(text);
        records.push(cef);
    }
    texts.sort_unstable();
    records.sort_by_key(Cef::flow);
    (texts, records)
}

/// Compares received records with the expected ones: first which flows raised one, then
/// each record's header and every extension key either side has.
fn assert_records(got: &[Cef], want: &[Cef], input: Input) {
    let flows = |records: &[Cef]| records.iter().map(Cef::flow).collect::<Vec<_>>();
    assert_eq!(flows(got), flows(want), "{input:?}: flows with a record");

    for (got, want) in got.iter().zip(want) {
        let flow = want.flow();
        assert_eq!(got.header, want.header, "{input:?}: header of {flow}");
        let keys: BTreeSet<&String> = got.ext.keys().chain(want.ext.keys()).collect();
        for key in keys {
            let (g, w) = (got.ext.get(key), want.ext.get(key));
            assert_eq!(g, w, "{input:?}: `{key}` of {flow}");
        }
    }
}

/// Runs `c2watch replay` on the scenario, sending to both rsyslog inputs and to stdout;
/// returns what it printed.
fn replay(scenario: &Scenario, rsyslog: &Rsyslog, header: Header) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_c2watch"))
        .arg("replay")
        .arg("--ioc")
        .arg(&scenario.feed)
        .args(["--syslog", &rsyslog.url(Input::Udp)])
        .args(["--syslog", &rsyslog.url(Input::Tcp)])
        .args(["--syslog-format", header.arg(), "--sensor-name", SENSOR])
        .args(["--aggregate-window-secs", "0", "--stdout"])
        .args(&scenario.captures)
        .env_remove("C2WATCH_CONFIG")
        .env_remove("C2WATCH_SENSOR_NAME")
        .output()
        .expect("run c2watch");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "c2watch failed ({}): {stderr}",
        out.status
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

// ---------------------------------------------------------------------------------------
// The syslog side: header forms and what rsyslog parsed.
// ---------------------------------------------------------------------------------------

/// The syslog header form c2watch writes.
#[derive(Debug, Clone, Copy)]
enum Header {
    /// `<PRI>Mmm dd hh:mm:ss HOST CEF:0|...`, the form Microsoft documents for CEF.
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST CEF - - - CEF:0|...`.
    Rfc5424,
}

impl Header {
    /// The `--syslog-format` value.
    fn arg(self) -> &'static str {
        match self {
            Header::Rfc3164 => "rfc3164",
            Header::Rfc5424 => "rfc5424",
        }
    }

    /// rsyslog's `protocol-version`: 0 for a message it parsed as RFC 3164, 1 for 5424.
    fn protocol_version(self) -> &'static str {
        match self {
            Header::Rfc3164 => "0",
            Header::Rfc5424 => "1",
        }
    }

    /// The CEF text c2watch sent, put back together from rsyslog's properties.
    fn cef_text(self, received: &Received) -> String {
        match self {
            // RFC 3164 has no APP-NAME field: rsyslog takes the word up to and including
            // the first `:` as the tag, so `CEF:` is the tag and `0|c2watch|...` the msg.
            // A space after the tag would stay at the start of msg, so the two together
            // are exactly what was sent.
            Header::Rfc3164 => {
                assert_eq!(received.tag, "CEF:", "rsyslog tag of {received:?}");
                format!("{}{}", received.tag, received.msg)
            }
            Header::Rfc5424 => received.msg.clone(),
        }
    }
}

/// One line of an rsyslog output file: the properties rsyslog parsed from one message,
/// in the order of the `fields` template.
#[derive(Debug)]
struct Received {
    facility: String,
    severity: String,
    hostname: String,
    app_name: String,
    protocol_version: String,
    tag: String,
    msg: String,
}

impl Received {
    /// Splits a line written with the `fields` template.
    fn parse(line: &str) -> Received {
        let f: Vec<&str> = line.splitn(7, '\t').collect();
        assert_eq!(f.len(), 7, "not a `fields` line: {line:?}");
        let owned = |i: usize| f[i].to_owned();
        Received {
            facility: owned(0),
            severity: owned(1),
            hostname: owned(2),
            app_name: owned(3),
            protocol_version: owned(4),
            tag: owned(5),
            msg: owned(6),
        }
    }

    /// Checks that rsyslog parsed the header c2watch meant: facility local4 (the
    /// default), the syslog severity of the record's CEF severity, the sensor as host,
    /// APP-NAME `CEF`, and the header form.
    fn check(&self, header: Header, cef: &Cef) {
        let got = [
            &self.facility,
            &self.severity,
            &self.hostname,
            &self.app_name,
            &self.protocol_version,
        ];
        let want = [
            "local4",
            syslog_severity(&cef.header[6]),
            SENSOR,
            "CEF",
            header.protocol_version(),
        ];
        assert_eq!(got, want, "syslog fields of {self:?}");
    }
}

/// rsyslog's name for the syslog severity c2watch gives a CEF severity.
fn syslog_severity(cef_severity: &str) -> &'static str {
    match cef_severity {
        "8" => "crit",
        "6" | "7" => "err",
        "4" | "5" => "warning",
        other => panic!("no record of CEF severity {other} is expected"),
    }
}

/// The two rsyslog inputs, each with its own ruleset and output file.
#[derive(Debug, Clone, Copy)]
enum Input {
    Udp,
    Tcp,
}

impl Input {
    /// Ruleset name, file stem and URL scheme.
    fn name(self) -> &'static str {
        match self {
            Input::Udp => "udp",
            Input::Tcp => "tcp",
        }
    }
}

/// A running rsyslogd with its configuration and files in a temporary directory. Dropping
/// it kills the daemon, so a failed assertion does not leave it behind.
struct Rsyslog {
    child: Child,
    dir: TempDir,
    udp_port: u16,
    tcp_port: u16,
}

impl Rsyslog {
    /// Writes and validates a configuration, starts rsyslogd in the foreground and waits
    /// until both inputs deliver.
    fn start() -> Rsyslog {
        let bin = rsyslogd();
        let dir = tempfile::tempdir().expect("temporary directory");
        let (udp_port, tcp_port) = (free_udp_port(), free_tcp_port());
        let conf = dir.path().join("rsyslog.conf");
        fs::write(&conf, config(dir.path(), udp_port, tcp_port)).expect("write rsyslog.conf");
        validate(&bin, &conf);

        let child = spawn(&bin, dir.path(), &conf);
        let mut rsyslog = Rsyslog {
            child,
            dir,
            udp_port,
            tcp_port,
        };
        rsyslog.wait_ready();
        rsyslog
    }

    /// The `--syslog` URL of an input.
    fn url(&self, input: Input) -> String {
        format!("{}://127.0.0.1:{}", input.name(), self.port(input))
    }

    fn port(&self, input: Input) -> u16 {
        match input {
            Input::Udp => self.udp_port,
            Input::Tcp => self.tcp_port,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The complete lines rsyslog has written for an input's records so far.
    fn lines(&self, input: Input) -> Vec<String> {
        let text = fs::read_to_string(self.path(&format!("{}.log", input.name())));
        // omfile may be caught mid-write: only lines with their line feed count.
        let text = text.unwrap_or_default();
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        complete.lines().map(String::from).collect()
    }

    /// Polls an input's file until it holds `n` lines; fails after [`WAIT`].
    fn wait_for_lines(&self, input: Input, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.lines(input);
            if lines.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{input:?}: rsyslog wrote {} of {n} records in {WAIT:?}: {lines:#?}\n{}",
                lines.len(),
                self.log()
            );
            thread::sleep(POLL);
        }
    }

    /// Sends probes to both inputs until rsyslog has filed one from each. A TCP connect
    /// alone would not do: imudp gives no sign of life, and a datagram sent before it
    /// binds is lost without error.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        for input in [Input::Udp, Input::Tcp] {
            while !self.probe(input) {
                assert!(
                    Instant::now() < deadline,
                    "{input:?} input not ready\n{}",
                    self.log()
                );
                self.assert_running();
                thread::sleep(POLL);
            }
        }
    }

    /// Whether a probe has reached an input's probe file; sends one more if not.
    fn probe(&self, input: Input) -> bool {
        let filed = self.path(&format!("{}-probe.log", input.name()));
        if fs::metadata(filed).is_ok_and(|m| m.len() > 0) {
            return true;
        }
        let message = format!("<191>Jan  1 00:00:00 localhost {PROBE}: ready\n");
        let target = SocketAddr::from(([127, 0, 0, 1], self.port(input)));
        let _ = match input {
            Input::Udp => UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.send_to(message.as_bytes(), target).map(drop)),
            Input::Tcp => {
                TcpStream::connect(target).and_then(|mut s| s.write_all(message.as_bytes()))
            }
        };
        false
    }

    /// Fails with rsyslogd's output if it has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("rsyslogd exited during start-up ({status})\n{}", self.log());
        }
    }

    /// What rsyslogd printed, for failure messages.
    fn log(&self) -> String {
        let text = fs::read_to_string(self.path("rsyslogd.out")).unwrap_or_default();
        format!("rsyslogd output:\n{text}")
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rsyslogd from PATH, or from the sbin directories a non-root PATH may lack.
fn rsyslogd() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/sbin", "/sbin"].map(PathBuf::from);
    let found = std::env::split_paths(&path)
        .chain(sbin)
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "rsyslogd not found in PATH, /usr/sbin or /sbin. This test needs a real rsyslog \
             and does not skip: install the Debian package `rsyslog` (apt-get install -y rsyslog)"
        )
    })
}

/// A loopback UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    socket.local_addr().expect("bound address").port()
}

/// A loopback TCP port that was free a moment ago.
fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
    listener.local_addr().expect("bound address").port()
}

/// The rsyslog configuration: one input per transport on loopback, each with its own
/// ruleset writing the `fields` template to its own file.
fn config(dir: &Path, udp_port: u16, tcp_port: u16) -> String {
    let dir = dir.to_str().expect("temporary directory is UTF-8");
    assert!(!dir.contains('"'), "rsyslog strings cannot hold {dir:?}");
    // No imuxsock or imklog: the test must not read the host's /dev/log or kernel log.
    // An input bound to its own ruleset is how rsyslog keeps apart what came by UDP and
    // by TCP; in the default ruleset both would meet in one file.
    format!(
        "global(workDirectory=\"{dir}\")\n\
         module(load=\"imudp\")\n\
         module(load=\"imtcp\")\n\
         {FIELDS_TEMPLATE}\n{}\n{}\n\
         input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp_port}\" ruleset=\"udp\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp_port}\" ruleset=\"tcp\")\n",
        ruleset(dir, Input::Udp),
        ruleset(dir, Input::Tcp),
    )
}

/// The properties under test, one per line of a `list` template, separated by tabs. A tab
/// cannot come from a record: rsyslog writes any control character it receives as `#011`
/// and the like (EscapeControlCharactersOnReceive, on by default), and CEF escaping leaves
/// none, which the byte-for-byte comparison with stdout confirms.
const FIELDS_TEMPLATE: &str = r#"template(name="fields" type="list") {
    property(name="syslogfacility-text") constant(value="\t")
    property(name="syslogseverity-text") constant(value="\t")
    property(name="hostname") constant(value="\t")
    property(name="app-name") constant(value="\t")
    property(name="protocol-version") constant(value="\t")
    property(name="syslogtag") constant(value="\t")
    property(name="msg") constant(value="\n")
}"#;

/// The ruleset of one input: probes go to their own file, records to the input's file.
fn ruleset(dir: &str, input: Input) -> String {
    let name = input.name();
    format!(
        "ruleset(name=\"{name}\") {{\n\
         \x20   if $app-name == \"{PROBE}\" then {{\n\
         \x20       action(type=\"omfile\" file=\"{dir}/{name}-probe.log\")\n\
         \x20       stop\n\
         \x20   }}\n\
         \x20   action(type=\"omfile\" file=\"{dir}/{name}.log\" template=\"fields\")\n\
         }}"
    )
}

/// Runs `rsyslogd -N1`, which checks a configuration and exits 1 on any error.
fn validate(bin: &Path, conf: &Path) {
    let out = Command::new(bin)
        .arg("-N1")
        .arg("-f")
        .arg(conf)
        .output()
        .expect("run rsyslogd -N1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rsyslogd -N1 refused the configuration: {stderr}"
    );
}

/// Starts rsyslogd in the foreground (`-n`) with its own PID file, so it neither forks
/// away from the Drop guard nor meets a system rsyslogd's /run/rsyslogd.pid.
fn spawn(bin: &Path, dir: &Path, conf: &Path) -> Child {
    let out = File::create(dir.join("rsyslogd.out")).expect("create rsyslogd.out");
    let err = out.try_clone().expect("clone the output file");
    Command::new(bin)
        .arg("-n")
        .arg("-f")
        .arg(conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start rsyslogd")
}

// ---------------------------------------------------------------------------------------
// The scenario: a feed, two captures, and the records they should raise.
// ---------------------------------------------------------------------------------------

/// One row of the test feed: written to the ThreatFox CSV and expected back in records.
struct Ioc {
    /// `ioc_value`, in the canonical form c2watch writes to `cs1`.
    value: &'static str,
    ioc_type: &'static str,
    id: &'static str,
    first_seen: &'static str,
    /// `first_seen` in ms since the epoch (`date -u -d '...' +%s`).
    first_seen_ms: i64,
    threat_type: &'static str,
    malware: &'static str,
    confidence: u8,
    /// Empty for `None`.
    reference: &'static str,
}

/// The first shipped Remcos endpoint, with malware text holding `|`, `=`, `"` and `\`,
/// where the Windows path brings backslash-n (`\new`) and backslash-r (`\remcos`)
/// sequences and a trailing backslash: a reader that turns `\n` into a line break before
/// it undoes `\\` gets this wrong. The reference holds `=`, `&` and `|`.
const REMCOS_A: Ioc = Ioc {
    value: "2.26.75.239:1971",
    ioc_type: "ip:port",
    id: "1500001",
    first_seen: "2026-06-06 08:12:01",
    first_seen_ms: 1_780_733_521_000,
    threat_type: "botnet_cc",
    malware: r#"Remcos|RAT=4.9 "Pro" C:\ProgramData\new\remcos\"#,
    confidence: 75,
    reference: "https://threatfox.abuse.ch/ioc/1500001/?a=1&b=2|c",
};

/// The second shipped Remcos endpoint, plain, without a reference (so no `cs5`).
const REMCOS_B: Ioc = Ioc {
    value: "192.177.111.89:7788",
    ioc_type: "ip:port",
    id: "1500002",
    first_seen: "2026-06-06 08:12:01",
    first_seen_ms: 1_780_733_521_000,
    threat_type: "botnet_cc",
    malware: "Remcos",
    confidence: 75,
    reference: "",
};

/// An address indicator (`ip`), whose malware text holds a real line break: the quoted
/// CSV value spans two lines, and the record must carry it as `\n`.
const LOADER: Ioc = Ioc {
    value: "203.0.113.66",
    ioc_type: "ip",
    id: "1500003",
    first_seen: "2026-05-30 23:59:59",
    first_seen_ms: 1_780_185_599_000,
    threat_type: "payload_delivery",
    malware: "Loader\nstage=2",
    confidence: 50,
    reference: "",
};

/// An IPv6 endpoint, which also fills `c6a2`/`c6a3`.
const REMCOS_V6: Ioc = Ioc {
    value: "[2001:db8:c2::1]:443",
    ioc_type: "ip:port",
    id: "1500004",
    first_seen: "2026-06-06 08:12:01",
    first_seen_ms: 1_780_733_521_000,
    threat_type: "botnet_cc",
    malware: "Remcos",
    confidence: 75,
    reference: "",
};

/// The column header of a ThreatFox CSV export.
const CSV_HEADER: &str = r#"# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware","malware_alias","malware_printable","last_seen_utc","confidence_level","is_compromised","reference","tags","anonymous","reporter""#;

/// The test feed as a ThreatFox CSV export.
fn feed_csv() -> String {
    let iocs = [&REMCOS_A, &REMCOS_B, &LOADER, &REMCOS_V6];
    let mut text = format!("# ThreatFox IOCs: CSV export (c2watch test feed)\n#\n{CSV_HEADER}\n");
    for ioc in iocs {
        text.push_str(&csv_row(ioc));
        text.push('\n');
    }
    text.push_str(&format!("#\n# Number of entries: {}\n", iocs.len()));
    text
}

/// One CSV row: every value quoted, `"` doubled, `None` for empty, `", "` between.
fn csv_row(ioc: &Ioc) -> String {
    let confidence = ioc.confidence.to_string();
    let reference = if ioc.reference.is_empty() {
        "None"
    } else {
        ioc.reference
    };
    let cells = [
        ioc.first_seen,
        ioc.id,
        ioc.value,
        ioc.ioc_type,
        ioc.threat_type,
        "win.remcos",
        "None",
        ioc.malware,
        "None",
        &confidence,
        "0",
        reference,
        "remcos",
        "0",
        "c2watch-test",
    ];
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect();
    quoted.join(", ")
}

/// The record class a flow should raise.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The flow touched an `ip:port` indicator.
    Endpoint,
    /// The flow touched an `ip` indicator.
    Address,
    /// The flow touched an `ip:port` indicator's address on another port.
    OtherPort,
}

impl Kind {
    /// CEF class id, name and severity.
    fn class(self) -> [&'static str; 3] {
        match self {
            Kind::Endpoint => [
                "ioc-endpoint",
                "Connection to threat-intel C2 endpoint",
                "8",
            ],
            Kind::Address => ["ioc-address", "Connection to threat-intel C2 address", "7"],
            Kind::OtherPort => [
                "ioc-address-other-port",
                "Connection to threat-intel C2 address on another port",
                "5",
            ],
        }
    }
}

/// A flow that should raise a record: its class, indicator, and endpoints written client
/// -> server as the record must show them.
#[derive(Clone, Copy)]
struct Hit {
    kind: Kind,
    ioc: &'static Ioc,
    client: SocketAddr,
    server: SocketAddr,
    proto: &'static str,
}

impl Hit {
    fn new(
        kind: Kind,
        ioc: &'static Ioc,
        client: SocketAddr,
        server: SocketAddr,
        proto: &'static str,
    ) -> Hit {
        Hit {
            kind,
            ioc,
            client,
            server,
            proto,
        }
    }
}

/// A socket address written as text.
fn ep(text: &str) -> SocketAddr {
    text.parse().expect("test endpoint")
}

/// The files a replay reads and the records they should raise.
struct Scenario {
    _dir: TempDir,
    feed: PathBuf,
    captures: [PathBuf; 2],
    /// Sorted by [`Cef::flow`].
    expected: Vec<Cef>,
}

impl Scenario {
    /// Writes the feed, the shipped sample and the crafted capture to a temporary
    /// directory.
    fn write() -> Scenario {
        let dir = tempfile::tempdir().expect("temporary directory");
        let feed = dir.path().join(format!("{FEED_STEM}.csv"));
        fs::write(&feed, feed_csv()).expect("write the feed");
        let sample = dir.path().join("remcos-sample.pcap");
        let sample_bytes = testkit::remcos_sample();
        fs::write(&sample, &sample_bytes).expect("write the sample");
        let crafted = dir.path().join("crafted.pcapng");

        let mut hits = sample_hits(&sample_bytes);
        hits.extend(write_crafted(&crafted));
        let mut expected: Vec<Cef> = hits
            .iter()
            .map(|(hit, rt)| expected_cef(hit, *rt))
            .collect();
        expected.sort_by_key(Cef::flow);
        Scenario {
            _dir: dir,
            feed,
            captures: [sample, crafted],
            expected,
        }
    }
}

/// The flows of the shipped sample that touch an indicator (see `testkit::remcos_sample`),
/// each with the capture time of its first frame in ms.
fn sample_hits(sample: &[u8]) -> Vec<(Hit, i64)> {
    use Kind::{Endpoint, OtherPort};
    let (a, b) = (ep(REMCOS_A.value), ep(REMCOS_B.value));
    let beacon = |port: u16| SocketAddr::new([10, 20, 1, 10].into(), port);
    let mut hits = [49_200, 49_210, 49_220, 49_230]
        .map(|p| Hit::new(Endpoint, &REMCOS_A, beacon(p), a, "TCP"))
        .to_vec();
    let (c, d) = (ep("192.168.50.23:51515"), ep("10.20.1.11:52000"));
    hits.push(Hit::new(Endpoint, &REMCOS_B, c, b, "TCP"));
    hits.push(Hit::new(
        OtherPort,
        &REMCOS_A,
        d,
        ep("2.26.75.239:443"),
        "TCP",
    ));
    // 10.20.1.12:52001 -> 8.8.4.4:1971 shares only the port with an indicator: no record.
    hits.into_iter()
        .map(|h| (h, first_frame_ms(sample, h.client, h.server)))
        .collect()
}

/// The crafted flows, each as its frames in capture order and the record it should raise.
fn crafted_flows() -> Vec<(Vec<Vec<u8>>, Option<Hit>)> {
    use Kind::{Address, Endpoint, OtherPort};
    use testkit::{tcp, tcp_session, udp};
    let data = [0x17; 64];
    let (a, b) = (ep("10.30.0.5:50123"), ep(REMCOS_B.value));
    let (c, d) = (ep("10.30.0.6:40000"), ep(REMCOS_A.value));
    let (e, f) = (ep("10.30.0.7:51000"), ep("203.0.113.66:8443"));
    let (g, h) = (ep("10.30.0.8:52000"), ep("192.177.111.89:443"));
    let (i, j) = (ep("10.30.0.9:53000"), ep("198.51.100.7:7788"));
    let (k, l) = (ep("[fd00::10]:50500"), ep("[2001:db8:c2::1]:443"));
    let syn_ack_first = |s, c, d: &[u8]| vec![tcp(s, c, Tcp::SynAck, b""), tcp(c, s, Tcp::Ack, d)];
    vec![
        // The capture starts at the server's SYN-ACK: the indicator is still dst.
        (
            syn_ack_first(b, a, &data),
            Some(Hit::new(Endpoint, &REMCOS_B, a, b, "TCP")),
        ),
        // UDP, the indicator speaking first.
        (
            vec![udp(d, c, b"reply"), udp(c, d, b"beacon")],
            Some(Hit::new(Endpoint, &REMCOS_A, c, d, "UDP")),
        ),
        // An `ip` indicator mid-stream, its data first: the lower port is the server.
        (
            vec![tcp(f, e, Tcp::Ack, &data), tcp(e, f, Tcp::Ack, b"")],
            Some(Hit::new(Address, &LOADER, e, f, "TCP")),
        ),
        // An endpoint indicator's address on another port, from its SYN-ACK.
        (
            syn_ack_first(h, g, b""),
            Some(Hit::new(OtherPort, &REMCOS_B, g, h, "TCP")),
        ),
        // An indicator's port on an unrelated address: no record.
        (tcp_session(i, j, 1), None),
        // IPv6: the addresses also fill c6a2 and c6a3.
        (
            tcp_session(k, l, 1),
            Some(Hit::new(Endpoint, &REMCOS_V6, k, l, "TCP")),
        ),
    ]
}

/// Writes the crafted flows as a pcapng file, one after another; returns the hits with
/// the capture time of each flow's first frame in ms.
fn write_crafted(path: &Path) -> Vec<(Hit, i64)> {
    let file = File::create(path).expect("create the crafted capture");
    let mut writer =
        CaptureWriter::new(file, Format::Pcapng, LinkType::Ethernet).expect("pcapng header");
    let mut time_ns = CRAFTED_START_NS;
    let mut hits = Vec::new();
    for (frames, hit) in crafted_flows() {
        hits.extend(hit.map(|h| (h, time_ns.div_euclid(1_000_000))));
        for frame in frames {
            writer.write(time_ns, &frame).expect("write a frame");
            time_ns += FRAME_GAP_NS;
        }
    }
    writer.finish().expect("flush the crafted capture");
    hits
}

/// Capture time in ms of the first frame between `a` and `b`, either way, in a classic
/// microsecond pcap in host byte order (what `CaptureWriter` writes).
fn first_frame_ms(pcap: &[u8], a: SocketAddr, b: SocketAddr) -> i64 {
    let word = |at: usize| u32::from_ne_bytes(pcap[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(word(0), 0xa1b2_c3d4, "not a microsecond pcap");
    let mut at = 24; // global header
    while at + 16 <= pcap.len() {
        // Record header: seconds, microseconds, captured length, original length.
        let len = word(at + 8) as usize;
        let pair = frame_endpoints(&pcap[at + 16..at + 16 + len]);
        if pair == Some((a, b)) || pair == Some((b, a)) {
            return i64::from(word(at)) * 1000 + i64::from(word(at + 4)) / 1000;
        }
        at += 16 + len;
    }
    panic!("no frame between {a} and {b} in the sample");
}

/// Source and destination of an untagged Ethernet frame carrying IPv4 with TCP or UDP.
fn frame_endpoints(frame: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    // Ethernet: two MAC addresses, then the EtherType (0x0800 for IPv4).
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    // IPv4: header length in 32-bit words in the low nibble of byte 0, protocol in byte
    // 9 (6 TCP, 17 UDP), addresses in bytes 12-15 and 16-19; then both ports.
    let ip = &frame[14..];
    if ![6, 17].contains(ip.get(9)?) {
        return None;
    }
    let ports = ip.get(usize::from(ip[0] & 0x0f) * 4..)?.get(..4)?;
    let addr = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&ip[at..at + 4]).expect("4 bytes"));
    let port = |at: usize| u16::from_be_bytes([ports[at], ports[at + 1]]);
    Some((
        SocketAddr::new(addr(12), port(0)),
        SocketAddr::new(addr(16), port(2)),
    ))
}

/// The record a hit should raise, with `rt` the capture time of the flow's first frame.
fn expected_cef(hit: &Hit, rt_ms: i64) -> Cef {
    let [id, name, severity] = hit.kind.class();
    let header = [
        "CEF:0",
        "c2watch",
        "c2watch",
        env!("CARGO_PKG_VERSION"),
        id,
        name,
        severity,
    ];
    let mut ext = flow_fields(hit, rt_ms);
    ext.extend(indicator_fields(hit.ioc));
    Cef {
        header: header.map(String::from).to_vec(),
        ext,
    }
}

/// The flow's extension fields. Every client is in the built-in home networks and every
/// server outside, so the direction is outbound.
fn flow_fields(hit: &Hit, rt_ms: i64) -> BTreeMap<String, String> {
    let (c, s) = (hit.client, hit.server);
    let mut fields = pairs(&[
        ("rt", &rt_ms.to_string()),
        ("src", &c.ip().to_string()),
        ("spt", &c.port().to_string()),
        ("dst", &s.ip().to_string()),
        ("dpt", &s.port().to_string()),
        ("proto", hit.proto),
        ("act", "alert"),
        ("deviceDirection", "1"),
        ("dvchost", SENSOR),
    ]);
    if let (IpAddr::V6(c), IpAddr::V6(s)) = (c.ip(), s.ip()) {
        fields.extend(pairs(&[
            ("c6a2Label", "SourceIPv6"),
            ("c6a2", &c.to_string()),
            ("c6a3Label", "DestinationIPv6"),
            ("c6a3", &s.to_string()),
        ]));
    }
    fields
}

/// The indicator's context fields, exactly as the feed gave the text.
fn indicator_fields(ioc: &Ioc) -> BTreeMap<String, String> {
    let mut fields = pairs(&[
        ("cs1Label", "Indicator"),
        ("cs1", ioc.value),
        ("cn1Label", "Confidence"),
        ("cn1", &ioc.confidence.to_string()),
        ("deviceCustomDate1Label", "FirstSeen"),
        ("deviceCustomDate1", &ioc.first_seen_ms.to_string()),
        ("cs2Label", "Malware"),
        ("cs2", ioc.malware),
        ("cs3Label", "ThreatType"),
        ("cs3", ioc.threat_type),
        ("cs4Label", "FeedId"),
        ("cs4", &format!("threatfox:{}", ioc.id)),
        ("cs6Label", "Feed"),
        ("cs6", FEED_STEM),
    ]);
    if !ioc.reference.is_empty() {
        fields.extend(pairs(&[("cs5Label", "Reference"), ("cs5", ioc.reference)]));
    }
    fields
}

fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Cef {
    /// The flow a record is about, to sort and name records by.
    fn flow(&self) -> String {
        let get = |key: &str| self.ext.get(key).map_or("?", String::as_str);
        let (src, spt, dst, dpt) = (get("src"), get("spt"), get("dst"), get("dpt"));
        format!("{} {src} {spt} -> {dst} {dpt}", get("proto"))
    }
}
