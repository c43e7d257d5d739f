//! Sinks: where CEF records go. Standard output, and syslog over UDP or TCP.
//!
//! Alerts arrive from the capture side on one channel. The dispatcher turns each into
//! one record per output, each with its own syslog header, and hands it to that output's
//! task through a bounded queue, so a stalled TCP receiver delays only itself. A TCP
//! output reconnects with backoff and keeps up to `queue_alerts` records while the
//! receiver is away; past that the oldest are dropped and counted.
//!
//! Syslog header forms:
//! - RFC 3164 as Microsoft documents it for CEF: `<PRI>Mmm dd hh:mm:ss HOST CEF:0|...`.
//!   The CEF header stands where the tag would be; the forwarder takes `CEF` as the tag.
//! - RFC 5424: `<PRI>1 TIMESTAMP HOST CEF - - - CEF:0|...` (APP-NAME `CEF`, no PROCID,
//!   MSGID or structured data).
//!
//! On TCP each message ends with a line feed, or is length-prefixed (RFC 6587 3.4).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::alert::Alert;
use crate::cef::CefWriter;
use crate::config::{Facility, Framing, SyslogConfig, SyslogFormat, SyslogUrl, Transport};
use crate::metrics::Metrics;
use crate::timefmt;

/// How long a TCP write may take before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// First and largest delay between TCP reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));

/// One configured output.
#[derive(Debug, Clone)]
pub enum OutputSpec {
    /// One record per line on standard output.
    Stdout,
    /// A syslog destination, with its URL parsed once.
    Syslog(SyslogConfig, SyslogUrl),
}

/// Settings shared by all outputs.
#[derive(Debug, Clone)]
pub struct OutputSettings {
    /// Writes the CEF body.
    pub cef: CefWriter,
    /// Syslog HOSTNAME.
    pub host: String,
    /// Largest record, syslog header included.
    pub max_record_bytes: usize,
    /// Records an output may hold while its receiver is away.
    pub queue_records: usize,
    /// How long closing may wait for a TCP receiver to take what is queued.
    pub close_timeout: Duration,
    /// Wait for a slow output instead of dropping (capture files); live capture drops
    /// and counts. Either way, records for a receiver that is down are dropped once its
    /// queue is full, oldest first.
    pub backpressure: bool,
}

/// What an output did with its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputReport {
    /// The output's metric label.
    pub name: String,
    /// Records delivered to the transport.
    pub sent: u64,
    /// Records whose send failed.
    pub failed: u64,
    /// Records dropped (queue full, or still queued at close).
    pub dropped: u64,
}

/// A formatted record on its way to one output.
type Record = Vec<u8>;

/// Runs the outputs until the alert channel closes and every output has finished.
pub async fn run(
    mut alerts: mpsc::Receiver<Alert>,
    specs: Vec<OutputSpec>,
    settings: OutputSettings,
    metrics: Arc<Metrics>,
) -> Vec<OutputReport> {
    let settings = Arc::new(settings);
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let name = output_name(&spec, i);
        let (tx, rx) = mpsc::channel::<Record>(settings.queue_records.max(1));
        let task = tokio::spawn(run_output(
            spec.clone(),
            name.clone(),
            rx,
            settings.clone(),
            metrics.clone(),
        ));
        queues.push((spec, name, tx));
        tasks.push(task);
    }
    while let Some(alert) = alerts.recv().await {
        dispatch(&alert, &queues, &settings, &metrics).await;
    }
    drop(queues);
    let mut reports = Vec::new();
    for task in tasks {
        if let Ok(report) = task.await {
            reports.push(report);
        }
    }
    reports
}

/// The metric label of an output: `stdout`, or `syslog` with its position.
fn output_name(spec: &OutputSpec, index: usize) -> String {
    match spec {
        OutputSpec::Stdout => "stdout".into(),
        OutputSpec::Syslog(..) => format!("syslog{index}"),
    }
}

/// Formats one alert for every output and queues it.
async fn dispatch(
    alert: &Alert,
    queues: &[(OutputSpec, String, mpsc::Sender<Record>)],
    settings: &OutputSettings,
    metrics: &Metrics,
) {
    let now_ms = timefmt::now_ns().div_euclid(1_000_000);
    for (spec, name, tx) in queues {
        let record = format_record(alert, spec, settings, now_ms);
        let queued = if settings.backpressure {
            tx.send(record).await.is_ok()
        } else {
            tx.try_send(record).is_ok()
        };
        if !queued {
            metrics
                .sink_records
                .with_label_values(&[name, "dropped"])
                .inc();
        }
    }
}

