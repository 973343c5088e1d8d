//! The chart's RBAC for the controller and the runners, proven from both sides against the
//! authenticating API double:
//!
//! * sufficient: the real `schism controller` binary, started with the arguments and
//!   environment the chart's Deployment renders, and the runners it starts run whole
//!   experiments — to a verdict, deleted mid-run, with the runner SIGKILLed mid-fault — with
//!   no request refused, under the default values and under every shipped `ci/` value set;
//! * necessary: under the default values every verb of every rule granted to the
//!   controller's and the runner's ServiceAccounts is the only grant that allowed some
//!   request of that lifecycle, so dropping it refuses that request (403); one rule per
//!   component is also dropped for real, and the lifecycle then fails where it needs it.
//!
//! The node agent's RBAC is proven the same way in `agent_leases.rs`.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/manual_clock.rs"]
mod manual_clock;
#[path = "support/operator.rs"]
mod operator;

use std::process::Stdio;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use operator::{Cluster, ClusterOptions, JOBS, LEASES, NAMESPACE, chaos, probe_target, wait_for};
use schism::api::Chaos;
use schism::operator::targets::BlastRadius;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The chart's controller Deployment, as rendered: its container's arguments and the
/// namespace it runs in.
fn controller_args(manifests: &[Value]) -> Vec<String> {
    let deployment = manifests
        .iter()
        .find(|m| {
            m["kind"] == "Deployment"
                && m["metadata"]["labels"]["app.kubernetes.io/component"] == "controller"
        })
        .expect("the chart renders the controller Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    container["args"]
        .as_array()
        .expect("the controller container has arguments")
        .iter()
        .map(|a| {
            let arg = a.as_str().expect("arguments are strings");
            // The pod's port, here a loopback one.
            if arg.starts_with("--metrics-address=") {
                "--metrics-address=127.0.0.1:0".to_owned()
            } else {
                arg.to_owned()
            }
        })
        .collect()
}

/// The controller binary as the chart's Deployment runs it, as its ServiceAccount.
fn start_controller(cluster: &Cluster) -> Child {
    Command::new(env!("CARGO_BIN_EXE_schism"))
        .args(controller_args(&cluster.manifests))
        .env("KUBECONFIG", &cluster.controller_kubeconfig)
        .env("POD_NAME", "schism-controller-0")
        .env("POD_NAMESPACE", chart::RELEASE_NAMESPACE)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(cluster.dir.join("controller.stderr")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("the schism binary runs")
}

fn chaoses(cluster: &Cluster) -> Api<Chaos> {
    Api::namespaced(cluster.server.client(), NAMESPACE)
}

async fn verdict(cluster: &Cluster, name: &str, limit: Duration) -> Value {
    wait_for(&format!("{name} to complete"), limit, || {
        matches!(
            cluster.status(name)["phase"].as_str(),
            Some("Completed" | "Error")
        )
    })
    .await;
    cluster.status(name)
}

fn refused(cluster: &Cluster) -> Vec<String> {
    cluster
        .server
        .decisions()
        .iter()
        .filter(|d| !d.allowed)
        .map(|d| {
            format!(
                "{} {} {} {:?} in {:?}",
                d.user,
                d.attributes.verb,
                d.attributes.resource_path(),
                d.attributes.name,
                d.attributes.namespace
            )
        })
        .collect()
}

/// Three experiments in `demo`: one to its verdict (a partition, a pod killed every second
/// and re-cut when it comes back, the availability probe), one deleted while it runs, one whose runner is SIGKILLed while its
/// faults are applied. Returns the first one's status.
async fn lifecycle(cluster: &Cluster) -> Value {
    cluster.add_stateful_set("etcd", 3, 10);
    let port = probe_target().await;
    let mut controller = start_controller(cluster);

    let spec = format!(
        "target: {{statefulSet: etcd}}\nduration: 6s\nfaults:\n- partition: {{shape: isolate-one}}\n  start: 500ms\n  duration: 3s\n- podKill: {{gracePeriod: 0s, targets: {{mode: one}}}}\n  start: 1500ms\n  every: 1s\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\n"
    );
    chaoses(cluster)
        .create(&PostParams::default(), &chaos("full", &spec))
        .await
        .unwrap();
    let full = verdict(cluster, "full", Duration::from_secs(40)).await;

    let long = "target: {statefulSet: etcd}\nduration: 1m\nfaults:\n- loss: {percent: 10, targets: {mode: all}}\n  duration: 50s\n";
    chaoses(cluster)
        .create(&PostParams::default(), &chaos("stopped", long))
        .await
        .unwrap();
    wait_for("the stopped run's leases", Duration::from_secs(20), || {
        let leases = cluster.server.objects(LEASES);
        leases.len() == 3 && leases.iter().all(|l| l["status"]["phase"] == "Applied")
    })
    .await;
    chaoses(cluster)
        .delete("stopped", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the deleted Chaos to go", Duration::from_secs(30), || {
        cluster
            .server
            .get(operator::CHAOSES, Some(NAMESPACE), "stopped")
            .is_none()
            && cluster.server.objects(LEASES).is_empty()
    })
    .await;

    chaoses(cluster)
        .create(&PostParams::default(), &chaos("killed", long))
        .await
        .unwrap();
    wait_for("the killed run's leases", Duration::from_secs(20), || {
        let leases = cluster.server.objects(LEASES);
        leases.len() == 3 && leases.iter().all(|l| l["status"]["phase"] == "Applied")
    })
    .await;
    let job = cluster.status("killed")["runner"]["job"]
        .as_str()
        .expect("the status names the killed run's Job")
        .to_owned();
    cluster.kill_runner(&job);
    let killed = verdict(cluster, "killed", Duration::from_secs(30)).await;
    assert_eq!(killed["verdict"], "Inconclusive", "{killed:#}");
    wait_for(
        "the killed run's leases healed",
        Duration::from_secs(20),
        || cluster.server.objects(LEASES).is_empty(),
    )
    .await;

    // SIGTERM: the controller gives its leader Lease up as it stops.
    // SAFETY: kill has no memory-safety preconditions; the pid is our child.
    unsafe { libc::kill(controller.id().unwrap() as i32, libc::SIGTERM) };
    let stopped = tokio::time::timeout(Duration::from_secs(20), controller.wait())
        .await
        .expect("the controller stops on SIGTERM")
        .unwrap();
    assert!(stopped.success(), "the controller exited with {stopped}");
    full
}

async fn lifecycle_without_refusals(values: Option<&'static str>) -> Cluster {
    let cluster = Cluster::start(ClusterOptions {
        chart_values: values,
        replace_pods_after: Some(Duration::from_millis(500)),
        ..Default::default()
    })
    .await;
    let full = lifecycle(&cluster).await;
    assert!(
        matches!(full["verdict"].as_str(), Some("Pass" | "Fail")),
        "the experiment reached a verdict: {full:#}"
    );
    let refused = refused(&cluster);
    assert!(
        refused.is_empty(),
        "requests the chart's RBAC refused ({}):\n  {}",
        values.unwrap_or("default values"),
        refused.join("\n  ")
    );
    cluster
}

/// The paths the main lifecycle does not take, each on a cluster of its own with the
/// in-process controller (its agent grace is short): a runner image that cannot be pulled
/// (the controller deletes the stuck Job), a deleted Chaos whose leases no agent releases
/// (the controller removes their finalizers past the deadline), and a Deployment target.
/// Returns every RBAC decision made.
async fn side_paths() -> Vec<apiserver::auth::Decision> {
    let mut decisions = Vec::new();

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
    let pull = verdict(&cluster, "pull", Duration::from_secs(30)).await;
    assert_eq!(pull["verdict"], "Inconclusive", "{pull:#}");
    wait_for("the stuck Job deleted", Duration::from_secs(20), || {
        cluster.server.objects(JOBS).is_empty()
    })
    .await;
    controller.abort();
    decisions.extend(cluster.server.decisions());

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
    wait_for("the Chaos gone", Duration::from_secs(30), || {
        cluster
            .server
            .get(operator::CHAOSES, Some(NAMESPACE), "orphan")
            .is_none()
    })
    .await;
    controller.abort();
    decisions.extend(cluster.server.decisions());

    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_deployment("web", 2, 30);
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos(
                "web",
                "target: {deployment: web}\nduration: 2s\nfaults:\n- pause: {}\n  duration: 1s\n",
            ),
        )
        .await
        .unwrap();
    let web = verdict(&cluster, "web", Duration::from_secs(30)).await;
    assert!(
        matches!(web["verdict"].as_str(), Some("Pass" | "Fail")),
        "{web:#}"
    );
    controller.abort();
    decisions.extend(cluster.server.decisions());

    decisions.extend(schedule_path().await);
    let refused: Vec<_> = decisions.iter().filter(|d| !d.allowed).collect();
    assert!(refused.is_empty(), "{refused:#?}");
    decisions
}

