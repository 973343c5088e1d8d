//! Faults aimed by role against real clusters in network namespaces: the node a fault hits
//! is the one that led when it began, as the system itself (etcdctl, redis-cli) tells it.

#[path = "support/local_etcd.rs"]
mod local_etcd;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use schism::api::{ChaosSpec, FaultRecord};
use schism::engine::experiment::{self, RunSettings};
use schism::engine::timeline;
use schism::local::{LocalBackend, LocalCluster, LocalClusterConfig, ReadyCheck};
use support::{require, runtime};

fn settings(seed: u64) -> RunSettings {
    RunSettings {
        seed,
        check_timeout: Duration::from_secs(30),
        check_memory: None,
        record_history: true,
        progress: false,
        postgres_password: None,
        prometheus_url: None,
        stop: None,
        suspend: None,
    }
}

/// Runs `spec` against `cluster` and returns its fault records.
async fn run(spec: &ChaosSpec, cluster: &Arc<LocalCluster>, seed: u64) -> Vec<FaultRecord> {
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let plan = timeline::build(spec, &names, seed).expect("a timeline");
    let mut backend = LocalBackend::new(Arc::clone(cluster));
    let outcome = experiment::run(spec, plan, &mut backend, &settings(seed)).await;
    outcome.status.faults
}

fn record<'a>(records: &'a [FaultRecord], name: &str) -> &'a FaultRecord {
    records
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no fault {name} in {records:#?}"))
}

/// The etcd leader's node name, as `etcdctl endpoint status` reports it from every member.
fn etcd_leader(cluster: &LocalCluster) -> Option<String> {
    let endpoints: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| format!("http://{}:2379", n.ip))
        .collect();
    let output = cluster
        .client_netns()
        .command("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &endpoints.join(","),
            "--command-timeout",
            "2s",
        ])
        .args(["endpoint", "status", "-w", "json"])
        .output()
        .ok()?;
    let statuses: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let mut leaders = statuses.as_array()?.iter().filter_map(|s| {
        let member = s.pointer("/Status/header/member_id")?.as_u64()?;
        let leader = s.pointer("/Status/leader")?.as_u64()?;
        (member == leader).then(|| s["Endpoint"].as_str().map(str::to_owned))?
    });
    let endpoint = leaders.next()?;
    let index = endpoints.iter().position(|e| *e == endpoint)?;
    Some(cluster.nodes()[index].name.clone())
}

fn wait_for<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn etcd_the_isolated_node_is_the_leader_when_the_fault_began_and_the_next_fault_finds_its_successor()
 {
    require(
        "leader targeting on etcd",
        &["ip", "nft", "tc", "iptables", "etcd", "etcdctl"],
    );
    let rt = runtime();
    let cluster = Arc::new(
        rt.block_on(LocalCluster::start(local_etcd::etcd_config()))
            .expect("the cluster starts"),
    );
    let first_leader = wait_for("an etcd leader", Duration::from_secs(15), || {
        etcd_leader(&cluster)
    });
    let spec: ChaosSpec = serde_yaml::from_str(
        r#"
target: {statefulSet: nodes}
duration: 9s
faults:
  - name: cut-leader
    partition: {shape: isolate-leader}
    start: 500ms
    duration: 4s
  - name: slow-leader
    latency: {delay: 50ms, targets: {mode: leader}}
    start: 7s
    duration: 1500ms
workload: {client: etcd, keys: 1, concurrency: 2, rate: 20, timeout: 500ms}
"#,
    )
    .unwrap();
    let records = rt.block_on(run(&spec, &cluster, 3));
    let final_leader = etcd_leader(&cluster).expect("a leader after the run");

    let cut = record(&records, "cut-leader");
    assert!(cut.error.is_none(), "{cut:#?}");
    let detail = cut.detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("isolated {first_leader}, the leader at 0.")),
        "the partition should isolate {first_leader}: {detail}"
    );
    let slow = record(&records, "slow-leader");
    assert!(slow.error.is_none(), "{slow:#?}");
    assert_ne!(
        final_leader, first_leader,
        "an isolated etcd leader steps down and the majority elects another"
    );
    assert_eq!(
        slow.targets,
        vec![final_leader.clone()],
        "the second fault hits the new leader: {slow:#?}"
    );
    assert!(
        slow.detail
            .as_deref()
            .unwrap_or_default()
            .starts_with(&format!("hit {final_leader}, the leader at 7.")),
        "{slow:#?}"
    );
    drop(Arc::try_unwrap(cluster).ok().map(LocalCluster::teardown));
}

