//! The aggregator's one error type.

use thiserror::Error;

/// Errors building the engine or its tagging rules from a configuration, or restoring the
/// engine from a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AggregatorError {
    /// A tagging rule's category pattern is not a valid glob.
    #[error("tagging rule {rule}: invalid category pattern {pattern:?}: {problem}")]
    Pattern {
        /// Index of the rule, from 0.
        rule: usize,
        /// The pattern as given.
        pattern: String,
        /// What the glob parser said.
        problem: String,
    },
    /// The engine configuration breaks one of its invariants.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// A checkpoint cannot be restored: it is truncated or corrupt, of another format
    /// version, or was written under another configuration. The text says which, and where.
    #[error("cannot restore the engine: {0}")]
    Snapshot(String),
}
