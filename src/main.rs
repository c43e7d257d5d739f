//! The `c2watch` command line: a thin layer over the library that parses arguments,
//! turns errors into one line on stderr and maps them to documented exit codes.
//!
//! Exit codes (sysexits.h): 0 success; 65 a capture file was read only in part; 66 a
//! capture file or interface could not be opened; 69 a service the sensor needs (the
//! metrics port, the runtime) is unavailable; 70 internal error; 74 records could not be
//! delivered to an output; 77 no permission to capture; 78 bad configuration or feed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use c2watch::app::{self, Overrides, Setup, SetupError};
use c2watch::capture::{CaptureError, LiveSettings};
use c2watch::config::{self, Facility, Framing, SyslogConfig, SyslogFormat};
use c2watch::decode::DecodeError;
use c2watch::engine::QueueFull;
use c2watch::indicator::HitKind;
use c2watch::live::{self, LiveError, LiveOptions, Signals};
use c2watch::metrics::Metrics;
use c2watch::output::OutputReport;

const EXIT_DATAERR: u8 = 65;
const EXIT_NOINPUT: u8 = 66;
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_SOFTWARE: u8 = 70;
const EXIT_IOERR: u8 = 74;
const EXIT_NOPERM: u8 = 77;
const EXIT_CONFIG: u8 = 78;

/// Watches network traffic for connections to threat-intel C2 endpoints and reports each
/// one as a CEF record (stdout or syslog) for Microsoft Sentinel's CommonSecurityLog.
#[derive(Parser, Debug)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Capture live on an interface (the service).
    Run(RunArgs),
    /// Run capture files (pcap, pcapng) through the detection engine.
    Replay(ReplayArgs),
    /// Validate the configuration and feeds, and print the effective settings.
    CheckConfig(CommonArgs),
}

/// Options shared by every command.
#[derive(Args, Debug)]
struct CommonArgs {
    /// Configuration file (TOML). Default: the built-in configuration.
    #[arg(long, short, env = "C2WATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Indicator feed to use instead of the configured ones (repeatable). ThreatFox CSV or
    /// JSON export, or a plain list of ip:port / ip lines; recognised from the content.
    #[arg(long = "ioc", value_name = "FILE")]
    iocs: Vec<PathBuf>,
    /// Sensor name for dvchost and the syslog HOSTNAME. Default: the host name.
    #[arg(long, env = "C2WATCH_SENSOR_NAME")]
    sensor_name: Option<String>,
}

/// Options of the commands that emit records.
#[derive(Args, Debug)]
struct OutputArgs {
    /// Syslog destination udp://host:port or tcp://host:port (repeatable); replaces the
    /// configured syslog outputs.
    #[arg(long = "syslog", value_name = "URL")]
    syslogs: Vec<String>,
    /// Syslog header form for --syslog destinations.
    #[arg(long, value_enum, default_value = "rfc3164")]
    syslog_format: FormatArg,
    /// Syslog facility for --syslog destinations (kern .. local7).
    #[arg(long, default_value = "local4")]
    facility: String,
    /// Also print records on stdout (the default when no syslog output is set).
    #[arg(long)]
    stdout: bool,
    /// Aggregation window in seconds for repeated flows (0: one record per flow).
    #[arg(long, value_name = "SECS")]
    aggregate_window_secs: Option<u64>,
    /// Write the Prometheus metrics exposition to this file at exit.
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Capture files to read, in order.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Interface to capture on (default: capture.interface).
    #[arg(long, short, env = "C2WATCH_INTERFACE")]
    interface: Option<String>,
    /// Capture workers; 0 for one per core (default: capture.workers).
    #[arg(long)]
    workers: Option<usize>,
    /// Bytes kept of each frame (default: capture.snaplen_bytes).
    #[arg(long)]
    snaplen_bytes: Option<u32>,
    /// Kernel buffer per worker in bytes (default: capture.buffer_bytes).
    #[arg(long)]
    buffer_bytes: Option<u64>,
    /// BPF prefilter (default: capture.bpf_filter).
    #[arg(long, value_name = "FILTER")]
    bpf: Option<String>,
    /// Prometheus endpoint address, or `off`.
    #[arg(
        long,
        value_name = "ADDR:PORT|off",
        default_value = "127.0.0.1:9464",
        env = "C2WATCH_METRICS"
    )]
    metrics: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    Rfc3164,
    Rfc5424,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, error: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: error.to_string(),
        }
    }
}

