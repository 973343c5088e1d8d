//! `schism runner`: one experiment, end to end, in a pod of its own (a Job the controller
//! creates for each generation of a Chaos). It claims the run, resolves the targets, drives
//! the engine with [`KubeBackend`] (leases, pod kills, re-injection), checks the history
//! within its own memory limit, stores the report and writes the verdict.
//!
//! * [`claim`] — pure: may this runner start this generation?
//! * [`status`] — pure: the status the runner writes, and who owns which field;
//! * [`reinject`] — pure: which leases to replace when target pods come back;
//! * [`backend`] — the leases and kills;
//! * [`report_store`] — the report ConfigMap.
//!
//! The runner never learns anything from a cache: it reads the Chaos fresh before each write
//! and writes with that read's `resourceVersion`, so a runner that was superseded (the spec
//! changed, the Chaos is being deleted) stops instead of overwriting a newer run.

pub mod backend;
pub mod claim;
pub mod credentials;
pub mod reinject;
pub mod report_store;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

pub use self::backend::{KubeBackend, RunProgress};
use self::claim::Claim;
use crate::api::{Chaos, ChaosStatus, FaultLease, Verdict};
use crate::engine::experiment::{self, RunSettings};
use crate::engine::timeline;
use crate::operator::events::EventSink;
use crate::operator::halt;
use crate::operator::labels::{CHAOS_UID_LABEL, GENERATION_LABEL, RUNNER_MANAGER};
use crate::operator::lookup;
use crate::operator::targets::BlastRadius;

/// How often the runner looks at its run's progress (it writes only what changed).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long the runner keeps trying to store its report and write its verdict.
const WRITE_PATIENCE: Duration = Duration::from_secs(90);

/// Arguments of `schism runner` (the controller sets them in the Job it creates).
#[derive(clap::Args, Debug, Clone)]
pub struct RunnerArgs {
    /// Namespace of the Chaos.
    #[arg(long)]
    pub namespace: String,
    /// Name of the Chaos.
    #[arg(long)]
    pub name: String,
    /// UID of the Chaos: a runner never acts on a re-created object of the same name.
    #[arg(long)]
    pub uid: String,
    /// The generation this runner runs; any other is not its business.
    #[arg(long)]
    pub generation: i64,
    /// The most pods the experiment may affect; more is an error, never trimmed.
    #[arg(long, default_value_t = 10)]
    pub max_pods: usize,
    /// Time budget of the consistency check.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// Prometheus for assertions that name no `url`.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// The namespace of the emergency stop (`schism halt`) to obey; none: no stop is watched.
    #[arg(long, value_name = "NAMESPACE")]
    pub halt_namespace: Option<String>,
    /// Memory budget of the check (e.g. 512Mi). Default: 60% of this pod's memory limit, less
    /// what the runner already holds.
    #[arg(long, value_name = "SIZE", value_parser = crate::check::memory::parse_size)]
    pub max_memory: Option<usize>,
    /// This pod's name (the Job sets it from the downward API).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: String,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::api::duration::parse(text).map_err(|e| e.to_string())
}

/// How a runner ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerExit {
    /// The run's outcome is written.
    Concluded(Option<Verdict>),
    /// There was nothing for this runner to do (superseded, or already concluded).
    NothingToDo(String),
    /// It was told to stop (its pod is being deleted): faults healed, nothing concluded.
    Stopped,
}

/// Why a runner failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// An API call failed for good.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// No Kubernetes client configuration.
    #[error("no Kubernetes configuration (in-cluster service account or kubeconfig): {0}")]
    Config(String),
    /// The outcome could not be written.
    #[error("{0}")]
    Write(String),
}

/// Runs `schism runner` until the run ends or SIGTERM; returns the exit code: 0 when the run
/// concluded (whatever the verdict) or there was nothing to do, 143 when stopped, 1 on error.
pub fn run(args: &RunnerArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("schism runner: cannot start the async runtime: {error}");
            return 1;
        }
    };
    let args = args.clone();
    let outcome = runtime.block_on(async move {
        let client = Client::try_default()
            .await
            .map_err(|e| RunnerError::Config(e.to_string()))?;
        run_runner(client, args, crate::operator::termination_signal()).await
    });
    match outcome {
        Ok(RunnerExit::Concluded(verdict)) => {
            tracing::info!(?verdict, "run concluded");
            0
        }
        Ok(RunnerExit::NothingToDo(why)) => {
            eprintln!("schism runner: nothing to do: {why}");
            0
        }
        Ok(RunnerExit::Stopped) => 143,
        Err(error) => {
            eprintln!("schism runner: {error}");
            1
        }
    }
}

