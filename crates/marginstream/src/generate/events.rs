//! Events: drawing each customer-day's events and the ledger that yields them in order of arrival.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Flags of an [`Event`].
pub(super) const AMOUNT_AS_NUMBER: u8 = 1;
pub(super) const NULL_CUSTOMER: u8 = 1 << 1;
pub(super) const OMIT_REVENUE_TYPE: u8 = 1 << 2;
pub(super) const EXTRA_SOURCE: u8 = 1 << 3;
pub(super) const EXTRA_META: u8 = 1 << 4;
/// The event id is that of a bad line, `evt-<seed>-b<n>`, never a good event's.
pub(super) const BAD_ID: u8 = 1 << 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    Revenue(RevenueType),
    Cost {
        function: Option<CostFunction>,
        category: Option<Category>,
    },
}

/// One event before formatting.
#[derive(Debug, Clone, Copy)]
pub(super) struct Event {
    /// When the event reaches the ledger: `occurred_ms`, or later for a late event.
    pub(super) arrival_ms: i64,
    /// The event's number, unique in the ledger: `evt-<seed>-<seq>`.
    pub(super) seq: u64,
    pub(super) occurred_ms: i64,
    /// Amount units, signed.
    pub(super) amount: i64,
    /// Decimals printed: 2 or 4.
    pub(super) scale: u8,
    /// Index into the customers; `None` for an unattributed cost.
    pub(super) customer: Option<u32>,
    /// `None` prints `Z`.
    pub(super) offset_minutes: Option<i16>,
    pub(super) body: Body,
    pub(super) flags: u8,
}

impl Event {
    pub(super) fn is_revenue(&self) -> bool {
        matches!(self.body, Body::Revenue(_))
    }
}

/// Returns `amount` rounded half away from zero to a multiple of `step`, and never zero.
pub(super) fn round_amount(amount: i64, step: i64) -> i64 {
    let rounded = ((amount.abs() + step / 2) / step * step).max(step);
    if amount < 0 {
        -rounded
    } else {
        rounded
    }
}

/// Returns the tags of a cost: half the time an explicit `cost_function` (with no category, a
/// taxonomy category or a vendor category), otherwise only a taxonomy category, one time in
/// five not in lower case.
pub(super) fn tag(rng: &mut Rng, categories: &Categories) -> Body {
    if rng.per_mille(500) {
        let category = match rng.below(4) {
            0 | 1 => None,
            2 => Some(rng.pick(categories.taxonomy)),
            _ => Some(rng.pick(categories.vendor)),
        };
        Body::Cost {
            function: Some(categories.function),
            category: category.map(|name| Category {
                name,
                case: Case::Lower,
            }),
        }
    } else {
        let name = rng.pick(categories.taxonomy);
        let case = match rng.below(10) {
            0 => Case::Capitalized,
            1 => Case::Upper,
            _ => Case::Lower,
        };
        Body::Cost {
            function: None,
            category: Some(Category { name, case }),
        }
    }
}

/// Draws the time, offset, fields and tags of one event of `kind` worth `magnitude` units.
pub(super) fn draw_event(
    rng: &mut Rng,
    seq: u64,
    day_start_ms: i64,
    customer: Option<(u32, &Customer)>,
    kind: Kind,
    magnitude: i64,
) -> Event {
    let mut occurred_ms = day_start_ms + rng.below(86_400) as i64 * SECOND_MS;
    if rng.per_mille(30) {
        occurred_ms += rng.below(1_000) as i64;
    }
    let arrival_ms = if rng.below(PER_MILLION) < LATE_PPM {
        occurred_ms + rng.range(LATE_MIN_MS, LATE_MAX_MS + 1)
    } else {
        occurred_ms
    };
    let home_offset = customer.and_then(|(_, c)| c.offset_minutes);
    let offset_minutes = match home_offset {
        Some(offset) if rng.per_mille(750) => Some(offset),
        _ if rng.per_mille(20) => Some(rng.pick(&OFFSETS_MINUTES)),
        _ => None,
    };
    let mut flags = 0;
    if rng.per_mille(100) {
        flags |= AMOUNT_AS_NUMBER;
    }
    match rng.below(100) {
        0..=4 => flags |= EXTRA_SOURCE,
        5..=6 => flags |= EXTRA_META,
        _ => {}
    }
    let fine = rng.per_mille(500);
    let (body, scale, sign) = match kind {
        Kind::Recurring => {
            if rng.per_mille(180) {
                flags |= OMIT_REVENUE_TYPE;
            }
            (Body::Revenue(RevenueType::Recurring), 2, 1)
        }
        Kind::Usage => (
            Body::Revenue(RevenueType::Usage),
            if fine { 4 } else { 2 },
            1,
        ),
        Kind::Services => (Body::Revenue(RevenueType::Services), 2, 1),
        Kind::OneTime => (Body::Revenue(RevenueType::OneTime), 2, 1),
        Kind::Refund => {
            let revenue_type = if rng.per_mille(700) {
                RevenueType::Recurring
            } else {
                RevenueType::Usage
            };
            (Body::Revenue(revenue_type), 2, -1)
        }
        Kind::Infrastructure => {
            let categories = if customer.is_some() {
                &INFRASTRUCTURE
            } else {
                &SHARED_INFRASTRUCTURE
            };
            let scale = if rng.per_mille(330) { 4 } else { 2 };
            (tag(rng, categories), scale, 1)
        }
        Kind::CloudCredit => {
            // Credits always keep their category, so that they stay visible on their own.
            let function = rng.per_mille(500).then_some(CostFunction::Infrastructure);
            let case = if rng.per_mille(100) {
                Case::Capitalized
            } else {
                Case::Lower
            };
            let category = Some(Category {
                name: "cloud_credit",
                case,
            });
            (Body::Cost { function, category }, 2, -1)
        }
        Kind::Support => (tag(rng, &SUPPORT), 2, 1),
        Kind::SuccessEngineering => (tag(rng, &SUCCESS_ENGINEERING), 2, 1),
        Kind::Implementation => (tag(rng, &IMPLEMENTATION), 2, 1),
        Kind::Onboarding => (tag(rng, &ONBOARDING), 2, 1),
        Kind::Excluded => (tag(rng, &EXCLUDED), 2, 1),
    };
    if customer.is_none() && rng.per_mille(500) {
        flags |= NULL_CUSTOMER;
    }
    let step = if scale == 4 { 1 } else { UNITS_PER_CENT };
    Event {
        arrival_ms,
        seq,
        occurred_ms,
        amount: sign * round_amount(magnitude, step),
        scale,
        customer: customer.map(|(index, _)| index),
        offset_minutes,
        body,
        flags,
    }
}

