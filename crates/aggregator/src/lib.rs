//! marginstream's engine: pure, single-threaded, with time passed in.
//!
//! - [`tagging`]: the ATL tagging rules that map a raw cost `category` to a cost function,
//!   with the contract's default taxonomy built in.
//! - [`prepare`]: turns message bytes into a [`prepare::Prepared`] event: parse, currency
//!   conversion, tagging. Pure and `Sync`, so any thread can run it.
//! - [`engine`]: the state: per-customer rolling windows, the watermark, the dedup index,
//!   the portfolio and the counters. [`engine::Engine::record`] applies one event.
//! - [`series`]: the figures of one customer (or the portfolio) and their bucket entries.
//! - [`snapshot`]: checkpoints: [`Engine::encode`] writes the full state as versioned binary,
//!   [`Engine::decode`] restores it under the same configuration, refusing any other bytes.
//! - [`merged`]: several engines' views presented as one (one engine per Kafka partition).
//! - `changes`: which customers changed since they were last published (the live path's
//!   readers get only those; see [`Engine::drain_changes`]).
//! - [`error`]: the crate's one error type.
//!
//! # Design decisions
//!
//! **Sliding windows by subtraction.** Each customer keeps one running [`Figures`] per window
//! and a sparse, sorted list of its bucket entries inside the longest window (one entry per
//! bucket and cost line it touched, 24 bytes each). When the watermark's bucket advances,
//! the buckets that leave a window are subtracted from that window's figures, found through
//! an expiry index from bucket to customers. Every entry is subtracted at most once per
//! window, so the cost is proportional to the events, never to customers × buckets. Reading
//! a gauge is reading a field.
//!
//! **Bounded state.** Entries older than the longest window are dropped, so a customer's
//! memory is bounded by its activity within that window. The dedup index keeps each event
//! key until the watermark has moved `ledger.dedup_horizon` past the moment it was applied.
//! Customers are bounded by `ledger.max_customers`; with the lifetime window off, a customer
//! whose last entry leaves the longest window is removed.
//!
//! **Order independence.** An event is in window W iff `floor(T) - W < floor(t) <= floor(T)`.
//! A late event that still falls in a window is added to it; eviction later subtracts exactly
//! what was added. So the figures after a stream depend on the set of applied events only.
//!
//! [`Figures`]: marginstream_model::Figures
#![deny(missing_docs)]

mod changes;
pub mod engine;
pub mod error;
pub mod merged;
pub mod prepare;
pub mod series;
pub mod snapshot;
pub mod tagging;

#[cfg(test)]
mod tests;

pub use engine::{ClockMode, Engine, EngineConfig, EngineView, MemoryStats};
pub use error::AggregatorError;
pub use merged::MergedView;
pub use prepare::{Prepared, Preparer};
pub use tagging::{Tagger, TaggingRule};
