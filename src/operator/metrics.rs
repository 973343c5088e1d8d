//! `/metrics` (Prometheus text format), `/healthz` and `/readyz` for the controller and agent:
//! the controller's metrics here, the agent's in `agent::metrics`, one server for both.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
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

use crate::api::Chaos;
use crate::operator::conditions::FAULTS_ACTIVE;

/// Labels of the experiments gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExperimentLabels {
    /// Phase.
    pub phase: String,
    /// Verdict, empty before one is reached.
    pub verdict: String,
}

/// Labels of one experiment's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChaosLabels {
    /// Namespace of the Chaos.
    pub namespace: String,
    /// Its name.
    pub chaos: String,
}

/// Labels of an experiment's latest verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    namespace: String,
    chaos: String,
    verdict: String,
}

/// Labels of an experiment's faults by kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultKindLabels {
    namespace: String,
    chaos: String,
    kind: String,
}

/// Labels of a schedule's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    namespace: String,
    schedule: String,
}

/// Labels of a schedule's runs by verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleVerdictLabels {
    namespace: String,
    schedule: String,
    verdict: String,
}

/// What `/metrics` shows of one Chaos, read from its status.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentSnapshot {
    /// Which experiment.
    pub id: ChaosLabels,
    /// Phase and verdict.
    pub labels: ExperimentLabels,
    /// Its faults are held right now.
    pub faults_active: bool,
    /// The outcome of its latest concluded run, if any.
    pub latest: Option<LatestRun>,
}

/// The figures of an experiment's latest concluded run.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LatestRun {
    /// Pass, Fail or Inconclusive.
    pub verdict: String,
    /// The probes' success ratio.
    pub availability: Option<f64>,
    /// Time from the last heal to the first answered probe.
    pub recovery_seconds: Option<f64>,
    /// Time the consistency check took.
    pub check_seconds: Option<f64>,
    /// Faults injected, by kind.
    pub faults_by_kind: BTreeMap<String, i64>,
}

impl ExperimentSnapshot {
    /// What a Chaos's status says, for `/metrics`. The latest run's figures appear once it
    /// has a verdict, and stay until the next one replaces them.
    pub fn of(chaos: &Chaos) -> Self {
        let status = chaos.status.as_ref();
        let labels = ExperimentLabels {
            phase: status
                .and_then(|s| s.phase)
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "Pending".into()),
            verdict: status
                .and_then(|s| s.verdict)
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
        };
        let faults_active = status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == FAULTS_ACTIVE && c.status == "True")
        });
        let latest = status.and_then(|s| {
            let verdict = s.verdict?;
            let mut faults_by_kind = BTreeMap::new();
            for fault in s.faults.iter().filter(|f| f.injected_at.is_some()) {
                *faults_by_kind.entry(fault.kind.clone()).or_insert(0) += 1;
            }
            Some(LatestRun {
                verdict: format!("{verdict:?}"),
                availability: s.availability.as_ref().map(|a| a.ratio),
                recovery_seconds: s
                    .availability
                    .as_ref()
                    .and_then(|a| a.recovery_ms)
                    .map(|ms| ms as f64 / 1000.0),
                check_seconds: s
                    .consistency
                    .as_ref()
                    .map(|c| c.check_millis as f64 / 1000.0),
                faults_by_kind,
            })
        });
        Self {
            id: ChaosLabels {
                namespace: chaos.metadata.namespace.clone().unwrap_or_default(),
                chaos: chaos.metadata.name.clone().unwrap_or_default(),
            },
            labels,
            faults_active,
            latest,
        }
    }
}

