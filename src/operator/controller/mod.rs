//! The controller: reconciles `Chaos` objects. Each reconciliation reads the object and what
//! this process knows of its run, asks [`decide`] for the next step, and carries it out:
//! starting the engine (with [`backend::KubeBackend`] as its backend), publishing progress and
//! the verdict by server-side apply of the status, and — through kube's finalizer helper —
//! healing every fault before a deleted Chaos may go.

pub mod backend;
pub mod decide;
pub mod report_store;
pub mod targets;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use self::backend::{KubeBackend, LEASE_CHAOS_LABEL, RunProgress};
use self::decide::{RunState, Step, decide};
use self::targets::{BlastRadius, TargetPod};
use super::metrics::{ExperimentLabels, Metrics};
use crate::api::{Chaos, ChaosStatus, FaultLease, LEASE_FINALIZER, validate::semantic};
use crate::engine::experiment::{self, ExperimentOutcome, RunSettings};
use crate::engine::timeline;

/// The finalizer that keeps a Chaos until its faults are healed.
pub const CHAOS_FINALIZER: &str = "schism.dev/heal-faults";
/// The one field manager of every status write.
pub const FIELD_MANAGER: &str = "schism-controller";
/// How often a running experiment's status is refreshed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// How long past its deadline a lease may keep its finalizer before the controller assumes
/// the agent is gone (the data plane's kernel timeouts and the agent's start-up reaper cover
/// what it left).
pub const AGENT_GRACE: Duration = Duration::from_secs(30);

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Deletion waits for agents to revert leases.
    #[error("waiting for {0} fault lease(s) to be reverted")]
    Reverting(usize),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// A short label for the error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Reverting(_) => "reverting",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// (namespace, pod name) → the running Chaos that targets the pod.
type PodIndex = HashMap<(String, String), ObjectRef<Chaos>>;

/// A run under way in this process.
struct RunHandle {
    /// The engine; taken out once it finished.
    task: Option<tokio::task::JoinHandle<ExperimentOutcome>>,
    /// The finished outcome, kept until its status is written: a failed write is retried
    /// with the same outcome instead of losing it.
    outcome: Option<Result<Box<ExperimentOutcome>, String>>,
    progress: Arc<RunProgress>,
}

/// What every reconciliation shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The operator's limits.
    pub radius: BlastRadius,
    /// Budget of each linearizability check.
    pub check_timeout: Duration,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// How long past a lease's deadline the controller waits for its agent.
    pub agent_grace: Duration,
    reporter: Reporter,
    runs: Mutex<HashMap<String, RunHandle>>,
    /// Which running Chaos targets which pod, so a pod's change wakes its Chaos.
    pod_targets: Arc<Mutex<PodIndex>>,
}

impl Context {
    /// A context for a controller with these limits.
    pub fn new(
        client: Client,
        radius: BlastRadius,
        check_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            client,
            radius,
            check_timeout,
            metrics,
            agent_grace: AGENT_GRACE,
            reporter,
            runs: Mutex::default(),
            pod_targets: Arc::default(),
        }
    }

    fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }

    fn run_state(&self, uid: &str) -> RunState {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        match runs.get(uid) {
            None => RunState::None,
            Some(handle)
                if handle.outcome.is_some()
                    || handle.task.as_ref().is_none_or(|t| t.is_finished()) =>
            {
                RunState::Finished(Box::default())
            }
            Some(handle) => RunState::Running {
                active_faults: handle.progress.active_faults.load(Ordering::Relaxed),
                checking: handle.progress.window_over.load(Ordering::Relaxed),
            },
        }
    }

    fn track_pods(&self, chaos: &Chaos, pods: &[TargetPod]) {
        let namespace = chaos.namespace().unwrap_or_default();
        let mut index = self.pod_targets.lock().unwrap_or_else(|p| p.into_inner());
        for pod in pods {
            index.insert(
                (namespace.clone(), pod.name.clone()),
                ObjectRef::from_obj(chaos),
            );
        }
    }

    fn untrack_pods(&self, chaos: &Chaos) {
        let own = ObjectRef::from_obj(chaos);
        self.pod_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| *c != own);
    }

    fn take_run(&self, uid: &str) -> Option<RunHandle> {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid)
    }
}

