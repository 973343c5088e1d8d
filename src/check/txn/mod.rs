//! The transactional checker: which isolation level did a database really give?
//!
//! From a history of transactions over list-append or rw-register keys it infers the
//! dependencies between transactions (write-write, write-read, read-write, plus each
//! client's order and real time), finds the dependency cycles and the anomalies that need no
//! cycle, and says which consistency models they rule out, each with a minimal explanation
//! a person can check against the history. The approach is the one Kingsbury and Alvaro
//! describe for Elle (VLDB 2020).
//!
//! * [`history`]: transactions and micro-operations;
//! * [`formats`]: native JSON Lines and Jepsen EDN; [`writer`]: native JSON Lines out;
//! * [`anomaly`]: anomaly classes, consistency models and what rules out what;
//! * `list_append`, `rw_register`, `order`: the inference;
//! * `graph` and `cycles`: the dependency graph and the cycle search.
//!
//! It imports nothing of Schism beyond the single-object history types.
//!
//! ```
//! use schism::check::txn::{self, Consistency, TxnModel, TxnOptions, TxnVerdict};
//!
//! // Write skew: each transaction reads both keys empty and appends to one.
//! let text = r#"{"process":0,"type":"ok","f":"txn","value":[["r","x",[]],["r","y",[]],["append","x",1]],"invoke":0,"complete":10}
//! {"process":1,"type":"ok","f":"txn","value":[["r","x",[]],["r","y",[]],["append","y",2]],"invoke":1,"complete":11}
//! {"process":0,"type":"ok","f":"txn","value":[["r","x",[1]],["r","y",[2]]],"invoke":20,"complete":30}"#;
//! let history = txn::formats::read_str(text).unwrap();
//! let outcome = txn::check(&history, &TxnOptions::new(TxnModel::ListAppend, Consistency::Serializable)).unwrap();
//! assert_eq!(outcome.verdict, TxnVerdict::Violated);
//! assert_eq!(outcome.anomalies[0].kind.name(), "G2-item");
//! assert!(!outcome.ruled_out.contains(&Consistency::SnapshotIsolation));
//! ```

pub mod anomaly;
mod cycles;
mod findings;
pub mod formats;
mod graph;
pub mod history;
pub mod html;
mod list_append;
mod order;
mod rw_register;
mod why;
pub mod writer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use anomaly::{
    Anomaly, AnomalyKind, Consistency, CycleClass, EdgeKind, ExplainedEdge, Variant,
};
pub use history::{MicroOp, ReadValue, Transaction, TxnHistory, TxnModel};

/// How to check a transactional history.
#[derive(Debug, Clone)]
pub struct TxnOptions {
    /// What the micro-operations mean.
    pub model: TxnModel,
    /// The consistency model the history must satisfy.
    pub consistency: Consistency,
    /// Stop the cycle search after this long; the verdict is then Unknown unless what was
    /// found already rules the model out.
    pub timeout: Option<Duration>,
    /// Set to stop the check early, as if the time budget ran out.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Memory the check may use, in bytes (`None`: a share of the process's memory limit,
    /// as for the linearizability check). A history whose dependency graph would not fit is
    /// not checked: the verdict is Unknown, never an out-of-memory kill.
    pub max_memory: Option<usize>,
}

impl TxnOptions {
    /// No time limit.
    pub fn new(model: TxnModel, consistency: Consistency) -> Self {
        TxnOptions {
            model,
            consistency,
            timeout: None,
            cancel: None,
            max_memory: None,
        }
    }
}

/// Did the history satisfy the consistency model?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnVerdict {
    /// No anomaly the model forbids.
    Satisfied,
    /// An anomaly the model forbids, with its explanation.
    Violated,
    /// The budget ran out before the search could tell. Never a guess either way.
    Unknown,
}

impl TxnVerdict {
    /// `satisfied`, `violated` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            TxnVerdict::Satisfied => "satisfied",
            TxnVerdict::Violated => "violated",
            TxnVerdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for TxnVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of transactions the search proved to contain a dependency cycle, without finding
/// which class in its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnclassifiedCycle {
    /// The edges the cycle may use: data only, with process order, or with real time.
    pub variant: Variant,
    /// How many transactions the strongly connected component holds.
    pub size: usize,
    /// Up to 8 of them.
    pub sample: Vec<usize>,
}

