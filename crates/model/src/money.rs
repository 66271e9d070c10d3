//! Exact money: decimal parsing, per-window figures and the three margin ratios
//! (contract section 5).
//!
//! Rounding happens at exactly three named points, all documented in `docs/metrics.md`:
//! 1. Currency conversion: `amount × rate` is exact when the product fits in 28 significant
//!    digits, otherwise rounded half-even to 28 digits (`rust_decimal` multiplication).
//! 2. Ratios: each quotient is rounded half-even to [`RATIO_SCALE`] decimal places, far below
//!    an `f64`'s resolution (fewer for a ratio beyond 10 integer digits, so that 28 digits
//!    hold it). GM-O is then computed as GM-M − drag, so the bridge GM-M − GM-O = drag holds
//!    exactly in decimal.
//! 3. Exposition: the exposition writes the exact decimal, and the scraper's correctly
//!    rounding parser turns it into the nearest `f64` ([`to_f64`] gives the same value).

use rust_decimal::Decimal;

use crate::event::CostFunction;

/// Decimal places kept in a ratio before it is converted to `f64`.
pub const RATIO_SCALE: u32 = 18;

/// The most significant digits an amount may have (contract section 1).
pub const AMOUNT_DIGITS_MAX: usize = 28;

/// Where an applied amount is summed: revenue or one of the cost functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Line {
    /// Revenue.
    Revenue,
    /// A cost tagged with its function.
    Cost(CostFunction),
}

impl Line {
    /// Returns the index of this line in [`Figures`], or `None` for `Excluded` costs, which
    /// count in no margin and are not summed.
    pub const fn slot(self) -> Option<usize> {
        match self {
            Line::Revenue => Some(0),
            Line::Cost(CostFunction::Infrastructure) => Some(1),
            Line::Cost(CostFunction::Support) => Some(2),
            Line::Cost(CostFunction::SuccessEngineering) => Some(3),
            Line::Cost(CostFunction::Implementation) => Some(4),
            Line::Cost(CostFunction::Onboarding) => Some(5),
            Line::Cost(CostFunction::Excluded) => None,
        }
    }
}

/// Number of summed lines in [`Figures`]: revenue and the five margin cost functions.
pub const SLOTS: usize = 6;

/// Revenue and the five margin costs of one customer (or the portfolio) over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Figures(pub [Decimal; SLOTS]);

/// The three ratios of one [`Figures`], exact decimals rounded to [`RATIO_SCALE`] places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratios {
    /// GM-M = (Revenue − Infrastructure) / Revenue.
    pub gm_market: Decimal,
    /// GM-O = GM-M − Services Drag.
    pub gm_operating: Decimal,
    /// Services Drag = (Support + Success Engineering + Implementation + Onboarding) / Revenue.
    pub services_drag: Decimal,
}

impl Figures {
    /// Returns the revenue.
    pub fn revenue(&self) -> Decimal {
        self.0[0]
    }

    /// Returns the cost of one function; zero for `Excluded`, which is not summed.
    pub fn cost(&self, function: CostFunction) -> Decimal {
        Line::Cost(function)
            .slot()
            .map_or(Decimal::ZERO, |slot| self.0[slot])
    }

    /// Returns `true` when every line is zero.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(Decimal::is_zero)
    }

    /// Returns these figures plus `other`, or `None` if a sum overflows.
    pub fn checked_add(&self, other: &Figures) -> Option<Figures> {
        let mut out = *self;
        for (sum, add) in out.0.iter_mut().zip(other.0.iter()) {
            *sum = sum.checked_add(*add)?;
        }
        Some(out)
    }

    /// Returns the three ratios, or `None` while revenue is zero or negative (the ratio
    /// series are then absent) or in the unreachable-in-practice case of a quotient beyond
    /// the decimal range.
    pub fn ratios(&self) -> Option<Ratios> {
        let revenue = self.revenue();
        if revenue <= Decimal::ZERO {
            return None;
        }
        let services = self.0[2]
            .checked_add(self.0[3])?
            .checked_add(self.0[4])?
            .checked_add(self.0[5])?;
        let mut services_drag = ratio(services, revenue)?;
        let mut gm_market = ratio(revenue.checked_sub(self.0[1])?, revenue)?;
        // A ratio beyond 10 integer digits cannot keep 18 places in 28 digits, and then
        // GM-M − drag would be rounded. Both are rounded to the same fewer places instead, so
        // that the subtraction is exact and so is the bridge GM-M − GM-O = drag.
        let integer_digits = integer_digits(gm_market).max(integer_digits(services_drag));
        let places = RATIO_SCALE.min(28u32.saturating_sub(integer_digits));
        if places < RATIO_SCALE {
            services_drag = services_drag.round_dp(places);
            gm_market = gm_market.round_dp(places);
        }
        let gm_operating = gm_market.checked_sub(services_drag)?;
        Some(Ratios {
            gm_market,
            gm_operating,
            services_drag,
        })
    }
}

