//! Property tests of the transactional checker, with seeded random histories:
//! * histories of a simulated serializable store (each transaction applied atomically at an
//!   instant between its invocation and completion) are strict-serializable, and the checker
//!   finds nothing in them;
//! * one anomaly of a known class planted in such a history is found, as that class, and
//!   rules out exactly the models it should;
//! * on thousands of small, randomly damaged histories the checker's verdicts agree with an
//!   exhaustive search over serial orders: a violation is always real (both models), and
//!   for list-append every real violation is found.

#[path = "common/txn_assert.rs"]
mod txn_assert;
#[path = "common/txn_sim.rs"]
mod txn_sim;

use rand::Rng;
use schism::check::Outcome;
use schism::check::txn::{
    AnomalyKind, Consistency, CycleClass, TxnHistory, TxnModel, TxnOptions, TxnOutcome, TxnVerdict,
    Variant, check,
};
use txn_assert::{
    EVERY, NO_WRITE_SKEW, READ_COMMITTED_UP, REAL_TIME, SNAPSHOT_UP, expected_verdict, summaries,
};
use txn_sim::{
    Decision, Plant, Sim, minimise, oracle, oracle_literal, plant, read, render, rng, simulate,
    small, write,
};

fn run(h: &TxnHistory, model: TxnModel, consistency: Consistency) -> TxnOutcome {
    match check(h, &TxnOptions::new(model, consistency)) {
        Ok(out) => out,
        Err(e) => panic!(
            "the checker rejected a well-formed history: {e}\n{}",
            render(h)
        ),
    }
}

/// [`run`], asserting that the verdict is known: with no time limit it always is.
fn run_to_the_end(h: &TxnHistory, model: TxnModel, consistency: Consistency) -> TxnOutcome {
    let out = run(h, model, consistency);
    assert_ne!(
        out.verdict,
        TxnVerdict::Unknown,
        "no time limit, yet unknown"
    );
    out
}

fn violated(h: &TxnHistory, model: TxnModel, consistency: Consistency) -> bool {
    run_to_the_end(h, model, consistency).verdict == TxnVerdict::Violated
}

const LA: TxnModel = TxnModel::ListAppend;
const MODELS: [TxnModel; 2] = [LA, TxnModel::RwRegister];

// ---------------------------------------------------------------------------------------
// Valid histories.

#[test]
fn simulated_serializable_store_histories_satisfy_strict_serializability() {
    let mut total = 0;
    for model in MODELS {
        for seed in 0..16u64 {
            let mut r = rng(1000 + seed);
            let sim = Sim {
                clients: r.random_range(2..=8),
                keys: r.random_range(2..=6),
                key_life: r.random_range(5..=40),
                read_pct: r.random_range(30..=70),
                fail_pct: r.random_range(0..=10),
                info_pct: r.random_range(0..=10),
                spread: r.random_range(10..=80),
                ..Sim::new(model, r.random_range(200..=2000))
            };
            let h = simulate(&sim, &mut r);
            total += h.txns.len();
            for consistency in [Consistency::StrictSerializable, Consistency::Serializable] {
                let out = run(&h, model, consistency);
                assert_eq!(
                    out.verdict,
                    TxnVerdict::Satisfied,
                    "{model} seed {seed} {consistency}: {:?}",
                    summaries(&out)
                );
                assert!(
                    out.anomalies.is_empty(),
                    "{model} seed {seed}: {:?}",
                    summaries(&out)
                );
                assert!(
                    out.ruled_out.is_empty(),
                    "{model} seed {seed}: {:?}",
                    out.ruled_out
                );
                assert!(out.unclassified.is_empty());
            }
        }
    }
    eprintln!("checked {total} simulated transactions");
}

// ---------------------------------------------------------------------------------------
// Planted anomalies.

use Consistency as C;

