//! Per-stage costs, as packets per second: decode, indicator match, the whole worker
//! pipeline, and CEF formatting of an alert.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::mpsc;

use c2watch::alert::Alert;
use c2watch::cef::CefWriter;
use c2watch::config;
use c2watch::decode::{self, LinkType};
use c2watch::engine::{Engine, EngineSettings, QueueFull};
use c2watch::flow::FlowLimits;
use c2watch::indicator::{HitKind, IndicatorSet};
use c2watch::metrics::Metrics;
use c2watch::testkit::{self, Tcp};

fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn remcos() -> IndicatorSet {
    let loaded = config::load(None).unwrap();
    config::load_indicators(&config::feeds(&loaded)).unwrap().0
}

fn ordinary_frame() -> Vec<u8> {
    testkit::tcp(
        ep("10.20.1.10:49200"),
        ep("93.184.215.14:443"),
        Tcp::Ack,
        &[0; 10],
    )
}

fn decode_and_match(c: &mut Criterion) {
    let frame = ordinary_frame();
    let vlan = testkit::with_vlans(&frame, &[10, 20]);
    let set = remcos();
    let packet = decode::decode(LinkType::Ethernet, &frame, 64, 0).unwrap();
    let hit = testkit::tcp(
        ep("10.20.1.10:49200"),
        ep("2.26.75.239:1971"),
        Tcp::Ack,
        &[0; 10],
    );
    let hit = decode::decode(LinkType::Ethernet, &hit, 64, 0).unwrap();
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_ethernet_ipv4_tcp", |b| {
        b.iter(|| decode::decode(LinkType::Ethernet, black_box(&frame), 64, 0))
    });
    g.bench_function("decode_qinq_ipv4_tcp", |b| {
        b.iter(|| decode::decode(LinkType::Ethernet, black_box(&vlan), 68, 0))
    });
    g.bench_function("match_miss", |b| {
        b.iter(|| set.match_packet(black_box(&packet)))
    });
    g.bench_function("match_hit", |b| {
        b.iter(|| set.match_packet(black_box(&hit)))
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let frame = ordinary_frame();
    let (tx, _rx) = mpsc::channel(16);
    let settings = EngineSettings {
        flow: FlowLimits {
            idle_timeout_ns: 120_000_000_000,
            max_flows: 65_536,
        },
        aggregate_window_ms: 300_000,
        queue_full: QueueFull::Drop,
    };
    let engine = Arc::new(Engine::new(
        Arc::new(ArcSwap::from_pointee(remcos())),
        settings,
        tx,
        Arc::new(Metrics::new()),
    ));
    let mut worker = engine.worker(None);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    let mut t = 0;
    g.bench_function("worker_process_miss", |b| {
        b.iter(|| {
            t += 1_000;
            worker.process(LinkType::Ethernet, black_box(&frame), 64, t)
        })
    });
    g.finish();
}

fn cef(c: &mut Criterion) {
    let set = remcos();
    let writer = CefWriter::new("sensor01", vec!["10.0.0.0/8".parse().unwrap()]);
    let flow = (ep("10.20.1.10:49200").into(), ep("2.26.75.239:1971").into());
    let alert = Alert::new(
        HitKind::Endpoint,
        set.get(0).clone(),
        1_780_000_000_123,
        flow,
        6,
    );
    let mut out = String::with_capacity(1024);
    let mut g = c.benchmark_group("alert");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cef_record", |b| {
        b.iter(|| {
            out.clear();
            writer.write(black_box(&alert), 1024, &mut out);
        })
    });
    g.finish();
}

criterion_group!(benches, decode_and_match, pipeline, cef);
criterion_main!(benches);
