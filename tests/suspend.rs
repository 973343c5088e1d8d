//! `spec.suspend` against the API server double with the chart's RBAC, real runners and the
//! simulated node agent: suspending a running Chaos heals its faults and holds its window,
//! resuming gives the faults back; neither edit is a new run (one Job, the generation
//! followed); on a finished Chaos the edit changes nothing but the generation the outcome
//! stands for.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/operator.rs"]
mod operator;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use operator::{
    Cluster, ClusterOptions, JOBS, LEASES, NAMESPACE, chaos, status_condition, wait_for,
};
use schism::api::Chaos;
use schism::operator::targets::BlastRadius;
use serde_json::json;

fn applied(cluster: &Cluster) -> bool {
    let leases = cluster.server.objects(LEASES);
    leases.len() == 3 && leases.iter().all(|l| l["status"]["phase"] == "Applied")
}

async fn set_suspend(api: &Api<Chaos>, name: &str, suspend: bool) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": suspend}})),
    )
    .await
    .expect("the edit is admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_heals_and_holds_the_window_resume_gives_the_faults_back_and_neither_is_a_new_run()
{
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    let api: Api<Chaos> = Api::namespaced(cluster.server.client(), NAMESPACE);
    let spec = "target: {statefulSet: etcd}\nduration: 8s\nfaults:\n- name: lossy\n  loss: {percent: 10, targets: {mode: all}}\n  start: 1s\n  duration: 6s\n";
    api.create(&PostParams::default(), &chaos("paused", spec))
        .await
        .unwrap();
    wait_for("the faults applied", Duration::from_secs(30), || {
        applied(&cluster)
    })
    .await;
    let started = Instant::now();

    set_suspend(&api, "paused", true).await;
    wait_for(
        "every fault healed on suspend",
        Duration::from_secs(10),
        || cluster.server.objects(LEASES).is_empty(),
    )
    .await;
    let followed = || {
        let status = cluster.status("paused");
        status["observedGeneration"] == 2
            && status_condition(&status, "Suspended")["status"] == "True"
    };
    for _ in 0..400 {
        if followed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        followed(),
        "the generation followed: {:#}",
        cluster.status("paused")
    );
    // Held for longer than the fault had left: the clock is stopped, nothing comes back.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        cluster.server.objects(LEASES).is_empty(),
        "no fault while suspended"
    );
    assert_eq!(cluster.status("paused")["phase"], "Running");

    set_suspend(&api, "paused", false).await;
    wait_for(
        "the faults given back on resume",
        Duration::from_secs(10),
        || applied(&cluster),
    )
    .await;
    wait_for("the verdict", Duration::from_secs(40), || {
        cluster.status("paused")["phase"] == "Completed"
    })
    .await;
    let status = cluster.status("paused");
    assert!(
        started.elapsed() > Duration::from_secs(8),
        "the window ran past its 8 s by the pause"
    );
    assert_eq!(status["observedGeneration"], 3, "{status:#}");
    assert!(
        matches!(status["verdict"].as_str(), Some("Pass" | "Fail")),
        "{status:#}"
    );
    let lossy = &status["faults"][0];
    assert!(
        lossy["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("suspended at"),
        "{lossy:#}"
    );
    assert_eq!(status_condition(&status, "Suspended")["status"], "False");
    let jobs = cluster.server.objects(JOBS);
    assert_eq!(jobs.len(), 1, "one run, one Job: {jobs:#?}");
    assert!(
        cluster.event_notes("Suspended").len() == 1 && cluster.event_notes("Resumed").len() == 1
    );

    // A finished Chaos: nothing to pause, no new run; the outcome stands for the new generation.
    let verdict = status["verdict"].clone();
    set_suspend(&api, "paused", true).await;
    wait_for("the outcome carried over", Duration::from_secs(10), || {
        cluster.status("paused")["observedGeneration"] == 4
    })
    .await;
    let after = cluster.status("paused");
    assert_eq!(after["verdict"], verdict);
    assert_eq!(after["phase"], "Completed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.server.objects(JOBS).len(), 1, "no new run");
    assert!(
        cluster
            .wait_for_event_notes("OutcomeStands")
            .await
            .iter()
            .any(|n| n.contains("no new run")),
        "an Event says so"
    );
    controller.abort();
}
