//! Golden tests: `tests/golden/<case>/input.jsonl` replayed (with the case's `config.toml`
//! when present) must give `expected.prom` (`--format prometheus`), `expected.json`
//! (`--format json`) and `expected-rejected.jsonl` exactly. The expected files were checked
//! by hand; `tests/golden/README.md` gives the arithmetic of each case.

use std::fs;
use std::path::Path;

use marginstream_tests::{assert_text_eq, root, run};

/// Replays one case and compares every output with its golden file.
fn check_case(name: &str) {
    let case = root().join("tests/golden").join(name);
    let work = tempfile::tempdir().expect("a temporary directory");
    let input = case.join("input.jsonl");
    let config = case.join("config.toml");
    let rejected = work.path().join("rejected.jsonl");
    let mut outputs = Vec::new();
    for (format, file) in [("prometheus", "expected.prom"), ("json", "expected.json")] {
        let mut args = vec![
            "replay",
            "--input",
            input.to_str().unwrap(),
            "--format",
            format,
            "--rejected-out",
            rejected.to_str().unwrap(),
            "--progress",
            "never",
        ];
        if config.exists() {
            args.extend(["--config", config.to_str().unwrap()]);
        }
        let output = run(work.path(), &args);
        assert!(
            output.status.success(),
            "{name}: replay failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut text = String::from_utf8(output.stdout).expect("the output is UTF-8");
        if format == "json" {
            // Pretty-print for readable golden files and diffs.
            let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        }
        outputs.push((file, text));
    }
    outputs.push((
        "expected-rejected.jsonl",
        fs::read_to_string(&rejected).expect("the rejected-events file exists"),
    ));
    for (file, actual) in outputs {
        compare(&case, name, file, &actual);
    }
}

fn compare(case: &Path, name: &str, file: &str, actual: &str) {
    let path = case.join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).expect("the golden file is writable");
        return;
    }
    let expected = fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{name}: missing golden file {}", path.display()));
    assert_text_eq(&format!("{name}/{file}"), &expected, actual);
}

/// Two customers, every cost function by tag and by category, an unattributed cost and an
/// excluded cost: the three ratios and the portfolio by hand.
#[test]
fn basic_margins() {
    check_case("basic");
}

/// One line for each rejection reason of contract section 2, each with exactly its reason.
#[test]
fn every_rejection_reason() {
    check_case("rejections");
}

/// Customer ids with a double quote and a backslash are escaped in label values.
#[test]
fn label_escaping() {
    check_case("escaping");
}

/// Refunds that take revenue to zero or below: the ratio series are absent.
#[test]
fn refunds_to_zero_and_below() {
    check_case("refunds");
}

/// Events across more than 30 days: window edges, a late event counted in `all` only, a
/// late event still inside 30d, and duplicates with different amounts.
#[test]
fn late_and_duplicate_events() {
    check_case("late_and_duplicates");
}

/// Currency conversion with static rates, in a configuration with other windows.
#[test]
fn currency_conversion() {
    check_case("fx");
}
