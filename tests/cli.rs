//! Command-line behaviour: help, standard input, errors that say what to do.

use std::io::Write;
use std::process::{Command, Stdio};

use marginstream_tests::{binary, root, run};

/// Shows that `--help` lists the commands and a replay example.
#[test]
fn help_lists_the_commands() {
    let output = run(&root(), &["--help"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for command in ["run", "replay", "check-config", "generate"] {
        assert!(text.contains(command), "--help mentions {command}:\n{text}");
    }
    let output = run(&root(), &["replay", "--help"]);
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in ["--input", "--rejected-out", "--format", "--config"] {
        assert!(
            text.contains(flag),
            "replay --help mentions {flag}:\n{text}"
        );
    }
}

/// Shows that `--input -` reads standard input and that the same ledger from a file gives
/// the same exposition.
#[test]
fn replays_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = root().join("tests/golden/basic/input.jsonl");
    let mut child = Command::new(binary())
        .args([
            "replay",
            "--input",
            "-",
            "--progress",
            "never",
            "--rejected-out",
        ])
        .arg(dir.path().join("r.jsonl"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&ledger).unwrap())
        .unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    assert!(
        from_stdin.status.success(),
        "{}",
        String::from_utf8_lossy(&from_stdin.stderr)
    );
    let from_file = run(
        dir.path(),
        &[
            "replay",
            "--input",
            ledger.to_str().unwrap(),
            "--progress",
            "never",
        ],
    );
    assert_eq!(from_stdin.stdout, from_file.stdout);
    assert!(
        dir.path().join("marginstream-rejected.jsonl").exists(),
        "the default rejected-out is in the working directory"
    );
}

/// Shows that a missing ledger is an error naming the path, with exit code 1.
#[test]
fn missing_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["replay", "--input", "no-such-ledger.jsonl"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-ledger.jsonl"), "{stderr}");
}

/// Shows that the table format sorts customers by GM-M, lowest first, with the portfolio.
#[test]
fn table_is_sorted_by_gm_market() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = root().join("tests/golden/basic/input.jsonl");
    let output = run(
        dir.path(),
        &[
            "replay",
            "--input",
            ledger.to_str().unwrap(),
            "--format",
            "table",
            "--window",
            "24h",
        ],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acme = text.find("acme").expect("acme is listed");
    let globex = text.find("globex").expect("globex is listed");
    assert!(text.contains("PORTFOLIO"), "{text}");
    assert!(text.contains("90.0%"), "{text}");
    // Both have GM-M 90 %; ties keep id order.
    assert!(acme < globex, "{text}");
}