/// Returns `true` when `value` has more than `limit` digits before the decimal point:
/// `integer_digits(value) > limit`, with one comparison of the mantissa against a power of
/// ten instead of a 128-bit logarithm (the exactness check of every addition makes it).
pub fn integer_digits_exceed(value: Decimal, limit: u32) -> bool {
    // integer_digits > limit <=> digits(mantissa) - scale > limit
    // <=> |mantissa| >= 10^(limit + scale); a mantissa is below 2^96 < 10^29.
    const POWERS: [u128; 29] = {
        let mut powers = [1u128; 29];
        let mut i = 1;
        while i < 29 {
            powers[i] = powers[i - 1] * 10;
            i += 1;
        }
        powers
    };
    let exponent = limit.saturating_add(value.scale()) as usize;
    exponent < POWERS.len() && value.mantissa().unsigned_abs() >= POWERS[exponent]
}

/// Returns the number of digits before the decimal point of `value`, 0 when `|value| < 1`.
pub fn integer_digits(value: Decimal) -> u32 {
    // Digits of the mantissa minus the places after the point: no 128-bit division.
    value
        .mantissa()
        .unsigned_abs()
        .checked_ilog10()
        .map_or(0, |digits| (digits + 1).saturating_sub(value.scale()))
}

/// Returns `numerator / denominator` rounded half-even to [`RATIO_SCALE`] places.
///
/// When both fit, the quotient is computed exactly in 128-bit integers and rounded once;
/// otherwise through `rust_decimal`'s 28-digit division, then rounded.
fn ratio(numerator: Decimal, denominator: Decimal) -> Option<Decimal> {
    if let Some(value) = integer_ratio(numerator, denominator) {
        return Some(value);
    }
    Some(numerator.checked_div(denominator)?.round_dp(RATIO_SCALE))
}

fn integer_ratio(numerator: Decimal, denominator: Decimal) -> Option<Decimal> {
    // Bring both to one scale: value = mantissa / 10^scale.
    let (mut n, n_scale) = (numerator.mantissa(), numerator.scale());
    let (mut d, d_scale) = (denominator.mantissa(), denominator.scale());
    if n_scale < d_scale {
        n = n.checked_mul(10i128.checked_pow(d_scale - n_scale)?)?;
    } else {
        d = d.checked_mul(10i128.checked_pow(n_scale - d_scale)?)?;
    }
    if d <= 0 {
        return None;
    }
    let scaled = n.checked_mul(10i128.pow(RATIO_SCALE))?;
    let (mut q, r) = (scaled / d, scaled % d);
    // Round half to even on the exact remainder.
    let twice = r.unsigned_abs() * 2;
    let d_abs = d.unsigned_abs();
    if twice > d_abs || (twice == d_abs && q % 2 != 0) {
        q += if scaled < 0 { -1 } else { 1 };
    }
    Decimal::try_from_i128_with_scale(q, RATIO_SCALE).ok()
}

/// Returns `a × b` if the product is exact, `None` if it would be rounded or overflow.
pub fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let product = a.checked_mul(b)?;
    if a.scale() + b.scale() <= product.scale() {
        return Some(product);
    }
    // The scale was reduced to fit: exact only if what was dropped was trailing zeros.
    let (a_m, b_m) = (a.mantissa(), b.mantissa());
    let exact = a_m.checked_mul(b_m).and_then(|m| {
        let dropped = a.scale() + b.scale() - product.scale();
        let unit = 10i128.checked_pow(dropped)?;
        (m % unit == 0 && m / unit == product.mantissa()).then_some(())
    });
    exact.map(|()| product)
}

