//! Every history in tests/data/porcupine/EXPECTED.tsv gets its published verdict, and every
//! counterexample is a real linearizable prefix followed by an operation that is stuck.

use std::path::PathBuf;

use schism::check::formats::{Format, read_file};
use schism::check::{
    Call, CheckOptions, History, ModelKind, Outcome, Value, Verdict, check_history,
};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/porcupine")
        .join(rel)
}

fn expected() -> Vec<(String, Verdict)> {
    let text = std::fs::read_to_string(data("EXPECTED.tsv")).expect("EXPECTED.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let verdict = match cols[2] {
                "linearizable" => Verdict::Linearizable,
                "not-linearizable" => Verdict::NotLinearizable,
                other => panic!("unexpected verdict {other}"),
            };
            (cols[0].to_string(), verdict)
        })
        .collect()
}

/// The counterexample's prefix must be a sequence the model accepts, in an order that
/// respects real time among its own operations, and the blocked operation must be outside it.
fn assert_counterexample_is_sound(name: &str, h: &History, model: ModelKind, partition: bool) {
    let opts = CheckOptions {
        partition,
        ..CheckOptions::new(model)
    };
    let out = check_history(h, &opts).expect("valid history");
    let cx = out
        .counterexample
        .expect("a violation has a counterexample");
    assert!(
        !cx.prefix.contains(&cx.blocked),
        "{name}: blocked op in prefix"
    );
    assert!(
        cx.pending.contains(&cx.blocked),
        "{name}: blocked op not pending"
    );
    assert!(!cx.anomaly.is_empty());
    // Replay the prefix key by key with the pure specification.
    let mut states: std::collections::HashMap<Option<String>, Value> = Default::default();
    for (pos, &id) in cx.prefix.iter().enumerate() {
        let op = &h.ops[id];
        assert_ne!(op.outcome, Outcome::Fail, "{name}: failed op in prefix");
        let call = match (&op.call, op.outcome) {
            (Call::Cas { from, to, .. }, Outcome::Info) => Call::Cas {
                from: from.clone(),
                to: to.clone(),
                swapped: None,
            },
            (c, _) => c.clone(),
        };
        let state = states.entry(op.key.clone()).or_insert_with(|| model.init());
        *state = model
            .step(state, &call)
            .unwrap_or_else(|| panic!("{name}: prefix step {pos} (op #{id}) is impossible"));
        // No later op in the prefix may have completed before this one was invoked.
        for &later in &cx.prefix[pos + 1..] {
            if let Some(c) = h.ops[later].complete
                && h.ops[later].outcome != Outcome::Info
            {
                assert!(
                    c >= op.invoke,
                    "{name}: prefix puts #{id} before #{later}, which completed first"
                );
            }
        }
    }
}

#[test]
fn every_porcupine_history_gets_its_published_verdict() {
    let cases = expected();
    assert_eq!(cases.len(), 108, "EXPECTED.tsv lists 108 files");
    let mut wrong = Vec::new();
    for (file, want) in &cases {
        let h = read_file(&data(file), Format::Auto).unwrap_or_else(|e| panic!("{file}: {e}"));
        let model = h.model.expect("formats name their model");
        let out = check_history(&h, &CheckOptions::new(model)).expect("valid history");
        if out.verdict != *want {
            wrong.push(format!("{file}: got {}, want {}", out.verdict, want));
        }
        if *want == Verdict::NotLinearizable {
            assert_counterexample_is_sound(file, &h, model, true);
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

#[test]
fn jepsen_logs_are_a_single_cas_register_and_kv_logs_are_kv() {
    let h = read_file(&data("jepsen/etcd_000.log"), Format::Auto).expect("readable");
    assert_eq!(h.model, Some(ModelKind::CasRegister));
    let h = read_file(&data("kv/c01-ok.txt"), Format::Auto).expect("readable");
    assert_eq!(h.model, Some(ModelKind::Kv));
}

#[test]
fn kv_histories_get_the_same_verdict_without_partitioning() {
    for (file, want) in [
        ("kv/c01-ok.txt", Verdict::Linearizable),
        ("kv/c01-bad.txt", Verdict::NotLinearizable),
        ("kv/c10-ok.txt", Verdict::Linearizable),
        ("kv/c10-bad.txt", Verdict::NotLinearizable),
    ] {
        let h = read_file(&data(file), Format::Kv).expect("readable");
        let opts = CheckOptions {
            partition: false,
            ..CheckOptions::new(ModelKind::Kv)
        };
        let out = check_history(&h, &opts).expect("valid history");
        assert_eq!(out.verdict, want, "{file} unpartitioned");
        assert_eq!(out.partitions, 1);
        if want == Verdict::NotLinearizable {
            assert_counterexample_is_sound(file, &h, ModelKind::Kv, false);
        }
    }
}

#[test]
fn a_zero_time_budget_gives_unknown_never_a_guess() {
    let h = read_file(&data("jepsen/etcd_002.log"), Format::Auto).expect("readable");
    let opts = CheckOptions {
        timeout: Some(std::time::Duration::ZERO),
        ..CheckOptions::new(ModelKind::CasRegister)
    };
    let out = check_history(&h, &opts).expect("valid history");
    assert_eq!(out.verdict, Verdict::Unknown);
    assert!(out.unknown_reason.is_some());
    assert!(out.counterexample.is_none());
}

#[test]
fn a_tiny_memory_budget_gives_unknown() {
    let h = read_file(&data("jepsen/etcd_002.log"), Format::Auto).expect("readable");
    let opts = CheckOptions {
        max_memory: Some(1),
        ..CheckOptions::new(ModelKind::CasRegister)
    };
    let out = check_history(&h, &opts).expect("valid history");
    assert_eq!(out.verdict, Verdict::Unknown);
}
