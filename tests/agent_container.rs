//! The node agent in a real container of the built image, run exactly as the chart's
//! DaemonSet says (the `docker run` flags derived from `helm template` output: root with only
//! the listed capabilities, hostPID, read-only root filesystem, the `/run` and `/tmp`
//! emptyDirs, the host's xtables lock, the default seccomp profile), in-cluster against the
//! HTTPS API double with its ServiceAccount's token under the chart's RBAC.
//!
//! Its targets are "pods" as a kubelet with the cgroupfs driver makes them: containers under
//! `--cgroup-parent /kubepods/besteffort/pod<UID>`, each a real etcd member on a user-defined
//! Docker network. (Our engine has only the cgroupfs driver; the systemd driver's
//! `kubepods-besteffort-pod<UID>.slice` names cannot be made here, and are covered by the
//! discovery unit tests on a fake `/proc`.) The agent must find them by UID alone, cut a
//! member off (etcd loses quorum there and regains it when the lease is deleted), delay a
//! member's traffic (measured TCP round trips), revert at the deadline, and after a
//! `docker kill` mid-fault the partition is lifted with no command, by its guard if it acts
//! before the runtime kills it, else by the kernel at the deadline (nft set element timeouts),
//! while what the guards did not get to before the runtime killed them too
//! — the NFQUEUE rule, the empty table — is removed by the restarted agent; a pause freezes the member's pod cgroup through
//! the node's cgroup filesystem, and a pod still frozen after the kill is thawed by the
//! restarted agent from the pause journal on the node; a SIGTERM (a rollout) reverts at once.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/containers.rs"]
mod containers;
mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use containers::{
    Container, EtcdPods, InCluster, Network, PodIdentity, chart_pod, docker, require_image,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use schism::api::{
    FaultLease, FaultLeaseSpec, KubeDuration, LEASE_FINALIZER, LEASE_NODE_LABEL, LeaseFault,
    LeaseLatency, LeasePartition, LeasePause, LeasePod,
};

const NODE: &str = "node-a";
const NAMESPACE: &str = "demo";
const LEASES: &str = "faultleases.schism.dev";

/// Median TCP connect time from the host to a member's client port, over five tries.
async fn round_trip(ip: Ipv4Addr) -> Duration {
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let connected = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect((ip, 2379)),
        )
        .await;
        assert!(matches!(connected, Ok(Ok(_))), "connect to {ip}:2379");
        times.push(started.elapsed());
    }
    times.sort();
    times[2]
}

async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn lease(
    name: &str,
    pods: &EtcdPods,
    member: usize,
    fault: LeaseFault,
    deadline_in: Duration,
) -> FaultLease {
    let mut lease = FaultLease::new(
        name,
        FaultLeaseSpec {
            chaos: "etcd-chaos".into(),
            fault_id: name.replace('-', "_"),
            pod: LeasePod {
                name: format!("etcd-{member}"),
                uid: pods.uids[member].clone(),
                node_name: NODE.into(),
                ip: Some(pods.ips[member].to_string()),
            },
            fault,
            deadline: Time(Timestamp::now() + deadline_in),
        },
    );
    lease.metadata.namespace = Some(NAMESPACE.into());
    lease.metadata.labels = Some([(LEASE_NODE_LABEL.to_string(), NODE.to_string())].into());
    lease.metadata.finalizers = Some(vec![LEASE_FINALIZER.into()]);
    lease
}

fn partition(pods: &EtcdPods, of: usize) -> LeaseFault {
    LeaseFault {
        partition: Some(LeasePartition {
            drop_peers: (0..3)
                .filter(|&i| i != of)
                .map(|i| pods.ips[i].to_string())
                .collect(),
        }),
        ..LeaseFault::default()
    }
}

fn latency(delay: &str) -> LeaseFault {
    LeaseFault {
        latency: Some(LeaseLatency {
            delay: delay.parse::<KubeDuration>().expect("a duration"),
            jitter: None,
            from_peers: Vec::new(),
        }),
        ..LeaseFault::default()
    }
}

