//! From message bytes to an event ready for the engine: parse, convert, tag.

use std::collections::HashMap;

use marginstream_model::money::exact_mul;
use marginstream_model::{
    parse_event, CostTag, Currency, CustomerId, Event, EventKey, EventType, Line, ParseLimits,
    RejectReason, Rejection, Timestamp,
};
use rust_decimal::Decimal;

use crate::tagging::Tagger;

/// An event validated, converted to the reporting currency and tagged: what the engine applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Revenue or cost, for the counters.
    pub event_type: EventType,
    /// The hashed `event_id`.
    pub key: EventKey,
    /// The customer, or `None` for an unattributed cost.
    pub customer_id: Option<CustomerId>,
    /// Event time.
    pub occurred_at: Timestamp,
    /// Where the amount is summed.
    pub line: Line,
    /// The amount in the reporting currency.
    pub amount: Decimal,
}

/// Parses, converts and tags messages. Immutable and `Sync`: parsing can run on any thread.
#[derive(Debug, Clone)]
pub struct Preparer {
    limits: ParseLimits,
    tagger: Tagger,
    reporting_currency: Currency,
    /// Units of reporting currency per unit of each other currency.
    rates: HashMap<Currency, Decimal>,
}

impl Preparer {
    /// Creates a preparer. `rates` must not contain the reporting currency with a rate other
    /// than one; the configuration validation guarantees it.
    pub fn new(
        limits: ParseLimits,
        tagger: Tagger,
        reporting_currency: Currency,
        rates: HashMap<Currency, Decimal>,
    ) -> Preparer {
        Preparer {
            limits,
            tagger,
            reporting_currency,
            rates,
        }
    }

    /// Returns the parse limits.
    pub fn limits(&self) -> &ParseLimits {
        &self.limits
    }

    /// Prepares one message: parse and validate, then the currency, then the tag.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Prepared, Rejection> {
        self.prepare_event(self.parse(bytes)?)
    }

    /// Parses and validates one message (contract section 1), without converting or tagging
    /// it: the part of [`Preparer::prepare`] that depends only on the parse limits, so that
    /// one parse can be prepared under several configurations (`replay --compare-config`).
    pub fn parse(&self, bytes: &[u8]) -> Result<Event, Rejection> {
        parse_event(bytes, &self.limits)
    }

    /// Converts and tags a parsed event: [`Preparer::prepare`] after the parse.
    pub fn prepare_event(&self, event: Event) -> Result<Prepared, Rejection> {
        let amount = self.convert(&event)?;
        let line = self.line(&event)?;
        Ok(Prepared {
            event_type: event.event_type,
            key: event.key,
            customer_id: event.customer_id,
            occurred_at: event.occurred_at,
            line,
            amount,
        })
    }

    /// Returns the event's amount in the reporting currency, or its rejection
    /// (`unsupported_currency`, or `invalid_field` when the product is not exact).
    pub fn convert(&self, event: &Event) -> Result<Decimal, Rejection> {
        if event.currency == self.reporting_currency {
            return Ok(event.amount);
        }
        let rate = self.rates.get(&event.currency).ok_or_else(|| {
            Rejection::new(
                RejectReason::UnsupportedCurrency,
                format!(
                    "no rate from {} to {} in ledger.fx",
                    event.currency, self.reporting_currency
                ),
            )
        })?;
        // Exact or refused: a product needing more than 28 significant digits would be
        // rounded, and a ledger must reconcile to the cent.
        Ok(exact_mul(event.amount, *rate)
            .ok_or_else(|| {
                Rejection::new(
                    RejectReason::InvalidField,
                    format!(
                        "field \"amount\": {} {} × {rate} needs more than 28 significant digits",
                        event.amount, event.currency
                    ),
                )
            })?
            // `2 × 1.5` is `3.0`: trailing zeros are not significant, and must not count
            // against the exactness budget of the sums.
            .normalize())
    }

    /// Returns where the event's amount is summed: revenue, or the cost function its
    /// `cost_function` names or the tagging rules give its `category`; a cost that neither
    /// resolves is rejected as `untagged_cost`.
    pub fn line(&self, event: &Event) -> Result<Line, Rejection> {
        match (event.event_type, &event.cost) {
            (EventType::Revenue, _) => Ok(Line::Revenue),
            (EventType::Cost, CostTag::Function(function)) => Ok(Line::Cost(*function)),
            (EventType::Cost, CostTag::Category(category)) => {
                Ok(Line::Cost(self.tagger.tag(category).ok_or_else(|| {
                    Rejection::new(
                        RejectReason::UntaggedCost,
                        format!("no tagging rule matches category {category:?}"),
                    )
                })?))
            }
            (EventType::Cost, CostTag::None) => Err(Rejection::new(
                RejectReason::UntaggedCost,
                "cost has neither cost_function nor category",
            )),
        }
    }
}