/// The result of [`check`].
#[derive(Debug, Clone)]
pub struct TxnOutcome {
    /// The verdict for [`TxnOptions::consistency`].
    pub verdict: TxnVerdict,
    /// The model the micro-operations were read with.
    pub model: TxnModel,
    /// The consistency model checked.
    pub consistency: Consistency,
    /// Transactions in the history.
    pub transactions: usize,
    /// Transactions of unknown outcome.
    pub indeterminate: usize,
    /// Examples of every anomaly found (a few per kind), cycles first, each explained.
    pub anomalies: Vec<Anomaly>,
    /// How many instances of each kind were found (cycles: one per kind is searched for).
    pub counts: Vec<(AnomalyKind, usize)>,
    /// Components proved cyclic whose class the budget did not allow finding.
    pub unclassified: Vec<UnclassifiedCycle>,
    /// Every model the anomalies rule out, weakest first.
    pub ruled_out: Vec<Consistency>,
    /// Edges in the dependency graph (with real-time barriers).
    pub edges: usize,
    /// Time spent checking (reading excluded).
    pub elapsed: Duration,
    /// Why the verdict is Unknown.
    pub unknown_reason: Option<String>,
}

impl TxnOutcome {
    /// The first anomaly the checked model forbids: what a verdict's reason names.
    pub fn violation(&self) -> Option<&Anomaly> {
        self.anomalies
            .iter()
            .find(|a| a.kind.forbidden_by(self.consistency))
    }
}

/// A history the model cannot interpret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} (T{txn}): {message}")]
pub struct TxnError {
    /// Source line of the transaction (0 if not read from a file).
    pub line: usize,
    /// Index of the transaction.
    pub txn: usize,
    /// What is wrong.
    pub message: String,
}

/// Checks `history` against `options.consistency`.
pub fn check(history: &TxnHistory, options: &TxnOptions) -> Result<TxnOutcome, TxnError> {
    let start = Instant::now();
    let deadline = options.timeout.map(|t| start + t);
    let n = history.txns.len();
    // Data edges are at most one per micro-operation; order edges about four per transaction.
    let ops: usize = history.txns.iter().map(|t| t.ops.len()).sum();
    let budget = options
        .max_memory
        .unwrap_or_else(crate::check::memory::default_budget);
    let gauge = crate::check::memory::MemoryGauge::start(budget);
    let need = estimated_bytes(n, ops);
    if gauge.exceeds(need, 0) {
        return Ok(TxnOutcome {
            verdict: TxnVerdict::Unknown,
            model: options.model,
            consistency: options.consistency,
            transactions: n,
            indeterminate: history.indeterminate(),
            anomalies: Vec::new(),
            counts: Vec::new(),
            unclassified: Vec::new(),
            ruled_out: Vec::new(),
            edges: 0,
            elapsed: start.elapsed(),
            unknown_reason: Some(format!(
                "checking {n} transactions needs about {} MiB, more than the memory budget of {} MiB (raise it with --max-memory, or give the process more memory)",
                need >> 20,
                budget >> 20
            )),
        });
    }
    let mut builder = graph::GraphBuilder::new(n, ops + 4 * n);
    let mut findings = findings::Findings::default();
    infer(options.model, history, &mut builder, &mut findings)?;
    order::process_edges(history, &mut builder);
    order::realtime_edges(history, &mut builder);
    let graph = builder.build();
    let edges = graph.edges();
    let mut limits = cycles::Limits::new(deadline, options.cancel.as_deref());
    let cycles = cycles::search(&graph, &mut limits);
    drop(graph);

    // Only cycles need reasons: the inference runs again, recording just theirs.
    let reasons = if cycles.found.is_empty() {
        graph::Reasons::default()
    } else {
        let wanted = cycles
            .found
            .iter()
            .flat_map(|c| &c.steps)
            .filter(|s| s.kind & graph::DATA != 0)
            .map(|s| (s.from, s.to, s.kind));
        let mut explaining = graph::GraphBuilder::explaining(n, wanted);
        infer(
            options.model,
            history,
            &mut explaining,
            &mut findings::Findings::default(),
        )?;
        explaining.into_reasons()
    };
    let mut anomalies: Vec<Anomaly> = cycles
        .found
        .iter()
        .map(|c| explain_cycle(history, &reasons, c))
        .collect();
    let mut counts: Vec<(AnomalyKind, usize)> =
        anomalies.iter().map(|a| (a.kind, 1usize)).collect();
    let mut rest = findings.examples;
    rest.sort_by_key(|a| a.kind);
    anomalies.extend(rest);
    let mut found: Vec<(AnomalyKind, usize)> = findings.counts.into_iter().collect();
    found.sort();
    counts.extend(found);

    let unclassified: Vec<UnclassifiedCycle> = cycles
        .unclassified
        .iter()
        .map(|u| UnclassifiedCycle {
            variant: u.variant,
            size: u.txns.len(),
            sample: u.txns.iter().take(8).map(|&t| t as usize).collect(),
        })
        .collect();
    let ruled_out: Vec<Consistency> = Consistency::ALL
        .into_iter()
        .filter(|m| {
            counts.iter().any(|(k, _)| k.forbidden_by(*m))
                || unclassified.iter().any(|u| cyclic_rules_out(u.variant, *m))
        })
        .collect();
    let violated = ruled_out.contains(&options.consistency);
    let (verdict, unknown_reason) = if violated {
        (TxnVerdict::Violated, None)
    } else if cycles
        .incomplete_from
        .is_some_and(|tier| tier_matters(tier, options.consistency))
    {
        let why = match limits.stopped {
            Some(cycles::Stopped::Cancelled) => "the check was cancelled".to_string(),
            _ => match options.timeout {
                Some(t) => format!("the time budget of {t:?} ran out"),
                None => "the time budget ran out".to_string(),
            },
        };
        (
            TxnVerdict::Unknown,
            Some(format!(
                "{why} before the cycle search could tell whether {} holds",
                options.consistency
            )),
        )
    } else {
        (TxnVerdict::Satisfied, None)
    };
    Ok(TxnOutcome {
        verdict,
        model: options.model,
        consistency: options.consistency,
        transactions: history.txns.len(),
        indeterminate: history.indeterminate(),
        anomalies,
        counts,
        unclassified,
        ruled_out,
        edges,
        elapsed: start.elapsed(),
        unknown_reason,
    })
}

