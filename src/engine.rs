//! The per-packet pipeline: decode -> match -> flow -> alert, run by capture workers.
//!
//! An [`Engine`] holds what workers share: the indicator set (swapped atomically on
//! reload), the flow table, the aggregation windows and the alert queue. Each capture
//! thread drives its own [`Worker`], which keeps a cached handle to the current
//! indicator set and plain counters, so the common case (a packet that hits nothing)
//! takes no lock, allocates nothing and logs nothing. Only alerts, which are rare,
//! cross to the async side through a bounded queue.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Cache};
use tokio::sync::mpsc;

use crate::alert::{Admission, Aggregator, Alert};
use crate::decode::{self, Fragment, LinkType, Packet};
use crate::flow::{FlowLimits, FlowTable, NewFlow};
use crate::indicator::{Hit, IndicatorSet};
use crate::metrics::{Metrics, WorkerCounters};

/// Frames between two folds of a worker's counters into the shared metrics.
const FLUSH_EVERY: u64 = 8192;

/// What the capture side does when the alert queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFull {
    /// Wait for room (capture files: nothing is lost, replay just slows down).
    Wait,
    /// Drop the alert and count it (live capture must never stall).
    Drop,
}

/// Flow and aggregation settings of an engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Flow table limits.
    pub flow: FlowLimits,
    /// Aggregation window in ms (0: none).
    pub aggregate_window_ms: i64,
    /// Behaviour of a full alert queue.
    pub queue_full: QueueFull,
}

/// State shared by every capture worker.
pub struct Engine {
    indicators: Arc<ArcSwap<IndicatorSet>>,
    flows: FlowTable,
    aggregator: Aggregator,
    alerts: Mutex<Option<mpsc::Sender<Alert>>>,
    queue_full: QueueFull,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// An engine matching against `indicators` and sending alerts to `alerts`.
    pub fn new(
        indicators: Arc<ArcSwap<IndicatorSet>>,
        settings: EngineSettings,
        alerts: mpsc::Sender<Alert>,
        metrics: Arc<Metrics>,
    ) -> Engine {
        Engine {
            indicators,
            flows: FlowTable::new(settings.flow),
            aggregator: Aggregator::new(settings.aggregate_window_ms, settings.flow.max_flows),
            alerts: Mutex::new(Some(alerts)),
            queue_full: settings.queue_full,
            metrics,
        }
    }

    /// A worker for one capture thread on `interface` (`None` for capture files).
    ///
    /// Each worker holds its own handle on the alert queue; the queue closes (and the
    /// outputs finish) once every worker is dropped and [`Engine::finish`] has run.
    pub fn worker(self: &Arc<Self>, interface: Option<&str>) -> Worker {
        let alerts = self
            .alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Worker {
            engine: self.clone(),
            set: Cache::new(self.indicators.clone()),
            alerts,
            counters: self.metrics.worker(interface.unwrap_or("replay")),
            interface: interface.map(Arc::from),
        }
    }

    /// Sends the summaries of every open aggregation window and lets go of the engine's
    /// own handle on the alert queue (end of capture, shutdown). Call it after the
    /// workers have stopped.
    pub fn finish(&self) {
        let alerts = self.alerts.lock().unwrap_or_else(|e| e.into_inner()).take();
        for summary in self.aggregator.drain() {
            self.send(alerts.as_ref(), summary, "summarized");
        }
        self.publish();
    }

    /// Changes the aggregation window (a reload of the settings).
    pub fn set_aggregate_window_ms(&self, window_ms: i64) {
        self.aggregator.set_window_ms(window_ms);
    }

    /// Queues an alert for the outputs and counts it under `result`.
    fn send(&self, alerts: Option<&mpsc::Sender<Alert>>, alert: Alert, result: &str) {
        let sent = match (alerts, self.queue_full) {
            (None, _) => false,
            (Some(tx), QueueFull::Wait) => tx.blocking_send(alert).is_ok(),
            (Some(tx), QueueFull::Drop) => tx.try_send(alert).is_ok(),
        };
        let result = if sent { result } else { "dropped" };
        self.metrics.alerts.with_label_values(&[result]).inc();
    }

