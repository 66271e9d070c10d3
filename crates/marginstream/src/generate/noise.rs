//! Noise: duplicates and bad lines, one for each rejection reason a file can produce.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The reason a bad line is meant to be rejected for (contract section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum BadReason {
    MalformedJson,
    MissingField,
    InvalidField,
    UnknownEventType,
    UnknownCostFunction,
    UntaggedCost,
    UnsupportedCurrency,
    Oversized,
    FutureEvent,
}

impl BadReason {
    /// Returns the reason code of the contract.
    #[cfg(test)]
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            BadReason::MalformedJson => "malformed_json",
            BadReason::MissingField => "missing_field",
            BadReason::InvalidField => "invalid_field",
            BadReason::UnknownEventType => "unknown_event_type",
            BadReason::UnknownCostFunction => "unknown_cost_function",
            BadReason::UntaggedCost => "untagged_cost",
            BadReason::UnsupportedCurrency => "unsupported_currency",
            BadReason::Oversized => "oversized",
            BadReason::FutureEvent => "future_event",
        }
    }
}

/// The reasons taken in turn; `oversized` is kept rare and placed apart (see
/// [`Noise::oversized_due`]). `customer_limit` needs a million customers and is left out.
pub(super) const ROTATION: [BadReason; 8] = [
    BadReason::MalformedJson,
    BadReason::MissingField,
    BadReason::InvalidField,
    BadReason::UnknownEventType,
    BadReason::UnknownCostFunction,
    BadReason::UntaggedCost,
    BadReason::UnsupportedCurrency,
    BadReason::FutureEvent,
];

/// A good line kept for duplicates.
pub(super) struct Remembered {
    pub(super) occurred_ms: i64,
    pub(super) line: Vec<u8>,
}

pub(super) struct Noise {
    pub(super) rng: Rng,
    /// The latest good lines.
    pub(super) recent: VecDeque<Remembered>,
    /// A sample of older good lines, dropped once past the duplicate horizon.
    pub(super) sampled: VecDeque<Remembered>,
    pub(super) bad_lines: u64,
    pub(super) oversized_lines: u64,
    /// The next reason of [`ROTATION`].
    pub(super) rotation: usize,
}

impl Noise {
    pub(super) fn new(plan: &Plan) -> Noise {
        Noise {
            rng: Rng::new(&[plan.seed, STREAM_NOISE]),
            recent: VecDeque::with_capacity(RECENT_LINES),
            sampled: VecDeque::new(),
            bad_lines: 0,
            oversized_lines: 0,
            rotation: 0,
        }
    }

    /// Forgets the good lines kept for duplicates.
    pub(super) fn forget(&mut self) {
        self.recent.clear();
        self.sampled.clear();
    }

    /// Keeps a good line for later duplicates; `good_count` counts good lines so far.
    pub(super) fn remember(&mut self, event: &Event, line: &[u8], good_count: u64) {
        let mut slot = if self.recent.len() == RECENT_LINES {
            self.recent
                .pop_front()
                .expect("a full buffer has a first line")
        } else {
            Remembered {
                occurred_ms: 0,
                line: Vec::with_capacity(line.len()),
            }
        };
        slot.occurred_ms = event.occurred_ms;
        slot.line.clear();
        slot.line.extend_from_slice(line);
        self.recent.push_back(slot);
        if good_count.is_multiple_of(SAMPLE_EVERY) {
            if self.sampled.len() == SAMPLED_LINES_MAX {
                self.sampled.pop_front();
            }
            self.sampled.push_back(Remembered {
                occurred_ms: event.occurred_ms,
                line: line.to_vec(),
            });
        }
    }

    /// Returns an earlier good line to repeat at stream time `now_ms`: mostly one of the
    /// latest few hundred, one time in five an older one, always of an event that occurred
    /// less than [`DUPLICATE_HORIZON_MS`] ago. `None` when there is none.
    pub(super) fn pick_duplicate(&mut self, now_ms: i64) -> Option<&[u8]> {
        let horizon_ms = now_ms - DUPLICATE_HORIZON_MS;
        while self
            .sampled
            .front()
            .is_some_and(|old| old.occurred_ms < horizon_ms)
        {
            self.sampled.pop_front();
        }
        let far = self.rng.below(5) == 0 && !self.sampled.is_empty();
        let far_at = if far {
            let at = self.rng.below(self.sampled.len() as u64) as usize;
            (self.sampled[at].occurred_ms >= horizon_ms).then_some(at)
        } else {
            None
        };
        let original = match far_at {
            Some(at) => &self.sampled[at],
            None if self.recent.is_empty() => return None,
            None => {
                let window = self.recent.len().min(RECENT_PICK) as u64;
                let at = self.recent.len() - 1 - self.rng.below(window) as usize;
                &self.recent[at]
            }
        };
        (original.occurred_ms >= horizon_ms).then_some(original.line.as_slice())
    }

