//! The operator against the API server double, with runner Jobs run as the real (release)
//! `schism runner` binary: prints figures; `cargo bench --bench controller` (root, with
//! Debian's etcd for the last part).
//!
//! 1. Time from creating a Chaos to its first injected fault, the runner's start included.
//! 2. Time from deleting a Chaos to its runner's exit, faults healed; and how soon a running
//!    search stops once cancelled.
//! 3. The controller's memory, measured alone (`schism controller` in a process of its own,
//!    the double in this one) with 500 Chaos objects, 50 of them running.
//! 4. The runner's peak memory during the shipped `examples/etcd-partition.yaml`, against
//!    three real etcd members on loopback addresses.

#[path = "../tests/support/apiserver/mod.rs"]
mod apiserver;
#[path = "../tests/support/chart.rs"]
mod chart;
#[path = "../tests/common/history_gen.rs"]
mod history_gen;
#[path = "../tests/support/operator.rs"]
mod operator;

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use operator::{Cluster, ClusterOptions, JOBS, NAMESPACE, chaos, wait_for};
use schism::api::Chaos;
use schism::operator::targets::BlastRadius;
use serde_json::json;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "  {name:<58} p50 {:8.1} ms   p90 {:8.1} ms   max {:8.1} ms   (n = {})",
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        samples[samples.len() - 1],
        samples.len()
    );
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn chaoses(cluster: &Cluster) -> Api<Chaos> {
    Api::namespaced(cluster.server.client(), NAMESPACE)
}

async fn time_to_first_fault() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("db", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    let mut samples = Vec::new();
    for i in 0..20 {
        let name = format!("first-{i}");
        let created = Instant::now();
        chaoses(&cluster)
            .create(
                &PostParams::default(),
                &chaos(&name, "target: {statefulSet: db}\nduration: 1s\nfaults:\n- pause: {}\n  duration: 500ms\n"),
            )
            .await
            .unwrap();
        wait_for("the first applied lease", Duration::from_secs(30), || {
            cluster
                .applied
                .lock()
                .unwrap()
                .iter()
                .any(|a| a.name.starts_with(&name))
        })
        .await;
        let applied = cluster
            .applied
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.name.starts_with(&name))
            .map(|a| a.at)
            .unwrap();
        samples.push((applied - created).as_secs_f64() * 1000.0);
        wait_for("the verdict", Duration::from_secs(30), || {
            cluster.status(&name)["phase"] == "Completed"
        })
        .await;
    }
    summary(
        "Chaos created -> first fault applied (runner start incl.)",
        samples,
    );
    controller.abort();
}

/// A Chaos deleted during its window: the runner heals every lease (its agent confirms) and
/// exits. Whatever histories this harness can make, the release checker settles them in well
/// under a second, so a deletion during Checking is measured in two parts: this stop path, and
/// the search's own cancellation latency on a generated history it needs many seconds for
/// (`search_cancellation`); `tests/runner.rs` shows the two together in the debug build.
async fn deletion_during_the_window() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("db", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    let mut samples = Vec::new();
    for i in 0..5 {
        let name = format!("stop-{i}");
        chaoses(&cluster)
            .create(
                &PostParams::default(),
                &chaos(&name, "target: {statefulSet: db}\nduration: 10m\nfaults:\n- loss: {percent: 20, targets: {mode: all}}\n  duration: 9m\n"),
            )
            .await
            .unwrap();
        wait_for("three applied leases", Duration::from_secs(30), || {
            cluster
                .applied
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.name.starts_with(&name))
                .count()
                == 3
        })
        .await;
        let deleted = Instant::now();
        chaoses(&cluster)
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        wait_for("the runner's exit", Duration::from_secs(60), || {
            cluster
                .runner_records()
                .get(i)
                .is_some_and(|r| r.exit.is_some())
        })
        .await;
        let record = &cluster.runner_records()[i];
        assert_eq!(record.exit, Some(143), "{}", cluster.stderr_of(record));
        samples.push((record.ended.unwrap() - deleted).as_secs_f64() * 1000.0);
        wait_for("the chaos to go", Duration::from_secs(60), || {
            cluster
                .server
                .get(operator::CHAOSES, Some(NAMESPACE), &name)
                .is_none()
        })
        .await;
    }
    summary(
        "Chaos deleted in its window -> faults healed, runner exited",
        samples,
    );
    controller.abort();
}

