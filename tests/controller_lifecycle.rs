//! The real kube-runtime controller turns Chaos objects into runner Jobs against the API
//! server double, and each Job runs as the real `schism runner` binary (a simulated kubelet
//! starts it, kills it, stops it): from creation to verdict, a runner killed mid-run, deletion
//! mid-run, a controller restarted or doubled mid-run, a lagging cache, re-injection into a
//! recreated pod, and the blast radius.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use operator::{
    CHAOSES, Cluster, ClusterOptions, JOBS, LEASES, NAMESPACE, chaos, probe_target, wait_for,
};
use schism::api::Chaos;
use schism::operator::targets::BlastRadius;
use serde_json::{Value, json};

fn chaoses(cluster: &Cluster) -> Api<Chaos> {
    Api::namespaced(cluster.server.client(), NAMESPACE)
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

fn job_names(cluster: &Cluster) -> Vec<String> {
    cluster
        .server
        .objects(JOBS)
        .iter()
        .map(|j| {
            j["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

async fn completed(cluster: &Cluster, name: &str, limit: Duration) -> Value {
    wait_for(&format!("{name} to complete"), limit, || {
        matches!(
            cluster.status(name)["phase"].as_str(),
            Some("Completed" | "Error")
        )
    })
    .await;
    cluster.status(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_runs_from_creation_to_verdict_in_a_runner_job() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let port = probe_target().await;
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius {
        allowed_namespaces: vec![NAMESPACE.into()],
        max_pods: 5,
    });
    let spec = format!(
        "target: {{statefulSet: etcd}}\nduration: 3s\nseed: 4\nfaults:\n- name: split\n  partition: {{shape: isolate-one}}\n  start: 500ms\n  duration: 1s\n- name: freeze\n  pause: {{targets: {{mode: all}}}}\n  start: 2s\n  duration: 500ms\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\nassertions: {{minAvailability: 0.9}}\n"
    );
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("exp", &spec))
        .await
        .unwrap();
    wait_for("phase Running", Duration::from_secs(20), || {
        cluster.status("exp")["phase"] == "Running"
    })
    .await;
    let status = completed(&cluster, "exp", Duration::from_secs(40)).await;

    assert_eq!(status["verdict"], "Pass", "{status:#}");
    assert_eq!(status["seed"], 4);
    assert_eq!(status["observedGeneration"], 1);
    let job = &job_names(&cluster)[0];
    assert_eq!(status["runner"]["job"], job.as_str(), "{status:#}");
    let runners = cluster.runner_records();
    assert_eq!(runners.len(), 1, "one runner per generation: {runners:?}");
    assert_eq!(status["runner"]["pod"], runners[0].pod.as_str());
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
    assert_eq!(condition(&status, "Completed")["status"], "True");
    assert_eq!(condition(&status, "Passed")["status"], "True");
    assert_eq!(condition(&status, "FaultsActive")["status"], "False");
    assert!(
        status["availability"]["probes"].as_i64().unwrap() > 20,
        "{status:#}"
    );

    // The runner owns the run's fields, the controller the Job's name.
    let object = cluster.server.get(CHAOSES, Some(NAMESPACE), "exp").unwrap();
    let managers: Vec<&str> = object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"schism-runner") && managers.contains(&"schism-controller"),
        "{managers:?}"
    );

    assert!(
        cluster.applied.lock().unwrap().len() >= 5,
        "isolate-one needs 2 leases, pause 3"
    );
    wait_for("every lease gone", Duration::from_secs(5), || {
        cluster.server.objects(LEASES).is_empty()
    })
    .await;
    let report = cluster
        .server
        .get("configmaps", Some(NAMESPACE), "exp-report")
        .expect("report ConfigMap stored");
    assert!(
        report["data"]["result.json"]
            .as_str()
            .unwrap()
            .contains("\"Pass\"")
    );
    assert!(report["binaryData"]["report.html.gz"].is_string());
    assert_eq!(status["report"]["configMap"], "exp-report");

    // The verdict's event follows the verdict; the runner exits after both.
    wait_for("the runner to exit", Duration::from_secs(10), || {
        cluster.runner_records()[0].exit.is_some()
    })
    .await;
    assert_eq!(cluster.runner_records()[0].exit, Some(0));
    // Two faults, two events with their own text: none folded into the other's series.
    let injected = cluster.wait_for_event_notes("FaultInjected").await;
    assert!(
        injected.iter().any(|n| n.starts_with("split (partition)")),
        "{injected:?}"
    );
    assert!(
        injected.iter().any(|n| n.starts_with("freeze (pause)")),
        "{injected:?}"
    );
    let healed = cluster.event_notes("FaultHealed");
    assert!(
        healed.iter().any(|n| n.contains("split")) && healed.iter().any(|n| n.contains("freeze")),
        "{healed:?}"
    );
    for reason in ["RunnerCreated", "Started", "VerdictPass"] {
        assert_eq!(
            cluster.wait_for_event_notes(reason).await.len(),
            1,
            "one {reason} event"
        );
    }
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_run_is_concluded_inconclusive_with_the_reason_and_its_faults_healed() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos("killed", "target: {statefulSet: etcd}\nduration: 1m\nfaults:\n- loss: {percent: 10, targets: {mode: all}}\n  duration: 50s\n"),
        )
        .await
        .unwrap();
    wait_for("three applied leases", Duration::from_secs(20), || {
        let leases = cluster.server.objects(LEASES);
        leases.len() == 3 && leases.iter().all(|l| l["status"]["phase"] == "Applied")
    })
    .await;
    let job = job_names(&cluster)[0].clone();
    cluster.kill_runner(&job);
    let status = completed(&cluster, "killed", Duration::from_secs(20)).await;
    assert_eq!(status["verdict"], "Inconclusive", "{status:#}");
    let reason = status["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("exited with code 137 (SIGKILL)"),
        "{status:#}"
    );
    assert_eq!(condition(&status, "Completed")["reason"], "RunnerFailed");
    wait_for("leases healed", Duration::from_secs(10), || {
        cluster.server.objects(LEASES).is_empty()
    })
    .await;
    // What the runner recorded stays; it is never run a second time.
    assert!(status["seed"].is_i64(), "{status:#}");
    wait_for("the RunnerFailed event", Duration::from_secs(5), || {
        !cluster.event_notes("RunnerFailed").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cluster.runner_records().len(), 1);
    assert_eq!(job_names(&cluster).len(), 1);
    assert_eq!(cluster.event_notes("RunnerFailed").len(), 1);
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_chaos_stops_its_runner_and_heals_before_it_goes() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("long", "target: {statefulSet: etcd}\nduration: 10m\nfaults:\n- loss: {percent: 50, targets: {mode: all}}\n  duration: 9m\n"))
        .await
        .unwrap();
    wait_for("three applied leases", Duration::from_secs(20), || {
        let leases = cluster.server.objects(LEASES);
        leases.len() == 3 && leases.iter().all(|l| l["status"]["phase"] == "Applied")
    })
    .await;
    chaoses(&cluster)
        .delete("long", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the chaos to be gone", Duration::from_secs(30), || {
        cluster
            .server
            .get(CHAOSES, Some(NAMESPACE), "long")
            .is_none()
    })
    .await;
    assert!(
        cluster.server.objects(LEASES).is_empty(),
        "no lease outlives its chaos"
    );
    let runner = &cluster.runner_records()[0];
    assert_eq!(
        runner.exit,
        Some(143),
        "the runner stopped on SIGTERM: {}",
        cluster.stderr_of(runner)
    );
    cluster.wait_for_event_notes("Stopped").await;
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_answers_does_not_block_deletion_past_the_deadline() {
    let cluster = Cluster::start(ClusterOptions {
        agent: false,
        ..Default::default()
    })
    .await;
    cluster.add_stateful_set("etcd", 1, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos(
                "orphan",
                "target: {statefulSet: etcd}\nduration: 2s\nfaults:\n- pause: {}\n  duration: 1s\n",
            ),
        )
        .await
        .unwrap();
    wait_for("a lease", Duration::from_secs(20), || {
        !cluster.server.objects(LEASES).is_empty()
    })
    .await;
    chaoses(&cluster)
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    // Deadline (about 1 s + 2 s of slack) plus the 0.5 s grace of this test's controller.
    wait_for("the chaos to be gone", Duration::from_secs(30), || {
        cluster
            .server
            .get(CHAOSES, Some(NAMESPACE), "orphan")
            .is_none()
    })
    .await;
    assert!(cluster.server.objects(LEASES).is_empty());
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_mid_run_changes_nothing_about_the_experiment() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let port = probe_target().await;
    let (first_ctx, _first_stop, first) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("restart", &format!("target: {{statefulSet: etcd}}\nduration: 4s\nfaults:\n- loss: {{percent: 10}}\n  start: 500ms\n  duration: 3s\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\nassertions: {{minAvailability: 0.9}}\n")))
        .await
        .unwrap();
    wait_for("an applied lease", Duration::from_secs(20), || {
        cluster
            .server
            .objects(LEASES)
            .iter()
            .any(|l| l["status"]["phase"] == "Applied")
    })
    .await;
    first.abort();
    let _ = first.await;
    drop(first_ctx);
    let (_ctx, _stop, second) = cluster.controller(BlastRadius::default());
    let status = completed(&cluster, "restart", Duration::from_secs(30)).await;
    assert_eq!(
        status["verdict"], "Pass",
        "the run went on without its controller: {status:#}"
    );
    assert_eq!(cluster.runner_records().len(), 1);
    assert_eq!(job_names(&cluster).len(), 1);
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_at_once_make_one_job_and_one_run() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let port = probe_target().await;
    let (_a, _stop_a, first) = cluster.controller(BlastRadius::default());
    let (_b, _stop_b, second) = cluster.controller(BlastRadius::default());
    for name in ["one", "two"] {
        chaoses(&cluster)
            .create(&PostParams::default(), &chaos(name, &format!("target: {{statefulSet: etcd}}\nduration: 2s\nfaults:\n- pause: {{}}\n  start: 500ms\n  duration: 1s\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\n")))
            .await
            .unwrap();
    }
    for name in ["one", "two"] {
        let status = completed(&cluster, name, Duration::from_secs(30)).await;
        assert_eq!(status["verdict"], "Pass", "{status:#}");
    }
    assert_eq!(
        job_names(&cluster).len(),
        2,
        "one Job per Chaos: {:?}",
        job_names(&cluster)
    );
    assert_eq!(cluster.runner_records().len(), 2, "one run per generation");
    first.abort();
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_cache_never_loses_status_fields_or_runs_a_generation_twice() {
    let cluster = Cluster::start(ClusterOptions {
        watch_lag: Some(Duration::from_millis(1500)),
        ..Default::default()
    })
    .await;
    cluster.add_stateful_set("etcd", 3, 10);
    let port = probe_target().await;
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("lag", &format!("target: {{statefulSet: etcd}}\nduration: 3s\nfaults:\n- partition: {{shape: isolate-one}}\n  start: 500ms\n  duration: 1s\n- pause: {{}}\n  start: 2s\n  duration: 500ms\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\n")))
        .await
        .unwrap();
    // Watch the status as the API server holds it: once a field of the claim is there, it
    // stays there.
    let lost: Arc<Mutex<Vec<String>>> = Arc::default();
    let sampler = {
        let server = Arc::clone(&cluster.server);
        let lost = Arc::clone(&lost);
        tokio::spawn(async move {
            let mut seen: BTreeMap<&str, Value> = BTreeMap::new();
            loop {
                let status = server
                    .get(CHAOSES, Some(NAMESPACE), "lag")
                    .map(|c| c["status"].clone())
                    .unwrap_or(Value::Null);
                for field in ["seed", "startTime", "observedGeneration"] {
                    match (seen.get(field), status.get(field)) {
                        (Some(before), now) if now != Some(before) => lost
                            .lock()
                            .unwrap()
                            .push(format!("{field}: {before} -> {now:?}")),
                        (None, Some(value)) if !value.is_null() => {
                            seen.insert(field, value.clone());
                        }
                        _ => {}
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let status = completed(&cluster, "lag", Duration::from_secs(40)).await;
    assert_eq!(status["verdict"], "Pass", "{status:#}");
    // The stale cache still shows the run going for a while: nothing may restart it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sampler.abort();
    assert!(
        lost.lock().unwrap().is_empty(),
        "status fields changed or vanished: {:?}",
        lost.lock().unwrap()
    );
    assert_eq!(cluster.status("lag")["verdict"], "Pass");
    assert_eq!(cluster.runner_records().len(), 1, "one run");
    assert_eq!(job_names(&cluster).len(), 1);
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_generation_supersedes_the_running_one_and_runs_once() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("edit", "target: {statefulSet: etcd}\nduration: 5m\nfaults:\n- loss: {percent: 10}\n  duration: 4m\n"))
        .await
        .unwrap();
    wait_for("an applied lease", Duration::from_secs(20), || {
        cluster
            .server
            .objects(LEASES)
            .iter()
            .any(|l| l["status"]["phase"] == "Applied")
    })
    .await;
    chaoses(&cluster)
        .patch(
            "edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"duration": "2s", "faults": []}})),
        )
        .await
        .unwrap();
    wait_for("generation 2 to complete", Duration::from_secs(40), || {
        let status = cluster.status("edit");
        status["observedGeneration"] == 2 && status["phase"] == "Completed"
    })
    .await;
    let runners = cluster.runner_records();
    assert_eq!(runners.len(), 2, "one runner per generation");
    wait_for("the first runner to stop", Duration::from_secs(20), || {
        cluster.runner_records()[0].exit.is_some()
    })
    .await;
    let first = &cluster.runner_records()[0];
    assert_eq!(first.exit, Some(143), "{}", cluster.stderr_of(first));
    wait_for("the old leases healed", Duration::from_secs(10), || {
        cluster.server.objects(LEASES).is_empty()
    })
    .await;
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_partitioned_member_is_cut_again_from_both_sides_when_it_comes_back() {
    let cluster = Cluster::start(ClusterOptions {
        replace_pods_after: Some(Duration::from_millis(500)),
        ..Default::default()
    })
    .await;
    cluster.add_stateful_set("etcd", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("reinject", "target: {statefulSet: etcd}\nduration: 8s\nfaults:\n- name: split\n  partition: {shape: groups, groups: [[etcd-0], [etcd-1, etcd-2]]}\n  start: 500ms\n  duration: 7s\n- name: kill\n  podKill: {gracePeriod: 0s, targets: {mode: all}}\n  start: 2s\n"))
        .await
        .unwrap();
    let status = completed(&cluster, "reinject", Duration::from_secs(40)).await;
    let healed_at = Instant::now();
    let pods: BTreeMap<String, Value> = cluster
        .server
        .objects("pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "etcd")
        .map(|p| (p["metadata"]["name"].as_str().unwrap().to_owned(), p))
        .collect();
    let ip = |name: &str| pods[name]["status"]["podIP"].as_str().unwrap().to_owned();
    let uid = |name: &str| pods[name]["metadata"]["uid"].as_str().unwrap().to_owned();
    assert!(
        ip("etcd-0").starts_with("127.0.1."),
        "every member was recreated: {pods:#?}"
    );
    let applied = cluster.applied.lock().unwrap().clone();
    let expected: [(&str, Vec<String>); 3] = [
        ("etcd-0", vec![ip("etcd-1"), ip("etcd-2")]),
        ("etcd-1", vec![ip("etcd-0")]),
        ("etcd-2", vec![ip("etcd-0")]),
    ];
    for (pod, drops) in expected {
        let mine: Vec<_> = applied.iter().filter(|a| a.pod == pod).collect();
        assert!(
            mine.len() >= 2,
            "{pod}: applied once, then again after it came back: {mine:#?}"
        );
        let last = mine.last().unwrap();
        assert_eq!(
            last.pod_uid,
            uid(pod),
            "{pod}'s last lease is for the new pod"
        );
        let mut got = last.drop_peers.clone();
        got.sort();
        let mut want = drops.clone();
        want.sort();
        assert_eq!(got, want, "{pod} drops its peers' new addresses");
        assert!(last.at < healed_at);
    }
    let split = &status["faults"][0];
    assert!(
        split["detail"].as_str().unwrap().contains("recreated"),
        "{status:#}"
    );
    cluster.wait_for_event_notes("FaultReinjected").await;
    wait_for("every lease gone", Duration::from_secs(10), || {
        cluster.server.objects(LEASES).is_empty()
    })
    .await;
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pods_a_forbidden_namespace_or_no_runner_account_is_rejected_with_a_condition_and_an_event()
 {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius {
        allowed_namespaces: vec![NAMESPACE.into()],
        max_pods: 2,
    });
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos("wide", "target: {statefulSet: etcd}\nduration: 5s\n"),
        )
        .await
        .unwrap();
    let status = completed(&cluster, "wide", Duration::from_secs(10)).await;
    assert_eq!(status["phase"], "Error");
    let completed_condition = condition(&status, "Completed");
    assert_eq!(
        completed_condition["reason"], "BlastRadiusExceeded",
        "{status:#}"
    );
    assert!(
        completed_condition["message"]
            .as_str()
            .unwrap()
            .contains("at most 2")
    );
    assert_eq!(
        cluster
            .wait_for_event_notes("BlastRadiusExceeded")
            .await
            .len(),
        1,
        "one Warning event"
    );
    assert!(
        cluster.server.objects(JOBS).is_empty(),
        "no runner was started"
    );

    // A local target cannot run in a cluster: rejected as invalid, with the reason.
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos(
                "local",
                "target: {local: {nodes: 1, command: x, ready: {tcp: {port: 1}}}}\nduration: 5s\n",
            ),
        )
        .await
        .unwrap();
    let status = completed(&cluster, "local", Duration::from_secs(10)).await;
    assert!(
        status["reasons"][0]
            .as_str()
            .unwrap()
            .contains("schism run"),
        "{status:#}"
    );

    // Without the runner's ServiceAccount the namespace is not prepared: say how to.
    cluster
        .server
        .delete_raw("serviceaccounts", Some(NAMESPACE), "schism-runner");
    cluster.add_stateful_set("small", 1, 20);
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos("unprepared", "target: {statefulSet: small}\nduration: 5s\n"),
        )
        .await
        .unwrap();
    let status = completed(&cluster, "unprepared", Duration::from_secs(10)).await;
    assert_eq!(
        condition(&status, "Completed")["reason"],
        "RunnerNotInstalled",
        "{status:#}"
    );
    assert!(
        status["reasons"][0]
            .as_str()
            .unwrap()
            .contains("kubectl create rolebinding")
    );
    assert!(cluster.server.objects(JOBS).is_empty());
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_pod_vanishing_mid_run_makes_the_verdict_inconclusive_naming_it() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(&PostParams::default(), &chaos("vanish", "target: {statefulSet: etcd}\nduration: 5s\nfaults:\n- name: freeze\n  pause: {targets: {mode: all}}\n  start: 3500ms\n  duration: 500ms\n"))
        .await
        .unwrap();
    // The runner claims the run (phase Running) before it resolves the targets; the Started
    // event comes after, once the three pods are its targets.
    wait_for("the window to open", Duration::from_secs(20), || {
        !cluster.event_notes("Started").is_empty()
    })
    .await;
    cluster.server.delete_now("pods", Some(NAMESPACE), "etcd-1");
    let status = completed(&cluster, "vanish", Duration::from_secs(30)).await;
    assert_eq!(status["verdict"], "Inconclusive", "{status:#}");
    let error = status["faults"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("etcd-1") && error.contains("vanished"),
        "{status:#}"
    );
    cluster.wait_for_event_notes("TargetVanished").await;
    assert!(
        cluster.server.objects(LEASES).is_empty(),
        "no lease was left behind"
    );
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_holds_the_leader_lease_and_a_released_one_is_taken_at_once() {
    use k8s_openapi::api::coordination::v1::Lease;
    use schism::operator::leader::{release, try_hold};
    let cluster = Cluster::start(ClusterOptions::default()).await;
    // As the controller's ServiceAccount, in the release namespace its Role covers.
    let client = cluster
        .server
        .client_with_token(Some(&cluster.controller_token));
    let leases: Api<Lease> = Api::namespaced(client.clone(), chart::RELEASE_NAMESPACE);
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
    release(
        client.clone(),
        chart::RELEASE_NAMESPACE,
        "schism-controller",
        "replica-b",
    )
    .await;
    assert!(
        !try_hold(&leases, "schism-controller", "replica-b", &mut seen_b)
            .await
            .unwrap(),
        "only the holder releases"
    );
    release(
        client.clone(),
        chart::RELEASE_NAMESPACE,
        "schism-controller",
        "replica-a",
    )
    .await;
    assert!(
        try_hold(&leases, "schism-controller", "replica-b", &mut seen_b)
            .await
            .unwrap(),
        "a released lease is free at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_image_cannot_be_pulled_is_stopped_and_the_run_concluded_saying_why() {
    let cluster = Cluster::start(ClusterOptions {
        image_pull_fails: true,
        ..Default::default()
    })
    .await;
    cluster.add_stateful_set("etcd", 1, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos("pull", "target: {statefulSet: etcd}\nduration: 5s\n"),
        )
        .await
        .unwrap();
    let status = completed(&cluster, "pull", Duration::from_secs(20)).await;
    assert_eq!(status["verdict"], "Inconclusive", "{status:#}");
    let reason = status["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("ImagePullBackOff") && reason.contains("schism:test"),
        "{status:#}"
    );
    wait_for(
        "the stuck Job to be deleted",
        Duration::from_secs(10),
        || cluster.server.objects(JOBS).is_empty(),
    )
    .await;
    assert!(cluster.runner_records().is_empty(), "no runner ever ran");
    controller.abort();
}
