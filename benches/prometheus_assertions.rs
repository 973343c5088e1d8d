//! What 20 Prometheus assertions sampled every second cost, on both sides:
//!
//! * the runner: CPU time and resident memory of this process while the engine's samplers run
//!   20 `during` assertions at 1 s against a real Prometheus (Debian's, on loopback, scraping
//!   itself), against the same window with none; and the CPU the queries cost Prometheus;
//! * the controller: the bytes the 20 results add to a Chaos's status, to its watch events,
//!   and to the controller's cache (which drops them), and the time to decode and trim one.
//!
//! Run with `cargo bench --bench prometheus_assertions` (`SCHISM_BENCH_QUICK=1` for a 5 s
//! window instead of 20 s). Needs `prometheus` on the PATH.

#[path = "../tests/support/prometheus.rs"]
mod prometheus_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use schism::api::{AssertionRecord, AssertionResult, Chaos, ChaosStatus, PrometheusAssertion};
use schism::engine::guards::AbortSignal;
use schism::engine::prometheus;

use prometheus_server::PrometheusServer;

const ASSERTIONS: usize = 20;

/// utime + stime of a process, in milliseconds (clock ticks of 10 ms).
fn cpu_millis(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command: state is field 0, utime field 11, stime field 12.
    (ticks(11) + ticks(12)) * 10.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn assertions(count: usize) -> Vec<PrometheusAssertion> {
    let queries = [
        "up",
        "rate(prometheus_http_requests_total[30s])",
        "sum by (job) (scrape_duration_seconds)",
        "histogram_quantile(0.99, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[30s])))",
    ];
    (0..count)
        .map(|i| {
            serde_yaml::from_str(&format!(
                "{{name: a{i}, query: '{}', expect: '< 1e12', when: during, interval: 1s}}",
                queries[i % queries.len()]
            ))
            .unwrap()
        })
        .collect()
}

/// Runs `count` assertions for `window`; returns (this process's CPU ms, Prometheus's CPU ms,
/// peak RSS KiB, samples taken, the results).
async fn sample(
    count: usize,
    window: Duration,
    url: &str,
    prometheus_pid: u32,
) -> (f64, f64, u64, i64, Vec<AssertionRecord>) {
    let http = prometheus::client();
    let (halt, _) = tokio::sync::watch::channel(false);
    let abort = Arc::new(AbortSignal::new(Arc::new(halt)));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let (own, theirs) = (cpu_millis(std::process::id()), cpu_millis(prometheus_pid));
    let epoch = Instant::now();
    let tasks = prometheus::spawn_during(
        &http,
        Some(url),
        assertions(count),
        epoch,
        epoch + window,
        stopped,
        &[],
        &abort,
    );
    let mut peak = rss_kib();
    while epoch.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_kib());
    }
    let mut records = Vec::new();
    for task in tasks {
        records.push(task.await.unwrap().record());
    }
    let samples = records.iter().map(|r| r.samples).sum();
    (
        cpu_millis(std::process::id()) - own,
        cpu_millis(prometheus_pid) - theirs,
        peak,
        samples,
        records,
    )
}

fn controller_side(records: &[AssertionRecord]) {
    let chaos = |with: bool| -> Chaos {
        let mut chaos = Chaos::new(
            "bench",
            serde_yaml::from_str("target: {statefulSet: etcd}\nduration: 60s").unwrap(),
        );
        chaos.status = Some(ChaosStatus {
            assertions: if with { records.to_vec() } else { Vec::new() },
            ..Default::default()
        });
        chaos
    };
    let bare = serde_json::to_vec(&chaos(false)).unwrap();
    let full = serde_json::to_vec(&chaos(true)).unwrap();
    let rounds = 2_000;
    let decode = |bytes: &[u8]| {
        let started = Instant::now();
        for _ in 0..rounds {
            let mut chaos: Chaos = serde_json::from_slice(bytes).unwrap();
            schism::operator::controller::trim_for_cache(&mut chaos);
            std::hint::black_box(&chaos);
        }
        started.elapsed().as_secs_f64() * 1e6 / rounds as f64
    };
    let (bare_us, full_us) = (decode(&bare), decode(&full));
    let mut trimmed = chaos(true);
    schism::operator::controller::trim_for_cache(&mut trimmed);
    let cached = serde_json::to_vec(&trimmed).unwrap().len();
    println!(
        "controller: a Chaos with {ASSERTIONS} assertion results is {} bytes ({} more than without) per watch event; decoded and trimmed in {full_us:.1} µs ({:+.1} µs); cached {} bytes ({:+} bytes)",
        full.len(),
        full.len() - bare.len(),
        full_us - bare_us,
        cached,
        cached as i64 - bare.len() as i64
    );
    assert!(
        records
            .iter()
            .all(|r| r.result != AssertionResult::Undecided || r.reason.is_some())
    );
}

fn main() {
    let quick = std::env::var_os("SCHISM_BENCH_QUICK").is_some();
    let window = Duration::from_secs(if quick { 5 } else { 20 });
    // It scrapes itself, so the queries have series to answer with.
    let server = PrometheusServer::start("prom-bench", &[("self", "self".into())], "1s");
    let url = server.base_url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Until Prometheus has scraped itself.
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = http
                .get(format!("{url}/api/v1/query?query=up"))
                .send()
                .await;
            if let Ok(answer) = answer
                && answer
                    .text()
                    .await
                    .unwrap_or_default()
                    .contains("\"result\":[{")
            {
                break;
            }
            assert!(Instant::now() < deadline, "Prometheus never scraped itself");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let pid = server.pid();
    let (base_cpu, base_prom, base_rss, _, _) = runtime.block_on(sample(0, window, &url, pid));
    let (cpu, prom, rss, samples, records) =
        runtime.block_on(sample(ASSERTIONS, window, &url, pid));
    let seconds = window.as_secs_f64();
    let held = records
        .iter()
        .filter(|r| r.result == AssertionResult::Held)
        .count();
    println!(
        "runner: {ASSERTIONS} assertions at 1s for {seconds:.0}s: {samples} samples, {held}/{ASSERTIONS} held"
    );
    println!(
        "runner: CPU {:.1} ms/s added ({:.2} ms per sample, {:.2}% of one core); RSS peak {} KiB ({:+} KiB)",
        (cpu - base_cpu) / seconds,
        (cpu - base_cpu) / samples.max(1) as f64,
        (cpu - base_cpu) / seconds / 10.0,
        rss,
        rss as i64 - base_rss as i64
    );
    println!(
        "prometheus: CPU {:.1} ms/s added for the queries ({:.1} ms/s without)",
        (prom - base_prom) / seconds,
        base_prom / seconds
    );
    controller_side(&records);
}
