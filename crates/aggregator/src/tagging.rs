//! ATL tagging: raw cost categories to cost functions (contract section 3).
//!
//! Rules are tried in order and the first match wins. A rule lists category patterns,
//! matched case-insensitively: a plain name matches itself, and a pattern with `*`, `?`,
//! `[...]` or `{a,b}` is a glob (`aws_*`, `{zendesk,intercom}`).

use std::collections::HashMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use marginstream_model::CostFunction;

use crate::error::AggregatorError;

/// One tagging rule: every category matching one of `categories` is tagged `function`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggingRule {
    /// The function given to a matching cost.
    pub function: CostFunction,
    /// Category names or globs, matched case-insensitively.
    pub categories: Vec<String>,
}

/// The default rules of contract section 3, in its order.
pub fn default_rules() -> Vec<TaggingRule> {
    let rule = |function, categories: &[&str]| TaggingRule {
        function,
        categories: categories.iter().map(|c| (*c).to_owned()).collect(),
    };
    vec![
        rule(
            CostFunction::Infrastructure,
            &[
                "hosting",
                "cloud",
                "infrastructure",
                "third_party_api",
                "payment_processing",
                "delivery_software",
                "cloud_credit",
            ],
        ),
        rule(CostFunction::Support, &["support", "customer_support"]),
        rule(
            CostFunction::SuccessEngineering,
            &["customer_success", "success_engineering"],
        ),
        rule(
            CostFunction::Implementation,
            &["implementation", "professional_services"],
        ),
        rule(CostFunction::Onboarding, &["onboarding", "training"]),
        rule(
            CostFunction::Excluded,
            &[
                "r_and_d",
                "sales_and_marketing",
                "g_and_a",
                "stock_based_compensation",
            ],
        ),
    ]
}

/// Compiled tagging rules.
#[derive(Debug, Clone)]
pub struct Tagger {
    /// Lower-cased plain names to the index of the first rule naming them.
    exact: HashMap<String, usize>,
    /// Every glob pattern, compiled together.
    globs: GlobSet,
    /// For each glob in `globs`, the index of its rule.
    glob_rules: Vec<usize>,
    /// Each rule's function, by rule index.
    functions: Vec<CostFunction>,
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

impl Tagger {
    /// Compiles rules, refusing invalid globs.
    pub fn new(rules: &[TaggingRule]) -> Result<Tagger, AggregatorError> {
        let mut exact = HashMap::new();
        let mut globs = GlobSetBuilder::new();
        let mut glob_rules = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            for pattern in &rule.categories {
                if is_glob(pattern) {
                    let glob = GlobBuilder::new(pattern)
                        .case_insensitive(true)
                        .literal_separator(false)
                        .build()
                        .map_err(|error| AggregatorError::Pattern {
                            rule: index,
                            pattern: pattern.clone(),
                            problem: error.kind().to_string(),
                        })?;
                    globs.add(glob);
                    glob_rules.push(index);
                } else {
                    exact.entry(pattern.to_lowercase()).or_insert(index);
                }
            }
        }
        let globs = globs.build().map_err(|error| AggregatorError::Pattern {
            rule: 0,
            pattern: String::new(),
            problem: error.to_string(),
        })?;
        Ok(Tagger {
            exact,
            globs,
            glob_rules,
            functions: rules.iter().map(|rule| rule.function).collect(),
        })
    }

    /// Returns the function of the first rule matching `category`, if any.
    pub fn tag(&self, category: &str) -> Option<CostFunction> {
        let exact = if category
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b >= 0x80)
        {
            self.exact.get(&category.to_lowercase())
        } else {
            self.exact.get(category)
        }
        .copied();
        let glob = if self.glob_rules.is_empty() {
            None
        } else {
            self.globs
                .matches(category)
                .into_iter()
                .map(|glob| self.glob_rules[glob])
                .min()
        };
        let rule = match (exact, glob) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        rule.map(|index| self.functions[index])
    }

    /// Returns the number of rules.
    pub fn rule_count(&self) -> usize {
        self.functions.len()
    }
}

impl Default for Tagger {
    fn default() -> Tagger {
        Tagger::new(&default_rules()).expect("the built-in rules hold no glob, so they compile")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows every glob form, case-insensitive, next to plain names.
    #[test]
    fn matches_names_and_every_glob_form() {
        let rule = |function, categories: &[&str]| TaggingRule {
            function,
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
        };
        let tagger = Tagger::new(&[
            rule(
                CostFunction::Support,
                &["{zendesk,intercom}", "tier?_support"],
            ),
            rule(
                CostFunction::Infrastructure,
                &["aws_*", "gcp_[a-z]*", "snowflake"],
            ),
        ])
        .unwrap();
        assert_eq!(tagger.tag("Intercom"), Some(CostFunction::Support));
        assert_eq!(tagger.tag("TIER2_support"), Some(CostFunction::Support));
        assert_eq!(tagger.tag("aws_ec2"), Some(CostFunction::Infrastructure));
        assert_eq!(
            tagger.tag("gcp_bigquery"),
            Some(CostFunction::Infrastructure)
        );
        assert_eq!(tagger.tag("SnowFlake"), Some(CostFunction::Infrastructure));
        assert_eq!(tagger.tag("{zendesk,intercom}"), None);
        assert_eq!(
            tagger.tag("hosting"),
            None,
            "custom rules replace the defaults"
        );
        assert!(Tagger::new(&[rule(CostFunction::Support, &["[unclosed"])]).is_err());
    }
}
