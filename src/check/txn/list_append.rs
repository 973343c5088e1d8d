//! What a list-append history proves about the order of its transactions.
//!
//! Appended values are unique per key and a read returns the whole list, so every read is a
//! prefix of the key's version order and the longest read *is* that order, as far as anyone
//! saw it. From it:
//!
//! * **ww**: the writer of each element precedes the writer of the next one;
//! * **wr**: the writer of a read's last element precedes the reader;
//! * **rw**: a reader precedes the writer of the first element its read lacks.
//!
//! An acknowledged append that no read saw still follows every append that was seen (the
//! longest read lacks it, and lists only grow), and follows every read that lacks it, so it
//! gets a ww edge from the last seen append and rw edges from every read of the whole order.
//! With those edges the inference is complete for committed transactions: a history with
//! no serial order has a cycle or one of the anomalies below.
//!
//! Failed transactions get no edges; what others read of them is G1a or a dirty update.
//! Transactions of unknown outcome count as committed when someone saw their appends, and
//! are otherwise left out (assuming they did not commit never creates a constraint).

use rustc_hash::FxHashMap;

use super::TxnError;
use super::anomaly::AnomalyKind;
use super::findings::Findings;
use super::graph::{GraphBuilder, RW, WR, WW};
use super::history::{KeyId, MicroOp, ReadValue, TxnHistory, describe_read};
use super::why::Why;
use crate::check::history::Outcome;

/// Per reader, at most this many rw edges to unread appends: past it the inference stays
/// sound but may miss a cycle among transactions whose writes nobody ever read.
const UNREAD_EDGES_PER_READ: usize = 64;

/// Not in any read.
const UNSEEN: u32 = u32::MAX;
/// No transaction appended it.
const NOBODY: u32 = u32::MAX;

/// One append, in a table ordered by transaction and then program order.
#[derive(Clone, Copy)]
struct Append {
    txn: u32,
    key: KeyId,
    value: i64,
    /// Its position in the key's version order, or [`UNSEEN`].
    pos: u32,
    /// The transaction's last append to this key: the version it installs.
    last_in_txn: bool,
    /// Its transaction failed (kept here so that edges need not look the transaction up).
    failed: bool,
}

/// A read of a key by a committed transaction.
#[derive(Clone, Copy)]
struct KeyRead {
    txn: u32,
    op: u32,
    key: KeyId,
    /// How many elements it returned.
    len: u32,
    /// Its transaction's first access to the key: what it read came from others.
    external: bool,
}

fn list(value: &ReadValue) -> &[i64] {
    match value {
        ReadValue::List(items) => items,
        _ => &[],
    }
}

fn read_list<'h>(history: &'h TxnHistory, read: &KeyRead) -> &'h [i64] {
    match &history.txns[read.txn as usize].ops[read.op as usize] {
        MicroOp::Read { value, .. } => list(value),
        _ => &[],
    }
}

fn show(items: &[i64]) -> String {
    describe_read(&ReadValue::List(items.to_vec()))
}

/// Each key's version order (its longest read) with the append behind each element.
struct Orders<'h> {
    /// The read that is the order, per key.
    longest: Vec<Option<KeyRead>>,
    /// Per key, the append id of each element of the order, or [`NOBODY`].
    writers: Vec<Vec<u32>>,
    history: &'h TxnHistory,
}

impl<'h> Orders<'h> {
    fn order(&self, k: usize) -> &'h [i64] {
        self.longest[k].map_or(&[][..], |r| read_list(self.history, &r))
    }

    fn witness(&self, k: usize) -> u32 {
        self.longest[k].map_or(u32::MAX, |r| r.txn)
    }
}

