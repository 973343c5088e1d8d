//! What an rw-register history proves about the order of its transactions.
//!
//! Written values are unique per key, so a read names the write it saw (**wr**). A read says
//! nothing about which version came next, so the version order is only known where it is
//! implied:
//!
//! * the unborn register (`nil`) precedes every version;
//! * a transaction that read version `a` of a key and then wrote `b` installed `b` after `a`.
//!
//! Each known "`a` before `b`" gives **ww** from `a`'s writer to `b`'s and **rw** from every
//! reader of `a` to `b`'s writer. That is sound but, as in Elle, incomplete by design: blind
//! writes (written without reading the key first) are ordered only after `nil`, so a history
//! whose only violation hides in the order of blind writes passes. Assumptions that recover
//! more (per-key linearizability, sequential keys) are not made.

use rustc_hash::FxHashMap;

use super::TxnError;
use super::anomaly::AnomalyKind;
use super::findings::Findings;
use super::graph::{GraphBuilder, RW, WR, WW};
use super::history::{KeyId, MicroOp, ReadValue, TxnHistory};
use super::why::Why;
use crate::check::history::Outcome;

/// At most this many rw edges from readers of the unborn register of one key, past which
/// the inference stays sound but may miss cycles through those reads.
const NIL_EDGES_PER_KEY: usize = 1 << 20;

#[derive(Clone, Copy)]
struct Written {
    txn: u32,
    /// The transaction's last write to the key: the version it installs.
    last_in_txn: bool,
}

/// A read by a committed transaction of a key it had not written yet: an observation of
/// what others wrote (`None`: nil).
struct ExternalRead {
    txn: u32,
    key: KeyId,
    value: Option<i64>,
}

/// A transaction that read a key and then wrote it: the version it installed follows the
/// one it read.
struct Overwrite {
    txn: u32,
    key: KeyId,
    read: Option<i64>,
    written: i64,
}

/// Adds the rw-register edges of `history` to `graph`, and its non-cycle anomalies to
/// `findings`.
pub(super) fn infer(
    history: &TxnHistory,
    graph: &mut GraphBuilder,
    findings: &mut Findings,
) -> Result<(), TxnError> {
    let txns = &history.txns;
    let writes = index_writes(history)?;
    let (reads, overwrites) = collect_accesses(history, findings)?;
    let committed = |t: u32| txns[t as usize].outcome != Outcome::Fail;

    // Readers of each version, `None` being nil.
    let mut readers: FxHashMap<(KeyId, Option<i64>), Vec<u32>> = FxHashMap::default();
    for a in &reads {
        readers.entry((a.key, a.value)).or_default().push(a.txn);
    }

    // wr, and what the reads say about the writes they saw.
    for a in &reads {
        let Some(v) = a.value else { continue };
        let key = a.key;
        let reader = a.txn;
        match writes.get(&(key, v)) {
            None => findings.report(AnomalyKind::GarbageRead, vec![reader as usize], || {
                format!(
                    "T{reader} read key {} = {v}, which no transaction wrote",
                    history.key_name(key)
                )
            }),
            Some(w) if w.txn == reader => {
                findings.report(AnomalyKind::Internal, vec![reader as usize], || {
                    format!(
                        "T{reader} read key {} = {v} before writing {v} itself",
                        history.key_name(key)
                    )
                })
            }
            Some(w) if !committed(w.txn) => {
                let w = w.txn;
                findings.report(
                    AnomalyKind::AbortedRead,
                    vec![w as usize, reader as usize],
                    || {
                        format!(
                            "T{reader} read key {} = {v}, written by T{w}, which failed",
                            history.key_name(key)
                        )
                    },
                )
            }
            Some(w) => {
                graph.add(w.txn, reader, WR, Why::ReadValue { key, value: v });
                if !w.last_in_txn {
                    let w = w.txn;
                    findings.report(
                        AnomalyKind::IntermediateRead,
                        vec![w as usize, reader as usize],
                        || {
                            format!(
                                "T{reader} read key {} = {v}, but T{w} overwrote {v} later in the same transaction",
                                history.key_name(key)
                            )
                        },
                    );
                }
            }
        }
    }

    // Versions known to follow another: read-then-write in one transaction.
    let mut has_predecessor: rustc_hash::FxHashSet<(KeyId, i64)> = Default::default();
    for a in &overwrites {
        let (read, written, key) = (a.read, a.written, a.key);
        if let Some(v) = read {
            has_predecessor.insert((key, written));
            if let Some(w) = writes.get(&(key, v))
                && committed(w.txn)
            {
                graph.add(
                    w.txn,
                    a.txn,
                    WW,
                    Why::Overwrote {
                        key,
                        read: v,
                        written,
                    },
                );
            }
        }
        for &r in readers.get(&(key, read)).into_iter().flatten() {
            graph.add(r, a.txn, RW, Why::ReadBefore { key, read, written });
        }
    }

    // Nil precedes every version: readers of nil precede the writers of the first versions
    // (the later ones follow those through ww).
    let mut first_versions: FxHashMap<KeyId, Vec<(u32, i64)>> = FxHashMap::default();
    for (t, txn) in txns.iter().enumerate() {
        if txn.outcome == Outcome::Fail {
            continue;
        }
        for op in &txn.ops {
            if let MicroOp::Write { key, value } = op
                && writes[&(*key, *value)].last_in_txn
                && !has_predecessor.contains(&(*key, *value))
            {
                first_versions
                    .entry(*key)
                    .or_default()
                    .push((t as u32, *value));
            }
        }
    }
    let mut keys: Vec<_> = first_versions.into_iter().collect();
    keys.sort_unstable_by_key(|(k, _)| *k);
    for (key, versions) in keys {
        let mut budget = NIL_EDGES_PER_KEY;
        for &r in readers.get(&(key, None)).into_iter().flatten() {
            for &(w, written) in &versions {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                graph.add(
                    r,
                    w,
                    RW,
                    Why::ReadBefore {
                        key,
                        read: None,
                        written,
                    },
                );
            }
        }
    }
    Ok(())
}