impl Drop for Context {
    /// A controller that stops takes its runs with it; their leases expire at their deadlines
    /// and a successor marks the runs as lost.
    fn drop(&mut self) {
        for (_, run) in self.runs.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            if let Some(task) = run.task {
                task.abort();
            }
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Event notes are limited to 1 KiB by the API server.
const MAX_EVENT_NOTE: usize = 1000;

/// Cuts an event note to what the API server accepts.
pub(crate) fn bounded_note(mut note: String) -> String {
    if note.len() > MAX_EVENT_NOTE {
        let mut cut = MAX_EVENT_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push('…');
    }
    note
}

async fn publish(ctx: &Context, chaos: &Chaos, type_: EventType, reason: &str, note: String) {
    let note = bounded_note(note);
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder().publish(&event, &chaos.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish an event");
    }
}

async fn write_status(ctx: &Context, chaos: &Chaos, status: ChaosStatus) -> Result<(), Error> {
    let api: Api<Chaos> =
        Api::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default());
    let patch = serde_json::json!({"apiVersion": crate::api::API_VERSION, "kind": "Chaos", "status": status});
    api.patch_status(
        &chaos.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    let labels = ExperimentLabels {
        phase: status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
        verdict: status.verdict.map(|v| format!("{v:?}")).unwrap_or_default(),
    };
    ctx.metrics
        .set_experiment(&chaos.uid().unwrap_or_default(), Some(labels));
    Ok(())
}

/// Every problem of the spec that keeps it from running in this cluster.
fn problems(chaos: &Chaos, radius: &BlastRadius) -> Vec<String> {
    let mut problems: Vec<String> = semantic::check_spec(&chaos.spec)
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    if chaos.spec.target.local.is_some() {
        problems.push(targets::TargetError::LocalTarget.to_string());
    }
    if let Err(e) = targets::check_namespace(&chaos.namespace().unwrap_or_default(), radius) {
        problems.push(e.to_string());
    }
    problems
}

/// The target's pod selector, and for a StatefulSet its governing service (for stable names).
async fn target_selector(
    client: &Client,
    chaos: &Chaos,
) -> Result<(LabelSelector, Option<String>), String> {
    let namespace = chaos.namespace().unwrap_or_default();
    let target = &chaos.spec.target;
    if let Some(name) = &target.deployment {
        let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?;
        let deployment = deployment
            .ok_or_else(|| format!("deployment {name} not found in namespace {namespace}"))?;
        return Ok((
            deployment.spec.map(|s| s.selector).unwrap_or_default(),
            None,
        ));
    }
    if let Some(name) = &target.stateful_set {
        let set = Api::<StatefulSet>::namespaced(client.clone(), &namespace)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?;
        let set =
            set.ok_or_else(|| format!("statefulSet {name} not found in namespace {namespace}"))?;
        let spec = set.spec.unwrap_or_default();
        return Ok((spec.selector, spec.service_name.filter(|s| !s.is_empty())));
    }
    Ok((target.selector.clone().unwrap_or_default(), None))
}

async fn start(chaos: Arc<Chaos>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let namespace = chaos.namespace().unwrap_or_default();
    let (selector, service) = match target_selector(&ctx.client, &chaos).await {
        Ok(found) => found,
        Err(message) => return reject(&chaos, ctx, "TargetNotFound", message).await,
    };
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default())
        .await?;
    let chosen: Vec<TargetPod> =
        match targets::resolve(&chaos.spec.target, &selector, &pods.items, &ctx.radius) {
            Ok(chosen) => chosen,
            Err(e) => {
                let reason = match e {
                    targets::TargetError::TooManyPods { .. } => "BlastRadiusExceeded",
                    targets::TargetError::NamespaceNotAllowed { .. } => "NamespaceNotAllowed",
                    targets::TargetError::NoPods(_) => "NoTargetPods",
                    targets::TargetError::LocalTarget => "LocalTarget",
                };
                return reject(&chaos, ctx, reason, e.to_string()).await;
            }
        };
    let seed = chaos.spec.seed.unwrap_or_else(|| {
        (Timestamp::now().as_nanosecond() as i64 ^ i64::from(std::process::id())).abs()
    });
    let names: Vec<String> = chosen.iter().map(|p| p.name.clone()).collect();
    let plan = match timeline::build(&chaos.spec, &names, seed as u64) {
        Ok(plan) => plan,
        Err(e) => return reject(&chaos, ctx, "PlanImpossible", e.to_string()).await,
    };
    let hosts: Vec<String> = chosen
        .iter()
        .map(|p| match &service {
            // StatefulSet pods keep their DNS name across restarts; their IP does not.
            Some(service) => format!("{}.{service}.{namespace}.svc", p.name),
            None => p.ip.clone(),
        })
        .collect();
    ctx.track_pods(&chaos, &chosen);
    let progress = Arc::new(RunProgress::default());
    let mut backend = KubeBackend::new(
        ctx.client.clone(),
        Arc::clone(&chaos),
        chosen,
        hosts,
        ctx.recorder(),
        Arc::clone(&progress),
    );
    let settings = RunSettings {
        seed: seed as u64,
        check_memory: None,
        check_timeout: ctx.check_timeout,
        record_history: true,
        progress: false,
    };
    let spec = chaos.spec.clone();
    let task =
        tokio::spawn(async move { experiment::run(&spec, plan, &mut backend, &settings).await });
    ctx.runs.lock().unwrap_or_else(|p| p.into_inner()).insert(
        chaos.uid().unwrap_or_default(),
        RunHandle {
            task: Some(task),
            outcome: None,
            progress: Arc::clone(&progress),
        },
    );
    write_status(ctx, &chaos, decide::started(&chaos, seed, &now())).await?;
    publish(
        ctx,
        &chaos,
        EventType::Normal,
        "Started",
        format!(
            "chaos window of {} opened on {} pod(s), seed {seed}",
            chaos.spec.duration,
            names.len()
        ),
    )
    .await;
    Ok(Action::requeue(PROGRESS_INTERVAL))
}

async fn reject(
    chaos: &Chaos,
    ctx: &Context,
    reason: &'static str,
    message: String,
) -> Result<Action, Error> {
    write_status(
        ctx,
        chaos,
        decide::rejected(chaos, reason, &message, &now()),
    )
    .await?;
    publish(ctx, chaos, EventType::Warning, reason, message).await;
    Ok(Action::await_change())
}

/// The finished run's outcome, awaiting the engine task the first time.
async fn finished_outcome(
    ctx: &Context,
    uid: &str,
) -> Option<Result<Box<ExperimentOutcome>, String>> {
    let task = {
        let mut runs = ctx.runs.lock().unwrap_or_else(|p| p.into_inner());
        let handle = runs.get_mut(uid)?;
        if let Some(outcome) = &handle.outcome {
            return Some(outcome.as_ref().cloned().map_err(Clone::clone));
        }
        handle.task.take()?
    };
    let outcome = task
        .await
        .map(Box::new)
        .map_err(|e| format!("the experiment task failed: {e}"));
    let mut runs = ctx.runs.lock().unwrap_or_else(|p| p.into_inner());
    let handle = runs.get_mut(uid)?;
    handle.outcome = Some(outcome);
    handle
        .outcome
        .as_ref()
        .map(|o| o.as_ref().cloned().map_err(Clone::clone))
}

async fn finish(chaos: &Chaos, ctx: &Context) -> Result<Action, Error> {
    let uid = chaos.uid().unwrap_or_default();
    let Some(outcome) = finished_outcome(ctx, &uid).await else {
        return Ok(Action::await_change());
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(message) => {
            // The engine crashed: whatever it had injected is revoked before anything else.
            revoke_leases(chaos, ctx).await?;
            write_status(
                ctx,
                chaos,
                decide::rejected(chaos, "RunFailed", &message, &now()),
            )
            .await?;
            ctx.take_run(&uid);
            ctx.untrack_pods(chaos);
            return Ok(Action::await_change());
        }
    };
    let report = report_store::build(chaos, &outcome);
    let report_name = report.metadata.name.clone();
    let config_maps: Api<ConfigMap> =
        Api::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default());
    let stored = config_maps
        .patch(
            report_name.as_deref().unwrap_or_default(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&report),
        )
        .await;
    if let Err(e) = &stored {
        tracing::warn!(error = %e, "cannot store the report");
    }
    let status = decide::finished(chaos, &outcome.status, stored.ok().and(report_name), &now());
    let verdict = status.verdict.map(|v| format!("{v:?}")).unwrap_or_default();
    let note = if status.reasons.is_empty() {
        format!("verdict {verdict}: every assertion held")
    } else {
        format!("verdict {verdict}: {}", status.reasons.join("; "))
    };
    // Only once the verdict is written is the run forgotten; a failed write retries.
    write_status(ctx, chaos, status).await?;
    ctx.take_run(&uid);
    ctx.untrack_pods(chaos);
    let type_ = if verdict == "Pass" {
        EventType::Normal
    } else {
        EventType::Warning
    };
    publish(ctx, chaos, type_, &format!("Verdict{verdict}"), note).await;
    Ok(Action::await_change())
}

