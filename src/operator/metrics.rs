//! `/metrics` (Prometheus text format), `/healthz` and `/readyz` for the controller and agent:
//! the controller's metrics here, the agent's in `agent::metrics`, one server for both.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the experiments gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExperimentLabels {
    /// Phase.
    pub phase: String,
    /// Verdict, empty before one is reached.
    pub verdict: String,
}

/// Labels of the reconcile error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// What failed, e.g. `kube`, `finalizer`, `reverting`.
    pub error: String,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    experiments: Family<ExperimentLabels, Gauge>,
    /// Experiments whose faults are active right now.
    active_faults: Gauge,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_seconds: Histogram,
    by_object: Mutex<HashMap<String, (ExperimentLabels, bool)>>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("schism");
        let experiments = Family::<ExperimentLabels, Gauge>::default();
        let active_faults = Gauge::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "experiments",
            "Chaos experiments by phase and verdict",
            experiments.clone(),
        );
        registry.register(
            "experiments_with_active_faults",
            "Experiments whose faults are active right now",
            active_faults.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconciliation took",
            reconcile_seconds.clone(),
        );
        Self {
            registry,
            experiments,
            active_faults,
            reconcile_errors,
            reconcile_seconds,
            by_object: Mutex::default(),
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Records an object's phase and verdict, and whether its faults are active (`None`
    /// when it is gone).
    pub fn set_experiment(&self, key: &str, labels: Option<ExperimentLabels>, faults_active: bool) {
        let mut by_object = self.by_object.lock().unwrap_or_else(|p| p.into_inner());
        match labels {
            Some(l) => by_object.insert(key.to_owned(), (l, faults_active)),
            None => by_object.remove(key),
        };
        self.experiments.clear();
        for (labels, _) in by_object.values() {
            self.experiments.get_or_create(labels).inc();
        }
        self.active_faults
            .set(by_object.values().filter(|(_, active)| *active).count() as i64);
    }

    /// Counts a failed reconciliation.
    pub fn reconcile_failed(&self, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: error.to_owned(),
            })
            .inc();
    }

    /// Records how long a reconciliation took.
    pub fn reconciled(&self, took: Duration) {
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// Marks the process ready: it reaches the API and serves. Leadership does not count: a
    /// standby replica is ready, or a rolling upgrade could never finish.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        render_registry(&self.registry)
    }
}

/// A registry in the Prometheus text format.
pub fn render_registry(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// What a process shows on its operational endpoints.
pub trait Endpoints: Send + Sync + 'static {
    /// `/metrics`, in the Prometheus text format.
    fn metrics(&self) -> String;
    /// `/readyz`: whether the process does its job now.
    fn ready(&self) -> bool;
}

impl Endpoints for Metrics {
    fn metrics(&self) -> String {
        self.render()
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

fn respond(
    endpoints: &dyn Endpoints,
    request: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match request.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            endpoints.metrics(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned(), "text/plain"),
        "/readyz" if endpoints.ready() => (StatusCode::OK, "ready\n".to_owned(), "text/plain"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready\n".to_owned(),
            "text/plain",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_owned(),
            "text/plain",
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a static response builds")
}

/// Serves the endpoints until the process ends; returns the bound address.
pub async fn serve<E: Endpoints>(
    address: SocketAddr,
    metrics: Arc<E>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(metrics.as_ref(), &request);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiments_are_counted_by_phase_and_verdict() {
        let metrics = Metrics::default();
        let done = ExperimentLabels {
            phase: "Completed".into(),
            verdict: "Pass".into(),
        };
        metrics.set_experiment("a", Some(done.clone()), false);
        metrics.set_experiment("b", Some(done), false);
        metrics.set_experiment(
            "c",
            Some(ExperimentLabels {
                phase: "Running".into(),
                verdict: String::new(),
            }),
            true,
        );
        assert!(
            metrics
                .render()
                .contains("schism_experiments_with_active_faults 1")
        );
        metrics.set_experiment("c", None, false);
        metrics.reconcile_failed("kube");
        let text = metrics.render();
        assert!(
            text.contains(r#"schism_experiments{phase="Completed",verdict="Pass"} 2"#),
            "{text}"
        );
        assert!(!text.contains(r#"phase="Running""#), "{text}");
        assert!(
            text.contains(r#"schism_reconcile_errors_total{error="kube"} 1"#),
            "{text}"
        );
    }
}