/// Returns the amount of one event: the daily total divided by the expected number of events
/// of its kind per day, times a jitter in per mille around 1. The kind has `weight` out of
/// `total_weight`, among `events_per_day_milli` thousandths of events a day.
pub(super) fn event_amount(
    daily: i64,
    weight: u64,
    total_weight: u64,
    events_per_day_milli: u64,
    jitter_per_mille: i64,
) -> i64 {
    let expected = i128::from(weight) * i128::from(events_per_day_milli.max(1));
    (i128::from(daily) * i128::from(total_weight) * i128::from(jitter_per_mille) / expected) as i64
}

/// The good events, generated a day at a time and handed out in order of arrival.
pub(super) struct Ledger {
    pub(super) seed: u64,
    pub(super) days: i64,
    pub(super) start_ms: i64,
    pub(super) customers: Vec<Customer>,
    /// Daily revenue of the portfolio, the base of the shared costs.
    pub(super) portfolio_revenue_daily: i64,
    pub(super) shared_events_per_day: u64,
    /// The next day to generate.
    pub(super) day: i64,
    pub(super) next_seq: u64,
    /// Generated events not yet due: sorted by arrival after each day.
    pub(super) pending: Vec<Event>,
    /// Events due, in order of arrival.
    pub(super) ready: VecDeque<Event>,
    /// The live part of `--follow`, once the history is over.
    pub(super) live: Option<Live>,
}

impl Ledger {
    pub(super) fn new(plan: &Plan) -> Ledger {
        let customers: Vec<Customer> = (0..plan.customers)
            .map(|index| {
                customer_profile(
                    plan.seed,
                    index,
                    plan.days,
                    plan.events_per_customer_day_milli,
                )
            })
            .collect();
        let portfolio_revenue_daily = customers.iter().map(|c| c.revenue_daily).sum();
        let customer_events_per_day: u64 = customers
            .iter()
            .map(|c| c.events_per_day_milli)
            .sum::<u64>()
            / 1_000;
        Ledger {
            seed: plan.seed,
            // No events per customer means no ledger at all, not one of shared costs only.
            days: if plan.events_per_customer_day_milli == 0 {
                0
            } else {
                plan.days
            },
            start_ms: plan.start_ms,
            customers,
            portfolio_revenue_daily,
            shared_events_per_day: (customer_events_per_day / SHARED_EVENTS_DIVISOR)
                .max(SHARED_EVENTS_PER_DAY_MIN),
            day: 0,
            next_seq: 0,
            pending: Vec::new(),
            ready: VecDeque::new(),
            live: None,
        }
    }

