//! Prometheus assertions and abort guards end to end: `schism run` against a local Redis
//! node, with a real Prometheus (Debian's) on loopback scraping a small exporter this test
//! controls. The steady state gates the experiment (nothing is injected when it does not
//! hold), a breach during the window fails the verdict and says when and how much, a query
//! that cannot be answered is Inconclusive, never a pass; and a guard that trips heals every
//! fault at once and ends the run Fail, saying which guard and when.

#[path = "support/prometheus.rs"]
mod prometheus_server;
mod support;

use prometheus_server::PrometheusServer;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// An exporter serving `schism_test_errors VALUE` on `/metrics`, VALUE set by the test.
struct Exporter {
    port: u16,
    errors: Arc<AtomicU64>,
}

impl Exporter {
    fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let errors = Arc::new(AtomicU64::new(0));
        let value = Arc::clone(&errors);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let body = format!(
                    "# TYPE schism_test_errors gauge\nschism_test_errors {}\n",
                    value.load(Ordering::Relaxed)
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter { port, errors }
    }

    fn set(&self, errors: u64) {
        self.errors.store(errors, Ordering::Relaxed);
    }
}

/// Debian's Prometheus on loopback, scraping the exporter every 500 ms; killed on drop.
struct Prometheus(PrometheusServer);

impl Prometheus {
    fn start(exporter: &Exporter) -> Prometheus {
        let targets = [("exporter", format!("127.0.0.1:{}", exporter.port))];
        let prometheus = Prometheus(PrometheusServer::start("prometheus", &targets, "500ms"));
        prometheus.wait_for_series();
        prometheus
    }

    fn url(&self) -> String {
        self.0.base_url()
    }

    /// Until the exporter's series is queryable.
    fn wait_for_series(&self) {
        self.wait_for_answer("the exporter's series", |answer| {
            answer.contains("schism_test_errors")
        });
    }

    /// Until Prometheus has scraped the exporter's current `value` (a set value shows only
    /// after the next scrape).
    fn wait_for_value(&self, value: u64) {
        let wanted = format!("\"{value}\"]");
        self.wait_for_answer(&format!("schism_test_errors = {value}"), |answer| {
            answer.contains(&wanted)
        });
    }