/// Writes the runner's status, each time after a fresh read that shows its own generation,
/// with that read's `resourceVersion` as a precondition.
struct StatusWriter {
    api: Api<Chaos>,
    args: RunnerArgs,
    /// The run's identity, once claimed: a later generation with the same one (a suspend or
    /// a resume) is still this run.
    run: std::sync::OnceLock<String>,
}

/// Whether a write landed.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Yes,
    /// The Chaos is gone, being deleted, or at another generation: the runner must stop.
    Superseded,
}

impl StatusWriter {
    fn is_current(&self, chaos: &Chaos) -> bool {
        let same_run = chaos.metadata.generation == Some(self.args.generation)
            || self
                .run
                .get()
                .is_some_and(|run| *run == chaos.spec.run_identity());
        chaos.metadata.uid.as_deref() == Some(self.args.uid.as_str())
            && same_run
            && chaos.metadata.deletion_timestamp.is_none()
    }

    /// Whether the run is to be suspended now, from a fresh read; `None` when it is no
    /// longer this runner's (the spec changed otherwise, the Chaos is going).
    async fn read_suspend(&self) -> Result<Option<bool>, kube::Error> {
        let fresh = self.api.get_opt(&self.args.name).await?;
        Ok(fresh.filter(|c| self.is_current(c)).map(|c| c.spec.suspend))
    }

