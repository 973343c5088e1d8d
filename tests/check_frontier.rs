//! The checker on histories full of unknown outcomes and failed CASes:
//! * small random histories with unique written values (where the pattern proofs apply)
//!   agree with an exhaustive search, and the proofs do fire;
//! * generated single-register histories (`common/register_frontier.rs`), partition-shaped
//!   and scattered, get the verdict known by construction, with a readable counterexample.

#[path = "common/brute_force.rs"]
mod brute_force;
#[path = "common/history_gen.rs"]
mod history_gen;
#[path = "common/register_frontier.rs"]
mod register_frontier;

use std::time::Duration;

use brute_force::brute_force;
use register_frontier::{Plant, Rng, Shape, Unknowns, generate_some};
use schism::check::{
    Call, CheckOptions, History, ModelKind, Operation, Outcome, Value, Verdict, check_history,
};

/// A small single-register history with unique written values: reads and CAS expectations
/// name values that were (or were never) written, outcomes are often unknown.
fn small_unique(rng: &mut Rng) -> History {
    let n = 2 + rng.below(8) as usize;
    let mut h = History::new();
    let mut written: Vec<i64> = Vec::new();
    let mut fresh = 0i64;
    for _ in 0..n {
        let invoke = rng.below(30);
        let complete = invoke + rng.below(12);
        let outcome = if rng.chance(25) {
            Outcome::Info
        } else {
            Outcome::Ok
        };
        // An existing value, nil, or (rarely) one nobody writes.
        let seen = |rng: &mut Rng, written: &[i64]| match rng.below(written.len() as u64 + 2) {
            0 => Value::Nil,
            1 if rng.chance(20) => Value::Int(99),
            k => written
                .get(k as usize - 1)
                .map_or(Value::Nil, |&v| Value::Int(v)),
        };
        let call = match rng.below(3) {
            0 => Call::Read {
                value: Some(seen(rng, &written)),
            },
            1 => {
                fresh += 1;
                written.push(fresh);
                Call::Write {
                    value: Value::Int(fresh),
                }
            }
            _ => {
                fresh += 1;
                written.push(fresh);
                Call::Cas {
                    from: seen(rng, &written[..written.len() - 1]),
                    to: Value::Int(fresh),
                    swapped: Some(rng.chance(60)),
                }
            }
        };
        h.ops.push(Operation {
            process: rng.below(100),
            key: None,
            call,
            outcome,
            invoke,
            complete: (outcome != Outcome::Info).then_some(complete),
            line: 0,
        });
    }
    h
}

#[test]
fn small_histories_with_unique_values_agree_with_an_exhaustive_search() {
    let mut rng = Rng(1997);
    let (mut verdicts, mut proved) = ([0usize; 2], 0);
    for round in 0..20_000 {
        let h = small_unique(&mut rng);
        let want = brute_force(&h, ModelKind::CasRegister);
        verdicts[want as usize] += 1;
        let out = check_history(&h, &CheckOptions::new(ModelKind::CasRegister)).expect("valid");
        let want = if want {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        assert_eq!(out.verdict, want, "round {round}: {h:#?}\n{out:#?}");
        if out.counterexample.as_ref().is_some_and(|cx| cx.pattern) {
            proved += 1;
        }
    }
    // Both verdicts well represented, and the proofs settle a good share of the violations.
    assert!(verdicts[0] > 2_000 && verdicts[1] > 2_000, "{verdicts:?}");
    assert!(
        proved > verdicts[0] / 2,
        "{proved} of {} proved",
        verdicts[0]
    );
}

fn check_generated(shape: &Shape) -> (Verdict, Option<String>) {
    let (history, seed) = generate_some(shape);
    let mut options = CheckOptions::new(ModelKind::CasRegister);
    options.timeout = Some(Duration::from_secs(60));
    let out = check_history(&history, &options).expect("valid");
    let want = if shape.plant.linearizable() {
        Verdict::Linearizable
    } else {
        Verdict::NotLinearizable
    };
    assert_eq!(out.verdict, want, "{shape:?} (seed {seed}): {out:#?}");
    (out.verdict, out.counterexample.map(|cx| cx.anomaly))
}

#[test]
fn generated_histories_get_the_verdict_known_by_construction() {
    for (unknowns, unknown_percent, clients) in
        [(Unknowns::Partition, 25, 12), (Unknowns::Scattered, 30, 16)]
    {
        for plant in Plant::ALL {
            for seed in [1, 2] {
                let shape = Shape {
                    ops: 1_500,
                    clients,
                    unknown_percent,
                    unknowns,
                    plant,
                    seed: seed * 1_000,
                };
                let (_, anomaly) = check_generated(&shape);
                let anomaly = anomaly.unwrap_or_default();
                let named = match plant {
                    Plant::None => anomaly.is_empty(),
                    Plant::StaleRead | Plant::ChainStaleRead => anomaly.starts_with("stale read"),
                    Plant::ConsumedCas => anomaly.starts_with("consumed-value CAS"),
                    Plant::ImpossibleRead => anomaly.starts_with("impossible read"),
                    Plant::FailedCasDuringValue => {
                        anomaly.starts_with("failed CAS during its value")
                    }
                };
                assert!(named, "{plant:?}, {unknowns:?}: {anomaly}");
            }
        }
    }
}
