//! Rejection reasons: the closed set of contract section 2.

use std::fmt;

/// Why an event was not applied. Each rejected message carries exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The bytes are not one JSON object in UTF-8.
    MalformedJson,
    /// A required field is absent or null.
    MissingField,
    /// A field is present but not of its form.
    InvalidField,
    /// `event_type` is not one of the two.
    UnknownEventType,
    /// `cost_function` is not one of the six.
    UnknownCostFunction,
    /// No `cost_function` and no tagging rule matches `category`.
    UntaggedCost,
    /// No rate from the event's currency to the reporting currency.
    UnsupportedCurrency,
    /// The message exceeds `ledger.max_event_bytes`.
    Oversized,
    /// `occurred_at` is later than the wall clock plus `ledger.max_future_skew`.
    FutureEvent,
    /// A new customer beyond `ledger.max_customers`.
    CustomerLimit,
}

impl RejectReason {
    /// Every reason, in the order of the contract's table.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::UnknownEventType,
        RejectReason::UnknownCostFunction,
        RejectReason::UntaggedCost,
        RejectReason::UnsupportedCurrency,
        RejectReason::Oversized,
        RejectReason::FutureEvent,
        RejectReason::CustomerLimit,
    ];

    /// Returns the reason code as it appears in metrics and dead-letter records.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::UnknownCostFunction => "unknown_cost_function",
            RejectReason::UntaggedCost => "untagged_cost",
            RejectReason::UnsupportedCurrency => "unsupported_currency",
            RejectReason::Oversized => "oversized",
            RejectReason::FutureEvent => "future_event",
            RejectReason::CustomerLimit => "customer_limit",
        }
    }

    /// Returns the position of this reason in [`RejectReason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected event: its one reason and a lowercase explanation naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason code.
    pub reason: RejectReason,
    /// Human-readable detail, e.g. `field "occurred_at": not an RFC 3339 timestamp`.
    pub message: String,
}

impl Rejection {
    /// Creates a rejection.
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}