/// Adds the list-append edges of `history` to `graph`, and its non-cycle anomalies to
/// `findings`.
pub(super) fn infer(
    history: &TxnHistory,
    graph: &mut GraphBuilder,
    findings: &mut Findings,
) -> Result<(), TxnError> {
    let txns = &history.txns;
    let nkeys = history.keys.len();
    let (mut appends, index) = table(history)?;
    let (reads, latest) = collect_reads(history, findings)?;

    let mut longest: Vec<Option<KeyRead>> = vec![None; nkeys];
    for r in &reads {
        let k = r.key as usize;
        if longest[k].is_none_or(|l| l.len < r.len) {
            longest[k] = Some(*r);
        }
    }
    let mut orders = Orders {
        longest,
        writers: vec![Vec::new(); nkeys],
        history,
    };

    // Resolve each order to its appends, once; every later step indexes instead of hashing.
    let mut first_garbage = vec![usize::MAX; nkeys];
    let mut first_failed = vec![usize::MAX; nkeys];
    for k in 0..nkeys {
        let order = orders.order(k);
        let mut writers = Vec::with_capacity(order.len());
        let mut dirty_reported = false;
        for (i, v) in order.iter().enumerate() {
            let Some(&id) = index.get(&(k as KeyId, *v)) else {
                first_garbage[k] = first_garbage[k].min(i);
                writers.push(NOBODY);
                continue;
            };
            let a = &mut appends[id as usize];
            if a.pos != UNSEEN {
                let r = orders.witness(k);
                findings.report(AnomalyKind::DuplicateElements, vec![r as usize], || {
                    format!(
                        "T{r} read key {} = {} with {v} twice",
                        history.key_name(k as KeyId),
                        show(order)
                    )
                });
                writers.push(NOBODY);
                continue;
            }
            a.pos = i as u32;
            writers.push(id);
            if a.failed {
                first_failed[k] = first_failed[k].min(i);
            } else if first_failed[k] < i && !dirty_reported {
                let f = appends[writers[first_failed[k]] as usize].txn;
                let a = appends[id as usize].txn;
                findings.report(
                    AnomalyKind::DirtyUpdate,
                    vec![f as usize, a as usize],
                    || {
                        format!(
                            "T{a} appended {v} to key {} after the append of {} by T{f}, which failed",
                            history.key_name(k as KeyId),
                            order[first_failed[k]]
                        )
                    },
                );
                // One per key: the rest of the order is built on the same write.
                dirty_reported = true;
            }
        }
        orders.writers[k] = writers;
    }
    check_program_order(history, &appends, &orders, findings);

    // A transaction of unknown outcome committed if anyone saw one of its appends.
    let mut seen_commit = vec![false; txns.len()];
    for a in &appends {
        if a.pos != UNSEEN {
            seen_commit[a.txn as usize] = true;
        }
    }
    let committed = |t: u32| match txns[t as usize].outcome {
        Outcome::Ok => true,
        Outcome::Info => seen_commit[t as usize],
        Outcome::Fail => false,
    };

    // ww along each order.
    for k in 0..nkeys {
        let order = orders.order(k);
        let writers = &orders.writers[k];
        for i in 1..writers.len() {
            let (a, b) = (writers[i - 1], writers[i]);
            if a == NOBODY || b == NOBODY {
                continue;
            }
            let (a, b) = (&appends[a as usize], &appends[b as usize]);
            let (ta, tb) = (a.txn, b.txn);
            if !a.failed && !b.failed {
                graph.add(
                    ta,
                    tb,
                    WW,
                    Why::AppendedAfter {
                        key: k as KeyId,
                        before: order[i - 1],
                        after: order[i],
                        witness: orders.witness(k),
                    },
                );
            }
        }
    }

    // Committed appends nobody read, per key, one per transaction (its last).
    let mut unread: Vec<Vec<(u32, i64)>> = vec![Vec::new(); nkeys];
    for a in &appends {
        if a.pos == UNSEEN && a.last_in_txn && committed(a.txn) {
            unread[a.key as usize].push((a.txn, a.value));
        }
    }
    for (k, unread) in unread.iter().enumerate() {
        let order = orders.order(k);
        let last = orders.writers[k]
            .last()
            .filter(|&&id| id != NOBODY && !appends[id as usize].failed)
            .map(|&id| (appends[id as usize].txn, *order.last().unwrap_or(&0)));
        for &(a, value) in unread {
            if let Some((w, before)) = last {
                graph.add(
                    w,
                    a,
                    WW,
                    Why::AppendedAfterUnread {
                        key: k as KeyId,
                        before,
                        after: value,
                    },
                );
            }
            let Some(complete) = txns[a as usize].complete else {
                continue;
            };
            if txns[a as usize].outcome == Outcome::Ok
                && let Some(r) = latest[k]
                && txns[r as usize].invoke > complete
            {
                findings.report(
                    AnomalyKind::LostAppend,
                    vec![a as usize, r as usize],
                    || {
                        format!(
                            "T{a} appended {value} to key {} and committed at {complete}, but no read ever saw it, though T{r} read the key from {} on",
                            history.key_name(k as KeyId),
                            txns[r as usize].invoke
                        )
                    },
                );
            }
        }
    }

    // Each read: compatibility, what it saw, and its wr and rw edges.
    for r in &reads {
        let k = r.key as usize;
        let key = r.key;
        let seen = read_list(history, r);
        let order = orders.order(k);
        let writers = &orders.writers[k];
        let reader = r.txn;
        if seen.len() > order.len() || order[..seen.len()] != *seen {
            let w = orders.witness(k);
            findings.report(
                AnomalyKind::IncompatibleOrder,
                vec![reader as usize, w as usize],
                || {
                    format!(
                        "T{reader} read key {} = {}, but T{w} read {}: neither is a prefix of the other",
                        history.key_name(key),
                        show(seen),
                        show(order)
                    )
                },
            );
            report_elements(history, &appends, &index, reader, key, seen, findings);
            continue;
        }
        if seen.len() > first_garbage[k] {
            let v = order[first_garbage[k]];
            findings.report(AnomalyKind::GarbageRead, vec![reader as usize], || {
                format!(
                    "T{reader} read {v} in key {}, which no transaction appended",
                    history.key_name(key)
                )
            });
        }
        if seen.len() > first_failed[k] {
            let v = order[first_failed[k]];
            let w = appends[writers[first_failed[k]] as usize].txn;
            findings.report(
                AnomalyKind::AbortedRead,
                vec![w as usize, reader as usize],
                || {
                    format!(
                        "T{reader} read key {} with {v}, appended by T{w}, which failed",
                        history.key_name(key)
                    )
                },
            );
        }
        if !r.external {
            continue;
        }
        if let Some(&last) = seen.last()
            && let Some(&id) = writers.get(seen.len() - 1)
            && id != NOBODY
        {
            let a = appends[id as usize];
            if a.txn != reader && !a.failed {
                graph.add(a.txn, reader, WR, Why::ReadAppend { key, value: last });
                if !a.last_in_txn {
                    let w = a.txn;
                    findings.report(
                        AnomalyKind::IntermediateRead,
                        vec![w as usize, reader as usize],
                        || {
                            format!(
                                "T{reader} read key {} ending in {last}, but T{w} appended more to it after {last}",
                                history.key_name(key)
                            )
                        },
                    );
                }
            }
        }
        if seen.len() < order.len() {
            let missing = order[seen.len()];
            let id = writers[seen.len()];
            if id != NOBODY && !appends[id as usize].failed {
                graph.add(
                    reader,
                    appends[id as usize].txn,
                    RW,
                    Why::ReadWithout {
                        key,
                        missing,
                        witness: orders.witness(k),
                    },
                );
            }
        } else {
            for &(a, missing) in unread[k].iter().take(UNREAD_EDGES_PER_READ) {
                graph.add(reader, a, RW, Why::ReadWithoutUnread { key, missing });
            }
        }
    }
    Ok(())
}

