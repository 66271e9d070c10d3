//! The live part of `--follow`: the ledger's next days, stamped with the wall clock, and the
//! swing of one customer's margin.
//!
//! After the history, the ledger goes on with days `days`, `days + 1`, ... drawn exactly as
//! the history's days are (the same random streams, keyed by day), so the live content is
//! deterministic for a seed; only the times come from the clock. A live day is written in
//! seconds or minutes at `--rate`, not in a day: its events get the time at which they are
//! written (less their lateness, for the 1 % that arrive late), so the windows fill faster
//! than in real time and the ratios, not the amounts, are what to watch. Repeated lines of
//! the live part repeat live lines only, so that the content does not depend on when it
//! starts.
//!
//! The swing: after `--swing-after` times `--rate` live events (so about `--swing-after` into
//! the live part), [`SWING_CUSTOMER`] gets an infrastructure bill worth [`SWING_BILL_DAYS`]
//! days of its revenue, and from the next day on its infrastructure costs are
//! [`SWING_INFRASTRUCTURE_FACTOR`] times higher (a runaway workload).
//! The bill makes its 7-day GM-M fall at once, by far more than the 5 points that
//! `MarginstreamCustomerGmMarketDrop` alerts on (about 35 points when the window holds a
//! week, still over 10 with three weeks' worth of live days in it); the lasting costs keep it
//! down while the live days pile up.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The customer whose margin swings in the live part: `acme "beta"`, an Enterprise account in
/// every ledger (by index; it exists when `--customers` exceeds it). Its history is untouched.
pub const SWING_CUSTOMER: u32 = QUOTE_CUSTOMER;
/// The bill at the swing is worth this many days of the customer's revenue.
pub(super) const SWING_BILL_DAYS: i64 = 3;
/// From the swing on, the customer's daily infrastructure cost is multiplied by this.
pub(super) const SWING_INFRASTRUCTURE_FACTOR: i64 = 3;
/// `--swing-after` when not given.
pub(super) const SWING_AFTER_DEFAULT: &str = "2m";

/// Where the live part stands.
#[derive(Debug, Clone)]
pub(super) struct Live {
    /// Good events handed out since the live part began.
    pub(super) events: u64,
    /// The swing comes when `events` reaches this.
    pub(super) swing_after_events: u64,
    pub(super) swung: bool,
}

impl Ledger {
    /// Returns whether the history is over and the ledger is in its live part.
    pub(super) fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Starts the live part, once the history (and its late events) is all handed out: from
    /// now on, days are generated without end.
    pub(super) fn go_live(&mut self, plan: &Plan) {
        debug_assert!(self.live.is_none(), "the live part starts once");
        debug_assert!(self.ready.is_empty() && self.pending.is_empty());
        self.days = i64::MAX;
        self.live = Some(Live {
            events: 0,
            swing_after_events: plan.swing_after_events,
            swung: false,
        });
    }

    /// Applies the swing once `--swing-after`'s worth of live events are handed out: the
    /// bill becomes the next event, and the customer's later days cost more. Called before
    /// each event is handed out.
    pub(super) fn swing_if_due(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if live.swung || live.events < live.swing_after_events {
            return;
        }
        live.swung = true;
        let index = SWING_CUSTOMER as usize;
        let Some(customer) = self.customers.get_mut(index) else {
            return;
        };
        // From the next day generated on; the day being handed out keeps its costs.
        customer.daily[Kind::Infrastructure as usize] *= SWING_INFRASTRUCTURE_FACTOR;
        let bill = customer.revenue_daily * SWING_BILL_DAYS;
        // Its own stream: the bill changes no other draw.
        let mut rng = Rng::new(&[self.seed, STREAM_SWING]);
        let day_start_ms = self.start_ms + self.day * DAY_MS;
        self.next_seq += 1;
        let mut event = draw_event(
            &mut rng,
            self.next_seq,
            day_start_ms,
            Some((SWING_CUSTOMER, &self.customers[index])),
            Kind::Infrastructure,
            bill,
        );
        // On time (its stamp is the clock's), in cents, tagged explicitly.
        event.arrival_ms = event.occurred_ms;
        event.scale = 2;
        event.amount = round_amount(bill, UNITS_PER_CENT);
        event.body = Body::Cost {
            function: Some(CostFunction::Infrastructure),
            category: Some(Category {
                name: "aws_ec2",
                case: Case::Lower,
            }),
        };
        self.ready.push_front(event);
    }
}

/// Returns a live event stamped at `now_ms`: it arrives now, and occurred now less its
/// lateness.
pub(super) fn restamp(mut event: Event, now_ms: i64) -> Event {
    let lateness_ms = event.arrival_ms - event.occurred_ms;
    debug_assert!((0..=LATE_MAX_MS).contains(&lateness_ms));
    event.arrival_ms = now_ms;
    event.occurred_ms = now_ms - lateness_ms;
    event
}
