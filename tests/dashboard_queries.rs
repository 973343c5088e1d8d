//! Every query of the chart's Grafana dashboard answers with data from a real Prometheus
//! (Debian's, on loopback) that scrapes the real `/metrics` of a controller and of a node
//! agent. The controller's metrics come from the real Chaos and schedule controllers, sharing
//! one `Metrics` as `schism controller` does, driven against the API server double: an
//! experiment concluded with a verdict, availability and a consistency check; one still
//! holding its faults; a schedule with a concluded run; a deletion mid-run, whose wait for the
//! runner to heal counts as failed reconciliations. The offline check
//! (`scripts/check_dashboard.py`) evaluates the queries over synthetic series only; this proves
//! they fit what the processes really expose.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/kv_service.rs"]
mod kv_service;
#[path = "support/manual_clock.rs"]
mod manual_clock;
#[path = "support/operator.rs"]
mod operator;
#[path = "support/prometheus.rs"]
mod prometheus_server;
mod support;

use prometheus_server::PrometheusServer;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use manual_clock::ManualClock;
use operator::{Cluster, ClusterOptions, NAMESPACE, chaos};
use schism::api::{Chaos, ChaosSchedule};
use schism::operator::agent::AgentMetrics;
use schism::operator::clock::Clock;
use schism::operator::metrics::serve;
use schism::operator::schedule;
use schism::operator::targets::BlastRadius;
use serde_json::{Value, json};

const SCHEDULES: &str = "chaosschedules.schism.dev";

/// What Grafana puts in for the dashboard's variables: `.*` for the All choice of
/// `$namespace` and `$chaos` (their `allValue`), and a rate interval of a few scrapes.
const VARIABLES: &[(&str, &str)] = &[
    ("$namespace", ".*"),
    ("$chaos", ".*"),
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "5m"),
];

/// Debian's Prometheus on loopback, scraping each job's target every second; killed and its
/// directory removed on drop, also when the test fails.
struct Prometheus(PrometheusServer);

