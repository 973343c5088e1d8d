//! A catalogue of the anomalies the transactional checker names, each as the smallest
//! hand-written history that shows it, in native JSON Lines, next to its fixed twin (the
//! smallest change that makes it legal).
//!
//! For every anomalous history the test asserts which anomaly kinds are reported (exactly),
//! and the model boundary exactly: for each of the nine consistency models, whether the
//! history rules it out, and that checking against that model gives the matching verdict.
//! Every reported anomaly must name its transactions, and every cycle must explain each of
//! its edges in words that name both ends.
//!
//! Timing conventions: transactions that overlap in real time (so that only data edges
//! order them) run on distinct processes with `invoke` 0, 1, 2, … and `complete` 10, 11,
//! 12, …; where real time or a client's order matters, the times say so in a comment.

#[path = "common/txn_assert.rs"]
mod txn_assert;

use schism::check::txn::formats::read_str;
use schism::check::txn::{
    Anomaly, AnomalyKind, Consistency, EdgeKind, TxnError, TxnHistory, TxnModel, TxnOptions,
    TxnOutcome, TxnVerdict, check,
};
use txn_assert::{
    EVERY, NO_WRITE_SKEW, READ_COMMITTED_UP, REAL_TIME, SESSION, SNAPSHOT_UP, expected_verdict,
    summaries,
};

use Consistency as C;

const LA: TxnModel = TxnModel::ListAppend;
const RW: TxnModel = TxnModel::RwRegister;

/// One transaction: process, type (`ok`, `fail`, `info`), invoke, complete (ignored for
/// `info`), and its micro-operations as JSON (without the enclosing brackets).
type Txn = (u64, &'static str, u64, u64, &'static str);

/// The native JSON Lines text of a history, one transaction per line.
fn jsonl(txns: &[Txn]) -> String {
    let mut text = String::new();
    for &(process, kind, invoke, complete, ops) in txns {
        let complete = if kind == "info" {
            String::new()
        } else {
            format!(",\"complete\":{complete}")
        };
        text.push_str(&format!(
            "{{\"process\":{process},\"type\":\"{kind}\",\"f\":\"txn\",\"value\":[{ops}],\"invoke\":{invoke}{complete}}}\n"
        ));
    }
    text
}

fn read(txns: &[Txn]) -> TxnHistory {
    let text = jsonl(txns);
    read_str(&text).unwrap_or_else(|e| panic!("cannot read the history: {e}\n{text}"))
}

fn run(h: &TxnHistory, model: TxnModel, consistency: Consistency) -> TxnOutcome {
    check(h, &TxnOptions::new(model, consistency))
        .unwrap_or_else(|e| panic!("{model} check of a well-formed history failed: {e}"))
}

fn kind_names(out: &TxnOutcome) -> Vec<String> {
    let mut names: Vec<String> = out.counts.iter().map(|(k, _)| k.name()).collect();
    names.sort();
    names.dedup();
    names
}

