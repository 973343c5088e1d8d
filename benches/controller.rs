//! The controller against the in-process API server double: latency from creating a Chaos to
//! the first FaultLease, and the controller's memory with 500 Chaos objects. Prints figures;
//! `cargo bench --bench controller`.

#[path = "../tests/support/apiserver/mod.rs"]
mod apiserver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::{ApiServer, ResourceType};
use kube::Api;
use kube::api::PostParams;
use schism::api::Chaos;
use schism::operator::controller::{self, Context, targets::BlastRadius};
use schism::operator::metrics::Metrics;
use serde_json::json;

const LEASES: &str = "faultleases.schism.dev";

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn chaos(name: &str, spec: &str) -> Chaos {
    let mut chaos = Chaos::new(name, serde_yaml::from_str(spec).unwrap());
    chaos.metadata.namespace = Some("demo".into());
    chaos
}

async fn cluster() -> Arc<ApiServer> {
    let server = ApiServer::builder()
        .resource(
            ResourceType::namespaced("schism.dev", "v1alpha1", "chaoses", "Chaos").with_status(),
        )
        .resource(
            ResourceType::namespaced("schism.dev", "v1alpha1", "faultleases", "FaultLease")
                .with_status(),
        )
        .history_capacity(100_000)
        .start()
        .await;
    server.apply_raw("statefulsets.apps", json!({"metadata": {"name": "db", "namespace": "demo"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}}));
    for i in 0..3 {
        server.apply_raw("pods", json!({
            "metadata": {"name": format!("db-{i}"), "namespace": "demo", "labels": {"app": "db"}},
            "spec": {"nodeName": "node-a"},
            "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
    }
    Arc::new(server)
}

fn agent(server: Arc<ApiServer>) {
    tokio::spawn(async move {
        loop {
            for lease in server.objects(LEASES) {
                let name = lease["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if lease["metadata"].get("deletionTimestamp").is_some() {
                    server.apply_raw(LEASES, json!({"metadata": {"name": name, "namespace": "demo", "finalizers": null}}));
                } else if lease.get("status").is_none_or(|s| s.is_null()) {
                    server.apply_raw(LEASES, json!({"metadata": {"name": name, "namespace": "demo"}, "status": {"phase": "Applied", "mechanism": "nftables"}}));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Latency: Chaos created → its first FaultLease exists.
        let server = cluster().await;
        agent(Arc::clone(&server));
        let ctx = Arc::new(Context::new(server.client(), BlastRadius::default(), Duration::from_secs(10), Arc::new(Metrics::default())));
        let controller_task = tokio::spawn(controller::run(Arc::clone(&ctx), Some("demo")));
        let api: Api<Chaos> = Api::namespaced(server.client(), "demo");
        let mut latencies = Vec::new();
        for i in 0..30 {
            let spec = "target: {statefulSet: db}\nduration: 1s\nfaults:\n- pause: {targets: {mode: all}}\n  duration: 500ms\n";
            let before = server.objects(LEASES).len();
            let started = Instant::now();
            api.create(&PostParams::default(), &chaos(&format!("lat-{i}"), spec)).await.unwrap();
            while server.objects(LEASES).len() <= before && started.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            // Let the run finish so the next measurement starts from a quiet controller.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        latencies.sort_by(f64::total_cmp);
        println!("controller vs in-process API server (2 worker threads)");
        println!(
            "  Chaos created -> first FaultLease: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} runs)",
            latencies[latencies.len() / 2],
            latencies[latencies.len() * 9 / 10],
            latencies[latencies.len() - 1],
            latencies.len()
        );
        controller_task.abort();
        drop(ctx);

        // Memory: 500 Chaos objects, each a short experiment, reconciled to their verdicts.
        let server = cluster().await;
        let api: Api<Chaos> = Api::namespaced(server.client(), "demo");
        for i in 0..500 {
            api.create(&PostParams::default(), &chaos(&format!("mem-{i}"), "target: {statefulSet: db}\nduration: 2s\n")).await.unwrap();
        }
        let baseline = rss_kib();
        let started = Instant::now();
        let ctx = Arc::new(Context::new(server.client(), BlastRadius::default(), Duration::from_secs(10), Arc::new(Metrics::default())));
        let controller_task = tokio::spawn(controller::run(Arc::clone(&ctx), Some("demo")));
        let mut peak = baseline;
        loop {
            peak = peak.max(rss_kib());
            let done = server.objects("chaoses.schism.dev").iter().filter(|c| c["status"]["phase"] == "Completed").count();
            if done == 500 || started.elapsed() > Duration::from_secs(120) {
                println!("  500 Chaos objects: {done} reached a verdict in {:.1} s", started.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let settled = rss_kib();
        println!(
            "  controller memory with 500 Chaos objects: peak +{:.1} MiB, settled +{:.1} MiB over the {:.1} MiB baseline (API double included in the baseline)",
            (peak - baseline) as f64 / 1024.0,
            settled.saturating_sub(baseline) as f64 / 1024.0,
            baseline as f64 / 1024.0
        );
        controller_task.abort();
    });
}
