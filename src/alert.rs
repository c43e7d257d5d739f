//! Alerts: what a new flow that hit an indicator turns into, and the aggregation that
//! keeps beaconing malware from flooding the SIEM.
//!
//! The first flow between a client and an indicator raises an alert at once. Further
//! flows between the same pair, of the same hit kind, within the aggregation window are
//! not sent one by one: they are counted, and when the window closes (in packet time) one
//! summary alert carries their number in `cnt` and their first and last times. With a
//! window of zero every flow is sent.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dashmap::DashMap;

use crate::flow::Endpoint;
use crate::indicator::{HitKind, Indicator};

/// One alert, ready for the CEF writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The kind of hit; it selects the CEF class, name and severity.
    pub kind: HitKind,
    /// The indicator that was hit, with its context.
    pub indicator: Arc<Indicator>,
    /// Capture time of the packet that raised the alert, in ms since the epoch.
    pub time_ms: i64,
    /// The flow's client side.
    pub client: Endpoint,
    /// The flow's server side.
    pub server: Endpoint,
    /// IP protocol number.
    pub proto: u8,
    /// Outermost VLAN id, if the traffic was tagged.
    pub vlan: Option<u16>,
    /// Number of flows this alert stands for: 1, or the flows aggregated in a window.
    pub count: u32,
    /// First and last flow times (ms) of an aggregated alert.
    pub window_ms: Option<(i64, i64)>,
    /// Capture interface, when capturing live.
    pub interface: Option<Arc<str>>,
}

impl Alert {
    /// The alert for one flow, with no VLAN tag or interface.
    pub fn new(
        kind: HitKind,
        indicator: Arc<Indicator>,
        time_ms: i64,
        (client, server): (Endpoint, Endpoint),
        proto: u8,
    ) -> Alert {
        Alert {
            kind,
            indicator,
            time_ms,
            client,
            server,
            proto,
            vlan: None,
            count: 1,
            window_ms: None,
            interface: None,
        }
    }
}

/// What the aggregator decided for a new flow's alert.
// Returned once per new flow that hit, which is rare: boxing would add an allocation to
// save a copy.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send this alert now, after the summary of the window it closed, if any.
    Emit {
        /// The new flow's alert.
        alert: Alert,
        /// Summary of the previous window for the same key, which this flow closed.
        closed: Option<Alert>,
    },
    /// Counted in an open window; a summary follows when the window closes.
    Suppressed,
}

/// Key of an aggregation window: client address, indicator endpoint and hit kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct WindowKey {
    client: IpAddr,
    indicator: Endpoint,
    kind: HitKind,
}

/// An open aggregation window.
#[derive(Debug)]
struct Window {
    opened_ms: i64,
    suppressed: u32,
    first_ms: i64,
    last: Option<Alert>,
}

/// Counts of aggregation decisions.
#[derive(Debug, Default)]
pub struct AggregatorStats {
    /// Flows counted into a window instead of being sent.
    pub suppressed: AtomicU64,
}

/// Per-(client, indicator, kind) aggregation windows, shared by capture workers.
pub struct Aggregator {
    windows: DashMap<WindowKey, Window>,
    window_ms: AtomicI64,
    max_windows: usize,
    next_sweep_ms: AtomicI64,
    /// Decision counts.
    pub stats: AggregatorStats,
}

impl Aggregator {
    /// An aggregator with a window of `window_ms` (0 disables aggregation), holding at
    /// most `max_windows` open windows; past that, alerts are sent unaggregated.
    pub fn new(window_ms: i64, max_windows: usize) -> Aggregator {
        Aggregator {
            windows: DashMap::new(),
            window_ms: AtomicI64::new(window_ms),
            max_windows,
            next_sweep_ms: AtomicI64::new(i64::MIN),
            stats: AggregatorStats::default(),
        }
    }

    /// Changes the window length; open windows keep their start and close by the new
    /// length.
    pub fn set_window_ms(&self, window_ms: i64) {
        self.window_ms.store(window_ms, Ordering::Relaxed);
    }

    /// Decides whether a new flow's alert goes out now.
    pub fn admit(&self, alert: Alert) -> Admission {
        let window_ms = self.window_ms.load(Ordering::Relaxed);
        if window_ms <= 0 {
            return Admission::Emit {
                alert,
                closed: None,
            };
        }
        let key = WindowKey {
            client: alert.client.addr,
            indicator: Endpoint {
                addr: alert.indicator.addr,
                port: alert.indicator.port,
            },
            kind: alert.kind,
        };
        if let Some(mut w) = self.windows.get_mut(&key) {
            if alert.time_ms < w.opened_ms + window_ms {
                w.suppressed += 1;
                w.first_ms = if w.suppressed == 1 {
                    alert.time_ms
                } else {
                    w.first_ms
                };
                w.last = Some(alert);
                self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                return Admission::Suppressed;
            }
        }
        let window = Window {
            opened_ms: alert.time_ms,
            suppressed: 0,
            first_ms: 0,
            last: None,
        };
        let closed = if self.windows.len() < self.max_windows || self.windows.contains_key(&key) {
            self.windows
                .insert(key, window)
                .and_then(|mut old| summary(&mut old))
        } else {
            None
        };
        Admission::Emit { alert, closed }
    }

