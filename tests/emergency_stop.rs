//! The emergency stop against the API server double with the chart's RBAC: `schism halt`
//! (the binary, as an administrator) makes a running experiment heal every fault at once and
//! conclude Inconclusive saying why; an experiment made meanwhile waits with a `Halted`
//! condition and Event; `schism halt --lift` lets it run.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/operator.rs"]
mod operator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use operator::{
    Cluster, ClusterOptions, LEASES, NAMESPACE, chaos, runner_template, status_condition, wait_for,
};
use schism::api::Chaos;
use schism::operator::controller::{self, Context};
use schism::operator::halt;
use schism::operator::metrics::Metrics;
use schism::operator::targets::BlastRadius;

/// `schism halt ARGS` as an administrator would run it against the double.
fn schism_halt(cluster: &Cluster, args: &[&str]) {
    let kubeconfig = cluster.dir.join("admin.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{}\"}}\nusers:\n- name: admin\n  user: {{token: \"{}\"}}\ncontexts:\n- name: double\n  context: {{cluster: double, user: admin}}\ncurrent-context: double\n",
            cluster.server.url(),
            cluster.server.admin_token().expect("the double authenticates")
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_schism"))
        .arg("halt")
        .args(["--namespace", chart::RELEASE_NAMESPACE])
        .args(args)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("the schism binary runs");
    assert!(
        output.status.success(),
        "schism halt {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_heals_running_experiments_at_once_and_holds_new_ones_until_lifted() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let client = cluster
        .server
        .client_with_token(Some(&cluster.controller_token));
    let mut ctx = Context::new(
        client.clone(),
        BlastRadius::default(),
        runner_template(),
        Arc::new(Metrics::default()),
    );
    ctx.halt = Some(halt::watch_halt(client, chart::RELEASE_NAMESPACE));
    let ctx = Arc::new(ctx);
    let controller = tokio::spawn(controller::run(
        Arc::clone(&ctx),
        Some(NAMESPACE),
        futures::future::pending(),
    ));
    let chaoses: Api<Chaos> = Api::namespaced(cluster.server.client(), NAMESPACE);
    let long = "target: {statefulSet: etcd}\nduration: 2m\nfaults:\n- loss: {percent: 10, targets: {mode: all}}\n  duration: 110s\n";
    chaoses
        .create(&PostParams::default(), &chaos("running", long))
        .await
        .unwrap();
    wait_for("the faults applied", Duration::from_secs(30), || {
        let leases = cluster.server.objects(LEASES);
        leases.len() == 3 && leases.iter().all(|l| l["status"]["phase"] == "Applied")
    })
    .await;

    let halted_at = Instant::now();
    schism_halt(&cluster, &["--reason", "incident 7 in prod"]);
    wait_for("every fault healed", Duration::from_secs(10), || {
        cluster.server.objects(LEASES).is_empty()
    })
    .await;
    let healed_in = halted_at.elapsed();
    println!("halt to every lease gone: {healed_in:?}");
    wait_for("the halted run's verdict", Duration::from_secs(30), || {
        cluster.status("running")["phase"] == "Completed"
    })
    .await;
    let status = cluster.status("running");
    assert_eq!(status["verdict"], "Inconclusive", "{status:#}");
    let reason = status["reasons"][0].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("halted by the emergency stop at") && reason.contains("incident 7"),
        "{status:#}"
    );
    assert!(
        cluster
            .wait_for_event_notes("Halted")
            .await
            .iter()
            .any(|n| n.contains("incident 7")),
        "the runner says so in an Event"
    );

    // Made while the stop is in force: it waits, saying why.
    chaoses
        .create(&PostParams::default(), &chaos("waiting", long))
        .await
        .unwrap();
    wait_for("the Halted condition", Duration::from_secs(10), || {
        status_condition(&cluster.status("waiting"), "Halted")["status"] == "True"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        cluster
            .server
            .objects(operator::JOBS)
            .iter()
            .all(|j| j["metadata"]["name"]
                .as_str()
                .is_some_and(|n| !n.starts_with("waiting"))),
        "no runner starts under the stop"
    );
    let held = status_condition(&cluster.status("waiting"), "Halted");
    assert!(
        held["message"]
            .as_str()
            .unwrap_or_default()
            .contains("incident 7"),
        "{held}"
    );

    schism_halt(&cluster, &["--lift"]);
    wait_for("the waiting run starts", Duration::from_secs(20), || {
        cluster.status("waiting")["phase"] == "Running"
    })
    .await;
    assert_eq!(
        status_condition(&cluster.status("waiting"), "Halted")["status"],
        "False"
    );
    controller.abort();
}
