//! The client workload: `concurrency` workers, each bound to one node as in Jepsen, issuing
//! random operations at a shared rate and recording every one of them with monotonic
//! timestamps — including those whose outcome is unknown.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use crate::check::ModelKind;
use crate::check::history::{Call, Operation, Outcome, Value};
use crate::workload::{Datum, KvClient, OpError, Reply, Request};

/// What the workload does; built from `spec.workload`.
#[derive(Debug, Clone)]
pub struct WorkloadPlan {
    /// Concurrent workers.
    pub concurrency: usize,
    /// Operations per second, all workers together.
    pub rate: u32,
    /// Distinct keys.
    pub keys: usize,
    /// The model, which decides the mix of operations.
    pub model: ModelKind,
    /// Per-operation deadline.
    pub timeout: Duration,
    /// Keep the history (off only to measure what recording costs).
    pub record: bool,
}

/// Live counters for the progress line.
#[derive(Debug, Default)]
pub struct WorkloadCounters {
    /// Operations finished, whatever their outcome.
    pub done: AtomicU64,
    /// Operations acknowledged.
    pub ok: AtomicU64,
    /// Operations with an unknown outcome.
    pub unknown: AtomicU64,
}

/// The name of key `k`.
pub fn key_name(k: usize) -> String {
    format!("k{k}")
}

/// Runs the workload until `stop` turns true, and returns the recorded operations — or an
/// error when a worker crashed: its operations are lost, and a history with holes could be
/// judged wrongly, so it must not be checked.
/// `clients[i]` talks to node `i`; worker `w` uses client `w % clients.len()`.
pub async fn run_workload(
    clients: Vec<Arc<dyn KvClient>>,
    plan: WorkloadPlan,
    epoch: Instant,
    seed: u64,
    counters: Arc<WorkloadCounters>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<Operation>, String> {
    let next_value = Arc::new(AtomicI64::new(1));
    let period = Duration::from_secs_f64(plan.concurrency as f64 / f64::from(plan.rate.max(1)));
    let mut workers = Vec::new();
    for worker in 0..plan.concurrency {
        let client = Arc::clone(&clients[worker % clients.len()]);
        let plan = plan.clone();
        let counters = Arc::clone(&counters);
        let next_value = Arc::clone(&next_value);
        let mut stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Stagger workers so their requests do not arrive in bursts.
            tokio::time::sleep(period.mul_f64(worker as f64 / plan.concurrency as f64)).await;
            let mut process = worker as u64;
            let mut last_seen: Vec<Datum> = vec![Datum::Nil; plan.keys];
            let mut ops = Vec::new();
            loop {
                // A dropped sender (the run was aborted) stops the loop as surely as `true`
                // does; otherwise `changed()` would return at once forever and spin.
                let stopped = tokio::select! {
                    _ = ticker.tick() => false,
                    changed = stop.changed() => changed.is_err(),
                };
                if stopped || *stop.borrow() {
                    break;
                }
                let key_index = rng.random_range(0..plan.keys);
                let key = key_name(key_index);
                let request =
                    choose_request(&mut rng, plan.model, &last_seen[key_index], &next_value);
                let invoke = epoch.elapsed();
                let result = match tokio::time::timeout(
                    plan.timeout,
                    client.perform(&key, &request),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(OpError::Indeterminate(format!(
                        "no answer within {:?}",
                        plan.timeout
                    ))),
                };
                let complete = epoch.elapsed();
                counters.done.fetch_add(1, Ordering::Relaxed);
                match &result {
                    Ok(Reply::Value(v)) => last_seen[key_index] = v.clone(),
                    Ok(Reply::Done) => {
                        if let Request::Write(v) = &request {
                            last_seen[key_index] = v.clone();
                        }
                    }
                    Ok(Reply::Swapped(true)) => {
                        if let Request::Cas { to, .. } = &request {
                            last_seen[key_index] = to.clone();
                        }
                    }
                    _ => {}
                }
                match &result {
                    Ok(_) => counters.ok.fetch_add(1, Ordering::Relaxed),
                    Err(OpError::Indeterminate(_)) => {
                        counters.unknown.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(OpError::Failed(_)) => 0,
                };
                let indeterminate = matches!(result, Err(OpError::Indeterminate(_)));
                if plan.record {
                    ops.push(to_operation(
                        process, key, &request, &result, invoke, complete,
                    ));
                }
                if indeterminate {
                    // The unanswered operation may still take effect at any moment, so this
                    // worker continues as a new process: a process has one operation at a time.
                    process += plan.concurrency as u64;
                }
            }
            ops
        }));
    }
    let mut history = join_workers(workers, "operations").await?;
    history.sort_by_key(|op| op.invoke);
    Ok(history)
}

