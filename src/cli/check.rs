//! `schism check`: the consistency checkers on recorded histories — linearizability for
//! single-object histories, isolation anomalies for transactional ones (see `check_txn`).
//!
//! Exit status: 0 when every file satisfies its model, 1 when any does not, 2 when any is
//! unknown (and none fails), 3 when any file could not be read or interpreted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::check::counterexample::render_text;
use crate::check::formats::{self, Format};
use crate::check::history::{Call, History, Operation, describe_op};
use crate::check::txn::{Consistency, TxnHistory, TxnModel, TxnOutcome, TxnVerdict};
use crate::check::{CheckOptions, CheckOutcome, ModelKind, Verdict, check_history, html};

use super::check_txn;

/// What `--model` names: a single-object model or a transactional one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckModel {
    /// register, cas-register or kv: checked for linearizability.
    Object(ModelKind),
    /// list-append or rw-register: checked for a transactional consistency model.
    Txn(TxnModel),
}

impl std::str::FromStr for CheckModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(m) = s.parse::<TxnModel>() {
            return Ok(CheckModel::Txn(m));
        }
        s.parse::<ModelKind>().map(CheckModel::Object).map_err(|_| {
            format!(
                "unknown model {s:?}: expected register, cas-register, kv, list-append or rw-register"
            )
        })
    }
}

/// Check recorded histories for linearizability.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Model: register, cas-register or kv (checked for linearizability), or list-append or
    /// rw-register (transactions, checked for --consistency). Default: the header's model;
    /// for transactional histories the one their micro-operations imply; cas-register for
    /// Jepsen etcd logs, kv for kv EDN logs, else cas-register.
    #[arg(long, value_name = "M")]
    pub model: Option<CheckModel>,
    /// For transactional histories, the consistency model to check: read-uncommitted,
    /// read-committed, repeatable-read, snapshot-isolation, serializable,
    /// strong-session-snapshot-isolation, strong-snapshot-isolation,
    /// strong-session-serializable or strict-serializable.
    #[arg(long, value_name = "MODEL", default_value = "strict-serializable")]
    pub consistency: Consistency,
    /// Input format: auto, native, jepsen or kv.
    #[arg(long, value_name = "F", default_value = "auto")]
    pub format: Format,
    /// Time budget per file (e.g. 500ms, 10s, 5m; 0 for none). When it runs out the verdict
    /// is unknown, never a guess.
    #[arg(long, value_name = "D", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Memory budget per file (e.g. 512Mi, 2Gi): how much the heap may grow during the check
    /// before the verdict is unknown. Default: 60% of this process's memory limit (its
    /// cgroup's, else the machine's), less what it already holds.
    #[arg(long, value_name = "SIZE", value_parser = crate::check::memory::parse_size)]
    pub max_memory: Option<usize>,
    /// Print one JSON object per file (JSON Lines) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML page of the history (with several inputs, one page each:
    /// FILE's name with the input's name appended).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Check the whole store as one state instead of key by key (slower; for cross-checks).
    #[arg(long)]
    pub no_partition: bool,
    /// History files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Parses `500ms`, `10s`, `5m`, `1h`, `250us`, `100ns`; `0` alone means no limit.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit: use ns, us, ms, s, m or h (e.g. 10s)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not start with a whole number"))?;
    let per = match unit {
        "ns" => Duration::from_nanos(1),
        "us" | "µs" => Duration::from_micros(1),
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ns, us, ms, s, m or h"
            ));
        }
    };
    u32::try_from(n)
        .ok()
        .and_then(|n| per.checked_mul(n))
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Runs `schism check` and returns the process exit status.
pub fn run(args: CheckArgs) -> i32 {
    let mut unreadable = false;
    let mut violated = false;
    let mut unknown = false;
    let several = args.files.len() > 1;
    for path in &args.files {
        let checked = match read_head(path) {
            Err(message) => Err(message),
            Ok(head) if is_transactional(&args, &head) => {
                check_txn::check_file(&args, path).map(|(h, o)| Checked::Txn(h, o))
            }
            Ok(_) => check_file(&args, path).map(|(h, o)| Checked::Object(h, o)),
        };
        match checked {
            Err(message) => {
                unreadable = true;
                if args.json {
                    println!(
                        "{}",
                        json!({"file": path.display().to_string(), "verdict": "error", "error": message})
                    );
                } else {
                    eprintln!("error: {message}");
                }
            }
            Ok(Checked::Txn(history, outcome)) => {
                match outcome.verdict {
                    TxnVerdict::Satisfied => {}
                    TxnVerdict::Violated => violated = true,
                    TxnVerdict::Unknown => unknown = true,
                }
                if args.json {
                    println!("{}", check_txn::to_json(path, &history, &outcome));
                } else {
                    print!("{}", check_txn::to_text(path, &outcome));
                }
                if let Some(out) = &args.html {
                    let target = if several {
                        html_name(out, path)
                    } else {
                        out.clone()
                    };
                    let page = crate::check::txn::html::render(
                        &history,
                        &outcome,
                        &path.display().to_string(),
                    );
                    if let Err(e) = std::fs::write(&target, page) {
                        eprintln!("error: cannot write {}: {e}", target.display());
                        unreadable = true;
                    } else if !args.json {
                        println!("  html: {}", target.display());
                    }
                }
            }
            Ok(Checked::Object(history, outcome)) => {
                match outcome.verdict {
                    Verdict::Linearizable => {}
                    Verdict::NotLinearizable => violated = true,
                    Verdict::Unknown => unknown = true,
                }
                if args.json {
                    println!("{}", to_json(path, &history, &outcome));
                } else {
                    print!("{}", to_text(path, &history, &outcome));
                }
                if let Some(out) = &args.html {
                    let target = if several {
                        html_name(out, path)
                    } else {
                        out.clone()
                    };
                    let page = html::render(&history, &outcome, &path.display().to_string());
                    if let Err(e) = std::fs::write(&target, page) {
                        eprintln!("error: cannot write {}: {e}", target.display());
                        unreadable = true;
                    } else if !args.json {
                        println!("  html: {}", target.display());
                    }
                }
            }
        }
    }
    if unreadable {
        3
    } else if violated {
        1
    } else if unknown {
        2
    } else {
        0
    }
}

