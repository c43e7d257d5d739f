//! The `c2watch` command line: a thin layer over the library that turns errors into one
//! line on stderr and a documented exit code.
//!
//! Exit codes (sysexits.h): 0 success; 65 a capture file was read only in part; 66 a
//! capture file could not be opened; 70 internal error; 74 records could not be
//! delivered to an output; 78 bad configuration or indicator feed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Args, Parser, Subcommand};
use tokio::sync::mpsc;

use c2watch::capture::{self, CaptureError};
use c2watch::cef::CefWriter;
use c2watch::config::{self, Facility, Feed, Framing, Loaded, SyslogConfig, SyslogFormat};
use c2watch::engine::{Engine, EngineSettings, QueueFull};
use c2watch::flow::FlowLimits;
use c2watch::indicator::{HitKind, IndicatorSet};
use c2watch::metrics::Metrics;
use c2watch::output::{self, OutputReport, OutputSettings, OutputSpec};

/// Exit code for bad configuration or feeds (`EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;
/// Exit code for a capture file that could not be opened (`EX_NOINPUT`).
const EXIT_NOINPUT: u8 = 66;
/// Exit code for a capture file read only in part (`EX_DATAERR`).
const EXIT_DATAERR: u8 = 65;
/// Exit code for records not delivered (`EX_IOERR`).
const EXIT_IOERR: u8 = 74;
/// Exit code for an internal failure (`EX_SOFTWARE`).
const EXIT_SOFTWARE: u8 = 70;

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

#[derive(Args, Debug)]
struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,
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
    /// Write the Prometheus metrics exposition here when done.
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Capture files to read, in order.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    Rfc3164,
    Rfc5424,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    fn new(code: u8, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(args),
        Command::CheckConfig(args) => check_config(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("c2watch: {:#}", f.error);
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

/// Loads the configuration with the command-line overrides applied.
fn load_config(args: &CommonArgs) -> Result<(Loaded, Vec<Feed>), Failure> {
    let mut loaded =
        config::load(args.config.as_deref()).map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    if let Some(name) = &args.sensor_name {
        config::check_sensor_name(name)
            .map_err(|r| Failure::new(EXIT_CONFIG, anyhow::anyhow!("--sensor-name: {r}")))?;
        loaded.config.sensor.name = Some(name.clone());
    }
    let feeds = if args.iocs.is_empty() {
        config::feeds(&loaded)
    } else {
        config::feeds_from_paths(&args.iocs)
    };
    Ok((loaded, feeds))
}

/// Loads every feed into one indicator set, logging what each gave.
fn load_indicators(feeds: &[Feed], metrics: &Metrics) -> Result<IndicatorSet, Failure> {
    let (set, summaries) = config::load_indicators(feeds).map_err(|e| {
        metrics.feed_loads.with_label_values(&["error"]).inc();
        Failure::new(EXIT_CONFIG, e)
    })?;
    for s in &summaries {
        tracing::info!(feed = %s.name, origin = %s.origin, format = %s.format,
            indicators = s.indicators, skipped_rows = s.skipped_rows, "Feed loaded");
    }
    let (endpoints, addresses) = set.counts();
    metrics
        .indicators
        .with_label_values(&["endpoint"])
        .set(endpoints as i64);
    metrics
        .indicators
        .with_label_values(&["address"])
        .set(addresses as i64);
    metrics
        .feed_rows_skipped
        .set(summaries.iter().map(|s| s.skipped_rows as i64).sum());
    metrics.feed_loads.with_label_values(&["ok"]).inc();
    metrics.feed_last_load.set(unix_now_secs());
    if set.duplicates() > 0 {
        tracing::info!(
            duplicates = set.duplicates(),
            "Duplicate indicators ignored"
        );
    }
    if set.is_empty() {
        tracing::warn!("No indicators loaded: nothing can match");
    }
    Ok(set)
}

/// Seconds since the epoch, as a float for the Prometheus gauge.
fn unix_now_secs() -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0.0, |d| d.as_secs_f64())
}

/// `c2watch check-config`.
fn check_config(args: CommonArgs) -> Result<u8, Failure> {
    let (mut loaded, feeds) = load_config(&args)?;
    let metrics = Metrics::new();
    let set = load_indicators(&feeds, &metrics)?;
    loaded.config.sensor.name = Some(config::sensor_name(&loaded.config));
    let text = toml::to_string(&loaded.config).map_err(|e| Failure::new(EXIT_SOFTWARE, e))?;
    println!("# configuration: {} (valid)", loaded.origin);
    for feed in &feeds {
        println!("# feed {}: {}", feed.name, feed.origin());
    }
    let (endpoints, addresses) = set.counts();
    println!("# indicators: {endpoints} ip:port, {addresses} ip");
    print!("{text}");
    Ok(0)
}

