//! `schism runner`'s own rules, against the API server double: a deletion while the history is
//! being checked cancels the check and the runner exits; a generation is never run twice (a
//! runner that finds it started by a pod that is gone concludes it and heals its faults, and
//! waits while that pod still runs); a user's ConfigMap is never taken over by a report.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/kv_service.rs"]
mod kv_service;
#[path = "support/operator.rs"]
mod operator;

use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use operator::{CHAOSES, Cluster, ClusterOptions, LEASES, NAMESPACE, chaos, wait_for};
use schism::api::Chaos;
use schism::operator::targets::BlastRadius;
use serde_json::json;

fn chaoses(cluster: &Cluster) -> Api<Chaos> {
    Api::namespaced(cluster.server.client(), NAMESPACE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_chaos_while_its_history_is_checked_cancels_the_check_and_the_runner_exits() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("kv", 3, 30);
    // One register behind every pod; one answer in four comes too late for the client and
    // its write was lost: a history full of unknown outcomes that never took effect, which
    // failed comparisons keep from being dropped — slow to check.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(kv_service::serve(
        listener,
        kv_service::Store::default(),
        kv_service::Lateness {
            percent: 35,
            by: Duration::from_millis(300),
            lose_late_writes: true,
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
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("check", &spec))
        .await
        .unwrap();
    wait_for("phase Checking", Duration::from_secs(30), || {
        cluster.status("check")["phase"] == "Checking"
    })
    .await;
    // Well inside the check, which needs several seconds for this history.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cluster.status("check")["phase"],
        "Checking",
        "the check ended too soon to test its cancellation: {:#}",
        cluster.status("check")
    );
    chaoses(&cluster)
        .delete("check", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the runner to exit", Duration::from_secs(30), || {
        cluster
            .runner_records()
            .first()
            .is_some_and(|r| r.exit.is_some())
    })
    .await;
    let runner = &cluster.runner_records()[0];
    let stderr = cluster.stderr_of(runner);
    assert_eq!(runner.exit, Some(143), "stopped, not concluded: {stderr}");
    assert!(stderr.contains("cancelling the check"), "{stderr}");
    assert!(
        stderr.contains("the check was stopped"),
        "the search itself stopped: {stderr}"
    );
    wait_for("the chaos to be gone", Duration::from_secs(30), || {
        cluster
            .server
            .get(CHAOSES, Some(NAMESPACE), "check")
            .is_none()
    })
    .await;
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_started_by_a_pod_that_is_gone_is_concluded_with_its_faults_healed_never_rerun()
 {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("lost", "target: {statefulSet: etcd}\nduration: 1m\nfaults:\n- pause: {}\n  duration: 50s\n"))
        .await
        .unwrap();
    let object = cluster
        .server
        .get(CHAOSES, Some(NAMESPACE), "lost")
        .unwrap();
    let uid = object["metadata"]["uid"].as_str().unwrap().to_owned();
    // As a runner pod that died mid-run leaves it: the run claimed, a lease still there.
    cluster.server.apply_raw(CHAOSES, json!({"metadata": {"name": "lost", "namespace": NAMESPACE},
        "status": {"phase": "Running", "observedGeneration": 1, "seed": 9, "runner": {"pod": "lost-aaaa-g1-r1"}}}));
    cluster.server.apply_raw(LEASES, json!({"metadata": {"name": "lost-lease", "namespace": NAMESPACE,
        "labels": {"schism.dev/chaos-uid": uid, "schism.dev/generation": "1"},
        "finalizers": ["schism.dev/agent-revert"]},
        "spec": {"chaos": "lost", "faultId": "x1", "pod": {"name": "etcd-0", "uid": "u", "nodeName": "node-0"},
            "fault": {"pause": {}}, "deadline": "2099-01-01T00:00:00Z"}}));
    let (mut child, stderr) = cluster.spawn_runner("lost", "lost-aaaa-g1-r2");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the runner ends")
        .unwrap();
    let log = std::fs::read_to_string(stderr).unwrap_or_default();
    assert!(status.success(), "{log}");
    let status = cluster.status("lost");
    assert_eq!(status["verdict"], "Inconclusive", "{status:#}");
    assert!(
        status["reasons"][0]
            .as_str()
            .unwrap()
            .contains("lost-aaaa-g1-r1"),
        "{status:#}"
    );
    assert!(
        cluster.server.objects(LEASES).is_empty(),
        "its faults were healed"
    );
    assert!(
        cluster.applied.lock().unwrap().is_empty(),
        "and nothing was injected again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_leaves_a_generation_to_the_pod_that_started_it_while_that_pod_runs() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 1, 10);
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos("busy", "target: {statefulSet: etcd}\nduration: 1m\n"),
        )
        .await
        .unwrap();
    cluster.server.apply_raw(
        CHAOSES,
        json!({"metadata": {"name": "busy", "namespace": NAMESPACE},
        "status": {"phase": "Running", "observedGeneration": 1, "runner": {"pod": "first"}}}),
    );
    cluster.server.apply_raw(
        "pods",
        json!({"metadata": {"name": "first", "namespace": NAMESPACE},
        "spec": {"nodeName": "node-runner", "containers": []}, "status": {"phase": "Running"}}),
    );
    let (mut child, stderr) = cluster.spawn_runner("busy", "second");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    assert_eq!(
        cluster.status("busy")["phase"],
        "Running",
        "and touches nothing"
    );
    cluster.server.delete_now("pods", Some(NAMESPACE), "first");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the runner ends")
        .unwrap();
    assert!(status.success());
    assert_eq!(cluster.status("busy")["verdict"], "Inconclusive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_config_map_named_like_the_report_is_never_taken_over() {
    let cluster = Arc::new(Cluster::start(ClusterOptions::default()).await);
    cluster.add_stateful_set("etcd", 1, 10);
    cluster.server.apply_raw(
        "configmaps",
        json!({"metadata": {"name": "mine-report", "namespace": NAMESPACE},
        "data": {"owner": "a user"}}),
    );
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos("mine", "target: {statefulSet: etcd}\nduration: 1s\n"),
        )
        .await
        .unwrap();
    let (mut child, stderr) = cluster.spawn_runner("mine", "mine-runner");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the runner ends")
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(stderr).unwrap_or_default()
    );
    let status = cluster.status("mine");
    assert_eq!(status["verdict"], "Pass");
    assert!(status.get("report").is_none(), "{status:#}");
    assert!(
        status["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("mine-report exists")),
        "{status:#}"
    );
    let config_map = cluster
        .server
        .get("configmaps", Some(NAMESPACE), "mine-report")
        .unwrap();
    assert_eq!(config_map["data"], json!({"owner": "a user"}));
}
