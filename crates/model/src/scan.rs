//! A fast path in front of serde_json for the common shape of an event: one flat JSON object
//! whose strings have no escapes.
//!
//! [`scan_into`] walks the line once and gives the raw JSON text of each known field,
//! exactly the slices serde_json's `RawValue` would give, so that the validation after it is
//! shared and cannot tell the two paths apart. It handles only what it can decide alone and
//! answers `None` for anything else: an escape or a control character in a string, a nested
//! object or array (even in an unknown field), a repeated known field, or any syntax error.
//! The caller then parses the line with serde_json, which decides the rejection and its
//! message. So the scanner only ever accepts lines serde_json accepts, with the same fields;
//! the differential property test in `tests/properties.rs` checks exactly that.
//!
//! Measured in issue 12 on the bench ledger (2M lines, 10 % of the amounts as JSON numbers):
//! the replay's parsing thread used 14 % less CPU than with serde_json's visitor alone.

use crate::parse::{FIELDS, FIELD_COUNT};

/// The raw JSON text of each known field, by the index of the field in the parser's table.
pub(crate) type Fields<'a> = [Option<&'a str>; FIELD_COUNT];

/// Returns the index of a known field name, in the order of the parser's table.
fn field_index(name: &[u8]) -> Option<usize> {
    // The same order as `parse::FIELDS`; a test checks that the two agree.
    match name {
        b"event_type" => Some(0),
        b"event_id" => Some(1),
        b"customer_id" => Some(2),
        b"occurred_at" => Some(3),
        b"amount" => Some(4),
        b"currency" => Some(5),
        b"revenue_type" => Some(6),
        b"cost_function" => Some(7),
        b"category" => Some(8),
        _ => None,
    }
}

/// Each known field's name and closing quote as a little-endian 16-byte word, with the mask
/// of its bytes, for [`Scanner::name`] (a name of 15 bytes or more would not compile here).
const NAME_PATTERNS: [(u128, u128); FIELD_COUNT] = {
    let mut patterns = [(0, 0); FIELD_COUNT];
    let mut field = 0;
    while field < FIELD_COUNT {
        let name = FIELDS[field].as_bytes();
        let mut pattern = 0u128;
        let mut at = 0;
        while at < name.len() {
            pattern |= (name[at] as u128) << (8 * at);
            at += 1;
        }
        pattern |= (b'"' as u128) << (8 * name.len());
        patterns[field] = (pattern, (1u128 << (8 * (name.len() + 1))) - 1);
        field += 1;
    }
    patterns
};

