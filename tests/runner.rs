//! `schism runner`'s own rules, against the API server double: a deletion while the history is
//! being checked cancels the check and the runner exits; a generation is never run twice (a
//! runner that finds it started by a pod that is gone concludes it and heals its faults, and
//! waits while that pod still runs); a user's ConfigMap is never taken over by a report.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/operator.rs"]
mod operator;
mod support;

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

/// A `redis-server` of the test's own on loopback, stopped when dropped.
struct RedisServer {
    port: u16,
    child: std::process::Child,
}

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { port, child }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards every connection to Redis on `port`, holding back every third answer for
/// 300 ms.
async fn slow_proxy(listener: tokio::net::TcpListener, port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answers = Arc::new(std::sync::atomic::AtomicU64::new(0));
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            continue;
        };
        let answers = Arc::clone(&answers);
        tokio::spawn(async move {
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = server_read.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                let k = answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k.is_multiple_of(3) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if client_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_chaos_while_its_history_is_checked_cancels_the_check_and_the_runner_exits() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("kv", 3, 30);
    // One real Redis behind every pod, reached through a proxy that holds back one answer
    // in three for 300 ms: the client gives up on it, though the append took effect. A
    // single key's string with thousands of appends of unknown outcome, by 64 clients at
    // once: slow to check, whatever the checker learns about registers.
    support::require(
        "deleting_a_chaos_while_its_history_is_checked",
        &["redis-server"],
    );
    let redis = RedisServer::start();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(slow_proxy(listener, redis.port));
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    let spec = format!(
        r#"target: {{statefulSet: kv}}
duration: 8s
workload:
  client: redis
  model: kv
  port: {port}
  keys: 1
  concurrency: 64
  rate: 2000
  timeout: 100ms
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