/// Whether `text` mentions transaction `t` as a whole word (`T1`, not the start of `T10`).
fn names(text: &str, t: usize) -> bool {
    let needle = format!("T{t}");
    text.match_indices(&needle).any(|(i, _)| {
        !text[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Every anomaly names its transactions; every cycle is a closed chain of edges, each
/// explained in a sentence that names both its ends and ends in `⇒ Tfrom kind→ Tto`.
fn assert_explained(h: &TxnHistory, a: &Anomaly) {
    let summary = a.summary();
    assert!(
        summary.starts_with(&format!("{}: ", a.kind.name())),
        "{summary}"
    );
    assert!(!a.txns.is_empty(), "{summary}: names no transaction");
    for &t in &a.txns {
        assert!(t < h.txns.len(), "{summary}: T{t} is not in the history");
        assert!(names(&summary, t), "summary {summary:?} does not name T{t}");
        assert!(
            names(&a.explanation, t),
            "{summary}: the explanation does not name T{t}:\n{}",
            a.explanation
        );
    }
    let AnomalyKind::Cycle(..) = a.kind else {
        assert!(
            a.cycle.is_empty(),
            "{summary}: a non-cycle anomaly with edges"
        );
        return;
    };
    assert!(
        a.cycle.len() >= 2,
        "{summary}: a cycle of {} edges",
        a.cycle.len()
    );
    let froms: Vec<usize> = a.cycle.iter().map(|e| e.from).collect();
    assert_eq!(
        a.txns, froms,
        "{summary}: txns are the cycle's transactions in order"
    );
    for (i, e) in a.cycle.iter().enumerate() {
        let next = &a.cycle[(i + 1) % a.cycle.len()];
        assert_eq!(
            e.to,
            next.from,
            "{summary}: edge {i} does not meet edge {}",
            i + 1
        );
        assert!(
            names(&e.reason, e.from) && names(&e.reason, e.to),
            "{summary}: the reason {:?} does not name both T{} and T{}",
            e.reason,
            e.from,
            e.to
        );
        let arrow = format!("⇒ T{} {}→ T{}", e.from, e.kind.name(), e.to);
        assert!(
            e.reason.ends_with(&arrow),
            "{summary}: {:?} lacks {arrow:?}",
            e.reason
        );
        // The part before the arrow says why, in words, not just the arrow.
        assert!(
            e.reason.len() > arrow.len() + 20,
            "{summary}: {:?}",
            e.reason
        );
        assert!(
            a.explanation.contains(&e.reason),
            "{summary}: the explanation lacks the edge {:?}",
            e.reason
        );
    }
    for &t in &a.txns {
        let line = h.txns[t].line;
        assert!(
            a.explanation
                .contains(&format!("T{t} (process {}, ", h.txns[t].process))
                && a.explanation.contains(&format!("line {line})")),
            "{summary}: the explanation does not describe T{t}:\n{}",
            a.explanation
        );
    }
    assert!(
        a.explanation.ends_with(&format!(
            "so T{} must precede itself: a {} cycle ({}).",
            a.txns[0],
            a.kind.name(),
            match a.kind {
                AnomalyKind::Cycle(class, _) => class.plain(),
                _ => unreachable!(),
            }
        )),
        "{}",
        a.explanation
    );
}

/// Checks `txns` against every model: exactly the models of `broken` are ruled out (and
/// violated when checked), exactly the anomaly kinds of `kinds` are reported, and each is
/// explained. Returns the outcome of the strict-serializable check.
fn violates(txns: &[Txn], model: TxnModel, kinds: &[&str], broken: &[Consistency]) -> TxnOutcome {
    let h = read(txns);
    let text = jsonl(txns);
    let mut expected_kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    expected_kinds.sort();
    let expected_out: Vec<Consistency> = Consistency::ALL
        .into_iter()
        .filter(|m| broken.contains(m))
        .collect();
    let mut strict = None;
    for m in Consistency::ALL {
        let out = run(&h, model, m);
        let context = || format!("{model}, checked for {m}: {:?}\n{text}", summaries(&out));
        assert_eq!(
            kind_names(&out),
            expected_kinds,
            "anomaly kinds; {}",
            context()
        );
        assert_eq!(
            out.ruled_out,
            expected_out,
            "models ruled out; {}",
            context()
        );
        let verdict = expected_verdict(broken, m);
        assert_eq!(out.verdict, verdict, "{}", context());
        assert!(out.unclassified.is_empty(), "{}", context());
        assert!(out.unknown_reason.is_none(), "{}", context());
        if verdict == TxnVerdict::Violated {
            let v = out.violation().expect("a violation names its anomaly");
            assert!(v.kind.forbidden_by(m), "{}", context());
        } else {
            assert!(out.violation().is_none(), "{}", context());
        }
        for kind in kinds {
            assert!(
                out.anomalies.iter().any(|a| a.kind.name() == *kind),
                "no example of {kind}; {}",
                context()
            );
        }
        for a in &out.anomalies {
            assert_explained(&h, a);
        }
        if m == C::StrictSerializable {
            strict = Some(out);
        }
    }
    strict.unwrap()
}

/// Checks that `txns` satisfies `strongest` and every model it implies, with no anomaly
/// reported at all.
fn satisfies(txns: &[Txn], model: TxnModel, strongest: Consistency) {
    let h = read(txns);
    for m in Consistency::ALL {
        let out = run(&h, model, m);
        let context = || {
            format!(
                "{model}, checked for {m}: {:?}\n{}",
                summaries(&out),
                jsonl(txns)
            )
        };
        assert!(out.anomalies.is_empty(), "{}", context());
        assert!(out.counts.is_empty(), "{}", context());
        assert!(out.ruled_out.is_empty(), "{}", context());
        if strongest.implies(m) {
            assert_eq!(out.verdict, TxnVerdict::Satisfied, "{}", context());
        }
    }
}

/// The reported anomaly of `kind`.
fn find<'o>(out: &'o TxnOutcome, kind: &str) -> &'o Anomaly {
    out.anomalies
        .iter()
        .find(|a| a.kind.name() == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", summaries(out)))
}

/// A cycle may be reported from any of its transactions: its summary is one of `options`.
fn assert_summary(a: &Anomaly, options: &[&str]) {
    let summary = a.summary();
    assert!(
        options.contains(&summary.as_str()),
        "{summary:?} is none of {options:?}"
    );
}

fn reasons(a: &Anomaly) -> Vec<&str> {
    a.cycle.iter().map(|e| e.reason.as_str()).collect()
}

fn edge_kinds(a: &Anomaly) -> Vec<EdgeKind> {
    a.cycle.iter().map(|e| e.kind).collect()
}

/// The reported cycle of `kind`: its summary is one of `options` (see [`assert_summary`])
/// and the reasons of its edges, sorted, are `sorted_reasons`.
fn assert_cycle<'o>(
    out: &'o TxnOutcome,
    kind: &str,
    options: &[&str],
    sorted_reasons: &[&str],
) -> &'o Anomaly {
    let a = find(out, kind);
    assert_summary(a, options);
    let mut r = reasons(a);
    r.sort();
    assert_eq!(r, sorted_reasons, "the reasons of {}", a.summary());
    a
}

/// One of the edges of `a` is explained by `reason`.
fn assert_reason(a: &Anomaly, reason: &str) {
    let all = reasons(a);
    assert!(all.contains(&reason), "{reason:?} is none of {all:?}");
}

/// The kinds of the edges of `a`, by name and sorted, are `sorted`.
fn assert_edge_names(a: &Anomaly, sorted: &[&str]) {
    let mut names: Vec<&str> = edge_kinds(a).iter().map(|k| k.name()).collect();
    names.sort();
    assert_eq!(names, sorted, "{:?}", reasons(a));
}

/// Checks `txns` as `model` for strict serializability, which the model cannot interpret:
/// the error names source line `line` and transaction `txn`.
fn assert_rejected(txns: &[Txn], model: TxnModel, line: usize, txn: usize) -> TxnError {
    let h = read(txns);
    let err = check(&h, &TxnOptions::new(model, C::StrictSerializable)).unwrap_err();
    assert_eq!((err.line, err.txn), (line, txn), "{err}");
    err
}

/// Checked as `model` for each of `models`, the history `h` satisfies it.
fn assert_satisfied_for(h: &TxnHistory, model: TxnModel, models: &[Consistency]) {
    for &m in models {
        let out = run(h, model, m);
        assert_eq!(
            out.verdict,
            TxnVerdict::Satisfied,
            "{m}: {:?}",
            summaries(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Model boundaries: the models each class of anomaly rules out (`EVERY`,
// `READ_COMMITTED_UP`, `SNAPSHOT_UP`, `NO_WRITE_SKEW`, `SESSION`, `REAL_TIME`) are in
// common/txn_assert.rs, shared with the property tests.

// ---------------------------------------------------------------------------------------
// G0: a write cycle.

/// T0 and T1 both append to x and y; T2 sees x in the order T0, T1 and y in T1, T0.
const G0_LA: &[Txn] = &[
    (0, "ok", 0, 10, r#"["append","x",1],["append","y",1]"#),
    (1, "ok", 1, 11, r#"["append","x",2],["append","y",2]"#),
    (2, "ok", 2, 12, r#"["r","x",[1,2]],["r","y",[2,1]]"#),
];

#[test]
fn g0_list_append_two_writers_in_opposite_orders() {
    let out = violates(G0_LA, LA, &["G0"], EVERY);
    let a = assert_cycle(
        &out,
        "G0",
        &[
            "G0: dirty write between T0 and T1",
            "G0: dirty write between T1 and T0",
        ],
        &[
            "T0 appended 1 to key y right after T1's append of 2, as T2 read ⇒ T1 ww→ T0",
            "T1 appended 2 to key x right after T0's append of 1, as T2 read ⇒ T0 ww→ T1",
        ],
    );
    assert_eq!(edge_kinds(a), [EdgeKind::WriteWrite, EdgeKind::WriteWrite]);

    let mut fixed = G0_LA.to_vec();
    fixed[2].4 = r#"["r","x",[1,2]],["r","y",[1,2]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

/// Rw-register knows a version order only where a transaction read one version and wrote
/// the next, so each ww edge comes with a wr edge: a write cycle is always circular
/// information flow too. T0 overwrote T1's x = 2, and T1 overwrote T0's x = 1.
const G0_RW: &[Txn] = &[
    (0, "ok", 0, 10, r#"["r","x",2],["w","x",1]"#),
    (1, "ok", 1, 11, r#"["r","x",1],["w","x",2]"#),
];

#[test]
fn g0_rw_register_each_overwrote_the_other() {
    let out = violates(G0_RW, RW, &["G0", "G1c"], EVERY);
    let a = find(&out, "G0");
    assert_eq!(edge_kinds(a), [EdgeKind::WriteWrite, EdgeKind::WriteWrite]);
    assert_reason(
        a,
        "T0 read key x = 2, which T1 wrote, then wrote 1 ⇒ T1 ww→ T0",
    );

    let mut fixed = G0_RW.to_vec();
    fixed[0].4 = r#"["r","x",null],["w","x",1]"#;
    satisfies(&fixed, RW, C::StrictSerializable);
}

/// G0 in real time: T1 began after T0 committed, yet T2 read T1's append before T0's.
const G0_REALTIME_LA: &[Txn] = &[
    (0, "ok", 0, 10, r#"["append","x",1]"#),
    (1, "ok", 20, 30, r#"["append","x",2]"#),
    (2, "ok", 5, 40, r#"["r","x",[2,1]]"#),
];

#[test]
fn g0_realtime_list_append_a_later_append_ordered_first() {
    let out = violates(G0_REALTIME_LA, LA, &["G0-realtime"], REAL_TIME);
    let a = find(&out, "G0-realtime");
    assert_summary(
        a,
        &[
            "G0-realtime: dirty write between T0 and T1",
            "G0-realtime: dirty write between T1 and T0",
        ],
    );
    assert_reason(
        a,
        "T0 completed (at 10) before T1 was invoked (at 20) ⇒ T0 realtime→ T1",
    );

    let mut fixed = G0_REALTIME_LA.to_vec();
    fixed[2].4 = r#"["r","x",[1,2]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

// ---------------------------------------------------------------------------------------
// G1a: aborted read.

#[test]
fn g1a_list_append_read_of_a_failed_append() {
    let bad: &[Txn] = &[
        (0, "fail", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",[1]]"#),
    ];
    let out = violates(bad, LA, &["G1a"], READ_COMMITTED_UP);
    assert_eq!(find(&out, "G1a").txns, [0, 1]);
    assert_eq!(
        find(&out, "G1a").summary(),
        "G1a: aborted read between T0 and T1"
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",[]]"#)];
    satisfies(fixed, LA, C::StrictSerializable);
}

#[test]
fn g1a_rw_register_read_of_a_failed_write() {
    let bad: &[Txn] = &[
        (0, "fail", 0, 10, r#"["w","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",1]"#),
    ];
    let out = violates(bad, RW, &["G1a"], READ_COMMITTED_UP);
    assert!(find(&out, "G1a").explanation.contains("failed"));

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",null]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

// ---------------------------------------------------------------------------------------
// G1b: intermediate read.

/// In list-append an intermediate read is always also read skew: the reader saw T0's first
/// append (wr T0 → T1) but not its second (rw T1 → T0).
#[test]
fn g1b_list_append_read_between_two_appends_of_one_transaction() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1],["append","x",2]"#),
        (1, "ok", 1, 11, r#"["r","x",[1]]"#),
    ];
    let out = violates(bad, LA, &["G1b", "G-single"], READ_COMMITTED_UP);
    assert_eq!(find(&out, "G1b").txns, [0, 1]);

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",[1,2]]"#)];
    satisfies(fixed, LA, C::StrictSerializable);
}

#[test]
fn g1b_rw_register_read_of_an_overwritten_write() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1],["w","x",2]"#),
        (1, "ok", 1, 11, r#"["r","x",1]"#),
    ];
    let out = violates(bad, RW, &["G1b"], READ_COMMITTED_UP);
    assert_eq!(
        find(&out, "G1b").summary(),
        "G1b: intermediate read between T0 and T1"
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",2]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

// ---------------------------------------------------------------------------------------
// G1c: circular information flow.

#[test]
fn g1c_list_append_each_read_the_others_append() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1],["r","y",[1]]"#),
        (1, "ok", 1, 11, r#"["append","y",1],["r","x",[1]]"#),
    ];
    let out = violates(bad, LA, &["G1c"], READ_COMMITTED_UP);
    let a = assert_cycle(
        &out,
        "G1c",
        &[
            "G1c: circular information flow between T0 and T1",
            "G1c: circular information flow between T1 and T0",
        ],
        &[
            "T0 read key y ending in 1, T1's append ⇒ T1 wr→ T0",
            "T1 read key x ending in 1, T0's append ⇒ T0 wr→ T1",
        ],
    );
    assert_eq!(edge_kinds(a), [EdgeKind::WriteRead, EdgeKind::WriteRead]);

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["append","y",1],["r","x",[]]"#)];
    satisfies(fixed, LA, C::StrictSerializable);
}

#[test]
fn g1c_rw_register_each_read_the_others_write() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1],["r","y",1]"#),
        (1, "ok", 1, 11, r#"["w","y",1],["r","x",1]"#),
    ];
    let out = violates(bad, RW, &["G1c"], READ_COMMITTED_UP);
    assert_reason(
        find(&out, "G1c"),
        "T1 read key x = 1, which T0 wrote ⇒ T0 wr→ T1",
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["w","y",1],["r","x",null]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

/// A read from the future: T1 completed before T0 began, yet read T0's append.
const G1C_REALTIME_LA: &[Txn] = &[
    (0, "ok", 20, 30, r#"["append","x",1]"#),
    (1, "ok", 0, 10, r#"["r","x",[1]]"#),
];

#[test]
fn g1c_realtime_list_append_read_from_the_future() {
    let out = violates(G1C_REALTIME_LA, LA, &["G1c-realtime"], REAL_TIME);
    let a = find(&out, "G1c-realtime");
    assert_eq!(edge_kinds(a).len(), 2);
    assert!(edge_kinds(a).contains(&EdgeKind::Realtime));
    assert!(edge_kinds(a).contains(&EdgeKind::WriteRead));

    // Overlapping, T1 may read what T0 appended.
    let mut fixed = G1C_REALTIME_LA.to_vec();
    fixed[1].3 = 25;
    satisfies(&fixed, LA, C::StrictSerializable);
}

#[test]
fn g1c_realtime_rw_register_read_from_the_future() {
    let bad: &[Txn] = &[
        (0, "ok", 20, 30, r#"["w","x",1]"#),
        (1, "ok", 0, 10, r#"["r","x",1]"#),
    ];
    let out = violates(bad, RW, &["G1c-realtime"], REAL_TIME);
    assert_reason(
        find(&out, "G1c-realtime"),
        "T1 completed (at 10) before T0 was invoked (at 20) ⇒ T1 realtime→ T0",
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 0, 25, r#"["r","x",1]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

// ---------------------------------------------------------------------------------------
// G-single: read skew, one anti-dependency.

#[test]
fn g_single_list_append_saw_half_of_a_transaction() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1],["append","y",1]"#),
        (1, "ok", 1, 11, r#"["r","x",[1]],["r","y",[]]"#),
    ];
    let out = violates(bad, LA, &["G-single"], SNAPSHOT_UP);
    assert_cycle(
        &out,
        "G-single",
        &[
            "G-single: read skew between T0 and T1",
            "G-single: read skew between T1 and T0",
        ],
        &[
            "T1 read key x ending in 1, T0's append ⇒ T0 wr→ T1",
            "T1 read key y without T0's acknowledged append of 1, which no read saw ⇒ T1 rw→ T0",
        ],
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",[1]],["r","y",[1]]"#)];
    satisfies(fixed, LA, C::StrictSerializable);
}

#[test]
fn g_single_rw_register_saw_half_of_a_transaction() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1],["w","y",1]"#),
        (1, "ok", 1, 11, r#"["r","x",1],["r","y",null]"#),
    ];
    let out = violates(bad, RW, &["G-single"], SNAPSHOT_UP);
    assert_reason(
        find(&out, "G-single"),
        "T1 read key y before any write (nil), and T0 wrote 1 ⇒ T1 rw→ T0",
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",1],["r","y",1]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

/// A stale read: T1 began after T0 committed and read x without T0's append, which T2 saw.
const G_SINGLE_REALTIME_LA: &[Txn] = &[
    (0, "ok", 0, 10, r#"["append","x",1]"#),
    (1, "ok", 20, 30, r#"["r","x",[]]"#),
    (2, "ok", 5, 40, r#"["r","x",[1]]"#),
];

#[test]
fn g_single_realtime_list_append_stale_read() {
    let out = violates(G_SINGLE_REALTIME_LA, LA, &["G-single-realtime"], REAL_TIME);
    assert_cycle(
        &out,
        "G-single-realtime",
        &[
            "G-single-realtime: read skew between T0 and T1",
            "G-single-realtime: read skew between T1 and T0",
        ],
        &[
            "T0 completed (at 10) before T1 was invoked (at 20) ⇒ T0 realtime→ T1",
            "T1 read key x without T0's append of 1, which T2 saw ⇒ T1 rw→ T0",
        ],
    );

    let mut fixed = G_SINGLE_REALTIME_LA.to_vec();
    fixed[1].4 = r#"["r","x",[1]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

#[test]
fn g_single_realtime_rw_register_stale_read() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1]"#),
        (1, "ok", 20, 30, r#"["r","x",null]"#),
    ];
    let out = violates(bad, RW, &["G-single-realtime"], REAL_TIME);
    assert_eq!(find(&out, "G-single-realtime").txns.len(), 2);

    let fixed: &[Txn] = &[bad[0], (1, "ok", 20, 30, r#"["r","x",1]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

/// A client does not read its own write. Its clock is coarse: T1 was invoked in the same
/// tick (10) that T0 completed in, and equal timestamps never order two transactions in
/// real time; only the client's order puts T0 first.
const G_SINGLE_PROCESS_LA: &[Txn] = &[
    (0, "ok", 0, 10, r#"["append","x",1]"#),
    (0, "ok", 10, 20, r#"["r","x",[]]"#),
];

#[test]
fn g_single_process_list_append_client_misses_its_own_write() {
    let out = violates(G_SINGLE_PROCESS_LA, LA, &["G-single-process"], SESSION);
    assert_cycle(
        &out,
        "G-single-process",
        &[
            "G-single-process: read skew between T0 and T1",
            "G-single-process: read skew between T1 and T0",
        ],
        &[
            "T0 and then T1 ran on process 0 ⇒ T0 process→ T1",
            "T1 read key x without T0's acknowledged append of 1, which no read saw ⇒ T1 rw→ T0",
        ],
    );

    let mut fixed = G_SINGLE_PROCESS_LA.to_vec();
    fixed[1].4 = r#"["r","x",[1]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);

    // On two clients the same history is serializable in every model: T1 first.
    let mut elsewhere = G_SINGLE_PROCESS_LA.to_vec();
    elsewhere[1].0 = 1;
    satisfies(&elsewhere, LA, C::StrictSerializable);
}

#[test]
fn g_single_process_rw_register_client_misses_its_own_write() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1]"#),
        (0, "ok", 10, 20, r#"["r","x",null]"#),
    ];
    let out = violates(bad, RW, &["G-single-process"], SESSION);
    assert_reason(
        find(&out, "G-single-process"),
        "T0 and then T1 ran on process 0 ⇒ T0 process→ T1",
    );

    let fixed: &[Txn] = &[bad[0], (0, "ok", 10, 20, r#"["r","x",1]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

// ---------------------------------------------------------------------------------------
// G-nonadjacent: two anti-dependencies, not adjacent (two readers disagree on the order
// of two independent writes: a long fork).

const G_NONADJACENT_LA: &[Txn] = &[
    (0, "ok", 0, 10, r#"["r","x",[]],["r","y",[1]]"#),
    (1, "ok", 1, 11, r#"["append","x",1]"#),
    (2, "ok", 2, 12, r#"["r","x",[1]],["r","y",[]]"#),
    (3, "ok", 3, 13, r#"["append","y",1]"#),
];

#[test]
fn g_nonadjacent_list_append_long_fork() {
    let out = violates(G_NONADJACENT_LA, LA, &["G-nonadjacent"], SNAPSHOT_UP);
    let a = find(&out, "G-nonadjacent");
    assert!(
        a.summary()
            .starts_with("G-nonadjacent: non-adjacent anti-dependency cycle among T")
    );
    let kinds = edge_kinds(a);
    assert_eq!(kinds.len(), 4);
    let rw: Vec<usize> = (0..4)
        .filter(|&i| kinds[i] == EdgeKind::ReadWrite)
        .collect();
    assert_eq!(rw.len(), 2, "{kinds:?}");
    assert_eq!(
        rw[1] - rw[0],
        2,
        "the anti-dependencies are not adjacent: {kinds:?}"
    );
    let mut txns = a.txns.clone();
    txns.sort();
    assert_eq!(txns, [0, 1, 2, 3]);

    let mut fixed = G_NONADJACENT_LA.to_vec();
    fixed[0].4 = r#"["r","x",[]],["r","y",[]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

#[test]
fn g_nonadjacent_rw_register_long_fork() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["r","x",null],["r","y",1]"#),
        (1, "ok", 1, 11, r#"["w","x",1]"#),
        (2, "ok", 2, 12, r#"["r","x",1],["r","y",null]"#),
        (3, "ok", 3, 13, r#"["w","y",1]"#),
    ];
    let out = violates(bad, RW, &["G-nonadjacent"], SNAPSHOT_UP);
    assert_eq!(find(&out, "G-nonadjacent").cycle.len(), 4);

    let mut fixed = bad.to_vec();
    fixed[0].4 = r#"["r","x",null],["r","y",null]"#;
    satisfies(&fixed, RW, C::StrictSerializable);
}

// ---------------------------------------------------------------------------------------
// G2-item: write skew.

const WRITE_SKEW_LA: &[Txn] = &[
    (
        0,
        "ok",
        0,
        10,
        r#"["r","x",[]],["r","y",[]],["append","x",1]"#,
    ),
    (
        1,
        "ok",
        1,
        11,
        r#"["r","x",[]],["r","y",[]],["append","y",1]"#,
    ),
];

#[test]
fn g2_item_list_append_write_skew() {
    let out = violates(WRITE_SKEW_LA, LA, &["G2-item"], NO_WRITE_SKEW);
    let a = assert_cycle(
        &out,
        "G2-item",
        &[
            "G2-item: write skew between T0 and T1",
            "G2-item: write skew between T1 and T0",
        ],
        &[
            "T0 read key y without T1's acknowledged append of 1, which no read saw ⇒ T0 rw→ T1",
            "T1 read key x without T0's acknowledged append of 1, which no read saw ⇒ T1 rw→ T0",
        ],
    );
    assert_eq!(edge_kinds(a), [EdgeKind::ReadWrite, EdgeKind::ReadWrite]);
    assert!(
        a.explanation
            .contains("T0 (process 0, ok, line 1): [r x []] [r y []] [append x 1]")
    );

    // T1 sees T0's append: T0 then T1.
    let mut fixed = WRITE_SKEW_LA.to_vec();
    fixed[1].4 = r#"["r","x",[1]],["r","y",[]],["append","y",1]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

#[test]
fn g2_item_rw_register_write_skew() {
    let bad: &[Txn] = &[
        (
            0,
            "ok",
            0,
            10,
            r#"["r","x",null],["r","y",null],["w","x",1]"#,
        ),
        (
            1,
            "ok",
            1,
            11,
            r#"["r","x",null],["r","y",null],["w","y",1]"#,
        ),
    ];
    let out = violates(bad, RW, &["G2-item"], NO_WRITE_SKEW);
    assert_summary(
        find(&out, "G2-item"),
        &[
            "G2-item: write skew between T0 and T1",
            "G2-item: write skew between T1 and T0",
        ],
    );

    let mut fixed = bad.to_vec();
    fixed[1].4 = r#"["r","x",1],["r","y",null],["w","y",1]"#;
    satisfies(&fixed, RW, C::StrictSerializable);
}

/// Write skew closed by real time: T2 committed before T0 began; T1 overlaps both, reads y
/// without T2's append and appends to x, which T0 reads without. Strong snapshot isolation
/// allows it; only strict serializability does not.
const G2_ITEM_REALTIME_LA: &[Txn] = &[
    (0, "ok", 20, 30, r#"["r","x",[]]"#),
    (1, "ok", 5, 25, r#"["append","x",1],["r","y",[]]"#),
    (2, "ok", 0, 10, r#"["append","y",1]"#),
];

#[test]
fn g2_item_realtime_list_append() {
    let out = violates(
        G2_ITEM_REALTIME_LA,
        LA,
        &["G2-item-realtime"],
        &[C::StrictSerializable],
    );
    let a = find(&out, "G2-item-realtime");
    assert_summary(
        a,
        &[
            "G2-item-realtime: anti-dependency cycle among T0, T1 and T2",
            "G2-item-realtime: anti-dependency cycle among T1, T2 and T0",
            "G2-item-realtime: anti-dependency cycle among T2, T0 and T1",
        ],
    );
    assert_edge_names(a, &["realtime", "rw", "rw"]);

    let mut fixed = G2_ITEM_REALTIME_LA.to_vec();
    fixed[0].4 = r#"["r","x",[1]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

#[test]
fn g2_item_realtime_rw_register() {
    let bad: &[Txn] = &[
        (0, "ok", 20, 30, r#"["r","x",null]"#),
        (1, "ok", 5, 25, r#"["w","x",1],["r","y",null]"#),
        (2, "ok", 0, 10, r#"["w","y",1]"#),
    ];
    violates(bad, RW, &["G2-item-realtime"], &[C::StrictSerializable]);

    let mut fixed = bad.to_vec();
    fixed[0].4 = r#"["r","x",1]"#;
    satisfies(&fixed, RW, C::StrictSerializable);
}

/// Write skew closed by a client's order: T2 and then T0 ran on client 0 (T0 invoked in
/// the tick T2 completed, so real time does not order them); T1, on client 1, overlaps both.
/// Strong session snapshot isolation allows it; strong session serializability does not.
const G2_ITEM_PROCESS_LA: &[Txn] = &[
    (0, "ok", 10, 20, r#"["r","x",[]]"#),
    (1, "ok", 5, 15, r#"["append","x",1],["r","y",[]]"#),
    (0, "ok", 0, 10, r#"["append","y",1]"#),
];

#[test]
fn g2_item_process_list_append() {
    let out = violates(
        G2_ITEM_PROCESS_LA,
        LA,
        &["G2-item-process"],
        &[C::StrongSessionSerializable, C::StrictSerializable],
    );
    assert_reason(
        find(&out, "G2-item-process"),
        "T2 and then T0 ran on process 0 ⇒ T2 process→ T0",
    );

    let mut fixed = G2_ITEM_PROCESS_LA.to_vec();
    fixed[0].4 = r#"["r","x",[1]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

/// A client's own writes in the wrong order: T0 and then T1 appended on client 0 (T1
/// invoked in the tick T0 completed), yet T2 read T1's append first.
#[test]
fn g0_process_list_append_a_clients_appends_out_of_order() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (0, "ok", 10, 20, r#"["append","x",2]"#),
        (1, "ok", 0, 30, r#"["r","x",[2,1]]"#),
    ];
    let out = violates(bad, LA, &["G0-process"], SESSION);
    assert_eq!(
        edge_kinds(find(&out, "G0-process")).len(),
        2,
        "{:?}",
        reasons(find(&out, "G0-process"))
    );

    let mut fixed = bad.to_vec();
    fixed[2].4 = r#"["r","x",[1,2]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

/// A client reads its own future: T0 read the append T1 made next on the same client.
#[test]
fn g1c_process_list_append_a_client_reads_its_next_write() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["r","x",[1]]"#),
        (0, "ok", 10, 20, r#"["append","x",1]"#),
    ];
    let out = violates(bad, LA, &["G1c-process"], SESSION);
    assert_edge_names(find(&out, "G1c-process"), &["process", "wr"]);

    let fixed: &[Txn] = &[(0, "ok", 0, 10, r#"["r","x",[]]"#), bad[1]];
    satisfies(fixed, LA, C::StrictSerializable);
}

#[test]
fn g1c_process_rw_register_a_client_reads_its_next_write() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["r","x",1]"#),
        (0, "ok", 10, 20, r#"["w","x",1]"#),
    ];
    violates(bad, RW, &["G1c-process"], SESSION);

    let fixed: &[Txn] = &[(0, "ok", 0, 10, r#"["r","x",null]"#), bad[1]];
    satisfies(fixed, RW, C::StrictSerializable);
}

/// A long fork closed by real time: T0 reads x without T1's append, T2 reads T1's append
/// but y without T3's, and T3 completed before T0 began.
const G_NONADJACENT_REALTIME_LA: &[Txn] = &[
    (0, "ok", 20, 30, r#"["r","x",[]]"#),
    (1, "ok", 0, 100, r#"["append","x",1]"#),
    (2, "ok", 1, 101, r#"["r","x",[1]],["r","y",[]]"#),
    (3, "ok", 2, 10, r#"["append","y",1]"#),
];

#[test]
fn g_nonadjacent_realtime_list_append() {
    let out = violates(
        G_NONADJACENT_REALTIME_LA,
        LA,
        &["G-nonadjacent-realtime"],
        REAL_TIME,
    );
    assert_edge_names(
        find(&out, "G-nonadjacent-realtime"),
        &["realtime", "rw", "rw", "wr"],
    );

    // T3 still running when T0 began: T0 may come first.
    let mut fixed = G_NONADJACENT_REALTIME_LA.to_vec();
    fixed[3].3 = 25;
    satisfies(&fixed, LA, C::StrictSerializable);
}

/// The same long fork closed by a client's order: T3 and then T0 on client 0, T0 invoked
/// in the tick T3 completed.
#[test]
fn g_nonadjacent_process_list_append() {
    let bad: &[Txn] = &[
        (0, "ok", 10, 20, r#"["r","x",[]]"#),
        (1, "ok", 0, 100, r#"["append","x",1]"#),
        (2, "ok", 1, 101, r#"["r","x",[1]],["r","y",[]]"#),
        (0, "ok", 2, 10, r#"["append","y",1]"#),
    ];
    violates(bad, LA, &["G-nonadjacent-process"], SESSION);

    let mut fixed = bad.to_vec();
    fixed[3].0 = 3;
    satisfies(&fixed, LA, C::StrictSerializable);
}

// ---------------------------------------------------------------------------------------
// Anomalies without a cycle.

#[test]
fn dirty_update_list_append_append_on_top_of_a_failed_one() {
    // The order [1 2] is only known from a read, which then reads the failed append too.
    let bad: &[Txn] = &[
        (0, "fail", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["append","x",2]"#),
        (2, "ok", 2, 12, r#"["r","x",[1,2]]"#),
    ];
    let out = violates(bad, LA, &["G1a", "dirty-update"], READ_COMMITTED_UP);
    let a = find(&out, "dirty-update");
    assert_eq!(a.txns, [0, 1]);
    assert_eq!(
        a.explanation,
        "T1 appended 2 to key x after the append of 1 by T0, which failed"
    );

    let mut fixed = bad.to_vec();
    fixed[0].1 = "ok";
    satisfies(&fixed, LA, C::StrictSerializable);
}

#[test]
fn garbage_read_list_append() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",[2]]"#),
    ];
    let out = violates(bad, LA, &["garbage-read"], EVERY);
    assert_eq!(
        find(&out, "garbage-read").explanation,
        "T1 read 2 in key x, which no transaction appended"
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",[1]]"#)];
    satisfies(fixed, LA, C::StrictSerializable);
}

#[test]
fn garbage_read_rw_register() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",2]"#),
    ];
    let out = violates(bad, RW, &["garbage-read"], EVERY);
    assert_eq!(find(&out, "garbage-read").txns, [1]);

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",1]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

#[test]
fn duplicate_elements_list_append() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",[1,1]]"#),
    ];
    let out = violates(bad, LA, &["duplicate-elements"], EVERY);
    assert_eq!(
        find(&out, "duplicate-elements").explanation,
        "T1 read key x = [1 1] with 1 twice"
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 1, 11, r#"["r","x",[1]]"#)];
    satisfies(fixed, LA, C::StrictSerializable);
}

#[test]
fn incompatible_order_list_append() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["append","x",2]"#),
        (2, "ok", 2, 12, r#"["r","x",[1,2]]"#),
        (3, "ok", 3, 13, r#"["r","x",[2,1]]"#),
    ];
    let out = violates(bad, LA, &["incompatible-order"], EVERY);
    let a = find(&out, "incompatible-order");
    assert_eq!(a.txns, [3, 2]);
    assert_eq!(
        a.explanation,
        "T3 read key x = [2 1], but T2 read [1 2]: neither is a prefix of the other"
    );

    let mut fixed = bad.to_vec();
    fixed[3].4 = r#"["r","x",[1,2]]"#;
    satisfies(&fixed, LA, C::StrictSerializable);
}

#[test]
fn internal_list_append_read_misses_its_own_append() {
    let bad: &[Txn] = &[(0, "ok", 0, 10, r#"["append","x",1],["r","x",[]]"#)];
    let out = violates(bad, LA, &["internal"], EVERY);
    assert_eq!(find(&out, "internal").txns, [0]);
    assert_eq!(
        find(&out, "internal").summary(),
        "internal: internal inconsistency in T0"
    );

    let fixed: &[Txn] = &[(0, "ok", 0, 10, r#"["append","x",1],["r","x",[1]]"#)];
    satisfies(fixed, LA, C::StrictSerializable);
}

#[test]
fn internal_rw_register_read_misses_its_own_write() {
    let bad: &[Txn] = &[(0, "ok", 0, 10, r#"["w","x",1],["r","x",null]"#)];
    let out = violates(bad, RW, &["internal"], EVERY);
    assert_eq!(
        find(&out, "internal").explanation,
        "T0 read key x = nil, but it had written 1 there"
    );

    let fixed: &[Txn] = &[(0, "ok", 0, 10, r#"["w","x",1],["r","x",1]"#)];
    satisfies(fixed, RW, C::StrictSerializable);
}

/// T0's acknowledged append is never read, though T1 read the key after T0 committed. The
/// same read is stale, so the history is also G-single-realtime.
#[test]
fn lost_append_list_append() {
    let bad: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 20, 30, r#"["r","x",[]]"#),
    ];
    let out = violates(bad, LA, &["G-single-realtime", "lost-append"], REAL_TIME);
    let a = find(&out, "lost-append");
    assert_eq!(a.txns, [0, 1]);
    assert_eq!(
        a.explanation,
        "T0 appended 1 to key x and committed at 10, but no read ever saw it, though T1 read the key from 20 on"
    );

    let fixed: &[Txn] = &[bad[0], (1, "ok", 20, 30, r#"["r","x",[1]]"#)];
    satisfies(fixed, LA, C::StrictSerializable);

    // Overlapping, the read may come first: nothing is lost.
    let concurrent: &[Txn] = &[bad[0], (1, "ok", 5, 30, r#"["r","x",[]]"#)];
    satisfies(concurrent, LA, C::StrictSerializable);
}

// ---------------------------------------------------------------------------------------
// Histories a model cannot interpret.

#[test]
fn duplicate_appended_values_are_an_error_naming_both_lines() {
    let txns: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",[1]]"#),
        (2, "ok", 2, 12, r#"["append","x",1]"#),
    ];
    let err = assert_rejected(txns, LA, 3, 2);
    assert!(err.message.contains("T0 (line 1)"), "{err}");
    assert!(err.message.contains("unique"), "{err}");
    assert!(err.to_string().starts_with("line 3 (T2): "), "{err}");

    // The same value on another key is fine.
    let h = read(&[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["append","y",1]"#),
    ]);
    assert!(check(&h, &TxnOptions::new(LA, C::StrictSerializable)).is_ok());
}

#[test]
fn duplicate_written_values_are_an_error_in_rw_register() {
    let txns: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1]"#),
        (1, "ok", 1, 11, r#"["w","x",1]"#),
    ];
    let err = assert_rejected(txns, RW, 2, 1);
    assert!(err.message.contains("T0 (line 1)"), "{err}");
}

#[test]
fn an_append_in_an_rw_register_check_is_an_error_naming_its_line() {
    let txns: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",1],["append","y",2]"#),
    ];
    let err = assert_rejected(txns, RW, 2, 1);
    assert!(err.message.contains("append"), "{err}");
    assert!(err.to_string().starts_with("line 2 (T1): "), "{err}");

    // And the converse: a write in a list-append check.
    let txns: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["w","y",2]"#),
    ];
    assert_rejected(txns, LA, 2, 1);
}

#[test]
fn every_named_kind_is_in_the_catalogue() {
    // The kinds this file shows, by model; anything the checker can name and this file
    // does not show is listed here so that a new kind cannot go unnoticed.
    let shown = [
        "G0",
        "G1a",
        "G1b",
        "G1c",
        "G-single",
        "G-nonadjacent",
        "G2-item",
        "G0-realtime",
        "G1c-realtime",
        "G-single-realtime",
        "G2-item-realtime",
        "G-single-process",
        "G2-item-process",
        "G0-process",
        "G1c-process",
        "G-nonadjacent-process",
        "G-nonadjacent-realtime",
        "dirty-update",
        "garbage-read",
        "duplicate-elements",
        "incompatible-order",
        "internal",
        "lost-append",
    ];
    let not_shown: [&str; 0] = [];
    let mut all: Vec<String> = AnomalyKind::all().iter().map(|k| k.name()).collect();
    all.sort();
    let mut listed: Vec<String> = shown
        .iter()
        .chain(&not_shown)
        .map(|s| s.to_string())
        .collect();
    listed.sort();
    assert_eq!(all, listed);
}

/// A non-repeatable read inside one transaction: T1 reads x twice and sees T0's write the
/// second time only. Adya's PL-2 (read committed: no G0, no G1) allows this fuzzy read; it
/// is the anti-dependency cycle T0 wr→ T1 rw→ T0, which repeatable read and snapshot
/// isolation forbid — both when the reads are split over two transactions and when they
/// are in one.
#[test]
fn a_non_repeatable_read_is_allowed_by_read_committed() {
    let split: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",null]"#),
        (2, "ok", 1, 11, r#"["r","x",1]"#),
    ];
    satisfies(split, RW, C::StrictSerializable);

    let fuzzy: &[Txn] = &[
        (0, "ok", 0, 10, r#"["w","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",null],["r","x",1]"#),
    ];
    let h = read(fuzzy);
    assert_satisfied_for(&h, RW, &[C::ReadUncommitted, C::ReadCommitted]);
    let out = run(&h, RW, C::StrictSerializable);
    for m in SNAPSHOT_UP {
        assert!(out.ruled_out.contains(m), "{m}: {:?}", summaries(&out));
    }

    let fuzzy: &[Txn] = &[
        (0, "ok", 0, 10, r#"["append","x",1]"#),
        (1, "ok", 1, 11, r#"["r","x",[]],["r","x",[1]]"#),
    ];
    let h = read(fuzzy);
    assert_satisfied_for(&h, LA, &[C::ReadUncommitted, C::ReadCommitted]);
}
