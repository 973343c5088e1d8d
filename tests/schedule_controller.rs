//! The schedule controller against the API server double, with the chart's RBAC and a clock
//! the test holds still and moves by a cron interval: runs made on the tick with fresh seeds,
//! Forbid and Replace, history trimming, counts, the pass-rate metric.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/manual_clock.rs"]
mod manual_clock;
#[path = "support/operator.rs"]
mod operator;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use manual_clock::ManualClock;
use serde_json::{Value, json};

use operator::{CHAOSES, Cluster, ClusterOptions, NAMESPACE, wait_for};
use schism::api::ChaosSchedule;
use schism::operator::clock::Clock;
use schism::operator::metrics::Metrics;
use schism::operator::schedule::{self, Context};

const SCHEDULES: &str = "chaosschedules.schism.dev";

struct Harness {
    cluster: Cluster,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
    _controller: tokio::task::JoinHandle<()>,
}

/// The double with the chart's CRDs and RBAC, and the schedule controller running as the
/// controller's ServiceAccount, with a clock that starts now and moves five minutes a tick.
async fn start() -> Harness {
    let cluster = Cluster::start(ClusterOptions {
        agent: false,
        run_runners: false,
        ..Default::default()
    })
    .await;
    // Now, before any schedule exists: the first tick's due time lies after their creation.
    let clock = ManualClock::new(Timestamp::now());
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context {
        client: cluster
            .server
            .client_with_token(Some(&cluster.controller_token)),
        metrics: Arc::clone(&metrics),
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
    });
    let controller = tokio::spawn(async move {
        schedule::run(ctx, Some(NAMESPACE), futures::future::pending()).await;
    });
    Harness {
        cluster,
        clock,
        metrics,
        _controller: controller,
    }
}

async fn create_schedule(h: &Harness, name: &str, extra: Value) {
    let mut spec = json!({
        "schedule": "*/5 * * * *",
        "template": {"target": {"statefulSet": "etcd"}, "duration": "30s",
            "faults": [{"partition": {"shape": "isolate-one"}, "duration": "10s"}]}
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let schedule: ChaosSchedule = serde_json::from_value(json!({
        "apiVersion": "schism.dev/v1alpha1", "kind": "ChaosSchedule",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec
    }))
    .unwrap();
    Api::<ChaosSchedule>::namespaced(h.cluster.server.client(), NAMESPACE)
        .create(&PostParams::default(), &schedule)
        .await
        .expect("the API server admits the schedule");
}

fn runs_of(h: &Harness, schedule: &str) -> Vec<Value> {
    let mut runs: Vec<Value> = h
        .cluster
        .server
        .objects(CHAOSES)
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["schism.dev/schedule"] == schedule)
        .collect();
    runs.sort_by_key(|r| {
        r["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    runs
}

fn status_of(h: &Harness, schedule: &str) -> Value {
    h.cluster
        .server
        .get(SCHEDULES, Some(NAMESPACE), schedule)
        .map(|s| s["status"].clone())
        .unwrap_or(Value::Null)
}

/// Concludes a run as its runner would.
async fn conclude(h: &Harness, run: &str, verdict: &str) {
    let api: Api<schism::api::Chaos> = Api::namespaced(h.cluster.server.client(), NAMESPACE);
    api.patch_status(
        run,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Completed", "verdict": verdict,
            "observedGeneration": 1, "completionTime": Timestamp::now().to_string()}})),
    )
    .await
    .expect("the run's status is written");
}