/// A transaction's appends to a key take effect together and in its order: once one is in
/// the version order every earlier one must be, before it, and its own external read of the
/// key must not already hold them.
fn check_program_order(
    history: &TxnHistory,
    appends: &[Append],
    orders: &Orders,
    findings: &mut Findings,
) {
    let mut start = 0;
    while start < appends.len() {
        let t = appends[start].txn;
        let end = start + appends[start..].iter().take_while(|a| a.txn == t).count();
        let own = &appends[start..end];
        let txn = &history.txns[t as usize];
        for (i, a) in own.iter().enumerate() {
            let key = a.key;
            // Its reads of the key before it first appended to it.
            let external = txn
                .ops
                .iter()
                .filter(|op| op.key() == key)
                .take_while(|op| matches!(op, MicroOp::Read { .. }))
                .filter_map(|op| match op {
                    MicroOp::Read { value, .. } if txn.outcome == Outcome::Ok => Some(list(value)),
                    _ => None,
                });
            for read in external {
                if a.pos == UNSEEN
                    || (a.pos as usize) >= read.len()
                    || read[a.pos as usize] != a.value
                {
                    continue;
                }
                findings.report(AnomalyKind::Internal, vec![t as usize], || {
                    format!(
                        "T{t} read key {} = {} before appending {} to it, yet the read already holds it",
                        history.key_name(key),
                        show(read),
                        a.value
                    )
                });
                break;
            }
            if let Some(prev) = own[..i].iter().rev().find(|p| p.key == key) {
                let out_of_order = match (prev.pos, a.pos) {
                    (UNSEEN, UNSEEN) | (_, UNSEEN) => false,
                    (UNSEEN, _) => true,
                    (p, q) => q < p,
                };
                if out_of_order {
                    let order = orders.order(key as usize);
                    let w = orders.witness(key as usize);
                    findings.report(
                        AnomalyKind::IncompatibleOrder,
                        vec![t as usize, w as usize],
                        || {
                            format!(
                                "T{t} appended {} and then {} to key {}, but T{w} read {}, which has {} without {} before it",
                                prev.value,
                                a.value,
                                history.key_name(key),
                                show(order),
                                a.value,
                                prev.value
                            )
                        },
                    );
                }
            }
        }
        start = end;
    }
}