/// A ChaosSchedule run by the schedule controller as the controller's ServiceAccount, on a
/// clock the test moves: a run made, then replaced by the next (created, deleted, the
/// schedule's status written). Returns every RBAC decision made.
async fn schedule_path() -> Vec<apiserver::auth::Decision> {
    use schism::operator::clock::Clock;
    use schism::operator::schedule;

    let cluster = Cluster::start(ClusterOptions {
        agent: false,
        run_runners: false,
        ..Default::default()
    })
    .await;
    let clock = manual_clock::ManualClock::new(jiff::Timestamp::now());
    let ctx = std::sync::Arc::new(schedule::Context {
        client: cluster
            .server
            .client_with_token(Some(&cluster.controller_token)),
        metrics: Default::default(),
        clock: clock.clone() as std::sync::Arc<dyn Clock>,
    });
    let controller = tokio::spawn(async move {
        schedule::run(ctx, None, futures::future::pending()).await;
    });
    let schedule: schism::api::ChaosSchedule = serde_json::from_value(json!({
        "apiVersion": "schism.dev/v1alpha1", "kind": "ChaosSchedule",
        "metadata": {"name": "every5", "namespace": NAMESPACE},
        "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Replace",
            "template": {"target": {"statefulSet": "etcd"}, "duration": "5s"}}
    }))
    .unwrap();
    Api::<schism::api::ChaosSchedule>::namespaced(cluster.server.client(), NAMESPACE)
        .create(&PostParams::default(), &schedule)
        .await
        .unwrap();
    let runs = || cluster.server.objects(operator::CHAOSES);
    let five = jiff::SignedDuration::from_mins(5);
    clock.advance(five);
    wait_for("the first run", Duration::from_secs(10), || {
        runs().len() == 1
    })
    .await;
    let first = runs()[0]["metadata"]["name"].clone();
    clock.advance(five);
    wait_for("the first run replaced", Duration::from_secs(10), || {
        let runs = runs();
        runs.len() == 1 && runs[0]["metadata"]["name"] != first
    })
    .await;
    controller.abort();
    cluster.server.decisions()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_values_grant_what_the_controller_and_runners_need_and_nothing_more() {
    let cluster = lifecycle_without_refusals(None).await;
    let mut decisions = cluster.server.decisions();
    decisions.extend(side_paths().await);
    for component in ["controller", "runner"] {
        let (account, namespaces) = chart::service_account(&cluster.manifests, component);
        let namespace = if component == "runner" {
            NAMESPACE.to_owned()
        } else {
            namespaces[0].clone()
        };
        let grants = chart::grants_to(&cluster.manifests, &namespace, &account);
        assert!(
            !grants.is_empty(),
            "the chart grants the {component} nothing"
        );
        let user = format!("system:serviceaccount:{namespace}:{account}");
        chart::assert_every_grant_needed(
            component,
            &chart::sole_grants(&grants, &decisions, &user),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_wide_install_grants_what_the_lifecycle_needs() {
    lifecycle_without_refusals(Some("ci/cluster-wide-values.yaml")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_limited_to_allowed_namespaces_grants_what_the_lifecycle_needs() {
    lifecycle_without_refusals(Some("ci/restricted-values.yaml")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_watching_one_namespace_grants_what_the_lifecycle_needs() {
    lifecycle_without_refusals(Some("ci/watch-namespace-values.yaml")).await;
}

/// Removes rule `index` of a stored ClusterRole.
fn drop_rule(cluster: &Cluster, role: &str, resource: &str, verb: &str) {
    let stored = cluster
        .server
        .get("clusterroles.rbac.authorization.k8s.io", None, role)
        .unwrap_or_else(|| panic!("no ClusterRole {role}"));
    let rules: Vec<Value> = stored["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            !(r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|x| x == verb))
        })
        .cloned()
        .collect();
    assert_eq!(
        rules.len() + 1,
        stored["rules"].as_array().unwrap().len(),
        "one rule of {role} grants {verb} {resource}"
    );
    cluster.server.apply_raw(
        "clusterroles.rbac.authorization.k8s.io",
        json!({"metadata": {"name": role}, "rules": rules}),
    );
}

/// A cluster whose ClusterRole `role` lacks the rule granting `verb` on `resource`, with the
/// chart's controller running and a two-second Chaos `name` created.
async fn without_rule(role: &str, resource: &str, verb: &str, name: &str) -> (Cluster, Child) {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    drop_rule(&cluster, role, resource, verb);
    cluster.add_stateful_set("etcd", 1, 10);
    let controller = start_controller(&cluster);
    chaoses(&cluster)
        .create(
            &PostParams::default(),
            &chaos(name, "target: {statefulSet: etcd}\nduration: 2s\n"),
        )
        .await
        .unwrap();
    (cluster, controller)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_rule_for_its_report_a_runner_fails_to_store_it_and_says_so() {
    let (cluster, _controller) =
        without_rule("schism-runner", "configmaps", "create", "unreported").await;
    let status = verdict(&cluster, "unreported", Duration::from_secs(30)).await;
    let refused = refused(&cluster);
    assert!(
        refused
            .iter()
            .any(|r| r.contains(":schism-runner ") && r.contains(" configmaps ")),
        "{refused:#?}"
    );
    assert!(
        status.to_string().contains("forbidden"),
        "the status says the report could not be stored: {status:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_rule_to_create_jobs_the_controller_starts_nothing_and_says_so() {
    let (cluster, _controller) =
        without_rule("schism-controller-targets", "jobs", "create", "unstarted").await;
    wait_for(
        "the controller to be refused a Job",
        Duration::from_secs(20),
        || {
            refused(&cluster)
                .iter()
                .any(|r| r.contains("schism-controller create jobs"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(cluster.server.objects(JOBS).is_empty());
    assert!(
        cluster
            .status("unstarted")
            .get("verdict")
            .is_none_or(Value::is_null),
        "no run happened: {:#}",
        cluster.status("unstarted")
    );
}
