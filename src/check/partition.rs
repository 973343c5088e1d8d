//! From a history to independent searches: dropping operations that cannot matter, splitting
//! by key (P-compositionality: a history is linearizable iff each key's sub-history is), and
//! running the searches on all cores.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use super::memory::MemoryGauge;

use super::history::{Call, History, Outcome};
use super::models::{KeyMachine, KeyStep, Machine, ModelKind, MultiKey, SingleKey};
use super::patterns::{self, Pattern};
use super::search::{Failure, Limits, NO_TWIN, SearchOp, SearchResult, StopReason, search};
use super::{CheckOptions, ModelError};

/// The machine of one partition.
pub(crate) enum PartMachine {
    Single(SingleKey),
    Multi(MultiKey),
}

impl PartMachine {
    pub(crate) fn render(&self, state: u32) -> String {
        match self {
            PartMachine::Single(m) => m.render(state),
            PartMachine::Multi(m) => m.render(state),
        }
    }
}

/// One independent search.
pub(crate) struct Part {
    /// The key, when the history was split by key.
    pub key: Option<String>,
    /// History operation ids, indexed by the search's operation index.
    pub ids: Vec<usize>,
    pub ops: Vec<SearchOp>,
    pub machine: PartMachine,
    /// Try the pattern proofs before searching (registers: see `patterns`).
    pub patterns: bool,
}

/// Builds the searches for `history`. Operations that cannot constrain the verdict are left
/// out: failed operations (they did not happen) and reads whose result is unknown.
pub(crate) fn prepare(history: &History, options: &CheckOptions) -> Result<Vec<Part>, ModelError> {
    let model = options.model;
    // Hashed, then sorted once: a tree's string comparisons per operation cost more.
    let mut by_key: rustc_hash::FxHashMap<Option<&str>, Vec<usize>> = Default::default();
    for (id, op) in history.ops.iter().enumerate() {
        model.accepts(&op.call).map_err(|message| ModelError {
            line: op.line,
            op: id,
            message,
        })?;
        if let Some(c) = op.complete
            && c < op.invoke
        {
            return Err(ModelError {
                line: op.line,
                op: id,
                message: format!("completes at {c}, before it was invoked at {}", op.invoke),
            });
        }
        let unknown_read = match &op.call {
            Call::Read { value } | Call::Get { value } => {
                value.is_none() || op.outcome == Outcome::Info
            }
            _ => false,
        };
        if op.outcome == Outcome::Fail || unknown_read {
            continue;
        }
        let key = if options.partition {
            op.key.as_deref()
        } else {
            None
        };
        by_key.entry(key).or_default().push(id);
    }

    let search_op = |id: usize| {
        let op = &history.ops[id];
        let info = op.outcome == Outcome::Info;
        SearchOp {
            invoke: op.invoke,
            // An unknown outcome may take effect at any time after the invocation.
            ret: if info {
                u64::MAX
            } else {
                op.complete.unwrap_or(u64::MAX)
            },
            info,
            twin: NO_TWIN,
            unknown_write: false,
            blank: false,
        }
    };
    // The result of an operation with an unknown outcome is unknown, whatever was recorded.
    let compile = |km: &mut KeyMachine, id: usize| -> KeyStep {
        let op = &history.ops[id];
        match (km.compile(model, &op.call), op.outcome) {
            (KeyStep::Cas { from, to, .. }, Outcome::Info) => KeyStep::Cas {
                from,
                to,
                swapped: None,
            },
            (step, _) => step,
        }
    };

    let mut parts = Vec::new();
    if options.partition {
        let mut by_key: Vec<(Option<&str>, Vec<usize>)> = by_key.into_iter().collect();
        by_key.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, ids) in by_key {
            let mut km = KeyMachine::new(model);
            let mut steps: Vec<KeyStep> = ids.iter().map(|&id| compile(&mut km, id)).collect();
            km.merge_unobserved(&mut steps);
            let mut ops: Vec<SearchOp> = ids.iter().map(|&id| search_op(id)).collect();
            if model != ModelKind::Kv {
                mark_twins(&mut ops, &steps);
            }
            for (op, step) in ops.iter_mut().zip(&steps) {
                if let (true, KeyStep::Write(v)) = (op.info, step) {
                    op.unknown_write = true;
                    op.blank = km.unobserved() == Some(*v);
                }
            }
            parts.push(Part {
                key: key.map(str::to_string),
                ops,
                ids,
                machine: PartMachine::Single(SingleKey { km, ops: steps }),
                patterns: model != ModelKind::Kv,
            });
        }
    } else if let Some((_, ids)) = by_key.into_iter().next() {
        let mut km = KeyMachine::new(model);
        let mut keys: Vec<String> = Vec::new();
        let mut key_ids: BTreeMap<Option<&str>, u32> = BTreeMap::new();
        let mut steps = Vec::with_capacity(ids.len());
        for &id in &ids {
            let key = history.ops[id].key.as_deref();
            let k = *key_ids.entry(key).or_insert_with(|| {
                keys.push(key.unwrap_or("").to_string());
                (keys.len() - 1) as u32
            });
            steps.push((k, compile(&mut km, id)));
        }
        parts.push(Part {
            key: None,
            ops: ids.iter().map(|&id| search_op(id)).collect(),
            ids,
            machine: PartMachine::Multi(MultiKey::new(km, keys, steps)),
            patterns: false,
        });
    }
    Ok(parts)
}

