//! `schism run` end to end, as root, against real etcd and Redis clusters in network
//! namespaces: the passing example passes, and the examples that must fail fail for the right
//! reason — the anomaly the checker names, not just any failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Run {
    code: i32,
    result: Value,
    stdout: String,
    dir: PathBuf,
}

fn run_example(example: &str) -> Run {
    run_example_with(example, &[])
}

/// Runs `example` with more arguments to `schism run` (`--seed N`, say).
fn run_example_with(example: &str, extra: &[&str]) -> Run {
    let dir = std::env::temp_dir().join(format!(
        "schism-run-test-{}-{}{}",
        std::process::id(),
        example.replace('/', "-"),
        extra.join("")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(example);
    let output = Command::new(env!("CARGO_BIN_EXE_schism"))
        .args(["run", "--quiet", "--out"])
        .arg(&dir)
        .args(extra)
        .arg(&manifest)
        .output()
        .expect("schism runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let result = std::fs::read_to_string(dir.join("result.json")).unwrap_or_else(|e| {
        panic!("{example}: no result.json ({e});\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    Run {
        code: output.status.code().unwrap_or(-1),
        result: serde_json::from_str(&result).expect("result.json is JSON"),
        stdout,
        dir,
    }
}

/// The run's verdict and exit code, with its reasons and summary when they are not.
fn assert_verdict(run: &Run, verdict: &str, code: i32) {
    assert_eq!(
        run.result["verdict"], verdict,
        "reasons: {}\n{}",
        run.result["reasons"], run.stdout
    );
    assert_eq!(run.code, code, "{}", run.stdout);
}

fn assert_outputs_written(run: &Run) {
    for file in ["result.json", "history.jsonl", "junit.xml", "report.html"] {
        let path = run.dir.join(file);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0, "{} is missing or empty", path.display());
    }
    // The history written is the one that was checked: schism check agrees with the run.
    let consistency = &run.result["consistency"];
    let mut check = Command::new(env!("CARGO_BIN_EXE_schism"));
    check.arg("check");
    if let Some(model) = consistency["checked"]
        .as_str()
        .filter(|m| *m != "linearizable")
    {
        check.args(["--consistency", model]);
    }
    let check = check.arg(run.dir.join("history.jsonl")).output().unwrap();
    let expected = if ["Linearizable", "Satisfied"]
        .contains(&consistency["result"].as_str().unwrap_or_default())
    {
        0
    } else {
        1
    };
    assert_eq!(
        check.status.code(),
        Some(expected),
        "schism check on the recorded history: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// A finished run leaves nothing behind: no namespace of a local cluster (these tests run one
/// at a time, and every `schism run` first removes what crashed runs left), and nothing for
/// `schism cleanup` to find.
fn no_namespaces_left() {
    let listing = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.starts_with("sx-"))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let cleanup = Command::new(env!("CARGO_BIN_EXE_schism"))
        .arg("cleanup")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&cleanup.stdout);
    assert!(
        cleanup.status.success(),
        "schism cleanup failed: {}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    assert_eq!(
        report.trim(),
        "nothing to clean up",
        "a run left something behind"
    );
}

#[test]
fn three_node_etcd_survives_partition_latency_and_kill_and_passes() {
    support::require(
        "three_node_etcd_survives_partition_latency_and_kill_and_passes",
        &["etcd", "nft", "iptables", "ip"],
    );
    let run = run_example("examples/local/etcd-3node.yaml");
    assert_verdict(&run, "Pass", 0);
    assert_eq!(run.result["consistency"]["result"], "Linearizable");
    let faults = run.result["faults"].as_array().unwrap();
    assert_eq!(
        faults.len(),
        3,
        "partition, latency and kill were all injected"
    );
    assert!(
        faults.iter().all(|f| f.get("error").is_none()),
        "a fault failed: {faults:?}"
    );
    assert!(run.result["availability"]["probes"].as_i64().unwrap() > 100);
    assert_outputs_written(&run);
    no_namespaces_left();
}

#[test]
fn serializable_etcd_reads_under_partition_fail_with_a_stale_read() {
    support::require(
        "serializable_etcd_reads_under_partition_fail_with_a_stale_read",
        &["etcd", "nft", "ip"],
    );
    let run = run_example("examples/local/etcd-serializable-reads.yaml");
    assert_verdict(&run, "Fail", 1);
    assert_eq!(run.result["consistency"]["result"], "NotLinearizable");
    let anomaly = run.result["consistency"]["anomaly"]
        .as_str()
        .unwrap_or_default();
    assert!(
        anomaly.starts_with("stale read"),
        "expected a stale read, got {anomaly:?}"
    );
    let junit = std::fs::read_to_string(run.dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<failure") && junit.contains("stale read"),
        "{junit}"
    );
    assert_outputs_written(&run);
}

#[test]
fn redis_replicas_serve_stale_reads_and_fail() {
    support::require(
        "redis_replicas_serve_stale_reads_and_fail",
        &["redis-server", "nft", "ip"],
    );
    let run = run_example("examples/local/redis-replicas.yaml");
    assert_verdict(&run, "Fail", 1);
    let anomaly = run.result["consistency"]["anomaly"]
        .as_str()
        .unwrap_or_default();
    assert!(
        anomaly.starts_with("stale read"),
        "expected a stale read, got {anomaly:?}"
    );
    assert_outputs_written(&run);
}

#[test]
fn redis_sentinel_failover_breaks_linearizability() {
    support::require(
        "redis_sentinel_failover_breaks_linearizability",
        &["redis-server", "nft", "ip"],
    );
    let run = run_example("examples/local/redis-sentinel-failover.yaml");
    assert_verdict(&run, "Fail", 1);
    // The verdict must come from the consistency check. Which violation the checker names first
    // depends on timing: a lost write when it can prove one from real-time order alone, else
    // the operation no linearization can place (often right after the rejoin).
    assert_eq!(
        run.result["consistency"]["result"], "NotLinearizable",
        "{}",
        run.result
    );
    let anomaly = run.result["consistency"]["anomaly"]
        .as_str()
        .unwrap_or_default();
    assert!(
        ["lost write", "stale read", "no linearization"]
            .iter()
            .any(|kind| anomaly.starts_with(kind)),
        "unexpected anomaly {anomaly:?}"
    );
    // The experiment really went through a failover: the Sentinels switched the primary.
    let logs: String = ["n1", "n2", "n3"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(run.dir.join(format!("nodes/{n}.log"))).unwrap_or_default()
        })
        .collect();
    assert!(
        logs.contains("+switch-master"),
        "no Sentinel failover happened; node logs:\n{logs}"
    );
    assert_outputs_written(&run);
}

/// The anomalies status lists, by type.
fn anomaly_types(run: &Run) -> Vec<String> {
    run.result["consistency"]["anomalies"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| a["type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn postgres_at_repeatable_read_fails_serializability_with_write_skew_in_every_seed() {
    support::require(
        "postgres_at_repeatable_read_fails_serializability_with_write_skew_in_every_seed",
        &["nft", "ip", "runuser"],
    );
    support::postgres_bin();
    // Write skew needs two transactions to interleave just so: the workload (two hot keys,
    // ten clients, 600 transactions/s) makes that near certain, in every seed tried.
    for seed in 1..=10 {
        let seed_arg = seed.to_string();
        let run = run_example_with(
            "examples/local/postgres-write-skew.yaml",
            &["--seed", &seed_arg],
        );
        assert_eq!(run.result["verdict"], "Fail", "seed {seed}: {}", run.stdout);
        assert_eq!(run.code, 1);
        let c = &run.result["consistency"];
        assert_eq!(c["result"], "Violated", "seed {seed}: {c}");
        let types = anomaly_types(&run);
        assert!(
            types.contains(&"G2-item".to_owned()),
            "seed {seed}: {types:?}"
        );
        // Snapshot isolation allows write skew: nothing weaker than repeatable read falls.
        let ruled_out = c["ruledOut"].to_string();
        assert!(ruled_out.contains("\"serializable\""), "{ruled_out}");
        assert!(
            !ruled_out.contains("snapshot-isolation"),
            "seed {seed}: {ruled_out}"
        );
        let reason = run.result["reasons"][0].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("history is not serializable (list-append): G2-item"),
            "{reason}"
        );
        let skew = &c["anomalies"][0];
        assert_eq!(skew["type"], "G2-item");
        assert!(
            skew["cycle"].as_array().is_some_and(|e| e.len() >= 2),
            "{skew}"
        );
        assert!(
            skew["cycle"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| !e["reason"].as_str().unwrap_or_default().is_empty()),
            "every edge has its reason: {skew}"
        );
        if seed == 1 {
            let junit = std::fs::read_to_string(run.dir.join("junit.xml")).unwrap();
            assert!(
                junit.contains("<failure") && junit.contains("G2-item"),
                "{junit}"
            );
            let report = std::fs::read_to_string(run.dir.join("report.html")).unwrap();
            assert!(
                report.contains("G2-item") && report.contains("<svg"),
                "the report names and draws the anomaly"
            );
            assert_outputs_written(&run);
        }
        let _ = std::fs::remove_dir_all(&run.dir);
    }
    no_namespaces_left();
}

#[test]
fn postgres_at_serializable_passes_strict_serializability_with_a_password() {
    support::require(
        "postgres_at_serializable_passes_strict_serializability_with_a_password",
        &["nft", "ip", "runuser"],
    );
    support::postgres_bin();
    let run = run_example("examples/local/postgres-serializable.yaml");
    assert_verdict(&run, "Pass", 0);
    let c = &run.result["consistency"];
    assert_eq!(c["result"], "Satisfied", "{c}");
    assert_eq!(c["checked"], "strict-serializable");
    // The server took transactions, and refused some as serialization failures.
    let history = std::fs::read_to_string(run.dir.join("history.jsonl")).unwrap();
    let ok = history.matches("\"type\":\"ok\"").count();
    let failed = history.matches("\"type\":\"fail\"").count();
    assert!(ok > 500, "{ok} transactions committed");
    assert!(
        failed > 0,
        "no serialization failure at all in {ok} transactions"
    );
    // The password is in the manifest, and nowhere in what the run wrote.
    for file in ["result.json", "history.jsonl", "junit.xml", "report.html"] {
        let text = std::fs::read_to_string(run.dir.join(file)).unwrap();
        assert!(
            !text.contains("schism-example"),
            "{file} holds the password"
        );
    }
    assert_outputs_written(&run);
    no_namespaces_left();
}

#[test]
fn etcd_list_append_through_partition_and_kill_is_strict_serializable() {
    support::require(
        "etcd_list_append_through_partition_and_kill_is_strict_serializable",
        &["etcd", "nft", "iptables", "ip"],
    );
    let run = run_example("examples/local/etcd-list-append.yaml");
    assert_verdict(&run, "Pass", 0);
    let c = &run.result["consistency"];
    assert_eq!(c["result"], "Satisfied", "{c}");
    assert_eq!(c["model"], "list-append");
    let faults = run.result["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2);
    assert!(
        faults.iter().all(|f| f.get("error").is_none()),
        "{faults:?}"
    );
    assert!(c["operations"].as_i64().unwrap() > 1000, "{c}");
    assert_outputs_written(&run);
    no_namespaces_left();
}

#[test]
fn replica_reads_of_postgres_through_a_partition_fail_strict_serializability_in_real_time() {
    support::require(
        "replica_reads_of_postgres_through_a_partition_fail_strict_serializability_in_real_time",
        &["nft", "ip", "runuser"],
    );
    support::postgres_bin();
    let run = run_example("examples/local/postgres-replica-reads.yaml");
    assert_verdict(&run, "Fail", 1);
    let c = &run.result["consistency"];
    assert_eq!(c["result"], "Violated", "{c}");
    let types = anomaly_types(&run);
    assert!(
        types
            .iter()
            .any(|t| t.ends_with("-realtime") || t == "lost-append"),
        "readers of the replica see the past: {types:?}"
    );
    assert!(
        c["ruledOut"].to_string().contains("strict-serializable"),
        "{c}"
    );
    // The fault aimed at the followers found the standby by asking each server whether it
    // is in recovery.
    let slowed = run.result["faults"]
        .as_array()
        .and_then(|faults| faults.iter().find(|f| f["name"] == "slow-standby"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(slowed["targets"], serde_json::json!(["n2"]), "{slowed}");
    assert!(
        slowed["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("hit the followers of n1, the leader at 9.")),
        "{slowed}"
    );
    // The replica was really a replica: it was copied from the primary by its role's init
    // step and answered the readers (workers 0–3) with what the writers appended.
    let replica_log = std::fs::read_to_string(run.dir.join("nodes/n2.log")).unwrap();
    assert!(replica_log.contains("pg_basebackup"), "{replica_log}");
    let history = std::fs::read_to_string(run.dir.join("history.jsonl")).unwrap();
    let replica_saw_writes = history.lines().skip(1).any(|line| {
        let txn: Value = serde_json::from_str(line).unwrap();
        let reader = txn["process"].as_u64().is_some_and(|p| p % 10 < 4);
        let read_something = txn["value"].as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op[0] == "r" && op[2].as_array().is_some_and(|l| !l.is_empty()))
        });
        reader && txn["type"] == "ok" && read_something
    });
    assert!(
        replica_saw_writes,
        "no reader read a write from the replica"
    );
    assert_outputs_written(&run);
    no_namespaces_left();
}