/// How soon a running search stops once cancelled (what a runner's SIGTERM sets), on a
/// generated single-key history with a quarter of unknown outcomes that needs many seconds.
fn search_cancellation() {
    use schism::check::{CheckOptions, ModelKind, check_history};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let history = history_gen::generate(
        &history_gen::Gen {
            model: ModelKind::CasRegister,
            keys: 1,
            processes: 16,
            ops: 10_000,
            info: 25,
            fail: 2,
            spread: 120,
        },
        &mut history_gen::Rng(2026),
    );
    let mut samples = Vec::new();
    for _ in 0..5 {
        let cancel = Arc::new(AtomicBool::new(false));
        let mut options = CheckOptions::new(ModelKind::CasRegister);
        options.cancel = Some(Arc::clone(&cancel));
        let checked = history.clone();
        let search = std::thread::spawn(move || check_history(&checked, &options).unwrap());
        std::thread::sleep(Duration::from_secs(1));
        let cancelled = Instant::now();
        cancel.store(true, Ordering::Relaxed);
        let outcome = search.join().unwrap();
        samples.push(cancelled.elapsed().as_secs_f64() * 1000.0);
        assert!(
            outcome
                .unknown_reason
                .as_deref()
                .is_some_and(|r| r.contains("stopped")),
            "the search ended by itself within a second: {:?}",
            outcome.verdict
        );
    }
    summary(
        "search cancelled -> check returned (10k ops, 25% unknown)",
        samples,
    );
}

async fn controller_memory() {
    let cluster = Cluster::start(ClusterOptions {
        run_runners: false,
        ..Default::default()
    })
    .await;
    cluster.add_stateful_set("db", 3, 10);
    // 450 concluded experiments, as a cluster that has run many of them holds.
    let concluded: usize = std::env::var("SCHISM_BENCH_CONCLUDED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(450);
    for i in 0..concluded {
        let object = serde_json::to_value(chaos(&format!("done-{i}"), "target: {statefulSet: db}\nduration: 30s\nfaults:\n- partition: {shape: isolate-one}\n  duration: 10s\n")).unwrap();
        let mut object = object;
        object["status"] = json!({"phase": "Completed", "verdict": "Fail", "observedGeneration": 1, "seed": i,
            "reasons": [], "availability": {"probes": 300, "successes": 290, "ratio": 0.97, "longestOutageMs": 1200},
            "consistency": {"model": "cas-register", "operations": 3000, "indeterminate": 12, "result": "NotLinearizable", "checkMillis": 5,
                "anomaly": "stale read: #1200 (process 7) read 31 after #1180 (process 3) wrote 33",
                "counterexample": "  #1200 p7 read k3 => 31 [1.200s, 1.210s]\n".repeat(40)},
            "faults": (0..4).map(|f| json!({"name": format!("split#{f}"), "kind": "partition", "targets": ["db-0", "db-1"],
                "detail": "nftables; cuts db-0-db-1 db-0-db-2", "injectedAt": "2026-12-01T10:00:00Z", "healedAt": "2026-12-01T10:00:15Z"})).collect::<Vec<_>>(),
            "conditions": [
                {"type": "FaultsActive", "status": "False", "reason": "Healed", "message": "every fault was healed", "lastTransitionTime": "2026-12-01T10:01:00Z"},
                {"type": "Completed", "status": "True", "reason": "VerdictReached", "message": "verdict Fail", "lastTransitionTime": "2026-12-01T10:01:00Z"},
                {"type": "Passed", "status": "False", "reason": "Fail", "message": "history is not linearizable", "lastTransitionTime": "2026-12-01T10:01:00Z"}]});
        cluster.server.apply_raw(operator::CHAOSES, object);
    }
    let mut child = cluster.controller_process("schism:bench");
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, _) = memory_kib(pid);
    // 50 that run: the controller makes their Jobs; their runner pods show Running.
    for i in 0..50 {
        chaoses(&cluster)
            .create(&PostParams::default(), &chaos(&format!("run-{i}"), "target: {statefulSet: db}\nduration: 1h\nfaults:\n- partition: {shape: isolate-one}\n  duration: 50m\n"))
            .await
            .unwrap();
    }
    wait_for("50 runner Jobs", Duration::from_secs(60), || {
        cluster.server.objects(JOBS).len() == 50
    })
    .await;
    for i in 0..50 {
        cluster.server.apply_raw(operator::CHAOSES, json!({"metadata": {"name": format!("run-{i}"), "namespace": NAMESPACE},
            "status": {"phase": "Running", "observedGeneration": 1, "seed": i, "runner": {"pod": format!("run-{i}-pod")}}}));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, peak) = memory_kib(pid);
    if std::env::var("SCHISM_BENCH_SMAPS").is_ok() {
        println!(
            "{}",
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default()
        );
    }
    println!(
        "  controller alone, 500 Chaos objects (50 running):      RSS {:6.1} MiB   peak {:6.1} MiB   (goal < 30 MiB; {:.1} MiB with the 450 concluded ones only)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        idle as f64 / 1024.0
    );
    let _ = child.kill().await;
}

