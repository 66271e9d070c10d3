//! Criterion benchmarks of the hot paths: preparing an event (parse, validate, tag), applying
//! it to the engine, rendering the exposition, and a 100k-customer checkpoint. The ledgers
//! come from the real generator (`marginstream::generate`).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use marginstream::generate::{generate, GenerateArgs};
use marginstream_aggregator::{Engine, EngineConfig, Prepared, Preparer, Tagger};
use marginstream_exporter::{render_prometheus, RenderOptions};
use marginstream_model::{Currency, ParseLimits, Timestamp};

/// The end of every generated ledger (the generator's default, fixed for reproducibility).
const LEDGER_END_SECONDS: i64 = 1_767_225_600;

/// A ledger of `marginstream generate` (the same program as the demo's and the e2e benches'),
/// with no bad or repeated lines: `customers` customers over `days` days ending on
/// 2026-01-01, about `per_day` events per customer per day, one line each.
fn ledger(customers: u32, days: u32, per_day: f64) -> Vec<Vec<u8>> {
    let args = GenerateArgs {
        customers,
        days,
        seed: 42,
        events_per_customer_day: per_day,
        end: "2026-01-01T00:00:00Z".to_owned(),
        duplicate_share: 0.0,
        bad_share: 0.0,
        rate: 0,
        follow: false,
        swing_after: None,
        output: None,
    };
    let mut text = Vec::new();
    generate(&args, &mut text).expect("the generator writes to memory");
    text.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn preparer() -> Preparer {
    Preparer::new(
        ParseLimits::default(),
        Tagger::default(),
        Currency::parse("USD").unwrap(),
        HashMap::new(),
    )
}

/// The wall clock of the benches: a day after the ledgers end.
fn now() -> Timestamp {
    Timestamp::from_seconds(LEDGER_END_SECONDS + 86_400)
}

fn bench(c: &mut Criterion) {
    // 200 customers over 20 days: about 20,000 events, a cache-resident working set.
    let lines = ledger(200, 20, 5.0);
    let preparer = preparer();
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("prepare", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(preparer.prepare(black_box(line)).ok());
            }
        })
    });
    let prepared: Vec<Prepared> = lines
        .iter()
        .filter_map(|l| preparer.prepare(l).ok())
        .collect();
    group.bench_function("apply", |b| {
        b.iter_batched(
            || {
                (
                    Engine::new(&EngineConfig::default()).unwrap(),
                    prepared.clone(),
                )
            },
            |(mut engine, events)| {
                for event in events {
                    black_box(engine.record(event, now()).ok());
                }
                engine
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("render");
    group.sample_size(20);
    for customers in [1_000u32, 10_000] {
        let mut engine = Engine::new(&EngineConfig::default()).unwrap();
        // About ten events per customer.
        for line in ledger(customers, 2, 5.0) {
            engine
                .record(preparer.prepare(&line).unwrap(), now())
                .unwrap();
        }
        let view = engine.view();
        group.throughput(Throughput::Elements(customers as u64));
        group.bench_function(format!("prometheus_{customers}_customers"), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(1 << 20);
                render_prometheus(&view, RenderOptions::default(), &mut out);
                out
            })
        });
    }
    group.finish();

    // A checkpoint of 100k customers (about 4 events each, 400k dedup keys): the loop pauses
    // for the encoding; a restart pays the decoding.
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(10);
    let customers = 100_000u32;
    let mut engine = Engine::new(&EngineConfig::default()).unwrap();
    for line in ledger(customers, 1, 4.0) {
        engine
            .record(preparer.prepare(&line).unwrap(), now())
            .unwrap();
    }
    let mut bytes = Vec::new();
    engine.encode(&mut bytes);
    group.throughput(Throughput::Elements(customers as u64));
    group.bench_function("encode_100k_customers", |b| {
        let mut out = Vec::with_capacity(bytes.len());
        b.iter(|| {
            out.clear();
            engine.encode(&mut out);
            out.len()
        })
    });
    group.bench_function("decode_100k_customers", |b| {
        b.iter(|| Engine::decode(&EngineConfig::default(), black_box(&bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
