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

/// Shows that a closed output pipe (`replay ... | head -1`) ends the process quietly with
/// exit code 0, as for every Unix filter (issue 8); the same for `generate`.
#[test]
fn a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // An exposition of about a megabyte: far more than a pipe's buffer.
    let ledger = dir.path().join("ledger.jsonl");
    let generated = run(
        dir.path(),
        &[
            "generate",
            "--customers",
            "300",
            "--days",
            "10",
            "--output",
            ledger.to_str().unwrap(),
        ],
    );
    assert!(generated.status.success());
    for args in [
        vec![
            "replay",
            "--progress",
            "never",
            "--input",
            ledger.to_str().unwrap(),
        ],
        vec!["generate", "--customers", "50", "--days", "30"],
    ] {
        let mut child = Command::new(binary())
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, like `head -1`, then close the pipe before the rest is written.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 1];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
    // Through a real shell pipeline too.
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' replay --progress never --input '{}' | head -1",
            binary().display(),
            ledger.display()
        ))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("error"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    // The 12 gauge families of section 5, the five segment families and the customers per
    // tier (section 8); not the counters, nor the exposition's count of exposed customers.
    assert_eq!(
        types.len(),
        18,
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

/// Writes a generated ledger of `customers` × 30 days, without bad lines, to `dir` and
/// returns its bytes.
fn generated_ledger(dir: &std::path::Path, customers: &str) -> Vec<u8> {
    let path = dir.join("generated.jsonl");
    let output = run(
        dir,
        &[
            "generate",
            "--customers",
            customers,
            "--days",
            "30",
            "--output",
            path.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "generate failed");
    std::fs::read(path).unwrap()
}

/// Returns `bytes` as one gzip member.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Shows that a truncated gzip ledger fails with exit code 1, naming the file and the byte
/// offset where its data ends, and that nothing of it is taken for events: no result is
/// printed, and the line cut in two is not rejected as malformed (the batches read before
/// are applied and the ledger has no bad line, so no line is rejected at all) (issue 15).
#[test]
fn truncated_gzip_fails_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    // About 3 MB of text: several batches of 1 MiB before the cut.
    let ledger = generated_ledger(dir.path(), "150");
    assert!(ledger.len() > 2 << 20, "{} bytes", ledger.len());
    let packed = gzip(&ledger);
    let cut = packed.len() * 3 / 4;
    std::fs::write(dir.path().join("ledger.jsonl.gz"), &packed[..cut]).unwrap();
    let output = run(
        dir.path(),
        &[
            "replay",
            "--input",
            "ledger.jsonl.gz",
            "--progress",
            "never",
            "--rejected-out",
            "rejected.jsonl",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: cannot decompress ledger.jsonl.gz (gzip) at byte {cut} of the file: incomplete deflate stream"
        )),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no result after an error");
    let rejected = std::fs::read_to_string(dir.path().join("rejected.jsonl")).unwrap();
    assert_eq!(rejected, "", "no line, whole or partial, is rejected");
}

/// Shows that compressed standard input is decompressed like a file, and that a file saved
/// with a byte order mark gives the same result as without (issue 15).
#[test]
fn reads_compressed_standard_input_and_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = root().join("tests/golden/rejections/input.jsonl");
    let config = root().join("tests/golden/rejections/config.toml");
    let text = std::fs::read(&ledger).unwrap();
    let replay = |input: &str, stdin: Vec<u8>| {
        let mut child = Command::new(binary())
            .args([
                "replay",
                "--progress",
                "never",
                "--format",
                "json",
                "--input",
                input,
            ])
            .arg("--config")
            .arg(&config)
            .arg("--rejected-out")
            .arg(dir.path().join("rejected.jsonl"))
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&stdin).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rejected = std::fs::read_to_string(dir.path().join("rejected.jsonl")).unwrap();
        (output.stdout, rejected)
    };
    let plain = replay(ledger.to_str().unwrap(), Vec::new());
    assert!(
        plain.1.lines().count() > 10,
        "the ledger has rejected lines to compare"
    );
    assert_eq!(replay("-", gzip(&text)), plain, "gzip on standard input");
    let marked = [&[0xef, 0xbb, 0xbf][..], &text].concat();
    std::fs::write(dir.path().join("bom.jsonl"), &marked).unwrap();
    assert_eq!(
        replay("bom.jsonl", Vec::new()),
        plain,
        "a file with a byte order mark"
    );
}

