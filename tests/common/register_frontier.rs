//! Single-register CAS histories of the hard class: many clients, unknown outcomes shaped
//! like a partition (a minority of clients times out for whole stretches) or scattered, CASes
//! whose comparison failed, and optionally one planted violation. Shared by the frontier
//! benchmark and the tests that hold the checker to the verdicts known by construction.
//!
//! Linearizable by construction: every operation gets a linearization point inside its
//! interval (an unknown write or CAS takes effect at a random later moment, or never) and
//! results come from applying the operations in the order of those points to one register.
//! Written values are unique. Each planted violation comes with the argument, in its doc,
//! of why no linearization exists whatever the unknown operations did. Who includes this
//! includes `history_gen.rs` too, for its seeded RNG.
#![allow(dead_code)]

use std::fmt::Write as _;

use schism::check::{Call, History, ModelKind, Operation, Outcome, Value};

pub use crate::history_gen::Rng;

/// Where the unknown outcomes fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknowns {
    /// A minority of the clients times out on everything for whole stretches.
    Partition,
    /// Any operation, at random.
    Scattered,
}

/// The violation planted, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plant {
    None,
    /// A read of a value that an acknowledged write or CAS had replaced before the read began.
    StaleRead,
    /// A successful CAS expecting a value already replaced before the CAS began.
    ConsumedCas,
    /// A read of a value nobody wrote.
    ImpossibleRead,
    /// A read of `a` after CAS b→c completed, where CAS a→b is still running when the read
    /// begins: only the version order the two CASes fix (a, then b, then c) shows it.
    ChainStaleRead,
    /// A CAS expecting `e` that reports the comparison failed, although `e` was the value
    /// for all of its interval: written before it began, read after it completed.
    FailedCasDuringValue,
}

impl Plant {
    pub const ALL: [Plant; 6] = [
        Plant::None,
        Plant::StaleRead,
        Plant::ConsumedCas,
        Plant::ImpossibleRead,
        Plant::ChainStaleRead,
        Plant::FailedCasDuringValue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Plant::None => "none",
            Plant::StaleRead => "stale-read",
            Plant::ConsumedCas => "consumed-cas",
            Plant::ImpossibleRead => "impossible-read",
            Plant::ChainStaleRead => "chain-stale-read",
            Plant::FailedCasDuringValue => "failed-cas-during-value",
        }
    }

    pub fn linearizable(self) -> bool {
        self == Plant::None
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub ops: usize,
    pub clients: usize,
    /// Percent of all operations with an unknown outcome (approximately).
    pub unknown_percent: u64,
    pub unknowns: Unknowns,
    pub plant: Plant,
    pub seed: u64,
}

/// One generated operation with the point at which it took effect in the construction.
#[derive(Debug, Clone)]
struct Gen {
    op: Operation,
    /// The linearization point; `None` for an unknown operation that never took effect.
    point: Option<u64>,
    /// The value before and after the operation, at its point.
    before: Value,
    after: Value,
}

/// Time of a normal operation, in microseconds: 100–1,100.
fn latency(rng: &mut Rng) -> u64 {
    100 + rng.below(1_000)
}

/// How long a client waits before calling an operation timed out.
const TIMEOUT: u64 = 1_500;

