//! The `c2watch` binary as operators and responders run it: the shipped sample, the
//! built-in defaults, and refusals of bad configuration, feeds and capture files with
//! their documented exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn c2watch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_c2watch"))
        .args(args)
        .env_remove("C2WATCH_CONFIG")
        .env_remove("C2WATCH_SENSOR_NAME")
        .output()
        .expect("run c2watch")
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/remcos-sample.pcap")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn committed_sample_is_what_the_generator_writes() {
    let committed = std::fs::read(sample()).unwrap();
    assert_eq!(
        committed,
        c2watch::testkit::remcos_sample(),
        "regenerate with: cargo run --example make_sample"
    );
    assert!(committed.len() < 200 * 1024);
}

#[test]
fn replay_of_the_sample_prints_its_remcos_records_on_stdout_only() {
    let out = c2watch(&[
        "replay",
        "--sensor-name",
        "sensor01",
        sample().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("CEF:0|c2watch|c2watch|"))
    );
    let has = |i: usize, parts: &[&str]| parts.iter().all(|p| lines[i].contains(p));
    assert!(has(
        0,
        &[
            "|ioc-endpoint|",
            "src=10.20.1.10 spt=49200 dst=2.26.75.239 dpt=1971",
            "act=alert",
            "dvchost=sensor01"
        ]
    ));
    assert!(has(
        1,
        &[
            "|ioc-endpoint|",
            "src=192.168.50.23 spt=51515 dst=192.177.111.89 dpt=7788",
            "cs4=threatfox:1500002"
        ]
    ));
    assert!(has(
        2,
        &[
            "|ioc-address-other-port|",
            "|5|",
            "dst=2.26.75.239 dpt=443",
            "cs1=2.26.75.239:1971"
        ]
    ));
    assert!(has(
        3,
        &["|ioc-endpoint|", "cnt=3", "dst=2.26.75.239 dpt=1971"]
    ));
    assert!(
        !text.contains("8.8.4.4"),
        "indicator port on another address must not alert"
    );
    assert!(stderr(&out).contains("Totals"));
}

#[test]
fn aggregation_window_zero_sends_every_flow() {
    let out = c2watch(&[
        "replay",
        "--aggregate-window-secs",
        "0",
        sample().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| l.contains("dpt=1971")).count(),
        4,
        "{text}"
    );
    assert!(!text.contains("cnt="));
}

#[test]
fn check_config_prints_the_effective_settings() {
    let out = c2watch(&["check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("builtin:c2watch.toml (valid)"), "{text}");
    assert!(text.contains("# indicators: 2 ip:port, 0 ip"), "{text}");
    assert!(text.contains("idle_timeout_secs = 120"), "{text}");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/c2watch.toml");
    let out = c2watch(&["check-config", "--config", shipped.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn unknown_config_key_exits_78_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c2watch.toml");
    std::fs::write(&path, "[flow]\nidle_timeout_sec = 30\n").unwrap();
    for command in ["check-config", "replay"] {
        let mut args = vec![command, "--config", path.to_str().unwrap()];
        if command == "replay" {
            args.push("x.pcap");
        }
        let out = c2watch(&args);
        assert_eq!(out.status.code(), Some(78));
        let err = stderr(&out);
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains("idle_timeout_sec"),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");
    }
}

/// Replays the sample with `feed` as the only feed (a file named `iocs.txt`).
fn replay_with_feed(feed: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iocs.txt");
    std::fs::write(&path, feed).unwrap();
    let out = c2watch(&[
        "replay",
        "--ioc",
        path.to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    (dir, path, out)
}

#[test]
fn broken_feed_exits_78_naming_file_and_line() {
    let (_dir, feed, out) = replay_with_feed("# C2 list\n2.26.75.239:1971\n2.26.75.239:99999\n");
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:3", feed.display())), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn plain_list_feed_replaces_the_builtin_one() {
    let (_dir, _feed, out) = replay_with_feed("192.177.111.89:7788\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("dpt=7788") && text.contains("cs6=iocs"),
        "{text}"
    );
}

#[test]
fn missing_or_bad_capture_files_exit_66_and_65() {
    let out = c2watch(&["replay", "/nonexistent/file.pcap"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(stderr(&out).contains("/nonexistent/file.pcap"));
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pcap");
    let bytes = std::fs::read(sample()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let out = c2watch(&["replay", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(
        stdout(&out).lines().count(),
        4,
        "records before the cut are still reported"
    );
}

#[test]
fn metrics_file_passes_promtool_and_counts_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.prom");
    let out = c2watch(&[
        "replay",
        "--metrics-file",
        metrics.to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&metrics).unwrap();
    for line in [
        "c2watch_packets_total{interface=\"replay\"} 511",
        "c2watch_decode_errors_total{reason=\"not_ip\"} 1",
        "c2watch_decode_errors_total{reason=\"truncated\"} 1",
        "c2watch_alerts_total{result=\"emitted\"} 3",
        "c2watch_alerts_total{result=\"summarized\"} 1",
        "c2watch_alerts_total{result=\"suppressed\"} 3",
        "c2watch_indicators{kind=\"endpoint\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics).unwrap())
        .output()
        .expect("promtool must be installed (apt-get install prometheus); .ci/run does it");
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
}

#[test]
fn tcp_output_reconnects_and_delivers_records_queued_while_the_receiver_was_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_c2watch"))
        .args(["replay", "--syslog", &url, sample().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (stream, _) = listener.accept().unwrap();
    let reader = std::io::BufRead::lines(std::io::BufReader::new(stream));
    let records: Vec<String> = reader.map(Result::unwrap).collect();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records.len(), 4, "{records:?}");
    assert!(
        records.iter().all(|r| r.contains(" CEF:0|c2watch|")),
        "{records:?}"
    );
    assert!(stderr(&out).contains("Syslog TCP connect failed"));
}

#[test]
fn records_for_a_receiver_that_never_comes_back_exit_74() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let out = c2watch(&["replay", "--syslog", &url, sample().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(stderr(&out).contains("Records not delivered"));
}