/// Shows that `-` given twice is a usage error (exit code 2), and that a ledger compressed
/// with a format that is not read is refused by name instead of read as garbage (issue 15).
#[test]
fn refuses_stdin_twice_and_xz() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["replay", "--input", "-", "--input", "-"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--input - (standard input) can be given only once"),
        "{stderr}"
    );

    std::fs::write(
        dir.path().join("ledger.jsonl.xz"),
        b"\xfd7zXZ\x00\x00\x04\xe6\xd6",
    )
    .unwrap();
    let output = run(dir.path(), &["replay", "--input", "ledger.jsonl.xz"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ledger.jsonl.xz is compressed with xz"),
        "{stderr}"
    );
}

/// Writes a certificate of a fresh key (and the key) as `<stem>.crt` and `<stem>.key`.
fn write_self_signed(dir: &std::path::Path, stem: &str) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{stem}.key")),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
}

/// A bcrypt hash (cost 4) of `scrape-secret`.
const SCRAPE_HASH: &str = "$2b$04$S9uK3Iveo.3UEijtp6xzIOwoMLv99rryhzQFak0xFaGv2ONiw6HPO";

/// Runs `command` with a configuration whose `metrics.web_config_file` is `web` (a path in
/// `dir`, written with `yaml` unless `None`).
fn with_web_config(
    dir: &std::path::Path,
    command: &[&str],
    web: &str,
    yaml: Option<&str>,
) -> std::process::Output {
    let web = dir.join(web);
    if let Some(yaml) = yaml {
        std::fs::write(&web, yaml).unwrap();
    }
    let config = dir.join("marginstream.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nweb_config_file = {:?}\n", web.to_str().unwrap()),
    )
    .unwrap();
    let mut args = command.to_vec();
    args.extend(["--config", config.to_str().unwrap()]);
    run(dir, &args)
}

/// Shows that check-config names each problem of the web configuration file with the file
/// and the key, and exits 2: a missing file, a file that does not parse, a key that does
/// not match its certificate, a hash that is not bcrypt (issue #13).
#[test]
fn check_config_names_each_web_config_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_self_signed(dir.path(), "server");
    write_self_signed(dir.path(), "other");
    let file = |name: &str| {
        format!(
            "metrics.web_config_file ({})",
            dir.path().join(name).display()
        )
    };
    let cases = [
        ("missing.yml", None, format!("{}: cannot read", file("missing.yml"))),
        (
            "unparsable.yml",
            Some("tls_server_config:\n  cert_file: \"server.crt\n"),
            format!(
                "{}: tls_server_config.cert_file: not valid YAML: found unexpected end of stream",
                file("unparsable.yml")
            ),
        ),
        (
            "mismatch.yml",
            Some("tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n"),
            format!(
                "{}: tls_server_config.key_file: the key in {} does not match the certificate in {}",
                file("mismatch.yml"),
                dir.path().join("other.key").display(),
                dir.path().join("server.crt").display()
            ),
        ),
        (
            "plaintext.yml",
            Some("basic_auth_users:\n  prometheus: scrape-secret\n"),
            format!(
                "{}: basic_auth_users.prometheus: not a bcrypt hash",
                file("plaintext.yml")
            ),
        ),
    ];
    for (name, yaml, expected) in cases {
        let output = with_web_config(dir.path(), &["check-config"], name, yaml);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{name}: expected {expected:?} in\n{stderr}"
        );
        assert_eq!(
            stderr.matches("\n  - ").count(),
            1,
            "{name}: exactly that problem: {stderr}"
        );
    }
    let output = with_web_config(
        dir.path(),
        &["check-config"],
        "good.yml",
        Some(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: \"{SCRAPE_HASH}\"\n"
        )),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("TLS (TLS12-TLS13, client certificates NoClientCert), basic auth (1 user)"),
        "{stdout}"
    );
}

