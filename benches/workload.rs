//! Workload engine throughput against a local 3-node etcd, with history recording on and off,
//! and the CPU the engine uses while it only waits. Prints figures; run as root with
//! `cargo bench --bench workload`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use schism::api::ChaosSpec;
use schism::engine::experiment::{self, RunSettings};
use schism::engine::timeline;
use schism::local::{LocalBackend, LocalCluster, LocalClusterConfig, ReadyCheck};

const ETCD: &str = "etcd --name {name} --data-dir {dataDir} --listen-peer-urls http://{ip}:2380 \
--initial-advertise-peer-urls http://{ip}:2380 --listen-client-urls http://{ip}:2379 \
--advertise-client-urls http://{ip}:2379 --initial-cluster {peers} --initial-cluster-state {clusterState} \
--heartbeat-interval 100 --election-timeout 1000 --pre-vote=true";

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

async fn run(cluster: &Arc<LocalCluster>, spec_yaml: &str, record: bool) -> (f64, f64) {
    let spec: ChaosSpec = serde_yaml::from_str(spec_yaml).expect("bench spec parses");
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let plan = timeline::build(&spec, &names, 1).expect("plan");
    let settings = RunSettings {
        seed: 1,
        check_memory: None,
        check_timeout: Duration::from_secs(60),
        record_history: record,
        progress: false,
        postgres_password: None,
        prometheus_url: None,
        stop: None,
        suspend: None,
    };
    let mut backend = LocalBackend::new(Arc::clone(cluster));
    let cpu = cpu_seconds();
    let wall = Instant::now();
    let outcome = experiment::run(&spec, plan, &mut backend, &settings).await;
    let cpu_share = (cpu_seconds() - cpu) / wall.elapsed().as_secs_f64();
    (outcome.ops_per_second, cpu_share)
}

fn main() {
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/bin/etcd").exists() {
        println!("workload bench: needs root and etcd (scripts/install-deps.sh); nothing measured");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = LocalClusterConfig::new(3, ETCD, ReadyCheck::Http { port: 2379, path: "/health".into() });
        let config = LocalClusterConfig { peer_format: "{name}=http://{ip}:2380".into(), ..config };
        let cluster = Arc::new(LocalCluster::start(config).await.expect("local etcd starts"));
        let busy = "target: {local: {nodes: 3, command: x, ready: {tcp: {port: 1}}}}\nduration: 8s\nworkload: {client: etcd, keys: 64, concurrency: 48, rate: 100000, timeout: 1s}\n";
        let mut with = Vec::new();
        let mut without = Vec::new();
        // Alternate so drift of the machine hits both alike.
        for _ in 0..3 {
            with.push(run(&cluster, busy, true).await.0);
            without.push(run(&cluster, busy, false).await.0);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!("workload vs local 3-node etcd (48 clients, 64 keys, unbounded rate, 8 s runs, 3 each)");
        println!("  recording on : {:>8.0} ops/s  (runs: {:?})", mean(&with), with.iter().map(|v| v.round()).collect::<Vec<_>>());
        println!("  recording off: {:>8.0} ops/s  (runs: {:?})", mean(&without), without.iter().map(|v| v.round()).collect::<Vec<_>>());
        println!("  recording cost: {:.1} %", (1.0 - mean(&with) / mean(&without)) * 100.0);
        let idle = "target: {local: {nodes: 3, command: x, ready: {tcp: {port: 1}}}}\nduration: 10s\n";
        let (_, cpu_share) = run(&cluster, idle, true).await;
        println!("  CPU while waiting idle (10 s window, no workload): {:.2} % of one core", cpu_share * 100.0);
    });
}
