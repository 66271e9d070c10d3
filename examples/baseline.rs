//! The reference point of the performance goal: a bare one-thread program that only parses
//! each line with serde_json, parses the decimal and the timestamp, and adds the amount into
//! a per-customer `HashMap`. No validation, windows, dedup, tagging or output.
//!
//! `cargo run --release --example baseline -- LEDGER.jsonl` prints one JSON line with the
//! events and the events per second.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::str::FromStr;
use std::time::Instant;

use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    customer_id: Option<&'a str>,
    #[serde(borrow)]
    occurred_at: &'a str,
    #[serde(borrow)]
    amount: &'a serde_json::value::RawValue,
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: baseline LEDGER.jsonl");
    let file = std::fs::File::open(&path).expect("the ledger opens");
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut sums: HashMap<String, Decimal> = HashMap::new();
    let mut line = Vec::new();
    let mut events = 0u64;
    let mut latest = 0i64;
    let started = Instant::now();
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .expect("the ledger reads")
            == 0
        {
            break;
        }
        let Ok(event) = serde_json::from_slice::<Line<'_>>(&line) else {
            continue;
        };
        let text = event.amount.get().trim_matches('"');
        let Ok(amount) = Decimal::from_str(text) else {
            continue;
        };
        let Ok(at) = time::OffsetDateTime::parse(
            event.occurred_at,
            &time::format_description::well_known::Rfc3339,
        ) else {
            continue;
        };
        latest = latest.max(at.unix_timestamp());
        let key = event.customer_id.unwrap_or("");
        match sums.get_mut(key) {
            Some(sum) => *sum += amount,
            None => {
                sums.insert(key.to_owned(), amount);
            }
        }
        events += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"program\":\"baseline\",\"events\":{events},\"seconds\":{seconds:.4},\"events_per_second\":{:.0},\"customers\":{},\"latest\":{latest}}}",
        events as f64 / seconds,
        sums.len()
    );
}
