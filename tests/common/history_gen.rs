//! A generator of histories from a real sequential execution, shared by the property tests
//! and the benchmark.
#![allow(dead_code)]

use schism::check::{Call, History, ModelKind, Operation, Outcome, Value};

/// SplitMix64: tiny, seeded, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub struct Gen {
    pub model: ModelKind,
    pub keys: usize,
    pub processes: usize,
    pub ops: usize,
    /// Percent of operations with an unknown outcome, and of those that failed.
    pub info: u64,
    pub fail: u64,
    /// How far (in time units; operations are 10 apart) an invocation or completion may lie
    /// from the operation's linearization point: the amount of concurrency.
    pub spread: u64,
}

/// Runs `g.ops` operations one after another against a real sequential store, each at its
/// own linearization point `10 * i`, and records them with random invocation and completion
/// times around that point. Written values are unique, so a planted anomaly is unambiguous.
pub fn generate(g: &Gen, rng: &mut Rng) -> History {
    let mut state: Vec<Value> = vec![g.model.init(); g.keys];
    let mut free_at = vec![0u64; g.processes];
    let mut proc_id: Vec<u64> = (0..g.processes as u64).collect();
    let mut next_proc = g.processes as u64;
    let mut fresh = 1i64;
    let mut h = History::new();
    for i in 0..g.ops {
        let t = 10 * (i as u64 + 1);
        let idle: Vec<usize> = (0..g.processes).filter(|&p| free_at[p] < t).collect();
        if idle.is_empty() {
            continue;
        }
        let p = idle[rng.below(idle.len() as u64) as usize];
        let k = rng.below(g.keys as u64) as usize;
        let invoke = t - rng.below((t - free_at[p]).min(g.spread));
        let complete = t + rng.below(g.spread);
        let outcome = if rng.chance(g.info) {
            Outcome::Info
        } else if rng.chance(g.fail) {
            Outcome::Fail
        } else {
            Outcome::Ok
        };
        // An unknown outcome took effect or not, at random; a failure did not.
        let applied = match outcome {
            Outcome::Ok => true,
            Outcome::Info => rng.chance(50),
            Outcome::Fail => false,
        };
        let cur = state[k].clone();
        fresh += 1;
        let call = match (g.model, rng.below(3)) {
            (_, 0) => {
                let value = (outcome == Outcome::Ok).then(|| cur.clone());
                match g.model {
                    ModelKind::Kv => Call::Get { value },
                    _ => Call::Read { value },
                }
            }
            (ModelKind::Kv, 1) => {
                let value = Value::Str(format!("<{fresh}>"));
                if applied {
                    state[k] = value.clone();
                }
                Call::Put { value }
            }
            (ModelKind::Kv, _) => {
                let piece = format!("[{fresh}]");
                if applied && let Value::Str(s) = &mut state[k] {
                    s.push_str(&piece);
                }
                Call::Append {
                    value: Value::Str(piece),
                }
            }
            (ModelKind::CasRegister, 2) => {
                // Compare against the current value most of the time.
                let from = if rng.chance(70) {
                    cur.clone()
                } else {
                    Value::Int(fresh + 1_000_000)
                };
                let to = Value::Int(fresh);
                let holds = from == cur;
                if applied && holds {
                    state[k] = to.clone();
                }
                Call::Cas {
                    from,
                    to,
                    swapped: (outcome == Outcome::Ok).then_some(holds),
                }
            }
            _ => {
                let value = Value::Int(fresh);
                if applied {
                    state[k] = value.clone();
                }
                Call::Write { value }
            }
        };
        h.ops.push(Operation {
            process: proc_id[p],
            key: Some(format!("k{k}")),
            call,
            outcome,
            invoke,
            complete: (outcome != Outcome::Info).then_some(complete),
            line: 0,
        });
        free_at[p] = complete;
        if outcome == Outcome::Info {
            // As in Jepsen, a client whose operation timed out is replaced by a new one.
            proc_id[p] = next_proc;
            next_proc += 1;
        }
    }
    h
}