/// The bytes one output sends for one alert, framing included.
pub fn format_record(
    alert: &Alert,
    spec: &OutputSpec,
    settings: &OutputSettings,
    now_ms: i64,
) -> Record {
    let mut text = String::with_capacity(settings.max_record_bytes);
    match spec {
        OutputSpec::Stdout => {
            settings
                .cef
                .write(alert, settings.max_record_bytes, &mut text);
            text.push('\n');
            return text.into_bytes();
        }
        OutputSpec::Syslog(cfg, _) => {
            let severity = syslog_severity(CefWriter::severity(alert));
            write_header(
                &mut text,
                cfg.format,
                cfg.facility,
                severity,
                now_ms,
                &settings.host,
            );
        }
    }
    let budget = settings.max_record_bytes.saturating_sub(text.len());
    settings.cef.write(alert, budget, &mut text);
    frame(text, spec)
}

/// Adds TCP framing to a syslog message; UDP datagrams need none.
fn frame(text: String, spec: &OutputSpec) -> Record {
    let OutputSpec::Syslog(cfg, url) = spec else {
        return text.into_bytes();
    };
    match (url.transport == Transport::Tcp, cfg.framing) {
        (false, _) => text.into_bytes(),
        (true, Framing::Lf) => (text + "\n").into_bytes(),
        (true, Framing::OctetCounting) => format!("{} {text}", text.len()).into_bytes(),
    }
}

/// Writes the syslog header up to where the CEF record starts.
pub fn write_header(
    out: &mut String,
    format: SyslogFormat,
    facility: Facility,
    severity: u8,
    now_ms: i64,
    host: &str,
) {
    let pri = u16::from(facility.code()) * 8 + u16::from(severity);
    let _ = write!(out, "<{pri}>");
    match format {
        SyslogFormat::Rfc3164 => {
            let _ = timefmt::write_rfc3164(out, now_ms);
            let _ = write!(out, " {host} ");
        }
        SyslogFormat::Rfc5424 => {
            out.push_str("1 ");
            let _ = timefmt::write_rfc3339(out, now_ms);
            let _ = write!(out, " {host} CEF - - - ");
        }
    }
}

/// Syslog severity (RFC 5424 6.2.1, 0 most severe) for a CEF severity (10 most severe).
pub fn syslog_severity(cef: u8) -> u8 {
    match cef {
        9.. => 1,
        8 => 2,
        6..=7 => 3,
        4..=5 => 4,
        2..=3 => 5,
        _ => 6,
    }
}

/// Runs one output until its queue closes.
async fn run_output(
    spec: OutputSpec,
    name: String,
    rx: mpsc::Receiver<Record>,
    settings: Arc<OutputSettings>,
    metrics: Arc<Metrics>,
) -> OutputReport {
    let mut tally = Tally::new(&name, &metrics);
    match spec {
        OutputSpec::Stdout => run_stdout(rx, &mut tally).await,
        OutputSpec::Syslog(_, url) if url.transport == Transport::Udp => {
            run_udp(rx, &url, &mut tally).await
        }
        OutputSpec::Syslog(_, url) => TcpOutput::new(url, &settings, &mut tally).run(rx).await,
    }
    tally.report
}

/// An output's counts, kept for the final report and mirrored into the metrics as they
/// happen, so a scrape sees them while the sensor runs.
struct Tally {
    report: OutputReport,
    sent: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
    queue: IntGauge,
}

impl Tally {
    fn new(name: &str, metrics: &Metrics) -> Tally {
        let counter = |result| metrics.sink_records.with_label_values(&[name, result]);
        Tally {
            report: OutputReport {
                name: name.to_string(),
                ..OutputReport::default()
            },
            sent: counter("sent"),
            failed: counter("failed"),
            dropped: counter("dropped"),
            queue: metrics.sink_queue.with_label_values(&[name]),
        }
    }

    fn sent(&mut self) {
        self.report.sent += 1;
        self.sent.inc();
    }

    fn failed(&mut self) {
        self.report.failed += 1;
        self.failed.inc();
    }

    fn dropped(&mut self, n: u64) {
        self.report.dropped += n;
        self.dropped.inc_by(n);
    }

    fn queued(&self, n: usize) {
        self.queue.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Writes records to standard output, flushing whenever the queue is momentarily empty.
async fn run_stdout(mut rx: mpsc::Receiver<Record>, tally: &mut Tally) {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    while let Some(record) = rx.recv().await {
        match out.write_all(&record) {
            Ok(()) => tally.sent(),
            Err(_) => tally.failed(),
        }
        if rx.is_empty() && out.flush().is_err() {
            tally.failed();
        }
    }
    let _ = out.flush();
}

/// Sends each record as one datagram (RFC 5426).
async fn run_udp(mut rx: mpsc::Receiver<Record>, url: &SyslogUrl, tally: &mut Tally) {
    let socket = match udp_socket(&url.address).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(destination = %url.address, error = %e, "Cannot open syslog UDP socket");
            while rx.recv().await.is_some() {
                tally.failed();
            }
            return;
        }
    };
    while let Some(record) = rx.recv().await {
        match socket.send(&record).await {
            Ok(_) => tally.sent(),
            Err(e) => {
                tally.failed();
                tracing::debug!(destination = %url.address, error = %e, "Syslog UDP send failed");
            }
        }
    }
}

