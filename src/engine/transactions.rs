//! The transactional workload: `concurrency` workers, each bound to one node, running
//! list-append transactions of 1 to `max_steps` micro-operations (about half appends) over a
//! rotating set of active keys, with values unique per key, and recording every transaction
//! with monotonic timestamps — the shape of Jepsen's append workload.

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
    /// Concurrent workers.
    pub concurrency: usize,
    /// Transactions per second, all workers together.
    pub rate: u32,
    /// Keys being written at any time.
    pub active_keys: usize,
    /// Appends a key takes before a fresh key replaces it, so reads stay short.
    pub appends_per_key: usize,
    /// Most micro-operations in one transaction.
    pub max_steps: usize,
    /// Per-transaction deadline.
    pub timeout: Duration,
}

/// The active keys, shared by the workers, and how many appends each was given.
struct KeyPool {
    active: Vec<(u64, usize)>,
    next: u64,
    appends_per_key: usize,
}

impl KeyPool {
    /// A key for the next step; an append counts against the key's budget, and a key that
    /// used it up is replaced by a fresh one.
    fn pick(&mut self, rng: &mut ChaCha8Rng, append: bool) -> u64 {
        let slot = rng.random_range(0..self.active.len());
        let (key, used) = self.active[slot];
        if append {
            if used + 1 >= self.appends_per_key {
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
        appends_per_key: plan.appends_per_key.max(1),
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
                let steps = choose_steps(&mut rng, &plan, &pool, &next_value);
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
    Ok(to_history(all))
}

fn choose_steps(
    rng: &mut ChaCha8Rng,
    plan: &TxnPlan,
    pool: &Mutex<KeyPool>,
    next_value: &AtomicI64,
) -> Vec<TxnStep> {
    let count = rng.random_range(1..=plan.max_steps.max(1));
    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
    (0..count)
        .map(|_| {
            let append = rng.random_bool(0.5);
            let key = txn_key_name(pool.pick(rng, append));
            if append {
                TxnStep::Append {
                    key,
                    value: next_value.fetch_add(1, Ordering::Relaxed),
                }
            } else {
                TxnStep::Read { key }
            }
        })
        .collect()
}

fn to_history(recorded: Vec<Recorded>) -> TxnHistory {
    let mut history = TxnHistory::new();
    history.model = Some(TxnModel::ListAppend);
    for r in recorded {
        let ops = r
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let key = history.key(step.key());
                match step {
                    TxnStep::Append { value, .. } => MicroOp::Append { key, value: *value },
                    TxnStep::Read { .. } => MicroOp::Read {
                        key,
                        value: match r.reads.as_ref().and_then(|reads| reads.get(i).cloned()) {
                            Some(Some(list)) => ReadValue::List(list),
                            _ => ReadValue::Nil,
                        },
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
