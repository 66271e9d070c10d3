//! The exposure budget as `run` applies it (contract section 7, issue 9), through the
//! library's readers' side: the publisher ranks at the first commit that holds customers and
//! again every `metrics.rank_interval`; in between a customer's series never flap, and a
//! customer seen for the first time is chosen only while fewer than `customers_max` are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use marginstream::published::{Board, Commit, Delta, PartitionCommit, PublishSettings, Publisher};
use marginstream_consumer::Partition;
use marginstream_exporter::exposure::ExposureConfig;
use marginstream_model::money::SLOTS;
use marginstream_model::{Counters, CustomerId};
use rust_decimal::Decimal;

/// One window, `all`.
fn labels() -> Arc<[String]> {
    Arc::from(vec!["all".to_owned()])
}

/// Sums with only a revenue.
fn revenue(amount: i64) -> Box<[Decimal]> {
    let mut sums = vec![Decimal::ZERO; SLOTS];
    sums[0] = Decimal::from(amount);
    sums.into_boxed_slice()
}

fn upsert(customers: &[(&str, i64)]) -> Delta {
    Delta::Upsert {
        partition: Partition(0),
        customers: customers
            .iter()
            .map(|(id, amount)| (CustomerId::from(*id), revenue(*amount)))
            .collect(),
    }
}

fn commit() -> Delta {
    Delta::Commit(Commit {
        partitions: vec![PartitionCommit {
            partition: Partition(0),
            portfolio: revenue(0),
            counters: Counters::default(),
            watermark: None,
        }],
    })
}

/// Sends `deltas`, then waits for the snapshot of the next epoch.
fn publish(publisher: &Publisher, board: &Board, deltas: Vec<Delta>) {
    let epoch = board.latest().epoch;
    for delta in deltas {
        let mut delta = Some(delta);
        while let Some(pending) = delta.take() {
            if let Err(back) = publisher.try_send(pending) {
                delta = Some(back);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while board.latest().epoch == epoch {
        assert!(Instant::now() < deadline, "no snapshot within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Returns the exposed customers of the current snapshot, sorted.
fn exposed(board: &Board) -> Vec<String> {
    let snapshot = board.latest();
    let mut ids: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .filter(|id| snapshot.is_exposed(id))
        .map(|id| (*id).to_owned())
        .collect();
    ids.sort();
    ids
}

/// Shows that the choice changes only at a ranking: revenues that would rank other customers
/// first change nothing until the rank interval has passed; a new customer gets series only
/// while the budget has room; then the next ranking takes the new revenues.
#[test]
fn series_do_not_flap_between_rankings() {
    let rank_interval = Duration::from_millis(600);
    let board = Arc::new(Board::new(
        labels(),
        PublishSettings {
            exposure: ExposureConfig {
                customers_max: 2,
                customers_always: Vec::new(),
                rank_window: 0,
                families: [true; 5],
                windows: vec![true],
            },
            rank_interval,
            publish_interval: Duration::from_secs(1),
            segments: None,
        },
    ));
    let publisher = Publisher::spawn(Arc::clone(&board)).expect("the publisher starts");
    let started = Instant::now();
    // The first commit with customers ranks: a and b have the most revenue.
    publish(
        &publisher,
        &board,
        vec![upsert(&[("a", 300), ("b", 200), ("c", 100)]), commit()],
    );
    assert_eq!(exposed(&board), ["a", "b"]);
    // c overtakes both: no change before the interval.
    publish(&publisher, &board, vec![upsert(&[("c", 1_000)]), commit()]);
    assert_eq!(exposed(&board), ["a", "b"], "no ranking yet: nothing moves");
    // A new customer, the budget full: not chosen.
    publish(&publisher, &board, vec![upsert(&[("d", 5_000)]), commit()]);
    assert_eq!(exposed(&board), ["a", "b"], "no room for a new customer");
    assert!(
        started.elapsed() < rank_interval,
        "the machine was too slow for this test's interval"
    );
    // After the interval the next commit ranks again.
    std::thread::sleep(rank_interval);
    publish(&publisher, &board, vec![commit()]);
    assert_eq!(
        exposed(&board),
        ["c", "d"],
        "ranked again on the new revenues"
    );
}

/// Shows that a customer seen for the first time between rankings is chosen while fewer
/// than `customers_max` are, and only then.
#[test]
fn new_customers_fill_the_budget_between_rankings() {
    let board = Arc::new(Board::new(
        labels(),
        PublishSettings {
            exposure: ExposureConfig {
                customers_max: 3,
                customers_always: Vec::new(),
                rank_window: 0,
                families: [true; 5],
                windows: vec![true],
            },
            rank_interval: Duration::from_secs(3_600),
            publish_interval: Duration::from_secs(1),
            segments: None,
        },
    ));
    let publisher = Publisher::spawn(Arc::clone(&board)).expect("the publisher starts");
    publish(&publisher, &board, vec![upsert(&[("a", 10)]), commit()]);
    assert_eq!(exposed(&board), ["a"]);
    publish(&publisher, &board, vec![upsert(&[("b", 1)]), commit()]);
    publish(
        &publisher,
        &board,
        vec![upsert(&[("c", 2), ("e", 3)]), commit()],
    );
    let chosen = exposed(&board);
    assert_eq!(chosen.len(), 3, "the budget is filled: {chosen:?}");
    assert!(chosen.contains(&"a".to_owned()) && chosen.contains(&"b".to_owned()));
    publish(&publisher, &board, vec![upsert(&[("f", 1_000)]), commit()]);
    assert_eq!(
        exposed(&board),
        chosen,
        "full: a new customer waits for the ranking"
    );
}