/// A file's result, by the kind of history it held.
enum Checked {
    Object(History, CheckOutcome),
    Txn(TxnHistory, TxnOutcome),
}

/// The start of a file, enough to tell what kind of history it holds.
fn read_head(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_end(&mut head))
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// `--model list-append|rw-register`, or no `--model` and a history that says it holds
/// transactions.
fn is_transactional(args: &CheckArgs, text: &str) -> bool {
    match args.model {
        Some(CheckModel::Txn(_)) => true,
        Some(CheckModel::Object(_)) => false,
        None => crate::check::txn::formats::looks_transactional(text),
    }
}

/// `file:12: message` for a reader error.
pub(super) fn read_error(path: &Path, e: &formats::ReadError) -> String {
    match e.line() {
        Some(line) => format!("{}:{line}: {}", path.display(), strip_line(&e.to_string())),
        None => format!("{}: {e}", path.display()),
    }
}

fn check_file(args: &CheckArgs, path: &Path) -> Result<(History, CheckOutcome), String> {
    let history = formats::read_file(path, args.format).map_err(|e| read_error(path, &e))?;
    let model = match args.model {
        Some(CheckModel::Object(m)) => Some(m),
        _ => None,
    }
    .or(history.model)
    .unwrap_or(ModelKind::CasRegister);
    let mut options = CheckOptions::new(model);
    options.partition = !args.no_partition;
    options.timeout = (!args.timeout.is_zero()).then_some(args.timeout);
    options.max_memory = args.max_memory;
    let outcome = check_history(&history, &options).map_err(|e| {
        format!(
            "{}:{}: operation #{} does not fit the {model} model: {}",
            path.display(),
            e.line,
            e.op,
            e.message
        )
    })?;
    Ok((history, outcome))
}