impl Prometheus {
    fn start(targets: &[(&str, SocketAddr)]) -> Prometheus {
        let targets: Vec<(&str, String)> = targets
            .iter()
            .map(|(job, address)| (*job, address.to_string()))
            .collect();
        Prometheus(PrometheusServer::start(
            "dashboard-prometheus",
            &targets,
            "1s",
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0.base_url())
    }

    fn log(&self) -> String {
        self.0.log()
    }

    /// The answer of an instant query, as Prometheus's JSON.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Value {
        let response = http
            .get(self.url("/api/v1/query"))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("Prometheus answers {expr}: {e}\n{}", self.log()));
        response.json().await.unwrap_or_else(|e| {
            panic!("Prometheus answers {expr} in JSON: {e}");
        })
    }

    /// How many times `job`'s target was scraped in the last ten minutes, and whether its
    /// last scrape succeeded.
    async fn scrapes(&self, http: &reqwest::Client, job: &str) -> (u64, bool) {
        let count = self
            .query(http, &format!("count_over_time(up{{job=\"{job}\"}}[10m])"))
            .await;
        let up = self.query(http, &format!("up{{job=\"{job}\"}}")).await;
        let value = |answer: &Value| {
            answer["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
        };
        (value(&count).unwrap_or(0.0) as u64, value(&up) == Some(1.0))
    }

    /// Waits until `job`'s target was scraped `at_least` times and its last scrape succeeded;
    /// returns the count.
    async fn wait_for_scrapes(
        &self,
        http: &reqwest::Client,
        job: &str,
        at_least: u64,
        deadline: Instant,
    ) -> u64 {
        loop {
            let (count, up) = self.scrapes(http, job).await;
            if up && count >= at_least {
                return count;
            }
            if Instant::now() >= deadline {
                let targets = match http.get(self.url("/api/v1/targets")).send().await {
                    Ok(response) => response.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                panic!(
                    "Prometheus scraped {job} {count} times (last up: {up}), not {at_least}:\n{targets}\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Every query of the dashboard: each panel's targets and each annotation, named by where it
/// stands, with the variables as Grafana sends them.
fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"]
        .as_array()
        .expect("the dashboard has panels")
    {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let place = format!(
                "panel {} {:?} target {}",
                panel["id"], panel["title"], target["refId"]
            );
            let expr = target["expr"].as_str().unwrap_or_default();
            queries.push((place, expr.to_owned()));
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            queries.push((
                format!("annotation {:?}", annotation["name"]),
                expr.to_owned(),
            ));
        }
    }
    for (place, expr) in &mut queries {
        assert!(!expr.trim().is_empty(), "{place} has no query");
        for (variable, value) in VARIABLES {
            *expr = expr.replace(variable, value);
        }
        // A variable this test does not know would reach Prometheus as a syntax error; name
        // it instead.
        assert!(
            !expr.contains('$'),
            "{place} uses a variable this test does not fill in: {expr}"
        );
    }
    queries
}

fn chaoses(cluster: &Cluster) -> Api<Chaos> {
    Api::namespaced(cluster.server.client(), NAMESPACE)
}

fn condition_true(status: &Value, type_: &str) -> bool {
    status["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

fn schedule_status(cluster: &Cluster, name: &str) -> Value {
    cluster
        .server
        .get(SCHEDULES, Some(NAMESPACE), name)
        .map(|s| s["status"].clone())
        .unwrap_or(Value::Null)
}

/// `/metrics` of a served endpoint, for the failure message.
async fn scraped(http: &reqwest::Client, address: SocketAddr) -> String {
    match http.get(format!("http://{address}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(e) => format!("(no answer: {e})"),
    }
}

const LIMIT: Duration = Duration::from_secs(40);

/// Waits for `check`; when it does not hold in time, fails with what every Chaos and every
/// runner says, which is where a stuck run shows why.
async fn settle(cluster: &Cluster, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > LIMIT {
            let mut story = String::new();
            for chaos in cluster.server.objects(operator::CHAOSES) {
                story.push_str(&format!(
                    "Chaos {}: {:#}\n",
                    chaos["metadata"]["name"], chaos["status"]
                ));
            }
            for runner in cluster.runner_records() {
                story.push_str(&format!(
                    "runner {} (exit {:?}):\n{}\n",
                    runner.pod,
                    runner.exit,
                    cluster.stderr_of(&runner)
                ));
            }
            panic!("timed out after {LIMIT:?} waiting for {what}\n{story}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_series_from_the_real_metrics_endpoints() {
    support::require(
        "every_dashboard_query_returns_series_from_the_real_metrics_endpoints",
        &["prometheus"],
    );
    let queries = dashboard_queries(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/schism/dashboards/schism.json"),
    );
    assert!(
        queries.iter().any(|(w, _)| w.starts_with("annotation")),
        "the dashboard's annotations have no query"
    );

    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("kv", 3, 10);
    cluster.add_stateful_set("held", 2, 20);
    cluster.add_stateful_set("nightly", 2, 30);
    cluster.add_stateful_set("gone", 2, 40);
    // One register behind every pod's address, answering at once: the history checks fast.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let kv_port = listener.local_addr().unwrap().port();
    tokio::spawn(kv_service::serve(
        listener,
        kv_service::Store::default(),
        kv_service::Lateness::default(),
    ));

    // The two controllers of `schism controller`, with its one Metrics behind one /metrics.
    let (ctx, _stop, _controller) = cluster.controller(BlastRadius::default());
    let clock = ManualClock::new(Timestamp::now());
    let schedules = Arc::new(schedule::Context {
        client: cluster
            .server
            .client_with_token(Some(&cluster.controller_token)),
        metrics: Arc::clone(&ctx.metrics),
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
    });
    let schedule_controller = tokio::spawn(async move {
        schedule::run(schedules, Some(NAMESPACE), futures::future::pending()).await;
    });
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let controller_address = serve(loopback, Arc::clone(&ctx.metrics)).await.unwrap();
    let agent = Arc::new(AgentMetrics::default());
    let agent_address = serve(loopback, Arc::clone(&agent)).await.unwrap();
    // Started before the experiments so that its start-up overlaps with them.
    let prometheus =
        Prometheus::start(&[("controller", controller_address), ("agent", agent_address)]);
    let started = Instant::now();

    let verdict_spec = format!(
        r#"target: {{statefulSet: kv}}
duration: 3s
faults:
- name: split
  partition: {{shape: isolate-one}}
  start: 500ms
  duration: 1s
workload:
  client: http
  model: cas-register
  port: {kv_port}
  keys: 1
  concurrency: 4
  rate: 50
  timeout: 500ms
  http:
    read: {{method: GET, path: "/kv/{{key}}", valuePointer: /value}}
    write: {{method: PUT, path: "/kv/{{key}}", body: '{{"value": "{{value}}"}}'}}
    cas: {{method: POST, path: "/kv/{{key}}/cas", body: '{{"expect": "{{expected}}", "value": "{{value}}"}}', successStatus: [200], mismatchStatus: [409]}}
availability: {{tcp: {{port: {kv_port}}}, interval: 100ms}}
assertions: {{consistency: linearizable, minAvailability: 0.9}}
"#
    );
    // Its fault lasts well past the test, so it is held while Prometheus scrapes.
    let held_spec = "target: {statefulSet: held}\nduration: 10m\nfaults:\n- loss: {percent: 10, targets: {mode: all}}\n  duration: 9m\n";
    let gone_spec =
        "target: {statefulSet: gone}\nduration: 10m\nfaults:\n- pause: {}\n  duration: 9m\n";
    for (name, spec) in [
        ("verdict", verdict_spec.as_str()),
        ("held", held_spec),
        ("gone", gone_spec),
    ] {
        chaoses(&cluster)
            .create(&PostParams::default(), &chaos(name, spec))
            .await
            .unwrap_or_else(|e| panic!("the API server admits Chaos {name}: {e}"));
    }
    let schedule: ChaosSchedule = serde_json::from_value(json!({
        "apiVersion": "schism.dev/v1alpha1", "kind": "ChaosSchedule",
        "metadata": {"name": "nightly", "namespace": NAMESPACE},
        "spec": {"schedule": "*/5 * * * *",
            "template": {"target": {"statefulSet": "nightly"}, "duration": "1s",
                "faults": [{"partition": {"shape": "isolate-one"}, "duration": "500ms"}]}}
    }))
    .unwrap();
    Api::<ChaosSchedule>::namespaced(cluster.server.client(), NAMESPACE)
        .create(&PostParams::default(), &schedule)
        .await
        .expect("the API server admits the schedule");
    settle(&cluster, "the schedule is read", || {
        schedule_status(&cluster, "nightly")["nextScheduleTime"].is_string()
    })
    .await;
    // The cron tick, at once; its run then goes through the Chaos controller and a runner.
    clock.advance(SignedDuration::from_mins(5));

    // Deleted while its fault is held: the controller waits for the runner to heal, and each
    // reconciliation that finds it still there fails as `reverting`.
    settle(&cluster, "gone's fault applied", || {
        condition_true(&cluster.status("gone"), "FaultsActive")
    })
    .await;
    chaoses(&cluster)
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    settle(&cluster, "a failed reconciliation counted", || {
        ctx.metrics
            .render()
            .contains("schism_reconcile_errors_total{")
    })
    .await;

    settle(&cluster, "verdict to conclude", || {
        cluster.status("verdict")["verdict"].is_string()
    })
    .await;
    let status = cluster.status("verdict");
    assert!(
        status["availability"]["ratio"].is_number()
            && status["consistency"]["checkMillis"].is_number(),
        "the concluded run has availability and a consistency check: {status:#}"
    );
    settle(&cluster, "held's faults active", || {
        condition_true(&cluster.status("held"), "FaultsActive")
    })
    .await;
    settle(&cluster, "a concluded scheduled run counted", || {
        let counts = &schedule_status(&cluster, "nightly")["counts"];
        ["pass", "fail", "inconclusive"]
            .iter()
            .any(|v| counts[v].as_i64().unwrap_or(0) > 0)
    })
    .await;

    // What the agent's reconciler counts as it applies and reverts leases, and a revert that
    // failed: its public counters, as the node agent moves them.
    agent.applied.inc();
    agent.applied.inc();
    agent.reverted.inc();
    agent.failed("revert");
    agent.held.set(1);
    agent.set_ready(true);
    ctx.metrics.set_ready(true);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Prometheus may still be starting: until it answers at all.
        if let Ok(response) = http.get(prometheus.url("/-/ready")).send().await
            && response.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never became ready:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut baseline = Vec::new();
    for job in ["controller", "agent"] {
        let count = prometheus.wait_for_scrapes(&http, job, 1, deadline).await;
        baseline.push((job, count));
    }
    // Counters that move between scrapes, as on a busy node, so the rates over them are above
    // zero; and a change to `held` that the controller reconciles, timed by its histogram.
    agent.applied.inc();
    agent.reverted.inc();
    chaoses(&cluster)
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/touched": "1"}}})),
        )
        .await
        .unwrap();
    // Two more scrapes of each target: every series has two samples or more, so rate() has
    // an answer.
    for (job, before) in baseline {
        prometheus
            .wait_for_scrapes(&http, job, before + 2, deadline)
            .await;
    }
    assert!(
        condition_true(&cluster.status("held"), "FaultsActive"),
        "held's faults were healed before the queries ran: {:#}",
        cluster.status("held")
    );

    let mut failures = Vec::new();
    for (place, expr) in &queries {
        let answer = prometheus.query(&http, expr).await;
        let has_series = answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        if answer["status"] != "success" || !has_series {
            failures.push(format!("{place}: {expr}\n  answer: {answer}"));
        }
    }
    if !failures.is_empty() {
        let names = prometheus
            .query(&http, "count by (__name__) ({__name__=~\".+\"})")
            .await;
        let mut names: Vec<&str> = names["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["metric"]["__name__"].as_str())
            .collect();
        names.sort_unstable();
        panic!(
            "{} of {} dashboard queries returned no series:\n{}\n\nmetric names Prometheus scraped: {names:?}\n\ncontroller /metrics:\n{}\nagent /metrics:\n{}",
            failures.len(),
            queries.len(),
            failures.join("\n"),
            scraped(&http, controller_address).await,
            scraped(&http, agent_address).await,
        );
    }
    eprintln!(
        "{} dashboard queries answered, {:.1} s after Prometheus started",
        queries.len(),
        started.elapsed().as_secs_f64()
    );

    schedule_controller.abort();
}
