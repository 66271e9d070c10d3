//! From the bytes of one message to a validated [`Event`] or a [`Rejection`] with exactly one
//! reason (contract sections 1 and 2).
//!
//! The checks run in a fixed order, and the first failure decides the reason:
//!
//! 1. size (`oversized`), 2. UTF-8 and one JSON object without repeated keys
//!    (`malformed_json`), 3. `event_type` (`missing_field` when absent or null,
//!    `unknown_event_type` otherwise), 4. required fields present and not null, in the order
//!    `event_id`, `customer_id` (revenue), `occurred_at`, `amount`, `currency`
//!    (`missing_field`), 5. field forms in the order of the contract's table
//!    (`invalid_field`), 6. `cost_function` (`unknown_cost_function`).
//!
//! Currency support, tagging, the future guard and the customer limit depend on the
//! configuration or the engine's state and are checked later, in that order.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{
    CostFunction, CostTag, Currency, CustomerId, Event, EventKey, EventType, RevenueType,
};
use crate::money::parse_decimal;
use crate::reject::{RejectReason, Rejection};
use crate::scan::{self, Fields};
use crate::time::Timestamp;

/// The longest `event_id` and `customer_id`, in bytes.
pub const ID_BYTES_MAX: usize = 128;

/// The customer id reserved for the roll-up of the customers without series of their own
/// (contract sections 2 and 7): an event naming it is rejected as `invalid_field`.
pub const RESERVED_CUSTOMER_ID: &str = "__other__";

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Messages longer than this are rejected as `oversized` without being parsed.
    pub max_event_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> ParseLimits {
        // Default of `ledger.max_event_bytes` in the contract.
        ParseLimits {
            max_event_bytes: 65_536,
        }
    }
}

/// The number of known fields.
pub(crate) const FIELD_COUNT: usize = 9;

/// Field names, in the order of the contract's table.
pub(crate) const FIELDS: [&str; FIELD_COUNT] = [
    "event_type",
    "event_id",
    "customer_id",
    "occurred_at",
    "amount",
    "currency",
    "revenue_type",
    "cost_function",
    "category",
];

const EVENT_TYPE: usize = 0;
const EVENT_ID: usize = 1;
const CUSTOMER_ID: usize = 2;
const OCCURRED_AT: usize = 3;
const AMOUNT: usize = 4;
const CURRENCY: usize = 5;
const REVENUE_TYPE: usize = 6;
const COST_FUNCTION: usize = 7;
const CATEGORY: usize = 8;

/// The raw JSON text of each known field; unknown fields are skipped.
struct RawFields<'a>([Option<&'a RawValue>; FIELD_COUNT]);

