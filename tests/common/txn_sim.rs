//! Transactional histories for the property tests of the transactional checker:
//!
//! * [`simulate`]: a simulated serializable store. Clients run transactions of 1–4
//!   micro-operations over a small rotating set of keys; each transaction takes effect
//!   atomically at its own instant between its invocation and completion, so the history is
//!   strict-serializable by construction. Some transactions fail (not applied) and some end
//!   with an unknown outcome (applied or not, at random).
//! * [`plant`]: adds, on fresh keys and processes, a handful of transactions that show one
//!   anomaly of a known class.
//! * [`mutate`]: random damage (a read's value, an outcome, a transaction's timing) so that
//!   small histories come out both valid and invalid.
//! * [`oracle`]: an exhaustive decision of serializability and strict serializability for
//!   small histories, by serial execution of every admissible order; [`oracle_literal`] is
//!   the same by brute force over every subset and permutation, to check the oracle itself.
#![allow(dead_code)]

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schism::check::Outcome;
use schism::check::txn::{MicroOp, ReadValue, Transaction, TxnHistory, TxnModel};

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// How to simulate.
#[derive(Debug, Clone)]
pub struct Sim {
    pub model: TxnModel,
    /// Concurrent clients.
    pub clients: usize,
    /// Transactions to attempt (a few are skipped when every client is busy).
    pub txns: usize,
    /// Keys in use at any moment.
    pub keys: usize,
    /// Every this many transactions the oldest key in use retires and a fresh one joins.
    pub key_life: usize,
    /// Micro-operations per transaction: 1 to this.
    pub max_ops: usize,
    /// Percent of micro-operations that are reads.
    pub read_pct: u32,
    /// Percent of transactions that fail, and that end with an unknown outcome.
    pub fail_pct: u32,
    pub info_pct: u32,
    /// How far (time units; serialization points are 10 apart) invocation and completion may
    /// lie from the serialization point: the amount of concurrency.
    pub spread: u64,
}

impl Sim {
    pub fn new(model: TxnModel, txns: usize) -> Sim {
        Sim {
            model,
            clients: 5,
            txns,
            keys: 4,
            key_life: 20,
            max_ops: 4,
            read_pct: 50,
            fail_pct: 5,
            info_pct: 5,
            spread: 40,
        }
    }
}

/// The micro-operation that adds `value` to `key` in `model`.
pub fn write(model: TxnModel, key: u32, value: i64) -> MicroOp {
    match model {
        TxnModel::ListAppend => MicroOp::Append { key, value },
        TxnModel::RwRegister => MicroOp::Write { key, value },
    }
}

/// A read of `key` returning the list `seen` (list-append) or its last element (rw-register).
pub fn read(model: TxnModel, key: u32, seen: &[i64]) -> MicroOp {
    let value = match model {
        TxnModel::ListAppend => ReadValue::List(seen.to_vec()),
        TxnModel::RwRegister => seen.last().map_or(ReadValue::Nil, |v| ReadValue::Int(*v)),
    };
    MicroOp::Read { key, value }
}

fn written(op: &MicroOp) -> Option<(u32, i64)> {
    match op {
        MicroOp::Append { key, value } | MicroOp::Write { key, value } => Some((*key, *value)),
        MicroOp::Read { .. } => None,
    }
}

