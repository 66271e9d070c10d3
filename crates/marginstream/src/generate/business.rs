//! The business: customer profiles (tier, margins, costs) and the kinds of events they draw.

#[allow(clippy::wildcard_imports)]
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tier {
    Smb,
    MidMarket,
    Enterprise,
}

/// What an event is, which decides its fields and the daily total it draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Recurring,
    Usage,
    Services,
    OneTime,
    Refund,
    Infrastructure,
    CloudCredit,
    Support,
    SuccessEngineering,
    Implementation,
    Onboarding,
    Excluded,
}

pub(super) const KIND_COUNT: usize = 12;
pub(super) const KINDS: [Kind; KIND_COUNT] = [
    Kind::Recurring,
    Kind::Usage,
    Kind::Services,
    Kind::OneTime,
    Kind::Refund,
    Kind::Infrastructure,
    Kind::CloudCredit,
    Kind::Support,
    Kind::SuccessEngineering,
    Kind::Implementation,
    Kind::Onboarding,
    Kind::Excluded,
];

/// Per mille of a customer's events of each kind, in the order of [`KINDS`]: a third revenue,
/// two thirds costs, most of them infrastructure.
pub(super) const STEADY_WEIGHTS: [u64; KIND_COUNT] =
    [200, 110, 30, 10, 5, 405, 40, 80, 45, 25, 20, 30];
/// The same during a new customer's first [`RAMP_DAYS`]: more Implementation and Onboarding.
pub(super) const RAMP_WEIGHTS: [u64; KIND_COUNT] =
    [200, 110, 30, 10, 5, 310, 40, 80, 45, 80, 60, 30];

pub(super) const fn sum(weights: &[u64; KIND_COUNT]) -> u64 {
    let mut total = 0;
    let mut i = 0;
    while i < KIND_COUNT {
        total += weights[i];
        i += 1;
    }
    total
}
const _: () = assert!(sum(&STEADY_WEIGHTS) == 1_000 && sum(&RAMP_WEIGHTS) == 1_000);

/// Returns the kind whose cumulative weight first exceeds `roll`, which is below the sum of
/// the weights (less that of `Recurring` when `skip_recurring`).
pub(super) fn pick_kind(weights: &[u64; KIND_COUNT], roll: u64, skip_recurring: bool) -> Kind {
    let mut cumulative = 0;
    for (kind, weight) in KINDS.iter().zip(weights) {
        if skip_recurring && *kind == Kind::Recurring {
            continue;
        }
        cumulative += weight;
        if roll < cumulative {
            return *kind;
        }
    }
    unreachable!("the roll is below the sum of the weights")
}

/// The categories of each function: first those of the default taxonomy (contract section 3),
/// repeated to weigh them, then vendor-specific names that only work with an explicit
/// `cost_function`.
pub(super) struct Categories {
    pub(super) function: CostFunction,
    pub(super) taxonomy: &'static [&'static str],
    pub(super) vendor: &'static [&'static str],
}

pub(super) const INFRASTRUCTURE: Categories = Categories {
    function: CostFunction::Infrastructure,
    taxonomy: &[
        "hosting",
        "hosting",
        "hosting",
        "cloud",
        "cloud",
        "third_party_api",
        "third_party_api",
        "payment_processing",
        "payment_processing",
        "delivery_software",
        "infrastructure",
    ],
    vendor: &[
        "aws_ec2",
        "gcp_bigquery",
        "stripe_fees",
        "twilio_sms",
        "datadog",
    ],
};
pub(super) const SUPPORT: Categories = Categories {
    function: CostFunction::Support,
    taxonomy: &["support", "customer_support"],
    vendor: &["zendesk", "support_payroll"],
};
pub(super) const SUCCESS_ENGINEERING: Categories = Categories {
    function: CostFunction::SuccessEngineering,
    taxonomy: &["customer_success", "success_engineering"],
    vendor: &["csm_payroll", "gainsight"],
};
pub(super) const IMPLEMENTATION: Categories = Categories {
    function: CostFunction::Implementation,
    taxonomy: &["implementation", "professional_services"],
    vendor: &["solutions_engineering", "contractor_sow"],
};
pub(super) const ONBOARDING: Categories = Categories {
    function: CostFunction::Onboarding,
    taxonomy: &["onboarding", "training"],
    vendor: &["onboarding_specialists", "lms_licences"],
};
pub(super) const EXCLUDED: Categories = Categories {
    function: CostFunction::Excluded,
    taxonomy: &[
        "r_and_d",
        "sales_and_marketing",
        "g_and_a",
        "stock_based_compensation",
    ],
    vendor: &[
        "rd_payroll",
        "marketing_events",
        "office_rent",
        "rsu_expense",
    ],
};
pub(super) const SHARED_INFRASTRUCTURE: Categories = Categories {
    function: CostFunction::Infrastructure,
    taxonomy: &["hosting", "cloud", "delivery_software"],
    vendor: &["shared_k8s_cluster", "cdn"],
};