    fn wait_for_answer(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = Command::new("python3")
                .args([
                    "-c",
                    "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())",
                    &format!("{}/api/v1/query?query=schism_test_errors", self.url()),
                ])
                .output();
            if let Ok(out) = answer
                && done(&String::from_utf8_lossy(&out.stdout))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never had {what}:\n{}",
                self.0.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A one-node Redis experiment with a pause of the node and the given Prometheus assertions.
fn manifest(name: &str, assertions: &str) -> String {
    format!(
        r#"apiVersion: schism.dev/v1alpha1
kind: Chaos
metadata:
  name: {name}
spec:
  target:
    local:
      nodes: 1
      command: redis-server --bind {{ip}} --port 6379 --save '' --appendonly no
      ready: {{tcp: {{port: 6379}}}}
  duration: 6s
  faults:
    - name: stall
      pause: {{}}
      start: 1s
      duration: 1s
  assertions:
    prometheus:
{assertions}
"#
    )
}

struct Run {
    code: i32,
    result: Value,
    junit: String,
    report: String,
}

fn spawn_run(dir: &Path, name: &str, text: &str, url: &str) -> Child {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_schism"))
        .args(["run", "--quiet", "--prometheus-url", url, "--out"])
        .arg(dir.join("out"))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("schism runs")
}

fn finish(dir: &Path, child: Child) -> Run {
    let output = child.wait_with_output().unwrap();
    let read = |file: &str| std::fs::read_to_string(dir.join("out").join(file));
    let result = read("result.json").unwrap_or_else(|e| {
        panic!(
            "no result.json ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Run {
        code: output.status.code().unwrap_or(-1),
        result: serde_json::from_str(&result).unwrap(),
        junit: read("junit.xml").unwrap_or_default(),
        report: read("report.html").unwrap_or_default(),
    }
}

fn record<'a>(run: &'a Run, name: &str) -> &'a Value {
    run.result["assertions"]
        .as_array()
        .and_then(|list| list.iter().find(|a| a["name"] == name))
        .unwrap_or_else(|| panic!("no assertion {name}: {}", run.result))
}

#[test]
fn prometheus_assertions_gate_fail_and_stay_undecided_as_they_should() {
    support::require(
        "prometheus_assertions_gate_fail_and_stay_undecided_as_they_should",
        &["prometheus", "redis-server", "nft", "ip", "python3"],
    );
    let exporter = Exporter::start();
    let prometheus = Prometheus::start(&exporter);
    let url = prometheus.url();
    let base = std::env::temp_dir().join(format!("schism-prom-run-{}", std::process::id()));
    let all_kinds = "      - {name: steady, when: before, query: schism_test_errors, expect: '< 1'}\n      - {name: quiet, when: during, interval: 1s, query: schism_test_errors, expect: '<= 0'}\n      - {name: recovered, when: after, query: 'max(schism_test_errors)', expect: '< 1'}";

    // Every query holds: Pass, each assertion a JUnit case and a row of the report.
    let dir = base.join("pass");
    let run = finish(
        &dir,
        spawn_run(&dir, "calm", &manifest("calm", all_kinds), &url),
    );
    assert_eq!(run.result["verdict"], "Pass", "{}", run.result);
    assert_eq!(run.code, 0);
    for name in ["steady", "quiet", "recovered"] {
        assert_eq!(record(&run, name)["result"], "Held", "{}", run.result);
        assert!(
            run.junit.contains(&format!("prometheus {name} (")),
            "{}",
            run.junit
        );
    }
    let quiet = record(&run, "quiet");
    assert!(
        quiet["samples"].as_i64().unwrap() >= 4,
        "sampled through the window: {quiet}"
    );
    assert_eq!(quiet["worst"], 0.0);
    assert!(run.report.contains("Prometheus assertions") && run.report.contains("quiet"));

    // Errors rise inside the window: the `during` assertion fails, naming when and how much.
    let dir = base.join("fail");
    let child = spawn_run(&dir, "noisy", &manifest("noisy", all_kinds), &url);
    std::thread::sleep(Duration::from_secs(4));
    exporter.set(7);
    let run = finish(&dir, child);
    exporter.set(0);
    prometheus.wait_for_value(0);
    assert_eq!(run.result["verdict"], "Fail", "{}", run.result);
    assert_eq!(run.code, 1);
    let quiet = record(&run, "quiet");
    assert_eq!(quiet["result"], "Failed", "{quiet}");
    assert_eq!(quiet["worst"], 7.0);
    let reasons = run.result["reasons"].to_string();
    assert!(
        reasons.contains("prometheus quiet: schism_test_errors = 7 at ")
            && reasons.contains("expected <= 0"),
        "{reasons}"
    );
    assert!(
        run.junit.contains("<failure") && run.junit.contains("prometheus quiet"),
        "{}",
        run.junit
    );

    // The steady state does not hold: nothing is injected, no workload runs, Inconclusive.
    exporter.set(3);
    prometheus.wait_for_value(3);
    let dir = base.join("unsteady");
    let run = finish(
        &dir,
        spawn_run(&dir, "unsteady", &manifest("unsteady", all_kinds), &url),
    );
    exporter.set(0);
    prometheus.wait_for_value(0);
    assert_eq!(run.result["verdict"], "Inconclusive", "{}", run.result);
    assert_eq!(run.code, 2);
    assert!(
        run.result.get("faults").is_none(),
        "a fault was injected: {}",
        run.result
    );
    assert_eq!(record(&run, "steady")["result"], "Failed");
    assert!(
        run.result["reasons"][0]
            .as_str()
            .unwrap()
            .contains("steady state did not hold before the experiment"),
        "{}",
        run.result
    );

    // A query without series, a bad query and an unreachable server decide nothing.
    std::thread::sleep(Duration::from_millis(1500));
    let undecided = "      - {name: nothing, query: no_such_metric, expect: '< 1', interval: 1s}\n      - {name: garbled, when: after, query: 'sum(', expect: '< 1'}\n      - {name: nobody, when: after, url: 'http://127.0.0.1:9', query: up, expect: '> 0'}";
    let dir = base.join("undecided");
    let run = finish(
        &dir,
        spawn_run(&dir, "undecided", &manifest("undecided", undecided), &url),
    );
    assert_eq!(run.result["verdict"], "Inconclusive", "{}", run.result);
    assert_eq!(run.code, 2);
    for (name, why) in [
        ("nothing", "the query returned no series"),
        ("garbled", "bad_data"),
        ("nobody", "cannot reach Prometheus at http://127.0.0.1:9"),
    ] {
        let r = record(&run, name);
        assert_eq!(r["result"], "Undecided", "{r}");
        assert!(
            r["reason"].as_str().unwrap_or_default().contains(why),
            "{name}: {r}"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A one-node Redis experiment with `fault` from 1s to 7s, probed every 100 ms, with the
/// given abort guards and Prometheus assertions.
fn guarded(name: &str, fault: &str, abort: &str, assertions: &str) -> String {
    format!(
        r#"apiVersion: schism.dev/v1alpha1
kind: Chaos
metadata:
  name: {name}
spec:
  target:
    local:
      nodes: 1
      command: redis-server --bind {{ip}} --port 6379 --save '' --appendonly no
      ready: {{tcp: {{port: 6379}}}}
  duration: 10s
  faults:
    - name: hurt
      {fault}
      start: 1s
      duration: 6s
  availability:
    tcp: {{port: 6379}}
    interval: 100ms
    timeout: 400ms
  abort:
{abort}
  assertions:
    prometheus:
{assertions}
"#
    )
}

/// When the fault was healed, in seconds after it was injected.
fn fault_lasted(run: &Run) -> f64 {
    let fault = &run.result["faults"][0];
    let at = |field: &str| -> f64 {
        let text = fault[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field}: {fault}"));
        let t: k8s_openapi::jiff::Timestamp = text.parse().unwrap();
        t.as_millisecond() as f64 / 1e3
    };
    at("healedAt") - at("injectedAt")
}

#[test]
fn abort_guards_heal_at_the_first_breach_and_fail_saying_which_and_when() {
    support::require(
        "abort_guards_heal_at_the_first_breach_and_fail_saying_which_and_when",
        &["prometheus", "redis-server", "nft", "tc", "ip", "python3"],
    );
    let exporter = Exporter::start();
    let prometheus = Prometheus::start(&exporter);
    let url = prometheus.url();
    let base = std::env::temp_dir().join(format!("schism-abort-run-{}", std::process::id()));
    let calm = "      - {name: quiet, interval: 1s, query: schism_test_errors, expect: '<= 0'}";

    // Every probe lost: the rolling availability falls under half within a second or so.
    let dir = base.join("availability");
    let text = guarded(
        "lossy",
        "loss: {percent: 100}",
        "    - availability: {below: 0.5, over: 1s}",
        calm,
    );
    let run = finish(&dir, spawn_run(&dir, "lossy", &text, &url));
    assert_eq!(run.result["verdict"], "Fail", "{}", run.result);
    assert_eq!(run.code, 1);
    let abort = &run.result["abort"];
    assert_eq!(abort["guard"], "availability", "{}", run.result);
    let at = abort["atMillis"].as_i64().unwrap();
    assert!((1500..4000).contains(&at), "tripped at {at} ms: {abort}");
    let reason = run.result["reasons"][0].as_str().unwrap();
    assert!(
        reason.starts_with("aborted at ") && reason.contains("< 0.50 over 1s"),
        "{reason}"
    );
    // Healed with the trip, not at the planned 6 s.
    assert!(abort["healedMillis"].is_i64(), "{abort}");
    let lasted = fault_lasted(&run);
    assert!(
        lasted < 4.0,
        "the fault lasted {lasted:.2}s: {}",
        run.result
    );
    assert!(
        run.junit.contains("no abort guard tripped"),
        "{}",
        run.junit
    );
    // The run still measured recovery and decided its other assertions.
    assert!(
        run.result["availability"]["recoveryMs"].is_i64(),
        "{}",
        run.result
    );
    assert_eq!(record(&run, "quiet")["result"], "Held");

    // Probes answered slowly: the latency guard trips.
    let dir = base.join("latency");
    let text = guarded(
        "slow",
        "latency: {delay: 250ms}",
        "    - probeLatency: {p99Above: 100ms, over: 1s}",
        calm,
    );
    let run = finish(&dir, spawn_run(&dir, "slow", &text, &url));
    assert_eq!(run.result["verdict"], "Fail", "{}", run.result);
    assert_eq!(
        run.result["abort"]["guard"], "probeLatency",
        "{}",
        run.result
    );
    assert!(
        run.result["abort"]["reason"]
            .as_str()
            .unwrap()
            .contains("> 100ms over 1s"),
        "{}",
        run.result
    );
    assert!(fault_lasted(&run) < 4.0, "{}", run.result);

    // A `during` Prometheus assertion named by a guard aborts at its first failed sample.
    let dir = base.join("prometheus");
    let text = guarded("errors", "pause: {}", "    - prometheus: quiet", calm);
    let child = spawn_run(&dir, "errors", &text, &url);
    std::thread::sleep(Duration::from_secs(3));
    exporter.set(9);
    let run = finish(&dir, child);
    exporter.set(0);
    prometheus.wait_for_value(0);
    assert_eq!(run.result["verdict"], "Fail", "{}", run.result);
    let abort = &run.result["abort"];
    assert_eq!(abort["guard"], "prometheus quiet", "{abort}");
    assert!(
        abort["reason"]
            .as_str()
            .unwrap()
            .contains("schism_test_errors = 9, expected <= 0"),
        "{abort}"
    );
    assert!(abort["atMillis"].as_i64().unwrap() < 7000, "{abort}");
    assert!(fault_lasted(&run) < 6.0, "{}", run.result);

    // No breach: the guards hold, and say so.
    let dir = base.join("calm");
    let text = guarded(
        "calm",
        "pause: {}",
        "    - availability: {below: 0.2, over: 2s}\n    - prometheus: quiet",
        calm,
    );
    let run = finish(&dir, spawn_run(&dir, "calm", &text, &url));
    assert!(run.result.get("abort").is_none(), "{}", run.result);
    assert!(
        run.junit.contains("name=\"no abort guard tripped\"/>"),
        "{}",
        run.junit
    );
    let _ = std::fs::remove_dir_all(&base);
}