/// Plants `what` in simulated histories and checks it is found as `kind`, among the planted
/// transactions only, and that exactly the models of `broken` are ruled out.
fn assert_planted(what: Plant, models: &[TxnModel], kind: AnomalyKind, broken: &[Consistency]) {
    for &model in models {
        for seed in 0..6u64 {
            let mut r = rng(2000 + seed);
            let sim = Sim::new(model, r.random_range(100..=400));
            let mut h = simulate(&sim, &mut r);
            let ids = plant(&mut h, model, what, &mut r);
            let out = run(&h, model, Consistency::StrictSerializable);
            let context = || {
                format!(
                    "{what:?} in {model}, seed {seed}: found {:?}",
                    summaries(&out)
                )
            };
            let found: Vec<_> = out.anomalies.iter().filter(|a| a.kind == kind).collect();
            assert!(!found.is_empty(), "{kind} not found: {}", context());
            for a in &found {
                assert!(
                    a.txns.iter().all(|t| ids.contains(t)),
                    "{kind} names T{:?}, planted were T{ids:?}: {}",
                    a.txns,
                    context()
                );
            }
            for a in &out.anomalies {
                assert!(
                    a.txns.iter().any(|t| ids.contains(t)),
                    "{} among unplanted transactions: {}",
                    a.summary(),
                    context()
                );
            }
            for m in Consistency::ALL {
                assert_eq!(
                    out.ruled_out.contains(&m),
                    broken.contains(&m),
                    "is {m} ruled out? {:?}: {}",
                    out.ruled_out,
                    context()
                );
                let verdict = run(&h, model, m).verdict;
                let expected = expected_verdict(broken, m);
                assert_eq!(verdict, expected, "verdict for {m}: {}", context());
            }
        }
    }
}

#[test]
fn read_of_a_failed_write_is_g1a_and_breaks_read_committed() {
    assert_planted(
        Plant::AbortedRead,
        &MODELS,
        AnomalyKind::AbortedRead,
        READ_COMMITTED_UP,
    );
}

#[test]
fn writes_in_opposite_orders_are_g0_and_break_every_model() {
    assert_planted(
        Plant::WriteCycle,
        &MODELS,
        AnomalyKind::Cycle(CycleClass::G0, Variant::Plain),
        EVERY,
    );
}

#[test]
fn mutual_reads_are_g1c_and_break_read_committed() {
    assert_planted(
        Plant::CircularFlow,
        &MODELS,
        AnomalyKind::Cycle(CycleClass::G1c, Variant::Plain),
        READ_COMMITTED_UP,
    );
}

#[test]
fn lost_update_is_g_single_and_breaks_snapshot_isolation() {
    assert_planted(
        Plant::LostUpdate,
        &[LA],
        AnomalyKind::Cycle(CycleClass::GSingle, Variant::Plain),
        SNAPSHOT_UP,
    );
}

#[test]
fn read_skew_is_g_single_and_breaks_snapshot_isolation() {
    assert_planted(
        Plant::ReadSkew,
        &MODELS,
        AnomalyKind::Cycle(CycleClass::GSingle, Variant::Plain),
        SNAPSHOT_UP,
    );
}

#[test]
fn write_skew_is_g2_item_and_allowed_by_snapshot_isolation() {
    assert_planted(
        Plant::WriteSkew,
        &MODELS,
        AnomalyKind::Cycle(CycleClass::G2Item, Variant::Plain),
        NO_WRITE_SKEW,
    );
}

#[test]
fn stale_read_is_g_single_realtime_and_breaks_only_real_time_models() {
    assert_planted(
        Plant::StaleRead,
        &MODELS,
        AnomalyKind::Cycle(CycleClass::GSingle, Variant::Realtime),
        REAL_TIME,
    );
}

// ---------------------------------------------------------------------------------------
// Small histories against the exhaustive oracle.