    /// Applies `status` (all of the runner's fields) if the Chaos is still at this
    /// generation; a concurrent change is read again and retried.
    async fn write(&self, status: &ChaosStatus) -> Result<Written, kube::Error> {
        let mut attempt = 0;
        loop {
            let Some(fresh) = self.api.get_opt(&self.args.name).await? else {
                return Ok(Written::Superseded);
            };
            if !self.is_current(&fresh) {
                return Ok(Written::Superseded);
            }
            // A generation that only suspended or resumed the run is followed: the status
            // describes it from now on.
            let mut status = status.clone();
            status.observed_generation = fresh.metadata.generation;
            match self.apply(&status, fresh.resource_version()).await {
                Ok(()) => return Ok(Written::Yes),
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 10 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn apply(
        &self,
        status: &ChaosStatus,
        version: Option<String>,
    ) -> Result<(), kube::Error> {
        let patch = json!({
            "apiVersion": crate::api::API_VERSION,
            "kind": "Chaos",
            "metadata": {"resourceVersion": version},
            "status": status,
        });
        self.api
            .patch_status(
                &self.args.name,
                &PatchParams::apply(RUNNER_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(drop)
    }

    /// [`Self::write`], retried on transient errors for a while: the verdict is the point of
    /// the run.
    async fn write_patiently(&self, status: &ChaosStatus) -> Result<Written, RunnerError> {
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            match self.write(status).await {
                Ok(written) => return Ok(written),
                Err(error) if started.elapsed() < WRITE_PATIENCE => {
                    tracing::warn!(%error, "cannot write the status yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
                Err(error) => {
                    return Err(RunnerError::Write(format!(
                        "the status could not be written for {WRITE_PATIENCE:?}: {error}"
                    )));
                }
            }
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Whether pod `name` still runs: it exists, is not being deleted and has not finished.
async fn pod_alive(client: &Client, namespace: &str, name: &str) -> Result<bool, kube::Error> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?;
    Ok(pod.is_some_and(|pod| {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
    }))
}

/// Deletes this generation's leases (their agents revert them) and waits a little for it.
async fn heal_generation(client: &Client, args: &RunnerArgs) -> Result<(), String> {
    let api: Api<FaultLease> = Api::namespaced(client.clone(), &args.namespace);
    let params = ListParams::default().labels(&format!(
        "{CHAOS_UID_LABEL}={},{GENERATION_LABEL}={}",
        args.uid, args.generation
    ));
    api.delete_collection(&DeleteParams::default(), &params)
        .await
        .map_err(|e| format!("deleting leases: {e}"))?;
    for _ in 0..50 {
        match api.list(&params).await {
            Ok(left) if left.items.is_empty() => return Ok(()),
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(format!("listing leases: {e}")),
        }
    }
    Err("leases not reverted by their agents within 10s".into())
}

/// The runner: claim, run, conclude. `shutdown` resolving stops the run (faults healed, the
/// check cancelled) without a verdict.
pub async fn run_runner(
    client: Client,
    args: RunnerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunnerExit, RunnerError> {
    let api: Api<Chaos> = Api::namespaced(client.clone(), &args.namespace);
    let writer = StatusWriter {
        api: api.clone(),
        args: args.clone(),
        run: std::sync::OnceLock::new(),
    };
    let mut shutdown = Box::pin(shutdown);
    let mut halt = args
        .halt_namespace
        .as_deref()
        .map(|namespace| halt::watch_halt(client.clone(), namespace));
    if let Some(state) = halt.as_mut() {
        // Under an emergency stop nothing starts: wait (the controller shows why) until it
        // is lifted, or for the first answer.
        tokio::select! {
            _ = &mut shutdown => return Ok(RunnerExit::Stopped),
            _ = halt::wait_clear(state) => {}
        }
    }

    // Claim the run, exactly once per generation.
    let (chaos, mut current) = loop {
        let Some(fresh) = api.get_opt(&args.name).await? else {
            return Ok(RunnerExit::NothingToDo("the Chaos is gone".into()));
        };
        match claim::claim(&fresh, &args.uid, args.generation, &args.pod_name) {
            Claim::Superseded => {
                return Ok(RunnerExit::NothingToDo(format!(
                    "generation {} of {}/{} is no longer current",
                    args.generation, args.namespace, args.name
                )));
            }
            Claim::AlreadyConcluded => {
                return Ok(RunnerExit::NothingToDo(format!(
                    "generation {} has its outcome already",
                    args.generation
                )));
            }
            Claim::StartedBy(other) => {
                if pod_alive(&client, &args.namespace, &other).await? {
                    // It owns the run; never two runs of a generation. Look again later.
                    tokio::select! {
                        _ = &mut shutdown => return Ok(RunnerExit::Stopped),
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    }
                }
                let healed = heal_generation(&client, &args).await;
                let previous = fresh.status.clone().unwrap_or_default();
                let mut lost =
                    status::started_elsewhere(args.generation, &other, &previous, &now());
                if let Err(error) = healed {
                    lost.reasons.push(format!("healing its faults: {error}"));
                }
                let events = EventSink::new(client.clone(), RUNNER_MANAGER, fresh.object_ref(&()));
                events
                    .publish(
                        EventType::Warning,
                        "RunLost",
                        "Conclude",
                        lost.reasons.join("; "),
                    )
                    .await;
                writer.write_patiently(&lost).await?;
                return Ok(RunnerExit::Concluded(lost.verdict));
            }
            Claim::Start => {
                let seed = fresh.spec.seed.unwrap_or_else(random_seed);
                let previous = fresh
                    .status
                    .as_ref()
                    .map(|s| s.conditions.clone())
                    .unwrap_or_default();
                let run = fresh.spec.run_identity();
                let claimed = status::claimed(
                    args.generation,
                    seed,
                    &args.pod_name,
                    &run,
                    previous,
                    &now(),
                );
                match writer.apply(&claimed, fresh.resource_version()).await {
                    Ok(()) => {
                        let _ = writer.run.set(run);
                        break (Arc::new(fresh), claimed);
                    }
                    // Someone wrote meanwhile (another runner's claim, say): read again.
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };
    let events = EventSink::new(client.clone(), RUNNER_MANAGER, chaos.object_ref(&()));
    let seed = current.seed.unwrap_or_default();

    let radius = BlastRadius {
        // The controller checked the namespace before it made the Job.
        allowed_namespaces: Vec::new(),
        max_pods: args.max_pods,
    };
    let target = match lookup::resolve_target(&client, &chaos, &radius).await {
        Ok(target) => target,
        Err(e) => return not_started(&writer, &events, &current, e.reason, e.message).await,
    };
    let postgres_password = match credentials::password_ref(&chaos.spec) {
        None => None,
        Some(reference) => {
            match credentials::read_password(&client, &args.namespace, reference).await {
                Ok(password) => Some(password),
                Err(message) => {
                    return not_started(&writer, &events, &current, "SecretUnreadable", message)
                        .await;
                }
            }
        }
    };
    let names: Vec<String> = target.pods.iter().map(|p| p.name.clone()).collect();
    let plan = match timeline::build(&chaos.spec, &names, seed as u64) {
        Ok(plan) => plan,
        Err(e) => {
            return not_started(&writer, &events, &current, "PlanImpossible", e.to_string()).await;
        }
    };
    events
        .publish(
            EventType::Normal,
            "Started",
            "Start",
            format!(
                "chaos window of {} opened on {} pod(s), seed {seed}, runner {}",
                chaos.spec.duration,
                names.len(),
                args.pod_name
            ),
        )
        .await;

    let progress = Arc::new(RunProgress::default());
    let mut backend = KubeBackend::new(
        client.clone(),
        Arc::clone(&chaos),
        &target,
        events.clone(),
        Arc::clone(&progress),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (suspend, suspended) = tokio::sync::watch::channel(chaos.spec.suspend);
    let settings = RunSettings {
        seed: seed as u64,
        check_timeout: args.check_timeout,
        check_memory: args.max_memory,
        record_history: true,
        progress: false,
        postgres_password,
        prometheus_url: args.prometheus_url.clone(),
        stop: Some(stopped),
        suspend: Some(suspended),
    };
    let spec = chaos.spec.clone();
    let mut engine =
        tokio::spawn(async move { experiment::run(&spec, plan, &mut backend, &settings).await });

    let mut stopping = false;
    let mut halted: Option<halt::Halt> = None;
    let started = tokio::time::Instant::now();
    let mut shown = (0usize, false, false);
    let outcome = loop {
        tokio::select! {
            outcome = &mut engine => break outcome,
            stop_now = async {
                match halt.as_mut() {
                    Some(state) => halt::wait_halted(state).await,
                    None => std::future::pending().await,
                }
            }, if halted.is_none() && !stopping => {
                tracing::warn!(reason = %stop_now.reason, "emergency stop: healing every fault");
                let _ = stop.send(true);
                halted = Some(halt::Halt {
                    since: format!("{:.1}s", started.elapsed().as_secs_f64()),
                    ..stop_now
                });
            }
            _ = &mut shutdown, if !stopping => {
                tracing::info!("stopping: healing every fault, cancelling the check");
                stopping = true;
                let _ = stop.send(true);
            }
            _ = tokio::time::sleep(PROGRESS_INTERVAL) => {
                // `spec.suspend` is followed from a fresh read each tick.
                match writer.read_suspend().await {
                    Ok(Some(wanted)) if wanted != *suspend.borrow() && !stopping => {
                        let _ = suspend.send(wanted);
                        let (reason, note) = if wanted {
                            ("Suspended", "spec.suspend is true: every fault is healed and the chaos window's clock stopped")
                        } else {
                            ("Resumed", "spec.suspend is false: the faults still in their windows are back and the clock runs on")
                        };
                        events.publish(EventType::Normal, reason, reason, note.into()).await;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) if !stopping => {
                        tracing::info!("superseded: stopping");
                        stopping = true;
                        let _ = stop.send(true);
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "cannot read the Chaos"),
                }
                let now_shown = (
                    progress.active_faults.load(Ordering::Relaxed),
                    progress.window_over.load(Ordering::Relaxed),
                    *suspend.borrow(),
                );
                if now_shown != shown && !stopping {
                    let next = status::progress(
                        &current,
                        now_shown.0,
                        now_shown.1,
                        now_shown.2,
                        &now(),
                    );
                    match writer.write(&next).await {
                        Ok(Written::Yes) => {
                            current = next;
                            shown = now_shown;
                        }
                        Ok(Written::Superseded) => {
                            tracing::info!("superseded: stopping");
                            stopping = true;
                            let _ = stop.send(true);
                        }
                        Err(error) => tracing::warn!(%error, "cannot write progress"),
                    }
                }
            }
        }
    };
    let mut outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            // The engine task panicked: its backend is gone; heal by label, then say so.
            let healed = heal_generation(&client, &args).await;
            let mut failed = status::could_not_start(
                &current,
                "RunFailed",
                &format!("the experiment failed: {error}"),
                &now(),
            );
            if let Err(e) = healed {
                failed.reasons.push(format!("healing its faults: {e}"));
            }
            writer.write_patiently(&failed).await?;
            return Ok(RunnerExit::Concluded(None));
        }
    };
    if stopping {
        let check = outcome
            .status
            .consistency
            .as_ref()
            .and_then(|c| c.anomaly.clone())
            .unwrap_or_else(|| "no check was due".into());
        tracing::info!(check = %check, "stopped: every fault healed");
        events
            .publish(
                EventType::Normal,
                "Stopped",
                "Stop",
                "the runner was stopped; every fault was healed and the check cancelled".into(),
            )
            .await;
        return Ok(RunnerExit::Stopped);
    }

    if let Some(halt) = &halted {
        // What was recorded is kept and shown, but a run cut short by an operator proves
        // nothing either way.
        outcome.status.verdict = Some(Verdict::Inconclusive);
        outcome.status.reasons.insert(
            0,
            format!(
                "halted by the emergency stop at {}: {}; every fault was healed",
                halt.since, halt.reason
            ),
        );
        events
            .publish(
                EventType::Warning,
                "Halted",
                "Halt",
                format!("emergency stop at {}: {}", halt.since, halt.reason),
            )
            .await;
    }
    let report = store_report(&client, &chaos, &outcome).await;
    let mut finished = status::finished(
        &current,
        &outcome.status,
        report.as_ref().ok().cloned(),
        &now(),
    );
    if let Err(why) = &report {
        finished
            .reasons
            .push(format!("the report was not stored: {why}"));
    }
    match writer.write_patiently(&finished).await? {
        Written::Yes => {}
        Written::Superseded => {
            return Ok(RunnerExit::NothingToDo(
                "superseded before its verdict".into(),
            ));
        }
    }
    let verdict = finished.verdict.unwrap_or(Verdict::Inconclusive);
    let note = if finished.reasons.is_empty() {
        format!("verdict {verdict:?}: every assertion held")
    } else {
        format!("verdict {verdict:?}: {}", finished.reasons.join("; "))
    };
    let type_ = if verdict == Verdict::Pass {
        EventType::Normal
    } else {
        EventType::Warning
    };
    events
        .publish(type_, &format!("Verdict{verdict:?}"), "Conclude", note)
        .await;
    Ok(RunnerExit::Concluded(Some(verdict)))
}

/// Concludes a claimed run that cannot start: phase Error with the reason.
async fn not_started(
    writer: &StatusWriter,
    events: &EventSink,
    current: &ChaosStatus,
    reason: &'static str,
    message: String,
) -> Result<RunnerExit, RunnerError> {
    let failed = status::could_not_start(current, reason, &message, &now());
    events
        .publish(EventType::Warning, reason, "Start", message)
        .await;
    writer.write_patiently(&failed).await?;
    Ok(RunnerExit::Concluded(None))
}

/// A seed for a spec without one, recorded in status so the run can be replayed.
fn random_seed() -> i64 {
    (Timestamp::now().as_nanosecond() as i64 ^ i64::from(std::process::id())).abs()
}

/// Stores the report ConfigMap, retrying failures; never takes over a ConfigMap that is not
/// this Chaos's. Returns its name.
async fn store_report(
    client: &Client,
    chaos: &Chaos,
    outcome: &experiment::ExperimentOutcome,
) -> Result<String, String> {
    let report = report_store::build(chaos, outcome);
    let name = report.metadata.name.clone().unwrap_or_default();
    let api: Api<ConfigMap> =
        Api::namespaced(client.clone(), &chaos.namespace().unwrap_or_default());
    let mut wait = Duration::from_millis(500);
    let started = tokio::time::Instant::now();
    loop {
        let error = match api.get_opt(&name).await {
            Ok(Some(existing)) if !report_store::is_owned_by(&existing, chaos) => {
                return Err(format!(
                    "ConfigMap {name} exists and does not belong to this Chaos; it was left alone"
                ));
            }
            Ok(_) => match api
                .patch(
                    &name,
                    &PatchParams::apply(RUNNER_MANAGER).force(),
                    &Patch::Apply(&report),
                )
                .await
            {
                Ok(_) => return Ok(name),
                Err(error) => error,
            },
            Err(error) => error,
        };
        // Refused or invalid is not going to change by itself: say so at once.
        let lasting =
            matches!(&error, kube::Error::Api(e) if matches!(e.code, 400 | 401 | 403 | 422));
        if lasting || started.elapsed() >= WRITE_PATIENCE {
            return Err(error.to_string());
        }
        tracing::warn!(%error, "cannot store the report yet; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(8));
    }
}