async fn apply(chaos: Arc<Chaos>, ctx: Arc<Context>) -> Result<Action, Error> {
    let uid = chaos.uid().unwrap_or_default();
    let problems = problems(&chaos, &ctx.radius);
    // Read once: the step and the progress it reports come from the same observation.
    let run = ctx.run_state(&uid);
    match decide(&chaos, &run, &problems) {
        Step::Reject { reason, message } => reject(&chaos, &ctx, reason, message).await,
        Step::Start => start(chaos, &ctx).await,
        Step::Watch => {
            let (active, checking) = match run {
                RunState::Running {
                    active_faults,
                    checking,
                } => (active_faults, checking),
                _ => (0, false),
            };
            write_status(
                &ctx,
                &chaos,
                decide::progress(&chaos, active, checking, &now()),
            )
            .await?;
            Ok(Action::requeue(PROGRESS_INTERVAL))
        }
        Step::Publish => finish(&chaos, &ctx).await,
        Step::Orphaned => {
            // The cached object may predate the verdict this process just wrote; ask the API
            // server before declaring a run lost.
            let api: Api<Chaos> =
                Api::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default());
            let fresh = api.get_status(&chaos.name_any()).await?;
            let fresh_status = fresh.status.unwrap_or_default();
            let concluded = matches!(
                fresh_status.phase,
                Some(crate::api::Phase::Completed | crate::api::Phase::Error)
            );
            if concluded && fresh_status.observed_generation == fresh.metadata.generation {
                return Ok(Action::await_change());
            }
            revoke_leases(&chaos, &ctx).await?;
            write_status(&ctx, &chaos, decide::orphaned(&chaos, &now())).await?;
            publish(
                &ctx,
                &chaos,
                EventType::Warning,
                "RunLost",
                "the controller restarted during the run; faults healed, verdict Inconclusive"
                    .into(),
            )
            .await;
            Ok(Action::await_change())
        }
        Step::Idle => Ok(Action::await_change()),
    }
}

