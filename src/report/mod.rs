//! What an experiment leaves behind for people and CI systems: `result.json` (the CRD status
//! shape), `history.jsonl`, `junit.xml`, `report.html` and the checker's `check.html`.

pub mod html;
pub mod junit;

use std::path::{Path, PathBuf};

use crate::engine::experiment::ExperimentOutcome;

/// The files written into an output directory.
#[derive(Debug, Clone)]
pub struct WrittenReport {
    /// The directory.
    pub dir: PathBuf,
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
}

/// Writes every output of an experiment into `dir` (created if needed).
pub fn write_all(
    dir: &Path,
    name: &str,
    outcome: &ExperimentOutcome,
) -> std::io::Result<WrittenReport> {
    std::fs::create_dir_all(dir)?;
    remove_partial_files(dir);
    let mut files = Vec::new();
    // Each file is written whole under a temporary name and renamed: a run killed while
    // writing leaves no half a result.json or junit.xml for a CI gate to misread.
    let mut write = |file: &str, contents: &[u8]| -> std::io::Result<()> {
        let path = dir.join(file);
        let partial = dir.join(format!(".{file}{PARTIAL}"));
        std::fs::write(&partial, contents)?;
        std::fs::rename(&partial, &path)?;
        files.push(path);
        Ok(())
    };
    let mut status = outcome.status.clone();
    status.report = Some(crate::api::ReportRef {
        config_map: None,
        path: Some(dir.display().to_string()),
    });
    write(
        "result.json",
        serde_json::to_string_pretty(&status)
            .expect("status serializes")
            .as_bytes(),
    )?;
    write("history.jsonl", outcome.recorded.history_jsonl().as_bytes())?;
    write("junit.xml", junit::render(name, outcome).as_bytes())?;
    if let Some(page) = outcome.recorded.check_page(&format!("{name}: history")) {
        write("check.html", page.as_bytes())?;
    }
    write("report.html", html::render(name, outcome).as_bytes())?;
    Ok(WrittenReport {
        dir: dir.to_owned(),
        files,
    })
}

/// The suffix of a report file being written.
const PARTIAL: &str = ".partial";

/// Removes what a run killed while writing its report left (`.<file>.partial`).
fn remove_partial_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(PARTIAL) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