fn pause() -> LeaseFault {
    LeaseFault {
        pause: Some(LeasePause {}),
        ..LeaseFault::default()
    }
}

fn mechanism(server: &ApiServer, name: &str) -> Option<String> {
    server
        .get(LEASES, Some(NAMESPACE), name)?
        .pointer("/status/mechanism")?
        .as_str()
        .map(str::to_owned)
}

/// Whether a member's pod cgroup is frozen, as the host sees it: in the v2 hierarchy (which
/// the agent prefers, and our hybrid engine also fills) or the v1 freezer.
fn pod_frozen(pods: &EtcdPods, member: usize) -> bool {
    let pod = format!("kubepods/besteffort/pod{}", pods.uids[member]);
    let v2 = std::fs::read_to_string(format!("/sys/fs/cgroup/unified/{pod}/cgroup.events"))
        .is_ok_and(|events| events.lines().any(|l| l.trim() == "frozen 1"));
    let v1 = std::fs::read_to_string(format!("/sys/fs/cgroup/freezer/{pod}/freezer.state"))
        .is_ok_and(|state| state.trim() == "FROZEN");
    v2 || v1
}

fn phase(server: &ApiServer, name: &str) -> Option<String> {
    server
        .get(LEASES, Some(NAMESPACE), name)?
        .pointer("/status/phase")?
        .as_str()
        .map(str::to_owned)
}