/// The outputs a replay writes to.
fn output_specs(args: &ReplayArgs, loaded: &Loaded) -> Result<Vec<OutputSpec>, Failure> {
    let mut syslogs = loaded.config.output.syslog.clone();
    if !args.syslogs.is_empty() {
        let facility: Facility = toml::Value::String(args.facility.clone())
            .try_into()
            .map_err(|_| {
                Failure::new(
                    EXIT_CONFIG,
                    anyhow::anyhow!("--facility: unknown facility `{}`", args.facility),
                )
            })?;
        let format = match args.syslog_format {
            FormatArg::Rfc3164 => SyslogFormat::Rfc3164,
            FormatArg::Rfc5424 => SyslogFormat::Rfc5424,
        };
        syslogs = args
            .syslogs
            .iter()
            .map(|url| SyslogConfig {
                url: url.clone(),
                format,
                facility,
                framing: Framing::Lf,
            })
            .collect();
        for s in &syslogs {
            config::SyslogUrl::parse(&s.url)
                .map_err(|r| Failure::new(EXIT_CONFIG, anyhow::anyhow!("--syslog: {r}")))?;
        }
    }
    let stdout = args.stdout || loaded.config.output.stdout || syslogs.is_empty();
    let mut specs: Vec<OutputSpec> = syslogs.into_iter().map(OutputSpec::Syslog).collect();
    if stdout {
        specs.insert(0, OutputSpec::Stdout);
    }
    Ok(specs)
}

/// `c2watch replay FILE...`.
fn replay(args: ReplayArgs) -> Result<u8, Failure> {
    let (loaded, feeds) = load_config(&args.common)?;
    let metrics = Arc::new(Metrics::new());
    let set = load_indicators(&feeds, &metrics)?;
    let specs = output_specs(&args, &loaded)?;
    let cfg = &loaded.config;
    let settings = OutputSettings {
        cef: CefWriter::new(&config::sensor_name(cfg), loaded.home_networks.clone()),
        host: config::sensor_name(cfg),
        max_record_bytes: cfg.output.max_record_bytes,
        queue_records: cfg.output.queue_alerts,
        close_timeout: Duration::from_secs(5),
    };
    let window_secs = args
        .aggregate_window_secs
        .unwrap_or(cfg.flow.aggregate_window_secs);
    let engine_settings = EngineSettings {
        flow: FlowLimits {
            idle_timeout_ns: (cfg.flow.idle_timeout_secs as i64).saturating_mul(1_000_000_000),
            max_flows: cfg.flow.max_flows,
        },
        aggregate_window_ms: (window_secs as i64).saturating_mul(1000),
        queue_full: QueueFull::Wait,
    };
    let (tx, rx) = mpsc::channel(cfg.output.queue_alerts);
    let engine = Arc::new(Engine::new(
        Arc::new(ArcSwap::from_pointee(set)),
        engine_settings,
        tx,
        metrics.clone(),
    ));
    let files = args.files.clone();
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || replay_files(engine, &files))
        .map_err(|e| Failure::new(EXIT_SOFTWARE, e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(EXIT_SOFTWARE, e))?;
    let reports = runtime.block_on(output::run(rx, specs, settings, metrics.clone()));
    let file_errors = capture
        .join()
        .map_err(|_| Failure::new(EXIT_SOFTWARE, anyhow::anyhow!("capture thread panicked")))?;
    finish_replay(&args, &metrics, &reports, &file_errors)
}

/// Reads every file through one worker, then closes the aggregation windows. Dropping
/// the engine closes the alert queue, which ends the outputs.
fn replay_files(engine: Arc<Engine>, files: &[PathBuf]) -> Vec<CaptureError> {
    let mut errors = Vec::new();
    {
        let mut worker = engine.worker(None);
        for file in files {
            match capture::replay_file(file, &mut worker) {
                Ok(frames) => tracing::info!(file = %file.display(), frames, "Capture file read"),
                Err(e) => {
                    tracing::error!(error = %e, "Capture file not fully read");
                    errors.push(e);
                }
            }
        }
    }
    engine.finish();
    errors
}

/// Logs the replay's totals, writes the metrics file and picks the exit code.
fn finish_replay(
    args: &ReplayArgs,
    metrics: &Metrics,
    reports: &[OutputReport],
    file_errors: &[CaptureError],
) -> Result<u8, Failure> {
    let hits: u64 = HitKind::ALL
        .iter()
        .map(|k| metrics.hits.with_label_values(&[k.as_str()]).get())
        .sum();
    let decode_errors: u64 = c2watch::decode::DecodeError::ALL
        .iter()
        .map(|r| metrics.decode_errors.with_label_values(&[r.as_str()]).get())
        .sum();
    tracing::info!(
        packets = metrics.packets.with_label_values(&["replay"]).get(),
        undecoded = decode_errors,
        hits,
        alerts = metrics.alerts.with_label_values(&["emitted"]).get(),
        summaries = metrics.alerts.with_label_values(&["summarized"]).get(),
        suppressed = metrics.alerts.with_label_values(&["suppressed"]).get(),
        "Replay done"
    );
    if let Some(path) = &args.metrics_file {
        std::fs::write(path, metrics.render())
            .with_context(|| format!("{}: cannot write metrics", path.display()))
            .map_err(|e| Failure::new(EXIT_IOERR, e))?;
    }
    let undelivered: u64 = reports.iter().map(|r| r.failed + r.dropped).sum();
    for r in reports.iter().filter(|r| r.failed + r.dropped > 0) {
        tracing::error!(output = %r.name, sent = r.sent, failed = r.failed, dropped = r.dropped, "Records not delivered");
    }
    Ok(match file_errors.first() {
        Some(CaptureError::Read { .. }) => EXIT_DATAERR,
        Some(_) => EXIT_NOINPUT,
        None if undelivered > 0 => EXIT_IOERR,
        None => 0,
    })
}
