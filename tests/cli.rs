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

/// Replays a golden ledger with `--openmetrics-out` at `step` and returns the history.
fn history_of(case: &str, step: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ledger = root().join("tests/golden").join(case).join("input.jsonl");
    let history = dir.path().join("history.om");
    let output = run(
        dir.path(),
        &[
            "replay",
            "--input",
            ledger.to_str().unwrap(),
            "--progress",
            "never",
            "--openmetrics-out",
            history.to_str().unwrap(),
            "--step",
            step,
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&history).unwrap()
}

/// Shows the history rule of contract section 4 on the late-and-duplicates ledger with daily
/// steps: the sample stamped `s` holds the events applied before the first event later than
/// `s`, with the windows at `T = s`. e1 (03-01, 100) is alone until e2 (03-31 12:00)
/// arrives, so every day from 03-01 to 03-31 is stamped with e1 only; its 30d window holds
/// it until 03-30 and not at 03-31, when its bucket is 30 days old. Families are contiguous,
/// each series' samples are together and in time order, and the file ends with `# EOF`, as
/// OpenMetrics requires (issue 14: the reference parser refused interleaved series).
#[test]
fn openmetrics_history_follows_the_rule() {
    let text = history_of("late_and_duplicates", "1d");
    let day = |d: i64| 1_772_323_200 + (d - 1) * 86_400; // 2026-03-d 00:00 UTC
    let series = |name: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l.rsplitn(3, ' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let c1_30d = series(r#"marginstream_revenue{customer_id="c1",window="30d"}"#);
    assert_eq!(c1_30d.len(), 31, "one sample a day from 03-01 to 03-31");
    assert_eq!(c1_30d[0], format!("{} 100", day(1)));
    assert_eq!(c1_30d[29], format!("{} 100", day(30)));
    assert_eq!(c1_30d[30], format!("{} 0", day(31)));
    let all = series(r#"marginstream_revenue{customer_id="c1",window="all"}"#);
    assert!(
        all.iter().all(|s| s.ends_with(" 100")),
        "e2 and later are not in any sample: {all:?}"
    );
    let watermarks = series("marginstream_watermark_timestamp_seconds ");
    assert_eq!(
        watermarks[5],
        format!("{} {}", day(6), day(6)),
        "T = s at each sample"
    );
    assert!(text.ends_with("# EOF\n"));
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
    assert_eq!(
        types.len(),
        12,
        "every gauge family once, counters excluded"
    );
    let mut seen = std::collections::HashSet::new();
    let mut current = "";
    let mut series_seen = std::collections::HashSet::new();
    let mut last: Option<(&str, i64)> = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        if name != current {
            assert!(seen.insert(name.to_owned()), "family {name} is contiguous");
            current = name;
        }
        let (rest, stamp) = line.rsplit_once(' ').unwrap();
        let (series, _) = rest.rsplit_once(' ').unwrap();
        let stamp: i64 = stamp.parse().unwrap();
        match last {
            Some((previous, at)) if previous == series => {
                assert!(at < stamp, "{series}: samples in time order")
            }
            _ => assert!(series_seen.insert(series), "{series} is contiguous"),
        }
        last = Some((series, stamp));
    }
}

/// Shows that a watermark stopping exactly on a boundary stamps the final state there: the
/// basic ledger ends at 10:00, so the last hourly sample at 10:00 holds all of it.
#[test]
fn openmetrics_history_stamps_a_boundary_reached_exactly() {
    let text = history_of("basic", "1h");
    // 2026-01-10T10:00:00Z; the first event is at 08:00, so 08:00, 09:00 and 10:00 are stamped.
    let ten = 1_768_039_200;
    assert!(
        text.contains(&format!(
            "marginstream_portfolio_revenue{{window=\"all\"}} 1250.3 {ten}\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "marginstream_revenue{{customer_id=\"acme\",window=\"24h\"}} 1000 {}\n",
        ten - 3_600
    )));
    assert_eq!(
        text.matches(r#"marginstream_portfolio_revenue{window="all"}"#)
            .count(),
        3
    );
    // --step needs --openmetrics-out and the reverse.
    let dir = tempfile::tempdir().unwrap();
    let ledger = root().join("tests/golden/basic/input.jsonl");
    let output = run(
        dir.path(),
        &[
            "replay",
            "--input",
            ledger.to_str().unwrap(),
            "--step",
            "1h",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn run_refuses_a_corrupt_checkpoint_at_once() {
    // Before any broker is contacted: the state is refused whole, and the process exits.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(
        state.join("checkpoint.bin"),
        b"MSCKPT\x00\x01 not a checkpoint",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let output = run(
        dir.path(),
        &[
            "run",
            "--state-dir",
            state.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing the checkpoint") && stderr.contains("move it away"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "it exits at once, the HTTP server with it"
    );
}