/// Gives unknown operations with the same step a twin class (see `SearchOp::twin`).
fn mark_twins(ops: &mut [SearchOp], steps: &[KeyStep]) {
    let mut count: rustc_hash::FxHashMap<KeyStep, (u32, u32)> = Default::default();
    for (op, step) in ops.iter().zip(steps) {
        if op.info {
            count.entry(*step).or_insert((0, NO_TWIN)).0 += 1;
        }
    }
    let mut classes = 0;
    for (op, step) in ops.iter_mut().zip(steps) {
        if !op.info {
            continue;
        }
        let (members, class) = count.get_mut(step).expect("counted");
        if *members < 2 {
            continue;
        }
        if *class == NO_TWIN {
            *class = classes;
            classes += 1;
        }
        op.twin = *class;
    }
}

/// The combined result of all partitions.
pub(crate) enum Combined {
    Linearizable,
    /// The index of the failing part and where its search got furthest.
    NotLinearizable(usize, Failure),
    /// The index of the failing part and the pattern that proves it, found before searching.
    Proved(usize, Pattern),
    /// The first reason a part stopped without a verdict, and how many parts finished.
    Unknown(StopReason, usize),
}

/// Parts of at least this many operations are proved before any search.
const PROVE_FIRST: usize = 2_000;

/// What one part's check found.
#[derive(Clone)]
enum PartResult {
    Searched(SearchResult),
    Proved(Pattern),
}

impl PartResult {
    fn violated(&self) -> bool {
        matches!(
            self,
            PartResult::Proved(_) | PartResult::Searched(SearchResult::NotLinearizable(_))
        )
    }
}

/// When the searches must stop without a verdict.
pub(crate) struct Stop<'a> {
    /// The time budget's end.
    pub deadline: Option<Instant>,
    /// Set by the caller to stop the check.
    pub requested: Option<&'a AtomicBool>,
    /// The memory budget, shared by every search of the check.
    pub memory: &'a MemoryGauge,
}

