//! The transactional workload: `concurrency` workers, each bound to one node, running
//! list-append (or rw-register) transactions of 1 to `max_steps` micro-operations (about half
//! appends or writes) over a rotating set of active keys, with values unique per key, and
//! recording every transaction with monotonic timestamps — the shape of Jepsen's append
//! workload.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use super::generator::{WorkloadCounters, join_workers};
use crate::check::history::Outcome;
use crate::check::txn::{MicroOp, ReadValue, Transaction, TxnHistory, TxnModel};
use crate::workload::{OpError, TxnClient, TxnStep};

/// What the transactional workload does.
#[derive(Debug, Clone)]
pub struct TxnPlan {
    /// Appends and list reads, or register writes and reads.
    pub model: TxnModel,
    /// Put in front of every key name sent to the database (not recorded), so that a run
    /// never reads what an earlier run wrote.
    pub key_prefix: String,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Transactions per second, all workers together.
    pub rate: u32,
    /// Keys being written at any time.
    pub active_keys: usize,
    /// Writes a key takes before a fresh key replaces it, so reads stay short.
    pub writes_per_key: usize,
    /// Most micro-operations in one transaction.
    pub max_steps: usize,
    /// Per-transaction deadline.
    pub timeout: Duration,
    /// Workers `0..readers` run read-only transactions (on the nodes their clients talk to).
    pub readers: usize,
}

/// The active keys, shared by the workers, and how many appends each was given.
struct KeyPool {
    active: Vec<(u64, usize)>,
    next: u64,
    writes_per_key: usize,
}

impl KeyPool {
    /// A key for the next step; a write counts against the key's budget, and a key that
    /// used it up is replaced by a fresh one.
    fn pick(&mut self, rng: &mut ChaCha8Rng, write: bool) -> u64 {
        let slot = rng.random_range(0..self.active.len());
        let (key, used) = self.active[slot];
        if write {
            if used + 1 >= self.writes_per_key {
                self.active[slot] = (self.next, 0);
                self.next += 1;
            } else {
                self.active[slot].1 = used + 1;
            }
        }
        key
    }
}

/// The name of transactional key `k`.
pub fn txn_key_name(k: u64) -> String {
    format!("t{k}")
}

/// A recorded transaction before keys are numbered.
struct Recorded {
    process: u64,
    outcome: Outcome,
    invoke: u64,
    complete: Option<u64>,
    steps: Vec<TxnStep>,
    reads: Option<Vec<Option<Vec<i64>>>>,
}