fn etcd_members(dir: &std::path::Path) -> Vec<std::process::Child> {
    let ips = ["127.0.0.50", "127.0.0.51", "127.0.0.52"];
    let cluster: Vec<String> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| format!("etcd-{i}=http://{ip}:2380"))
        .collect();
    ips.iter()
        .enumerate()
        .map(|(i, ip)| {
            std::process::Command::new("etcd")
                .args([
                    "--name",
                    &format!("etcd-{i}"),
                    "--data-dir",
                    &dir.join(format!("etcd-{i}")).to_string_lossy(),
                    "--listen-peer-urls",
                    &format!("http://{ip}:2380"),
                    "--initial-advertise-peer-urls",
                    &format!("http://{ip}:2380"),
                    "--listen-client-urls",
                    &format!("http://{ip}:2379"),
                    "--advertise-client-urls",
                    &format!("http://{ip}:2379"),
                    "--initial-cluster",
                    &cluster.join(","),
                    "--initial-cluster-state",
                    "new",
                    "--heartbeat-interval",
                    "100",
                    "--election-timeout",
                    "1000",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd is installed (scripts/install-deps.sh)")
        })
        .collect()
}

async fn runner_memory_during_the_etcd_example() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 50);
    let mut members = etcd_members(&cluster.dir);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/etcd-partition.yaml"
    ))
    .unwrap();
    let example: Chaos = serde_yaml::from_str(&manifest).unwrap();
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos(
                "etcd-partition",
                &serde_yaml::to_string(&example.spec).unwrap(),
            ),
        )
        .await
        .unwrap();
    wait_for("the runner", Duration::from_secs(30), || {
        !cluster.runner_records().is_empty()
    })
    .await;
    let pid = cluster.runner_records()[0].pid;
    let mut peak = 0;
    while cluster.runner_records()[0].exit.is_none() {
        peak = peak.max(memory_kib(pid).1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = cluster.status("etcd-partition");
    println!(
        "  runner peak RSS, examples/etcd-partition.yaml (60 s):  {:6.1} MiB   ({} ops, verdict {}, check {} ms)",
        peak as f64 / 1024.0,
        status["consistency"]["operations"],
        status["verdict"],
        status["consistency"]["checkMillis"]
    );
    for member in &mut members {
        let _ = member.kill();
        let _ = member.wait();
    }
    controller.abort();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("schism operator benchmark (API server double; runner = release binary)");
    // SCHISM_BENCH=memory (say) runs only the parts whose names contain it.
    let only = std::env::var("SCHISM_BENCH").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || part.contains(only.as_str());
    runtime.block_on(async {
        if wanted("first-fault") {
            time_to_first_fault().await;
        }
        if wanted("deletion") {
            deletion_during_the_window().await;
        }
        if wanted("cancellation") {
            search_cancellation();
        }
        if wanted("controller-memory") {
            controller_memory().await;
        }
        if wanted("runner-memory") {
            runner_memory_during_the_etcd_example().await;
        }
    });
}