/// A UDP socket connected to `address`, bound to the matching address family.
async fn udp_socket(address: &str) -> std::io::Result<UdpSocket> {
    let target = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("name resolved to no address"))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    Ok(socket)
}

/// A TCP syslog output with its own queue, reconnection and backoff.
struct TcpOutput<'r> {
    url: SyslogUrl,
    queue: VecDeque<Record>,
    capacity: usize,
    stream: Option<TcpStream>,
    backoff: Duration,
    next_attempt: tokio::time::Instant,
    backpressure: bool,
    close_timeout: Duration,
    tally: &'r mut Tally,
}

impl<'r> TcpOutput<'r> {
    fn new(url: SyslogUrl, settings: &OutputSettings, tally: &'r mut Tally) -> Self {
        TcpOutput {
            url,
            queue: VecDeque::new(),
            capacity: settings.queue_records.max(1),
            stream: None,
            backoff: BACKOFF.0,
            next_attempt: tokio::time::Instant::now(),
            backpressure: settings.backpressure,
            close_timeout: settings.close_timeout,
            tally,
        }
    }

    /// Takes records until the queue closes, then delivers what it can within the
    /// close timeout.
    async fn run(mut self, mut rx: mpsc::Receiver<Record>) {
        loop {
            let retry = self.backoff;
            // A slow but connected receiver holds the queue back (and, with
            // backpressure, the capture behind it) instead of losing records.
            let take =
                !self.backpressure || self.queue.len() < self.capacity || self.stream.is_none();
            tokio::select! {
                record = rx.recv(), if take => match record {
                    Some(r) => self.enqueue(r),
                    None => break,
                },
                _ = tokio::time::sleep(retry), if !self.queue.is_empty() => {}
            }
            self.deliver().await;
            self.tally.queued(self.queue.len());
        }
        let deadline = tokio::time::Instant::now() + self.close_timeout;
        while !self.queue.is_empty() && tokio::time::Instant::now() < deadline {
            self.deliver().await;
            self.tally.queued(self.queue.len());
            if !self.queue.is_empty() {
                tokio::time::sleep(self.backoff.min(deadline - tokio::time::Instant::now())).await;
            }
        }
        self.tally.dropped(self.queue.len() as u64);
        self.tally.queued(0);
        if let Some(mut s) = self.stream.take() {
            let _ = s.shutdown().await;
        }
    }

    /// Queues a record, dropping the oldest when full.
    fn enqueue(&mut self, record: Record) {
        if self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.tally.dropped(1);
        }
        self.queue.push_back(record);
    }

    /// Connects if needed and writes queued records until the queue is empty or the
    /// connection fails.
    async fn deliver(&mut self) {
        if self.stream.is_none() {
            if tokio::time::Instant::now() < self.next_attempt {
                return;
            }
            let connect = TcpStream::connect(&self.url.address);
            match tokio::time::timeout(WRITE_TIMEOUT, connect)
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    ))
                }) {
                Ok(s) => {
                    tracing::info!(destination = %self.url.address, "Syslog TCP connected");
                    self.stream = Some(s);
                    self.backoff = BACKOFF.0;
                }
                Err(e) => {
                    tracing::warn!(destination = %self.url.address, error = %e, "Syslog TCP connect failed");
                    self.next_attempt = tokio::time::Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF.1);
                    return;
                }
            }
        }
        while let Some(record) = self.queue.front() {
            let stream = self.stream.as_mut().expect("connected above");
            match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(record)).await {
                Ok(Ok(())) => {
                    self.queue.pop_front();
                    self.tally.sent();
                }
                _ => {
                    tracing::warn!(destination = %self.url.address, "Syslog TCP write failed; reconnecting");
                    self.stream = None;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3164_header_is_the_form_microsoft_documents() {
        let mut out = String::new();
        write_header(
            &mut out,
            SyslogFormat::Rfc3164,
            Facility::Local4,
            2,
            1_764_778_500_000,
            "sensor01",
        );
        assert_eq!(out, "<162>Dec  3 16:15:00 sensor01 ");
    }

    #[test]
    fn rfc5424_header_uses_app_name_cef() {
        let mut out = String::new();
        write_header(
            &mut out,
            SyslogFormat::Rfc5424,
            Facility::Local4,
            4,
            1_764_778_500_123,
            "s1",
        );
        assert_eq!(out, "<164>1 2025-12-03T16:15:00.123Z s1 CEF - - - ");
    }

    #[test]
    fn severities_map_most_severe_first() {
        assert_eq!(syslog_severity(8), 2);
        assert_eq!(syslog_severity(5), 4);
        assert!(syslog_severity(10) < syslog_severity(0));
    }
}
