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
    let mut files = Vec::new();
    let mut write = |file: &str, contents: &[u8]| -> std::io::Result<()> {
        let path = dir.join(file);
        std::fs::write(&path, contents)?;
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
