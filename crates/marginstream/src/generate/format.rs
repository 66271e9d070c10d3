//! Formatting: JSON lines written straight into a reused buffer.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Writes the decimal digits of `n`.
pub(super) fn write_u64(buf: &mut Vec<u8>, n: u64) {
    write_padded(buf, n, 1);
}

/// Writes `n` with leading zeros to at least `width` digits (at most 20).
pub(super) fn write_padded(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = at.min(digits.len().saturating_sub(width));
    buf.extend_from_slice(&digits[start..]);
}

/// Writes an amount of `units` ten-thousandths with `scale` (2 or 4) decimals, as a JSON
/// string or, with `as_number`, a JSON number.
pub(super) fn write_amount(buf: &mut Vec<u8>, units: i64, scale: u8, as_number: bool) {
    debug_assert!(
        scale == 4 || units % UNITS_PER_CENT == 0,
        "{units} has more than 2 decimals"
    );
    if !as_number {
        buf.push(b'"');
    }
    if units < 0 {
        buf.push(b'-');
    }
    let magnitude = units.unsigned_abs();
    write_u64(buf, magnitude / UNITS_PER_DOLLAR as u64);
    buf.push(b'.');
    let fraction = magnitude % UNITS_PER_DOLLAR as u64;
    if scale == 4 {
        write_padded(buf, fraction, 4);
    } else {
        write_padded(buf, fraction / UNITS_PER_CENT as u64, 2);
    }
    if !as_number {
        buf.push(b'"');
    }
}

/// Writes `ms` (Unix milliseconds) as RFC 3339 without quotes: `2025-12-05T13:07:42Z`, with
/// milliseconds only when there are some, and in the local time of `offset_minutes` when given
/// (`2025-12-05T15:07:42+02:00` is the same instant).
///
/// # Panics
///
/// If the time is outside the years 1970-9999, which `Plan` rules out for every event.
pub(super) fn write_timestamp(buf: &mut Vec<u8>, ms: i64, offset_minutes: Option<i16>) {
    let utc = OffsetDateTime::from_unix_timestamp(ms.div_euclid(SECOND_MS))
        .expect("event times lie within the years 1970-9999");
    let local = match offset_minutes {
        Some(minutes) => utc.to_offset(
            UtcOffset::from_whole_seconds(i32::from(minutes) * 60)
                .expect("offsets of the table are within a day"),
        ),
        None => utc,
    };
    let (year, month, day) = local.to_calendar_date();
    let (hour, minute, second) = local.to_hms();
    debug_assert!(
        (0..=9999).contains(&year),
        "year {year} has more than 4 digits"
    );
    write_padded(buf, year as u64, 4);
    buf.push(b'-');
    write_padded(buf, u64::from(month as u8), 2);
    buf.push(b'-');
    write_padded(buf, u64::from(day), 2);
    buf.push(b'T');
    write_padded(buf, u64::from(hour), 2);
    buf.push(b':');
    write_padded(buf, u64::from(minute), 2);
    buf.push(b':');
    write_padded(buf, u64::from(second), 2);
    let millis = ms.rem_euclid(SECOND_MS);
    if millis != 0 {
        buf.push(b'.');
        write_padded(buf, millis as u64, 3);
    }
    match offset_minutes {
        None => buf.push(b'Z'),
        Some(minutes) => {
            buf.push(if minutes < 0 { b'-' } else { b'+' });
            let minutes = u64::from(minutes.unsigned_abs());
            write_padded(buf, minutes / 60, 2);
            buf.push(b':');
            write_padded(buf, minutes % 60, 2);
        }
    }
}

pub(super) fn write_category(buf: &mut Vec<u8>, category: Category) {
    buf.push(b'"');
    for (i, byte) in category.name.bytes().enumerate() {
        buf.push(match category.case {
            Case::Lower => byte,
            Case::Capitalized if i == 0 => byte.to_ascii_uppercase(),
            Case::Capitalized => byte,
            Case::Upper => byte.to_ascii_uppercase(),
        });
    }
    buf.push(b'"');
}