/// How a category is capitalised on the wire; tagging is case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Case {
    Lower,
    Capitalized,
    Upper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Category {
    pub(super) name: &'static str,
    pub(super) case: Case,
}

/// One customer's profile, fixed for the whole ledger.
#[derive(Debug, Clone)]
pub(super) struct Customer {
    /// The id as a JSON string literal, quotes and escapes included.
    pub(super) id_json: String,
    /// The first day of activity, an index into the ledger's days; negative for customers
    /// who started before the ledger.
    pub(super) start_day: i64,
    /// Mean events per day, in thousandths.
    pub(super) events_per_day_milli: u64,
    /// The producer's UTC offset, for customers whose timestamps are not in `Z`.
    pub(super) offset_minutes: Option<i16>,
    /// Steady daily total of each kind, in amount units, as a magnitude (refunds and credits
    /// are negated when generated).
    pub(super) daily: [i64; KIND_COUNT],
    /// Daily Implementation and Onboarding added during the first [`RAMP_DAYS`].
    pub(super) ramp_implementation: i64,
    pub(super) ramp_onboarding: i64,
    /// Cloud credits apply before this day.
    pub(super) credit_end_day: i64,
    pub(super) refund_day: Option<i64>,
    /// Steady daily revenue, net of routine refunds.
    pub(super) revenue_daily: i64,
}

/// Returns `low + (high - low) * roll / scale`.
pub(super) fn lerp(low: i64, high: i64, roll: u64, scale: u64) -> i64 {
    low + ((i128::from(high - low) * i128::from(roll)) / i128::from(scale)) as i64
}

/// Returns `amount * basis_points / 10_000`.
pub(super) fn basis_points(amount: i64, basis_points: i64) -> i64 {
    (i128::from(amount) * i128::from(basis_points) / 10_000) as i64
}

