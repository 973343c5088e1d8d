//! The consistency checker: is a recorded client history linearizable?
//!
//! * [`history`]: the history model (operations, outcomes, values);
//! * [`formats`]: readers for Schism's native JSON Lines, Jepsen etcd logs and kv EDN logs;
//! * [`models`]: the sequential specifications (register, cas-register, kv);
//! * `search` and `partition`: the Wing–Gong/Lowe search with memoisation, split by key and
//!   run on all cores;
//! * `patterns`: violations proved in near-linear time before searching, for registers whose
//!   written values are unique;
//! * [`counterexample`] and [`html`]: what a violation looks like, as text and as a page.
//!
//! This module imports nothing else from Schism, so that it can become a crate of its own.
//!
//! ```
//! use schism::check::{CheckOptions, ModelKind, Verdict, check_history, formats};
//!
//! let text = r#"{"process":0,"type":"ok","f":"write","key":"x","value":1,"invoke":0,"complete":10}
//! {"process":1,"type":"ok","f":"read","key":"x","value":null,"invoke":20,"complete":30}"#;
//! let history = formats::read_str(text, formats::Format::Auto).unwrap();
//! let outcome = check_history(&history, &CheckOptions::new(ModelKind::Register)).unwrap();
//! assert_eq!(outcome.verdict, Verdict::NotLinearizable);
//! ```

pub mod counterexample;
pub mod formats;
pub mod history;
pub mod html;
pub mod memory;
pub mod models;
mod partition;
mod patterns;
mod search;
pub mod txn;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use counterexample::Counterexample;
pub use formats::{Format, ReadError};
pub use history::{Call, History, Operation, Outcome, TimeUnit, Value};
pub use models::ModelKind;

/// How to check a history.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The sequential specification.
    pub model: ModelKind,
    /// Check each key on its own (P-compositionality). Off: one search over the whole store,
    /// with the map of all keys as the state (much slower; for cross-checking).
    pub partition: bool,
    /// Give up with [`Verdict::Unknown`] after this long. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Threads for the per-key searches; 0 means one per core.
    pub threads: usize,
    /// How much the process's heap may grow during the check, in bytes, past which the
    /// verdict is Unknown. `None`: [`memory::default_budget`], a share of the memory limit
    /// the kernel enforces on this process (its cgroup's, else the machine's).
    pub max_memory: Option<usize>,
    /// Set to stop the check early: the verdict is then Unknown. Looked at as often as the
    /// clock.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl CheckOptions {
    /// Partitioned, one thread per core, no time limit, the default memory budget.
    pub fn new(model: ModelKind) -> Self {
        CheckOptions {
            model,
            partition: true,
            timeout: None,
            threads: 0,
            max_memory: None,
            cancel: None,
        }
    }
}

/// The checker's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// There is an order of the operations, consistent with real time, that the model accepts.
    Linearizable,
    /// There is none: the history shows a consistency violation.
    NotLinearizable,
    /// The search ran out of its time or memory budget. Never a guess either way.
    Unknown,
}

impl Verdict {
    /// `linearizable`, `not-linearizable` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not-linearizable",
            Verdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of [`check_history`].
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The verdict.
    pub verdict: Verdict,
    /// The model checked against.
    pub model: ModelKind,
    /// Operations in the history.
    pub operations: usize,
    /// Operations with an unknown outcome.
    pub indeterminate: usize,
    /// Independent searches (keys, or 1 without partitioning).
    pub partitions: usize,
    /// Time spent checking (reading excluded).
    pub elapsed: Duration,
    /// Why the verdict is Unknown.
    pub unknown_reason: Option<String>,
    /// Why the verdict is NotLinearizable.
    pub counterexample: Option<Counterexample>,
}

/// A history the model cannot interpret (a function it lacks, a value of the wrong type,
/// an operation that completes before it starts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} (operation #{op}): {message}")]
pub struct ModelError {
    /// Source line of the operation (0 if the history was not read from a file).
    pub line: usize,
    /// Index of the operation in the history.
    pub op: usize,
    /// What is wrong.
    pub message: String,
}

/// Checks `history` for linearizability under `options.model`.
pub fn check_history(
    history: &History,
    options: &CheckOptions,
) -> Result<CheckOutcome, ModelError> {
    let start = Instant::now();
    let deadline = options.timeout.map(|t| start + t);
    // Counted from before the search tables are built: they are part of what the check uses.
    let max_memory = options.max_memory.unwrap_or_else(memory::default_budget);
    let gauge = memory::MemoryGauge::start(max_memory);
    let mut parts = partition::prepare(history, options)?;
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let stop = partition::Stop {
        deadline,
        requested: options.cancel.as_deref(),
        memory: &gauge,
    };
    let combined = partition::run(&mut parts, threads, &stop);
    let mut outcome = CheckOutcome {
        verdict: Verdict::Linearizable,
        model: options.model,
        operations: history.ops.len(),
        indeterminate: history.indeterminate(),
        partitions: parts.len(),
        elapsed: Duration::ZERO,
        unknown_reason: None,
        counterexample: None,
    };
    match combined {
        partition::Combined::Linearizable => {}
        partition::Combined::NotLinearizable(i, failure) => {
            outcome.verdict = Verdict::NotLinearizable;
            outcome.counterexample = Some(counterexample::build(
                history,
                options.model,
                &parts[i],
                &failure,
            ));
        }
        partition::Combined::Proved(i, pattern) => {
            outcome.verdict = Verdict::NotLinearizable;
            outcome.counterexample = Some(counterexample::from_pattern(
                history,
                options.model,
                &parts[i],
                &pattern,
            ));
        }
        partition::Combined::Unknown(reason, finished) => {
            outcome.verdict = Verdict::Unknown;
            let why = match reason {
                search::StopReason::Timeout => match options.timeout {
                    Some(t) => format!("the time budget of {t:?} ran out"),
                    None => "the time budget ran out".to_string(),
                },
                search::StopReason::Memory => format!(
                    "the search would outgrow its memory budget of {} MiB (raise it with --max-memory, or give the process more memory)",
                    max_memory >> 20
                ),
                search::StopReason::Cancelled => "the search was cancelled".to_string(),
                search::StopReason::Requested => "the check was stopped".to_string(),
                // Only a first try's limit; a part that hits it is searched again in full.
                search::StopReason::Steps => "the search ran out of steps".to_string(),
            };
            outcome.unknown_reason = Some(format!(
                "{why} ({finished} of {} partitions checked)",
                parts.len()
            ));
        }
    }
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}