/// Deletes the Chaos's leases and returns how many still wait for their agent. A lease whose
/// agent has not answered long past its deadline has its finalizer removed: deletion never
/// hangs on a node that is gone.
async fn revoke_leases(chaos: &Chaos, ctx: &Context) -> Result<usize, Error> {
    let api: Api<FaultLease> =
        Api::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default());
    let params = ListParams::default().labels(&format!(
        "{LEASE_CHAOS_LABEL}={}",
        chaos.uid().unwrap_or_default()
    ));
    api.delete_collection(&DeleteParams::default(), &params)
        .await?;
    let left = api.list(&params).await?;
    let mut waiting = 0;
    for lease in left.items {
        let overdue = lease.spec.deadline.0
            + k8s_openapi::jiff::SignedDuration::try_from(ctx.agent_grace).unwrap_or_default()
            < Timestamp::now();
        let has_finalizer = lease.finalizers().iter().any(|f| f == LEASE_FINALIZER);
        if overdue && has_finalizer {
            tracing::warn!(lease = %lease.name_any(), node = %lease.spec.pod.node_name, "agent did not revert the lease; releasing it");
            let patch = serde_json::json!({"metadata": {"finalizers": lease.finalizers().iter().filter(|f| *f != LEASE_FINALIZER).collect::<Vec<_>>()}});
            api.patch(
                &lease.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        } else {
            waiting += 1;
        }
    }
    Ok(waiting)
}

