//! What the workload recorded — single-key operations or transactions — and what the checker
//! made of it, with the views reports need of either.

use std::time::Duration;

use crate::check::history::Outcome;
use crate::check::txn::{TxnHistory, TxnOutcome, TxnVerdict};
use crate::check::{self, CheckOutcome, History};

/// The recorded history and, when consistency was asserted and checked, the checker's outcome.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// Operations on single keys (register, cas-register, kv).
    Objects {
        /// The history.
        history: History,
        /// The linearizability check.
        check: Option<CheckOutcome>,
    },
    /// Transactions (list-append, rw-register).
    Transactions {
        /// The history.
        history: TxnHistory,
        /// The isolation check.
        check: Option<TxnOutcome>,
    },
}

impl Default for Recorded {
    fn default() -> Self {
        Recorded::Objects {
            history: History::new(),
            check: None,
        }
    }
}

/// When one operation ran, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationTime {
    /// Invocation, in nanoseconds since the window opened.
    pub invoke: u64,
    /// Completion, if known.
    pub complete: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Recorded {
    /// Operations (or transactions) recorded.
    pub fn len(&self) -> usize {
        match self {
            Recorded::Objects { history, .. } => history.ops.len(),
            Recorded::Transactions { history, .. } => history.txns.len(),
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Operations whose outcome is unknown.
    pub fn indeterminate(&self) -> usize {
        match self {
            Recorded::Objects { history, .. } => history.indeterminate(),
            Recorded::Transactions { history, .. } => history.indeterminate(),
        }
    }

    /// Operations that got a definite answer of success.
    pub fn ok(&self) -> usize {
        self.times().filter(|t| t.outcome == Outcome::Ok).count()
    }

    /// Every operation's timing, in recorded order.
    pub fn times(&self) -> Box<dyn Iterator<Item = OperationTime> + '_> {
        match self {
            Recorded::Objects { history, .. } => {
                Box::new(history.ops.iter().map(|op| OperationTime {
                    invoke: op.invoke,
                    complete: op.complete,
                    outcome: op.outcome,
                }))
            }
            Recorded::Transactions { history, .. } => {
                Box::new(history.txns.iter().map(|t| OperationTime {
                    invoke: t.invoke,
                    complete: t.complete,
                    outcome: t.outcome,
                }))
            }
        }
    }

    /// The history as native JSON Lines (`history.jsonl`).
    pub fn history_jsonl(&self) -> String {
        match self {
            Recorded::Objects { history, .. } => check::formats::write_native(history),
            Recorded::Transactions { history, .. } => check::txn::writer::write_native(history),
        }
    }

    /// The checker's page (`check.html`), when there was a check.
    pub fn check_page(&self, title: &str) -> Option<String> {
        match self {
            Recorded::Objects {
                history,
                check: Some(check),
            } => Some(check::html::render(history, check, title)),
            Recorded::Transactions {
                history,
                check: Some(check),
            } => Some(check::txn::html::render(history, check, title)),
            _ => None,
        }
    }

    /// Where on the time axis the check found the history wrong, and what to call it: the
    /// operation no linearization could place, or the first transaction of the violation.
    pub fn violation_mark(&self) -> Option<(Duration, String)> {
        match self {
            Recorded::Objects {
                history,
                check: Some(check),
            } => check
                .counterexample
                .as_ref()
                .and_then(|cx| history.ops.get(cx.blocked))
                .map(|op| (Duration::from_nanos(op.invoke), "not linearizable".into())),
            Recorded::Transactions {
                history,
                check: Some(check),
            } if check.verdict == TxnVerdict::Violated => {
                let anomaly = check.violation()?;
                let first = anomaly.txns.iter().filter_map(|&t| history.txns.get(t));
                let at = first.map(|t| t.invoke).min()?;
                Some((Duration::from_nanos(at), anomaly.kind.name()))
            }
            _ => None,
        }
    }
}
