//! `schism check` on transactional histories: reading, checking and printing verdicts.

use std::path::Path;

use serde_json::json;

use super::check::{CheckArgs, CheckModel, read_error};
use crate::check::txn::{self, TxnHistory, TxnModel, TxnOptions, TxnOutcome, TxnVerdict};

/// Reads and checks one transactional history.
pub(super) fn check_file(
    args: &CheckArgs,
    path: &Path,
) -> Result<(TxnHistory, TxnOutcome), String> {
    let history = txn::formats::read_file(path).map_err(|e| read_error(path, &e))?;
    let model = match args.model {
        Some(CheckModel::Txn(m)) => Some(m),
        _ => None,
    }
    .or(history.model)
    .or(history.implied_model())
    .unwrap_or(TxnModel::ListAppend);
    let mut options = TxnOptions::new(model, args.consistency);
    options.timeout = (!args.timeout.is_zero()).then_some(args.timeout);
    options.max_memory = args.max_memory;
    let outcome = txn::check(&history, &options).map_err(|e| {
        format!(
            "{}:{}: T{} does not fit the {model} model: {}",
            path.display(),
            e.line,
            e.txn,
            e.message
        )
    })?;
    Ok((history, outcome))
}

/// How many cycles are printed in full; the rest are listed by name.
const CYCLES_SHOWN: usize = 3;

pub(super) fn to_text(path: &Path, outcome: &TxnOutcome) -> String {
    let ms = outcome.elapsed.as_secs_f64() * 1e3;
    let head = match outcome.verdict {
        TxnVerdict::Satisfied => format!("{} holds", outcome.consistency),
        TxnVerdict::Violated => format!("NOT {}", outcome.consistency.name().to_uppercase()),
        TxnVerdict::Unknown => format!(
            "unknown: {}",
            outcome.unknown_reason.as_deref().unwrap_or("no verdict")
        ),
    };
    let mut out = format!(
        "{}: {head} ({}, {} transactions, {} with unknown outcome) in {ms:.3} ms\n",
        path.display(),
        outcome.model,
        outcome.transactions,
        outcome.indeterminate
    );
    if !outcome.counts.is_empty() {
        let counts: Vec<String> = outcome
            .counts
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        out.push_str(&format!("  anomalies: {}\n", counts.join(", ")));
    }
    if !outcome.ruled_out.is_empty() {
        let names: Vec<&str> = outcome.ruled_out.iter().map(|m| m.name()).collect();
        out.push_str(&format!("  ruled out: {}\n", names.join(", ")));
    }
    for u in &outcome.unclassified {
        let sample: Vec<String> = u.sample.iter().map(|t| format!("T{t}")).collect();
        out.push_str(&format!(
            "  a cycle of unknown class ({:?} edges) among {} transactions, e.g. {}\n",
            u.variant,
            u.size,
            sample.join(", ")
        ));
    }
    let mut shown = 0;
    for anomaly in &outcome.anomalies {
        if anomaly.cycle.is_empty() || shown < CYCLES_SHOWN {
            out.push_str(&format!("\n{}\n", anomaly.summary()));
            for line in anomaly.explanation.lines() {
                out.push_str(&format!("    {line}\n"));
            }
            if !anomaly.cycle.is_empty() {
                shown += 1;
            }
        }
    }
    out
}

pub(super) fn to_json(
    path: &Path,
    history: &TxnHistory,
    outcome: &TxnOutcome,
) -> serde_json::Value {
    let anomalies: Vec<serde_json::Value> = outcome
        .anomalies
        .iter()
        .map(|a| {
            json!({
                "type": a.kind.name(),
                "summary": a.summary(),
                "txns": a.txns.iter().map(|&t| txn_json(history, t)).collect::<Vec<_>>(),
                "cycle": a.cycle.iter().map(|e| json!({
                    "from": e.from,
                    "to": e.to,
                    "type": e.kind.name(),
                    "reason": e.reason,
                })).collect::<Vec<_>>(),
                "explanation": a.explanation,
            })
        })
        .collect();
    let counts: serde_json::Map<String, serde_json::Value> = outcome
        .counts
        .iter()
        .map(|(k, n)| (k.name(), json!(n)))
        .collect();
    let valid = match outcome.verdict {
        TxnVerdict::Satisfied => json!(true),
        TxnVerdict::Violated => json!(false),
        TxnVerdict::Unknown => json!("unknown"),
    };
    json!({
        "file": path.display().to_string(),
        "model": outcome.model.name(),
        "consistency": outcome.consistency.name(),
        "valid": valid,
        "verdict": outcome.verdict.name(),
        "transactions": outcome.transactions,
        "indeterminate": outcome.indeterminate,
        "anomaly_types": outcome.counts.iter().map(|(k, _)| k.name()).collect::<Vec<_>>(),
        "anomaly_counts": counts,
        "anomalies": anomalies,
        "not": outcome.ruled_out.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "unclassified_cycles": outcome.unclassified.iter().map(|u| json!({
            "edges": format!("{:?}", u.variant).to_lowercase(),
            "size": u.size,
            "sample": u.sample,
        })).collect::<Vec<_>>(),
        "edges": outcome.edges,
        "check_ms": outcome.elapsed.as_secs_f64() * 1e3,
        "unknown_reason": outcome.unknown_reason,
    })
}

fn txn_json(history: &TxnHistory, id: usize) -> serde_json::Value {
    let t = &history.txns[id];
    json!({
        "id": id,
        "process": t.process,
        "type": t.outcome.name(),
        "invoke": t.invoke,
        "complete": t.complete,
        "line": t.line,
        "ops": history.describe_ops(t),
    })
}
