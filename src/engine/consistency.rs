//! The check phase: whether and how the recorded history is checked, and the status summary
//! of the result — linearizability for single-key models, an isolation level for
//! transactional ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use super::experiment::RunSettings;
use super::recorded::Recorded;
use crate::api::{
    self, AnomalyRecord, ConsistencyAssertion, ConsistencyResult, ConsistencySummary, CycleStep,
    MAX_COUNTEREXAMPLE_CHARS, MAX_CYCLE_STEPS, MAX_STATUS_ANOMALIES, MAX_STEP_CHARS, Workload,
};
use crate::check::txn::{self, Consistency, TxnHistory, TxnModel, TxnOptions, TxnOutcome};
use crate::check::{self, CheckOptions, CheckOutcome, History};

/// What the run leaves the check to work with.
pub struct CheckInput<'a> {
    /// The workload that recorded the history.
    pub workload: &'a Workload,
    /// What was asserted of it.
    pub asserted: ConsistencyAssertion,
    /// The run was stopped before its end.
    pub stopped: bool,
    /// Why the history has holes, if it has.
    pub workload_error: Option<String>,
}

/// Checks `recorded` as asserted; returns the summary for status, and whether a stop
/// cancelled the check. The checker's outcome is stored in `recorded`.
pub async fn check_recorded(
    input: CheckInput<'_>,
    recorded: &mut Recorded,
    settings: &RunSettings,
) -> (ConsistencySummary, bool) {
    let base = ConsistencySummary {
        model: input.workload.model().name().to_owned(),
        checked: (input.asserted != ConsistencyAssertion::None)
            .then(|| input.asserted.name().to_owned()),
        operations: recorded.len() as i64,
        indeterminate: recorded.indeterminate() as i64,
        ..Default::default()
    };
    let unknown = |why: String| ConsistencySummary {
        result: ConsistencyResult::Unknown,
        anomaly: Some(why),
        ..base.clone()
    };
    if input.asserted == ConsistencyAssertion::None {
        return (
            ConsistencySummary {
                result: ConsistencyResult::Skipped,
                ..base
            },
            false,
        );
    }
    if input.stopped {
        return (
            unknown("the run was stopped before its end; the history was not checked".into()),
            false,
        );
    }
    // A history with holes could be judged wrongly either way: it is not checked.
    if let Some(error) = input.workload_error {
        return (unknown(error), false);
    }
    // Without a single definite answer an empty history would pass the check vacuously.
    if recorded.ok() == 0 {
        return (
            unknown(format!(
                "none of the {} operations got a definite answer; nothing to check (is the workload's port right, is the service up?)",
                recorded.len()
            )),
            false,
        );
    }
    // A stop during the check reaches the search as a cancellation.
    let cancel = Arc::new(AtomicBool::new(false));
    let canceller = settings
        .stop
        .clone()
        .map(|mut stop: watch::Receiver<bool>| {
            let cancel = Arc::clone(&cancel);
            tokio::spawn(async move {
                if stop.wait_for(|s| *s).await.is_ok() {
                    cancel.store(true, Ordering::Relaxed);
                }
            })
        });
    tracing::info!(
        operations = recorded.len(),
        unknown = recorded.indeterminate(),
        "checking the history"
    );
    let summary = match recorded {
        Recorded::Objects { history, check } => {
            let model = history.model.unwrap_or(check::ModelKind::CasRegister);
            let mut options = CheckOptions::new(model);
            options.timeout = Some(settings.check_timeout);
            options.max_memory = settings.check_memory;
            options.cancel = Some(Arc::clone(&cancel));
            let checked = history.clone();
            match tokio::task::spawn_blocking(move || check::check_history(&checked, &options))
                .await
            {
                Ok(Ok(outcome)) => {
                    let summary = object_summary(history, &outcome, base);
                    *check = Some(outcome);
                    summary
                }
                Ok(Err(e)) => unknown(format!("history could not be checked: {e}")),
                Err(e) => unknown(format!("checker crashed: {e}")),
            }
        }
        Recorded::Transactions { history, check } => {
            let model = txn_model(input.workload.model());
            let consistency = txn_consistency(input.asserted).expect("validated: transactional");
            let mut options = TxnOptions::new(model, consistency);
            options.timeout = Some(settings.check_timeout);
            options.max_memory = settings.check_memory;
            options.cancel = Some(Arc::clone(&cancel));
            let checked = history.clone();
            match tokio::task::spawn_blocking(move || txn::check(&checked, &options)).await {
                Ok(Ok(outcome)) => {
                    let summary = txn_summary(history, &outcome, base);
                    *check = Some(outcome);
                    summary
                }
                Ok(Err(e)) => unknown(format!("history could not be checked: {e}")),
                Err(e) => unknown(format!("checker crashed: {e}")),
            }
        }
    };
    if let Some(canceller) = canceller {
        canceller.abort();
    }
    (summary, cancel.load(Ordering::Relaxed))
}

