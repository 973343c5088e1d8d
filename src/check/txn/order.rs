//! Edges that come from clients and clocks rather than data: each client's order of
//! transactions, and real time (one transaction completed before another began).
//!
//! Only committed transactions that completed (`ok`) can precede anything; a transaction of
//! unknown outcome may take effect at any time after its invocation, so it can only follow.

use rustc_hash::FxHashMap;

use super::graph::{GraphBuilder, PROCESS, REALTIME, THROUGH};
use super::history::TxnHistory;
use super::why::Why;
use crate::check::history::Outcome;

/// Adds an edge from each client's latest completed transaction to its next one.
pub(super) fn process_edges(history: &TxnHistory, graph: &mut GraphBuilder) {
    let mut by_process: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    for (t, txn) in history.txns.iter().enumerate() {
        if txn.outcome != Outcome::Fail {
            by_process.entry(txn.process).or_default().push(t as u32);
        }
    }
    let mut processes: Vec<_> = by_process.into_values().collect();
    processes.sort_unstable();
    for mut txns in processes {
        txns.sort_by_key(|&t| history.txns[t as usize].invoke);
        let mut last_ok: Option<u32> = None;
        for t in txns {
            if let Some(prev) = last_ok {
                graph.add(prev, t, PROCESS, Why::Structural);
            }
            if history.txns[t as usize].outcome == Outcome::Ok {
                last_ok = Some(t);
            }
        }
    }
}

/// Adds real-time order through barrier nodes: each invocation links to a barrier that
/// every transaction completed so far reaches, so the edges stay linear in the history.
pub(super) fn realtime_edges(history: &TxnHistory, graph: &mut GraphBuilder) {
    // (time, 0 for an invocation or 1 for a completion, txn): at equal times invocations
    // come first, so that equal timestamps never order two transactions.
    let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(history.txns.len() * 2);
    for (t, txn) in history.txns.iter().enumerate() {
        if txn.outcome == Outcome::Fail {
            continue;
        }
        events.push((txn.invoke, 0, t as u32));
        if txn.outcome == Outcome::Ok
            && let Some(c) = txn.complete
        {
            events.push((c, 1, t as u32));
        }
    }
    events.sort_unstable();
    let mut barrier: Option<u32> = None;
    let mut completed: Vec<u32> = Vec::new();
    for (_, kind, t) in events {
        if kind == 1 {
            completed.push(t);
            continue;
        }
        if !completed.is_empty() {
            let next = graph.virtual_node();
            if let Some(prev) = barrier {
                graph.add(prev, next, THROUGH, Why::Structural);
            }
            for c in completed.drain(..) {
                graph.add(c, next, REALTIME, Why::Structural);
            }
            barrier = Some(next);
        }
        if let Some(b) = barrier {
            graph.add(b, t, THROUGH, Why::Structural);
        }
    }
}