#[derive(Default, Debug)]
struct Tally {
    histories: usize,
    serializable: usize,
    not_serializable: usize,
    strict: usize,
    not_strict: usize,
    /// Serializable but not strict-serializable: real time alone decides.
    real_time_only: usize,
    /// Oracle says invalid, checker says satisfied.
    missed_serializable: usize,
    missed_strict: usize,
    /// What the checker reported (strict-serializable run), by anomaly name.
    kinds: std::collections::BTreeMap<String, usize>,
}

/// A disagreement, minimised.
struct Disagreement {
    what: String,
    consistency: Consistency,
    history: TxnHistory,
}

fn describe(h: &TxnHistory, model: TxnModel, consistency: Consistency) -> String {
    let out = run(h, model, consistency);
    let d = oracle(h, model);
    format!(
        "checker ({model}, {consistency}): {} {:?}; oracle: serializable {}, strict-serializable {}\n{}",
        out.verdict,
        summaries(&out),
        d.serializable,
        d.strict,
        render(h)
    )
}

fn holds(d: Decision, consistency: Consistency) -> bool {
    match consistency {
        C::Serializable => d.serializable,
        C::StrictSerializable => d.strict,
        _ => unreachable!(),
    }
}

/// Checks `count` small random histories of `model`; returns the tally and the first
/// disagreements of each kind (soundness always, completeness if `complete`), minimised.
fn compare(model: TxnModel, seed: u64, count: usize, complete: bool) -> (Tally, Vec<Disagreement>) {
    let mut r = rng(seed);
    let mut tally = Tally::default();
    let mut found: Vec<Disagreement> = Vec::new();
    let mut kinds_seen: Vec<String> = Vec::new();
    for _ in 0..count {
        let h = small(model, &mut r, 6, 3);
        let d = oracle(&h, model);
        assert!(d.serializable || !d.strict);
        tally.histories += 1;
        if d.serializable {
            tally.serializable += 1
        } else {
            tally.not_serializable += 1
        }
        if d.strict {
            tally.strict += 1
        } else {
            tally.not_strict += 1
        }
        if d.serializable && !d.strict {
            tally.real_time_only += 1;
        }
        for consistency in [C::Serializable, C::StrictSerializable] {
            let out = run_to_the_end(&h, model, consistency);
            if consistency == C::StrictSerializable {
                for (kind, _) in &out.counts {
                    *tally.kinds.entry(kind.name()).or_default() += 1;
                }
            }
            let says = out.verdict == TxnVerdict::Violated;
            let valid = holds(d, consistency);
            let problem = match (says, valid) {
                (true, true) => {
                    Some("unsound: the checker says violated, the oracle found a valid order")
                }
                (false, false) => {
                    match consistency {
                        C::Serializable => tally.missed_serializable += 1,
                        _ => tally.missed_strict += 1,
                    }
                    complete.then_some(
                        "incomplete: the oracle found no valid order, the checker says satisfied",
                    )
                }
                _ => None,
            };
            let Some(problem) = problem else { continue };
            let what = format!("{problem} ({consistency})");
            if kinds_seen.contains(&what) {
                continue;
            }
            kinds_seen.push(what.clone());
            let bad = |c: &TxnHistory| {
                check(c, &TxnOptions::new(model, consistency)).is_ok_and(|out| {
                    let v = out.verdict == TxnVerdict::Violated;
                    let ok = holds(oracle(c, model), consistency);
                    if says { v && ok } else { !v && !ok }
                })
            };
            found.push(Disagreement {
                what,
                consistency,
                history: minimise(&h, bad),
            });
        }
    }
    (tally, found)
}

fn report(model: TxnModel, tally: &Tally, found: &[Disagreement], note: &str) -> String {
    let mut text = format!("{model}: {tally:?}{note}\n");
    for f in found {
        text.push_str(&format!(
            "\n{}\n{}\n",
            f.what,
            describe(&f.history, model, f.consistency)
        ));
    }
    text
}

