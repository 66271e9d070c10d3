//! The rules and rates a partition's state was built under (contract section 11): the
//! effective tagging rules in order (the first match wins, so order matters), the reporting
//! currency and the rates of `ledger.fx`.
//!
//! The state keeps a canonical text of them, not only a hash, so that a process started
//! under other rules can say *which* rule or rate changed, in its log and in the error of
//! `ledger.on_rules_change = "refuse"`. The text is independent of how the TOML was written:
//! categories are lower-cased (they match case-insensitively), rates are normalised decimals
//! (`"1.10"` and `1.1` convert every amount alike), and the default rules are spelled out
//! whether they were written in the file, implied by its silence or appended by
//! `tagging.include_default_rules`. Nothing else is in it: windows, limits, listen address
//! or log level never restate a partition.
//!
//! ```text
//! marginstream rules and rates 1
//! reporting_currency USD
//! fx EUR 1.0825
//! rule 1 Infrastructure ["hosting","cloud"]
//! rule 2 Support ["support"]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use marginstream_aggregator::TaggingRule;
use marginstream_model::Currency;
use rust_decimal::Decimal;

/// The first line of every canonical text; a new layout gets a new number.
const HEADER: &str = "marginstream rules and rates 1";

/// What `ledger.on_rules_change` asks for when a partition's state was built under other
/// rules or rates than the running configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRulesChange {
    /// Rebuild the partition from the beginning of the ledger under the new rules (default).
    #[default]
    Restate,
    /// Exit with code 2, naming what changed.
    Refuse,
}

/// The canonical text of the tagging rules, the reporting currency and the FX rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesFingerprint {
    text: String,
}

impl RulesFingerprint {
    /// Builds the fingerprint of the effective `rules`, the reporting currency and `rates`.
    pub fn new(
        rules: &[TaggingRule],
        reporting: Currency,
        rates: &HashMap<Currency, Decimal>,
    ) -> RulesFingerprint {
        let mut text = format!("{HEADER}\nreporting_currency {reporting}\n");
        let sorted: BTreeMap<&str, Decimal> = rates
            .iter()
            .map(|(currency, rate)| (currency.as_str(), rate.normalize()))
            .collect();
        for (currency, rate) in sorted {
            text.push_str(&format!("fx {currency} {rate}\n"));
        }
        for (index, rule) in rules.iter().enumerate() {
            let categories: Vec<String> =
                rule.categories.iter().map(|c| c.to_lowercase()).collect();
            let list = serde_json::to_string(&categories).expect("strings serialize to JSON");
            text.push_str(&format!(
                "rule {} {} {list}\n",
                index + 1,
                rule.function.as_str()
            ));
        }
        RulesFingerprint { text }
    }

    /// Takes a canonical text as stored in a checkpoint or a snapshot.
    pub fn from_text(text: impl Into<String>) -> RulesFingerprint {
        RulesFingerprint { text: text.into() }
    }

    /// Returns the canonical text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Returns the XXH3-64 hash of the canonical text as 16 hex digits: two configurations
    /// with the same hash restate nothing.
    pub fn hash(&self) -> String {
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(self.text.as_bytes()))
    }

    /// Returns what changed from `old` (what a state was built under) to `self` (the running
    /// configuration), one line per rule or rate, each naming its key; empty when they are
    /// the same.
    pub fn changes_from(&self, old: &RulesFingerprint) -> Vec<String> {
        if self.text == old.text {
            return Vec::new();
        }
        let (Some(new), Some(was)) = (Parsed::of(&self.text), Parsed::of(&old.text)) else {
            return vec![format!(
                "the state records rules and rates this build cannot read (fingerprint {}, now {})",
                old.hash(),
                self.hash()
            )];
        };
        let mut changes = Vec::new();
        if new.reporting != was.reporting {
            changes.push(format!(
                "ledger.reporting_currency: {} -> {}",
                was.reporting, new.reporting
            ));
        }
        let codes: std::collections::BTreeSet<&str> =
            new.fx.keys().chain(was.fx.keys()).copied().collect();
        for code in codes {
            match (was.fx.get(code), new.fx.get(code)) {
                (Some(a), Some(b)) if a != b => {
                    changes.push(format!("ledger.fx.{code}: {a} -> {b}"));
                }
                (None, Some(b)) => changes.push(format!("ledger.fx.{code}: added ({b})")),
                (Some(a), None) => changes.push(format!("ledger.fx.{code}: removed (was {a})")),
                _ => {}
            }
        }
        changes.extend(rule_changes(&was.rules, &new.rules));
        if changes.is_empty() {
            // Same meaning, other text: only a layout this build writes differently.
            changes.push(format!(
                "the rules and rates are written differently (fingerprint {}, now {})",
                old.hash(),
                self.hash()
            ));
        }
        changes
    }
}