/// Generates the history, or `None` if the plant found no place in it (try another seed).
pub fn generate(shape: &Shape) -> Option<History> {
    let mut rng = Rng(shape.seed);
    let per_client = shape.ops.div_ceil(shape.clients);
    // Which operations of which client have an unknown outcome.
    let mut unknown: Vec<Vec<bool>> = vec![vec![false; per_client]; shape.clients];
    match shape.unknowns {
        Unknowns::Scattered => {
            for row in &mut unknown {
                for u in row.iter_mut() {
                    *u = rng.chance(shape.unknown_percent);
                }
            }
        }
        Unknowns::Partition => {
            // A minority, large enough to carry the share: at most just under half.
            let wanted = shape.ops as u64 * shape.unknown_percent / 100;
            let minority = ((shape.clients - 1) / 2).max(1);
            let need = (wanted as usize).div_ceil(minority).min(per_client);
            for row in unknown.iter_mut().take(minority) {
                // Stretches of 10–80 consecutive timeouts, with the gaps between them spread
                // over the client's run.
                let mut marked = 0;
                let mut guard = 0;
                while marked < need && guard < 10_000 {
                    guard += 1;
                    let len = (10 + rng.below(71) as usize).min(need - marked);
                    let start = rng.below((per_client - len + 1) as u64) as usize;
                    if row[start..start + len].iter().any(|&u| u) {
                        continue;
                    }
                    row[start..start + len].iter_mut().for_each(|u| *u = true);
                    marked += len;
                }
            }
        }
    }

    // Timing first: each client runs its operations one after the other.
    struct Timed {
        client: usize,
        invoke: u64,
        complete: u64,
        point: Option<u64>,
        kind: u64,
        unknown: bool,
    }
    let mut timed = Vec::with_capacity(per_client * shape.clients);
    let mut end = 0;
    for (client, row) in unknown.iter().enumerate() {
        let mut t = rng.below(500);
        for &is_unknown in row {
            let invoke = t;
            let kind = rng.below(100);
            let (complete, point) = if is_unknown {
                let complete = invoke + TIMEOUT;
                // Open to the end: it took effect at some later moment, possibly long after
                // the client gave up, or never.
                let point = rng.chance(50).then(|| invoke + rng.below(20 * TIMEOUT) + 1);
                (complete, point)
            } else {
                let d = latency(&mut rng);
                (invoke + d, Some(invoke + 1 + rng.below(d - 1)))
            };
            timed.push(Timed {
                client,
                invoke,
                complete,
                point,
                kind,
                unknown: is_unknown,
            });
            t = complete + 1 + rng.below(200);
            end = end.max(complete);
        }
    }

    // Results: apply in the order of the points. Operations that never took effect are
    // decided at their invocation (their call must still look plausible).
    let mut order: Vec<usize> = (0..timed.len()).collect();
    order.sort_by_key(|&i| (timed[i].point.unwrap_or(timed[i].invoke), i));
    let mut current = Value::Nil;
    let mut recent: Vec<Value> = vec![Value::Nil];
    let mut fresh = 0i64;
    let mut gens: Vec<Option<Gen>> = (0..timed.len()).map(|_| None).collect();
    for &i in &order {
        let t = &timed[i];
        let applies = t.point.is_some();
        fresh += 1;
        let before = current.clone();
        let call = if t.kind < 40 {
            Call::Read {
                value: (!t.unknown).then(|| current.clone()),
            }
        } else if t.kind < 65 {
            let value = Value::Int(fresh);
            if applies {
                current = value.clone();
            }
            Call::Write { value }
        } else {
            // Compare with the current value most of the time, else with a recent one.
            let from = if rng.chance(60) {
                current.clone()
            } else {
                recent[rng.below(recent.len() as u64) as usize].clone()
            };
            // Jepsen's CASes compare integers: never nil (0 is never written).
            let from = if from == Value::Nil {
                Value::Int(0)
            } else {
                from
            };
            let to = Value::Int(fresh);
            let holds = from == current;
            if applies && holds {
                current = to.clone();
            }
            Call::Cas {
                from,
                to,
                swapped: (!t.unknown).then_some(holds),
            }
        };
        if current != before {
            recent.push(current.clone());
            if recent.len() > 8 {
                recent.remove(0);
            }
        }
        gens[i] = Some(Gen {
            op: Operation {
                process: t.client as u64,
                key: None,
                call,
                outcome: if t.unknown {
                    Outcome::Info
                } else {
                    Outcome::Ok
                },
                invoke: t.invoke,
                complete: (!t.unknown).then_some(t.complete),
                line: 0,
            },
            point: t.point,
            before,
            after: current.clone(),
        });
    }
    let mut gens: Vec<Gen> = gens.into_iter().map(|g| g.expect("every op")).collect();
    // Recorded clocks count nanoseconds.
    for g in &mut gens {
        g.op.invoke *= 1_000;
        g.op.complete = g.op.complete.map(|c| c * 1_000);
        g.point = g.point.map(|p| p * 1_000);
    }
    gens.sort_by_key(|g| (g.op.invoke, g.op.process));
    plant(&mut gens, shape.plant, &mut rng)?;
    let mut history = History::new();
    history.model = Some(ModelKind::CasRegister);
    history.ops = gens.into_iter().map(|g| g.op).collect();
    Some(history)
}

