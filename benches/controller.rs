//! The operator against the API server double, with runner Jobs run as the real (release)
//! `schism runner` binary: prints figures; `cargo bench --bench controller` (root, with
//! Debian's etcd for the last part).
//!
//! 1. Time from creating a Chaos to its first injected fault, the runner's start included.
//! 2. Time from deleting a Chaos while its history is checked to its runner's exit.
//! 3. The controller's memory, measured alone (`schism controller` in a process of its own,
//!    the double in this one) with 500 Chaos objects, 50 of them running.
//! 4. The runner's peak memory during the shipped `examples/etcd-partition.yaml`, against
//!    three real etcd members on loopback addresses.

#[path = "../tests/support/apiserver/mod.rs"]
mod apiserver;
#[path = "../tests/support/kv_service.rs"]
mod kv_service;
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

async fn deletion_during_checking() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("kv", 3, 30);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(kv_service::serve(
        listener,
        kv_service::Store::default(),
        kv_service::Lateness {
            percent: 35,
            by: Duration::from_millis(300),
            lose_late_writes: true,
            stale_read_every: None,
        },
    ));
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    let spec = format!(
        r#"target: {{statefulSet: kv}}
duration: 8s
workload:
  client: http
  model: cas-register
  port: {port}
  keys: 1
  concurrency: 64
  rate: 2000
  timeout: 100ms
  http:
    read: {{method: GET, path: "/kv/{{key}}", valuePointer: /value}}
    write: {{method: PUT, path: "/kv/{{key}}", body: '{{"value": "{{value}}"}}'}}
    cas: {{method: POST, path: "/kv/{{key}}/cas", body: '{{"expect": "{{expected}}", "value": "{{value}}"}}', successStatus: [200], mismatchStatus: [409]}}
assertions: {{consistency: linearizable}}
"#
    );
    let mut samples = Vec::new();
    for i in 0..3 {
        let name = format!("check-{i}");
        chaoses(&cluster)
            .create(&PostParams::default(), &chaos(&name, &spec))
            .await
            .unwrap();
        wait_for("phase Checking", Duration::from_secs(60), || {
            cluster.status(&name)["phase"] == "Checking"
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
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
    summary("Chaos deleted while Checking -> runner exited", samples);
    controller.abort();
}

async fn controller_memory() {
    let cluster = Cluster::start(ClusterOptions {
        run_runners: false,
        ..Default::default()
    })
    .await;
    cluster.add_stateful_set("db", 3, 10);
    // 450 concluded experiments, as a cluster that has run many of them holds.
    for i in 0..450 {
        let object = serde_json::to_value(chaos(&format!("done-{i}"), "target: {statefulSet: db}\nduration: 30s\nfaults:\n- partition: {shape: isolate-one}\n  duration: 10s\n")).unwrap();
        let mut object = object;
        object["status"] = json!({"phase": "Completed", "verdict": "Pass", "observedGeneration": 1, "seed": i,
            "reasons": [], "availability": {"probes": 300, "successes": 290, "ratio": 0.97, "longestOutageMs": 1200},
            "consistency": {"model": "cas-register", "operations": 3000, "indeterminate": 12, "result": "Linearizable", "checkMillis": 5}});
        cluster.server.apply_raw(operator::CHAOSES, object);
    }
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_schism"))
        .args([
            "controller",
            "--no-leader-election",
            "--watch-namespace",
            NAMESPACE,
            "--metrics-address",
            "127.0.0.1:0",
            "--runner-image",
            "schism:bench",
        ])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the schism binary runs");
    let pid = child.id().unwrap();
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
    println!(
        "  controller alone, 500 Chaos objects (50 running):      RSS {:6.1} MiB   peak {:6.1} MiB   (goal < 30 MiB)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
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
    runtime.block_on(async {
        time_to_first_fault().await;
        deletion_during_checking().await;
        controller_memory().await;
        runner_memory_during_the_etcd_example().await;
    });
}