/// What checking `n` transactions of `ops` micro-operations takes at its peak, roughly: the
/// edge lists while the graph is built and in its compressed form, the inference's tables
/// per key and per transaction, and the search's state per node.
fn estimated_bytes(n: usize, ops: usize) -> usize {
    (ops + 4 * n)
        .saturating_mul(48)
        .saturating_add(n.saturating_mul(64))
}

/// Whether cycles needing this tier of edges (or a later one) can break `model`: data
/// cycles break every model; process order matters only to the strong-session models and
/// those above them, real time only to the strong ones.
fn tier_matters(tier: Variant, model: Consistency) -> bool {
    match tier {
        Variant::Plain => true,
        Variant::Process => {
            model.implies(Consistency::StrongSessionSnapshotIsolation)
                || model.implies(Consistency::StrongSessionSerializable)
        }
        Variant::Realtime => model.implies(Consistency::StrongSnapshotIsolation),
    }
}

/// Which models a cycle of unknown class rules out: any cycle breaks serializability over
/// the edges it may use, and any cycle of data edges alone is an item cycle, which
/// repeatable read forbids too.
fn cyclic_rules_out(variant: Variant, model: Consistency) -> bool {
    match variant {
        Variant::Plain => {
            model.implies(Consistency::Serializable) || model.implies(Consistency::RepeatableRead)
        }
        Variant::Process => model.implies(Consistency::StrongSessionSerializable),
        Variant::Realtime => model.implies(Consistency::StrictSerializable),
    }
}

fn infer(
    model: TxnModel,
    history: &TxnHistory,
    graph: &mut graph::GraphBuilder,
    findings: &mut findings::Findings,
) -> Result<(), TxnError> {
    match model {
        TxnModel::ListAppend => list_append::infer(history, graph, findings),
        TxnModel::RwRegister => rw_register::infer(history, graph, findings),
    }
}

fn explain_cycle(history: &TxnHistory, reasons: &graph::Reasons, cycle: &cycles::Cycle) -> Anomaly {
    let edges: Vec<ExplainedEdge> = cycle
        .steps
        .iter()
        .map(|s| {
            why::explain(
                history,
                s.from as usize,
                s.to as usize,
                why::kind_of(s.kind),
                reasons.get(s.from, s.to, s.kind),
            )
        })
        .collect();
    let txns: Vec<usize> = edges.iter().map(|e| e.from).collect();
    let kind = AnomalyKind::Cycle(cycle.class, cycle.variant);
    let mut explanation = String::new();
    for t in &txns {
        explanation.push_str(&history.describe(*t));
        explanation.push('\n');
    }
    for e in &edges {
        explanation.push_str(&e.reason);
        explanation.push('\n');
    }
    explanation.push_str(&format!(
        "so T{} must precede itself: a {} cycle ({}).",
        txns[0],
        kind.name(),
        cycle.class.plain()
    ));
    Anomaly {
        kind,
        txns,
        cycle: edges,
        explanation,
    }
}