    /// Returns whether the next bad line should be oversized: the first once the ledger has
    /// [`OVERSIZED_LINES_MIN`] lines, then one per [`OVERSIZED_EVERY`] bad lines.
    pub(super) fn oversized_due(&self, lines: u64) -> bool {
        if self.oversized_lines == 0 {
            lines >= OVERSIZED_LINES_MIN
        } else {
            self.bad_lines + 1 >= (self.oversized_lines + 1) * OVERSIZED_EVERY
        }
    }

    /// Writes the next bad line into `line` and returns its reason; `lines` counts the lines
    /// written so far.
    pub(super) fn bad_line(
        &mut self,
        ledger: &Ledger,
        now_ms: i64,
        lines: u64,
        line: &mut Vec<u8>,
    ) -> BadReason {
        let reason = if self.oversized_due(lines) {
            BadReason::Oversized
        } else {
            let reason = ROTATION[self.rotation];
            self.rotation = (self.rotation + 1) % ROTATION.len();
            reason
        };
        self.write_bad(ledger, now_ms, reason, line);
        reason
    }

    /// Returns a valid event near stream time, with a bad-line id: the base that a bad line
    /// breaks in exactly one way.
    pub(super) fn bad_base(&mut self, ledger: &Ledger, now_ms: i64, revenue: bool) -> Event {
        let rng = &mut self.rng;
        let customers = ledger.customers.len() as u64;
        // Without customers there is no revenue, and every base is an unattributed cost.
        let revenue = revenue && customers > 0;
        let customer = if customers > 0 && (revenue || rng.per_mille(700)) {
            Some(rng.below(customers) as u32)
        } else {
            None
        };
        let occurred_ms = (now_ms / SECOND_MS - rng.below(3_600) as i64) * SECOND_MS;
        let occurred_ms = occurred_ms.max(ledger.start_ms);
        let amount = rng.range(1, 100_000) * UNITS_PER_CENT;
        let body = if revenue {
            Body::Revenue(if rng.per_mille(500) {
                RevenueType::Recurring
            } else {
                RevenueType::Usage
            })
        } else {
            let categories = if rng.per_mille(500) {
                &INFRASTRUCTURE
            } else {
                &SUPPORT
            };
            tag(rng, categories)
        };
        Event {
            arrival_ms: occurred_ms,
            seq: self.bad_lines + 1,
            occurred_ms,
            amount,
            scale: 2,
            customer,
            offset_minutes: None,
            body,
            flags: BAD_ID,
        }
    }