/// Both valid and invalid histories, and some that real time alone makes invalid, so the
/// comparison cannot pass vacuously.
fn assert_mixed(model: TxnModel, tally: &Tally) {
    let n = tally.histories;
    assert!(
        tally.serializable * 10 > n,
        "{model}: too few valid histories: {tally:?}"
    );
    assert!(
        tally.not_serializable * 10 > n,
        "{model}: too few invalid histories: {tally:?}"
    );
    assert!(
        tally.real_time_only * 50 > n,
        "{model}: too few real-time-only violations: {tally:?}"
    );
}

const SMALL: usize = 20_000;

/// [`compare`]s `SMALL` histories, prints the report (with what `note` says of the tally)
/// and asserts that the histories were mixed; returns the disagreements and the report.
fn compare_mixed(
    model: TxnModel,
    seed: u64,
    complete: bool,
    note: fn(&Tally) -> String,
) -> (Vec<Disagreement>, String) {
    let (tally, found) = compare(model, seed, SMALL, complete);
    let text = report(model, &tally, &found, &note(&tally));
    eprintln!("{text}");
    assert_mixed(model, &tally);
    (found, text)
}

#[test]
fn list_append_violations_are_confirmed_by_the_exhaustive_oracle() {
    let (found, text) = compare_mixed(LA, 7, false, |_| String::new());
    assert!(found.is_empty(), "{text}");
}

#[test]
fn list_append_finds_every_violation_the_exhaustive_oracle_finds() {
    let (found, text) = compare_mixed(LA, 7, true, |_| String::new());
    let incomplete: Vec<&Disagreement> = found
        .iter()
        .filter(|f| f.what.starts_with("incomplete"))
        .collect();
    assert!(incomplete.is_empty(), "{text}");
}

#[test]
fn rw_register_violations_are_confirmed_by_the_exhaustive_oracle() {
    let (found, text) = compare_mixed(TxnModel::RwRegister, 8, false, |tally| {
        format!(
            "\nrw-register missed {} of {} non-serializable and {} of {} non-strict-serializable histories (incomplete by design)",
            tally.missed_serializable,
            tally.not_serializable,
            tally.missed_strict,
            tally.not_strict
        )
    });
    assert!(found.is_empty(), "{text}");
}

#[test]
fn exhaustive_oracle_agrees_with_brute_force_enumeration() {
    let mut r = rng(9);
    let mut invalid = 0;
    for i in 0..400 {
        let model = MODELS[i % 2];
        let h = small(model, &mut r, 6, 3);
        let fast = oracle(&h, model);
        assert_eq!(fast, oracle_literal(&h, model), "{model}\n{}", render(&h));
        invalid += usize::from(!fast.strict);
    }
    assert!(invalid > 40, "only {invalid} invalid histories");
}

/// The oracle decides that the list-append history `h` is `serializable` or not, and
/// `strict`-serializable or not.
fn assert_oracle(h: &TxnHistory, serializable: bool, strict: bool) {
    assert_eq!(
        oracle(h, LA),
        Decision {
            serializable,
            strict
        },
        "{}",
        render(h)
    );
}

#[test]
fn oracle_judges_hand_written_histories() {
    // Write skew: serializable? No. A stale read: serializable, not strict.
    let mut h = TxnHistory::new();
    let (x, y) = (h.key("x"), h.key("y"));
    let t = |p, i, c, ops| schism::check::txn::Transaction {
        process: p,
        outcome: Outcome::Ok,
        invoke: i,
        complete: Some(c),
        ops,
        line: 0,
    };
    h.txns = vec![
        t(
            0,
            0,
            10,
            vec![read(LA, x, &[]), read(LA, y, &[]), write(LA, x, 1)],
        ),
        t(
            1,
            1,
            11,
            vec![read(LA, x, &[]), read(LA, y, &[]), write(LA, y, 2)],
        ),
    ];
    assert_oracle(&h, false, false);
    h.txns = vec![
        t(0, 0, 10, vec![write(LA, x, 1)]),
        t(1, 11, 20, vec![read(LA, x, &[])]),
    ];
    assert_oracle(&h, true, false);
    // An info transaction may be left out, or placed after the read.
    h.txns[0].outcome = Outcome::Info;
    h.txns[0].complete = None;
    assert_oracle(&h, true, true);
    h.txns.push(t(2, 30, 40, vec![read(LA, x, &[1])]));
    assert_oracle(&h, true, true);
    // A failed write is never applied.
    h.txns[0].outcome = Outcome::Fail;
    h.txns[0].complete = Some(5);
    assert_oracle(&h, false, false);
}