impl fmt::Display for RulesFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hash())
    }
}

/// Names what changed between two rule lists: the longest common subsequence of rules is
/// unchanged; between two of its rules, the old ones left and the new ones there are paired
/// as changed, and what remains is added or removed. Rules are numbered as in the new list
/// (removed ones as in the old).
fn rule_changes(was: &[String], new: &[String]) -> Vec<String> {
    // lcs[i][j]: the longest common subsequence of was[i..] and new[j..].
    let mut lcs = vec![vec![0usize; new.len() + 1]; was.len() + 1];
    for i in (0..was.len()).rev() {
        for j in (0..new.len()).rev() {
            lcs[i][j] = if was[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut changes = Vec::new();
    let (mut i, mut j) = (0, 0);
    let mut removed: Vec<usize> = Vec::new();
    let mut added: Vec<usize> = Vec::new();
    let mut flush = |removed: &mut Vec<usize>, added: &mut Vec<usize>| {
        let paired = removed.len().min(added.len());
        for (a, b) in removed.iter().zip(added.iter()).take(paired) {
            changes.push(format!(
                "tagging rule {}: {} -> {}",
                b + 1,
                was[*a],
                new[*b]
            ));
        }
        for b in &added[paired..] {
            changes.push(format!("tagging rule {}: added ({})", b + 1, new[*b]));
        }
        for a in &removed[paired..] {
            changes.push(format!("tagging rule {} removed (was {})", a + 1, was[*a]));
        }
        removed.clear();
        added.clear();
    };
    while i < was.len() || j < new.len() {
        if i < was.len() && j < new.len() && was[i] == new[j] {
            flush(&mut removed, &mut added);
            i += 1;
            j += 1;
        } else if j < new.len() && (i == was.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            added.push(j);
            j += 1;
        } else {
            removed.push(i);
            i += 1;
        }
    }
    flush(&mut removed, &mut added);
    changes
}

/// A canonical text read back, for naming the differences.
struct Parsed<'a> {
    reporting: &'a str,
    fx: BTreeMap<&'a str, &'a str>,
    /// Each rule as `Function [categories]`.
    rules: Vec<String>,
}

impl<'a> Parsed<'a> {
    fn of(text: &'a str) -> Option<Parsed<'a>> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut parsed = Parsed {
            reporting: "",
            fx: BTreeMap::new(),
            rules: Vec::new(),
        };
        for line in lines {
            let (kind, rest) = line.split_once(' ')?;
            match kind {
                "reporting_currency" => parsed.reporting = rest,
                "fx" => {
                    let (code, rate) = rest.split_once(' ')?;
                    parsed.fx.insert(code, rate);
                }
                "rule" => {
                    let (_, rest) = rest.split_once(' ')?;
                    let (function, list) = rest.split_once(' ')?;
                    let categories: Vec<String> = serde_json::from_str(list).ok()?;
                    parsed
                        .rules
                        .push(format!("{function} [{}]", categories.join(", ")));
                }
                _ => return None,
            }
        }
        Some(parsed)
    }
}

/// A partition's state was built under other rules or rates than the running configuration,
/// and `ledger.on_rules_change = "refuse"`: the process exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesChanged {
    /// Where the state was found: the checkpoint, or a partition's snapshot.
    pub found_in: String,
    /// What changed, one line each.
    pub changes: Vec<String>,
}

impl fmt::Display for RulesChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} was built under other tagging rules or rates ({}); ledger.on_rules_change = \"refuse\": not restating. Set it to \"restate\" to rebuild under the new rules, or restore the old rules",
            self.found_in,
            self.changes.join("; ")
        )
    }
}

impl std::error::Error for RulesChanged {}