/// Parses an amount: an optional `-`, digits, an optional fraction and an optional exponent
/// (`1234.5600`, `-12`, `1.5e3`), with at most 28 significant digits and 28 decimal places.
///
/// Trailing zeros of the fraction are not significant. The result is exact.
pub fn parse_decimal(text: &str) -> Result<Decimal, &'static str> {
    let bytes = text.as_bytes();
    let (negative, rest) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 {
        return Err("not a decimal number");
    }
    let (int_digits, mut rest) = rest.split_at(int_len);
    let mut frac_digits: &[u8] = &[];
    if let Some((b'.', after)) = rest.split_first() {
        let frac_len = after.iter().take_while(|b| b.is_ascii_digit()).count();
        if frac_len == 0 {
            return Err("not a decimal number");
        }
        frac_digits = &after[..frac_len];
        rest = &after[frac_len..];
    }
    let mut exponent: i64 = 0;
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let (exp_negative, digits) = match after.split_first() {
            Some((b'-', d)) => (true, d),
            Some((b'+', d)) => (false, d),
            _ => (false, after),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err("not a decimal number");
        }
        if digits.len() > 6 {
            return Err("exponent out of range");
        }
        let magnitude: i64 = digits
            .iter()
            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'));
        exponent = if exp_negative { -magnitude } else { magnitude };
        rest = &[];
    }
    if !rest.is_empty() {
        return Err("not a decimal number");
    }

    // The significant digits run from the first non-zero digit to `end`; `scale` places are
    // after the point. No allocation: this runs for every event.
    let total = int_digits.len() + frac_digits.len();
    let digit = |index: usize| {
        if index < int_digits.len() {
            int_digits[index]
        } else {
            frac_digits[index - int_digits.len()]
        }
    };
    let Some(first) = (0..total).find(|&index| digit(index) != b'0') else {
        return Ok(Decimal::ZERO);
    };
    let mut scale = frac_digits.len() as i64 - exponent;
    let mut end = total;
    // Trailing zeros of the fraction are not significant.
    while scale > 0 && digit(end - 1) == b'0' {
        end -= 1;
        scale -= 1;
    }
    let mut significant = end - first;
    if significant > AMOUNT_DIGITS_MAX {
        return Err("more than 28 significant digits");
    }
    let mut mantissa = (first..end).fold(0i128, |acc, index| {
        acc * 10 + i128::from(digit(index) - b'0')
    });
    if scale < 0 {
        let zeros = usize::try_from(-scale).unwrap_or(usize::MAX);
        significant = significant.saturating_add(zeros);
        if significant > AMOUNT_DIGITS_MAX {
            return Err("out of the decimal range");
        }
        mantissa *= 10i128.pow(zeros as u32);
        scale = 0;
    }
    if scale > 28 {
        return Err("more than 28 decimal places");
    }
    let signed = if negative { -mantissa } else { mantissa };
    // At most 28 digits and scale at most 28: always representable.
    Decimal::try_from_i128_with_scale(signed, scale as u32).map_err(|_| "out of the decimal range")
}

/// Exact powers of ten representable in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Converts a decimal to the nearest `f64` (correctly rounded): the one rounding of exposition.
pub fn to_f64(value: Decimal) -> f64 {
    let mantissa = value.mantissa();
    let scale = value.scale() as usize;
    let result = if mantissa.unsigned_abs() < (1u128 << 53) && scale < POW10.len() {
        // Both operands are exact, so the one division rounds correctly.
        mantissa as f64 / POW10[scale]
    } else {
        // Rust's float parser rounds correctly, and `<mantissa>e-<scale>` is the exact value.
        // Rare: the exposition writes decimals as text and converts only beyond 19 digits.
        format!("{mantissa}e-{scale}")
            .parse::<f64>()
            .unwrap_or(f64::NAN)
    };
    if result == 0.0 {
        0.0
    } else {
        result
    }
}

#[cfg(test)]
mod tests {
    /// Shows that the fast check agrees with counting the digits, at every limit, on values
    /// of every scale around each power of ten and at the extremes.
    #[test]
    fn integer_digits_exceed_agrees_with_integer_digits() {
        let mut mantissas = vec![0i128, 1, -1, 9, 79_228_162_514_264_337_593_543_950_335];
        let mut power = 1i128;
        for _ in 0..29 {
            for m in [power - 1, power, power + 1, -power, 5 * power] {
                if m.unsigned_abs() <= 79_228_162_514_264_337_593_543_950_335 {
                    mantissas.push(m);
                }
            }
            power *= 10;
        }
        for &mantissa in &mantissas {
            for scale in 0..=28 {
                let value = Decimal::from_i128_with_scale(mantissa, scale);
                for limit in 0..=30 {
                    assert_eq!(
                        integer_digits_exceed(value, limit),
                        integer_digits(value) > limit,
                        "{value} (mantissa {mantissa}, scale {scale}), limit {limit}"
                    );
                }
            }
        }
    }

