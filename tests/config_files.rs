//! Every configuration file shipped in `config/` is valid (STYLE.md §5), and invalid ones
//! are refused with every problem named by its key.

use std::fs;

use marginstream_tests::{root, run};

/// Shows that `check-config` accepts every file in `config/`.
#[test]
fn shipped_configurations_are_valid() {
    let mut checked = 0;
    for entry in fs::read_dir(root().join("config")).expect("config/ exists") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = run(
                &root(),
                &["check-config", "--config", path.to_str().unwrap()],
            );
            assert!(
                output.status.success(),
                "{} is invalid: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "config/ holds the default and at least one example"
    );
}

/// Shows that an invalid file gets exit code 2 and one line per problem, each naming its key.
#[test]
fn invalid_configuration_names_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    fs::write(
        &path,
        r#"
[ledger]
windows = ["24h", "90m", "1d"]
bucket = "1h"
clock = "sundial"
reporting_currency = "usd"
max_customers = 0
colour = "blue"

[ledger.fx]
EUR = "-1"

[metrics]
listen = "everywhere"
web_config_file = " "

[[tagging.rules]]
function = "Marketing"
categories = ["ads"]
"#,
    )
    .unwrap();
    let output = run(
        dir.path(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "ledger.windows: window 90m is not a whole number",
        "ledger.windows: windows 24h and 1d are the same length",
        "ledger.clock",
        "ledger.reporting_currency",
        "ledger.max_customers",
        "ledger.colour: unknown key",
        "ledger.fx.EUR: rate -1 must be positive",
        "metrics.listen",
        "metrics.web_config_file: must not be empty",
        "tagging.rules[0].function",
    ] {
        assert!(stderr.contains(key), "the report names {key:?}:\n{stderr}");
    }
}

/// Shows that environment variables override the file and flags override both.
#[test]
fn environment_and_flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    fs::write(&path, "[ledger]\nwindows = [\"24h\"]\nbucket = \"1h\"\n").unwrap();
    let output = std::process::Command::new(marginstream_tests::binary())
        .args([
            "check-config",
            "--config",
            path.to_str().unwrap(),
            "--bucket",
            "30m",
        ])
        .env("MARGINSTREAM_LEDGER__WINDOWS", r#"["2h","6h"]"#)
        .env("MARGINSTREAM_LEDGER__FX__eur", r#""1.1""#)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(r#"windows = ["2h", "6h"]"#) || stdout.contains("\"2h\","),
        "{stdout}"
    );
    assert!(stdout.contains(r#"bucket = "30m""#), "{stdout}");
    assert!(stdout.contains(r#"EUR = "1.1""#), "{stdout}");
    let output = std::process::Command::new(marginstream_tests::binary())
        .args(["check-config"])
        .env("MARGINSTREAM_LEDGER__WINDOWZ", r#"["2h"]"#)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ledger.windowz: unknown key"));
    // Kubernetes' service links for a Service named marginstream are not overrides.
    let output = std::process::Command::new(marginstream_tests::binary())
        .args(["check-config"])
        .env("MARGINSTREAM_PORT", "tcp://10.0.0.7:9898")
        .env("MARGINSTREAM_SERVICE_HOST", "10.0.0.7")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
