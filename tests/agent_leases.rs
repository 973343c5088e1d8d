//! The node agent end to end: the real agent loop (kube's Controller over this node's leases)
//! against the in-process API server double, with FaultLeases created through the API, pods
//! found through a fake `/proc` tree, and faults applied in real network namespaces that this
//! test created (traffic only flows between them).

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/fake_proc.rs"]
mod fake_proc;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use apiserver::ApiServer;
use fake_proc::FakeProc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use schism::api::{
    FaultLease, FaultLeaseSpec, LEASE_FINALIZER, LEASE_NODE_LABEL, LeaseFault, LeasePartition,
    LeasePod,
};
use schism::operator::agent::{AgentConfig, AgentMetrics, run_agent};
use serde_json::Value;
use support::{TestNet, require, run};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NET_TOOLS: &[&str] = &["ip", "nft", "ping"];
const NODE: &str = "node-a";
const NAMESPACE: &str = "demo";
const POD_A: &str = "6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11";
const POD_B: &str = "0a0b0c0d-1111-2222-3333-444455556666";
const LEASES: &str = "faultleases.schism.dev";

/// A node with two pods: A in the test's namespace 0, B in namespace 1.
struct Node {
    net: TestNet,
    proc: FakeProc,
}

impl Node {
    fn new() -> Self {
        let net = TestNet::new(2);
        let proc = FakeProc::new();
        for (uid, index) in [(POD_A, 0), (POD_B, 1)] {
            proc.pod_process(proc.next_unused_pid(), uid, &net.path(index), 'S');
        }
        Self { net, proc }
    }

    fn nft_tables(&self, node: usize) -> String {
        String::from_utf8_lossy(&self.net.exec(node, "nft", &["list", "tables"]).stdout)
            .into_owned()
    }
}

/// The double, authenticating, with the RBAC the chart renders by default.
async fn api_server() -> ApiServer {
    let server = ApiServer::builder()
        .authenticate()
        .resources(chart::crds())
        .start()
        .await;
    chart::install(&server, &chart::rbac(&chart::render(None, &[])));
    server
}

/// A client with the agent's ServiceAccount token, as the chart's DaemonSet runs it.
fn agent_client(server: &ApiServer) -> Client {
    let manifests = chart::render(None, &[]);
    let (account, namespaces) = chart::service_account(&manifests, "agent");
    server.client_with_token(Some(
        &server.service_account_token(&namespaces[0], &account),
    ))
}

/// The agent loop on its own task; stopping it reverts what it holds.
struct RunningAgent {
    metrics: std::sync::Arc<AgentMetrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), schism::operator::agent::AgentError>>,
}

impl RunningAgent {
    fn start(client: Client, proc_root: PathBuf) -> Self {
        let (stop, stopped) = oneshot::channel();
        let config = AgentConfig {
            node_name: NODE.into(),
            // Inside the fake root, removed with it; not a pid, so never scanned.
            pause_journal: proc_root.join("schism-pauses"),
            proc_root,
            cgroup_root: None,
            namespaces: vec![],
        };
        let metrics = std::sync::Arc::new(AgentMetrics::default());
        let task = tokio::spawn(run_agent(client, config, metrics.clone(), async {
            let _ = stopped.await;
        }));
        Self {
            metrics,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let outcome = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("agent stops")
            .expect("agent task did not panic");
        outcome.expect("agent ended cleanly");
    }
}

/// A partition lease for pod A that drops pod B, created by "the controller" (this test).
fn partition_lease(name: &str, node: &Node, deadline_in: Duration) -> FaultLease {
    let mut lease = FaultLease::new(
        name,
        FaultLeaseSpec {
            chaos: "etcd-partition".into(),
            fault_id: name.replace('-', "_"),
            pod: LeasePod {
                name: "etcd-0".into(),
                uid: POD_A.into(),
                node_name: NODE.into(),
                ip: Some(node.net.ips[0].to_string()),
            },
            fault: LeaseFault {
                partition: Some(LeasePartition {
                    drop_peers: vec![node.net.ips[1].to_string()],
                }),
                ..LeaseFault::default()
            },
            deadline: Time(Timestamp::now() + deadline_in),
        },
    );
    lease.metadata.namespace = Some(NAMESPACE.into());
    lease.metadata.labels = Some([(LEASE_NODE_LABEL.to_string(), NODE.to_string())].into());
    lease.metadata.finalizers = Some(vec![LEASE_FINALIZER.into()]);
    lease
}

/// The lease, owned by `chaos` (as the runner makes them), so its Events regard the Chaos.
fn owned_by(mut lease: FaultLease, chaos: &Value) -> FaultLease {
    lease.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "schism.dev/v1alpha1".into(),
            kind: "Chaos".into(),
            name: chaos["metadata"]["name"].as_str().unwrap().into(),
            uid: chaos["metadata"]["uid"].as_str().unwrap().into(),
            ..Default::default()
        },
    ]);
    lease
}

