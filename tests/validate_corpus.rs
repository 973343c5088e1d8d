//! The manifest corpus: every file under `tests/invalid/` must be rejected with the messages its
//! `# expect: <fragment>` lines name, and every file under `tests/valid/` and `examples/` must be
//! accepted without a single problem.
//!
//! The text the fragments are matched against is what `schism validate` prints for a file,
//! without the `FILE:` prefix: one line `{doc}: {path}: {reason}` per problem.

use std::fs;
use std::path::{Path, PathBuf};

use schism::api::validate::{DocumentReport, validate_bytes};

/// At least this many invalid manifests must exist, so a lost directory cannot pass silently.
const MIN_INVALID_FILES: usize = 40;
/// At least this many valid variants must exist.
const MIN_VALID_FILES: usize = 10;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.yaml` / `.yml` files of `dir`, sorted, descending into subdirectories when `recursive`.
fn yaml_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if recursive {
                out.extend(yaml_files(&path, true));
            }
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every problem as `schism validate` prints it, minus the file name: `DOC: PATH: REASON`.
fn render(reports: &[DocumentReport]) -> Vec<String> {
    reports
        .iter()
        .flat_map(|r| {
            r.problems
                .iter()
                .map(move |p| format!("{}: {}", r.index, p))
        })
        .collect()
}

/// The fragments of the file's `# expect:` lines.
fn expectations(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# expect:"))
        .map(|fragment| fragment.trim_start().to_owned())
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_invalid_manifest_is_rejected_with_the_expected_messages() {
    let files = yaml_files(&root().join("tests/invalid"), false);
    let mut failures = Vec::new();
    for file in &files {
        let bytes =
            fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        // Fragments are read as text even when the rest of the file is not valid UTF-8.
        let expected = expectations(&String::from_utf8_lossy(&bytes));
        let reports = validate_bytes(&bytes);
        let printed = render(&reports);
        let mut wrong = Vec::new();
        if expected.is_empty() {
            wrong.push("has no `# expect: <fragment>` line".to_owned());
        }
        if printed.is_empty() {
            wrong.push("was accepted: no problem reported".to_owned());
        }
        for fragment in &expected {
            if fragment.trim().is_empty() {
                wrong.push("has an empty `# expect:` fragment".to_owned());
            } else if !printed.iter().any(|line| line.contains(fragment.as_str())) {
                wrong.push(format!("missing: {fragment}"));
            }
        }
        if !wrong.is_empty() {
            let got = if printed.is_empty() {
                "    (nothing)".to_owned()
            } else {
                printed
                    .iter()
                    .map(|l| format!("    got: {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            failures.push(format!(
                "{}\n  {}\n{got}",
                relative(file),
                wrong.join("\n  ")
            ));
        }
    }
    assert!(
        files.len() >= MIN_INVALID_FILES,
        "tests/invalid holds {} manifests; expected at least {MIN_INVALID_FILES}",
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests are not rejected as expected:\n\n{}\n",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_valid_manifest_and_example_is_accepted() {
    let valid = yaml_files(&root().join("tests/valid"), false);
    assert!(
        valid.len() >= MIN_VALID_FILES,
        "tests/valid holds {} manifests; expected at least {MIN_VALID_FILES}",
        valid.len()
    );
    // examples/cluster holds the workloads the experiments target (an etcd StatefulSet), not
    // Chaos manifests; scripts/validate-packaging.sh checks those against the Kubernetes API.
    let cluster_workloads = root().join("examples").join("cluster");
    let examples: Vec<_> = yaml_files(&root().join("examples"), true)
        .into_iter()
        .filter(|path| !path.starts_with(&cluster_workloads))
        .collect();
    assert!(!examples.is_empty(), "examples/ holds no YAML file");
    let mut failures = Vec::new();
    for file in valid.iter().chain(&examples) {
        let bytes =
            fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let reports = validate_bytes(&bytes);
        let printed = render(&reports);
        if reports.is_empty() {
            failures.push(format!("{}\n  no document reported", relative(file)));
        } else if !printed.is_empty() {
            failures.push(format!(
                "{}\n{}",
                relative(file),
                printed
                    .iter()
                    .map(|l| format!("    got: {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        } else if let Some(report) = reports
            .iter()
            .find(|r| r.chaos.is_none() && r.schedule.is_none())
        {
            failures.push(format!(
                "{}\n  document {} has no problem but no parsed Chaos or ChaosSchedule either",
                relative(file),
                report.index
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} valid manifests are rejected:\n\n{}\n",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn documents_are_indexed_and_a_trailing_separator_adds_none() {
    let bytes = fs::read(root().join("tests/valid/multi-document.yaml"))
        .expect("tests/valid/multi-document.yaml");
    let reports = validate_bytes(&bytes);
    let indexes: Vec<usize> = reports.iter().map(|r| r.index).collect();
    assert_eq!(
        indexes,
        [0, 1, 2],
        "three documents, a leading and a trailing `---`"
    );
    let names: Vec<Option<String>> = reports
        .iter()
        .map(|r| r.chaos.as_ref().and_then(|c| c.metadata.name.clone()))
        .collect();
    assert_eq!(
        names,
        [
            Some("first".to_owned()),
            Some("second".to_owned()),
            Some("third".to_owned())
        ]
    );
}
