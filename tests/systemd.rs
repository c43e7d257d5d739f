//! The hardened unit in `systemd/` as systemd itself judges it: `systemd-analyze verify`
//! accepts it without a warning, `systemd-analyze security` rates its exposure "OK" or
//! safer, and it keeps the directives that live capture and operations depend on.
//!
//! These checks need `systemd-analyze` (Debian's `systemd` package) but not systemd
//! running as PID 1. Where the tool is missing the tests fail, so a CI machine without it
//! cannot pass the hardening gate by skipping it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// File name of the unit, as installed and as systemd names it in its messages.
const UNIT_NAME: &str = "c2watch.service";
/// Where the unit expects the binary; the tests point it at the binary under test.
const INSTALLED_BINARY: &str = "/usr/local/bin/c2watch";
/// Highest overall exposure we accept: the top of systemd's "OK" band.
const MAX_EXPOSURE: f64 = 2.5;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn shipped_unit() -> String {
    std::fs::read_to_string(repo_file("systemd/c2watch.service")).expect("read the unit")
}

/// The shipped unit with only its `ExecStart=`/`ExecStartPre=` binary pointed at the
/// build under test: `systemd-analyze verify` fails when that binary does not exist.
fn unit_for_this_build() -> (TempDir, PathBuf) {
    let text: String = shipped_unit()
        .split_inclusive('\n')
        .map(|line| {
            if line.starts_with("ExecStart") {
                line.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_c2watch"))
            } else {
                line.to_owned()
            }
        })
        .collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(UNIT_NAME);
    std::fs::write(&path, text).expect("write the unit copy");
    (dir, path)
}

fn run_tool(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{tool}` ({e}): install the `systemd` package (apt-get install systemd)"
            )
        })
}

fn systemd_analyze(args: &[&str], unit: &Path) -> Output {
    let mut all = args.to_vec();
    all.push(unit.to_str().expect("UTF-8 temporary path"));
    run_tool("systemd-analyze", &all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The number on the "Overall exposure level for c2watch.service: 1.8 OK" line.
fn overall_exposure(report: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure line in:\n{report}"));
    let after_colon = line.rsplit(':').next().unwrap_or_default();
    let number = after_colon.split_whitespace().next().unwrap_or_default();
    number
        .parse()
        .unwrap_or_else(|e| panic!("exposure {number:?} in {line:?}: {e}"))
}

/// `Key=value` assignments of the shipped unit in file order, sections and comments
/// dropped (no line continuations are used in it).
fn directives() -> Vec<(String, String)> {
    shipped_unit()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Every value given to `key`, in file order.
fn values(key: &str) -> Vec<String> {
    let all = directives().into_iter().filter(|(k, _)| k == key);
    all.map(|(_, v)| v).collect()
}

/// The single value of `key`; a key set twice would make the unit ambiguous to read.
fn value(key: &str) -> String {
    let found = values(key);
    assert_eq!(found.len(), 1, "{key}= should be set once, found {found:?}");
    found.into_iter().next().unwrap_or_default()
}

/// The space-separated items of every `key` line together.
fn items(key: &str) -> BTreeSet<String> {
    let lines = values(key);
    lines
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_owned)
        .collect()
}

fn set_of(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_warnings() {
    let (_dir, unit) = unit_for_this_build();
    let out = systemd_analyze(&["verify"], &unit);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");

    // Unknown keys and bad values only warn. systemd names our unit in each message about
    // it (`/tmp/.../c2watch.service:12: Unknown key ...`, `c2watch.service: Command ...`).
    // Other lines are about the units it pulls in (network-online.target and the rest of
    // the host's /lib/systemd/system) or the state of a machine without systemd as PID 1:
    // not ours to fix, so they are ignored.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(UNIT_NAME)).collect();
    assert!(
        ours.is_empty(),
        "verify warned about the unit:\n{}",
        ours.join("\n")
    );
}

#[test]
fn exposure_is_ok_or_safer() {
    let (_dir, unit) = unit_for_this_build();
    let out = systemd_analyze(&["security", "--offline=true"], &unit);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));

    let exposure = overall_exposure(&report);
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn security_threshold_25_passes_and_the_gate_is_live() {
    let (_dir, unit) = unit_for_this_build();
    let gate = systemd_analyze(&["security", "--offline=true", "--threshold=25"], &unit);
    assert!(gate.status.success(), "{}", text(&gate.stdout));

    // A threshold of 0 must refuse any real unit, or the check above proves nothing.
    let strict = systemd_analyze(&["security", "--offline=true", "--threshold=0"], &unit);
    assert!(!strict.status.success(), "--threshold was ignored");
}

#[test]
fn runs_unprivileged_with_only_the_capture_capabilities() {
    let dynamic = values("DynamicUser") == ["yes"];
    let user = values("User");
    assert!(
        dynamic
            || user
                .iter()
                .any(|u| !["", "root", "0"].contains(&u.as_str()))
    );

    let capture = set_of(&["CAP_NET_RAW", "CAP_NET_ADMIN"]);
    assert_eq!(items("AmbientCapabilities"), capture);
    assert_eq!(items("CapabilityBoundingSet"), capture);
    assert_eq!(value("NoNewPrivileges"), "yes");
}

#[test]
fn bad_configuration_is_refused_before_capture_starts() {
    let config = "--config /etc/c2watch/c2watch.toml";
    let check = format!("{INSTALLED_BINARY} check-config {config}");
    assert_eq!(value("ExecStartPre"), check);
    assert_eq!(
        value("ExecStart"),
        format!("{INSTALLED_BINARY} run {config}")
    );
}

#[test]
fn reload_sends_sighup_and_crashes_restart() {
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(value("Restart"), "on-failure");
    assert!(
        !values("RestartSec").is_empty(),
        "RestartSec= keeps restarts spaced"
    );
    assert!(
        !values("StartLimitBurst").is_empty(),
        "a start limit ends restart loops"
    );
}

#[test]
fn filesystem_is_read_only_but_for_the_state_directory() {
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("ProtectHome"), "yes");
    assert_eq!(value("PrivateTmp"), "yes");
    assert_eq!(value("StateDirectory"), "c2watch");
}

#[test]
fn sockets_and_system_calls_are_limited_to_what_capture_uses() {
    let families = ["AF_PACKET", "AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"];
    assert_eq!(items("RestrictAddressFamilies"), set_of(&families));
    assert!(items("SystemCallFilter").contains("@system-service"));
    assert_eq!(value("SystemCallArchitectures"), "native");
}

#[test]
fn capture_still_sees_the_host_network() {
    // A private network namespace hides the tap; capabilities held in a private user
    // namespace do not count for the host's AF_PACKET sockets.
    for key in ["PrivateNetwork", "PrivateUsers", "IPAddressDeny"] {
        assert!(
            values(key).is_empty(),
            "{key}= would cut capture or alerts off"
        );
    }
}

#[test]
fn sysusers_file_creates_the_unit_user() {
    let root = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(root.path().join("etc")).expect("etc in the temporary root");
    let conf = repo_file("systemd/c2watch.sysusers");
    let root_arg = format!("--root={}", root.path().display());
    let out = run_tool("systemd-sysusers", &[&root_arg, conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = value("User");
    assert!(
        passwd.lines().any(|l| l.starts_with(&format!("{user}:"))),
        "{passwd}"
    );
}
