//! The live sensor (`c2watch run`): capture workers on a tap interface, the outputs, the
//! metrics endpoint, and the signals that reload and stop it.
//!
//! Capture runs on one OS thread per worker, each with its own libpcap handle joined to
//! one AF_PACKET fanout group; the async side (outputs, `/metrics`, signals) runs on a
//! small tokio runtime. SIGHUP builds a new indicator set aside and swaps it in
//! atomically, so capture never pauses; a feed or configuration that fails to load is
//! refused and the previous set stays in force. SIGTERM and SIGINT stop capture, send
//! every pending alert and aggregation summary, and return within a few seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::app::{self, Overrides, Setup};
use crate::capture::{self, CaptureError, LiveSettings};
use crate::config;
use crate::endpoint;
use crate::engine::{Engine, QueueFull};
use crate::indicator::IndicatorSet;
use crate::metrics::Metrics;
use crate::output::{self, OutputReport};

/// How long stopping waits for capture threads to notice.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// Live-capture options from the command line and `[capture]`.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Capture settings.
    pub capture: LiveSettings,
    /// Capture workers (at least 1).
    pub workers: usize,
    /// Address of the metrics endpoint, or `None` for none.
    pub metrics_addr: Option<SocketAddr>,
    /// File to write the metrics exposition to at exit.
    pub metrics_file: Option<PathBuf>,
}

/// Why the live sensor could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The capture could not be opened, or failed while running.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The metrics endpoint, the runtime or the signal handlers could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What a live run did, for the exit status.
#[derive(Debug)]
pub struct LiveReport {
    /// What each output did.
    pub outputs: Vec<OutputReport>,
    /// The first capture worker error, if one stopped early.
    pub capture_error: Option<CaptureError>,
}

/// The three signals the sensor handles, registered before anything else starts so a
/// SIGHUP during start-up cannot kill the process.
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    /// Registers the handlers; must be called inside the runtime's context.
    pub fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