fn ok(g: &Gen) -> bool {
    g.op.outcome == Outcome::Ok
}

fn ret(g: &Gen) -> u64 {
    g.op.complete.unwrap_or(u64::MAX)
}

/// The acknowledged operation that installed `value`, if there is one.
fn installer(gens: &[Gen], value: &Value) -> Option<usize> {
    gens.iter().position(|g| {
        g.point.is_some()
            && g.after == *value
            && g.before != *value
            && matches!(g.op.call, Call::Write { .. } | Call::Cas { .. })
    })
}

/// Picks candidates from the middle of the history, so the violation has operations on both
/// sides.
fn middle(len: usize, rng: &mut Rng) -> impl Iterator<Item = usize> {
    let start = len / 3 + rng.below((len / 3).max(1) as u64) as usize;
    (start..len).chain(0..start)
}

fn plant(gens: &mut [Gen], plant: Plant, rng: &mut Rng) -> Option<()> {
    let n = gens.len();
    match plant {
        Plant::None => Some(()),
        Plant::ImpossibleRead => {
            // No operation writes a negative value.
            let r = middle(n, rng).find(|&i| ok(&gens[i]) && gens[i].op.call.is_read())?;
            gens[r].op.call = Call::Read {
                value: Some(Value::Int(-7)),
            };
            Some(())
        }
        Plant::StaleRead | Plant::ConsumedCas => {
            // An acknowledged CAS x: u→x ended u before it completed; u's only writer had
            // to come before it (x needs u), so after x's point u is never the value again.
            // An operation that begins after x completed cannot see u.
            for r in middle(n, rng) {
                if !(ok(&gens[r]) && gens[r].op.call.is_read()) {
                    continue;
                }
                let consumed = gens.iter().find(|x| {
                    ok(x)
                        && ret(x) < gens[r].op.invoke
                        && matches!(
                            x.op.call,
                            Call::Cas {
                                swapped: Some(true),
                                ..
                            }
                        )
                        && x.before != gens[r].after
                        && ret(x) + 20_000_000 > gens[r].op.invoke
                });
                let Some(x) = consumed else { continue };
                let u = x.before.clone();
                gens[r].op.call = if plant == Plant::StaleRead {
                    Call::Read { value: Some(u) }
                } else {
                    Call::Cas {
                        from: u,
                        // Nobody else writes or reads negative values.
                        to: Value::Int(-1_000_000 - r as i64),
                        swapped: Some(true),
                    }
                };
                return Some(());
            }
            None
        }
        Plant::ChainStaleRead => {
            // Acknowledged CASes c1: a→b and c2: b→c. c2 needs b, whose only writer is c1,
            // and c1 needs a: so a ends at c1's point, before c2's, before c2 completed. A
            // read beginning after c2 completed cannot see a. Chosen so that c1 is still
            // running when the read begins: no single CAS's interval shows the order.
            for r in middle(n, rng) {
                if !(ok(&gens[r]) && gens[r].op.call.is_read()) {
                    continue;
                }
                let inv = gens[r].op.invoke;
                let pair = gens.iter().enumerate().find_map(|(j, c2)| {
                    let Call::Cas {
                        from: b,
                        swapped: Some(true),
                        ..
                    } = &c2.op.call
                    else {
                        return None;
                    };
                    if !ok(c2) || ret(c2) >= inv || ret(c2) + 20_000_000 < inv {
                        return None;
                    }
                    let c1 = gens.iter().position(|c1| {
                        ok(c1)
                            && c1.after == *b
                            && matches!(
                                c1.op.call,
                                Call::Cas {
                                    swapped: Some(true),
                                    ..
                                }
                            )
                            && ret(c1) > inv
                    })?;
                    Some((c1, j))
                });
                let Some((c1, _)) = pair else { continue };
                let a = gens[c1].before.clone();
                if a == gens[r].after {
                    continue;
                }
                gens[r].op.call = Call::Read { value: Some(a) };
                return Some(());
            }
            None
        }
        Plant::FailedCasDuringValue => {
            // e's writer was acknowledged before f began and another read of e began after
            // f completed: e was the value during all of f (unique values never come back),
            // so a compare with e cannot have failed.
            for f in middle(n, rng) {
                if !(ok(&gens[f]) && gens[f].op.call.is_read()) {
                    continue;
                }
                let e = gens[f].after.clone();
                let Some(w) = installer(gens, &e) else {
                    continue;
                };
                if !ok(&gens[w]) || ret(&gens[w]) >= gens[f].op.invoke {
                    continue;
                }
                let later = gens.iter().enumerate().any(|(k, g)| {
                    k != f
                        && ok(g)
                        && g.op.invoke > ret(&gens[f])
                        && matches!(&g.op.call, Call::Read { value: Some(v) } if *v == e)
                });
                if !later {
                    continue;
                }
                gens[f].op.call = Call::Cas {
                    from: e,
                    to: Value::Int(-2_000_000 - f as i64),
                    swapped: Some(false),
                };
                return Some(());
            }
            None
        }
    }
}

