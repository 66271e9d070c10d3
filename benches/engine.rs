//! Criterion benchmarks of the three hot paths: preparing an event (parse, validate, tag),
//! applying it to the engine, and rendering the exposition.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use marginstream_aggregator::{Engine, EngineConfig, Prepared, Preparer, Tagger};
use marginstream_exporter::{render_prometheus, RenderOptions};
use marginstream_model::{Currency, ParseLimits, Timestamp};

/// A realistic mix of lines: revenue, tagged and categorised costs, 200 customers, 40 days.
fn ledger(count: usize) -> Vec<String> {
    let categories = [
        "hosting",
        "Cloud",
        "support",
        "customer_success",
        "training",
        "r_and_d",
    ];
    (0..count)
        .map(|i| {
            let customer = (i * 7919) % 200;
            let second = 1_767_225_600 + (i as i64 * 40 * 86_400) / count as i64;
            let at = time::OffsetDateTime::from_unix_timestamp(second)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            match i % 4 {
                0 => format!(r#"{{"event_type":"Revenue_Event","event_id":"evt-{i}","customer_id":"cust-{customer:05}","occurred_at":"{at}","amount":"{}.{:02}","currency":"USD","revenue_type":"recurring"}}"#, 100 + i % 900, i % 100),
                1 => format!(r#"{{"event_type":"Cost_Event","event_id":"evt-{i}","customer_id":"cust-{customer:05}","occurred_at":"{at}","amount":"{}.{:02}","currency":"USD","cost_function":"Infrastructure"}}"#, 10 + i % 90, i % 100),
                _ => format!(r#"{{"event_type":"Cost_Event","event_id":"evt-{i}","customer_id":"cust-{customer:05}","occurred_at":"{at}","amount":{}.{:02},"currency":"USD","category":"{}"}}"#, 1 + i % 50, i % 100, categories[i % categories.len()]),
            }
        })
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

fn now() -> Timestamp {
    Timestamp::from_seconds(1_767_225_600 + 41 * 86_400)
}

fn bench(c: &mut Criterion) {
    let lines = ledger(20_000);
    let preparer = preparer();
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("prepare", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(preparer.prepare(black_box(line.as_bytes())).ok());
            }
        })
    });
    let prepared: Vec<Prepared> = lines
        .iter()
        .filter_map(|l| preparer.prepare(l.as_bytes()).ok())
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
    for customers in [1_000usize, 10_000] {
        let mut engine = Engine::new(&EngineConfig::default()).unwrap();
        for (i, line) in ledger(customers * 10).iter().enumerate() {
            let mut event = preparer.prepare(line.as_bytes()).unwrap();
            event.customer_id = Some(format!("cust-{:07}", i % customers).into());
            engine.record(event, now()).unwrap();
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

    // A checkpoint of 100k customers (4 events each, 400k dedup keys): the loop pauses for
    // the encoding; a restart pays the decoding.
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(10);
    let customers = 100_000;
    let mut engine = Engine::new(&EngineConfig::default()).unwrap();
    for (i, line) in ledger(customers * 4).iter().enumerate() {
        let mut event = preparer.prepare(line.as_bytes()).unwrap();
        event.customer_id = Some(format!("cust-{:07}", i % customers).into());
        engine.record(event, now()).unwrap();
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