/// The append table, ordered by transaction and program order, and the id of each
/// appended (key, value).
type Table = (Vec<Append>, FxHashMap<(KeyId, i64), u32>);

/// The append table, ordered by transaction and program order, and its index.
fn table(history: &TxnHistory) -> Result<Table, TxnError> {
    let count = history
        .txns
        .iter()
        .flat_map(|t| &t.ops)
        .filter(|op| matches!(op, MicroOp::Append { .. }))
        .count();
    let mut appends: Vec<Append> = Vec::with_capacity(count);
    let mut seen: FxHashMap<(KeyId, i64), u32> =
        FxHashMap::with_capacity_and_hasher(count, Default::default());
    for (t, txn) in history.txns.iter().enumerate() {
        for (i, op) in txn.ops.iter().enumerate() {
            match op {
                MicroOp::Append { key, value } => {
                    let last_in_txn = !txn.ops[i + 1..]
                        .iter()
                        .any(|later| matches!(later, MicroOp::Append { key: k, .. } if k == key));
                    if let Some(before) = seen.insert((*key, *value), appends.len() as u32) {
                        let before = appends[before as usize].txn;
                        let other = &history.txns[before as usize];
                        return Err(TxnError {
                            line: txn.line,
                            txn: t,
                            message: format!(
                                "appends {value} to key {}, which T{before} (line {}) appended too: list-append needs every appended value to be unique per key",
                                history.key_name(*key),
                                other.line
                            ),
                        });
                    }
                    appends.push(Append {
                        txn: t as u32,
                        key: *key,
                        value: *value,
                        pos: UNSEEN,
                        last_in_txn,
                        failed: txn.outcome == Outcome::Fail,
                    });
                }
                MicroOp::Write { .. } => {
                    return Err(TxnError {
                        line: txn.line,
                        txn: t,
                        message: "has a write (w), which list-append does not have: use append, or check it as rw-register".to_string(),
                    });
                }
                MicroOp::Read { .. } => {}
            }
        }
    }
    Ok((appends, seen))
}

