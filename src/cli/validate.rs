//! `schism validate FILE...`: every problem of every document, one line each, as
//! `FILE:DOC: PATH: REASON`.

use std::io::Write;
use std::path::PathBuf;

use crate::api::validate::validate_bytes;

/// Arguments of `schism validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Manifest files (multi-document YAML); `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print nothing for valid files.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Exit codes of `schism validate`.
pub const EXIT_VALID: i32 = 0;
/// Some document is invalid.
pub const EXIT_INVALID: i32 = 1;
/// Some file could not be read.
pub const EXIT_UNREADABLE: i32 = 2;

/// Validates the files and returns the exit code.
pub fn run(args: &ValidateArgs) -> i32 {
    let mut stdout = std::io::stdout().lock();
    let mut unreadable = false;
    let mut invalid = false;
    let (mut documents, mut bad_documents) = (0usize, 0usize);
    for file in &args.files {
        let shown = file.display().to_string();
        let bytes = if shown == "-" {
            let mut buffer = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer).map(|_| buffer)
        } else {
            std::fs::read(file)
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("{shown}: cannot read: {e}");
                unreadable = true;
                continue;
            }
        };
        for report in validate_bytes(&bytes) {
            documents += 1;
            if report.problems.is_empty() {
                if !args.quiet {
                    let (kind, meta) = match (&report.chaos, &report.schedule) {
                        (Some(c), _) => ("Chaos", Some(&c.metadata)),
                        (None, Some(s)) => ("ChaosSchedule", Some(&s.metadata)),
                        (None, None) => ("Chaos", None),
                    };
                    let name = meta
                        .map(|m| match (&m.name, &m.generate_name) {
                            (Some(name), _) => name.clone(),
                            (None, Some(prefix)) => format!("(generateName {prefix})"),
                            (None, None) => String::new(),
                        })
                        .unwrap_or_default();
                    let _ = writeln!(stdout, "{shown}:{}: valid {kind} {name}", report.index);
                }
                continue;
            }
            invalid = true;
            bad_documents += 1;
            for problem in &report.problems {
                let _ = writeln!(stdout, "{shown}:{}: {problem}", report.index);
            }
        }
    }
    if !args.quiet || invalid || unreadable {
        eprintln!("{documents} document(s) checked, {bad_documents} invalid");
    }
    if unreadable {
        EXIT_UNREADABLE
    } else if invalid {
        EXIT_INVALID
    } else {
        EXIT_VALID
    }
}