fn stored(server: &ApiServer, name: &str) -> Option<Value> {
    server.get(LEASES, Some(NAMESPACE), name)
}

fn phase(server: &ApiServer, name: &str) -> Option<String> {
    stored(server, name)?
        .pointer("/status/phase")?
        .as_str()
        .map(str::to_string)
}

/// Waits until `condition` holds, checking every 20 ms, or panics after `limit`.
async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(limit, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Ping from a blocking thread, so the agent's tasks keep running meanwhile.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking work")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_applied_reported_and_reverted_when_deleted() {
    require("agent leases", NET_TOOLS);
    let node = std::sync::Arc::new(Node::new());
    let server = api_server().await;
    let agent = RunningAgent::start(agent_client(&server), node.proc.root().to_path_buf());
    let leases: Api<FaultLease> = Api::namespaced(server.client(), NAMESPACE);

    leases
        .create(
            &PostParams::default(),
            &partition_lease("cut-a", &node, Duration::from_secs(120)),
        )
        .await
        .unwrap();
    wait_until("the lease is Applied", Duration::from_secs(20), || {
        phase(&server, "cut-a").as_deref() == Some("Applied")
    })
    .await;
    let status = stored(&server, "cut-a").unwrap()["status"].clone();
    assert_eq!(status["agent"], NODE);
    assert_eq!(status["mechanism"], "nftables");
    assert!(status["appliedAt"].is_string(), "{status}");
    let net = node.clone();
    assert!(blocking(move || net.net.unreachable(0, 1) && net.net.unreachable(1, 0)).await);

    leases
        .delete("cut-a", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        "the agent released its finalizer and the lease is gone",
        Duration::from_secs(20),
        || stored(&server, "cut-a").is_none(),
    )
    .await;
    let net = node.clone();
    assert!(blocking(move || net.net.reachable(0, 1) && net.net.reachable(1, 0)).await);
    assert!(!node.nft_tables(0).contains("schism_"));
    use schism::operator::metrics::Endpoints;
    assert!(agent.metrics.ready(), "ready once it reaped and watches");
    let text = agent.metrics.metrics();
    assert!(
        text.contains("schism_agent_faults_applied_total 1"),
        "{text}"
    );
    assert!(
        text.contains("schism_agent_faults_reverted_total 1"),
        "{text}"
    );
    assert!(text.contains("schism_agent_faults_held 0"), "{text}");

    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_applied_is_failed_with_an_event_on_its_chaos() {
    require("agent apply failure", NET_TOOLS);
    let node = std::sync::Arc::new(Node::new());
    let server = api_server().await;
    let agent = RunningAgent::start(agent_client(&server), node.proc.root().to_path_buf());
    let leases: Api<FaultLease> = Api::namespaced(server.client(), NAMESPACE);
    let chaos = server.apply_raw(
        "chaoses.schism.dev",
        serde_json::json!({"metadata": {"name": "etcd-partition", "namespace": NAMESPACE},
            "spec": {"target": {"statefulSet": "etcd"}, "duration": "1m"}}),
    );
    let mut lease = owned_by(
        partition_lease("no-pod", &node, Duration::from_secs(60)),
        &chaos,
    );
    lease.spec.pod.uid = "11111111-2222-3333-4444-555555555555".into();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    wait_until("the lease is Failed", Duration::from_secs(20), || {
        phase(&server, "no-pod").as_deref() == Some("Failed")
    })
    .await;
    wait_until(
        "a Warning event on the Chaos",
        Duration::from_secs(10),
        || {
            server.objects("events.events.k8s.io").iter().any(|e| {
                e["reason"] == "FaultApplyFailed"
                    && e["regarding"]["kind"] == "Chaos"
                    && e["regarding"]["name"] == "etcd-partition"
                    && e["note"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("no process")
            })
        },
    )
    .await;
    use schism::operator::metrics::Endpoints;
    assert!(
        agent
            .metrics
            .metrics()
            .contains(r#"schism_agent_failures_total{action="apply"} 1"#)
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reverts_at_the_deadline_with_the_controller_stopped() {
    require("agent deadline", NET_TOOLS);
    let node = std::sync::Arc::new(Node::new());
    let server = api_server().await;
    let agent = RunningAgent::start(agent_client(&server), node.proc.root().to_path_buf());
    let leases: Api<FaultLease> = Api::namespaced(server.client(), NAMESPACE);

    // The controller creates the lease, then is gone: nothing but the agent writes from here.
    leases
        .create(
            &PostParams::default(),
            &partition_lease("short", &node, Duration::from_secs(4)),
        )
        .await
        .unwrap();
    drop(leases);
    wait_until("the lease is Applied", Duration::from_secs(20), || {
        phase(&server, "short").as_deref() == Some("Applied")
    })
    .await;
    server.clear_request_log();
    let net = node.clone();
    assert!(blocking(move || net.net.unreachable(0, 1)).await);

    wait_until(
        "the agent reports the lease Reverted",
        Duration::from_secs(20),
        || phase(&server, "short").as_deref() == Some("Reverted"),
    )
    .await;
    let lease = stored(&server, "short").unwrap();
    let deadline: Timestamp = lease["spec"]["deadline"].as_str().unwrap().parse().unwrap();
    let reverted: Timestamp = lease["status"]["revertedAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reverted >= deadline,
        "reverted {reverted}, deadline {deadline}"
    );
    let net = node.clone();
    assert!(blocking(move || net.net.reachable(0, 1) && net.net.reachable(1, 0)).await);
    assert!(!node.nft_tables(0).contains("schism_"));

    let writes: Vec<String> = server
        .request_log()
        .into_iter()
        .filter(|request| request.method != "GET")
        .map(|request| format!("{} {}", request.method, request.path))
        .collect();
    assert_eq!(
        writes,
        vec![format!(
            "PATCH /apis/schism.dev/v1alpha1/namespaces/{NAMESPACE}/faultleases/short/status"
        )],
        "the agent's own status write is the only write"
    );
    assert_eq!(
        lease["metadata"]["finalizers"][0], LEASE_FINALIZER,
        "the finalizer stays until deletion"
    );

    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agent_reaps_leftovers_and_applies_live_leases_once() {
    require("agent restart", NET_TOOLS);
    let node = std::sync::Arc::new(Node::new());
    let server = api_server().await;
    // What a SIGKILLed agent leaves: its live lease marked Applied, an expired one still marked
    // Applied, and an nftables table of a fault whose lease no longer exists.
    let live = partition_lease("live", &node, Duration::from_secs(120));
    let mut expired = partition_lease("expired", &node, Duration::from_secs(120));
    expired.spec.deadline = Time(Timestamp::now() - Duration::from_secs(60));
    for lease in [live, expired] {
        let mut object = serde_json::to_value(&lease).unwrap();
        object["status"] = serde_json::json!({"phase": "Applied", "agent": NODE});
        server.apply_raw(LEASES, object);
    }
    run(
        "ip",
        &[
            "netns",
            "exec",
            &node.net.names[0],
            "nft",
            "add table inet schism_orphan",
        ],
    );

    let agent = RunningAgent::start(agent_client(&server), node.proc.root().to_path_buf());
    wait_until(
        "the expired lease is reported Reverted",
        Duration::from_secs(20),
        || phase(&server, "expired").as_deref() == Some("Reverted"),
    )
    .await;
    wait_until(
        "the live lease is applied again",
        Duration::from_secs(20),
        || {
            stored(&server, "live")
                .and_then(|lease| lease.pointer("/status/appliedAt").cloned())
                .is_some()
        },
    )
    .await;
    let tables = node.nft_tables(0);
    assert!(!tables.contains("schism_orphan"), "{tables}");
    assert_eq!(tables.matches("schism_").count(), 1, "{tables}");
    assert!(tables.contains("schism_live"), "{tables}");
    let net = node.clone();
    assert!(blocking(move || net.net.unreachable(0, 1)).await);

    agent.stop().await;
    let net = node.clone();
    assert!(
        blocking(move || net.net.reachable(0, 1)).await,
        "a stopping agent reverts what it holds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_lifecycle_under_the_charts_rbac_needs_every_grant_and_is_never_refused() {
    require("agent RBAC", NET_TOOLS);
    let node = std::sync::Arc::new(Node::new());
    let server = api_server().await;
    let agent = RunningAgent::start(agent_client(&server), node.proc.root().to_path_buf());
    let leases: Api<FaultLease> = Api::namespaced(server.client(), NAMESPACE);
    let chaos = server.apply_raw(
        "chaoses.schism.dev",
        serde_json::json!({"metadata": {"name": "etcd-partition", "namespace": NAMESPACE},
            "spec": {"target": {"statefulSet": "etcd"}, "duration": "1m"}}),
    );
    // Applied, then released: status, then the finalizer.
    leases
        .create(
            &PostParams::default(),
            &partition_lease("cut-a", &node, Duration::from_secs(60)),
        )
        .await
        .unwrap();
    wait_until("cut-a is Applied", Duration::from_secs(20), || {
        phase(&server, "cut-a").as_deref() == Some("Applied")
    })
    .await;
    leases
        .delete("cut-a", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("cut-a is gone", Duration::from_secs(20), || {
        stored(&server, "cut-a").is_none()
    })
    .await;
    // Two that cannot be applied: an Event on the Chaos, then the same Event again (a patch
    // of its series).
    for name in ["no-pod-1", "no-pod-2"] {
        let mut lease = owned_by(
            partition_lease(name, &node, Duration::from_secs(60)),
            &chaos,
        );
        lease.spec.pod.uid = "11111111-2222-3333-4444-555555555555".into();
        leases.create(&PostParams::default(), &lease).await.unwrap();
        wait_until("the lease is Failed", Duration::from_secs(20), || {
            phase(&server, name).as_deref() == Some("Failed")
        })
        .await;
    }
    // One that ends at its deadline.
    leases
        .create(
            &PostParams::default(),
            &partition_lease("brief", &node, Duration::from_secs(2)),
        )
        .await
        .unwrap();
    wait_until(
        "brief is reverted at its deadline",
        Duration::from_secs(20),
        || phase(&server, "brief").as_deref() == Some("Reverted"),
    )
    .await;
    agent.stop().await;

    let decisions = server.decisions();
    let manifests = chart::render(None, &[]);
    let (account, namespaces) = chart::service_account(&manifests, "agent");
    let user = format!("system:serviceaccount:{}:{account}", namespaces[0]);
    let refused: Vec<_> = decisions
        .iter()
        .filter(|d| d.user == user && !d.allowed)
        .collect();
    assert!(
        refused.is_empty(),
        "the chart's RBAC refused the agent: {refused:#?}"
    );
    let grants = chart::grants_to(&manifests, &namespaces[0], &account);
    chart::assert_every_grant_needed("agent", &chart::sole_grants(&grants, &decisions, &user));
}
