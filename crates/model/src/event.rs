//! Ledger events (contract section 1).

use std::fmt;

use rust_decimal::Decimal;

use crate::error::ModelError;
use crate::time::Timestamp;

/// The two event types of the Commercial Event Ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// Recognised revenue.
    Revenue,
    /// An incurred cost.
    Cost,
}

impl EventType {
    /// Both types, in label order.
    pub const ALL: [EventType; 2] = [EventType::Revenue, EventType::Cost];

    /// Returns the wire name, also used as the `event_type` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Revenue => "Revenue_Event",
            EventType::Cost => "Cost_Event",
        }
    }

    /// Parses the wire name; exact and case-sensitive.
    pub fn from_wire(text: &str) -> Option<EventType> {
        match text {
            "Revenue_Event" => Some(EventType::Revenue),
            "Cost_Event" => Some(EventType::Cost),
            _ => None,
        }
    }

    /// Returns the position in [`EventType::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The `revenue_type` of a revenue event. It does not change any gauge of contract v1, but is
/// validated so that a typo is caught at the edge rather than in a later report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RevenueType {
    /// Subscription revenue (the default).
    #[default]
    Recurring,
    /// Metered usage.
    Usage,
    /// Professional services billed to the customer.
    Services,
    /// One-time fees.
    OneTime,
}

impl RevenueType {
    /// Returns the wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RevenueType::Recurring => "recurring",
            RevenueType::Usage => "usage",
            RevenueType::Services => "services",
            RevenueType::OneTime => "one_time",
        }
    }

    /// Parses the wire name; exact and case-sensitive.
    pub fn from_wire(text: &str) -> Option<RevenueType> {
        match text {
            "recurring" => Some(RevenueType::Recurring),
            "usage" => Some(RevenueType::Usage),
            "services" => Some(RevenueType::Services),
            "one_time" => Some(RevenueType::OneTime),
            _ => None,
        }
    }
}

/// The Attribution Taxonomy Layer function of a cost (contract section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CostFunction {
    /// COGS: hosting, cloud, third-party APIs, payment processing. In GM-M and GM-O.
    Infrastructure,
    /// Customer support. In GM-O only.
    Support,
    /// Customer success and success engineering. In GM-O only.
    SuccessEngineering,
    /// Implementation and professional services. In GM-O only.
    Implementation,
    /// Onboarding and training. In GM-O only.
    Onboarding,
    /// Below the gross-margin line (R&D, S&M, G&A, SBC): in no margin.
    Excluded,
}

impl CostFunction {
    /// All six functions, in the contract's order.
    pub const ALL: [CostFunction; 6] = [
        CostFunction::Infrastructure,
        CostFunction::Support,
        CostFunction::SuccessEngineering,
        CostFunction::Implementation,
        CostFunction::Onboarding,
        CostFunction::Excluded,
    ];

    /// The five functions that count in a margin, the `cost_function` label values.
    pub const MARGIN: [CostFunction; 5] = [
        CostFunction::Infrastructure,
        CostFunction::Support,
        CostFunction::SuccessEngineering,
        CostFunction::Implementation,
        CostFunction::Onboarding,
    ];

    /// Returns the wire name, also the `cost_function` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            CostFunction::Infrastructure => "Infrastructure",
            CostFunction::Support => "Support",
            CostFunction::SuccessEngineering => "Success_Engineering",
            CostFunction::Implementation => "Implementation",
            CostFunction::Onboarding => "Onboarding",
            CostFunction::Excluded => "Excluded",
        }
    }

    /// Parses the wire name; exact and case-sensitive.
    pub fn from_wire(text: &str) -> Option<CostFunction> {
        CostFunction::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

impl fmt::Display for CostFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code, checking its form only (not that ISO assigned it).
    pub fn parse(text: &str) -> Result<Currency, ModelError> {
        match text.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(ModelError::Currency {
                text: text.to_owned(),
            }),
        }
    }

    /// Returns the code as text.
    pub fn as_str(&self) -> &str {
        // The constructor admits only ASCII upper-case letters.
        std::str::from_utf8(&self.0).expect("a currency code is ASCII by construction")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A customer id: inline up to 24 bytes, so that the common short ids cost no allocation
/// between the parsing thread and the engine.
pub type CustomerId = compact_str::CompactString;

/// The idempotency key of an event: a 128-bit XXH3 hash of its `event_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey(pub u128);

impl EventKey {
    /// Hashes an event id.
    pub fn of(event_id: &str) -> EventKey {
        EventKey(xxhash_rust::xxh3::xxh3_128(event_id.as_bytes()))
    }
}

/// How a cost is attributed to a function, as read from the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CostTag {
    /// The producer named the function in `cost_function`.
    Function(CostFunction),
    /// Only a raw `category` was given: the tagging rules decide.
    Category(compact_str::CompactString),
    /// Neither was given: the cost is untagged.
    None,
}

/// A validated ledger event, before tagging and currency conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Revenue or cost.
    pub event_type: EventType,
    /// The hashed `event_id`.
    pub key: EventKey,
    /// The customer; `None` only on an unattributed (shared) cost.
    pub customer_id: Option<CustomerId>,
    /// Event time.
    pub occurred_at: Timestamp,
    /// The amount in `currency`, exact.
    pub amount: Decimal,
    /// The currency of `amount`.
    pub currency: Currency,
    /// For revenue: its type (defaults to recurring). For costs: `Recurring`, unused.
    pub revenue_type: RevenueType,
    /// For costs: the function or the category to tag. For revenue: [`CostTag::None`].
    pub cost: CostTag,
}