// ---------------------------------------------------------------------------------------
// The smallest list-append histories the comparison above found the checker to miss: none
// is serializable (the oracle agrees), and each is the minimised form of a whole class of
// misses.

/// `(process, outcome, invoke, ops)`; ok and failed transactions complete 10 after invoking.
fn history(txns: Vec<(u64, Outcome, u64, Vec<schism::check::txn::MicroOp>)>) -> TxnHistory {
    let mut h = TxnHistory::new();
    h.key("x");
    h.key("y");
    for (process, outcome, invoke, ops) in txns {
        h.txns.push(schism::check::txn::Transaction {
            process,
            outcome,
            invoke,
            complete: (outcome != Outcome::Info).then_some(invoke + 10),
            ops,
            line: 0,
        });
    }
    h
}

fn assert_not_serializable(h: &TxnHistory, strict_only: bool) {
    let m = LA;
    let d = oracle(h, m);
    assert!(
        !d.strict && d.serializable == strict_only,
        "oracle: {d:?}\n{}",
        render(h)
    );
    let models: &[Consistency] = if strict_only {
        &[C::StrictSerializable]
    } else {
        &[C::Serializable, C::StrictSerializable]
    };
    for &c in models {
        assert!(violated(h, m, c), "{}", describe(h, m, c));
    }
}

const X: u32 = 0;
const Y: u32 = 1;

#[test]
fn list_append_rejects_a_read_of_the_transactions_own_later_append() {
    // T0 reads x = [1] before it appends 1 itself.
    let h = history(vec![(
        0,
        Outcome::Ok,
        0,
        vec![read(LA, X, &[1]), write(LA, X, 1)],
    )]);
    assert_not_serializable(&h, false);
}

#[test]
fn list_append_rejects_a_read_of_a_transactions_later_append_without_its_earlier_one() {
    // T0 appends 1 then 2 atomically; T1 sees 2 without 1.
    let h = history(vec![
        (0, Outcome::Ok, 0, vec![write(LA, X, 1), write(LA, X, 2)]),
        (1, Outcome::Ok, 1, vec![read(LA, X, &[2])]),
    ]);
    assert_not_serializable(&h, false);
}

#[test]
fn list_append_rejects_a_read_of_a_transactions_appends_in_reverse_order() {
    // T0 appends 1 then 2, T1 appends 3; T2 sees 2 before 1. (With nothing after them, a
    // read of [2 1] is caught anyway, as an intermediate read of 1.)
    let h = history(vec![
        (0, Outcome::Ok, 0, vec![write(LA, X, 1), write(LA, X, 2)]),
        (1, Outcome::Ok, 1, vec![write(LA, X, 3)]),
        (2, Outcome::Ok, 2, vec![read(LA, X, &[2, 1, 3])]),
    ]);
    assert_not_serializable(&h, false);
}

#[test]
fn list_append_orders_every_append_of_an_indeterminate_transaction_seen_to_commit() {
    // T0's outcome is unknown, but T1 saw its append to x, so it committed, with its append
    // to y; T1 read y without it: T0 → T1 (wr x) and T1 → T0 (rw y).
    let h = history(vec![
        (0, Outcome::Info, 0, vec![write(LA, X, 1), write(LA, Y, 2)]),
        (1, Outcome::Ok, 1, vec![read(LA, X, &[1]), read(LA, Y, &[])]),
    ]);
    assert_not_serializable(&h, false);
}