impl From<SetupError> for Failure {
    fn from(e: SetupError) -> Failure {
        Failure::new(EXIT_CONFIG, e)
    }
}

fn main() -> ExitCode {
    init_logging();
    let result = match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Replay(args) => replay(args),
        Command::CheckConfig(args) => check_config(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("c2watch: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Logs go to stderr, key/value style; `C2WATCH_LOG` (or `RUST_LOG`) sets the filter.
fn init_logging() {
    let filter = std::env::var("C2WATCH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The command-line settings that override the configuration.
fn overrides(common: &CommonArgs, output: Option<&OutputArgs>) -> Result<Overrides, Failure> {
    let mut o = Overrides {
        config: common.config.clone(),
        iocs: common.iocs.clone(),
        sensor_name: common.sensor_name.clone(),
        ..Overrides::default()
    };
    if let Some(out) = output {
        o.syslogs = syslogs(out)?;
        o.stdout = out.stdout;
        o.aggregate_window_secs = out.aggregate_window_secs;
    }
    Ok(o)
}

/// The `--syslog` destinations with their format and facility.
fn syslogs(out: &OutputArgs) -> Result<Vec<SyslogConfig>, Failure> {
    let facility: Facility = toml::Value::String(out.facility.clone())
        .try_into()
        .map_err(|_| {
            Failure::new(
                EXIT_CONFIG,
                format!("--facility: unknown facility `{}`", out.facility),
            )
        })?;
    let format = match out.syslog_format {
        FormatArg::Rfc3164 => SyslogFormat::Rfc3164,
        FormatArg::Rfc5424 => SyslogFormat::Rfc5424,
    };
    let config = |url: &String| SyslogConfig {
        url: url.clone(),
        format,
        facility,
        framing: Framing::Lf,
    };
    Ok(out.syslogs.iter().map(config).collect())
}

/// `c2watch check-config`.
fn check_config(args: CommonArgs) -> Result<u8, Failure> {
    let o = overrides(&args, None)?;
    let mut setup = app::setup(&o, QueueFull::Drop, &Metrics::new())?;
    setup.loaded.config.sensor.name = Some(config::sensor_name(&setup.loaded.config));
    let text = toml::to_string(&setup.loaded.config).map_err(|e| Failure::new(EXIT_SOFTWARE, e))?;
    println!("# configuration: {} (valid)", setup.loaded.origin);
    for feed in &setup.feeds {
        println!("# feed {}: {}", feed.name, feed.origin());
    }
    let (endpoints, addresses) = setup.indicators.counts();
    println!("# indicators: {endpoints} ip:port, {addresses} ip");
    print!("{text}");
    Ok(0)
}

/// `c2watch replay FILE...`.
fn replay(args: ReplayArgs) -> Result<u8, Failure> {
    let o = overrides(&args.common, Some(&args.output))?;
    let metrics = Arc::new(Metrics::new());
    let setup = app::setup(&o, QueueFull::Wait, &metrics)?;
    let report = app::replay(setup, args.files, metrics.clone())
        .map_err(|e| Failure::new(EXIT_SOFTWARE, e))?;
    log_totals(&metrics, "replay");
    write_metrics(args.output.metrics_file.as_ref(), &metrics)?;
    Ok(match report.file_errors.first() {
        Some(CaptureError::Read { .. }) => EXIT_DATAERR,
        Some(_) => EXIT_NOINPUT,
        None => delivery_status(&report.outputs),
    })
}

/// `c2watch run`.
fn run(args: RunArgs) -> Result<u8, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("c2watch-io")
        .enable_all()
        .build()
        .map_err(|e| Failure::new(EXIT_UNAVAILABLE, e))?;
    let signals = {
        let _context = runtime.enter();
        Signals::register().map_err(|e| Failure::new(EXIT_UNAVAILABLE, e))?
    };
    let o = overrides(&args.common, Some(&args.output))?;
    let metrics = Arc::new(Metrics::new());
    let setup = app::setup(&o, QueueFull::Drop, &metrics)?;
    let options = live_options(&args, &setup)?;
    let interface = options.capture.interface.clone();
    let report =
        live::run(&runtime, signals, setup, o, options, metrics.clone()).map_err(live_failure)?;
    log_totals(&metrics, &interface);
    if let Some(e) = report.capture_error {
        return Err(live_failure(LiveError::Capture(e)));
    }
    Ok(delivery_status(&report.outputs))
}

/// Live options: command line over `[capture]`.
fn live_options(args: &RunArgs, setup: &Setup) -> Result<LiveOptions, Failure> {
    let c = &setup.loaded.config.capture;
    let interface = args
        .interface
        .clone()
        .unwrap_or_else(|| c.interface.clone());
    if interface.is_empty() {
        let reason = "no interface: give --interface or set capture.interface";
        return Err(Failure::new(EXIT_CONFIG, reason));
    }
    let workers = match args.workers.unwrap_or(c.workers) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let metrics_addr = match args.metrics.as_str() {
        "off" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|_| {
            Failure::new(
                EXIT_CONFIG,
                format!("--metrics: `{addr}` is not ADDR:PORT or off"),
            )
        })?),
    };
    let capture = LiveSettings {
        interface,
        snaplen_bytes: args.snaplen_bytes.unwrap_or(c.snaplen_bytes),
        buffer_bytes: args.buffer_bytes.unwrap_or(c.buffer_bytes),
        bpf_filter: args.bpf.clone().unwrap_or_else(|| c.bpf_filter.clone()),
    };
    Ok(LiveOptions {
        capture,
        workers,
        metrics_addr,
        metrics_file: args.output.metrics_file.clone(),
    })
}

/// Exit code for a live-capture failure: permission problems are 77, the rest 66/69.
fn live_failure(e: LiveError) -> Failure {
    let text = e.to_string();
    let code = match &e {
        LiveError::Capture(_) if text.contains("ermission") || text.contains("not permitted") => {
            EXIT_NOPERM
        }
        LiveError::Capture(_) => EXIT_NOINPUT,
        LiveError::Io { .. } => EXIT_UNAVAILABLE,
    };
    Failure::new(code, text)
}

/// 74 if any output failed or dropped records, else 0.
fn delivery_status(outputs: &[OutputReport]) -> u8 {
    let mut status = 0;
    for r in outputs.iter().filter(|r| r.failed + r.dropped > 0) {
        tracing::error!(output = %r.name, sent = r.sent, failed = r.failed, dropped = r.dropped,
            "Records not delivered");
        status = EXIT_IOERR;
    }
    status
}

/// Logs the run's totals from the metrics.
fn log_totals(metrics: &Metrics, interface: &str) {
    let sum = |v: &prometheus::IntCounterVec, labels: &[&str]| -> u64 {
        labels.iter().map(|l| v.with_label_values(&[l]).get()).sum()
    };
    let kinds = HitKind::ALL.map(HitKind::as_str);
    let reasons = DecodeError::ALL.map(DecodeError::as_str);
    tracing::info!(
        packets = metrics.packets.with_label_values(&[interface]).get(),
        undecoded = sum(&metrics.decode_errors, &reasons),
        hits = sum(&metrics.hits, &kinds),
        alerts = metrics.alerts.with_label_values(&["emitted"]).get(),
        summaries = metrics.alerts.with_label_values(&["summarized"]).get(),
        suppressed = metrics.alerts.with_label_values(&["suppressed"]).get(),
        dropped = metrics.alerts.with_label_values(&["dropped"]).get(),
        "Totals"
    );
}

/// Writes the metrics exposition to `path`, if given.
fn write_metrics(path: Option<&PathBuf>, metrics: &Metrics) -> Result<(), Failure> {
    let Some(path) = path else { return Ok(()) };
    std::fs::write(path, metrics.render()).map_err(|e| {
        Failure::new(
            EXIT_IOERR,
            format!("{}: cannot write metrics: {e}", path.display()),
        )
    })
}