/// Runs the transactions one after another against a serial store (a list per key; a
/// register is the list's last element), each at serialization point `10 * (i + 1)`, and
/// records them with random invocation and completion times around that point.
pub fn simulate(sim: &Sim, rng: &mut ChaCha8Rng) -> TxnHistory {
    let mut h = TxnHistory::new();
    let mut state: Vec<Vec<i64>> = Vec::new();
    let mut free_at = vec![0u64; sim.clients];
    let mut process: Vec<u64> = (0..sim.clients as u64).collect();
    let mut next_process = sim.clients as u64;
    let mut fresh = 0i64;
    let mut txns: Vec<Transaction> = Vec::new();
    for i in 0..sim.txns {
        let t = 10 * (i as u64 + 1);
        let idle: Vec<usize> = (0..sim.clients).filter(|&c| free_at[c] < t).collect();
        let Some(&c) = idle.choose(rng) else { continue };
        // invoke in (free_at, t], complete in [t, t + spread).
        let invoke = t - rng.random_range(0..(t - free_at[c]).min(sim.spread).max(1));
        let complete = t + rng.random_range(0..sim.spread.max(1));
        free_at[c] = complete;
        let roll = rng.random_range(0..100);
        let outcome = if roll < sim.fail_pct {
            Outcome::Fail
        } else if roll < sim.fail_pct + sim.info_pct {
            Outcome::Info
        } else {
            Outcome::Ok
        };
        let applied = match outcome {
            Outcome::Ok => true,
            Outcome::Fail => false,
            Outcome::Info => rng.random_bool(0.5),
        };
        // The transaction runs on a scratch copy of the keys it touches, installed only if
        // it is applied. Reads of failed and unapplied transactions are what they would
        // have returned: meaningless to the checker, useful to mutations.
        let base = i / sim.key_life.max(1);
        let mut scratch: Vec<(u32, Vec<i64>)> = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..rng.random_range(1..=sim.max_ops.max(1)) {
            let key = h.key(&format!("k{}", base + rng.random_range(0..sim.keys.max(1))));
            if state.len() <= key as usize {
                state.resize(key as usize + 1, Vec::new());
            }
            let slot = match scratch.iter().position(|(k, _)| *k == key) {
                Some(s) => s,
                None => {
                    scratch.push((key, state[key as usize].clone()));
                    scratch.len() - 1
                }
            };
            if rng.random_range(0..100) < sim.read_pct {
                ops.push(read(sim.model, key, &scratch[slot].1));
            } else {
                fresh += 1;
                scratch[slot].1.push(fresh);
                ops.push(write(sim.model, key, fresh));
            }
        }
        if applied {
            for (key, list) in scratch {
                state[key as usize] = list;
            }
        }
        txns.push(Transaction {
            process: process[c],
            outcome,
            invoke,
            complete: (outcome != Outcome::Info).then_some(complete),
            ops,
            line: 0,
        });
        if outcome == Outcome::Info {
            // As in Jepsen: a client whose transaction timed out continues as a new process.
            process[c] = next_process;
            next_process += 1;
        }
    }
    txns.sort_by_key(|t| t.invoke);
    // Some reads as `nil` rather than `[]`: the checker must take both as the empty list.
    if sim.model == TxnModel::ListAppend {
        for op in txns.iter_mut().flat_map(|t| t.ops.iter_mut()) {
            if let MicroOp::Read { value, .. } = op
                && *value == ReadValue::List(vec![])
                && rng.random_bool(0.3)
            {
                *value = ReadValue::Nil;
            }
        }
    }
    h.txns = txns;
    h
}

/// A largest time in `h`, for placing planted transactions.
pub fn end_time(h: &TxnHistory) -> u64 {
    h.txns
        .iter()
        .map(|t| t.complete.unwrap_or(t.invoke))
        .max()
        .unwrap_or(0)
}

fn next_process(h: &TxnHistory) -> u64 {
    h.txns.iter().map(|t| t.process).max().map_or(0, |p| p + 1)
}

fn next_value(h: &TxnHistory) -> i64 {
    h.txns
        .iter()
        .flat_map(|t| &t.ops)
        .filter_map(written)
        .map(|(_, v)| v)
        .max()
        .unwrap_or(0)
        + 1
}

/// The anomalies [`plant`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plant {
    /// G1a: an ok transaction reads what a failed one wrote.
    AbortedRead,
    /// G0: two transactions write two keys in opposite orders.
    WriteCycle,
    /// G1c: two transactions each read what the other wrote.
    CircularFlow,
    /// G-single: two transactions read the same (empty) list and each appends; a later
    /// read sees both appends (list-append only).
    LostUpdate,
    /// G-single: a transaction sees one of another's two writes but not the other.
    ReadSkew,
    /// G2-item: each of two transactions reads both keys empty and writes one.
    WriteSkew,
    /// G-single-realtime: a read that begins after a write completed misses it; a later
    /// read sees it. Serializable, not strict-serializable.
    StaleRead,
}

impl Plant {
    pub const ALL: [Plant; 7] = [
        Plant::AbortedRead,
        Plant::WriteCycle,
        Plant::CircularFlow,
        Plant::LostUpdate,
        Plant::ReadSkew,
        Plant::WriteSkew,
        Plant::StaleRead,
    ];
}