/// Generates with `shape.seed`, or the next seeds until the plant finds a place.
pub fn generate_some(shape: &Shape) -> (History, u64) {
    for k in 0..100 {
        let s = Shape {
            seed: shape.seed + k,
            ..*shape
        };
        if let Some(h) = generate(&s) {
            return (h, s.seed);
        }
    }
    panic!("no place for {:?} in 100 seeds", shape.plant)
}

/// The history as a Jepsen etcd log (`INFO jepsen.util - PROC TYPE F VALUE`), events in time
/// order. As in Jepsen, a client whose operation timed out goes on as a new process. A CAS
/// whose comparison failed is logged `:fail`, which is all such a log can say.
pub fn to_jepsen_log(history: &History, clients: usize) -> String {
    fn v(value: &Value) -> String {
        match value {
            Value::Nil => "nil".into(),
            Value::Int(i) => i.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
    // (time, completion?, op index)
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        events.push((op.invoke, false, i));
        let done = op.complete.unwrap_or(op.invoke + TIMEOUT * 1_000);
        events.push((done, true, i));
    }
    events.sort();
    let mut process: Vec<u64> = (0..clients as u64).collect();
    let mut proc_of = vec![0u64; history.ops.len()];
    let mut out = String::new();
    for (_, completion, i) in events {
        let op = &history.ops[i];
        let c = op.process as usize;
        if !completion {
            proc_of[i] = process[c];
        }
        let p = proc_of[i];
        let (f, invoke_value, done) = match &op.call {
            Call::Read { value } => (
                "read",
                "nil".to_string(),
                value.as_ref().map_or("nil".into(), v),
            ),
            Call::Write { value } => ("write", v(value), v(value)),
            Call::Cas { from, to, .. } => {
                let pair = format!("[{} {}]", v(from), v(to));
                ("cas", pair.clone(), pair)
            }
            _ => unreachable!("registers only"),
        };
        let _ = if !completion {
            writeln!(out, "INFO jepsen.util - {p}\t:invoke\t:{f}\t{invoke_value}")
        } else if op.outcome == Outcome::Info {
            process[c] += clients as u64;
            writeln!(out, "INFO jepsen.util - {p}\t:info\t:{f}\t:timed-out")
        } else if matches!(
            op.call,
            Call::Cas {
                swapped: Some(false),
                ..
            }
        ) {
            writeln!(out, "INFO jepsen.util - {p}\t:fail\t:{f}\t{done}")
        } else {
            writeln!(out, "INFO jepsen.util - {p}\t:ok\t:{f}\t{done}")
        };
    }
    out
}