/// The checker's model for a transactional API model.
pub fn txn_model(model: api::ModelKind) -> TxnModel {
    match model {
        api::ModelKind::RwRegister => TxnModel::RwRegister,
        _ => TxnModel::ListAppend,
    }
}

/// The checker's consistency model for an asserted isolation level; `None` for
/// `linearizable` and `none`.
pub fn txn_consistency(asserted: ConsistencyAssertion) -> Option<Consistency> {
    use ConsistencyAssertion as A;
    Some(match asserted {
        A::Linearizable | A::None => return None,
        A::ReadUncommitted => Consistency::ReadUncommitted,
        A::ReadCommitted => Consistency::ReadCommitted,
        A::RepeatableRead => Consistency::RepeatableRead,
        A::SnapshotIsolation => Consistency::SnapshotIsolation,
        A::StrongSessionSnapshotIsolation => Consistency::StrongSessionSnapshotIsolation,
        A::StrongSnapshotIsolation => Consistency::StrongSnapshotIsolation,
        A::Serializable => Consistency::Serializable,
        A::StrongSessionSerializable => Consistency::StrongSessionSerializable,
        A::StrictSerializable => Consistency::StrictSerializable,
    })
}

/// Cuts `text` to at most `max` bytes at a character boundary, saying so.
fn bounded(mut text: String, max: usize, note: &str) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(note);
    }
    text
}

fn object_summary(
    history: &History,
    outcome: &CheckOutcome,
    base: ConsistencySummary,
) -> ConsistencySummary {
    let (anomaly, counterexample) = match &outcome.counterexample {
        Some(cx) => {
            let text = check::counterexample::render_text(history, cx, 10);
            let text = bounded(
                text,
                MAX_COUNTEREXAMPLE_CHARS,
                "\n… (cut; the full counterexample is in the report)",
            );
            (Some(cx.anomaly.clone()), Some(text))
        }
        None => (outcome.unknown_reason.clone(), None),
    };
    ConsistencySummary {
        model: outcome.model.name().to_owned(),
        operations: outcome.operations as i64,
        indeterminate: outcome.indeterminate as i64,
        result: match outcome.verdict {
            check::Verdict::Linearizable => ConsistencyResult::Linearizable,
            check::Verdict::NotLinearizable => ConsistencyResult::NotLinearizable,
            check::Verdict::Unknown => ConsistencyResult::Unknown,
        },
        check_millis: outcome.elapsed.as_millis() as i64,
        anomaly,
        counterexample,
        ..base
    }
}

