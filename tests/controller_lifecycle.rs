//! The real kube-runtime controller takes Chaos objects from creation to verdict against an
//! in-process API server, with simulated pods, a simulated node agent and a real TCP service
//! for the availability probe. Also: deletion mid-run heals first, an agent that is gone does
//! not block deletion, a controller restart mid-run ends Inconclusive, and the blast radius
//! rejects rather than trims.

#[path = "support/apiserver/mod.rs"]
mod apiserver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::{ApiServer, ResourceType};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use schism::api::Chaos;
use schism::operator::controller::{self, Context, targets::BlastRadius};
use schism::operator::metrics::Metrics;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CHAOSES: &str = "chaoses.schism.dev";
const LEASES: &str = "faultleases.schism.dev";

async fn cluster() -> ApiServer {
    ApiServer::builder()
        .resource(
            ResourceType::namespaced("schism.dev", "v1alpha1", "chaoses", "Chaos").with_status(),
        )
        .resource(
            ResourceType::namespaced("schism.dev", "v1alpha1", "faultleases", "FaultLease")
                .with_status(),
        )
        .start()
        .await
}

/// Three Ready pods of a StatefulSet `etcd` on loopback, so probes reach a real listener.
fn add_pods(server: &ApiServer, count: usize) {
    server.apply_raw("statefulsets.apps", json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "etcd", "namespace": "demo"},
        "spec": {"selector": {"matchLabels": {"app": "etcd"}}, "serviceName": "", "template": {}}
    }));
    for i in 0..count {
        server.apply_raw("pods", json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("etcd-{i}"), "namespace": "demo", "uid": format!("pod-uid-{i}"), "labels": {"app": "etcd"}},
            "spec": {"nodeName": format!("node-{}", i % 2), "containers": []},
            "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
    }
}