/// A key a transaction appended to, and its appends to it so far.
type OwnAppends = (KeyId, Vec<i64>);

/// Every read of a committed transaction, marking the external ones (no own append to the
/// key before them), and the internal anomalies: a read that does not end with the
/// transaction's own appends to the key.
/// The reads, and per key the latest-invoked transaction that read it (for lost appends).
type Reads = (Vec<KeyRead>, Vec<Option<u32>>);

fn collect_reads(history: &TxnHistory, findings: &mut Findings) -> Result<Reads, TxnError> {
    let mut reads = Vec::new();
    let mut latest: Vec<Option<(u64, u32)>> = vec![None; history.keys.len()];
    // Per key the transaction appended to: its appends so far, in order.
    let mut own: Vec<OwnAppends> = Vec::new();
    for (t, txn) in history.txns.iter().enumerate() {
        if txn.outcome != Outcome::Ok {
            continue;
        }
        own.clear();
        for (i, op) in txn.ops.iter().enumerate() {
            let key = op.key();
            let slot = own.iter().position(|(k, _)| *k == key);
            match op {
                MicroOp::Append { value, .. } => match slot {
                    Some(s) => own[s].1.push(*value),
                    None => own.push((key, vec![*value])),
                },
                MicroOp::Read { value, .. } => {
                    if let ReadValue::Int(v) = value {
                        return Err(TxnError {
                            line: txn.line,
                            txn: t,
                            message: format!(
                                "reads key {} as the integer {v}: list-append reads return lists (or nil)",
                                history.key_name(key)
                            ),
                        });
                    }
                    let seen = list(value);
                    reads.push(KeyRead {
                        txn: t as u32,
                        op: i as u32,
                        key,
                        len: seen.len() as u32,
                        external: slot.is_none(),
                    });
                    let last = &mut latest[key as usize];
                    if last.is_none_or(|(invoke, _)| invoke < txn.invoke) {
                        *last = Some((txn.invoke, t as u32));
                    }
                    // A transaction sees its own appends, in order, at the end of the list;
                    // what comes before them may change under weak isolation, and the cycle
                    // search judges that.
                    if let Some(s) = slot
                        && !seen.ends_with(&own[s].1)
                    {
                        let appended = &own[s].1;
                        findings.report(AnomalyKind::Internal, vec![t], || {
                            format!(
                                "T{t} read key {} = {}, which does not end with its own appends {}",
                                history.key_name(key),
                                describe_read(value),
                                show(appended)
                            )
                        });
                    }
                }
                MicroOp::Write { .. } => {}
            }
        }
    }
    Ok((
        reads,
        latest.into_iter().map(|l| l.map(|(_, t)| t)).collect(),
    ))
}

/// For a read that fits no order: which of its elements nobody, or only a failed
/// transaction, appended.
fn report_elements(
    history: &TxnHistory,
    appends: &[Append],
    index: &FxHashMap<(KeyId, i64), u32>,
    reader: u32,
    key: KeyId,
    seen: &[i64],
    findings: &mut Findings,
) {
    for v in seen {
        match index.get(&(key, *v)).map(|&id| appends[id as usize]) {
            None => findings.report(AnomalyKind::GarbageRead, vec![reader as usize], || {
                format!(
                    "T{reader} read {v} in key {}, which no transaction appended",
                    history.key_name(key)
                )
            }),
            Some(a) if history.txns[a.txn as usize].outcome == Outcome::Fail => {
                let w = a.txn;
                findings.report(
                    AnomalyKind::AbortedRead,
                    vec![w as usize, reader as usize],
                    || {
                        format!(
                            "T{reader} read key {} with {v}, appended by T{w}, which failed",
                            history.key_name(key)
                        )
                    },
                )
            }
            Some(_) => {}
        }
    }
}
