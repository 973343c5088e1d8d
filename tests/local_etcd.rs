//! A real 3-node etcd cluster in network namespaces, driven through `schism::local`.

#[path = "support/local_etcd.rs"]
mod local_etcd;
mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use local_etcd::etcd_config;
use schism::dataplane::{self, FaultId};
use schism::faultplan::{PartitionShape, plan_partition, rng_from_seed};
use schism::local::LocalCluster;
use support::{require, runtime};

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

#[test]
fn isolated_member_loses_writes_while_the_majority_keeps_serving_and_heal_restores_it() {
    require(
        "etcd isolate",
        &["ip", "nft", "tc", "iptables", "etcd", "etcdctl"],
    );
    // Every write goes to a key of its own: a put that timed out may still take effect
    // later (under load one did, after the heal, over the value written after it), so
    // retried writes of one key would make the final read a race.
    let rt = runtime();
    let cluster = rt.block_on(LocalCluster::start(etcd_config())).unwrap();
    assert!(put_eventually(
        &cluster,
        0,
        "before",
        "1",
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
            "during",
            "1",
            Duration::from_secs(10)
        ),
        "the majority elects a leader and accepts writes"
    );
    assert!(
        !put(&cluster, isolated, "lost", "1"),
        "the isolated member must not accept writes"
    );

    for result in dataplane::heal_all(faults) {
        result.unwrap();
    }
    assert!(
        put_eventually(&cluster, isolated, "after", "1", Duration::from_secs(15)),
        "the healed member serves writes again"
    );
    // The members converge within a moment (consistency is the checker's business).
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&cluster, majority[1], "after").as_deref() != Some("1") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&cluster, majority[1], "after").as_deref(), Some("1"));
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
    // A key per write, as above: a timed-out put may still land later.

    rt.block_on(cluster.kill_node(2)).unwrap();
    assert!(cluster.node_pid(2).is_none());
    assert!(
        put_eventually(&cluster, 0, "b", "2", Duration::from_secs(10)),
        "two of three still serve"
    );

    rt.block_on(cluster.restart_node(2)).unwrap();
    assert_ne!(cluster.node_pid(2), Some(old_pid));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = get(&cluster, 2, "b");
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
        "c",
        "3",
        Duration::from_secs(15)
    ));
}

/// Whether a TCP connection from node `from`'s namespace to node `to`'s peer port opens
/// within a second.
fn reaches(cluster: &LocalCluster, from: usize, to: usize) -> bool {
    let target = format!("/dev/tcp/{}/2380", cluster.nodes()[to].ip);
    cluster.nodes()[from]
        .netns
        .command("timeout")
        .args(["1", "bash", "-c", &format!("exec 3<>{target}")])
        .status()
        .expect("bash runs")
        .success()
}

