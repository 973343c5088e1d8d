//! Property tests with a seeded RNG:
//! * histories recorded from a real sequential execution, with random concurrency around
//!   each operation's true linearization point, are always linearizable;
//! * the same histories with a planted stale read or lost write never are;
//! * on small random histories, the verdict equals an exhaustive search's.

#[path = "common/brute_force.rs"]
mod brute_force;
#[path = "common/history_gen.rs"]
mod history_gen;

use brute_force::brute_force;

use history_gen::{Gen, Rng, generate};
use schism::check::{
    Call, CheckOptions, History, ModelKind, Operation, Outcome, Value, Verdict, check_history,
};

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

/// Plants, at a random moment: an acknowledged write of a fresh value, then another
/// acknowledged write (or a swapping CAS) that completes, then a read that begins after it
/// and returns the first value. Values are unique, so nothing can restore the first value.
fn plant_stale_read(h: &mut History, model: ModelKind, rng: &mut Rng) {
    let end = h.ops.iter().filter_map(|o| o.complete).max().unwrap_or(100);
    let t = 1 + rng.below(end);
    let key = format!("k{}", rng.below(3));
    let (v, u) = (Value::Int(-1), Value::Int(-2));
    h.ops
        .push(op(9001, &key, Call::Write { value: v.clone() }, t, t + 1));
    let overwrite = if model == ModelKind::CasRegister && rng.chance(50) {
        Call::Cas {
            from: v.clone(),
            to: u,
            swapped: Some(true),
        }
    } else {
        Call::Write { value: u }
    };
    h.ops.push(op(9002, &key, overwrite, t + 2, t + 3));
    h.ops
        .push(op(9003, &key, Call::Read { value: Some(v) }, t + 4, t + 5));
}

/// Plants, in a kv history: a put of a fresh value, an acknowledged append, then a get that
/// begins after the append completed and does not show it.
fn plant_lost_append(h: &mut History, rng: &mut Rng) {
    let end = h.ops.iter().filter_map(|o| o.complete).max().unwrap_or(100);
    let t = 1 + rng.below(end);
    let key = format!("k{}", rng.below(3));
    let v = Value::Str("<planted>".to_string());
    h.ops
        .push(op(9001, &key, Call::Put { value: v.clone() }, t, t + 1));
    let lost = Value::Str("[lost]".to_string());
    h.ops
        .push(op(9002, &key, Call::Append { value: lost }, t + 2, t + 3));
    h.ops
        .push(op(9003, &key, Call::Get { value: Some(v) }, t + 4, t + 5));
}

fn check(h: &History, model: ModelKind, partition: bool) -> Verdict {
    let opts = CheckOptions {
        partition,
        ..CheckOptions::new(model)
    };
    check_history(h, &opts)
        .expect("generated histories are valid")
        .verdict
}

const MODELS: [ModelKind; 3] = [ModelKind::Register, ModelKind::CasRegister, ModelKind::Kv];

#[test]
fn histories_of_a_real_sequential_execution_are_linearizable() {
    let mut rng = Rng(42);
    for round in 0..120 {
        let model = MODELS[round % 3];
        let g = Gen {
            model,
            keys: 1 + round % 3,
            processes: 2 + round % 6,
            ops: 20 + rng.below(180) as usize,
            info: [0, 5, 15][round % 3],
            fail: 5,
            spread: 60,
        };
        let h = generate(&g, &mut rng);
        assert_eq!(
            check(&h, model, true),
            Verdict::Linearizable,
            "round {round}: {model} history of a real execution"
        );
        if round % 4 == 0 {
            assert_eq!(
                check(&h, model, false),
                Verdict::Linearizable,
                "round {round}: unpartitioned"
            );
        }
    }
}

#[test]
fn a_planted_stale_read_is_never_linearizable() {
    let mut rng = Rng(7);
    for round in 0..90 {
        let model = [ModelKind::Register, ModelKind::CasRegister][round % 2];
        let g = Gen {
            model,
            keys: 3,
            processes: 2 + round % 5,
            ops: 20 + rng.below(150) as usize,
            info: [0, 10][round % 2],
            fail: 5,
            spread: 60,
        };
        let mut h = generate(&g, &mut rng);
        plant_stale_read(&mut h, model, &mut rng);
        assert_eq!(
            check(&h, model, true),
            Verdict::NotLinearizable,
            "round {round}: {model} with a stale read"
        );
        let out = check_history(&h, &CheckOptions::new(model)).expect("valid");
        let cx = out.counterexample.expect("counterexample");
        assert!(cx.key.is_some());
    }
}

#[test]
fn a_planted_lost_write_is_never_linearizable() {
    let mut rng = Rng(99);
    for round in 0..60 {
        let g = Gen {
            model: ModelKind::Kv,
            keys: 3,
            processes: 2 + round % 5,
            ops: 20 + rng.below(150) as usize,
            info: [0, 10][round % 2],
            fail: 5,
            spread: 60,
        };
        let mut h = generate(&g, &mut rng);
        plant_lost_append(&mut h, &mut rng);
        assert_eq!(
            check(&h, ModelKind::Kv, true),
            Verdict::NotLinearizable,
            "round {round}: kv with a lost append"
        );
        if round % 6 == 0 {
            assert_eq!(check(&h, ModelKind::Kv, false), Verdict::NotLinearizable);
        }
    }
}