#[test]
fn list_append_orders_every_append_of_an_indeterminate_transaction_seen_to_commit_in_real_time() {
    // T1 saw T0's append to y and completed before T2 began, yet T2 read x without T0's
    // append to it: serializable (T2, T0, T1), not strict-serializable.
    let h = history(vec![
        (0, Outcome::Info, 0, vec![write(LA, X, 1), write(LA, Y, 2)]),
        (1, Outcome::Ok, 1, vec![read(LA, Y, &[2])]),
        (2, Outcome::Ok, 20, vec![read(LA, X, &[])]),
    ]);
    assert_not_serializable(&h, true);
}

// ---------------------------------------------------------------------------------------
// What a reported cycle shows.

/// Why `cycle` is not a simple cycle of `kind` whose every edge the history bears out, if it
/// is not: consecutive edges meet, no transaction comes twice, the class and variant are
/// those of its edges, a data edge links two committed transactions through a key one
/// writes and the other reads or writes, a process edge two transactions of one client in
/// order, a real-time edge an ok transaction to one invoked after it completed.
fn cycle_fault(h: &TxnHistory, a: &schism::check::txn::Anomaly) -> Option<(&'static str, String)> {
    use schism::check::txn::{EdgeKind, MicroOp};
    let AnomalyKind::Cycle(class, variant) = a.kind else {
        return None;
    };
    let edges = &a.cycle;
    if edges.is_empty() {
        return Some(("no edges", String::new()));
    }
    for (i, e) in edges.iter().enumerate() {
        let next = &edges[(i + 1) % edges.len()];
        if e.to != next.from {
            return Some((
                "edges that do not meet",
                format!(
                    "edge {i} ends at T{}, the next starts at T{}",
                    e.to, next.from
                ),
            ));
        }
    }
    let mut nodes: Vec<usize> = edges.iter().map(|e| e.from).collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.len() != edges.len() {
        return Some((
            "not a simple cycle",
            format!("{} edges through {} transactions", edges.len(), nodes.len()),
        ));
    }
    let rw: Vec<bool> = edges
        .iter()
        .map(|e| e.kind == EdgeKind::ReadWrite)
        .collect();
    let count = rw.iter().filter(|&&r| r).count();
    let adjacent = (0..rw.len()).any(|i| rw[i] && rw[(i + 1) % rw.len()]);
    let expected_class = match count {
        0 if edges.iter().any(|e| e.kind == EdgeKind::WriteRead) => CycleClass::G1c,
        0 => CycleClass::G0,
        1 => CycleClass::GSingle,
        _ if !adjacent => CycleClass::GNonadjacent,
        _ => CycleClass::G2Item,
    };
    if class != expected_class {
        return Some((
            "the wrong class",
            format!("its edges make it {expected_class:?}"),
        ));
    }
    let expected_variant = if edges.iter().any(|e| e.kind == EdgeKind::Realtime) {
        Variant::Realtime
    } else if edges.iter().any(|e| e.kind == EdgeKind::Process) {
        Variant::Process
    } else {
        Variant::Plain
    };
    if variant != expected_variant {
        return Some((
            "the wrong variant",
            format!("its edges make it {expected_variant:?}"),
        ));
    }
    let writes = |t: usize, k: u32| {
        h.txns[t].ops.iter().any(
            |o| matches!(o, MicroOp::Append { key, .. } | MicroOp::Write { key, .. } if *key == k),
        )
    };
    let reads = |t: usize, k: u32| {
        h.txns[t].outcome == Outcome::Ok
            && h.txns[t]
                .ops
                .iter()
                .any(|o| matches!(o, MicroOp::Read { key, .. } if *key == k))
    };
    for e in edges {
        let (f, t) = (&h.txns[e.from], &h.txns[e.to]);
        let keys = 0..h.keys.len() as u32;
        let fits = f.outcome != Outcome::Fail
            && t.outcome != Outcome::Fail
            && match e.kind {
                EdgeKind::WriteWrite => keys.clone().any(|k| writes(e.from, k) && writes(e.to, k)),
                EdgeKind::WriteRead => keys.clone().any(|k| writes(e.from, k) && reads(e.to, k)),
                EdgeKind::ReadWrite => keys.clone().any(|k| reads(e.from, k) && writes(e.to, k)),
                EdgeKind::Process => {
                    f.outcome == Outcome::Ok && f.process == t.process && f.invoke < t.invoke
                }
                EdgeKind::Realtime => {
                    f.outcome == Outcome::Ok && f.complete.is_some_and(|c| c < t.invoke)
                }
            };
        if !fits {
            return Some((
                "an edge the history does not bear out",
                format!("T{} {}→ T{}", e.from, e.kind.name(), e.to),
            ));
        }
    }
    None
}