/// Everything the workers recorded, or an error naming how many crashed: a crashed
/// worker's `what` are missing, and a history with holes must not be checked.
pub(crate) async fn join_workers<T>(
    workers: Vec<tokio::task::JoinHandle<Vec<T>>>,
    what: &str,
) -> Result<Vec<T>, String> {
    let mut all = Vec::new();
    let mut crashed = 0;
    for worker in workers {
        match worker.await {
            Ok(recorded) => all.extend(recorded),
            Err(_) => crashed += 1,
        }
    }
    if crashed > 0 {
        return Err(format!(
            "{crashed} workload client(s) crashed; their {what} are missing from the history"
        ));
    }
    Ok(all)
}

fn choose_request(
    rng: &mut ChaCha8Rng,
    model: ModelKind,
    last_seen: &Datum,
    next_value: &AtomicI64,
) -> Request {
    let roll = rng.random_range(0..100);
    let fresh = || next_value.fetch_add(1, Ordering::Relaxed);
    match model {
        ModelKind::Register => {
            if roll < 50 {
                Request::Read
            } else {
                Request::Write(Datum::Int(fresh()))
            }
        }
        ModelKind::CasRegister => match roll {
            0..50 => Request::Read,
            50..75 => Request::Write(Datum::Int(fresh())),
            _ => Request::Cas {
                from: last_seen.clone(),
                to: Datum::Int(fresh()),
            },
        },
        ModelKind::Kv => match roll {
            0..50 => Request::Read,
            50..70 => Request::Write(Datum::Str(format!("x{} ", fresh()))),
            _ => Request::Append(Datum::Str(format!("x{} ", fresh()))),
        },
    }
}

fn datum_value(d: &Datum) -> Value {
    match d {
        Datum::Nil => Value::Nil,
        Datum::Int(i) => Value::Int(*i),
        Datum::Str(s) => Value::Str(s.clone()),
    }
}

/// Turns one request and its result into a history operation.
pub fn to_operation(
    process: u64,
    key: String,
    request: &Request,
    result: &Result<Reply, OpError>,
    invoke: Duration,
    complete: Duration,
) -> Operation {
    let outcome = match result {
        Ok(_) => Outcome::Ok,
        Err(OpError::Failed(_)) => Outcome::Fail,
        Err(OpError::Indeterminate(_)) => Outcome::Info,
    };
    let call = match (request, result) {
        (Request::Read, Ok(Reply::Value(v))) => Call::Read {
            value: Some(datum_value(v)),
        },
        (Request::Read, _) => Call::Read { value: None },
        (Request::Write(v), _) => Call::Write {
            value: datum_value(v),
        },
        (Request::Append(v), _) => Call::Append {
            value: datum_value(v),
        },
        (Request::Cas { from, to }, result) => Call::Cas {
            from: datum_value(from),
            to: datum_value(to),
            swapped: match result {
                Ok(Reply::Swapped(s)) => Some(*s),
                _ => None,
            },
        },
    };
    Operation {
        process,
        key: Some(key),
        call,
        outcome,
        invoke: invoke.as_nanos() as u64,
        complete: (outcome != Outcome::Info).then_some(complete.as_nanos() as u64),
        line: 0,
    }
}