/// The status summary of a transactional check: the anomalies the checked model forbids
/// first, each cycle bounded, and every model ruled out.
pub fn txn_summary(
    history: &TxnHistory,
    outcome: &TxnOutcome,
    base: ConsistencySummary,
) -> ConsistencySummary {
    let mut ordered: Vec<_> = outcome.anomalies.iter().collect();
    ordered.sort_by_key(|a| !a.kind.forbidden_by(outcome.consistency));
    let anomalies: Vec<AnomalyRecord> = ordered
        .iter()
        .take(MAX_STATUS_ANOMALIES)
        .map(|a| {
            let step = |text: String| bounded(text, MAX_STEP_CHARS, " …");
            AnomalyRecord {
                kind: a.kind.name(),
                summary: a.summary(),
                forbidden: a.kind.forbidden_by(outcome.consistency),
                transactions: a
                    .txns
                    .iter()
                    .take(MAX_CYCLE_STEPS)
                    .map(|&t| step(history.describe(t)))
                    .collect(),
                cycle: a
                    .cycle
                    .iter()
                    .take(MAX_CYCLE_STEPS)
                    .map(|e| CycleStep {
                        from: e.from as i64,
                        to: e.to as i64,
                        kind: e.kind.name().to_owned(),
                        reason: step(e.reason.clone()),
                    })
                    .collect(),
                omitted: (a.txns.len().max(a.cycle.len()) > MAX_CYCLE_STEPS)
                    .then(|| (a.txns.len().max(a.cycle.len()) - MAX_CYCLE_STEPS) as i64),
            }
        })
        .collect();
    let forbidden: Vec<String> = ordered
        .iter()
        .filter(|a| a.kind.forbidden_by(outcome.consistency))
        .map(|a| format!("{}\n{}", a.summary(), a.explanation))
        .collect();
    let counterexample = (!forbidden.is_empty()).then(|| {
        bounded(
            forbidden.join("\n\n"),
            MAX_COUNTEREXAMPLE_CHARS,
            "\n… (cut; every anomaly is in the report)",
        )
    });
    let anomaly = match outcome.violation() {
        Some(a) => Some(a.summary()),
        None => outcome.unknown_reason.clone(),
    };
    ConsistencySummary {
        operations: outcome.transactions as i64,
        indeterminate: outcome.indeterminate as i64,
        result: match outcome.verdict {
            txn::TxnVerdict::Satisfied => ConsistencyResult::Satisfied,
            txn::TxnVerdict::Violated => ConsistencyResult::Violated,
            txn::TxnVerdict::Unknown => ConsistencyResult::Unknown,
        },
        check_millis: outcome.elapsed.as_millis() as i64,
        anomaly,
        counterexample,
        anomalies,
        ruled_out: outcome
            .ruled_out
            .iter()
            .map(|m| m.name().to_owned())
            .collect(),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::check::history::Outcome;
    use crate::check::txn::{Anomaly, AnomalyKind, CycleClass, EdgeKind, ExplainedEdge, Variant};

    /// A history of `n` committed transactions, and an outcome holding a write skew between
    /// the first two and then a write cycle (G0) through all of them; only the shapes matter.
    fn outcome_with(n: usize) -> (TxnHistory, TxnOutcome) {
        let mut history = TxnHistory::new();
        let key = history.key("x");
        for i in 0..n {
            history.txns.push(txn::Transaction {
                process: i as u64,
                outcome: Outcome::Ok,
                invoke: i as u64 * 10,
                complete: Some(i as u64 * 10 + 5),
                ops: vec![txn::MicroOp::Append {
                    key,
                    value: i as i64,
                }],
                line: 0,
            });
        }
        let edge = |from: usize, to: usize, kind| ExplainedEdge {
            from,
            to,
            kind,
            reason: format!("T{from} before T{to}"),
        };
        let skew = Anomaly {
            kind: AnomalyKind::Cycle(CycleClass::G2Item, Variant::Plain),
            txns: vec![0, 1],
            cycle: vec![
                edge(0, 1, EdgeKind::ReadWrite),
                edge(1, 0, EdgeKind::ReadWrite),
            ],
            explanation: "write skew".into(),
        };
        let long = Anomaly {
            kind: AnomalyKind::Cycle(CycleClass::G0, Variant::Plain),
            txns: (0..n).collect(),
            cycle: (0..n)
                .map(|i| edge(i, (i + 1) % n, EdgeKind::WriteWrite))
                .collect(),
            explanation: "a long write cycle".into(),
        };
        let outcome = TxnOutcome {
            verdict: txn::TxnVerdict::Violated,
            model: TxnModel::ListAppend,
            consistency: Consistency::SnapshotIsolation,
            transactions: n,
            indeterminate: 0,
            anomalies: vec![skew, long],
            counts: vec![],
            unclassified: vec![],
            ruled_out: vec![Consistency::ReadUncommitted, Consistency::Serializable],
            edges: n,
            elapsed: Duration::from_millis(3),
            unknown_reason: None,
        };
        (history, outcome)
    }

    #[test]
    fn forbidden_anomalies_come_first_and_cycles_are_bounded() {
        let (history, outcome) = outcome_with(40);
        let summary = txn_summary(&history, &outcome, ConsistencySummary::default());
        assert_eq!(summary.result, ConsistencyResult::Violated);
        // Snapshot isolation allows write skew, not a write cycle: G0 is listed first.
        assert_eq!(summary.anomalies[0].kind, "G0");
        assert!(summary.anomalies[0].forbidden);
        assert!(!summary.anomalies[1].forbidden);
        assert_eq!(summary.anomalies[0].cycle.len(), MAX_CYCLE_STEPS);
        assert_eq!(summary.anomalies[0].transactions.len(), MAX_CYCLE_STEPS);
        assert_eq!(
            summary.anomalies[0].omitted,
            Some((40 - MAX_CYCLE_STEPS) as i64)
        );
        assert_eq!(summary.anomalies[1].omitted, None);
        assert_eq!(
            summary.anomaly.as_deref(),
            Some(outcome.anomalies[1].summary().as_str())
        );
        assert_eq!(summary.ruled_out, ["read-uncommitted", "serializable"]);
        // The counterexample text holds only what the checked model forbids.
        let text = summary.counterexample.unwrap();
        assert!(text.contains("a long write cycle") && !text.contains("write skew"));
    }

    #[test]
    fn every_isolation_level_maps_to_the_checker_and_linearizable_does_not() {
        use ConsistencyAssertion as A;
        assert_eq!(txn_consistency(A::Linearizable), None);
        assert_eq!(txn_consistency(A::None), None);
        for (asserted, model) in [
            (A::ReadUncommitted, Consistency::ReadUncommitted),
            (A::ReadCommitted, Consistency::ReadCommitted),
            (A::RepeatableRead, Consistency::RepeatableRead),
            (A::SnapshotIsolation, Consistency::SnapshotIsolation),
            (A::Serializable, Consistency::Serializable),
            (A::StrictSerializable, Consistency::StrictSerializable),
        ] {
            assert_eq!(txn_consistency(asserted), Some(model));
            // The manifest's names are the checker's names.
            assert_eq!(asserted.name(), model.name());
        }
    }
}