/// Runs every part's search, largest first, on up to `threads` threads. A violation in one
/// part cancels the others: the verdict is already known.
pub(crate) fn run(parts: &mut [Part], threads: usize, stop: &Stop<'_>) -> Combined {
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(parts[i].ops.len()));
    let cancel = AtomicBool::new(false);
    // Threads cost more than they save on small histories.
    let total: usize = parts.iter().map(|p| p.ops.len()).sum();
    let threads = if total < 1000 {
        1
    } else {
        threads.clamp(1, parts.len().max(1))
    };
    let limits = Limits {
        deadline: stop.deadline,
        cancel: &cancel,
        requested: stop.requested,
        memory: stop.memory,
        concurrent: threads,
        max_steps: None,
    };
    // A first, short search settles most small parts (a real history's linearization is
    // mostly found without backtracking): only the others pay for the pattern proofs, and a
    // violation found either way gets the proof's explanation when there is one. Large parts
    // are proved first: the proofs' linear pass is cheap beside what a search may cost them.
    let first_try = |n: usize| Limits {
        max_steps: Some(4 * n as u64 + 1_000),
        ..limits
    };
    let prove = |part: &Part| -> Option<Pattern> {
        match &part.machine {
            PartMachine::Single(m) if part.patterns => patterns::prove(
                &part.ops,
                &m.ops,
                m.km.init(),
                m.km.classes(),
                m.km.unobserved(),
            ),
            _ => None,
        }
    };
    let run_one = |part: &mut Part| -> PartResult {
        // Past the budgets the answer is Unknown, even for a part that would be quick.
        if let Some(reason) = limits.stop_reason() {
            return PartResult::Searched(SearchResult::Unknown(reason));
        }
        let first = match &mut part.machine {
            PartMachine::Single(m) if part.patterns && part.ops.len() < PROVE_FIRST => {
                Some(search(&part.ops, m, &first_try(part.ops.len())))
            }
            _ => None,
        };
        let r = match first {
            Some(SearchResult::Linearizable) => PartResult::Searched(SearchResult::Linearizable),
            Some(SearchResult::Unknown(reason)) if reason != StopReason::Steps => {
                PartResult::Searched(SearchResult::Unknown(reason))
            }
            first => {
                // The budgets hold for the proofs too.
                if let Some(reason) = limits.stop_reason() {
                    return PartResult::Searched(SearchResult::Unknown(reason));
                }
                match (prove(part), first, &mut part.machine) {
                    (Some(pattern), _, _) => match limits.stop_reason() {
                        Some(reason) => PartResult::Searched(SearchResult::Unknown(reason)),
                        None => PartResult::Proved(pattern),
                    },
                    (None, Some(r @ SearchResult::NotLinearizable(_)), _) => {
                        PartResult::Searched(r)
                    }
                    (None, _, PartMachine::Single(m)) => {
                        PartResult::Searched(search(&part.ops, m, &limits))
                    }
                    (None, _, PartMachine::Multi(m)) => {
                        PartResult::Searched(search(&part.ops, m, &limits))
                    }
                }
            }
        };
        if r.violated() {
            cancel.store(true, Ordering::Relaxed);
        }
        r
    };

    let mut results: Vec<Option<PartResult>> = vec![None; parts.len()];
    if threads == 1 {
        for &i in &order {
            let r = run_one(&mut parts[i]);
            let stop = r.violated();
            results[i] = Some(r);
            if stop {
                break;
            }
        }
    } else {
        let slots: Vec<Mutex<&mut Part>> = parts.iter_mut().map(Mutex::new).collect();
        let done: Vec<Mutex<Option<PartResult>>> =
            (0..slots.len()).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= order.len() || cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = order[k];
                        let mut part = slots[i].lock().unwrap_or_else(|e| e.into_inner());
                        let r = run_one(&mut part);
                        *done[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    }
                });
            }
        });
        for (slot, r) in results.iter_mut().zip(done) {
            *slot = r.into_inner().unwrap_or_else(|e| e.into_inner());
        }
    }

    // A violation anywhere decides; report the one in the earliest part (by key) for a
    // deterministic counterexample when several keys fail.
    let mut unknown = None;
    let mut finished = 0;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(PartResult::Proved(p)) => return Combined::Proved(i, p),
            Some(PartResult::Searched(SearchResult::NotLinearizable(f))) => {
                return Combined::NotLinearizable(i, f);
            }
            Some(PartResult::Searched(SearchResult::Linearizable)) => finished += 1,
            // Report a real reason over the cancellation it caused.
            Some(PartResult::Searched(SearchResult::Unknown(reason)))
                if unknown.is_none() || unknown == Some(StopReason::Cancelled) =>
            {
                unknown = Some(reason);
            }
            Some(PartResult::Searched(SearchResult::Unknown(_))) => {}
            None => {}
        }
    }
    if finished == parts.len() {
        Combined::Linearizable
    } else {
        Combined::Unknown(unknown.unwrap_or(StopReason::Cancelled), finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::{Operation, Value};
    use crate::check::models::ModelKind;

    fn op(process: u64, key: &str, call: Call, invoke: u64, complete: u64) -> Operation {
        Operation {
            process,
            key: Some(key.to_string()),
            call,
            outcome: Outcome::Ok,
            invoke,
            complete: Some(complete),
            line: 0,
        }
    }

    #[test]
    fn splits_by_key_and_drops_failed_and_unknown_reads() {
        let mut h = History::new();
        h.ops.push(op(
            0,
            "a",
            Call::Write {
                value: Value::Int(1),
            },
            0,
            1,
        ));
        h.ops.push(op(
            1,
            "b",
            Call::Write {
                value: Value::Int(2),
            },
            0,
            1,
        ));
        let mut failed = op(
            2,
            "a",
            Call::Write {
                value: Value::Int(3),
            },
            2,
            3,
        );
        failed.outcome = Outcome::Fail;
        h.ops.push(failed);
        let mut lost_read = op(3, "b", Call::Read { value: None }, 2, 3);
        lost_read.outcome = Outcome::Info;
        lost_read.complete = None;
        h.ops.push(lost_read);
        let options = CheckOptions::new(ModelKind::Register);
        let parts = prepare(&h, &options).expect("valid history");
        let ids: Vec<Vec<usize>> = parts.iter().map(|p| p.ids.clone()).collect();
        assert_eq!(ids, vec![vec![0], vec![1]]);
    }

    #[test]
    fn rejects_a_function_the_model_lacks_with_its_line() {
        let mut h = History::new();
        let mut o = op(
            0,
            "a",
            Call::Append {
                value: Value::Str("x".into()),
            },
            0,
            1,
        );
        o.line = 7;
        h.ops.push(o);
        let err = prepare(&h, &CheckOptions::new(ModelKind::CasRegister))
            .err()
            .expect("append is not a register function");
        assert_eq!(err.line, 7);
    }
}