/// Calls `field(key, raw JSON value)` for each field of `event`, in the order of the
/// contract's table, then the unknown fields. `value` is scratch space.
///
/// This is the one definition of an event's JSON, used for good lines and, through
/// [`event_fields`], as the base of bad lines.
pub(super) fn for_each_field(
    ledger: &Ledger,
    event: &Event,
    value: &mut Vec<u8>,
    mut field: impl FnMut(&'static str, &[u8]),
) {
    field(
        "event_type",
        if event.is_revenue() {
            b"\"Revenue_Event\""
        } else {
            b"\"Cost_Event\""
        },
    );
    value.clear();
    value.extend_from_slice(b"\"evt-");
    write_u64(value, ledger.seed);
    value.push(b'-');
    if event.flags & BAD_ID != 0 {
        value.push(b'b');
    }
    write_u64(value, event.seq);
    value.push(b'"');
    field("event_id", value);
    match event.customer {
        Some(index) => field(
            "customer_id",
            ledger.customers[index as usize].id_json.as_bytes(),
        ),
        None if event.flags & NULL_CUSTOMER != 0 => field("customer_id", b"null"),
        None => {}
    }
    value.clear();
    value.push(b'"');
    write_timestamp(value, event.occurred_ms, event.offset_minutes);
    value.push(b'"');
    field("occurred_at", value);
    value.clear();
    write_amount(
        value,
        event.amount,
        event.scale,
        event.flags & AMOUNT_AS_NUMBER != 0,
    );
    field("amount", value);
    field("currency", b"\"USD\"");
    match event.body {
        Body::Revenue(revenue_type) => {
            if event.flags & OMIT_REVENUE_TYPE == 0 {
                value.clear();
                value.push(b'"');
                value.extend_from_slice(revenue_type.as_str().as_bytes());
                value.push(b'"');
                field("revenue_type", value);
            }
        }
        Body::Cost { function, category } => {
            if let Some(function) = function {
                value.clear();
                value.push(b'"');
                value.extend_from_slice(function.as_str().as_bytes());
                value.push(b'"');
                field("cost_function", value);
            }
            if let Some(category) = category {
                value.clear();
                write_category(value, category);
                field("category", value);
            }
        }
    }
    // Unknown fields, which consumers must ignore.
    if event.flags & EXTRA_SOURCE != 0 {
        field(
            "source",
            if event.is_revenue() {
                b"\"billing\""
            } else {
                b"\"cost-export\""
            },
        );
    }
    if event.flags & EXTRA_META != 0 {
        field("meta", b"{\"region\":\"eu-west-1\",\"batch\":17}");
    }
}

/// Writes `event` as one JSON object, without the newline, replacing `line`.
pub(super) fn write_event(
    ledger: &Ledger,
    event: &Event,
    line: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    line.clear();
    line.push(b'{');
    for_each_field(ledger, event, scratch, |key, value| {
        if line.len() > 1 {
            line.push(b',');
        }
        line.push(b'"');
        line.extend_from_slice(key.as_bytes());
        line.extend_from_slice(b"\":");
        line.extend_from_slice(value);
    });
    line.push(b'}');
}

/// An event's fields as (key, raw JSON value), for bad lines to edit.
pub(super) type Fields = Vec<(&'static str, String)>;

pub(super) fn event_fields(ledger: &Ledger, event: &Event) -> Fields {
    let mut fields = Fields::new();
    let mut scratch = Vec::new();
    for_each_field(ledger, event, &mut scratch, |key, value| {
        let value = String::from_utf8(value.to_vec()).expect("every field is written as UTF-8");
        fields.push((key, value));
    });
    fields
}

/// Replaces the value of `key`, or appends the field.
pub(super) fn set_field(fields: &mut Fields, key: &'static str, raw: String) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(field) => field.1 = raw,
        None => fields.push((key, raw)),
    }
}

pub(super) fn remove_field(fields: &mut Fields, key: &str) {
    fields.retain(|(k, _)| *k != key);
}

pub(super) fn field_value<'a>(fields: &'a Fields, key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
        .expect("the base of a bad line has every required field")
}

pub(super) fn write_fields(fields: &Fields, line: &mut Vec<u8>) {
    line.clear();
    line.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.push(b'"');
        line.extend_from_slice(key.as_bytes());
        line.extend_from_slice(b"\":");
        line.extend_from_slice(value.as_bytes());
    }
    line.push(b'}');
}