/// Shows that `run` refuses to start on a broken web configuration, exit 2, before it binds
/// the listener: never an open listener in its place (issue #13).
#[test]
fn run_refuses_a_broken_web_config_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let listen = format!("127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let output = with_web_config(
        dir.path(),
        &[
            "run",
            "--listen",
            &listen,
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
        "web.yml",
        Some("basic_auth_users:\n  prometheus: scrape-secret\n"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("basic_auth_users.prometheus: not a bcrypt hash"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("serving /metrics"),
        "it never listened: {stderr}"
    );
    assert!(!dir.path().join("state").exists(), "nor touched the state");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

/// Runs `replay --compare-config` on the comparison golden ledger with NEW `new` (the
/// case's own when `None`), OLD `old` and `extra` arguments, in `dir`.
fn compare_with(
    dir: &std::path::Path,
    new: Option<&std::path::Path>,
    old: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let case = root().join("tests/golden/compare_reclassify");
    let new = new.map_or_else(|| case.join("config.toml"), std::path::Path::to_path_buf);
    let mut args = vec![
        "replay".to_owned(),
        "--input".to_owned(),
        case.join("input.jsonl").display().to_string(),
        "--config".to_owned(),
        new.display().to_string(),
        "--compare-config".to_owned(),
        old.display().to_string(),
        "--progress".to_owned(),
        "never".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(dir, &args)
}

/// Shows that `replay --compare-config` refuses two configurations that differ in a key the
/// comparison needs them to share, naming every such key with both values, with exit code
/// 2 and no output (issue 11); a difference elsewhere (the metrics budget) is accepted.
#[test]
fn compare_refuses_configurations_that_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.toml");
    std::fs::write(
        &old,
        "[ledger]\nwindows = [\"1d\", \"7d\"]\nbucket = \"1d\"\nclock = \"wall\"\n\
         lifetime = false\nreporting_currency = \"EUR\"\nmax_customers = 10\n",
    )
    .unwrap();
    let output = compare_with(dir.path(), None, &old, &["--format", "json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty(), "no report is printed");
    for (key, old, new) in [
        (
            "ledger.windows",
            r#"["1d", "7d"]"#,
            r#"["24h", "7d", "30d"]"#,
        ),
        ("ledger.bucket", r#""1d""#, r#""1h""#),
        ("ledger.clock", r#""wall""#, r#""event""#),
        ("ledger.lifetime", "false", "true"),
        ("ledger.reporting_currency", r#""EUR""#, r#""USD""#),
        ("ledger.max_customers", "10", "1000000"),
    ] {
        let expected = format!("{key}: {old} in OLD (--compare-config) but {new} in NEW");
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
    assert!(!stderr.contains("ledger.max_event_bytes"), "{stderr}");

    std::fs::write(&old, "[metrics]\ncustomers_max = 1\n").unwrap();
    let output = compare_with(dir.path(), None, &old, &["--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Shows the usage errors of `replay --compare-config` (exit code 2, saying what to do
/// instead): `--format prometheus`, which has no rendering of a comparison, and
/// `--openmetrics-out`, the history of one configuration; and that an invalid OLD is a
/// configuration error naming its file and key, as an invalid `--config` is.
#[test]
fn compare_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let old = root().join("tests/golden/compare_reclassify/old.toml");
    let output = compare_with(dir.path(), None, &old, &["--format", "prometheus"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--format prometheus cannot show a comparison"),
        "{stderr}"
    );

    let history = dir.path().join("history.om");
    let output = compare_with(
        dir.path(),
        None,
        &old,
        &[
            "--openmetrics-out",
            history.to_str().unwrap(),
            "--step",
            "1h",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--openmetrics-out"), "{stderr}");
    assert!(!history.exists(), "nothing is written");

    let invalid = dir.path().join("invalid.toml");
    std::fs::write(&invalid, "[ledger.fx]\nEUR = \"-1\"\n").unwrap();
    let output = compare_with(dir.path(), None, &invalid, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid.toml"), "{stderr}");
    assert!(stderr.contains("ledger.fx.EUR"), "{stderr}");
}

/// Shows that comparing a configuration with itself reports no change: no customer
/// changed, every change zero, no move, and the counters equal.
#[test]
fn compare_with_itself_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let new = root().join("tests/golden/compare_reclassify/config.toml");
    let output = compare_with(dir.path(), Some(&new), &new, &["--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["customers_changed"], 0);
    assert_eq!(report["moves"], serde_json::json!([]));
    assert_eq!(report["repriced"], serde_json::json!([]));
    for customer in report["customers"].as_array().unwrap() {
        assert_eq!(customer["changed"], false, "{customer}");
        for window in customer["windows"].as_object().unwrap().values() {
            assert_eq!(window["old"], window["new"], "{customer}");
            assert_eq!(window["change"]["revenue"], "0", "{customer}");
        }
    }
    assert!(
        report["customers"].as_array().unwrap().len() >= 3,
        "the ledger has customers to compare"
    );
    let output = compare_with(dir.path(), Some(&new), &new, &["--format", "table"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("window all: 0 of 3 customers changed"),
        "{text}"
    );
    assert!(text.contains("no event moved between functions"), "{text}");
}