impl<'de: 'a, 'a> Deserialize<'de> for RawFields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawFields<'a>, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = RawFields<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<RawFields<'a>, M::Error> {
                let mut fields: [Option<&'a RawValue>; FIELD_COUNT] = [None; FIELD_COUNT];
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match FIELDS.iter().position(|name| *name == key) {
                        Some(index) => {
                            if fields[index].is_some() {
                                return Err(de::Error::custom(format_args!(
                                    "field \"{key}\" appears twice"
                                )));
                            }
                            fields[index] = Some(map.next_value::<&'de RawValue>()?);
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawFields(fields))
            }
        }

        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

/// A field's value as far as validation cares.
enum Value<'a> {
    Absent,
    Null,
    Text(Cow<'a, str>),
    /// A number, boolean, array or object: the raw JSON text.
    Other(&'a str),
}

impl<'a> Value<'a> {
    /// Returns the value of a field from its raw JSON text, as serde_json or the scanner
    /// found it; `escapes`: whether a string may hold escapes (the scanner's never do).
    #[inline]
    fn of(raw: Option<&'a str>, escapes: bool) -> Value<'a> {
        let Some(text) = raw else {
            return Value::Absent;
        };
        if text == "null" {
            Value::Null
        } else if text.starts_with('"') {
            if escapes && text.contains('\\') {
                // serde_json already validated the string; this only unescapes it.
                match serde_json::from_str::<String>(text) {
                    Ok(owned) => Value::Text(Cow::Owned(owned)),
                    Err(_) => Value::Other(text),
                }
            } else {
                Value::Text(Cow::Borrowed(&text[1..text.len() - 1]))
            }
        } else {
            Value::Other(text)
        }
    }

    fn is_missing(&self) -> bool {
        matches!(self, Value::Absent | Value::Null)
    }
}

fn invalid(field: &str, problem: impl fmt::Display) -> Rejection {
    Rejection::new(
        RejectReason::InvalidField,
        format!("field \"{field}\": {problem}"),
    )
}

#[inline]
fn text<'v, 'a>(value: &'v Value<'a>, field: &str) -> Result<&'v str, Rejection> {
    match value {
        Value::Text(text) => Ok(text),
        Value::Other(raw) => Err(not_a_string(field, raw)),
        Value::Absent | Value::Null => Err(missing(field)),
    }
}

/// The rejection of `field` when its value is the JSON `raw`, not a string.
#[cold]
fn not_a_string(field: &str, raw: &str) -> Rejection {
    invalid(
        field,
        format_args!("expected a string, got {}", preview(raw)),
    )
}

/// The rejection of a required `field` that is absent or null.
#[cold]
fn missing(field: &str) -> Rejection {
    Rejection::new(
        RejectReason::MissingField,
        format!("field \"{field}\" is missing"),
    )
}

/// Returns at most 40 characters of a value, for an error message.
fn preview(raw: &str) -> String {
    let mut out: String = raw.chars().take(40).collect();
    if out.len() < raw.len() {
        out.push('…');
    }
    out
}

fn identifier<'v>(
    value: &'v Value<'_>,
    field: &str,
    allow_control: bool,
) -> Result<&'v str, Rejection> {
    let id = text(value, field)?;
    if id.is_empty() || id.len() > ID_BYTES_MAX {
        return Err(invalid(
            field,
            format_args!("must be 1 to {ID_BYTES_MAX} bytes, got {}", id.len()),
        ));
    }
    if !allow_control && id.chars().any(char::is_control) {
        return Err(invalid(field, "contains a control character"));
    }
    Ok(id)
}

/// Parses and validates one message. See the module documentation for the order of checks.
///
/// The common shape of an event, one flat object without escapes, is read by a hand-written
/// scanner (`scan`); anything else by serde_json. Both give the same raw field texts to the
/// same validation, so the result, rejections and their messages included, does not depend
/// on which one read the line ([`parse_event_reference`] is the serde_json path alone).
pub fn parse_event(bytes: &[u8], limits: &ParseLimits) -> Result<Event, Rejection> {
    parse_with(bytes, limits, scan::scan_into)
}

/// Parses and validates one message with serde_json alone, without the scanner in front of
/// it: the reference that [`parse_event`] is tested against. It gives the same result,
/// only more slowly.
pub fn parse_event_reference(bytes: &[u8], limits: &ParseLimits) -> Result<Event, Rejection> {
    parse_with(bytes, limits, |_, _| None)
}

/// [`parse_event`] with `scan` as the fast path: when it gives the raw fields of a line,
/// serde_json is not run.
fn parse_with<'a>(
    bytes: &'a [u8],
    limits: &ParseLimits,
    scan: impl FnOnce(&'a str, &mut Fields<'a>) -> Option<()>,
) -> Result<Event, Rejection> {
    if bytes.len() > limits.max_event_bytes {
        return Err(Rejection::new(
            RejectReason::Oversized,
            format!(
                "message is {} bytes, more than ledger.max_event_bytes = {}",
                bytes.len(),
                limits.max_event_bytes
            ),
        ));
    }
    let json = std::str::from_utf8(bytes).map_err(|error| {
        Rejection::new(RejectReason::MalformedJson, format!("not UTF-8: {error}"))
    })?;
    if json.trim().is_empty() {
        return Err(Rejection::new(
            RejectReason::MalformedJson,
            "empty message: not one JSON object",
        ));
    }
    // The scanner reads only strings without escapes; serde_json's raw texts may hold some.
    let mut raw: Fields<'_> = [None; FIELD_COUNT];
    let escapes = match scan(json, &mut raw) {
        Some(()) => false,
        None => {
            let parsed: RawFields<'_> = serde_json::from_str(json).map_err(|error| {
                Rejection::new(
                    RejectReason::MalformedJson,
                    format!("not one JSON object: {error}"),
                )
            })?;
            raw = parsed.0.map(|value| value.map(RawValue::get));
            true
        }
    };
    // Each field's value is made where it is checked, not all nine up front: measured in
    // issue 12, building the array of values was a tenth of the parse.
    let value = |index: usize| Value::of(raw[index], escapes);
    let absent = |index: usize| raw[index].is_none_or(|text| text == "null");

    // 3. The event type decides which fields are required.
    let event_type = match &value(EVENT_TYPE) {
        Value::Absent | Value::Null => return Err(missing("event_type")),
        Value::Text(name) => EventType::from_wire(name).ok_or_else(|| {
            Rejection::new(
                RejectReason::UnknownEventType,
                format!(
                    "event_type {:?} is neither \"Revenue_Event\" nor \"Cost_Event\"",
                    preview(name)
                ),
            )
        })?,
        Value::Other(raw) => {
            return Err(Rejection::new(
                RejectReason::UnknownEventType,
                format!("event_type {} is not a string", preview(raw)),
            ))
        }
    };

    // 4. Required fields, all checked for presence before any form.
    let required: &[usize] = match event_type {
        EventType::Revenue => &[EVENT_ID, CUSTOMER_ID, OCCURRED_AT, AMOUNT, CURRENCY],
        EventType::Cost => &[EVENT_ID, OCCURRED_AT, AMOUNT, CURRENCY],
    };
    if let Some(index) = required.iter().find(|index| absent(**index)) {
        return Err(missing(FIELDS[*index]));
    }

    // 5. Forms, in the order of the contract's table.
    let event_id_value = value(EVENT_ID);
    let event_id = identifier(&event_id_value, "event_id", true)?;
    let customer_id_value = value(CUSTOMER_ID);
    let customer_id = match &customer_id_value {
        value if value.is_missing() => None,
        value => Some(identifier(value, "customer_id", false)?),
    };
    if customer_id == Some(RESERVED_CUSTOMER_ID) {
        return Err(invalid(
            "customer_id",
            format_args!(
                "{RESERVED_CUSTOMER_ID:?} is reserved for the roll-up of customers without series of their own"
            ),
        ));
    }
    let occurred_at = Timestamp::parse_rfc3339(text(&value(OCCURRED_AT), "occurred_at")?)
        .ok_or_else(|| invalid("occurred_at", "not an RFC 3339 timestamp with an offset"))?;
    let amount = match &value(AMOUNT) {
        Value::Text(text) => parse_decimal(text),
        Value::Other(raw) if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            parse_decimal(raw)
        }
        _ => Err("expected a decimal as a string or a number"),
    }
    .map_err(|problem| invalid("amount", problem))?;
    let currency = Currency::parse(text(&value(CURRENCY), "currency")?)
        .map_err(|_| invalid("currency", "expected three upper-case letters (ISO 4217)"))?;

    let mut revenue_type = RevenueType::default();
    let mut cost = CostTag::None;
    match event_type {
        EventType::Revenue => {
            if !absent(REVENUE_TYPE) {
                let revenue_type_value = value(REVENUE_TYPE);
                let name = text(&revenue_type_value, "revenue_type")?;
                revenue_type = RevenueType::from_wire(name).ok_or_else(|| {
                    invalid(
                        "revenue_type",
                        format_args!(
                            "{:?} is not one of recurring, usage, services, one_time",
                            preview(name)
                        ),
                    )
                })?;
            }
        }
        EventType::Cost => {
            let category_value = value(CATEGORY);
            let category = match &category_value {
                value if value.is_missing() => None,
                value => Some(text(value, "category")?),
            };
            // 6. The explicit function wins over the category.
            cost = match &value(COST_FUNCTION) {
                value if value.is_missing() => match category {
                    Some(category) => CostTag::Category(category.into()),
                    None => CostTag::None,
                },
                Value::Text(name) => {
                    CostTag::Function(CostFunction::from_wire(name).ok_or_else(|| {
                        Rejection::new(
                            RejectReason::UnknownCostFunction,
                            format!(
                                "cost_function {:?} is not one of the six functions",
                                preview(name)
                            ),
                        )
                    })?)
                }
                Value::Other(raw) => {
                    return Err(Rejection::new(
                        RejectReason::UnknownCostFunction,
                        format!(
                            "cost_function {} is not one of the six functions",
                            preview(raw)
                        ),
                    ))
                }
                Value::Absent | Value::Null => CostTag::None,
            };
        }
    }

    Ok(Event {
        event_type,
        key: EventKey::of(event_id),
        customer_id: customer_id.map(CustomerId::from),
        occurred_at,
        amount,
        currency,
        revenue_type,
        cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn parse(json: &str) -> Result<Event, Rejection> {
        parse_event(json.as_bytes(), &ParseLimits::default())
    }

    fn reason(json: &str) -> RejectReason {
        parse(json).expect_err("must be rejected").reason
    }

    const REVENUE: &str = r#"{"event_type":"Revenue_Event","event_id":"e1","customer_id":"c1","occurred_at":"2026-01-01T00:00:00Z","amount":"100.10","currency":"USD"}"#;

    /// Shows a valid revenue event with defaults and an exact number amount.
    #[test]
    fn parses_valid_events() {
        let event = parse(REVENUE).unwrap();
        assert_eq!(event.event_type, EventType::Revenue);
        assert_eq!(event.amount, Decimal::from_str("100.1").unwrap());
        assert_eq!(event.revenue_type, RevenueType::Recurring);
        let cost = parse(r#"{"event_type":"Cost_Event","event_id":"e2","occurred_at":"2026-01-01T00:00:00+01:00","amount":0.1,"currency":"EUR","category":"hosting","extra":{"x":[1]}}"#).unwrap();
        assert_eq!(cost.customer_id, None);
        assert_eq!(cost.amount, Decimal::from_str("0.1").unwrap());
        assert_eq!(cost.cost, CostTag::Category("hosting".into()));
        let tagged = parse(r#"{"event_type":"Cost_Event","event_id":"e3","customer_id":null,"occurred_at":"2026-01-01T00:00:00Z","amount":"-5","currency":"USD","cost_function":"Support","category":"whatever"}"#).unwrap();
        assert_eq!(tagged.cost, CostTag::Function(CostFunction::Support));
    }

    /// Shows that the roll-up's reserved id is refused on either event type, and that ids
    /// that only resemble it are customers like any other (contract section 2, v2).
    #[test]
    fn the_reserved_customer_id_is_an_invalid_field() {
        let revenue = REVENUE.replace(r#""c1""#, r#""__other__""#);
        let rejection = parse(&revenue).expect_err("the reserved id is refused");
        assert_eq!(rejection.reason, RejectReason::InvalidField);
        assert!(
            rejection.message.contains("customer_id"),
            "{}",
            rejection.message
        );
        let cost = r#"{"event_type":"Cost_Event","event_id":"e2","customer_id":"__other__","occurred_at":"2026-01-01T00:00:00Z","amount":"1","currency":"USD","cost_function":"Support"}"#;
        assert_eq!(reason(cost), RejectReason::InvalidField);
        for lookalike in ["__OTHER__", "__other__ ", "_other_", "other"] {
            let event = REVENUE.replace(r#""c1""#, &format!("{lookalike:?}"));
            assert!(parse(&event).is_ok(), "{lookalike:?} is an ordinary id");
        }
    }

    /// Shows one reason for each kind of bad message.
    #[test]
    fn rejects_with_one_reason() {
        use RejectReason::*;
        assert_eq!(reason("{"), MalformedJson);
        assert_eq!(reason("[1]"), MalformedJson);
        assert_eq!(reason("{} {}"), MalformedJson);
        assert_eq!(reason(r#"{"event_id":"a","event_id":"b"}"#), MalformedJson);
        assert_eq!(
            parse_event(b"{\"a\":\"\xff\"}", &ParseLimits::default())
                .unwrap_err()
                .reason,
            MalformedJson
        );
        assert_eq!(reason("{}"), MissingField);
        assert_eq!(reason(r#"{"event_type":"Refund_Event"}"#), UnknownEventType);
        assert_eq!(reason(r#"{"event_type":7}"#), UnknownEventType);
        assert_eq!(
            reason(&REVENUE.replace(r#""customer_id":"c1","#, "")),
            MissingField
        );
        assert_eq!(reason(&REVENUE.replace(r#""c1""#, "null")), MissingField);
        assert_eq!(reason(&REVENUE.replace(r#""c1""#, r#""""#)), InvalidField);
        assert_eq!(
            reason(&REVENUE.replace(r#""c1""#, r#""c\u0007""#)),
            InvalidField
        );
        assert_eq!(
            reason(&REVENUE.replace(r#""e1""#, &format!("\"{}\"", "x".repeat(129)))),
            InvalidField
        );
        assert_eq!(
            reason(&REVENUE.replace("2026-01-01T00:00:00Z", "2026-01-01 00:00")),
            InvalidField
        );
        assert_eq!(
            reason(&REVENUE.replace(r#""100.10""#, r#""1e""#)),
            InvalidField
        );
        assert_eq!(
            reason(&REVENUE.replace(r#""100.10""#, "true")),
            InvalidField
        );
        assert_eq!(
            reason(&REVENUE.replace(r#""USD""#, r#""usd""#)),
            InvalidField
        );
        assert_eq!(
            reason(&REVENUE.replace(r#""USD""#, r#""USD","revenue_type":"gift""#)),
            InvalidField
        );
        let cost = r#"{"event_type":"Cost_Event","event_id":"e","occurred_at":"2026-01-01T00:00:00Z","amount":"1","currency":"USD","cost_function":"Marketing"}"#;
        assert_eq!(reason(cost), UnknownCostFunction);
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000));
        assert_eq!(reason(&big), Oversized);
    }

    /// Shows that missing fields are reported before malformed ones.
    #[test]
    fn missing_before_invalid() {
        let json = r#"{"event_type":"Revenue_Event","event_id":"e1","customer_id":"c1","occurred_at":"bad","currency":"USD"}"#;
        let rejection = parse(json).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::MissingField);
        assert!(
            rejection.message.contains("amount"),
            "{}",
            rejection.message
        );
    }
}