/// Runs the workload until `stop` turns true; returns the history, or an error when a
/// worker crashed (a history with holes must not be checked).
/// `clients[i]` talks to node `i`; worker `w` uses client `w % clients.len()`.
pub async fn run_transactions(
    clients: Vec<Arc<dyn TxnClient>>,
    plan: TxnPlan,
    epoch: Instant,
    seed: u64,
    counters: Arc<WorkloadCounters>,
    stop: watch::Receiver<bool>,
) -> Result<TxnHistory, String> {
    let next_value = Arc::new(AtomicI64::new(1));
    let pool = Arc::new(Mutex::new(KeyPool {
        active: (0..plan.active_keys.max(1) as u64)
            .map(|k| (k, 0))
            .collect(),
        next: plan.active_keys.max(1) as u64,
        writes_per_key: plan.writes_per_key.max(1),
    }));
    let period = Duration::from_secs_f64(plan.concurrency as f64 / f64::from(plan.rate.max(1)));
    let mut workers = Vec::new();
    for worker in 0..plan.concurrency {
        let client = Arc::clone(&clients[worker % clients.len()]);
        let plan = plan.clone();
        let counters = Arc::clone(&counters);
        let next_value = Arc::clone(&next_value);
        let pool = Arc::clone(&pool);
        let mut stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::time::sleep(period.mul_f64(worker as f64 / plan.concurrency as f64)).await;
            let mut process = worker as u64;
            let mut recorded = Vec::new();
            loop {
                let stopped = tokio::select! {
                    _ = ticker.tick() => false,
                    changed = stop.changed() => changed.is_err(),
                };
                if stopped || *stop.borrow() {
                    break;
                }
                let read_only = worker < plan.readers;
                let steps = choose_steps(&mut rng, &plan, &pool, &next_value, read_only);
                let invoke = epoch.elapsed().as_nanos() as u64;
                let result = match tokio::time::timeout(plan.timeout, client.transact(&steps)).await
                {
                    Ok(result) => result,
                    Err(_) => Err(OpError::Indeterminate(format!(
                        "no answer within {:?}",
                        plan.timeout
                    ))),
                };
                let complete = epoch.elapsed().as_nanos() as u64;
                counters.done.fetch_add(1, Ordering::Relaxed);
                let (outcome, reads) = match result {
                    Ok(reads) => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                        (Outcome::Ok, Some(reads))
                    }
                    Err(OpError::Failed(_)) => (Outcome::Fail, None),
                    Err(OpError::Indeterminate(_)) => {
                        counters.unknown.fetch_add(1, Ordering::Relaxed);
                        (Outcome::Info, None)
                    }
                };
                recorded.push(Recorded {
                    process,
                    outcome,
                    invoke,
                    complete: (outcome != Outcome::Info).then_some(complete),
                    steps,
                    reads,
                });
                if outcome == Outcome::Info {
                    // It may still commit at any moment: the worker goes on as a new
                    // process, since a process runs one transaction at a time.
                    process += plan.concurrency as u64;
                }
            }
            recorded
        }));
    }
    let mut all = join_workers(workers, "transactions").await?;
    all.sort_by_key(|r| r.invoke);
    Ok(to_history(all, plan.model, &plan.key_prefix))
}

fn choose_steps(
    rng: &mut ChaCha8Rng,
    plan: &TxnPlan,
    pool: &Mutex<KeyPool>,
    next_value: &AtomicI64,
    read_only: bool,
) -> Vec<TxnStep> {
    let count = rng.random_range(1..=plan.max_steps.max(1));
    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
    (0..count)
        .map(|_| {
            let write = !read_only && rng.random_bool(0.5);
            let key = format!("{}{}", plan.key_prefix, txn_key_name(pool.pick(rng, write)));
            let value = next_value.fetch_add(i64::from(write), Ordering::Relaxed);
            match (write, plan.model) {
                (false, _) => TxnStep::Read { key },
                (true, TxnModel::ListAppend) => TxnStep::Append { key, value },
                (true, TxnModel::RwRegister) => TxnStep::Write { key, value },
            }
        })
        .collect()
}

fn to_history(recorded: Vec<Recorded>, model: TxnModel, key_prefix: &str) -> TxnHistory {
    let mut history = TxnHistory::new();
    history.model = Some(model);
    for r in recorded {
        let ops = r
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let name = step.key();
                let key = history.key(name.strip_prefix(key_prefix).unwrap_or(name));
                match step {
                    TxnStep::Append { value, .. } => MicroOp::Append { key, value: *value },
                    TxnStep::Write { value, .. } => MicroOp::Write { key, value: *value },
                    TxnStep::Read { .. } => MicroOp::Read {
                        key,
                        value: read_value(
                            model,
                            r.reads.as_ref().and_then(|reads| reads.get(i).cloned()),
                        ),
                    },
                }
            })
            .collect();
        history.txns.push(Transaction {
            process: r.process,
            outcome: r.outcome,
            invoke: r.invoke,
            complete: r.complete,
            ops,
            line: 0,
        });
    }
    history
}

/// What a read step returned, as the model reads it. A register holds a list of at most one
/// value; a longer list is kept as it is, and the checker rejects it as not a register.
fn read_value(model: TxnModel, read: Option<Option<Vec<i64>>>) -> ReadValue {
    match (model, read) {
        (_, None | Some(None)) => ReadValue::Nil,
        (TxnModel::ListAppend, Some(Some(list))) => ReadValue::List(list),
        (TxnModel::RwRegister, Some(Some(list))) => match list[..] {
            [] => ReadValue::Nil,
            [value] => ReadValue::Int(value),
            _ => ReadValue::List(list),
        },
    }
}
