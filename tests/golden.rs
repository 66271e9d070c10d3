//! Golden tests: `tests/golden/<case>/input.jsonl` replayed (with the case's `config.toml`
//! when present) must give `expected.prom` (`--format prometheus`), `expected.json`
//! (`--format json`) and `expected-rejected.jsonl` exactly. The expected files were checked
//! by hand; `tests/golden/README.md` gives the arithmetic of each case. The same outputs
//! must come from the case's ledger compressed, split into files or with a byte order mark.

use std::fs;
use std::io::Write;
use std::path::Path;

use marginstream_tests::{assert_text_eq, root, run};

/// Replays `inputs` (paths relative to `work`) with the case's configuration, in each
/// format, and returns the outputs by golden file name: the exposition, the JSON (pretty,
/// for readable diffs) and the rejected-events file.
fn replay_case(
    case: &Path,
    name: &str,
    work: &Path,
    inputs: &[&str],
) -> Vec<(&'static str, String)> {
    let config = case.join("config.toml");
    let rejected = work.join("rejected.jsonl");
    let mut outputs = Vec::new();
    for (format, file) in [("prometheus", "expected.prom"), ("json", "expected.json")] {
        let mut args = vec!["replay"];
        for input in inputs {
            args.extend(["--input", input]);
        }
        args.extend([
            "--format",
            format,
            "--rejected-out",
            rejected.to_str().unwrap(),
            "--progress",
            "never",
        ]);
        if config.exists() {
            args.extend(["--config", config.to_str().unwrap()]);
        }
        let output = run(work, &args);
        assert!(
            output.status.success(),
            "{name} from {inputs:?}: replay failed: {}",
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
    outputs
}

/// Replays one case and compares every output with its golden file; then replays the same
/// ledger as it comes out of exports (issue 15) and compares again: compressed with gzip,
/// with zstd, as a gzip file of three members, with a byte order mark, and split into three
/// files (plain, gzip and zstd, given as three `--input`s).
fn check_case(name: &str) {
    let case = root().join("tests/golden").join(name);
    let work = tempfile::tempdir().expect("a temporary directory");
    let input = case.join("input.jsonl");
    let outputs = replay_case(&case, name, work.path(), &[input.to_str().unwrap()]);
    for (file, actual) in &outputs {
        compare(&case, name, file, actual);
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        return;
    }

    let text = fs::read(&input).expect("the golden input is readable");
    let third = text.len() / 3;
    let variants: [(&str, Vec<u8>); 4] = [
        ("ledger.jsonl.gz", gzip(&[&text])),
        ("ledger.jsonl.zst", zstd(&[&text])),
        // Members that end inside a line: the lines run on across them.
        (
            "ledger-members.jsonl.gz",
            gzip(&[&text[..third], &text[third..2 * third], &text[2 * third..]]),
        ),
        (
            "ledger-bom.jsonl",
            [&[0xef, 0xbb, 0xbf][..], &text].concat(),
        ),
    ];
    for (file, bytes) in &variants {
        fs::write(work.path().join(file), bytes).expect("the variant is written");
        let actual = replay_case(&case, name, work.path(), &[file]);
        for ((golden, expected), (_, actual)) in outputs.iter().zip(&actual) {
            assert_text_eq(&format!("{name}/{golden} from {file}"), expected, actual);
        }
    }

    // Three files cut at line ends; the rejected records name their file and number their
    // line within it, and are otherwise those of the one file.
    let line_ends: Vec<usize> = text
        .iter()
        .enumerate()
        .filter(|(_, &byte)| byte == b'\n')
        .map(|(index, _)| index + 1)
        .collect();
    let lines = line_ends.len();
    let cuts = [
        0,
        line_ends[lines / 3 - 1],
        line_ends[2 * lines / 3 - 1],
        text.len(),
    ];
    let first_lines = [0, lines / 3, 2 * lines / 3];
    let parts = ["part-1.jsonl", "part-2.jsonl.gz", "part-3.jsonl.zst"];
    for (index, part) in parts.iter().enumerate() {
        let bytes = &text[cuts[index]..cuts[index + 1]];
        let bytes = match index {
            0 => bytes.to_vec(),
            1 => gzip(&[bytes]),
            _ => zstd(&[bytes]),
        };
        fs::write(work.path().join(part), bytes).expect("the part is written");
    }
    let actual = replay_case(&case, name, work.path(), &parts);
    for ((golden, expected), (_, actual)) in outputs.iter().zip(&actual) {
        let expected = if *golden == "expected-rejected.jsonl" {
            with_files(expected, &parts, &first_lines)
        } else {
            expected.clone()
        };
        assert_text_eq(
            &format!("{name}/{golden} from three files"),
            &expected,
            actual,
        );
    }
}

/// Returns the rejected records of the one-file replay as a replay of the ledger split into
/// `parts` writes them: `"file"` before `line_number`, which counts from the part's first
/// line (`first_lines[i]` lines of the ledger come before part `i`).
fn with_files(rejected: &str, parts: &[&str], first_lines: &[usize]) -> String {
    let mut out = String::new();
    for record in rejected.lines() {
        let record: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(record).expect("a rejected record is a JSON object");
        let number = record["line_number"].as_u64().expect("a line number") as usize;
        let part = first_lines
            .iter()
            .rposition(|&first| first < number)
            .unwrap();
        let mut moved = serde_json::Map::new();
        for (key, value) in record {
            if key == "line_number" {
                moved.insert("file".into(), parts[part].into());
                moved.insert(key, (number - first_lines[part]).into());
            } else {
                moved.insert(key, value);
            }
        }
        out += &serde_json::to_string(&moved).unwrap();
        out.push('\n');
    }
    out
}

/// Returns `members` compressed as one gzip member each, concatenated.
fn gzip(members: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for member in members {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(member).expect("gzip into memory");
        out.extend(encoder.finish().expect("gzip into memory"));
    }
    out
}

/// Returns `frames` compressed as one zstd frame each, concatenated.
fn zstd(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        out.extend(zstd::encode_all(*frame, 3).expect("zstd into memory"));
    }
    out
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

/// Runs `replay --compare-config` on a comparison case (`input.jsonl` under `config.toml`,
/// NEW, and `old.toml`, OLD) in `format`, returning standard output and the rejected-events
/// file.
fn compare_case(case: &Path, work: &Path, extra: &[&str]) -> (String, String) {
    let rejected = work.join("rejected.jsonl");
    let mut args = vec![
        "replay",
        "--input",
        case.join("input.jsonl").to_str().unwrap(),
        "--config",
        case.join("config.toml").to_str().unwrap(),
        "--compare-config",
        case.join("old.toml").to_str().unwrap(),
        "--rejected-out",
        rejected.to_str().unwrap(),
        "--progress",
        "never",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(work, &args);
    assert!(
        output.status.success(),
        "compare {extra:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout).expect("the output is UTF-8"),
        fs::read_to_string(&rejected).expect("the rejected-events file exists"),
    )
}

/// Replays the case's ledger under one of its configurations alone, as JSON.
fn plain_json(case: &Path, work: &Path, config: &str) -> serde_json::Value {
    let output = run(
        work,
        &[
            "replay",
            "--input",
            case.join("input.jsonl").to_str().unwrap(),
            "--config",
            case.join(config).to_str().unwrap(),
            "--format",
            "json",
            "--rejected-out",
            work.join("plain-rejected.jsonl").to_str().unwrap(),
            "--progress",
            "never",
        ],
    );
    assert!(output.status.success(), "replay under {config} failed");
    serde_json::from_slice(&output.stdout).expect("valid JSON")
}

/// Checks a comparison case against its golden files (`expected-compare.json`, pretty;
/// `expected-compare.txt`, the table of the default window, `expected-compare-24h.txt`, of
/// 24h with `--limit 1`; `expected-rejected.jsonl`, NEW's rejections), then checks that each side of the comparison is what a replay under
/// that configuration alone gives: every customer's figures, the portfolio, the counters.
fn check_compare_case(name: &str) {
    let case = root().join("tests/golden").join(name);
    let work = tempfile::tempdir().expect("a temporary directory");
    let (json, rejected) = compare_case(&case, work.path(), &["--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let pretty = serde_json::to_string_pretty(&report).unwrap() + "\n";
    compare(&case, name, "expected-compare.json", &pretty);
    compare(&case, name, "expected-rejected.jsonl", &rejected);
    let (table, _) = compare_case(&case, work.path(), &["--format", "table"]);
    compare(&case, name, "expected-compare.txt", &table);
    let (default, _) = compare_case(&case, work.path(), &[]);
    assert_text_eq(&format!("{name}: the default format"), &table, &default);
    let (table, _) = compare_case(
        &case,
        work.path(),
        &["--format", "table", "--window", "24h", "--limit", "1"],
    );
    compare(&case, name, "expected-compare-24h.txt", &table);

    for (side, config) in [("old", "old.toml"), ("new", "config.toml")] {
        let plain = plain_json(&case, work.path(), config);
        let context = format!("{name}: the {side} side against a replay under {config}");
        for (window, figures) in plain["portfolio"].as_object().unwrap() {
            assert_eq!(
                &report["portfolio"][window][side], figures,
                "{context}: portfolio {window}"
            );
        }
        for (kind, counts) in plain["counters"].as_object().unwrap() {
            for (key, value) in counts.as_object().unwrap() {
                let compared = &report["counters"][kind][key];
                let compared = if kind == "events" {
                    value
                        .as_object()
                        .unwrap()
                        .keys()
                        .map(|outcome| (outcome.clone(), compared[outcome][side].clone()))
                        .collect::<serde_json::Map<_, _>>()
                        .into()
                } else {
                    compared[side].clone()
                };
                assert_eq!(&compared, value, "{context}: counters {kind} {key}");
            }
        }
        let customers = report["customers"].as_array().unwrap();
        let held: Vec<&serde_json::Value> = customers
            .iter()
            .filter(|c| c["held"][side] == true)
            .collect();
        let plain_customers = plain["customers"].as_array().unwrap();
        assert_eq!(
            held.len(),
            plain_customers.len(),
            "{context}: customers held"
        );
        for (customer, expected) in held.iter().zip(plain_customers) {
            assert_eq!(
                customer["customer_id"], expected["customer_id"],
                "{context}"
            );
            for (window, figures) in expected["windows"].as_object().unwrap() {
                assert_eq!(
                    &customer["windows"][window][side], figures,
                    "{context}: {} {window}",
                    expected["customer_id"]
                );
            }
        }
    }
}

/// A reclassification compared before it ships (issue 11): `training` moves from Onboarding
/// to Excluded (GM-O rises, GM-M unchanged), `datadog` gets a rule (untagged, then applied;
/// its repeat, then a duplicate), the EUR rate is corrected; each side equals a replay under
/// its configuration alone.
#[test]
fn compare_a_reclassification() {
    check_compare_case("compare_reclassify");
}