#[cfg(test)]
mod tests {
    use marginstream_aggregator::tagging::default_rules;
    use marginstream_model::CostFunction;

    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").expect("a currency")
    }

    fn rates(pairs: &[(&str, &str)]) -> HashMap<Currency, Decimal> {
        pairs
            .iter()
            .map(|(c, r)| {
                (
                    Currency::parse(c).expect("a currency"),
                    r.parse().expect("a rate"),
                )
            })
            .collect()
    }

    /// Shows that the fingerprint ignores what does not change a figure: the case of a
    /// category, trailing zeros of a rate, the order the rates were written in.
    #[test]
    fn the_same_meaning_gives_the_same_fingerprint() {
        let mut shouting = default_rules();
        shouting[0].categories[0] = "HOSTING".to_owned();
        let a = RulesFingerprint::new(
            &default_rules(),
            usd(),
            &rates(&[("EUR", "1.10"), ("GBP", "1.27")]),
        );
        let b = RulesFingerprint::new(
            &shouting,
            usd(),
            &rates(&[("GBP", "1.270"), ("EUR", "1.1")]),
        );
        assert_eq!(a, b);
        assert_eq!(a.hash(), b.hash());
        assert!(a.changes_from(&b).is_empty());
        assert_eq!(RulesFingerprint::from_text(a.text()), a);
    }

    /// Shows that a moved category, a changed rate, an added rate and another reporting
    /// currency are each named with their key, and that the order of rules matters.
    #[test]
    fn every_change_is_named() {
        let old = RulesFingerprint::new(&default_rules(), usd(), &rates(&[("EUR", "1.08")]));
        let mut rules = default_rules();
        // Finance moves "training" from Onboarding to Excluded.
        rules[4].categories.retain(|c| c != "training");
        rules[5].categories.push("training".to_owned());
        let new =
            RulesFingerprint::new(&rules, usd(), &rates(&[("EUR", "1.0825"), ("GBP", "1.27")]));
        let changes = new.changes_from(&old);
        assert!(
            changes.contains(&"ledger.fx.EUR: 1.08 -> 1.0825".to_owned()),
            "{changes:?}"
        );
        assert!(changes.contains(&"ledger.fx.GBP: added (1.27)".to_owned()));
        assert!(
            changes.contains(
                &"tagging rule 5: Onboarding [onboarding, training] -> Onboarding [onboarding]"
                    .to_owned()
            ),
            "{changes:?}"
        );
        assert!(changes
            .iter()
            .any(|c| c.starts_with("tagging rule 6: Excluded")));
        assert_eq!(changes.len(), 4, "{changes:?}");
        let eur = RulesFingerprint::new(
            &default_rules(),
            Currency::parse("EUR").expect("a currency"),
            &HashMap::new(),
        );
        assert_eq!(
            eur.changes_from(&RulesFingerprint::new(
                &default_rules(),
                usd(),
                &HashMap::new()
            )),
            vec!["ledger.reporting_currency: USD -> EUR".to_owned()]
        );
        let mut swapped = default_rules();
        swapped.swap(0, 1);
        assert_ne!(
            RulesFingerprint::new(&swapped, usd(), &HashMap::new()),
            RulesFingerprint::new(&default_rules(), usd(), &HashMap::new()),
            "the first match wins: the order of rules is part of the fingerprint"
        );
        let added = {
            let mut rules = default_rules();
            rules.push(TaggingRule {
                function: CostFunction::Support,
                categories: vec!["zendesk".to_owned()],
            });
            RulesFingerprint::new(&rules, usd(), &HashMap::new())
        };
        assert_eq!(
            added.changes_from(&RulesFingerprint::new(
                &default_rules(),
                usd(),
                &HashMap::new()
            )),
            vec!["tagging rule 7: added (Support [zendesk])".to_owned()]
        );
        // A rule put first is one change, not six.
        let first = {
            let mut rules = default_rules();
            rules.insert(
                0,
                TaggingRule {
                    function: CostFunction::Excluded,
                    categories: vec!["training".to_owned()],
                },
            );
            RulesFingerprint::new(&rules, usd(), &HashMap::new())
        };
        assert_eq!(
            first.changes_from(&RulesFingerprint::new(
                &default_rules(),
                usd(),
                &HashMap::new()
            )),
            vec!["tagging rule 1: added (Excluded [training])".to_owned()]
        );
        let mut fewer = default_rules();
        fewer.remove(2);
        assert_eq!(
            RulesFingerprint::new(&fewer, usd(), &HashMap::new())
                .changes_from(&RulesFingerprint::new(&default_rules(), usd(), &HashMap::new())),
            vec!["tagging rule 3 removed (was Success_Engineering [customer_success, success_engineering])".to_owned()]
        );
    }

    /// Shows that a text this build cannot read is reported as such, never as "no change".
    #[test]
    fn an_unreadable_text_is_a_change() {
        let new = RulesFingerprint::new(&default_rules(), usd(), &HashMap::new());
        let changes = new.changes_from(&RulesFingerprint::from_text("something else"));
        assert_eq!(changes.len(), 1);
        assert!(changes[0].contains("cannot read"), "{changes:?}");
    }
}
