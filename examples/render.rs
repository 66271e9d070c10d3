//! Render time and state size at a given number of customers.
//!
//! `cargo run --release --example render -- CUSTOMERS [EVENTS_PER_CUSTOMER]` builds an engine
//! with the default windows (24h, 7d, 30d, all), applies events spread over 40 days to every
//! customer, then renders the Prometheus exposition five times and prints one JSON line:
//! the median render time, the output size and the state's bytes per customer.

use std::time::Instant;

use marginstream_aggregator::{Engine, EngineConfig, Prepared};
use marginstream_exporter::{RenderOptions, Renderer};
use marginstream_model::{CostFunction, EventKey, EventType, Line, Timestamp};
use rust_decimal::Decimal;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let customers: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let per_customer: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let mut engine = Engine::new(&EngineConfig {
        max_customers: customers as usize + 1,
        ..EngineConfig::default()
    })
    .expect("the default configuration is valid");
    let start = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let span = 40 * 86_400i64;
    let now = Timestamp::from_seconds(start + span + 3_600);
    let lines = [
        Line::Revenue,
        Line::Cost(CostFunction::Infrastructure),
        Line::Cost(CostFunction::Support),
        Line::Cost(CostFunction::SuccessEngineering),
        Line::Cost(CostFunction::Implementation),
        Line::Cost(CostFunction::Onboarding),
    ];
    let rss_before = rss_kib();
    let mut n = 0u64;
    // Events arrive in time order, customers interleaved, like a real ledger.
    for step in 0..per_customer {
        for customer in 0..customers {
            n += 1;
            let at = start + (span * step as i64) / per_customer as i64 + (customer as i64 % 3_600);
            let line = if step % 3 == 0 {
                Line::Revenue
            } else {
                lines[(n % 6) as usize]
            };
            let event = Prepared {
                event_type: if line == Line::Revenue {
                    EventType::Revenue
                } else {
                    EventType::Cost
                },
                key: EventKey::of(&format!("e{n}")),
                customer_id: Some(format!("cust-{customer:07}").into()),
                occurred_at: Timestamp::from_seconds(at),
                line,
                amount: Decimal::new(12_345 + (n % 1000) as i64, 2),
            };
            engine
                .record(event, now)
                .expect("synthetic events are valid");
        }
    }
    let stats = engine.memory_stats();
    let rss_after = rss_kib();
    let view = engine.view();
    // The first rendering pays for fresh buffer memory; later ones (every scrape after the
    // first) reuse the renderer's buffers.
    let mut renderer = Renderer::new(RenderOptions::default());
    let started = Instant::now();
    let bytes: usize = renderer.render(&view).iter().map(|c| c.len()).sum();
    let cold = started.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let chunks = renderer.render(&view);
        std::hint::black_box(&chunks);
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut single = Vec::new();
    let mut one = Renderer::new(RenderOptions { threads: 1 });
    one.render(&view);
    for _ in 0..3 {
        let started = Instant::now();
        std::hint::black_box(one.render(&view));
        single.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    single.sort_by(f64::total_cmp);
    println!(
        "{{\"customers\":{customers},\"events\":{n},\"render_ms_first\":{cold:.1},\"render_ms_median\":{:.1},\"render_ms_one_thread_median\":{:.1},\"exposition_bytes\":{bytes},\"series\":{},\"state_bytes_per_customer\":{},\"rss_bytes_per_customer\":{},\"entries\":{},\"dedup_keys\":{},\"dedup_bytes\":{}}}",
        times[2],
        single[1],
        customers * 4 * 9,
        stats.customer_bytes as u64 / customers.max(1),
        (rss_after.saturating_sub(rss_before) * 1024) / customers.max(1),
        stats.entries,
        stats.dedup_keys,
        stats.dedup_bytes,
    );
}