    /// Copies the flow table's gauges and counters into the metrics.
    fn publish(&self) {
        self.metrics.flows_tracked.set(self.flows.len() as i64);
        // Each counter is taken (reset to zero) as it is published, so no count is
        // published twice whichever worker publishes.
        let removed = [
            (&self.flows.stats.expired, "idle"),
            (&self.flows.stats.evicted, "capacity"),
        ];
        for (source, reason) in removed {
            let n = source.swap(0, Ordering::Relaxed);
            self.metrics
                .flows_removed
                .with_label_values(&[reason])
                .inc_by(n);
        }
        let suppressed = self.aggregator.stats.suppressed.swap(0, Ordering::Relaxed);
        self.metrics
            .alerts
            .with_label_values(&["suppressed"])
            .inc_by(suppressed);
    }
}

/// One capture thread's view of the engine.
pub struct Worker {
    engine: Arc<Engine>,
    set: Cache<Arc<ArcSwap<IndicatorSet>>, Arc<IndicatorSet>>,
    alerts: Option<mpsc::Sender<Alert>>,
    counters: WorkerCounters,
    interface: Option<Arc<str>>,
}

impl Worker {
    /// Runs one captured frame through the pipeline.
    #[inline]
    pub fn process(&mut self, link: LinkType, frame: &[u8], wire_len: u32, time_ns: i64) {
        self.counters.packet(wire_len);
        match decode::decode(link, frame, wire_len, time_ns) {
            Ok(packet) => self.packet(packet),
            Err(reason) => self.counters.decode_error(reason),
        }
        if self.counters.pending() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Advances flow expiry and aggregation to `now_ns`. Packets do this as they arrive;
    /// a live worker on a quiet link calls it with the wall clock, so aggregation
    /// summaries still go out when their window closes.
    #[inline]
    pub fn tick(&mut self, now_ns: i64) {
        let engine = &*self.engine;
        engine.flows.maybe_sweep(now_ns);
        for summary in engine.aggregator.sweep(now_ns.div_euclid(1_000_000)) {
            engine.send(self.alerts.as_ref(), summary, "summarized");
        }
    }

    /// Folds this worker's counters into the shared metrics.
    pub fn flush(&mut self) {
        self.counters.flush();
        self.engine.publish();
    }

    /// Matches a decoded packet and raises an alert for a new flow that hit.
    #[inline]
    fn packet(&mut self, mut packet: Packet) {
        self.tick(packet.time_ns);
        let engine = &*self.engine;
        let set = self.set.load();
        let Some(mut hit) = set.match_packet(&packet) else {
            return;
        };
        if packet.fragment == Fragment::Later && engine.flows.fill_fragment_ports(&mut packet) {
            hit = set.match_packet(&packet).unwrap_or(hit);
        }
        self.counters.hit(hit.kind);
        engine.flows.remember_fragment(&packet);
        if let Some(flow) = engine.flows.observe(&packet, &hit) {
            let alert = alert(set, &packet, &hit, flow, self.interface.clone());
            self.admit(alert);
        }
    }

    /// Passes a new flow's alert through aggregation to the queue.
    fn admit(&self, alert: Alert) {
        match self.engine.aggregator.admit(alert) {
            Admission::Suppressed => {}
            Admission::Emit { alert, closed } => {
                if let Some(summary) = closed {
                    self.engine
                        .send(self.alerts.as_ref(), summary, "summarized");
                }
                self.engine.send(self.alerts.as_ref(), alert, "emitted");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Builds the alert for a new flow.
fn alert(
    set: &IndicatorSet,
    packet: &Packet,
    hit: &Hit,
    flow: NewFlow,
    interface: Option<Arc<str>>,
) -> Alert {
    let time_ms = packet.time_ns.div_euclid(1_000_000);
    let indicator = set.get(hit.index).clone();
    let mut alert = Alert::new(
        hit.kind,
        indicator,
        time_ms,
        (flow.client, flow.server),
        packet.proto,
    );
    alert.vlan = packet.vlans.outer();
    alert.interface = interface;
    alert
}