/// What woke the control loop.
enum Event {
    Reload,
    Stop(&'static str),
    WorkerDone(usize, Result<(), CaptureError>),
}

/// Runs the live sensor until SIGTERM or SIGINT.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    signals: Signals,
    setup: Setup,
    overrides: Overrides,
    options: LiveOptions,
    metrics: Arc<Metrics>,
) -> Result<LiveReport, LiveError> {
    let listener = bind_metrics(runtime, options.metrics_addr)?;
    let captures = open_workers(&options)?;
    let workers = captures.len();
    let not_before_ns = if captures.len() > 1 {
        crate::timefmt::now_ns()
    } else {
        i64::MIN
    };
    let (tx, rx) = mpsc::channel(setup.loaded.config.output.queue_alerts);
    let indicators = Arc::new(ArcSwap::from_pointee(setup.indicators));
    let engine = Arc::new(Engine::new(
        indicators.clone(),
        setup.engine,
        tx,
        metrics.clone(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let interface = options.capture.interface.clone();
    for (index, capture) in captures.into_iter().enumerate() {
        let worker = engine.worker(Some(&interface));
        let drops = metrics.kernel_drops.with_label_values(&[&interface]);
        let (stop, done_tx, interface) = (stop.clone(), done_tx.clone(), interface.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("capture-{index}"))
            .spawn(move || {
                let mut worker = worker;
                tracing::info!(interface = %interface, worker = index, "Capture started");
                let result = capture::run_live(
                    capture,
                    &mut worker,
                    &stop,
                    if index == 0 { i64::MIN } else { not_before_ns },
                    (&interface, index),
                    drops,
                );
                let _ = done_tx.send((index, result));
            });
        spawned.map_err(|source| LiveError::Io {
            what: "starting a capture thread",
            source,
        })?;
    }
    drop(done_tx);
    let control = Control {
        engine,
        indicators,
        overrides,
        metrics: metrics.clone(),
        stop,
    };
    let outputs = runtime.spawn(output::run(
        rx,
        setup.outputs,
        setup.output_settings,
        metrics.clone(),
    ));
    let server = listener.map(|l| runtime.spawn(endpoint::serve(l, metrics.clone())));
    let report = runtime.block_on(control.run(signals, done_rx, workers, outputs));
    if let Some(server) = server {
        server.abort();
    }
    write_metrics_file(&options, &metrics);
    tracing::info!("Stopped");
    Ok(report)
}

/// Binds the metrics endpoint before capture starts, so a taken port is refused early.
fn bind_metrics(
    runtime: &tokio::runtime::Runtime,
    addr: Option<SocketAddr>,
) -> Result<Option<tokio::net::TcpListener>, LiveError> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|source| LiveError::Io {
            what: "binding the metrics endpoint",
            source,
        })?;
    tracing::info!(address = %addr, "Metrics endpoint listening");
    Ok(Some(listener))
}

/// Opens one capture handle per worker and, with more than one, joins them to one
/// fanout group.
fn open_workers(options: &LiveOptions) -> Result<Vec<pcap::Capture<pcap::Active>>, LiveError> {
    let workers = options.workers.max(1);
    let captures = (0..workers)
        .map(|_| capture::open_live(&options.capture))
        .collect::<Result<Vec<_>, _>>()?;
    if workers > 1 {
        let group = (std::process::id() & 0xffff) as u16;
        for c in &captures {
            capture::join_fanout(c, &options.capture.interface, group)?;
        }
    }
    Ok(captures)
}

/// Writes the metrics exposition at exit, if asked for.
fn write_metrics_file(options: &LiveOptions, metrics: &Metrics) {
    if let Some(path) = &options.metrics_file {
        if let Err(e) = std::fs::write(path, metrics.render()) {
            tracing::error!(file = %path.display(), error = %e, "Cannot write metrics file");
        }
    }
}

/// The async side's view of the running sensor.
struct Control {
    engine: Arc<Engine>,
    indicators: Arc<ArcSwap<IndicatorSet>>,
    overrides: Overrides,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

impl Control {
    /// Handles signals until a stop, then shuts down in order: capture, aggregation
    /// summaries, outputs.
    async fn run(
        self,
        mut signals: Signals,
        mut done: mpsc::UnboundedReceiver<(usize, Result<(), CaptureError>)>,
        workers: usize,
        outputs: tokio::task::JoinHandle<Vec<OutputReport>>,
    ) -> LiveReport {
        let mut capture_error = None;
        let mut running = workers;
        loop {
            match next_event(&mut signals, &mut done).await {
                Event::Reload => self.reload(),
                Event::Stop(name) => {
                    tracing::info!(signal = name, "Stopping");
                    break;
                }
                Event::WorkerDone(index, result) => {
                    running -= 1;
                    if let Err(e) = result {
                        tracing::error!(worker = index, error = %e, "Capture worker stopped");
                        capture_error.get_or_insert(e);
                    }
                    break;
                }
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while running > 0 {
            match tokio::time::timeout_at(deadline, done.recv()).await {
                Ok(Some(_)) => running -= 1,
                _ => break,
            }
        }
        self.engine.finish();
        drop(self.engine);
        let outputs = outputs.await.unwrap_or_default();
        LiveReport {
            outputs,
            capture_error,
        }
    }

    /// Reloads configuration and feeds; keeps the current set if anything fails.
    fn reload(&self) {
        let refuse = |error: &dyn std::fmt::Display| {
            tracing::error!(error = %error, "Reload refused; the previous indicators stay in force");
        };
        let loaded = match config::load(self.overrides.config.as_deref()) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.metrics.feed_loads.with_label_values(&["error"]).inc();
                return refuse(&e);
            }
        };
        let feeds = app::feeds(&loaded, &self.overrides);
        match app::load_indicators(&feeds, &self.metrics) {
            Ok(set) => {
                let count = set.len();
                self.indicators.store(Arc::new(set));
                let settings = app::engine_settings(&loaded, &self.overrides, QueueFull::Drop);
                self.engine
                    .set_aggregate_window_ms(settings.aggregate_window_ms);
                tracing::info!(indicators = count, "Indicators reloaded");
            }
            Err(e) => refuse(&e),
        }
    }
}

/// Waits for the next signal or worker exit.
async fn next_event(
    signals: &mut Signals,
    done: &mut mpsc::UnboundedReceiver<(usize, Result<(), CaptureError>)>,
) -> Event {
    tokio::select! {
        _ = signals.hangup.recv() => Event::Reload,
        _ = signals.terminate.recv() => Event::Stop("SIGTERM"),
        _ = signals.interrupt.recv() => Event::Stop("SIGINT"),
        Some((index, result)) = done.recv() => Event::WorkerDone(index, result),
    }
}
