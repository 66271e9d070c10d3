//! Shared helpers of the integration tests: locating the binary, running it, and comparing
//! texts with a readable diff.

pub mod exposition;
pub mod topic;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Returns the workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the path of the `marginstream` binary built by `cargo build`.
///
/// # Panics
///
/// Panics, saying how to build it, when the binary is missing.
pub fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let exe = format!("marginstream{}", std::env::consts::EXE_SUFFIX);
    // Prefer the binary of the profile these tests were built with.
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target.join(profile).join(&exe);
    assert!(
        path.exists(),
        "the marginstream binary is missing at {}: run `cargo build -p marginstream` first (make test does)",
        path.display()
    );
    path
}

/// Runs the binary with `args` in `dir`, with no `MARGINSTREAM_*` variable from the caller.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(binary());
    command.args(args).current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("MARGINSTREAM_") {
            command.env_remove(name);
        }
    }
    command.output().expect("the marginstream binary starts")
}

/// Asserts two texts are equal, printing a line diff of the first differences otherwise.
///
/// # Panics
///
/// Panics when they differ.
pub fn assert_text_eq(context: &str, expected: &str, actual: &str) {
    if expected == actual {
        return;
    }
    let mut report = String::new();
    let expected_lines: Vec<&str> = expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    let mut shown = 0;
    for index in 0..expected_lines.len().max(actual_lines.len()) {
        let e = expected_lines.get(index).copied();
        let a = actual_lines.get(index).copied();
        if e != a {
            report.push_str(&format!(
                "line {}:\n  expected: {}\n  actual:   {}\n",
                index + 1,
                e.unwrap_or("<none>"),
                a.unwrap_or("<none>")
            ));
            shown += 1;
            if shown == 10 {
                report.push_str("  ...\n");
                break;
            }
        }
    }
    panic!("{context}: output differs from the golden file\n{report}(set UPDATE_GOLDEN=1 to rewrite golden files, then check the diff by hand)");
}