/// Plays the node agents: applies new leases, and on deletion reverts and releases them.
fn simulated_agent(server: Arc<ApiServer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for lease in server.objects(LEASES) {
                let name = lease["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if lease["metadata"].get("deletionTimestamp").is_some() {
                    server.apply_raw(LEASES, json!({"metadata": {"name": name, "namespace": "demo", "finalizers": null}}));
                } else if lease.get("status").is_none_or(Value::is_null) {
                    server.apply_raw(LEASES, json!({"metadata": {"name": name, "namespace": "demo"}, "status": {"phase": "Applied", "mechanism": "nftables", "agent": lease["spec"]["pod"]["nodeName"]}}));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn start_controller(
    server: &ApiServer,
    radius: BlastRadius,
) -> (Arc<Context>, tokio::task::JoinHandle<()>) {
    let mut ctx = Context::new(
        server.client(),
        radius,
        Duration::from_secs(30),
        Arc::new(Metrics::default()),
    );
    ctx.agent_grace = Duration::from_millis(500);
    let ctx = Arc::new(ctx);
    let task = tokio::spawn(controller::run(Arc::clone(&ctx), Some("demo")));
    (ctx, task)
}

fn chaos(name: &str, yaml_spec: &str) -> Chaos {
    let mut chaos = Chaos::new(
        name,
        serde_yaml::from_str(yaml_spec).expect("test spec parses"),
    );
    chaos.metadata.namespace = Some("demo".into());
    chaos
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status(server: &ApiServer, name: &str) -> Value {
    server
        .get(CHAOSES, Some("demo"), name)
        .map(|c| c["status"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_runs_from_creation_to_verdict_with_leases_events_and_a_report() {
    let server = Arc::new(cluster().await);
    add_pods(&server, 3);
    let agent = simulated_agent(Arc::clone(&server));
    let probe_target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe_target.local_addr().unwrap().port();
    tokio::spawn(async move { while probe_target.accept().await.is_ok() {} });
    let (_ctx, controller_task) = start_controller(
        &server,
        BlastRadius {
            allowed_namespaces: vec!["demo".into()],
            max_pods: 5,
        },
    );

    let spec = format!(
        "target: {{statefulSet: etcd}}\nduration: 3s\nseed: 4\nfaults:\n- name: split\n  partition: {{shape: isolate-one}}\n  start: 500ms\n  duration: 1s\n- name: freeze\n  pause: {{targets: {{mode: all}}}}\n  start: 2s\n  duration: 500ms\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\nassertions: {{minAvailability: 0.9}}\n"
    );
    let chaoses: Api<Chaos> = Api::namespaced(server.client(), "demo");
    chaoses
        .create(&PostParams::default(), &chaos("exp", &spec))
        .await
        .unwrap();

    wait_for("phase Running", Duration::from_secs(10), || {
        status(&server, "exp")["phase"] == "Running"
    })
    .await;
    let seen_leases = Arc::new(std::sync::Mutex::new(0usize));
    {
        let server = Arc::clone(&server);
        let seen = Arc::clone(&seen_leases);
        tokio::spawn(async move {
            loop {
                let n = server.objects(LEASES).len();
                {
                    let mut max = seen.lock().unwrap();
                    *max = (*max).max(n);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    wait_for("phase Completed", Duration::from_secs(20), || {
        status(&server, "exp")["phase"] == "Completed"
    })
    .await;

    let status = status(&server, "exp");
    assert_eq!(status["verdict"], "Pass", "{status:#}");
    assert_eq!(status["seed"], 4);
    assert_eq!(status["observedGeneration"], 1);
    let faults = status["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{status:#}");
    assert!(
        faults
            .iter()
            .all(|f| f["detail"] == "nftables" && f.get("error").is_none()),
        "{faults:#?}"
    );
    assert_eq!(
        faults[1]["targets"].as_array().unwrap().len(),
        3,
        "pause hits all three pods"
    );
    let condition = |t: &str| {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap()
    };
    assert_eq!(condition("Completed")["status"], "True");
    assert_eq!(condition("Passed")["status"], "True");
    assert_eq!(condition("FaultsActive")["status"], "False");
    assert!(
        status["availability"]["probes"].as_i64().unwrap() > 20,
        "{status:#}"
    );
    // isolate-one on 3 pods cuts two links: two pods need rules... every pod that drops a peer.
    assert!(*seen_leases.lock().unwrap() >= 2, "leases were created");
    assert!(
        server.objects(LEASES).is_empty(),
        "every lease is gone after the run"
    );
    let report = server
        .get("configmaps", Some("demo"), "exp-report")
        .expect("report ConfigMap stored");
    assert!(
        report["data"]["result.json"]
            .as_str()
            .unwrap()
            .contains("\"Pass\"")
    );
    assert!(report["binaryData"]["report.html.gz"].is_string());
    assert_eq!(status["report"]["configMap"], "exp-report");
    let reasons: Vec<String> = server
        .objects("events.events.k8s.io")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    for expected in ["Started", "FaultInjected", "FaultHealed", "VerdictPass"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} event among {reasons:?}"
        );
    }
    controller_task.abort();
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_chaos_heals_its_faults_before_it_goes() {
    let server = Arc::new(cluster().await);
    add_pods(&server, 3);
    let agent = simulated_agent(Arc::clone(&server));
    let (_ctx, controller_task) = start_controller(&server, BlastRadius::default());
    let chaoses: Api<Chaos> = Api::namespaced(server.client(), "demo");
    chaoses.create(&PostParams::default(), &chaos("long", "target: {statefulSet: etcd}\nduration: 10m\nfaults:\n- loss: {percent: 50, targets: {mode: all}}\n  duration: 9m\n")).await.unwrap();
    wait_for("three applied leases", Duration::from_secs(10), || {
        let leases = server.objects(LEASES);
        leases.len() == 3 && leases.iter().all(|l| l["status"]["phase"] == "Applied")
    })
    .await;
    chaoses
        .delete("long", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the chaos to be gone", Duration::from_secs(10), || {
        server.get(CHAOSES, Some("demo"), "long").is_none()
    })
    .await;
    assert!(
        server.objects(LEASES).is_empty(),
        "no lease outlives its chaos"
    );
    controller_task.abort();
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_answers_does_not_block_deletion_past_the_deadline() {
    let server = Arc::new(cluster().await);
    add_pods(&server, 1);
    let (_ctx, controller_task) = start_controller(&server, BlastRadius::default());
    let chaoses: Api<Chaos> = Api::namespaced(server.client(), "demo");
    // No agent runs: the lease is never applied, and its finalizer is never released by one.
    chaoses
        .create(
            &PostParams::default(),
            &chaos(
                "orphan",
                "target: {statefulSet: etcd}\nduration: 2s\nfaults:\n- pause: {}\n  duration: 1s\n",
            ),
        )
        .await
        .unwrap();
    wait_for("a lease", Duration::from_secs(10), || {
        !server.objects(LEASES).is_empty()
    })
    .await;
    chaoses
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    // Deadline (about 1 s + 2 s of slack) plus the 0.5 s grace of this test's controller.
    wait_for("the chaos to be gone", Duration::from_secs(15), || {
        server.get(CHAOSES, Some("demo"), "orphan").is_none()
    })
    .await;
    assert!(server.objects(LEASES).is_empty());
    controller_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restart_mid_run_ends_inconclusive_with_faults_healed() {
    let server = Arc::new(cluster().await);
    add_pods(&server, 3);
    let agent = simulated_agent(Arc::clone(&server));
    let (ctx, first) = start_controller(&server, BlastRadius::default());
    let chaoses: Api<Chaos> = Api::namespaced(server.client(), "demo");
    chaoses.create(&PostParams::default(), &chaos("restart", "target: {statefulSet: etcd}\nduration: 1m\nfaults:\n- loss: {percent: 10}\n  duration: 50s\n")).await.unwrap();
    wait_for("an applied lease", Duration::from_secs(10), || {
        server
            .objects(LEASES)
            .iter()
            .any(|l| l["status"]["phase"] == "Applied")
    })
    .await;
    first.abort();
    let _ = first.await;
    drop(ctx);
    let (_ctx, second) = start_controller(&server, BlastRadius::default());
    wait_for("phase Completed", Duration::from_secs(10), || {
        status(&server, "restart")["phase"] == "Completed"
    })
    .await;
    let status = status(&server, "restart");
    assert_eq!(status["verdict"], "Inconclusive", "{status:#}");
    assert!(
        status["reasons"][0]
            .as_str()
            .unwrap()
            .contains("controller restarted"),
        "{status:#}"
    );
    wait_for("leases revoked", Duration::from_secs(5), || {
        server.objects(LEASES).is_empty()
    })
    .await;
    second.abort();
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pods_or_a_forbidden_namespace_is_rejected_with_a_condition_and_an_event() {
    let server = Arc::new(cluster().await);
    add_pods(&server, 3);
    let (_ctx, controller_task) = start_controller(
        &server,
        BlastRadius {
            allowed_namespaces: vec!["demo".into()],
            max_pods: 2,
        },
    );
    let chaoses: Api<Chaos> = Api::namespaced(server.client(), "demo");
    chaoses
        .create(
            &PostParams::default(),
            &chaos("wide", "target: {statefulSet: etcd}\nduration: 5s\n"),
        )
        .await
        .unwrap();
    wait_for("phase Error", Duration::from_secs(10), || {
        status(&server, "wide")["phase"] == "Error"
    })
    .await;
    let status = status(&server, "wide");
    let completed = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Completed")
        .unwrap()
        .clone();
    assert_eq!(completed["reason"], "BlastRadiusExceeded", "{status:#}");
    assert!(
        completed["message"].as_str().unwrap().contains("at most 2"),
        "{completed}"
    );
    let warnings: Vec<Value> = server
        .objects("events.events.k8s.io")
        .into_iter()
        .filter(|e| e["reason"] == "BlastRadiusExceeded")
        .collect();
    assert_eq!(warnings.len(), 1, "one Warning event");
    assert!(server.objects(LEASES).is_empty(), "nothing was touched");
    // A local target cannot run in a cluster: rejected as invalid, with the reason.
    chaoses
        .create(
            &PostParams::default(),
            &chaos(
                "local",
                "target: {local: {nodes: 1, command: x, ready: {tcp: {port: 1}}}}\nduration: 5s\n",
            ),
        )
        .await
        .unwrap();
    wait_for("phase Error", Duration::from_secs(10), || {
        status_of(&server, "local")["phase"] == "Error"
    })
    .await;
    assert!(
        status_of(&server, "local")["reasons"][0]
            .as_str()
            .unwrap()
            .contains("schism run")
    );
    controller_task.abort();
}

fn status_of(server: &ApiServer, name: &str) -> Value {
    status(server, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_pod_vanishing_mid_run_makes_the_verdict_inconclusive_naming_it() {
    let server = Arc::new(cluster().await);
    add_pods(&server, 3);
    let agent = simulated_agent(Arc::clone(&server));
    let (_ctx, controller_task) = start_controller(&server, BlastRadius::default());
    let chaoses: Api<Chaos> = Api::namespaced(server.client(), "demo");
    chaoses.create(&PostParams::default(), &chaos("vanish", "target: {statefulSet: etcd}\nduration: 3s\nfaults:\n- name: freeze\n  pause: {targets: {mode: all}}\n  start: 1500ms\n  duration: 500ms\n")).await.unwrap();
    wait_for("phase Running", Duration::from_secs(10), || {
        status(&server, "vanish")["phase"] == "Running"
    })
    .await;
    server.delete_raw("pods", Some("demo"), "etcd-1");
    wait_for("phase Completed", Duration::from_secs(20), || {
        status(&server, "vanish")["phase"] == "Completed"
    })
    .await;
    let status = status(&server, "vanish");
    assert_eq!(status["verdict"], "Inconclusive", "{status:#}");
    let error = status["faults"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("etcd-1") && error.contains("vanished"),
        "{status:#}"
    );
    assert!(
        status["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("etcd-1")),
        "{status:#}"
    );
    let reasons: Vec<String> = server
        .objects("events.events.k8s.io")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(reasons.iter().any(|r| r == "TargetVanished"), "{reasons:?}");
    assert!(
        server.objects(LEASES).is_empty(),
        "no lease was left behind"
    );
    controller_task.abort();
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_holds_the_leader_lease() {
    use k8s_openapi::api::coordination::v1::Lease;
    use schism::operator::leader::try_hold;
    let server = cluster().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "demo");
    let (mut seen_a, mut seen_b) = (None, None);
    assert!(
        try_hold(&leases, "schism-controller", "replica-a", &mut seen_a)
            .await
            .unwrap(),
        "the first replica takes a free lease"
    );
    assert!(
        !try_hold(&leases, "schism-controller", "replica-b", &mut seen_b)
            .await
            .unwrap(),
        "a live lease is respected"
    );
    assert!(
        try_hold(&leases, "schism-controller", "replica-a", &mut seen_a)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !try_hold(&leases, "schism-controller", "replica-b", &mut seen_b)
            .await
            .unwrap(),
        "a renewed lease is still respected"
    );
    let lease = server
        .get(
            "leases.coordination.k8s.io",
            Some("demo"),
            "schism-controller",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
}
