//! The postgres workload's password in a cluster: the runner reads it from the Secret the
//! spec names — which the chart lets it read only by name (`runner.secrets`), only in the
//! namespaces runners run in — and connects to a real PostgreSQL that demands it. The
//! password appears in no status, report, Event or log. A Secret the chart does not name is
//! refused by RBAC, and the run says which field and what to grant.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/operator.rs"]
mod operator;
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use operator::{Cluster, ClusterOptions, NAMESPACE, chaos};
use schism::api::Chaos;
use serde_json::json;
use support::postgres::{Auth, PostgresServer};

const PASSWORD: &str = "pg-s3cret-for-the-runner";
const PORT: u16 = 15432;

fn postgres_chaos(name: &str, secret: &str) -> Chaos {
    chaos(
        name,
        &format!(
            r#"target: {{statefulSet: pg}}
duration: 3s
workload:
  client: postgres
  model: list-append
  port: {PORT}
  keys: 3
  concurrency: 4
  rate: 200
  timeout: 2s
  postgres:
    user: postgres
    isolation: serializable
    password:
      secretKeyRef: {{name: {secret}, key: password}}
assertions:
  consistency: strict-serializable
"#
        ),
    )
}

/// Runs the runner for `name` to its end; returns its stderr.
async fn run(cluster: &Cluster, name: &str) -> String {
    let (mut child, stderr) = cluster.spawn_runner(name, &format!("{name}-runner"));
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the runner ends")
        .unwrap();
    let log = std::fs::read_to_string(stderr).unwrap_or_default();
    assert!(status.success(), "the runner failed:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_reads_the_named_secret_connects_with_it_and_never_shows_it() {
    support::require("runner credentials", &["runuser"]);
    let server = PostgresServer::start(
        "runner",
        None,
        Ipv4Addr::new(127, 0, 0, 40),
        PORT,
        Auth::Password(PASSWORD),
    );
    let cluster = Cluster::start(ClusterOptions {
        chart_set: vec!["runner.secrets={pg-credentials}"],
        ..Default::default()
    })
    .await;
    cluster.add_stateful_set("pg", 1, 40);
    cluster.server.apply_raw(
        "secrets",
        json!({"metadata": {"name": "pg-credentials", "namespace": NAMESPACE},
               "data": {"password": base64(PASSWORD)}}),
    );
    cluster.server.apply_raw(
        "secrets",
        json!({"metadata": {"name": "other", "namespace": NAMESPACE},
               "data": {"password": base64(PASSWORD)}}),
    );
    let chaoses: Api<Chaos> = Api::namespaced(cluster.server.client(), NAMESPACE);
    chaoses
        .create(
            &PostParams::default(),
            &postgres_chaos("granted", "pg-credentials"),
        )
        .await
        .unwrap();
    let log = run(&cluster, "granted").await;
    let status = cluster.status("granted");
    assert_eq!(
        status["verdict"],
        "Pass",
        "{status:#}\nrunner:\n{log}\nserver:\n{}",
        server.log()
    );
    let consistency = &status["consistency"];
    assert_eq!(consistency["result"], "Satisfied", "{consistency:#}");
    assert!(
        consistency["operations"].as_i64().unwrap() > 100,
        "{consistency:#}"
    );

    // The Secret the chart does not name is refused by the API server, and the run says why.
    chaoses
        .create(&PostParams::default(), &postgres_chaos("refused", "other"))
        .await
        .unwrap();
    let refused_log = run(&cluster, "refused").await;
    let refused = cluster.status("refused");
    assert_eq!(refused["phase"], "Error", "{refused:#}");
    let reasons = refused["reasons"].to_string();
    assert!(
        reasons.contains("spec.workload.postgres.password.secretKeyRef")
            && reasons.contains("runner.secrets"),
        "{reasons}"
    );
    let decisions = cluster.server.decisions();
    let secret_gets: Vec<(bool, String, String)> = decisions
        .iter()
        .filter(|d| d.attributes.resource == "secrets")
        .map(|d| {
            (
                d.allowed,
                d.attributes.verb.clone(),
                d.attributes.name.clone(),
            )
        })
        .collect();
    assert!(
        secret_gets.contains(&(true, "get".into(), "pg-credentials".into())),
        "{secret_gets:?}"
    );
    assert!(
        secret_gets.contains(&(false, "get".into(), "other".into())),
        "{secret_gets:?}"
    );
    assert!(
        secret_gets.iter().all(|(_, verb, _)| verb == "get"),
        "only gets of Secrets: {secret_gets:?}"
    );

    // Nowhere to be seen: status, the report ConfigMap, Events, the runners' logs.
    let mut shown = vec![
        ("status".to_owned(), status.to_string()),
        ("refused status".to_owned(), refused.to_string()),
        ("runner log".to_owned(), log),
        ("refused runner log".to_owned(), refused_log),
    ];
    for event in cluster.events() {
        shown.push(("event".into(), event.to_string()));
    }
    for map in cluster.server.objects("configmaps") {
        shown.push(("config map".into(), map.to_string()));
    }
    for (what, text) in shown {
        assert!(!text.contains(PASSWORD), "the password is in the {what}");
        assert!(
            !text.contains(&base64(PASSWORD)),
            "the password is in the {what}"
        );
    }
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