    use super::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    /// Shows that amounts are exact and the grammar is strict.
    #[test]
    fn parses_exact_decimals() {
        assert_eq!(parse_decimal("0.1").unwrap(), d("0.1"));
        assert_eq!(parse_decimal("1234.5600").unwrap(), d("1234.56"));
        assert_eq!(parse_decimal("-12").unwrap(), d("-12"));
        assert_eq!(parse_decimal("1.5e3").unwrap(), d("1500"));
        assert_eq!(parse_decimal("15E-1").unwrap(), d("1.5"));
        assert_eq!(parse_decimal("-0").unwrap(), Decimal::ZERO);
        assert_eq!(parse_decimal("007.50").unwrap(), d("7.5"));
        assert_eq!(
            parse_decimal("1234567890123456789012345678").unwrap(),
            d("1234567890123456789012345678")
        );
        assert_eq!(
            parse_decimal("0.1000000000000000000000000000000").unwrap(),
            d("0.1")
        );
        for bad in [
            "",
            "-",
            "+1",
            "1.",
            ".5",
            "1e",
            "1..2",
            "abc",
            "1,5",
            " 1",
            "1 ",
            "NaN",
            "1_000",
            "12345678901234567890123456789",
            "1e29",
            "0.00000000000000000000000000001",
            "1e9999999",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad:?} must be refused");
        }
    }

    /// Shows the ratio formulas, the bridge and the absence rule.
    #[test]
    fn computes_ratios() {
        let mut figures = Figures::default();
        figures.0[0] = d("1000");
        figures.0[1] = d("200");
        figures.0[2] = d("50");
        figures.0[5] = d("25");
        let ratios = figures.ratios().unwrap();
        assert_eq!(ratios.gm_market, d("0.8"));
        assert_eq!(ratios.services_drag, d("0.075"));
        assert_eq!(ratios.gm_operating, d("0.725"));
        assert_eq!(ratios.gm_market - ratios.gm_operating, ratios.services_drag);
        figures.0[0] = Decimal::ZERO;
        assert!(figures.ratios().is_none());
        figures.0[0] = d("-1");
        assert!(figures.ratios().is_none());
    }

    /// Shows that the f64 conversion is correctly rounded.
    #[test]
    fn converts_to_nearest_f64() {
        assert_eq!(to_f64(d("0.1")), 0.1);
        assert_eq!(to_f64(d("1234.56")), 1234.56);
        assert_eq!(to_f64(d("-0.000")), 0.0);
        assert_eq!(
            to_f64(d("0.7234234234234234234234234234")),
            0.7234234234234235
        );
        assert_eq!(
            to_f64(d("1234567890123456789012345678")),
            1234567890123456789012345678.0
        );
        assert_eq!(to_f64(d("-0.820019195393105655")), -0.820_019_195_393_105_6);
        assert_eq!(to_f64(d("9007199254740993")), 9007199254740992.0);
    }

    /// Shows that the integer path rounds half-even once, like an exact division would.
    #[test]
    fn rounds_ratios_half_even() {
        let mut figures = Figures::default();
        figures.0[0] = d("3");
        figures.0[1] = d("1");
        let ratios = figures.ratios().unwrap();
        assert_eq!(ratios.gm_market, d("0.666666666666666667"));
        figures.0[0] = d("0.000000000000000004");
        figures.0[1] = d("0.000000000000000003");
        // 1/4 = 0.25 exactly; and 1e-18 / 2 rounds to even (0).
        assert_eq!(figures.ratios().unwrap().gm_market, d("0.25"));
        figures.0[0] = d("2");
        figures.0[1] = d("1.999999999999999999");
        assert_eq!(figures.ratios().unwrap().gm_market, d("0"));
        figures.0[0] = d("2");
        figures.0[1] = d("1.999999999999999997");
        assert_eq!(
            figures.ratios().unwrap().gm_market,
            d("0.000000000000000002")
        );
    }
}