/// Returns `true` for the bytes that end the fast reading of a string: a quote, a backslash
/// or a control character.
fn is_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Returns the position of the first [`is_special`] byte, eight bytes at a time.
///
/// In each word, a byte is flagged when it equals `"` or `\\` (its XOR with them is zero) or
/// is below 0x20, by the classic "has a zero byte" test: `(x - 0x01..) & !x & 0x80..`. A
/// flag can be wrong only above a byte that is flagged rightly (a borrow runs upwards), so
/// the lowest flag is always right. The ids, timestamps and amounts of an event are 5 to 30
/// bytes: measured in issue 12, about half of the scanner's time went to this search, byte by
/// byte.
fn special_position(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |word: u64| word.wrapping_sub(ONES) & !word;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact gives 8 bytes"));
        let flags = (zero_in(word ^ (ONES * u64::from(b'"')))
            | zero_in(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGHS;
        if flags != 0 {
            return Some(offset + (flags.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&byte| is_special(byte))
        .map(|at| offset + at)
}

/// A position in the line being scanned.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Consumes `byte`, or fails.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Skips JSON whitespace: space, tab, line feed, carriage return.
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes a string without escapes or control characters (the cursor is on its opening
    /// quote) and returns the range of its contents.
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.at + 1;
        let rest = self.bytes.get(start..)?;
        let length = special_position(rest)?;
        if rest[length] != b'"' {
            return None;
        }
        self.at = start + length + 1;
        Some((start, start + length))
    }

    /// Consumes the field name at the cursor (on its opening quote) when it is exactly the
    /// known field `expected`, and returns its index; `None`, consuming nothing, for any
    /// other name (or when `expected` is past the table). A cheaper test than reading the
    /// name as a string and looking it up, for the field that usually comes next.
    fn name(&mut self, expected: usize) -> Option<usize> {
        let (pattern, mask) = *NAME_PATTERNS.get(expected)?;
        let start = self.at + 1;
        // The name and its closing quote, compared as one 16-byte word; a name is
        // followed by at least `:` and a value, so the 16 bytes are nearly always there.
        let word = u128::from_le_bytes(self.bytes.get(start..start + 16)?.try_into().ok()?);
        if word & mask == pattern {
            self.at = start + FIELDS[expected].len() + 1;
            Some(expected)
        } else {
            None
        }
    }

    /// Consumes digits and returns how many.
    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// Consumes a number of JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    /// What follows it is checked by the caller (a `01` fails there, on the `1`).
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// Consumes `word` (`true`, `false` or `null`), or fails.
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Consumes one scalar value: a string without escapes, a number, `true`, `false` or
    /// `null`. Objects and arrays are left to serde_json.
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }
}

/// [`scan_into`] with the fields returned, for the tests.
#[cfg(test)]
pub(crate) fn scan_fields(json: &str) -> Option<Fields<'_>> {
    let mut fields: Fields<'_> = [None; FIELD_COUNT];
    scan_into(json, &mut fields).map(|()| fields)
}

/// Sets in `fields` (all `None` on entry) the raw JSON text of each known field of `json`,
/// when `json` is one flat object the scanner can decide alone (see the module
/// documentation); `None` otherwise, `fields` then perhaps holding some of them. Measured in
/// issue 12: returning the nine fields by value copied them, 3 % of the parse.
pub(crate) fn scan_into<'a>(json: &'a str, fields: &mut Fields<'a>) -> Option<()> {
    let mut scanner = Scanner {
        bytes: json.as_bytes(),
        at: 0,
    };
    // The field expected next: the one after the last known field in the table's order,
    // the order most producers write (marginstream's generator among them).
    let mut expected = 0;
    scanner.skip_whitespace();
    scanner.eat(b'{')?;
    scanner.skip_whitespace();
    if scanner.peek()? == b'}' {
        scanner.at += 1;
    } else {
        loop {
            if scanner.peek()? != b'"' {
                return None;
            }
            let known = match scanner.name(expected) {
                Some(index) => Some(index),
                None => {
                    let (name_start, name_end) = scanner.string()?;
                    field_index(&scanner.bytes[name_start..name_end])
                }
            };
            scanner.skip_whitespace();
            scanner.eat(b':')?;
            scanner.skip_whitespace();
            let value_start = scanner.at;
            scanner.scalar()?;
            if let Some(index) = known {
                expected = index + 1;
                if fields[index].is_some() {
                    // serde_json's path words the rejection of a repeated field.
                    return None;
                }
                // Both ends are at ASCII bytes (a quote or a value's first and last byte
                // before a delimiter), so the slice is always on character boundaries.
                fields[index] = Some(json.get(value_start..scanner.at)?);
            }
            scanner.skip_whitespace();
            match scanner.peek()? {
                b',' => {
                    scanner.at += 1;
                    scanner.skip_whitespace();
                }
                b'}' => {
                    scanner.at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    scanner.skip_whitespace();
    (scanner.at == scanner.bytes.len()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows that the scanner's names agree with the parser's table, index for index.
    #[test]
    fn field_indexes_follow_the_table() {
        for (index, name) in FIELDS.iter().enumerate() {
            assert_eq!(field_index(name.as_bytes()), Some(index), "{name}");
        }
        assert_eq!(field_index(b"Event_type"), None);
        for (index, name) in FIELDS.iter().enumerate() {
            assert!(
                name.len() < 15,
                "{name} and its quote fit a 16-byte word with a mask"
            );
            let line = format!("\"{name}\":\"value\"}}");
            let mut scanner = Scanner {
                bytes: line.as_bytes(),
                at: 0,
            };
            assert_eq!(scanner.name(index), Some(index), "{name}");
            assert_eq!(scanner.at, name.len() + 2, "{name}");
            let other = (index + 1) % FIELD_COUNT;
            scanner.at = 0;
            assert_eq!(scanner.name(other), None, "{name} is not {}", FIELDS[other]);
            assert_eq!(scanner.at, 0);
        }
        assert_eq!(field_index(b""), None);
    }

    /// Shows that the word-at-a-time search finds the first special byte exactly: every
    /// byte value at every position of a 24-byte run, behind every other byte value.
    #[test]
    fn special_position_matches_the_byte_by_byte_search() {
        for first in 0..=255u8 {
            for second in [b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xff, 0x00] {
                for at in 0..24 {
                    let mut bytes = [b'x'; 24];
                    bytes[at] = first;
                    if at + 1 < bytes.len() {
                        bytes[at + 1] = second;
                    }
                    for end in [at + 1, bytes.len()] {
                        let slice = &bytes[..end];
                        let expected = slice.iter().position(|&byte| is_special(byte));
                        assert_eq!(special_position(slice), expected, "{slice:?}");
                    }
                }
            }
        }
    }

    /// Shows what the scanner takes and what it leaves to serde_json.
    #[test]
    fn takes_flat_objects_and_leaves_the_rest() {
        let fields = scan_fields(
            r#" { "event_type" : "Cost_Event","amount":-1.5e-3,"x":true,"y":null,"z":"q", "category":"" } "#,
        )
        .expect("a flat object");
        assert_eq!(fields[0], Some(r#""Cost_Event""#));
        assert_eq!(fields[4], Some("-1.5e-3"));
        assert_eq!(fields[8], Some(r#""""#));
        assert_eq!(fields[1], None);
        assert_eq!(scan_fields("{}"), Some([None; FIELD_COUNT]));
        for unusual in [
            "",
            "{",
            "[]",
            "{} {}",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":{}}"#,
            r#"{"a":[1]}"#,
            r#"{"a":"\n"}"#,
            "{\"a\":\"\t\"}",
            r#"{"event_type":"a","event_type":"b"}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
        ] {
            assert_eq!(scan_fields(unusual), None, "{unusual:?}");
        }
        // Unknown fields may repeat, as they may for serde_json.
        assert!(scan_fields(r#"{"a":1,"a":2}"#).is_some());
        // Names that begin like the field expected next, and fields in another order.
        let fields = scan_fields(
            r#"{"event_typ":1,"event_type_":2,"event_type":"Cost_Event","customer_id":"c","event_id":"e"}"#,
        )
        .expect("a flat object");
        assert_eq!(fields[0], Some(r#""Cost_Event""#));
        assert_eq!(fields[1], Some(r#""e""#));
        assert_eq!(fields[2], Some(r#""c""#));
        assert_eq!(
            scan_fields(r#"{"event_type":"a","event_id":"b","event_type":"c"}"#),
            None
        );
    }
}
