//! Assembly of a sensor from its configuration and command-line overrides: indicators,
//! outputs and engine settings, and the replay of capture files.
//!
//! The binary parses arguments into [`Overrides`] and calls in here; live capture lives
//! in [`crate::live`]. Everything that can be refused for bad configuration is checked
//! in [`setup`], before any capture starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::capture::{self, CaptureError};
use crate::cef::CefWriter;
use crate::config::{self, ConfigError, Feed, Loaded, SyslogConfig};
use crate::engine::{Engine, EngineSettings, QueueFull};
use crate::feed::FeedError;
use crate::flow::FlowLimits;
use crate::indicator::IndicatorSet;
use crate::metrics::Metrics;
use crate::output::{self, OutputReport, OutputSettings, OutputSpec};

/// How long closing may wait for TCP receivers to take queued records.
const OUTPUT_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings given on the command line, which win over the configuration file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Configuration file; the built-in one when absent.
    pub config: Option<PathBuf>,
    /// Feeds replacing the configured ones.
    pub iocs: Vec<PathBuf>,
    /// Sensor name.
    pub sensor_name: Option<String>,
    /// Syslog outputs replacing the configured ones (when not empty).
    pub syslogs: Vec<SyslogConfig>,
    /// Also write records to stdout.
    pub stdout: bool,
    /// Aggregation window.
    pub aggregate_window_secs: Option<u64>,
}

/// Configuration that cannot be used: `main` exits with 78.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An indicator feed.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// A command-line value.
    #[error("{option}: {reason}")]
    Option {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Everything a sensor needs, validated.
pub struct Setup {
    /// The configuration with overrides applied.
    pub loaded: Loaded,
    /// Feeds to load, resolved.
    pub feeds: Vec<Feed>,
    /// The indicator set loaded from them.
    pub indicators: IndicatorSet,
    /// Where records go.
    pub outputs: Vec<OutputSpec>,
    /// Settings shared by the outputs.
    pub output_settings: OutputSettings,
    /// Flow and aggregation settings.
    pub engine: EngineSettings,
}

/// Loads and validates configuration, feeds and outputs.
pub fn setup(o: &Overrides, queue_full: QueueFull, metrics: &Metrics) -> Result<Setup, SetupError> {
    let mut loaded = config::load(o.config.as_deref())?;
    if let Some(name) = &o.sensor_name {
        let reason = |r| SetupError::Option {
            option: "--sensor-name",
            reason: r,
        };
        config::check_sensor_name(name).map_err(reason)?;
        loaded.config.sensor.name = Some(name.clone());
    }
    let outputs = outputs(&loaded, o)?;
    let feeds = feeds(&loaded, o);
    let indicators = load_indicators(&feeds, metrics)?;
    let mut output_settings = output_settings(&loaded);
    output_settings.backpressure = queue_full == QueueFull::Wait;
    let engine = engine_settings(&loaded, o, queue_full);
    Ok(Setup {
        loaded,
        feeds,
        indicators,
        outputs,
        output_settings,
        engine,
    })
}

/// The feeds in force: `--ioc` files, else the configured feeds.
pub fn feeds(loaded: &Loaded, o: &Overrides) -> Vec<Feed> {
    if o.iocs.is_empty() {
        config::feeds(loaded)
    } else {
        config::feeds_from_paths(&o.iocs)
    }
}

/// The outputs: command-line syslog destinations replace the configured ones; stdout
/// when asked for or when there is no other output. Configured URLs were checked with
/// the configuration; a bad `--syslog` URL is refused here.
fn outputs(loaded: &Loaded, o: &Overrides) -> Result<Vec<OutputSpec>, SetupError> {
    let syslogs = if o.syslogs.is_empty() {
        &loaded.config.output.syslog
    } else {
        &o.syslogs
    };
    let stdout = o.stdout || loaded.config.output.stdout || syslogs.is_empty();
    let reason = |r| SetupError::Option {
        option: "--syslog",
        reason: r,
    };
    let syslog = |s: &SyslogConfig| -> Result<OutputSpec, SetupError> {
        let url = config::SyslogUrl::parse(&s.url).map_err(reason)?;
        Ok(OutputSpec::Syslog(s.clone(), url))
    };
    let mut specs = syslogs.iter().map(syslog).collect::<Result<Vec<_>, _>>()?;
    if stdout {
        specs.insert(0, OutputSpec::Stdout);
    }
    Ok(specs)
}

/// Record settings from the configuration.
fn output_settings(loaded: &Loaded) -> OutputSettings {
    let cfg = &loaded.config;
    let sensor = config::sensor_name(cfg);
    OutputSettings {
        cef: CefWriter::new(&sensor, loaded.home_networks.clone()),
        host: sensor,
        max_record_bytes: cfg.output.max_record_bytes,
        queue_records: cfg.output.queue_alerts,
        close_timeout: OUTPUT_CLOSE_TIMEOUT,
        backpressure: false,
    }
}

/// Flow settings from the configuration, with the window override applied.
pub fn engine_settings(loaded: &Loaded, o: &Overrides, queue_full: QueueFull) -> EngineSettings {
    let flow = &loaded.config.flow;
    let window_secs = o
        .aggregate_window_secs
        .unwrap_or(flow.aggregate_window_secs);
    EngineSettings {
        flow: FlowLimits {
            idle_timeout_ns: secs_to_ns(flow.idle_timeout_secs),
            max_flows: flow.max_flows,
        },
        aggregate_window_ms: i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        queue_full,
    }
}

/// Seconds as nanoseconds, saturating.
fn secs_to_ns(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
}

/// Loads every feed into one indicator set, logging what each gave and updating the
/// indicator metrics. A feed that fails leaves the metrics' set as it was.
pub fn load_indicators(feeds: &[Feed], metrics: &Metrics) -> Result<IndicatorSet, FeedError> {
    let (set, summaries) = config::load_indicators(feeds).inspect_err(|_| {
        metrics.feed_loads.with_label_values(&["error"]).inc();
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
    metrics
        .feed_last_load
        .set(crate::timefmt::now_ns() as f64 / 1e9);
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

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    /// Capture files that could not be read, or not fully.
    pub file_errors: Vec<CaptureError>,
    /// What each output did.
    pub outputs: Vec<OutputReport>,
}

/// Replays capture files through one worker and sends the records to the outputs.
pub fn replay(
    setup: Setup,
    files: Vec<PathBuf>,
    metrics: Arc<Metrics>,
) -> std::io::Result<ReplayReport> {
    let (tx, rx) = mpsc::channel(setup.loaded.config.output.queue_alerts);
    let set = Arc::new(ArcSwap::from_pointee(setup.indicators));
    let engine = Arc::new(Engine::new(set, setup.engine, tx, metrics.clone()));
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || replay_files(engine, &files))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outputs = runtime.block_on(output::run(
        rx,
        setup.outputs,
        setup.output_settings,
        metrics,
    ));
    let file_errors = capture
        .join()
        .map_err(|_| std::io::Error::other("capture thread panicked"))?;
    Ok(ReplayReport {
        file_errors,
        outputs,
    })
}

/// Reads every file through one worker, then closes the aggregation windows, which
/// lets the outputs finish.
fn replay_files(engine: Arc<Engine>, files: &[PathBuf]) -> Vec<CaptureError> {
    let mut errors = Vec::new();
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
    drop(worker);
    engine.finish();
    errors
}