#[test]
fn the_anomaly_of_a_plain_stale_read_is_named() {
    let mut h = History::new();
    h.ops.push(op(
        0,
        "x",
        Call::Write {
            value: Value::Int(1),
        },
        0,
        10,
    ));
    h.ops.push(op(
        1,
        "x",
        Call::Write {
            value: Value::Int(2),
        },
        20,
        30,
    ));
    h.ops.push(op(
        2,
        "x",
        Call::Read {
            value: Some(Value::Int(1)),
        },
        40,
        50,
    ));
    let out = check_history(&h, &CheckOptions::new(ModelKind::Register)).expect("valid");
    let cx = out.counterexample.expect("violation");
    assert!(cx.anomaly.starts_with("stale read"), "{}", cx.anomaly);
    assert_eq!(cx.blocked, 2);
}

#[test]
fn a_stale_read_proved_by_a_pattern_in_a_long_history_is_named_a_stale_read() {
    // Long enough to be proved before it is searched: sequential writes, each read back,
    // then a read of an old value after newer ones were written and read.
    const MS: u64 = 1_000_000;
    let mut h = History::new();
    let mut t = 0;
    for v in 1..=1500 {
        h.ops.push(op(
            0,
            "x",
            Call::Write {
                value: Value::Int(v),
            },
            t,
            t + MS,
        ));
        h.ops.push(op(
            1,
            "x",
            Call::Read {
                value: Some(Value::Int(v)),
            },
            t + 2 * MS,
            t + 3 * MS,
        ));
        t += 4 * MS;
    }
    let stale = h.ops.len();
    h.ops.push(op(
        2,
        "x",
        Call::Read {
            value: Some(Value::Int(700)),
        },
        t,
        t + MS,
    ));
    let out = check_history(&h, &CheckOptions::new(ModelKind::Register)).expect("valid");
    let cx = out.counterexample.expect("violation");
    assert!(cx.pattern, "proved by a pattern: {}", cx.anomaly);
    assert!(cx.anomaly.starts_with("stale read"), "{}", cx.anomaly);
    assert!(cx.anomaly.contains(&format!("#{stale}")), "{}", cx.anomaly);
}

#[test]
fn the_anomaly_of_a_lost_append_is_named() {
    let mut h = History::new();
    let s = |x: &str| Value::Str(x.to_string());
    h.ops
        .push(op(0, "x", Call::Append { value: s("a") }, 0, 10));
    h.ops
        .push(op(1, "x", Call::Append { value: s("b") }, 20, 30));
    h.ops.push(op(
        2,
        "x",
        Call::Get {
            value: Some(s("a")),
        },
        40,
        50,
    ));
    let out = check_history(&h, &CheckOptions::new(ModelKind::Kv)).expect("valid");
    let cx = out.counterexample.expect("violation");
    assert!(cx.anomaly.starts_with("lost write"), "{}", cx.anomaly);
}

#[test]
fn small_random_histories_agree_with_an_exhaustive_search() {
    let mut rng = Rng(2024);
    let mut seen = [0usize; 2];
    for round in 0..4000 {
        let model = MODELS[round % 3];
        let n = 2 + rng.below(8) as usize;
        let keys = 1 + rng.below(2);
        let mut h = History::new();
        for _ in 0..n {
            let invoke = rng.below(20);
            let complete = invoke + rng.below(10);
            let outcome = match rng.below(10) {
                0 | 1 => Outcome::Info,
                2 => Outcome::Fail,
                _ => Outcome::Ok,
            };
            let int = |r: &mut Rng| match r.below(3) {
                0 => Value::Nil,
                x => Value::Int(x as i64),
            };
            let st = |r: &mut Rng| Value::Str(["", "a", "b", "ab"][r.below(4) as usize].into());
            let call = match (model, rng.below(3)) {
                (ModelKind::Kv, 0) => Call::Get {
                    value: Some(st(&mut rng)),
                },
                (ModelKind::Kv, 1) => Call::Put {
                    value: st(&mut rng),
                },
                (ModelKind::Kv, _) => Call::Append {
                    value: Value::Str(["a", "b"][rng.below(2) as usize].into()),
                },
                (_, 0) => Call::Read {
                    value: Some(int(&mut rng)),
                },
                (ModelKind::CasRegister, 2) => Call::Cas {
                    from: int(&mut rng),
                    to: int(&mut rng),
                    swapped: Some(rng.chance(50)),
                },
                _ => Call::Write {
                    value: Value::Int(1 + rng.below(2) as i64),
                },
            };
            h.ops.push(Operation {
                process: rng.below(100),
                key: Some(format!("k{}", rng.below(keys))),
                call,
                outcome,
                invoke,
                complete: (outcome != Outcome::Info).then_some(complete),
                line: 0,
            });
        }
        let want = brute_force(&h, model);
        seen[want as usize] += 1;
        let want = if want {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        assert_eq!(
            check(&h, model, true),
            want,
            "round {round}, {model}: {h:#?}"
        );
        if keys > 1 {
            assert_eq!(
                check(&h, model, false),
                want,
                "round {round}, {model} unpartitioned"
            );
        }
    }
    // Both verdicts must be well represented for the comparison to mean something.
    assert!(seen[0] > 300 && seen[1] > 300, "{seen:?}");
}