/// Adds the transactions of `plant` to `h`, on two fresh keys and fresh processes, at a
/// random moment of the history, and returns their indices.
pub fn plant(
    h: &mut TxnHistory,
    model: TxnModel,
    plant: Plant,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let tag = h.txns.len();
    let x = h.key(&format!("planted-x-{tag}"));
    let y = h.key(&format!("planted-y-{tag}"));
    let (a, b) = (next_value(h), next_value(h) + 1);
    let t = 1 + rng.random_range(0..end_time(h).max(1));
    let p = next_process(h);
    let w = |k, v| write(model, k, v);
    let r = |k, seen: &[i64]| read(model, k, seen);
    // (outcome, invoke, complete, ops); every planted transaction its own process.
    let planted: Vec<(Outcome, u64, u64, Vec<MicroOp>)> = match plant {
        Plant::AbortedRead => vec![
            (Outcome::Fail, t, t + 10, vec![w(x, a)]),
            (Outcome::Ok, t + 1, t + 11, vec![r(x, &[a])]),
        ],
        Plant::WriteCycle => match model {
            TxnModel::ListAppend => vec![
                (Outcome::Ok, t, t + 10, vec![w(x, a), w(y, a)]),
                (Outcome::Ok, t + 1, t + 11, vec![w(x, b), w(y, b)]),
                (
                    Outcome::Ok,
                    t + 20,
                    t + 30,
                    vec![r(x, &[a, b]), r(y, &[b, a])],
                ),
            ],
            // Registers show their version order only through read-then-write: T1 installs
            // y after reading T2's y, T2 installs x after reading T1's x.
            TxnModel::RwRegister => vec![
                (Outcome::Ok, t, t + 10, vec![w(x, a), r(y, &[b]), w(y, a)]),
                (
                    Outcome::Ok,
                    t + 1,
                    t + 11,
                    vec![r(x, &[a]), w(x, b), w(y, b)],
                ),
            ],
        },
        Plant::CircularFlow => vec![
            (Outcome::Ok, t, t + 10, vec![w(x, a), r(y, &[b])]),
            (Outcome::Ok, t + 1, t + 11, vec![w(y, b), r(x, &[a])]),
        ],
        Plant::LostUpdate => {
            assert_eq!(
                model,
                TxnModel::ListAppend,
                "a lost update shows as G-single only in lists"
            );
            vec![
                (Outcome::Ok, t, t + 10, vec![r(x, &[]), w(x, a)]),
                (Outcome::Ok, t + 1, t + 11, vec![r(x, &[]), w(x, b)]),
                (Outcome::Ok, t + 20, t + 30, vec![r(x, &[a, b])]),
            ]
        }
        Plant::ReadSkew => vec![
            (Outcome::Ok, t, t + 10, vec![w(x, a), w(y, a)]),
            (Outcome::Ok, t + 1, t + 11, vec![r(x, &[a]), r(y, &[])]),
            (Outcome::Ok, t + 20, t + 30, vec![r(y, &[a])]),
        ],
        Plant::WriteSkew => vec![
            (Outcome::Ok, t, t + 10, vec![r(x, &[]), r(y, &[]), w(x, a)]),
            (
                Outcome::Ok,
                t + 1,
                t + 11,
                vec![r(x, &[]), r(y, &[]), w(y, b)],
            ),
            (Outcome::Ok, t + 20, t + 30, vec![r(x, &[a]), r(y, &[b])]),
        ],
        Plant::StaleRead => vec![
            (Outcome::Ok, t, t + 10, vec![w(x, a)]),
            (Outcome::Ok, t + 11, t + 20, vec![r(x, &[])]),
            (Outcome::Ok, t + 21, t + 30, vec![r(x, &[a])]),
        ],
    };
    let mut ids = Vec::new();
    for (i, (outcome, invoke, complete, ops)) in planted.into_iter().enumerate() {
        ids.push(h.txns.len());
        h.txns.push(Transaction {
            process: p + i as u64,
            outcome,
            invoke,
            complete: Some(complete),
            ops,
            line: 0,
        });
    }
    ids
}