    /// Writes one bad line for `reason` into `line`.
    pub(super) fn write_bad(
        &mut self,
        ledger: &Ledger,
        now_ms: i64,
        reason: BadReason,
        line: &mut Vec<u8>,
    ) {
        let revenue_base = match reason {
            BadReason::UnknownCostFunction | BadReason::UntaggedCost => false,
            // Customer-id and revenue-type variants need a revenue event.
            BadReason::MissingField | BadReason::InvalidField => true,
            _ => self.rng.per_mille(500),
        };
        let event = self.bad_base(ledger, now_ms, revenue_base);
        self.bad_lines += 1;
        if reason == BadReason::Oversized {
            self.oversized_lines += 1;
        }
        let mut fields = event_fields(ledger, &event);
        let rng = &mut self.rng;
        match reason {
            BadReason::MalformedJson => {
                write_fields(&fields, line);
                let text = String::from_utf8(std::mem::take(line)).expect("fields are UTF-8");
                let id = field_value(&fields, "event_id");
                let malformed = match rng.below(8) {
                    0 | 1 => {
                        // Truncated, as by a producer that died mid-write.
                        let mut cut = 2 + rng.below(text.len() as u64 - 3) as usize;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text[..cut].to_owned()
                    }
                    2 => format!("[{text}]"),
                    3 => format!("{},}}", &text[..text.len() - 1]),
                    4 => text.replacen("\",\"event_id\"", "\" \"event_id\"", 1),
                    5 => format!(
                        "{{'event_type': 'Cost_Event', 'event_id': '{}'}}",
                        id.trim_matches('"')
                    ),
                    6 => format!(
                        "Revenue_Event,{},2025-12-05T13:07:42Z,12.50,USD",
                        id.trim_matches('"')
                    ),
                    _ => "INFO billing-exporter: flushed 12 events".to_owned(),
                };
                line.clear();
                line.extend_from_slice(malformed.as_bytes());
                return;
            }
            BadReason::MissingField => {
                let (mut key, null) = match rng.below(9) {
                    0 => ("event_type", false),
                    1 => ("event_id", false),
                    2 => ("occurred_at", false),
                    3 => ("occurred_at", true),
                    4 => ("amount", false),
                    5 => ("amount", true),
                    6 => ("currency", false),
                    7 => ("customer_id", false),
                    _ => ("customer_id", true),
                };
                if key == "customer_id" && !event.is_revenue() {
                    // Only a ledger without customers has no revenue base; a cost may omit
                    // its customer.
                    key = "amount";
                }
                if null {
                    set_field(&mut fields, key, "null".to_owned());
                } else {
                    remove_field(&mut fields, key);
                }
            }
            BadReason::InvalidField => {
                let mut stamp = Vec::new();
                write_timestamp(&mut stamp, event.occurred_ms, None);
                let stamp = String::from_utf8(stamp).expect("timestamps are ASCII");
                let amount = field_value(&fields, "amount").trim_matches('"').to_owned();
                let mut variant = rng.below(14);
                if variant == 11 && !event.is_revenue() {
                    // A cost's revenue_type is ignored; break its currency instead.
                    variant = 8;
                }
                let (key, raw) = match variant {
                    0 => (
                        "occurred_at",
                        format!("\"{}\"", stamp.trim_end_matches('Z')),
                    ),
                    1 => (
                        "occurred_at",
                        format!("\"{}\"", stamp.replacen('T', " ", 1).trim_end_matches('Z')),
                    ),
                    2 => (
                        "occurred_at",
                        format!("\"{}-13{}\"", &stamp[..4], &stamp[7..]),
                    ),
                    3 => ("occurred_at", (event.occurred_ms / SECOND_MS).to_string()),
                    4 => ("amount", format!("\"{}\"", amount.replace('.', ","))),
                    5 => ("amount", format!("\"${amount}\"")),
                    6 => ("amount", format!("\"{amount} USD\"")),
                    7 => ("amount", "true".to_owned()),
                    8 => (
                        "currency",
                        rng.pick(&["\"usd\"", "\"US$\"", "\"Dollar\"", "840"])
                            .to_owned(),
                    ),
                    9 => {
                        let id = format!(
                            "cust-{:05}{}",
                            rng.below(100),
                            rng.pick(&['\u{7}', '\t', '\u{1b}'])
                        );
                        ("customer_id", json_string(&id))
                    }
                    10 => ("customer_id", "\"\"".to_owned()),
                    11 => (
                        "revenue_type",
                        rng.pick(&[
                            "\"gift\"",
                            "\"subscription\"",
                            "\"Recurring\"",
                            "\"one-time\"",
                        ])
                        .to_owned(),
                    ),
                    12 => {
                        let id = field_value(&fields, "event_id").trim_matches('"');
                        ("event_id", format!("\"{id}-{}\"", "x".repeat(130)))
                    }
                    _ => ("customer_id", format!("\"{}\"", "c".repeat(129))),
                };
                set_field(&mut fields, key, raw);
            }
            BadReason::UnknownEventType => {
                let raw = rng.pick(&[
                    "\"Refund_Event\"",
                    "\"revenue_event\"",
                    "\"Invoice_Event\"",
                    "\"Cost\"",
                    "\"\"",
                    "7",
                ]);
                set_field(&mut fields, "event_type", raw.to_owned());
            }
            BadReason::UnknownCostFunction => {
                let raw = rng.pick(&[
                    "\"Marketing\"",
                    "\"COGS\"",
                    "\"Hosting\"",
                    "\"Customer_Success\"",
                    "\"Infra\"",
                ]);
                set_field(&mut fields, "cost_function", raw.to_owned());
            }
            BadReason::UntaggedCost => {
                remove_field(&mut fields, "cost_function");
                match rng.below(5) {
                    0 => remove_field(&mut fields, "category"),
                    1 => set_field(&mut fields, "category", "\"office_snacks\"".to_owned()),
                    2 => set_field(&mut fields, "category", "\"Misc_Expense\"".to_owned()),
                    _ => set_field(&mut fields, "category", "\"mystery_spend\"".to_owned()),
                }
            }
            BadReason::UnsupportedCurrency => {
                let raw = if rng.per_mille(667) {
                    "\"JPY\""
                } else {
                    "\"GBP\""
                };
                set_field(&mut fields, "currency", raw.to_owned());
            }
            BadReason::FutureEvent => {
                let time = OffsetDateTime::from_unix_timestamp(event.occurred_ms / SECOND_MS)
                    .expect("bad lines lie within the ledger's years");
                // 29 February does not exist in 2999.
                let time = time
                    .replace_year(2999)
                    .or_else(|_| time.replace_day(28).and_then(|t| t.replace_year(2999)))
                    .expect("every day but 29 February exists in 2999");
                let mut stamp = vec![b'"'];
                write_timestamp(&mut stamp, time.unix_timestamp() * SECOND_MS, None);
                stamp.push(b'"');
                let stamp = String::from_utf8(stamp).expect("timestamps are ASCII");
                set_field(&mut fields, "occurred_at", stamp);
            }
            BadReason::Oversized => {
                // Otherwise valid: only its size is wrong.
                set_field(
                    &mut fields,
                    "padding",
                    format!("\"{}\"", "x".repeat(OVERSIZED_PADDING_BYTES)),
                );
            }
        }
        write_fields(&fields, line);
    }
}
