//! The availability probe: a TCP connect or an HTTP GET to every node at an interval, and the
//! pure summary of what it saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::api::AvailabilitySummary;

/// How to probe one node.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// Connect to this port.
    Tcp {
        /// Port.
        port: u16,
    },
    /// GET this path and expect this status.
    Http {
        /// Port.
        port: u16,
        /// Path, starting with `/`.
        path: String,
        /// Status that counts as success.
        expect_status: u16,
    },
}

/// One probe of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSample {
    /// Index of the node probed.
    pub node: usize,
    /// When it was sent, since the experiment's epoch.
    pub at: Duration,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub latency: Duration,
    /// Why it failed.
    pub error: Option<String>,
}

/// Probes every host until `stop` turns true; returns every sample, in time order. Each
/// sample also goes to `live` as soon as it is taken (the abort guards watch them).
pub async fn run_probes(
    hosts: Vec<String>,
    kind: ProbeKind,
    interval: Duration,
    timeout: Duration,
    epoch: Instant,
    stop: watch::Receiver<bool>,
    live: Option<tokio::sync::mpsc::UnboundedSender<ProbeSample>>,
) -> Vec<ProbeSample> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .expect("a plain HTTP client builds");
    let kind = Arc::new(kind);
    let mut tasks = Vec::new();
    for (node, host) in hosts.into_iter().enumerate() {
        let kind = Arc::clone(&kind);
        let http = http.clone();
        let mut stop = stop.clone();
        let live = live.clone();
        tasks.push(tokio::spawn(async move {
            // One probe starts at every tick, even while earlier ones still wait for their
            // timeout: the samples then cover time evenly, so the success ratio is the share
            // of time the node answered, not skewed by slow failures.
            let mut in_flight = tokio::task::JoinSet::new();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                // A dropped sender (the run was aborted) stops the loop as surely as `true`
                // does; otherwise `changed()` would return at once forever and spin.
                let stopped = tokio::select! {
                    _ = ticker.tick() => false,
                    changed = stop.changed() => changed.is_err(),
                };
                if stopped || *stop.borrow() {
                    break;
                }
                let (http, host, kind) = (http.clone(), host.clone(), Arc::clone(&kind));
                let live = live.clone();
                in_flight.spawn(async move {
                    let at = epoch.elapsed();
                    let started = Instant::now();
                    let result = tokio::time::timeout(timeout, probe_once(&http, &host, &kind))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                    let sample = ProbeSample {
                        node,
                        at,
                        ok: result.is_ok(),
                        latency: started.elapsed(),
                        error: result.err(),
                    };
                    if let Some(live) = &live {
                        let _ = live.send(sample.clone());
                    }
                    sample
                });
            }
            let mut samples = Vec::new();
            while let Some(sample) = in_flight.join_next().await {
                if let Ok(sample) = sample {
                    samples.push(sample);
                }
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        if let Ok(s) = task.await {
            samples.extend(s);
        }
    }
    samples.sort_by_key(|s| s.at);
    samples
}

async fn probe_once(http: &reqwest::Client, host: &str, kind: &ProbeKind) -> Result<(), String> {
    match kind {
        ProbeKind::Tcp { port } => tokio::net::TcpStream::connect((host, *port))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        ProbeKind::Http {
            port,
            path,
            expect_status,
        } => {
            let response = http
                .get(format!("http://{host}:{port}{path}"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            if status == *expect_status {
                Ok(())
            } else {
                Err(format!("HTTP {status}, expected {expect_status}"))
            }
        }
    }
}

/// Summarises samples: ratio and latencies inside the window `[window_start, window_end)`,
/// the longest outage of any node, and the recovery time after `last_heal` (the time from the
/// last heal to the first success after every node's last failure).
pub fn summarize(
    samples: &[ProbeSample],
    window_start: Duration,
    window_end: Duration,
    last_heal: Option<Duration>,
    nodes: usize,
) -> AvailabilitySummary {
    let in_window: Vec<&ProbeSample> = samples
        .iter()
        .filter(|s| s.at >= window_start && s.at < window_end)
        .collect();
    let probes = in_window.len() as i64;
    let successes = in_window.iter().filter(|s| s.ok).count() as i64;
    let mut latencies: Vec<f64> = in_window
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        (!latencies.is_empty())
            .then(|| latencies[((latencies.len() - 1) as f64 * p).round() as usize])
    };
    let mut longest_outage = Duration::ZERO;
    let mut recovery = Some(Duration::ZERO);
    for node in 0..nodes {
        let mine: Vec<&ProbeSample> = samples.iter().filter(|s| s.node == node).collect();
        let mut outage_start: Option<Duration> = None;
        for sample in &mine {
            match (sample.ok, outage_start) {
                (false, None) => outage_start = Some(sample.at),
                (true, Some(start)) => {
                    longest_outage = longest_outage.max(sample.at - start);
                    outage_start = None;
                }
                _ => {}
            }
        }
        if let (Some(start), Some(last)) = (outage_start, mine.last()) {
            longest_outage = longest_outage.max(last.at - start);
        }
        if let Some(heal) = last_heal {
            let last_failure = mine.iter().rev().find(|s| !s.ok && s.at >= heal);
            let node_recovery = match last_failure {
                None => Some(Duration::ZERO),
                Some(failure) => mine
                    .iter()
                    .find(|s| s.ok && s.at > failure.at)
                    .map(|s| s.at - heal),
            };
            recovery = match (recovery, node_recovery) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
    }
    AvailabilitySummary {
        probes,
        successes,
        ratio: if probes == 0 {
            0.0
        } else {
            successes as f64 / probes as f64
        },
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        longest_outage_ms: longest_outage.as_millis() as i64,
        recovery_ms: if last_heal.is_some() {
            recovery.map(|r| r.as_millis() as i64)
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node: usize, at_ms: u64, ok: bool) -> ProbeSample {
        ProbeSample {
            node,
            at: Duration::from_millis(at_ms),
            ok,
            latency: Duration::from_millis(2),
            error: None,
        }
    }

    #[test]
    fn outage_and_recovery_are_measured_per_node() {
        // Node 0 is down from 300 ms until 700 ms; node 1 never fails. The last heal is at 500 ms.
        let mut samples = Vec::new();
        for t in (0..1000).step_by(100) {
            samples.push(sample(0, t, !(300..700).contains(&t)));
            samples.push(sample(1, t, true));
        }
        let summary = summarize(
            &samples,
            Duration::ZERO,
            Duration::from_secs(1),
            Some(Duration::from_millis(500)),
            2,
        );
        assert_eq!(summary.probes, 20);
        assert_eq!(summary.successes, 16);
        assert!((summary.ratio - 0.8).abs() < 1e-9);
        assert_eq!(summary.longest_outage_ms, 400);
        assert_eq!(summary.recovery_ms, Some(200));
        assert_eq!(summary.p50_ms, Some(2.0));
    }

    #[test]
    fn a_node_that_never_answers_again_has_no_recovery() {
        let samples = vec![
            sample(0, 0, true),
            sample(0, 100, false),
            sample(0, 200, false),
        ];
        let summary = summarize(
            &samples,
            Duration::ZERO,
            Duration::from_secs(1),
            Some(Duration::from_millis(50)),
            1,
        );
        assert_eq!(summary.recovery_ms, None);
        assert_eq!(summary.longest_outage_ms, 100);
    }
}