async fn wait_ready(agent: &Container, network: &Network) {
    let url = format!("http://{}:8081/readyz", agent.ip(network));
    let started = Instant::now();
    loop {
        if matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30) && agent.running(),
            "the agent never became Ready:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn leftovers(pods: &EtcdPods, member: usize) -> (String, String) {
    let pid = pods.members[member].pid().to_string();
    let nsenter = |tool: &[&str]| {
        let output = Command::new("nsenter")
            .args(["-t", &pid, "-n"])
            .args(tool)
            .output()
            .expect("nsenter runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    (
        nsenter(&["nft", "list", "tables"]),
        nsenter(&["iptables", "-t", "mangle", "-S", "PREROUTING"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_container_cuts_and_delays_etcd_pods_found_by_uid_and_everything_ends() {
    require_image("the agent container test");
    support::require(
        "the agent container test",
        &["etcdctl", "nsenter", "nft", "iptables"],
    );
    let network = Network::create();
    let server = ApiServer::builder()
        .authenticate()
        .listen_on(network.gateway.into())
        .tls()
        .resources(chart::crds())
        .start()
        .await;
    let manifests = chart::render(None, &[]);
    chart::install(&server, &chart::rbac(&manifests));
    let (account, namespaces) = chart::service_account(&manifests, "agent");
    let token = server.service_account_token(&namespaces[0], &account);
    let dir = std::env::temp_dir().join(format!("schism-agent-container-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let in_cluster = InCluster {
        network: &network,
        api_port: server.address().port(),
        ca_pem: server.ca_pem(),
        dir: &dir,
    };
    let agent_pod = chart_pod(&manifests, "DaemonSet", "agent");
    let agent_identity = PodIdentity {
        name: "schism-agent-x7k2p",
        namespace: chart::RELEASE_NAMESPACE,
        node_name: NODE,
    };

    let pods = EtcdPods::start(&network);
    wait_until("etcd is healthy", Duration::from_secs(30), || {
        (0..3).all(|m| pods.healthy(m))
    })
    .await;
    let first = in_cluster.run(agent_pod, &agent_identity, &token);
    wait_ready(&first, &network).await;
    let leases: Api<FaultLease> = Api::namespaced(server.client(), NAMESPACE);

    // A partition of member 0, then its lease deleted.
    leases
        .create(
            &PostParams::default(),
            &lease(
                "cut-0",
                &pods,
                0,
                partition(&pods, 0),
                Duration::from_secs(60),
            ),
        )
        .await
        .unwrap();
    let applied_in = wait_until("cut-0 Applied", Duration::from_secs(20), || {
        phase(&server, "cut-0").as_deref() == Some("Applied")
    })
    .await;
    let quorum_lost_in = wait_until("member 0 to lose quorum", Duration::from_secs(20), || {
        !pods.healthy(0)
    })
    .await;
    assert!(
        pods.healthy(1) && pods.healthy(2),
        "the majority keeps its quorum"
    );
    leases
        .delete("cut-0", &DeleteParams::default())
        .await
        .unwrap();
    let released_in = wait_until("cut-0 released", Duration::from_secs(20), || {
        server.get(LEASES, Some(NAMESPACE), "cut-0").is_none()
    })
    .await;
    let healed_in = wait_until("member 0 to regain quorum", Duration::from_secs(30), || {
        pods.healthy(0)
    })
    .await;

    // 100 ms on what arrives at member 1, ended at its deadline.
    let before = round_trip(pods.ips[1]).await;
    leases
        .create(
            &PostParams::default(),
            &lease("slow-1", &pods, 1, latency("100ms"), Duration::from_secs(6)),
        )
        .await
        .unwrap();
    wait_until("slow-1 Applied", Duration::from_secs(20), || {
        phase(&server, "slow-1").as_deref() == Some("Applied")
    })
    .await;
    let during = round_trip(pods.ips[1]).await;
    assert!(
        during >= Duration::from_millis(95),
        "delayed round trip {during:?} (before: {before:?})"
    );
    wait_until(
        "slow-1 Reverted at its deadline",
        Duration::from_secs(20),
        || phase(&server, "slow-1").as_deref() == Some("Reverted"),
    )
    .await;
    let after = round_trip(pods.ips[1]).await;
    assert!(
        after < Duration::from_millis(50),
        "round trip after the deadline {after:?}"
    );

    // The agent killed mid-fault: a partition of member 2, latency on member 1 and a pause
    // of member 0, which freezes its pod's cgroup.
    let deadline = Duration::from_secs(8);
    leases
        .create(
            &PostParams::default(),
            &lease("cut-2", &pods, 2, partition(&pods, 2), deadline),
        )
        .await
        .unwrap();
    leases
        .create(
            &PostParams::default(),
            &lease("slow-1b", &pods, 1, latency("100ms"), deadline),
        )
        .await
        .unwrap();
    leases
        .create(
            &PostParams::default(),
            &lease("pause-0", &pods, 0, pause(), deadline),
        )
        .await
        .unwrap();
    let created = Instant::now();
    wait_until("all three Applied", Duration::from_secs(20), || {
        ["cut-2", "slow-1b", "pause-0"]
            .iter()
            .all(|name| phase(&server, name).as_deref() == Some("Applied"))
    })
    .await;
    assert_eq!(
        mechanism(&server, "pause-0").as_deref(),
        Some("freezer"),
        "the pause froze the pod's cgroup"
    );
    assert!(
        pod_frozen(&pods, 0),
        "the kernel reports member 0's pod frozen"
    );
    wait_until(
        "member 0 to stop answering",
        Duration::from_secs(10),
        || !pods.healthy(0),
    )
    .await;
    wait_until("member 2 to lose quorum", Duration::from_secs(20), || {
        !pods.healthy(2)
    })
    .await;
    docker(&["kill", &first.name]);
    let delay_after_kill = round_trip(pods.ips[1]).await;
    // The partition's elements time out at the deadline, with no agent.
    let lifted = wait_until(
        "member 2 to regain quorum with no agent",
        deadline + Duration::from_secs(30),
        || pods.healthy(2),
    )
    .await;
    // Lifted either by the partition's guard, if it acted before the runtime killed it with
    // the container, or else by the kernel at the deadline: both need no command.
    let lifted_at = created.elapsed();
    let lifted_by_guard = lifted_at + Duration::from_millis(500) < deadline;
    // Each fault's guard wakes when the agent dies, but it lives in the agent's container,
    // which the runtime kills as a whole: whether it removed its fault first is a race.
    // Either way the partition's table is empty by now and the delay rule lets traffic
    // through (`--queue-bypass`), and the restarted agent's reap below must leave nothing.
    let (tables, _) = leftovers(&pods, 2);
    let table_outlived_kill = tables.contains("schism");
    let (_, rules_1) = leftovers(&pods, 1);
    let guard_was_first = !rules_1.contains("NFQUEUE");
    // The same race for the pause's guard, after its deadline and grace have passed: a
    // frozen cgroup outlives the container, and only the journal on the node tells the next
    // agent that it was Schism's to thaw.
    let frozen_after_kill = pod_frozen(&pods, 0);
    drop(first);

    let second = in_cluster.run(agent_pod, &agent_identity, &token);
    wait_ready(&second, &network).await;
    wait_until(
        "the restarted agent reaps member 1 and 2",
        Duration::from_secs(20),
        || {
            let (tables_2, _) = leftovers(&pods, 2);
            let (_, rules_1) = leftovers(&pods, 1);
            !tables_2.contains("schism") && !rules_1.contains("NFQUEUE")
        },
    )
    .await;
    wait_until(
        "the restarted agent thaws member 0",
        Duration::from_secs(20),
        || !pod_frozen(&pods, 0),
    )
    .await;
    wait_until("all three leases Reverted", Duration::from_secs(20), || {
        ["cut-2", "slow-1b", "pause-0"]
            .iter()
            .all(|name| phase(&server, name).as_deref() == Some("Reverted"))
    })
    .await;
    wait_until("member 0 answers again", Duration::from_secs(30), || {
        pods.healthy(0)
    })
    .await;

    // A rollout's SIGTERM: the agent reverts what it holds before it exits, long before the
    // lease's deadline; the lease stays for the next agent to apply again.
    leases
        .create(
            &PostParams::default(),
            &lease(
                "cut-0b",
                &pods,
                0,
                partition(&pods, 0),
                Duration::from_secs(120),
            ),
        )
        .await
        .unwrap();
    wait_until("cut-0b Applied", Duration::from_secs(20), || {
        phase(&server, "cut-0b").as_deref() == Some("Applied")
    })
    .await;
    wait_until(
        "member 0 to lose quorum again",
        Duration::from_secs(20),
        || !pods.healthy(0),
    )
    .await;
    let grace = agent_pod["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let stopping = Instant::now();
    docker(&["stop", "-t", &grace.to_string(), &second.name]);
    let stopped_in = stopping.elapsed();
    assert_eq!(second.exit_code(), Some(0), "{}", second.logs());
    let (tables, _) = leftovers(&pods, 0);
    assert!(
        !tables.contains("schism"),
        "SIGTERM reverted the partition: {tables}"
    );
    let whole_in = wait_until(
        "member 0 to regain quorum after SIGTERM",
        Duration::from_secs(30),
        || pods.healthy(0),
    )
    .await;
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "agent container: SIGTERM -> exited in {stopped_in:?} with the partition reverted; quorum back {whole_in:?} later"
    );
    println!(
        "agent container: partition applied in {applied_in:?}, member 0 without quorum {quorum_lost_in:?} later; \
         lease deleted -> released in {released_in:?}, quorum back {healed_in:?} after; \
         latency 100ms: round trip {before:?} -> {during:?} -> {after:?} after the deadline; \
         agent killed: round trip {delay_after_kill:?} (the NFQUEUE loop died, the bypass lets traffic through; \
         the delay's guard removed the rule before its container went: {guard_was_first}; \
         the partition's empty table outlived the kill: {table_outlived_kill}; \
         the partition was lifted by its guard before the deadline: {lifted_by_guard}; \
         member 0 still frozen when the next agent started: {frozen_after_kill}), \
         partition lifted {lifted:?} after the kill, {lifted_at:?} after creation (deadline {deadline:?})"
    );
}