    /// Closes windows older than the window length at packet time `now_ms`, returning
    /// their summaries. Cheap when nothing is due.
    pub fn sweep(&self, now_ms: i64) -> Vec<Alert> {
        let due = self.next_sweep_ms.load(Ordering::Relaxed);
        if now_ms < due {
            return Vec::new();
        }
        let next = now_ms.saturating_add(1_000);
        if self
            .next_sweep_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Vec::new();
        }
        let window_ms = self.window_ms.load(Ordering::Relaxed);
        self.close(|w| w.opened_ms.saturating_add(window_ms) <= now_ms)
    }

    /// Closes every window, returning the summaries still owed (end of capture, shutdown).
    pub fn drain(&self) -> Vec<Alert> {
        self.close(|_| true)
    }

    /// Removes the windows `closing` selects and builds their summaries.
    fn close(&self, closing: impl Fn(&Window) -> bool) -> Vec<Alert> {
        let mut summaries = Vec::new();
        self.windows.retain(|_, w| {
            if !closing(w) {
                return true;
            }
            if let Some(summary) = summary(w) {
                summaries.push(summary);
            }
            false
        });
        summaries.sort_by_key(|a| a.time_ms);
        summaries
    }
}

/// The summary alert of a closed window, if it counted any flow.
fn summary(window: &mut Window) -> Option<Alert> {
    let mut alert = window.last.take()?;
    alert.count = window.suppressed;
    alert.window_ms = Some((window.first_ms, alert.time_ms));
    Some(alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(client: &str, time_ms: i64) -> Alert {
        let indicator = Indicator::bare("2.26.75.239".parse().unwrap(), Some(1971), "test");
        let client: std::net::SocketAddr = format!("{client}:50000").parse().unwrap();
        let server: std::net::SocketAddr = "2.26.75.239:1971".parse().unwrap();
        let flow = (client.into(), server.into());
        Alert::new(HitKind::Endpoint, Arc::new(indicator), time_ms, flow, 6)
    }

    #[test]
    fn beacons_within_a_window_become_one_summary() {
        let agg = Aggregator::new(60_000, 100);
        assert!(matches!(
            agg.admit(alert("10.0.0.1", 0)),
            Admission::Emit { .. }
        ));
        for t in 1..=5 {
            assert_eq!(
                agg.admit(alert("10.0.0.1", t * 10_000)),
                Admission::Suppressed
            );
        }
        assert!(agg.sweep(59_999).is_empty());
        let out = agg.sweep(61_000); // sweeps run at most once a second
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, 5);
        assert_eq!(out[0].window_ms, Some((10_000, 50_000)));
        assert!(agg.drain().is_empty());
    }

    #[test]
    fn other_clients_and_zero_window_are_not_aggregated() {
        let agg = Aggregator::new(60_000, 100);
        assert!(matches!(
            agg.admit(alert("10.0.0.1", 0)),
            Admission::Emit { .. }
        ));
        assert!(matches!(
            agg.admit(alert("10.0.0.2", 1)),
            Admission::Emit { .. }
        ));
        let off = Aggregator::new(0, 100);
        assert!(matches!(
            off.admit(alert("10.0.0.1", 0)),
            Admission::Emit { .. }
        ));
        assert!(matches!(
            off.admit(alert("10.0.0.1", 1)),
            Admission::Emit { .. }
        ));
    }

    #[test]
    fn a_flow_after_the_window_opens_a_new_one_and_the_old_summary_is_kept() {
        let agg = Aggregator::new(60_000, 100);
        assert!(matches!(
            agg.admit(alert("10.0.0.1", 0)),
            Admission::Emit { .. }
        ));
        assert_eq!(agg.admit(alert("10.0.0.1", 1_000)), Admission::Suppressed);
        let Admission::Emit { closed, .. } = agg.admit(alert("10.0.0.1", 70_000)) else {
            panic!("a flow after the window must be sent");
        };
        let closed = closed.expect("the old window's summary");
        assert_eq!((closed.count, closed.time_ms), (1, 1_000));
        assert!(agg.drain().is_empty());
    }

    #[test]
    fn drain_flushes_open_windows() {
        let agg = Aggregator::new(60_000, 100);
        agg.admit(alert("10.0.0.1", 0));
        agg.admit(alert("10.0.0.1", 5));
        assert_eq!(agg.drain().len(), 1);
    }
}