/// Whether a node process is paused: frozen in its cgroup (v2 `cgroup.events`, v1
/// `freezer.state`), or stopped by a signal where it has none.
fn paused(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('T'))
    {
        return true;
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    cgroup.lines().any(|line| {
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
        );
        if id == "0" && controllers.is_empty() {
            ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .iter()
                .any(|root| {
                    std::fs::read_to_string(format!("{root}{path}/cgroup.events"))
                        .is_ok_and(|events| events.lines().any(|l| l == "frozen 1"))
                })
        } else if controllers.split(',').any(|c| c == "freezer") {
            std::fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"))
                .is_ok_and(|state| state.trim() == "FROZEN")
        } else {
            false
        }
    })
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_member_restarted_inside_a_partition_stays_cut_from_both_sides_and_inside_a_pause_is_paused_again()
 {
    use schism::engine::experiment::Backend;
    use schism::engine::timeline::{FaultAction, FaultInstance};
    use schism::local::LocalBackend;
    use std::sync::Arc;

    require(
        "etcd restart inside faults",
        &["ip", "nft", "tc", "iptables", "etcd", "bash", "timeout"],
    );
    runtime().block_on(async {
        let cluster = Arc::new(LocalCluster::start(etcd_config()).await.expect("cluster starts"));
        let mut backend = LocalBackend::new(Arc::clone(&cluster));
        let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
        let shape = PartitionShape::Groups(vec![vec!["n1".into()], vec!["n2".into(), "n3".into()]]);
        let plan = plan_partition(&shape, &names, &mut rng_from_seed(1)).unwrap();
        let instance = |name: &str, action: FaultAction, targets: Vec<usize>, lasting: bool| FaultInstance {
            fault_index: 0,
            name: name.into(),
            repeat: 0,
            action,
            targets,
            aim: None,
            inject_at: Duration::ZERO,
            heal_at: lasting.then_some(Duration::from_secs(60)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let split = instance("split", FaultAction::Partition(plan.clone()), plan.affected_nodes(), true);
        backend.inject(0, &split, deadline).await.expect("partition");
        assert!(!reaches(&cluster, 0, 1) && !reaches(&cluster, 1, 0), "n1 is cut off");

        let first = cluster.node_pid(0).unwrap();
        let kill = instance("kill", FaultAction::Kill { grace: Duration::ZERO }, vec![0], false);
        backend.inject(1, &kill, deadline).await.expect("kill");
        wait_until("n1 runs again", Duration::from_secs(20), || {
            cluster.node_pid(0).is_some_and(|pid| pid != first)
        })
        .await;
        // The restarted member is cut off still, on its own side and on its peers'.
        for _ in 0..3 {
            assert!(!reaches(&cluster, 0, 1), "the restarted n1 reaches n2");
            assert!(!reaches(&cluster, 2, 0), "n3 reaches the restarted n1");
            assert!(reaches(&cluster, 1, 2), "the majority stays connected");
        }
        backend.heal(0, &split).await.expect("heal");
        let started = Instant::now();
        while !(reaches(&cluster, 0, 1) && reaches(&cluster, 1, 0)) {
            if started.elapsed() > Duration::from_secs(10) {
                let rules = cluster.nodes()[0].netns.command("nft").args(["list", "ruleset"]).output().unwrap();
                panic!(
                    "n1 and n2 do not reach each other after the heal: n1->n2 {}, n2->n1 {}, n1 pid {:?}, n1 rules:\n{}\nlog: {}",
                    reaches(&cluster, 0, 1),
                    reaches(&cluster, 1, 0),
                    cluster.node_pid(0),
                    String::from_utf8_lossy(&rules.stdout),
                    std::fs::read_to_string(&cluster.nodes()[0].log_path).unwrap_or_default().lines().rev().take(5).collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A pause of n2, then n2 killed and restarted: the new process is paused too.
        let freeze = instance("freeze", FaultAction::Pause, vec![1], true);
        backend.inject(2, &freeze, deadline).await.expect("pause");
        let first_paused = cluster.node_pid(1).unwrap();
        assert!(paused(first_paused), "n2 is paused");
        let kill = instance("kill-paused", FaultAction::Kill { grace: Duration::ZERO }, vec![1], false);
        backend.inject(3, &kill, deadline).await.expect("kill");
        wait_until("n2 restarted and paused again", Duration::from_secs(20), || {
            cluster.node_pid(1).is_some_and(|pid| pid != first_paused && paused(pid))
        })
        .await;
        let notes = backend.notes(2);
        assert!(notes.iter().any(|n| n.contains("paused again")), "{notes:?}");
        backend.heal(2, &freeze).await.expect("heal the pause");
        let resumed = cluster.node_pid(1).unwrap();
        wait_until("n2 runs", Duration::from_secs(5), || !paused(resumed)).await;
        assert!(backend.heal_all().await.is_empty());
        drop(backend);
        let cluster = Arc::try_unwrap(cluster).ok().expect("the backend let go of the cluster");
        let names: Vec<String> = cluster.nodes().iter().map(|n| n.netns_name.clone()).collect();
        cluster.teardown();
        let listing = support::run("ip", &["netns", "list"]);
        assert!(names.iter().all(|n| !listing.contains(n.as_str())), "{listing}");
    });
}