/// The writer of every written value, by key and value.
fn index_writes(history: &TxnHistory) -> Result<FxHashMap<(KeyId, i64), Written>, TxnError> {
    let mut writes: FxHashMap<(KeyId, i64), Written> = FxHashMap::default();
    for (t, txn) in history.txns.iter().enumerate() {
        for (i, op) in txn.ops.iter().enumerate() {
            match op {
                MicroOp::Write { key, value } => {
                    let last_in_txn = !txn.ops[i + 1..]
                        .iter()
                        .any(|later| matches!(later, MicroOp::Write { key: k, .. } if k == key));
                    let entry = Written {
                        txn: t as u32,
                        last_in_txn,
                    };
                    if let Some(before) = writes.insert((*key, *value), entry) {
                        return Err(TxnError {
                            line: txn.line,
                            txn: t,
                            message: format!(
                                "writes {value} to key {}, which T{} (line {}) wrote too: rw-register needs every written value to be unique per key",
                                history.key_name(*key),
                                before.txn,
                                history.txns[before.txn as usize].line
                            ),
                        });
                    }
                }
                MicroOp::Append { .. } => {
                    return Err(TxnError {
                        line: txn.line,
                        txn: t,
                        message: "has an append, which rw-register does not have: use w, or check it as list-append".to_string(),
                    });
                }
                MicroOp::Read { .. } => {}
            }
        }
    }
    Ok(writes)
}

/// The external reads and the overwrites of committed transactions, and the internal
/// anomalies: a read of a key the transaction wrote that does not return its own last
/// write. (Two reads of a key that differ, with no write between, are legal under read
/// committed; the cycle they make is what the weaker and stronger models are judged by.)
fn collect_accesses(
    history: &TxnHistory,
    findings: &mut Findings,
) -> Result<(Vec<ExternalRead>, Vec<Overwrite>), TxnError> {
    let mut reads = Vec::new();
    let mut overwrites = Vec::new();
    // Per key touched: the last external read, and the transaction's last write.
    let mut state: Vec<(KeyId, Option<Option<i64>>, Option<i64>)> = Vec::new();
    for (t, txn) in history.txns.iter().enumerate() {
        if txn.outcome != Outcome::Ok {
            continue;
        }
        state.clear();
        for op in &txn.ops {
            let key = op.key();
            let s = match state.iter().position(|(k, _, _)| *k == key) {
                Some(s) => s,
                None => {
                    state.push((key, None, None));
                    state.len() - 1
                }
            };
            match op {
                MicroOp::Write { value, .. } => state[s].2 = Some(*value),
                MicroOp::Read { value, .. } => {
                    let seen = match value {
                        ReadValue::Nil => None,
                        ReadValue::Int(v) => Some(*v),
                        ReadValue::List(_) => {
                            return Err(TxnError {
                                line: txn.line,
                                txn: t,
                                message: format!(
                                    "reads key {} as a list: rw-register reads return an integer or nil",
                                    history.key_name(key)
                                ),
                            });
                        }
                    };
                    match state[s].2 {
                        None => {
                            reads.push(ExternalRead {
                                txn: t as u32,
                                key,
                                value: seen,
                            });
                            state[s].1 = Some(seen);
                        }
                        Some(own) if seen != Some(own) => {
                            let show =
                                |v: Option<i64>| v.map_or("nil".to_string(), |v| v.to_string());
                            findings.report(AnomalyKind::Internal, vec![t], || {
                                format!(
                                    "T{t} read key {} = {}, but it had written {own} there",
                                    history.key_name(key),
                                    show(seen)
                                )
                            });
                        }
                        Some(_) => {}
                    }
                }
                MicroOp::Append { .. } => {}
            }
        }
        for &(key, read, written) in &state {
            if let (Some(read), Some(written)) = (read, written) {
                overwrites.push(Overwrite {
                    txn: t as u32,
                    key,
                    read,
                    written,
                });
            }
        }
    }
    Ok((reads, overwrites))
}
