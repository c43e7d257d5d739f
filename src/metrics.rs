//! Prometheus metrics: what every stage saw, dropped and emitted.
//!
//! Names follow Prometheus conventions (`c2watch_` prefix, base units, `_total` for
//! counters). Labels come from small fixed sets (interface, reason, kind, output,
//! result), never from addresses or indicator values. Capture workers do not touch these
//! shared counters per packet: they count in a [`WorkerCounters`] of plain integers and
//! fold it in with [`WorkerCounters::flush`] every few thousand packets.

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::decode::DecodeError;
use crate::indicator::HitKind;

/// Every metric the sensor exports, registered once.
pub struct Metrics {
    registry: Registry,
    /// Frames captured, by interface (`replay` for capture files).
    pub packets: IntCounterVec,
    /// Bytes captured (wire length), by interface.
    pub bytes: IntCounterVec,
    /// Frames dropped by the kernel or the interface, by interface.
    pub kernel_drops: IntCounterVec,
    /// Frames not decoded, by reason.
    pub decode_errors: IntCounterVec,
    /// Packets that hit an indicator, by hit kind.
    pub hits: IntCounterVec,
    /// Alerts by result: `emitted`, `suppressed` (aggregated into a window),
    /// `summarized` (window summaries sent), `dropped` (alert queue full).
    pub alerts: IntCounterVec,
    /// Records handed to each output, by result: `sent`, `failed`, `dropped`.
    pub sink_records: IntCounterVec,
    /// Records waiting in an output's queue.
    pub sink_queue: IntGaugeVec,
    /// Flows tracked now.
    pub flows_tracked: IntGauge,
    /// Flows removed from the table, by reason: `idle`, `capacity`.
    pub flows_removed: IntCounterVec,
    /// Indicators in force, by kind: `endpoint`, `address`.
    pub indicators: IntGaugeVec,
    /// Feed rows skipped at the last load (types other than ip:port and ip).
    pub feed_rows_skipped: IntGauge,
    /// Feed loads by result: `ok`, `error`.
    pub feed_loads: IntCounterVec,
    /// Time of the last successful feed load, seconds since the epoch.
    pub feed_last_load: Gauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let m = Metrics {
            packets: counter("c2watch_packets_total", "Frames captured.", &["interface"]),
            bytes: counter(
                "c2watch_bytes_total",
                "Bytes captured, wire length.",
                &["interface"],
            ),
            kernel_drops: counter(
                "c2watch_kernel_drops_total",
                "Frames dropped by the kernel or interface before capture.",
                &["interface"],
            ),
            decode_errors: counter(
                "c2watch_decode_errors_total",
                "Frames not decoded.",
                &["reason"],
            ),
            hits: counter(
                "c2watch_hits_total",
                "Packets that hit an indicator.",
                &["kind"],
            ),
            alerts: counter("c2watch_alerts_total", "Alerts by result.", &["result"]),
            sink_records: counter(
                "c2watch_output_records_total",
                "Records handed to each output, by result.",
                &["output", "result"],
            ),
            flows_removed: counter(
                "c2watch_flows_removed_total",
                "Flows removed from the flow table.",
                &["reason"],
            ),
            feed_loads: counter(
                "c2watch_feed_loads_total",
                "Indicator feed loads.",
                &["result"],
            ),
            sink_queue: gauge_vec(
                &registry,
                "c2watch_output_queue_records",
                "Records queued.",
                &["output"],
            ),
            indicators: gauge_vec(
                &registry,
                "c2watch_indicators",
                "Indicators in force.",
                &["kind"],
            ),
            flows_tracked: gauge(&registry, "c2watch_flows_tracked", "Flows tracked now."),
            feed_rows_skipped: gauge(
                &registry,
                "c2watch_feed_rows_skipped",
                "Feed rows skipped at the last load for their indicator type.",
            ),
            feed_last_load: float_gauge(&registry),
            registry,
        };
        m.preset();
        m
    }

    /// Creates the fixed label sets so every series is exported from the start at zero.
    fn preset(&self) {
        for reason in DecodeError::ALL {
            self.decode_errors.with_label_values(&[reason.as_str()]);
        }
        for kind in HitKind::ALL {
            self.hits.with_label_values(&[kind.as_str()]);
        }
        for result in ["emitted", "suppressed", "summarized", "dropped"] {
            self.alerts.with_label_values(&[result]);
        }
        for reason in ["idle", "capacity"] {
            self.flows_removed.with_label_values(&[reason]);
        }
        for result in ["ok", "error"] {
            self.feed_loads.with_label_values(&[result]);
        }
        let build = IntGaugeVec::new(
            Opts::new("c2watch_build_info", "Build information; the value is 1."),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        self.registry
            .register(Box::new(build))
            .expect("unique metric");
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// Handles for one capture worker's counters on `interface`.
    pub fn worker(&self, interface: &str) -> WorkerCounters {
        WorkerCounters {
            packets: self.packets.with_label_values(&[interface]),
            bytes: self.bytes.with_label_values(&[interface]),
            errors: DecodeError::ALL.map(|r| self.decode_errors.with_label_values(&[r.as_str()])),
            hits: HitKind::ALL.map(|k| self.hits.with_label_values(&[k.as_str()])),
            local: Local::default(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers an integer gauge family.
fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// Registers an integer gauge.
fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// Registers the last-load timestamp gauge.
fn float_gauge(registry: &Registry) -> Gauge {
    let g = Gauge::new(
        "c2watch_feed_last_load_timestamp_seconds",
        "Time of the last successful indicator feed load.",
    )
    .expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// Plain per-worker tallies, folded into the shared metrics in batches.
#[derive(Debug, Default, Clone, Copy)]
struct Local {
    packets: u64,
    bytes: u64,
    errors: [u64; 3],
    hits: [u64; 3],
}

/// One capture worker's counters: plain integers on the hot path, shared counters
/// updated only on [`WorkerCounters::flush`].
pub struct WorkerCounters {
    packets: IntCounter,
    bytes: IntCounter,
    errors: [IntCounter; 3],
    hits: [IntCounter; 3],
    local: Local,
}

impl WorkerCounters {
    /// Counts a captured frame of `wire_len` bytes.
    #[inline]
    pub fn packet(&mut self, wire_len: u32) {
        self.local.packets += 1;
        self.local.bytes += u64::from(wire_len);
    }

    /// Counts a frame that was not decoded.
    #[inline]
    pub fn decode_error(&mut self, reason: DecodeError) {
        self.local.errors[reason.index()] += 1;
    }

    /// Counts a packet that hit an indicator.
    #[inline]
    pub fn hit(&mut self, kind: HitKind) {
        self.local.hits[kind.index()] += 1;
    }

    /// Frames counted since the last flush.
    #[inline]
    pub fn pending(&self) -> u64 {
        self.local.packets
    }

    /// Adds the local tallies to the shared metrics and resets them.
    pub fn flush(&mut self) {
        let l = std::mem::take(&mut self.local);
        self.packets.inc_by(l.packets);
        self.bytes.inc_by(l.bytes);
        for (counter, n) in self.errors.iter().zip(l.errors) {
            counter.inc_by(n);
        }
        for (counter, n) in self.hits.iter().zip(l.hits) {
            counter.inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts_reach_the_exposition_only_after_flush() {
        let m = Metrics::new();
        let mut w = m.worker("eth1");
        w.packet(60);
        w.decode_error(DecodeError::Truncated);
        w.hit(HitKind::Endpoint);
        assert!(
            m.render()
                .contains("c2watch_packets_total{interface=\"eth1\"} 0")
        );
        w.flush();
        let text = m.render();
        assert!(text.contains("c2watch_packets_total{interface=\"eth1\"} 1"));
        assert!(text.contains("c2watch_bytes_total{interface=\"eth1\"} 60"));
        assert!(text.contains("c2watch_decode_errors_total{reason=\"truncated\"} 1"));
        assert!(text.contains("c2watch_hits_total{kind=\"endpoint\"} 1"));
        assert!(text.contains("c2watch_build_info{version="));
    }
}
