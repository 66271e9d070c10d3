//! Pure domain types of marginstream: no I/O, no clock, no async.
//!
//! - [`event`]: the two ledger event types of the contract (section 1) and their fields.
//! - [`parse`]: turns the bytes of one message into a validated [`event::Event`] or a
//!   [`reject::Rejection`] carrying exactly one reason code (contract section 2).
//! - [`money`]: exact decimal amounts, the per-window [`money::Figures`] and the three ratios.
//! - [`time`]: timestamps, configured durations and bucket arithmetic.
//! - [`reject`]: the closed set of rejection reasons.
//! - `scan`: the parser's fast path, a scanner for the common flat shape of an event, with
//!   serde_json behind it for everything else.
//! - [`view`]: what an exporter reads from the engine ([`view::GaugeView`]) and the counters.
//! - [`error`]: the crate's one error type, for configuration values.
//!
//! # Design decisions
//!
//! Amounts are [`rust_decimal::Decimal`] from the first byte to the last sum. JSON numbers are
//! never read through `f64`: the parser captures the raw text of `amount` and parses it as a
//! decimal itself, so `0.1` stays `0.1`.
//!
//! Validation is a fixed sequence of checks so that every rejected message gets exactly one
//! reason, the same one on every run: size, JSON shape, event type, missing fields, field
//! forms, cost function, currency. Tagging by category and the currency rates depend on the
//! configuration, so they are applied by the aggregator's `Preparer`, which calls into here.
//!
//! Event ids are kept as 128-bit XXH3 hashes ([`event::EventKey`]): 16 bytes each whatever the
//! id's length, which keeps the dedup index compact. Two distinct ids collide with probability
//! about n²/2¹²⁹, below 10⁻²⁰ for a billion ids.
#![deny(missing_docs)]

pub mod error;
pub mod event;
pub mod money;
pub mod parse;
pub mod reject;
mod scan;
pub mod time;
pub mod view;

pub use error::ModelError;
pub use event::{
    CostFunction, CostTag, Currency, CustomerId, Event, EventKey, EventType, RevenueType,
};
pub use money::{Figures, Line, Ratios};
pub use parse::{parse_event, parse_event_reference, ParseLimits};
pub use reject::{RejectReason, Rejection};
pub use time::{Bucket, DurationSpec, Timestamp};
pub use view::{Counters, GaugeView, Outcome, WindowFigures};