async fn tick(h: &Harness) {
    h.clock.advance(SignedDuration::from_mins(5));
}

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn forbid_runs_on_the_tick_with_fresh_seeds_skips_while_a_run_runs_and_counts_every_verdict()
{
    let h = start().await;
    create_schedule(&h, "nightly", json!({})).await;
    wait_for("the schedule is read", LIMIT, || {
        status_of(&h, "nightly")["nextScheduleTime"].is_string()
    })
    .await;
    assert!(
        runs_of(&h, "nightly").is_empty(),
        "no run before the first tick"
    );

    tick(&h).await;
    wait_for("the first run", LIMIT, || runs_of(&h, "nightly").len() == 1).await;
    let first = runs_of(&h, "nightly").remove(0);
    let first_name = first["metadata"]["name"].as_str().unwrap().to_owned();
    let first_seed = first["spec"]["seed"]
        .as_i64()
        .expect("a run carries its seed");
    assert_eq!(
        first["metadata"]["ownerReferences"][0]["kind"],
        "ChaosSchedule"
    );
    assert_eq!(
        first["spec"]["faults"][0]["partition"]["shape"], "isolate-one",
        "the run is the template"
    );
    wait_for("the run in status", LIMIT, || {
        status_of(&h, "nightly")["active"] == first_name.as_str()
    })
    .await;

    // Due again while the first still runs: skipped.
    tick(&h).await;
    wait_for("the skipped run counted", LIMIT, || {
        status_of(&h, "nightly")["counts"]["skipped"] == 1
    })
    .await;
    assert_eq!(runs_of(&h, "nightly").len(), 1);

    conclude(&h, &first_name, "Pass").await;
    wait_for("the verdict counted", LIMIT, || {
        status_of(&h, "nightly")["counts"]["pass"] == 1
    })
    .await;
    let status = status_of(&h, "nightly");
    assert_eq!(status["lastVerdict"], "Pass");
    assert_eq!(status["passRate"], "100% (1/1)");
    assert_eq!(status["runs"][0]["seed"], first_seed);
    assert!(status["active"].is_null(), "{status}");

    tick(&h).await;
    wait_for("the second run", LIMIT, || {
        runs_of(&h, "nightly").len() == 2
    })
    .await;
    let second = runs_of(&h, "nightly")
        .into_iter()
        .find(|r| r["metadata"]["name"] != first_name.as_str())
        .unwrap();
    assert_ne!(second["spec"]["seed"], first_seed, "a fresh seed per run");
    conclude(&h, second["metadata"]["name"].as_str().unwrap(), "Fail").await;
    wait_for("both verdicts counted", LIMIT, || {
        status_of(&h, "nightly")["counts"]["fail"] == 1
    })
    .await;
    let status = status_of(&h, "nightly");
    assert_eq!(status["passRate"], "50% (1/2)");
    assert_eq!(status["lastVerdict"], "Fail");
    assert_eq!(status["counts"]["pass"], 1, "counted once: {status}");
    // The metric follows the status write that the test just saw.
    wait_for("the pass ratio in /metrics", LIMIT, || {
        let text = h.metrics.render();
        text.contains(r#"schism_schedule_pass_ratio{namespace="demo",schedule="nightly"} 0.5"#)
            && text.contains(
                r#"schism_schedule_runs{namespace="demo",schedule="nightly",verdict="Fail"} 1"#,
            )
    })
    .await;
}

#[tokio::test]
async fn replace_stops_the_running_run_and_the_history_keeps_its_limit() {
    let h = start().await;
    create_schedule(
        &h,
        "swap",
        json!({"concurrencyPolicy": "Replace", "historyLimit": 2}),
    )
    .await;
    wait_for("the schedule is read", LIMIT, || {
        status_of(&h, "swap")["nextScheduleTime"].is_string()
    })
    .await;
    tick(&h).await;
    wait_for("the first run", LIMIT, || runs_of(&h, "swap").len() == 1).await;
    let first = runs_of(&h, "swap")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    tick(&h).await;
    wait_for("the first run replaced", LIMIT, || {
        let runs = runs_of(&h, "swap");
        runs.len() == 1 && runs[0]["metadata"]["name"] != first.as_str()
    })
    .await;
    wait_for("the replacement counted", LIMIT, || {
        status_of(&h, "swap")["counts"]["replaced"] == 1
    })
    .await;
    // Three more runs, each concluded before the next tick: only two are kept.
    for _ in 0..3 {
        let current = runs_of(&h, "swap")
            .into_iter()
            .find(|r| r["status"]["phase"].is_null())
            .expect("a running run");
        let counted = status_of(&h, "swap")["counts"]["pass"]
            .as_i64()
            .unwrap_or(0);
        conclude(&h, current["metadata"]["name"].as_str().unwrap(), "Pass").await;
        let counted_now = || {
            status_of(&h, "swap")["counts"]["pass"]
                .as_i64()
                .unwrap_or(0)
        };
        for _ in 0..400 {
            if counted_now() == counted + 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            counted_now(),
            counted + 1,
            "{} {:#?}",
            status_of(&h, "swap"),
            runs_of(&h, "swap")
        );
        tick(&h).await;
        wait_for("the next run", LIMIT, || {
            runs_of(&h, "swap")
                .iter()
                .any(|r| r["status"]["phase"].is_null())
        })
        .await;
    }
    wait_for("the history trimmed", LIMIT, || {
        runs_of(&h, "swap")
            .iter()
            .filter(|r| r["status"]["phase"] == "Completed")
            .count()
            == 2
    })
    .await;
    wait_for("the status trimmed", LIMIT, || {
        let runs = status_of(&h, "swap")["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        runs.iter().filter(|r| r["verdict"].is_string()).count() == 2
    })
    .await;
    let status = status_of(&h, "swap");
    assert_eq!(
        status["counts"]["pass"], 3,
        "every run counted, kept or not: {status}"
    );
    assert_eq!(status["passRate"], "100% (3/3)");
}

#[tokio::test]
async fn a_suspended_or_invalid_schedule_makes_no_runs_and_says_why() {
    let h = start().await;
    create_schedule(&h, "paused", json!({"suspend": true})).await;
    create_schedule(&h, "broken", json!({"schedule": "every day at noon"})).await;
    wait_for("both schedules read", LIMIT, || {
        status_of(&h, "paused")["conditions"].is_array()
            && status_of(&h, "broken")["conditions"].is_array()
    })
    .await;
    tick(&h).await;
    tick(&h).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(runs_of(&h, "paused").is_empty() && runs_of(&h, "broken").is_empty());
    let broken = &status_of(&h, "broken")["conditions"][0];
    assert_eq!(broken["reason"], "InvalidSpec");
    assert!(
        broken["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.schedule"),
        "{broken}"
    );
    assert_eq!(
        status_of(&h, "paused")["conditions"][0]["reason"],
        "Suspended"
    );
    assert!(
        h.cluster
            .wait_for_event_notes("InvalidSpec")
            .await
            .iter()
            .any(|n| n.contains("spec.schedule")),
        "an Event says why"
    );
}