    /// Returns the next good event in order of arrival, or `None` at the end of the ledger.
    pub(super) fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.live.is_some() {
                self.swing_if_due();
            }
            if let Some(event) = self.ready.pop_front() {
                if let Some(live) = self.live.as_mut() {
                    live.events += 1;
                }
                return Some(event);
            }
            if self.day < self.days {
                self.generate_day();
                let day_end_ms = self.start_ms + (self.day + 1) * DAY_MS;
                self.pending
                    .sort_unstable_by_key(|event| (event.arrival_ms, event.seq));
                let due = self.pending.partition_point(|e| e.arrival_ms < day_end_ms);
                self.ready.extend(self.pending.drain(..due));
                self.day += 1;
            } else if self.pending.is_empty() {
                return None;
            } else {
                // Late events of the last day still arrive, after the end of the ledger.
                self.ready.extend(self.pending.drain(..));
            }
        }
    }

    /// Appends the events of day `self.day` to `pending`.
    pub(super) fn generate_day(&mut self) {
        let day = self.day;
        let day_start_ms = self.start_ms + day * DAY_MS;
        let Ledger {
            seed,
            customers,
            pending,
            next_seq,
            ..
        } = self;
        let mut next = || {
            *next_seq += 1;
            *next_seq
        };
        for (index, customer) in customers.iter().enumerate() {
            if day < customer.start_day {
                continue;
            }
            let index = index as u32;
            let mut rng = Rng::new(&[*seed, STREAM_CUSTOMER_DAY, u64::from(index), day as u64]);
            let ramp = day - customer.start_day < RAMP_DAYS;
            let weights = if ramp { &RAMP_WEIGHTS } else { &STEADY_WEIGHTS };
            let credits = day < customer.credit_end_day;
            // Busy and quiet days: between half and one and a half times the mean.
            let today_milli = customer.events_per_day_milli * rng.range(500, 1_501) as u64 / 1_000;
            let count = today_milli / 1_000 + u64::from(rng.below(1_000) < today_milli % 1_000);
            // A customer with two events a day or more recognises its subscription revenue
            // every day in one event in the first ten minutes (a nightly billing run), so that
            // every 24h window of whole hours has exactly one; the other events are drawn from
            // the other kinds. The busy-day factor is at least one half, so such a customer
            // always has at least one event.
            let daily_recurring = customer.events_per_day_milli >= 2_000;
            let (others_milli, others_weight) = if daily_recurring {
                (
                    customer.events_per_day_milli - 1_000,
                    1_000 - weights[Kind::Recurring as usize],
                )
            } else {
                (customer.events_per_day_milli, 1_000)
            };
            for i in 0..count {
                if daily_recurring && i == 0 {
                    let magnitude =
                        customer.daily[Kind::Recurring as usize] * rng.range(950, 1_051) / 1_000;
                    let mut event = draw_event(
                        &mut rng,
                        next(),
                        day_start_ms,
                        Some((index, customer)),
                        Kind::Recurring,
                        magnitude,
                    );
                    event.occurred_ms = day_start_ms + rng.below(600) as i64 * SECOND_MS;
                    event.arrival_ms = event.occurred_ms;
                    pending.push(event);
                    continue;
                }
                let mut kind = pick_kind(weights, rng.below(others_weight), daily_recurring);
                let mut weight = weights[kind as usize];
                if !credits && matches!(kind, Kind::CloudCredit | Kind::Infrastructure) {
                    // Without credits their share of events goes to infrastructure, whose
                    // expected daily total stays the same.
                    kind = Kind::Infrastructure;
                    weight = weights[Kind::Infrastructure as usize]
                        + weights[Kind::CloudCredit as usize];
                }
                let mut daily = customer.daily[kind as usize];
                if ramp {
                    daily += match kind {
                        Kind::Implementation => customer.ramp_implementation,
                        Kind::Onboarding => customer.ramp_onboarding,
                        _ => 0,
                    };
                }
                let jitter = rng.range(500, 1_501);
                let magnitude = event_amount(daily, weight, others_weight, others_milli, jitter);
                let event = draw_event(
                    &mut rng,
                    next(),
                    day_start_ms,
                    Some((index, customer)),
                    kind,
                    magnitude,
                );
                pending.push(event);
            }
            if customer.refund_day == Some(day) {
                let each = customer.revenue_daily * REFUND_DAYS_OF_REVENUE / REFUND_EVENTS;
                for _ in 0..REFUND_EVENTS {
                    let magnitude = each * rng.range(900, 1_101) / 1_000;
                    let mut event = draw_event(
                        &mut rng,
                        next(),
                        day_start_ms,
                        Some((index, customer)),
                        Kind::Refund,
                        magnitude,
                    );
                    // A credit note on the subscription, on time.
                    event.body = Body::Revenue(RevenueType::Recurring);
                    event.arrival_ms = event.occurred_ms;
                    pending.push(event);
                }
            }
        }
        if self.portfolio_revenue_daily > 0 {
            let mut rng = Rng::new(&[self.seed, STREAM_SHARED_DAY, day as u64]);
            let count = self.shared_events_per_day;
            for _ in 0..count {
                // Shared hosting 3 %, support tooling 1 % and overheads 25 % of revenue.
                let (kind, weight, total_bp) = match rng.below(10) {
                    0..=3 => (Kind::Infrastructure, 400, 300),
                    4 => (Kind::Support, 100, 100),
                    _ => (Kind::Excluded, 500, 2_500),
                };
                let daily = basis_points(self.portfolio_revenue_daily, total_bp);
                let jitter = rng.range(500, 1_501);
                let magnitude = event_amount(daily, weight, 1_000, count * 1_000, jitter);
                let seq = {
                    self.next_seq += 1;
                    self.next_seq
                };
                let event = draw_event(&mut rng, seq, day_start_ms, None, kind, magnitude);
                self.pending.push(event);
            }
        }
    }
}