#[test]
fn reported_cycles_are_simple_cycles_of_their_class_that_the_history_bears_out() {
    let mut r = rng(11);
    let mut cycles = 0;
    let mut faults: Vec<String> = Vec::new();
    for i in 0..6000 {
        let model = MODELS[i % 2];
        let h = small(model, &mut r, 6, 3);
        for consistency in [C::Serializable, C::StrictSerializable] {
            let out = run(&h, model, consistency);
            for a in &out.anomalies {
                cycles += usize::from(matches!(a.kind, AnomalyKind::Cycle(..)));
                let Some((fault, _)) = cycle_fault(&h, a) else {
                    continue;
                };
                let what = format!("{model} {}: {fault}", a.kind);
                if faults.iter().any(|f| f.starts_with(&what)) {
                    continue;
                }
                let kind = a.kind;
                let bad = |c: &TxnHistory| {
                    check(c, &TxnOptions::new(model, consistency)).is_ok_and(|out| {
                        out.anomalies
                            .iter()
                            .any(|a| a.kind == kind && cycle_fault(c, a).is_some())
                    })
                };
                let m = minimise(&h, bad);
                let out = run(&m, model, consistency);
                let shown: Vec<String> = out
                    .anomalies
                    .iter()
                    .filter_map(|a| {
                        let (_, detail) = cycle_fault(&m, a).filter(|_| a.kind == kind)?;
                        Some(format!("{} ({detail})\n{}", a.summary(), a.explanation))
                    })
                    .collect();
                faults.push(format!("{what}\n{}\n{}", shown.join("\n"), render(&m)));
            }
        }
    }
    eprintln!("{cycles} cycles reported, {} kinds of fault", faults.len());
    assert!(cycles > 1000, "only {cycles} cycles");
    assert!(faults.is_empty(), "{}", faults.join("\n\n"));
}

#[test]
fn read_skew_is_reported_as_g_single_and_not_as_a_g_nonadjacent_walk() {
    for model in MODELS {
        // T0 writes x and y; T1, concurrent, sees its x but not its y. One cycle, one
        // anti-dependency: T0 wr→ T1 rw→ T0.
        let h = history(vec![
            (
                0,
                Outcome::Ok,
                0,
                vec![write(model, X, 1), write(model, Y, 1)],
            ),
            (
                1,
                Outcome::Ok,
                1,
                vec![read(model, X, &[1]), read(model, Y, &[])],
            ),
        ]);
        let out = run(&h, model, C::Serializable);
        let kinds: Vec<AnomalyKind> = out.anomalies.iter().map(|a| a.kind).collect();
        let explained: Vec<String> = out
            .anomalies
            .iter()
            .map(|a| a.explanation.clone())
            .collect();
        assert_eq!(
            kinds,
            vec![AnomalyKind::Cycle(CycleClass::GSingle, Variant::Plain)],
            "{model}:\n{}",
            explained.join("\n\n")
        );
    }
}