/// Redis with its primary on n2 (not the first node, so a fault that hit "the first" would
/// be caught) and replicas on n1 and n3.
fn redis_config() -> LocalClusterConfig {
    let command = "set -- {peers}; \
        if [ {index} = 2 ]; then replica=''; else replica=\"--replicaof $2 6379\"; fi; \
        exec redis-server --bind {ip} --port 6379 --dir {dataDir} --save '' --appendonly no \
        --protected-mode no $replica";
    let mut config = LocalClusterConfig::new(3, command, ReadyCheck::Tcp { port: 6379 });
    config.peer_format = "{ip}".into();
    config.peer_separator = " ".into();
    config
}

fn redis_role(cluster: &LocalCluster, node: usize) -> String {
    let ip = cluster.nodes()[node].ip.to_string();
    let output = cluster
        .client_netns()
        .command("redis-cli")
        .args(["-h", &ip, "-p", "6379", "INFO", "replication"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("role:").map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn redis_the_primary_is_paused_and_the_replicas_are_slowed() {
    require(
        "leader targeting on redis",
        &["ip", "nft", "tc", "iptables", "redis-server", "redis-cli"],
    );
    let rt = runtime();
    let cluster = Arc::new(
        rt.block_on(LocalCluster::start(redis_config()))
            .expect("the cluster starts"),
    );
    let roles: Vec<String> = (0..3).map(|n| redis_role(&cluster, n)).collect();
    assert_eq!(roles, ["slave", "master", "slave"], "redis-cli's view");
    let spec: ChaosSpec = serde_yaml::from_str(
        r#"
target: {statefulSet: nodes}
duration: 4s
faults:
  - name: freeze-primary
    pause: {targets: {mode: leader}}
    start: 500ms
    duration: 1s
  - name: slow-replicas
    latency: {delay: 20ms, targets: {mode: followers}}
    start: 2s
    duration: 1s
workload: {client: redis, model: register, keys: 1, concurrency: 2, rate: 20, timeout: 300ms}
"#,
    )
    .unwrap();
    let records = rt.block_on(run(&spec, &cluster, 1));
    let frozen = record(&records, "freeze-primary");
    assert!(frozen.error.is_none(), "{frozen:#?}");
    assert_eq!(frozen.targets, vec!["n2"], "{frozen:#?}");
    assert!(
        frozen
            .detail
            .as_deref()
            .unwrap_or_default()
            .starts_with("hit n2, the leader at 0."),
        "{frozen:#?}"
    );
    let slowed = record(&records, "slow-replicas");
    assert!(slowed.error.is_none(), "{slowed:#?}");
    assert_eq!(slowed.targets, vec!["n1", "n3"], "{slowed:#?}");
    drop(Arc::try_unwrap(cluster).ok().map(LocalCluster::teardown));
}

#[test]
fn with_no_leader_to_find_the_fault_is_not_injected_and_says_why() {
    require(
        "leader targeting without a leader",
        &["ip", "nft", "tc", "iptables", "redis-server"],
    );
    let rt = runtime();
    // Three primaries: every node says it leads, and Redis has no term to tell them apart.
    let mut config = redis_config();
    config.command = "redis-server --bind {ip} --port 6379 --dir {dataDir} --save '' \
        --appendonly no --protected-mode no"
        .into();
    let cluster = Arc::new(rt.block_on(LocalCluster::start(config)).expect("starts"));
    let spec: ChaosSpec = serde_yaml::from_str(
        r#"
target: {statefulSet: nodes}
duration: 2s
faults:
  - name: cut-leader
    partition: {shape: isolate-leader}
    start: 200ms
    duration: 1s
roleProbe: {client: redis}
"#,
    )
    .unwrap();
    let records = rt.block_on(run(&spec, &cluster, 1));
    let cut = record(&records, "cut-leader");
    let error = cut.error.clone().unwrap_or_default();
    assert!(
        error.contains("cannot find the leader: more than one node says it leads")
            && error.contains("n1: leader"),
        "{cut:#?}"
    );
    assert!(cut.targets.is_empty(), "nothing was hit: {cut:#?}");
    drop(Arc::try_unwrap(cluster).ok().map(LocalCluster::teardown));
}