/// `line 12: msg` → `msg`, since the caller prints `file:12:` itself.
fn strip_line(s: &str) -> &str {
    match s.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest,
        _ => s,
    }
}

fn html_name(out: &Path, input: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy().into_owned());
    let ext = out
        .extension()
        .map_or("html".into(), |s| s.to_string_lossy().into_owned());
    let input = input
        .file_name()
        .map_or("input".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}-{input}.{ext}"))
}

fn summary(outcome: &CheckOutcome) -> String {
    format!(
        "{}, {} operations, {} with unknown outcome, {} partition{}",
        outcome.model,
        outcome.operations,
        outcome.indeterminate,
        outcome.partitions,
        if outcome.partitions == 1 { "" } else { "s" }
    )
}

fn to_text(path: &Path, history: &History, outcome: &CheckOutcome) -> String {
    let ms = outcome.elapsed.as_secs_f64() * 1e3;
    let head = match outcome.verdict {
        Verdict::Linearizable => "linearizable".to_string(),
        Verdict::NotLinearizable => "NOT LINEARIZABLE".to_string(),
        Verdict::Unknown => format!(
            "unknown: {}",
            outcome.unknown_reason.as_deref().unwrap_or("no verdict")
        ),
    };
    let mut out = format!(
        "{}: {head} ({}) in {ms:.3} ms\n",
        path.display(),
        summary(outcome)
    );
    if let Some(cx) = &outcome.counterexample {
        out.push_str(&render_text(history, cx, 10));
    }
    out
}

fn op_json(id: usize, op: &Operation) -> serde_json::Value {
    let (value, swapped) = match &op.call {
        Call::Read { value } | Call::Get { value } => (value.as_ref().map(value_json), None),
        Call::Write { value } | Call::Put { value } | Call::Append { value } => {
            (Some(value_json(value)), None)
        }
        Call::Cas { from, to, swapped } => {
            (Some(json!([value_json(from), value_json(to)])), *swapped)
        }
    };
    json!({
        "id": id,
        "process": op.process,
        "f": op.call.name(),
        "key": op.key,
        "value": value,
        "swapped": swapped,
        "type": op.outcome.name(),
        "invoke": op.invoke,
        "complete": op.complete,
        "line": op.line,
        "text": describe_op(id, op),
    })
}

fn value_json(v: &crate::check::history::Value) -> serde_json::Value {
    use crate::check::history::Value;
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Int(i) => json!(i),
        Value::Str(s) => json!(s),
    }
}

fn to_json(path: &Path, history: &History, outcome: &CheckOutcome) -> serde_json::Value {
    let cx = outcome.counterexample.as_ref().map(|cx| {
        json!({
            "key": cx.key,
            "anomaly": cx.anomaly,
            "proved_by_pattern": cx.pattern,
            "blocked": op_json(cx.blocked, &history.ops[cx.blocked]),
            "pending": cx.pending.iter().map(|&i| op_json(i, &history.ops[i])).collect::<Vec<_>>(),
            "prefix_length": cx.prefix.len(),
            "prefix": cx.prefix.iter().map(|&i| op_json(i, &history.ops[i])).collect::<Vec<_>>(),
            "state_after_prefix": cx.state,
        })
    });
    json!({
        "file": path.display().to_string(),
        "verdict": outcome.verdict.name(),
        "model": outcome.model.name(),
        "operations": outcome.operations,
        "indeterminate": outcome.indeterminate,
        "partitions": outcome.partitions,
        "check_ms": outcome.elapsed.as_secs_f64() * 1e3,
        "unknown_reason": outcome.unknown_reason,
        "anomaly": outcome.counterexample.as_ref().map(|c| c.anomaly.clone()),
        "counterexample": cx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("99999999999h").is_err());
    }

    #[test]
    fn html_names_per_input() {
        let p = html_name(Path::new("/tmp/out.html"), Path::new("a/etcd_001.log"));
        assert_eq!(p, PathBuf::from("/tmp/out-etcd_001.log.html"));
    }
}
