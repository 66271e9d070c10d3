//! The application crate's layout (issue 8): its top-level modules depend on each other
//! without a cycle, and no test module under `src/` is longer than the code it tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use marginstream_tests::root;

/// The application crate's source directory.
fn source_dir() -> PathBuf {
    root().join("crates/marginstream/src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the source directory is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level module a file belongs to (`live/partitions.rs` belongs to `live`).
fn module_of(path: &Path) -> String {
    let relative = path
        .strip_prefix(source_dir())
        .expect("files are under src");
    let first = relative
        .components()
        .next()
        .expect("a relative path has a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// Shows that the top-level modules form no dependency cycle: `crate::X` in module `M` is an
/// edge M -> X, and a depth-first search finds no back edge.
#[test]
fn top_level_modules_have_no_cycle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&source_dir()) {
        let module = module_of(&file);
        if module == "main" || module == "lib" {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("a source file is UTF-8");
        // Code only: a comment may name another module without depending on it.
        let text: String = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (index, _) in text.match_indices("crate::") {
            let rest = &text[index + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !target.is_empty() && target != module {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    assert!(
        edges.get("http").is_some_and(|e| e.contains("live")),
        "the scan finds http -> live: {edges:?}"
    );
    // Colors: absent = unvisited, false = on the stack, true = done.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, bool>,
        path: &mut Vec<String>,
    ) {
        match state.get(node) {
            Some(true) => return,
            Some(false) => panic!("module cycle: {} -> {node}", path.join(" -> ")),
            None => {}
        }
        state.insert(node.to_owned(), false);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, state, path);
        }
        path.pop();
        state.insert(node.to_owned(), true);
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        visit(node, &edges, &mut state, &mut Vec::new());
    }
    assert!(
        !edges.values().any(|targets| targets.contains("http")),
        "nothing depends on http (the run command): {edges:?}"
    );
}

/// Shows that every test module under `src/` (an inline `mod tests` or a `tests.rs`) is
/// shorter than the code of its module: longer suites live in `tests/`.
#[test]
fn test_modules_are_shorter_than_their_code() {
    for file in rust_files(&source_dir()) {
        let text = std::fs::read_to_string(&file).expect("a source file is UTF-8");
        let lines = text.lines().count();
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            let dir = file.parent().expect("a file has a directory");
            let code: usize = rust_files(dir)
                .iter()
                .filter(|f| *f != &file)
                .map(|f| std::fs::read_to_string(f).map_or(0, |t| t.lines().count()))
                .sum();
            assert!(
                lines < code,
                "{} has {lines} lines, its module {code}",
                file.display()
            );
        } else if let Some(start) = text.find("#[cfg(test)]\nmod tests {") {
            let test_lines = text[start..].lines().count();
            assert!(
                test_lines < lines - test_lines,
                "{}: {test_lines} lines of tests for {} of code",
                file.display(),
                lines - test_lines
            );
        }
    }
}