/// One ChaosSchedule's counts, read from its status.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ScheduleSnapshot {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Runs concluded Pass, Fail and Inconclusive.
    pub runs_by_verdict: BTreeMap<String, i64>,
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
    latest_verdict: Family<VerdictLabels, Gauge>,
    availability: Family<ChaosLabels, Gauge<f64, AtomicU64>>,
    recovery: Family<ChaosLabels, Gauge<f64, AtomicU64>>,
    check: Family<ChaosLabels, Gauge<f64, AtomicU64>>,
    faults: Family<FaultKindLabels, Gauge>,
    faults_active: Family<ChaosLabels, Gauge>,
    schedule_runs: Family<ScheduleVerdictLabels, Gauge>,
    schedule_pass_ratio: Family<ScheduleLabels, Gauge<f64, AtomicU64>>,
    by_object: Mutex<HashMap<String, ExperimentSnapshot>>,
    schedules: Mutex<HashMap<String, ScheduleSnapshot>>,
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
        let latest_verdict = Family::default();
        let availability = Family::default();
        let recovery = Family::default();
        let check = Family::default();
        let faults = Family::default();
        let faults_active = Family::default();
        let schedule_runs = Family::default();
        let schedule_pass_ratio = Family::default();
        registry.register(
            "experiment_verdict",
            "1 for the verdict of each experiment's latest concluded run",
            latest_verdict.clone(),
        );
        registry.register(
            "experiment_availability_ratio",
            "The probes' success ratio in each experiment's latest run",
            availability.clone(),
        );
        registry.register(
            "experiment_recovery_seconds",
            "Time from the last heal to the first answered probe in each experiment's latest run",
            recovery.clone(),
        );
        registry.register(
            "experiment_check_seconds",
            "Time the consistency check of each experiment's latest run took",
            check.clone(),
        );
        registry.register(
            "experiment_faults",
            "Faults injected in each experiment's latest run, by kind",
            faults.clone(),
        );
        registry.register(
            "experiment_faults_active",
            "1 while an experiment's faults are held, else 0",
            faults_active.clone(),
        );
        registry.register(
            "schedule_runs",
            "Concluded runs of each ChaosSchedule, by verdict",
            schedule_runs.clone(),
        );
        registry.register(
            "schedule_pass_ratio",
            "Share of each ChaosSchedule's concluded runs that passed",
            schedule_pass_ratio.clone(),
        );
        Self {
            registry,
            experiments,
            active_faults,
            reconcile_errors,
            reconcile_seconds,
            latest_verdict,
            availability,
            recovery,
            check,
            faults,
            faults_active,
            schedule_runs,
            schedule_pass_ratio,
            by_object: Mutex::default(),
            schedules: Mutex::default(),
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Records what an experiment's status shows (`None` when it is gone). Every gauge is
    /// rebuilt from the snapshots, so a deleted experiment leaves no series behind.
    pub fn set_experiment(&self, key: &str, snapshot: Option<ExperimentSnapshot>) {
        let mut by_object = self.by_object.lock().unwrap_or_else(|p| p.into_inner());
        match snapshot {
            Some(s) => by_object.insert(key.to_owned(), s),
            None => by_object.remove(key),
        };
        self.experiments.clear();
        self.latest_verdict.clear();
        self.availability.clear();
        self.recovery.clear();
        self.check.clear();
        self.faults.clear();
        self.faults_active.clear();
        for snapshot in by_object.values() {
            self.experiments.get_or_create(&snapshot.labels).inc();
            let id = &snapshot.id;
            self.faults_active
                .get_or_create(id)
                .set(i64::from(snapshot.faults_active));
            let Some(latest) = &snapshot.latest else {
                continue;
            };
            self.latest_verdict
                .get_or_create(&VerdictLabels {
                    namespace: id.namespace.clone(),
                    chaos: id.chaos.clone(),
                    verdict: latest.verdict.clone(),
                })
                .set(1);
            for (family, value) in [
                (&self.availability, latest.availability),
                (&self.recovery, latest.recovery_seconds),
                (&self.check, latest.check_seconds),
            ] {
                if let Some(value) = value {
                    family.get_or_create(id).set(value);
                }
            }
            for (kind, count) in &latest.faults_by_kind {
                self.faults
                    .get_or_create(&FaultKindLabels {
                        namespace: id.namespace.clone(),
                        chaos: id.chaos.clone(),
                        kind: kind.clone(),
                    })
                    .set(*count);
            }
        }
        self.active_faults
            .set(by_object.values().filter(|s| s.faults_active).count() as i64);
    }

    /// Records a schedule's run counts (`None` when it is gone).
    pub fn set_schedule(&self, key: &str, snapshot: Option<ScheduleSnapshot>) {
        let mut schedules = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
        match snapshot {
            Some(s) => schedules.insert(key.to_owned(), s),
            None => schedules.remove(key),
        };
        self.schedule_runs.clear();
        self.schedule_pass_ratio.clear();
        for schedule in schedules.values() {
            for (verdict, count) in &schedule.runs_by_verdict {
                self.schedule_runs
                    .get_or_create(&ScheduleVerdictLabels {
                        namespace: schedule.namespace.clone(),
                        schedule: schedule.name.clone(),
                        verdict: verdict.clone(),
                    })
                    .set(*count);
            }
            let total: i64 = schedule.runs_by_verdict.values().sum();
            if total > 0 {
                let passed = schedule.runs_by_verdict.get("Pass").copied().unwrap_or(0);
                self.schedule_pass_ratio
                    .get_or_create(&ScheduleLabels {
                        namespace: schedule.namespace.clone(),
                        schedule: schedule.name.clone(),
                    })
                    .set(passed as f64 / total as f64);
            }
        }
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

    fn snapshot(name: &str, phase: &str, verdict: &str, active: bool) -> ExperimentSnapshot {
        ExperimentSnapshot {
            id: ChaosLabels {
                namespace: "demo".into(),
                chaos: name.into(),
            },
            labels: ExperimentLabels {
                phase: phase.into(),
                verdict: verdict.into(),
            },
            faults_active: active,
            latest: (!verdict.is_empty()).then(|| LatestRun {
                verdict: verdict.into(),
                availability: Some(0.75),
                recovery_seconds: Some(1.5),
                check_seconds: Some(0.25),
                faults_by_kind: [("partition".to_owned(), 2)].into(),
            }),
        }
    }

    #[test]
    fn experiments_are_counted_by_phase_and_verdict() {
        let metrics = Metrics::default();
        metrics.set_experiment("a", Some(snapshot("a", "Completed", "Pass", false)));
        metrics.set_experiment("b", Some(snapshot("b", "Completed", "Pass", false)));
        metrics.set_experiment("c", Some(snapshot("c", "Running", "", true)));
        let text = metrics.render();
        assert!(
            text.contains("schism_experiments_with_active_faults 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"schism_experiment_faults_active{namespace="demo",chaos="c"} 1"#),
            "{text}"
        );
        metrics.set_experiment("c", None);
        metrics.reconcile_failed("kube");
        let text = metrics.render();
        assert!(
            text.contains(r#"schism_experiments{phase="Completed",verdict="Pass"} 2"#),
            "{text}"
        );
        assert!(!text.contains(r#"phase="Running""#), "{text}");
        assert!(
            !text.contains(r#"chaos="c""#),
            "a deleted experiment leaves no series: {text}"
        );
        assert!(
            text.contains(r#"schism_reconcile_errors_total{error="kube"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn an_experiments_latest_run_and_a_schedules_pass_ratio_are_shown() {
        let metrics = Metrics::default();
        metrics.set_experiment("a", Some(snapshot("a", "Completed", "Fail", false)));
        metrics.set_schedule(
            "s",
            Some(ScheduleSnapshot {
                namespace: "demo".into(),
                name: "nightly".into(),
                runs_by_verdict: [("Pass".to_owned(), 3), ("Fail".to_owned(), 1)].into(),
            }),
        );
        let text = metrics.render();
        for line in [
            r#"schism_experiment_verdict{namespace="demo",chaos="a",verdict="Fail"} 1"#,
            r#"schism_experiment_availability_ratio{namespace="demo",chaos="a"} 0.75"#,
            r#"schism_experiment_recovery_seconds{namespace="demo",chaos="a"} 1.5"#,
            r#"schism_experiment_check_seconds{namespace="demo",chaos="a"} 0.25"#,
            r#"schism_experiment_faults{namespace="demo",chaos="a",kind="partition"} 2"#,
            r#"schism_schedule_runs{namespace="demo",schedule="nightly",verdict="Pass"} 3"#,
            r#"schism_schedule_pass_ratio{namespace="demo",schedule="nightly"} 0.75"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