async fn cleanup(chaos: Arc<Chaos>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.untrack_pods(&chaos);
    if let Some(handle) = ctx.take_run(&chaos.uid().unwrap_or_default()) {
        // Stopping the engine mid-run drops its backend; the leases below are what heal.
        // Waiting for the abort to land means no lease it was creating appears afterwards.
        if let Some(task) = handle.task {
            task.abort();
            let _ = task.await;
        }
        publish(
            &ctx,
            &chaos,
            EventType::Normal,
            "Stopped",
            "deleted while running; healing its faults".into(),
        )
        .await;
    }
    let waiting = revoke_leases(&chaos, &ctx).await?;
    if waiting > 0 {
        return Err(Error::Reverting(waiting));
    }
    ctx.metrics
        .set_experiment(&chaos.uid().unwrap_or_default(), None);
    Ok(Action::await_change())
}

/// One reconciliation, wrapped in the finalizer helper.
pub async fn reconcile(chaos: Arc<Chaos>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<Chaos> =
        Api::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default());
    let result = finalizer(&api, CHAOS_FINALIZER, chaos, |event| async {
        match event {
            Finalizer::Apply(chaos) => apply(chaos, Arc::clone(&ctx)).await,
            Finalizer::Cleanup(chaos) => cleanup(chaos, Arc::clone(&ctx)).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconciled(started.elapsed());
    ctx.metrics.active_faults.set(
        ctx.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|r| r.progress.active_faults.load(Ordering::Relaxed) as i64)
            .sum(),
    );
    result
}

/// Failed reconciliations are retried soon; waiting for agents is not an error worth a log.
pub fn error_policy(_chaos: Arc<Chaos>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    match error {
        Error::Reverting(_) => Action::requeue(Duration::from_secs(2)),
        other => {
            tracing::warn!(error = %other, "reconcile failed");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// Runs the controller until the stream ends (shutdown signal). Watches Chaos objects in all
/// namespaces (or `namespace`), the FaultLeases they own, and the pods they target.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    let client = ctx.client.clone();
    let (chaoses, leases, pods): (Api<Chaos>, Api<FaultLease>, Api<Pod>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let pod_targets = Arc::clone(&ctx.pod_targets);
    ctx.metrics.set_ready(true);
    Controller::new(chaoses, watcher::Config::default())
        .owns(leases, watcher::Config::default())
        // A target pod that changes (restarts, vanishes) wakes the Chaos running against it.
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            let key = (pod.namespace().unwrap_or_default(), pod.name_any());
            pod_targets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile stream");
            }
        })
        .await;
}