/// A small random history: simulated, then damaged by up to `max_mutations` mutations.
pub fn small(
    model: TxnModel,
    rng: &mut ChaCha8Rng,
    max_txns: usize,
    max_mutations: usize,
) -> TxnHistory {
    let sim = Sim {
        model,
        clients: rng.random_range(1..=3),
        txns: rng.random_range(1..=max_txns),
        keys: rng.random_range(1..=2),
        key_life: usize::MAX,
        max_ops: 3,
        read_pct: 50,
        fail_pct: 15,
        info_pct: 20,
        spread: rng.random_range(5..=30),
    };
    let mut h = simulate(&sim, rng);
    for _ in 0..rng.random_range(0..=max_mutations) {
        mutate(&mut h, model, rng);
    }
    if rng.random_bool(0.5) {
        // The checker must not care in which order the transactions were recorded.
        h.txns.shuffle(rng);
    }
    h
}

/// One random change that may (or may not) make the history invalid. It keeps written
/// values unique and each process's transactions one after another in real time.
pub fn mutate(h: &mut TxnHistory, model: TxnModel, rng: &mut ChaCha8Rng) {
    if h.txns.is_empty() {
        return;
    }
    let fresh_process = next_process(h);
    let spread = 1 + rng.random_range(0..20);
    let n = h.txns.len();
    match rng.random_range(0..10) {
        // A read's value.
        0..=4 => {
            let reads: Vec<(usize, usize)> = (0..n)
                .flat_map(|t| (0..h.txns[t].ops.len()).map(move |o| (t, o)))
                .filter(|&(t, o)| {
                    h.txns[t].outcome == Outcome::Ok
                        && matches!(h.txns[t].ops[o], MicroOp::Read { .. })
                })
                .collect();
            let Some(&(t, o)) = reads.choose(rng) else {
                return;
            };
            let key = h.txns[t].ops[o].key();
            let writes: Vec<i64> = h
                .txns
                .iter()
                .flat_map(|t| &t.ops)
                .filter_map(written)
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .collect();
            let others: Vec<ReadValue> = h
                .txns
                .iter()
                .flat_map(|t| &t.ops)
                .filter_map(|op| match op {
                    MicroOp::Read { key: k, value } if *k == key => Some(value.clone()),
                    _ => None,
                })
                .collect();
            let MicroOp::Read { value, .. } = &mut h.txns[t].ops[o] else {
                unreachable!()
            };
            *value = match model {
                TxnModel::ListAppend => {
                    let mut list = match value {
                        ReadValue::List(l) => l.clone(),
                        _ => Vec::new(),
                    };
                    match rng.random_range(0..5) {
                        0 if !list.is_empty() => list.truncate(rng.random_range(0..list.len())),
                        1 => {
                            let missing: Vec<i64> = writes
                                .iter()
                                .copied()
                                .filter(|v| !list.contains(v))
                                .collect();
                            if let Some(&v) = missing.choose(rng) {
                                list.push(v);
                            }
                        }
                        2 if list.len() >= 2 => {
                            let i = rng.random_range(0..list.len() - 1);
                            list.swap(i, i + 1);
                        }
                        3 => {
                            if let Some(ReadValue::List(l)) = others.choose(rng) {
                                list = l.clone();
                            }
                        }
                        _ => list.clear(),
                    }
                    ReadValue::List(list)
                }
                TxnModel::RwRegister => match rng.random_range(0..3) {
                    0 => writes
                        .choose(rng)
                        .map_or(ReadValue::Nil, |v| ReadValue::Int(*v)),
                    1 => others.choose(rng).cloned().unwrap_or(ReadValue::Nil),
                    _ => ReadValue::Nil,
                },
            };
        }
        // An outcome.
        5..=7 => {
            let t = rng.random_range(0..n);
            let txn = &mut h.txns[t];
            let choices: Vec<Outcome> = [Outcome::Ok, Outcome::Fail, Outcome::Info]
                .into_iter()
                .filter(|o| *o != txn.outcome)
                .collect();
            let to = *choices.choose(rng).unwrap();
            if to == Outcome::Info {
                txn.complete = None;
                txn.process = fresh_process;
            } else if txn.outcome == Outcome::Info {
                // Its process ran nothing after it (it was retired): any completion fits.
                txn.complete = Some(txn.invoke + spread);
            }
            txn.outcome = to;
        }
        // A transaction's timing, on a process of its own.
        _ => {
            let t = rng.random_range(0..n);
            let end = end_time(h).max(1);
            let txn = &mut h.txns[t];
            txn.process = fresh_process;
            txn.invoke = rng.random_range(0..=end);
            if txn.complete.is_some() {
                txn.complete = Some(txn.invoke + spread);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The oracle.

/// What the exhaustive search decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Some serial order of the ok transactions and some of the info ones explains every
    /// ok transaction's reads.
    pub serializable: bool,
    /// Such an order exists that also respects real time.
    pub strict: bool,
}

/// Executes `txn` on `state`; false if it is ok and a read disagrees with the state.
fn run(model: TxnModel, txn: &Transaction, state: &mut [Vec<i64>]) -> bool {
    let check = txn.outcome == Outcome::Ok;
    for op in &txn.ops {
        match op {
            MicroOp::Append { key, value } | MicroOp::Write { key, value } => {
                state[*key as usize].push(*value)
            }
            MicroOp::Read { key, value } if check => {
                let now = &state[*key as usize];
                let fits = match (model, value) {
                    (TxnModel::ListAppend, ReadValue::Nil) => now.is_empty(),
                    (TxnModel::ListAppend, ReadValue::List(l)) => l == now,
                    (TxnModel::RwRegister, ReadValue::Nil) => now.is_empty(),
                    (TxnModel::RwRegister, ReadValue::Int(v)) => now.last() == Some(v),
                    _ => false,
                };
                if !fits {
                    return false;
                }
            }
            MicroOp::Read { .. } => {}
        }
    }
    true
}

/// Whether `a` must precede `b` in real time.
fn precedes(a: &Transaction, b: &Transaction) -> bool {
    a.outcome == Outcome::Ok && a.complete.is_some_and(|c| c < b.invoke)
}

fn keys(h: &TxnHistory) -> usize {
    let used = h
        .txns
        .iter()
        .flat_map(|t| &t.ops)
        .map(|o| o.key() as usize + 1)
        .max();
    h.keys.len().max(used.unwrap_or(0))
}

/// Depth-first search over serial orders, executing as it goes: a transaction may come next
/// if its reads agree with the state (and, for `strict`, every ok transaction that
/// completed before it was invoked has come already). Every ok transaction must come; an
/// info transaction may or may not (leaving it out is choosing the subset without it);
/// failed ones never do. A prefix whose reads disagree fails in every extension, so pruning
/// it loses nothing: the search is exact.
fn search(h: &TxnHistory, model: TxnModel, strict: bool) -> bool {
    let n = h.txns.len();
    assert!(n <= 16, "the oracle is for small histories");
    let candidates: Vec<usize> = (0..n)
        .filter(|&t| h.txns[t].outcome != Outcome::Fail)
        .collect();
    let must: u32 = (0..n)
        .filter(|&t| h.txns[t].outcome == Outcome::Ok)
        .fold(0, |m, t| m | 1 << t);
    let before: Vec<u32> = (0..n)
        .map(|b| {
            (0..n)
                .filter(|&a| {
                    strict && h.txns[a].outcome != Outcome::Fail && precedes(&h.txns[a], &h.txns[b])
                })
                .fold(0, |m, a| m | 1 << a)
        })
        .collect();
    fn dfs(
        h: &TxnHistory,
        model: TxnModel,
        candidates: &[usize],
        before: &[u32],
        must: u32,
        placed: u32,
        state: &[Vec<i64>],
    ) -> bool {
        if placed & must == must {
            return true;
        }
        for &t in candidates {
            if placed & (1 << t) != 0 || before[t] & !placed != 0 {
                continue;
            }
            let mut next = state.to_vec();
            if run(model, &h.txns[t], &mut next)
                && dfs(h, model, candidates, before, must, placed | 1 << t, &next)
            {
                return true;
            }
        }
        false
    }
    dfs(
        h,
        model,
        &candidates,
        &before,
        must,
        0,
        &vec![Vec::new(); keys(h)],
    )
}

/// Exact serializability and strict serializability of a small history.
pub fn oracle(h: &TxnHistory, model: TxnModel) -> Decision {
    let strict = search(h, model, true);
    let serializable = strict || search(h, model, false);
    Decision {
        serializable,
        strict,
    }
}

/// The same decision by brute force: every subset of the info transactions, every
/// permutation of the ok ones with it, executed from scratch.
pub fn oracle_literal(h: &TxnHistory, model: TxnModel) -> Decision {
    let ok: Vec<usize> = (0..h.txns.len())
        .filter(|&t| h.txns[t].outcome == Outcome::Ok)
        .collect();
    let info: Vec<usize> = (0..h.txns.len())
        .filter(|&t| h.txns[t].outcome == Outcome::Info)
        .collect();
    let mut decision = Decision {
        serializable: false,
        strict: false,
    };
    for subset in 0u32..1 << info.len() {
        let mut included = ok.clone();
        included.extend(
            info.iter()
                .enumerate()
                .filter(|(i, _)| subset & 1 << i != 0)
                .map(|(_, t)| *t),
        );
        for order in permutations(&included) {
            let mut state = vec![Vec::new(); keys(h)];
            if !order.iter().all(|&t| run(model, &h.txns[t], &mut state)) {
                continue;
            }
            decision.serializable = true;
            let real_time = order.iter().enumerate().all(|(i, &b)| {
                order[i + 1..]
                    .iter()
                    .all(|&a| !precedes(&h.txns[a], &h.txns[b]))
            });
            if real_time {
                decision.strict = true;
                return decision;
            }
        }
    }
    decision
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.is_empty() {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first);
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Reporting.

/// The history in Schism's native JSON Lines, ready to feed the command line.
pub fn render(h: &TxnHistory) -> String {
    let mut out = String::new();
    for t in &h.txns {
        let ops: Vec<String> = t
            .ops
            .iter()
            .map(|op| {
                let key = h.key_name(op.key());
                match op {
                    MicroOp::Append { value, .. } => format!("[\"append\",\"{key}\",{value}]"),
                    MicroOp::Write { value, .. } => format!("[\"w\",\"{key}\",{value}]"),
                    MicroOp::Read { value, .. } => {
                        let v = match value {
                            ReadValue::Nil => "null".to_string(),
                            ReadValue::Int(i) => i.to_string(),
                            ReadValue::List(l) => format!(
                                "[{}]",
                                l.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
                            ),
                        };
                        format!("[\"r\",\"{key}\",{v}]")
                    }
                }
            })
            .collect();
        let kind = match t.outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        };
        let complete = t
            .complete
            .map_or(String::new(), |c| format!(",\"complete\":{c}"));
        out.push_str(&format!(
            "{{\"process\":{},\"type\":\"{kind}\",\"f\":\"txn\",\"value\":[{}],\"invoke\":{}{complete}}}\n",
            t.process,
            ops.join(","),
            t.invoke
        ));
    }
    out
}

/// Shrinks `h` while `bad` holds: drops whole transactions, single micro-operations, and
/// written values everywhere (the write and the value in every list read), until no single
/// step keeps it bad. Returns it in invocation order.
pub fn minimise(h: &TxnHistory, bad: impl Fn(&TxnHistory) -> bool) -> TxnHistory {
    let mut h = h.clone();
    h.txns.sort_by_key(|t| t.invoke);
    loop {
        let mut shrunk = false;
        let values: Vec<(u32, i64)> = h
            .txns
            .iter()
            .flat_map(|t| &t.ops)
            .filter_map(written)
            .collect();
        for (key, v) in values {
            let mut c = h.clone();
            for t in &mut c.txns {
                t.ops.retain(|op| written(op) != Some((key, v)));
                for op in &mut t.ops {
                    if let MicroOp::Read {
                        key: k,
                        value: ReadValue::List(l),
                    } = op
                        && *k == key
                    {
                        l.retain(|e| *e != v);
                    }
                }
            }
            c.txns.retain(|t| !t.ops.is_empty());
            if !c.txns.is_empty() && bad(&c) {
                h = c;
                shrunk = true;
            }
        }
        for t in (0..h.txns.len()).rev() {
            let mut c = h.clone();
            c.txns.remove(t);
            if !c.txns.is_empty() && bad(&c) {
                h = c;
                shrunk = true;
            }
        }
        for t in 0..h.txns.len() {
            for o in (0..h.txns[t].ops.len()).rev() {
                if o >= h.txns[t].ops.len() || h.txns[t].ops.len() == 1 {
                    continue;
                }
                let mut c = h.clone();
                c.txns[t].ops.remove(o);
                if bad(&c) {
                    h = c;
                    shrunk = true;
                }
            }
        }
        if !shrunk {
            return h;
        }
    }
}
