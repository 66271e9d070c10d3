//! The model crate's one error type.

use thiserror::Error;

/// Errors of parsing configuration values that the model defines (durations, decimals,
/// currency codes). Event validation failures are not errors but
/// [`Rejection`](crate::Rejection)s: they are expected input, counted and dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// A duration is not `<positive integer><unit>` with a unit of s, m, h, d or w.
    #[error("invalid duration {text:?}: expected a positive whole number and a unit (s, m, h, d, w), like \"24h\" or \"7d\"")]
    Duration {
        /// The text as given.
        text: String,
    },
    /// A decimal value is not a plain decimal number.
    #[error("invalid decimal {text:?}: {problem}")]
    Decimal {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A currency code is not three upper-case ASCII letters.
    #[error("invalid currency code {text:?}: expected three upper-case letters (ISO 4217), like \"USD\"")]
    Currency {
        /// The text as given.
        text: String,
    },
}