/// Writes `text` as a JSON string literal.
pub(super) fn write_json_string(buf: &mut Vec<u8>, text: &str) {
    buf.push(b'"');
    for ch in text.chars() {
        match ch {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                // Control characters other than the named ones, DEL included.
                let code = c as u32;
                let hex = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(hex[(code >> 4) as usize]);
                buf.push(hex[(code & 0xF) as usize]);
            }
            c => {
                let mut utf8 = [0; 4];
                buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

pub(super) fn json_string(text: &str) -> String {
    let mut buf = Vec::with_capacity(text.len() + 2);
    write_json_string(&mut buf, text);
    String::from_utf8(buf).expect("escaping keeps UTF-8 text UTF-8")
}

pub(super) fn customer_profile(
    seed: u64,
    index: u32,
    days: i64,
    events_per_day_milli: u64,
) -> Customer {
    let mut rng = Rng::new(&[seed, STREAM_PROFILE, u64::from(index)]);
    // Every roll is drawn whatever the tier, so that special roles do not shift the others.
    let mut tier = match rng.below(100) {
        0..=59 => Tier::Smb,
        60..=89 => Tier::MidMarket,
        _ => Tier::Enterprise,
    };
    // A product of two uniform rolls leans to the low end of the tier, as ACVs do.
    let acv_roll = rng.below(1_001) * rng.below(1_001);
    let usage_roll = rng.below(1_001);
    let infrastructure_heavy = rng.per_mille(100);
    let infrastructure_roll = rng.below(1_001);
    let support_roll = rng.below(1_001);
    let success_roll = rng.below(1_001);
    let implementation_roll = rng.below(1_001);
    let onboarding_roll = rng.below(1_001);
    let excluded_roll = rng.below(1_001);
    let new_customer = rng.per_mille(150);
    let start_roll = rng.next_u64();
    let mut credits = rng.per_mille(150);
    let credit_roll = rng.below(1_001);
    let credit_end_roll = rng.next_u64();
    let offset_minutes = if rng.per_mille(200) {
        Some(rng.pick(&OFFSETS_MINUTES))
    } else {
        None
    };

    let days_positive = days.max(1) as u64;
    let mut start_day = if new_customer {
        (start_roll % days_positive) as i64
    } else {
        -31 - (start_roll % 970) as i64
    };
    let mut refund_day = None;
    let mut id = format!("cust-{index:05}");
    match index {
        QUOTE_CUSTOMER => tier = Tier::Enterprise,
        BACKSLASH_CUSTOMER => tier = Tier::Smb,
        REFUND_CUSTOMER => {
            tier = Tier::MidMarket;
            start_day = -365;
            refund_day = Some(days * 3 / 5);
        }
        NEW_CUSTOMER => {
            tier = Tier::Enterprise;
            start_day = days / 3;
        }
        CREDIT_CUSTOMER => {
            credits = true;
            start_day = -365;
        }
        _ => {}
    }
    if let Some((_, special)) = SPECIAL_IDS.iter().find(|(i, _)| *i == index) {
        id = (*special).to_owned();
    }

    let (acv_low, acv_high) = match tier {
        Tier::Smb => (1_000, 10_000),
        Tier::MidMarket => (10_000, 50_000),
        Tier::Enterprise => (50_000, 500_000),
    };
    let acv = lerp(acv_low, acv_high, acv_roll, 1_000_000) * UNITS_PER_DOLLAR;
    let recurring = acv / 365;
    let (usage_low, usage_high) = match tier {
        Tier::Smb => (0, 2_000),
        Tier::MidMarket => (0, 4_000),
        Tier::Enterprise => (1_000, 6_000),
    };
    let usage = basis_points(recurring, lerp(usage_low, usage_high, usage_roll, 1_000));
    let services_bp = match tier {
        Tier::Smb => 100,
        Tier::MidMarket => 300,
        Tier::Enterprise => 800,
    };
    let services = basis_points(recurring, services_bp);
    let one_time = basis_points(recurring, 200);
    let refund = basis_points(recurring, 100);
    let revenue = recurring + usage + services + one_time - refund;

    // GM-M between 59 % and 88 % for most, 35-58 % for the infrastructure-heavy tenth.
    let infrastructure_bp = if infrastructure_heavy {
        lerp(4_200, 6_500, infrastructure_roll, 1_000)
    } else {
        lerp(1_200, 4_100, infrastructure_roll, 1_000)
    };
    let infrastructure = basis_points(revenue, infrastructure_bp);
    let credit = if credits {
        basis_points(infrastructure, lerp(3_000, 6_000, credit_roll, 1_000))
    } else {
        0
    };
    // Larger accounts cost less support per dollar but more success engineering.
    let (support_low, support_high, success_low, success_high) = match tier {
        Tier::Smb => (400, 1_000, 0, 150),
        Tier::MidMarket => (200, 600, 150, 450),
        Tier::Enterprise => (150, 400, 300, 700),
    };
    let support = basis_points(
        revenue,
        lerp(support_low, support_high, support_roll, 1_000),
    );
    let success = basis_points(
        revenue,
        lerp(success_low, success_high, success_roll, 1_000),
    );
    let implementation = basis_points(revenue, lerp(20, 200, implementation_roll, 1_000));
    let onboarding = basis_points(revenue, lerp(20, 100, onboarding_roll, 1_000));
    let excluded = basis_points(revenue, lerp(800, 2_500, excluded_roll, 1_000));
    // Implementation in the first month: 1.5 % to 6 % of the ACV, so that a new Enterprise
    // account's first month shows a deep but believable Services Drag.
    let ramp_implementation_bp = match tier {
        Tier::Smb => 150,
        Tier::MidMarket => 400,
        Tier::Enterprise => 600,
    };
    let credit_end_day = if credits {
        let low = days / 4;
        let high = (days * 3 / 4).max(low) + 1;
        low + (credit_end_roll % (high - low) as u64) as i64
    } else {
        i64::MIN
    };
    // Larger accounts have more events. The mean over the tiers, 1.065, makes up for the
    // customers who start during the ledger, so that the ledger has about
    // customers x days x events-per-customer-day events, shared costs included.
    let activity_per_mille = match tier {
        Tier::Smb => 800,
        Tier::MidMarket => 1_250,
        Tier::Enterprise => 2_100,
    };
    Customer {
        id_json: json_string(&id),
        start_day,
        events_per_day_milli: events_per_day_milli * activity_per_mille / 1_000,
        offset_minutes,
        daily: [
            recurring,
            usage,
            services,
            one_time,
            refund,
            infrastructure,
            credit,
            support,
            success,
            implementation,
            onboarding,
            excluded,
        ],
        ramp_implementation: basis_points(acv, ramp_implementation_bp) / RAMP_DAYS,
        ramp_onboarding: basis_points(acv, 100) / RAMP_DAYS,
        credit_end_day,
        refund_day,
        revenue_daily: revenue,
    }
}
