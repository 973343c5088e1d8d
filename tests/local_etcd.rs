//! A real 3-node etcd cluster in network namespaces, driven through `schism::local`.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use schism::dataplane::{self, FaultId};
use schism::faultplan::{PartitionShape, plan_partition, rng_from_seed};
use schism::local::{LocalCluster, LocalClusterConfig, ReadyCheck};
use support::require;

const ETCD: &str = "etcd --name {name} --data-dir {dataDir} \
    --listen-peer-urls http://{ip}:2380 --initial-advertise-peer-urls http://{ip}:2380 \
    --listen-client-urls http://{ip}:2379 --advertise-client-urls http://{ip}:2379 \
    --initial-cluster {peers} --initial-cluster-state {clusterState} \
    --heartbeat-interval 100 --election-timeout 1000 --pre-vote=true";

fn etcd_config() -> LocalClusterConfig {
    let mut config = LocalClusterConfig::new(3, ETCD, ReadyCheck::Tcp { port: 2379 });
    config.peer_format = "{name}=http://{ip}:2380".into();
    config.restart_delay = Duration::from_millis(300);
    config
}

fn etcdctl(cluster: &LocalCluster, node: usize, args: &[&str]) -> Output {
    let endpoint = format!("http://{}:2379", cluster.nodes()[node].ip);
    cluster
        .client_netns()
        .command("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &endpoint,
            "--dial-timeout",
            "1s",
            "--command-timeout",
            "2s",
        ])
        .args(args)
        .output()
        .expect("etcdctl")
}

fn put(cluster: &LocalCluster, node: usize, key: &str, value: &str) -> bool {
    etcdctl(cluster, node, &["put", key, value])
        .status
        .success()
}

/// Retries a put until it succeeds (leader elections take a second or two).
fn put_eventually(
    cluster: &LocalCluster,
    node: usize,
    key: &str,
    value: &str,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if put(cluster, node, key, value) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn get(cluster: &LocalCluster, node: usize, key: &str) -> Option<String> {
    let output = etcdctl(cluster, node, &["get", key, "--print-value-only"]);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn isolated_member_loses_writes_while_the_majority_keeps_serving_and_heal_restores_it() {
    require(
        "etcd isolate",
        &["ip", "nft", "tc", "iptables", "etcd", "etcdctl"],
    );
    let rt = runtime();
    let cluster = rt.block_on(LocalCluster::start(etcd_config())).unwrap();
    assert!(put_eventually(
        &cluster,
        0,
        "k",
        "before",
        Duration::from_secs(10)
    ));

    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let plan = plan_partition(&PartitionShape::IsolateOne, &names, &mut rng_from_seed(7)).unwrap();
    let isolated = (0..3).find(|&n| plan.drops(n).len() == 2).unwrap();
    let majority: Vec<usize> = (0..3).filter(|&n| n != isolated).collect();
    let faults = cluster
        .apply_partition(
            &plan,
            &FaultId::new("isolate").unwrap(),
            Instant::now() + Duration::from_secs(60),
        )
        .unwrap();

    assert!(
        put_eventually(
            &cluster,
            majority[0],
            "k",
            "during",
            Duration::from_secs(10)
        ),
        "the majority elects a leader and accepts writes"
    );
    assert!(
        !put(&cluster, isolated, "k", "lost"),
        "the isolated member must not accept writes"
    );

    for result in dataplane::heal_all(faults) {
        result.unwrap();
    }
    assert!(
        put_eventually(&cluster, isolated, "k", "after", Duration::from_secs(15)),
        "the healed member serves writes again"
    );
    // Once seen, one run read the previous value here right after the put; the members
    // converge within a moment, which is what this test is about (consistency is the checker's).
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&cluster, majority[1], "k").as_deref() != Some("after") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&cluster, majority[1], "k").as_deref(), Some("after"));
    let removed = cluster.teardown();
    assert!(
        removed
            .iter()
            .any(|line| line.contains("network namespace")),
        "{removed:?}"
    );
}

#[test]
fn killed_member_restarts_with_existing_state_and_catches_up() {
    require(
        "etcd kill/restart",
        &["ip", "nft", "tc", "iptables", "etcd", "etcdctl"],
    );
    let rt = runtime();
    let cluster = rt.block_on(LocalCluster::start(etcd_config())).unwrap();
    assert!(put_eventually(
        &cluster,
        0,
        "a",
        "1",
        Duration::from_secs(10)
    ));
    let old_pid = cluster.node_pid(2).unwrap();

    rt.block_on(cluster.kill_node(2)).unwrap();
    assert!(cluster.node_pid(2).is_none());
    assert!(
        put_eventually(&cluster, 0, "a", "2", Duration::from_secs(10)),
        "two of three still serve"
    );

    rt.block_on(cluster.restart_node(2)).unwrap();
    assert_ne!(cluster.node_pid(2), Some(old_pid));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = get(&cluster, 2, "a");
        if seen.as_deref() == Some("2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(seen.as_deref(), Some("2"), "the restarted member caught up");
    let log = std::fs::read_to_string(&cluster.nodes()[2].log_path).unwrap();
    assert!(
        log.contains("--initial-cluster-state existing"),
        "restart used {{clusterState}}=existing"
    );

    rt.block_on(cluster.kill_and_restart(1)).unwrap();
    assert!(put_eventually(
        &cluster,
        1,
        "a",
        "3",
        Duration::from_secs(15)
    ));
}
