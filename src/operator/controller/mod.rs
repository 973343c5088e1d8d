//! The controller: reconciles `Chaos` objects into runner Jobs. It validates a Chaos and
//! checks its blast radius, creates one runner Job per generation, concludes a generation
//! whose runner died without a verdict, and — through kube's finalizer helper — stops the
//! runner and heals every fault before a deleted Chaos may go. The experiment itself runs in
//! the runner's pod (`schism runner`), so the controller holds no run state: restarting or
//! upgrading it, or running two at once, changes nothing about a running experiment.
//!
//! * [`decide`] — pure: the next step;
//! * [`job`] — pure: the runner Job;
//! * [`runner_state`] — pure: how a runner is doing, and why it died;
//! * [`status`] — pure: the controller's status writes.

pub mod decide;
pub mod job;
pub mod runner_state;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use self::decide::{Step, decide};
use self::job::RunnerTemplate;
use super::conditions::HALTED;
use super::events::EventSink;
use super::halt::{Halt, HaltState};
use super::labels::{
    CHAOS_NAME_ANNOTATION, CHAOS_UID_LABEL, COMPONENT_LABEL, CONTROLLER_MANAGER, GENERATION_LABEL,
    RUNNER_COMPONENT,
};
use super::lookup;
use super::metrics::{ExperimentSnapshot, Metrics};
use super::targets::{self, BlastRadius};
use crate::api::{Chaos, FaultLease, LEASE_FINALIZER, validate::semantic};

/// The finalizer that keeps a Chaos until its runner is stopped and its faults are healed.
pub const CHAOS_FINALIZER: &str = "schism.dev/heal-faults";
/// How long past its deadline a lease (or past its deletion a runner pod) may hold deletion
/// up before the controller assumes its node is gone (the data plane's kernel timeouts and the
/// agent's start-up reaper cover what it left).
pub const AGENT_GRACE: Duration = Duration::from_secs(30);

/// Reconciliations that run at once.
const RECONCILE_CONCURRENCY: u16 = 8;

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Deletion waits for runners to stop and agents to revert leases.
    #[error("waiting for {0} runner pod(s) and fault lease(s) to go")]
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

/// What every reconciliation shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The operator's limits.
    pub radius: BlastRadius,
    /// How runner pods are made.
    pub runner: RunnerTemplate,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// How long past a deadline the controller waits for an agent or a runner pod.
    pub agent_grace: Duration,
    /// The emergency stop, when watched: while it is in force no run starts.
    pub halt: Option<tokio::sync::watch::Receiver<HaltState>>,
}

impl Context {
    /// A context for a controller with these limits and runner template.
    pub fn new(
        client: Client,
        radius: BlastRadius,
        runner: RunnerTemplate,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            radius,
            runner,
            metrics,
            agent_grace: AGENT_GRACE,
            halt: None,
        }
    }

    fn events(&self, chaos: &Chaos) -> EventSink {
        EventSink::new(
            self.client.clone(),
            CONTROLLER_MANAGER,
            chaos.object_ref(&()),
        )
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn chaos_api(ctx: &Context, chaos: &Chaos) -> Api<Chaos> {
    Api::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default())
}

/// Sends one of the controller's status merge patches (they carry the `resourceVersion` of
/// the read they were made from).
async fn merge_status(
    ctx: &Context,
    chaos: &Chaos,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    chaos_api(ctx, chaos)
        .patch_status(
            &chaos.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map(drop)
}

fn uid_of(chaos: &Chaos) -> String {
    chaos.uid().unwrap_or_default()
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

/// The runner Job of the current generation, and its pods.
async fn current_runner(ctx: &Context, chaos: &Chaos) -> Result<(Option<Job>, Vec<Pod>), Error> {
    let namespace = chaos.namespace().unwrap_or_default();
    // A generation that only suspended or resumed the run is carried out by the run's Job.
    let name = match decide::followed_job(chaos) {
        Some(job) => job.to_owned(),
        None => job::job_name(
            &chaos.name_any(),
            &uid_of(chaos),
            chaos.metadata.generation.unwrap_or(0),
        ),
    };
    let job = Api::<Job>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&name)
        .await?;
    let Some(job) = job else {
        return Ok((None, Vec::new()));
    };
    let generation = job
        .labels()
        .get(GENERATION_LABEL)
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| chaos.metadata.generation.unwrap_or(0));
    let job_uid = job.uid().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&runner_selector(chaos, Some(generation))))
        .await?
        .items
        .into_iter()
        // Only pods of this very Job (not of an earlier Job of the same name).
        .filter(|pod| {
            pod.owner_references()
                .iter()
                .any(|owner| owner.uid == job_uid)
                || pod.owner_references().is_empty()
        })
        .collect();
    Ok((Some(job), pods))
}

fn runner_selector(chaos: &Chaos, generation: Option<i64>) -> String {
    let mut selector = format!(
        "{CHAOS_UID_LABEL}={},{COMPONENT_LABEL}={RUNNER_COMPONENT}",
        uid_of(chaos)
    );
    if let Some(generation) = generation {
        selector.push_str(&format!(",{GENERATION_LABEL}={generation}"));
    }
    selector
}

/// Deletes the runner Jobs of other generations than the current one: a new generation
/// supersedes a run that is still going (its runner heals and stops).
async fn stop_older_runners(ctx: &Context, chaos: &Chaos) -> Result<(), Error> {
    let api = Api::<Job>::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default());
    let current = chaos.metadata.generation.unwrap_or(0).to_string();
    let jobs = api
        .list(&ListParams::default().labels(&runner_selector(chaos, None)))
        .await?;
    for job in jobs.items {
        let generation = job
            .labels()
            .get(GENERATION_LABEL)
            .cloned()
            .unwrap_or_default();
        let finished = job.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
        if generation != current && !finished {
            api.delete(&job.name_any(), &DeleteParams::background())
                .await
                .map(drop)
                .or_else(ignore_not_found)?;
        }
    }
    Ok(())
}

fn ignore_not_found(error: kube::Error) -> Result<(), kube::Error> {
    match error {
        kube::Error::Api(e) if e.code == 404 => Ok(()),
        other => Err(other),
    }
}

async fn reject(
    chaos: &Chaos,
    ctx: &Context,
    reason: &'static str,
    message: String,
) -> Result<Action, Error> {
    stop_older_runners(ctx, chaos).await?;
    let patch = status::rejection(chaos, reason, &message, &now());
    match chaos_api(ctx, chaos)
        .patch_status(
            &chaos.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        // The object changed since this (cached) read: decide again on the new one.
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(Duration::ZERO)),
        Err(e) => return Err(e.into()),
    }
    ctx.events(chaos)
        .publish(EventType::Warning, reason, "Reject", message)
        .await;
    Ok(Action::await_change())
}

/// Starts the current generation: the blast radius first (rejected, never trimmed), then
/// the runner Job, made only if absent.
async fn start(chaos: &Chaos, ctx: &Context) -> Result<Action, Error> {
    let namespace = chaos.namespace().unwrap_or_default();
    let account = &ctx.runner.service_account;
    if Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(account)
        .await?
        .is_none()
    {
        let message = format!(
            "namespace {namespace} has no ServiceAccount {account} for runner pods: add the namespace to the chart's controller.allowedNamespaces (or runner.namespaces), or run `kubectl create serviceaccount {account} -n {namespace}` and `kubectl create rolebinding {account} -n {namespace} --clusterrole={account} --serviceaccount={namespace}:{account}`"
        );
        return reject(chaos, ctx, "RunnerNotInstalled", message).await;
    }
    if let Err(error) = lookup::resolve_target(&ctx.client, chaos, &ctx.radius).await {
        return reject(chaos, ctx, error.reason, error.message).await;
    }
    // A cache that lags may not show yet that this generation ran or was concluded; never
    // start it again on its word.
    let fresh = chaos_api(ctx, chaos).get_opt(&chaos.name_any()).await?;
    if fresh.as_ref().is_none_or(|fresh| {
        fresh.metadata.generation != chaos.metadata.generation
            || decide::started(fresh)
            || decide::concluded(fresh)
    }) {
        return Ok(Action::await_change());
    }
    let was_halted = chaos.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == HALTED && c.status == "True")
    });
    if was_halted {
        let patch = status::halted(chaos, None, &now());
        merge_status(ctx, chaos, &patch).await?;
    }
    stop_older_runners(ctx, chaos).await?;
    let job = job::runner_job(chaos, &ctx.runner);
    let name = job.name_any();
    // The Job's name goes into the status before the Job exists. The other order loses it
    // when the controller dies in between: the runner then starts, so a restarted controller
    // never comes back here, and the status never names its Job. A name written for a Job
    // not yet made is harmless: the generation has not started, so the next reconcile
    // creates it under the same name.
    let patch = serde_json::json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": "Chaos",
        "status": {"runner": {"job": name}},
    });
    chaos_api(ctx, chaos)
        .patch_status(
            &chaos.name_any(),
            &PatchParams::apply(CONTROLLER_MANAGER),
            &Patch::Apply(&patch),
        )
        .await?;
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &namespace);
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => {
            ctx.events(chaos)
                .publish(
                    EventType::Normal,
                    "RunnerCreated",
                    &format!("Create {name}"),
                    format!(
                        "runner Job {name} created for generation {}",
                        chaos.metadata.generation.unwrap_or_default()
                    ),
                )
                .await;
        }
        // Another controller (a rolling upgrade's other half) made it: one Job either way.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Concludes the current generation Inconclusive because its runner can no longer write,
/// after a fresh read shows it still has no outcome; a stuck runner's Job is deleted after.
async fn conclude(
    chaos: &Chaos,
    ctx: &Context,
    message: String,
    stop_runner: bool,
) -> Result<Action, Error> {
    let api = chaos_api(ctx, chaos);
    let Some(fresh) = api.get_opt(&chaos.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if fresh.metadata.generation != chaos.metadata.generation {
        return Ok(Action::await_change());
    }
    let generation = fresh.metadata.generation.unwrap_or(0);
    // The cache may be behind: the runner may have written its verdict just before it ended.
    if !decide::concluded(&fresh) {
        revoke_leases(&fresh, ctx, Some(generation)).await?;
        let patch = status::runner_lost(&fresh, &message, &now());
        match api
            .patch_status(
                &fresh.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Action::requeue(Duration::ZERO));
            }
            Err(e) => return Err(e.into()),
        }
        ctx.events(&fresh)
            .publish(
                EventType::Warning,
                "RunnerFailed",
                "Conclude",
                format!("verdict Inconclusive: {message}"),
            )
            .await;
    }
    // Only once the outcome is written: a Job gone before it would look like a generation
    // that never started, and be started again.
    if stop_runner {
        let name = job::job_name(&fresh.name_any(), &uid_of(&fresh), generation);
        Api::<Job>::namespaced(ctx.client.clone(), &fresh.namespace().unwrap_or_default())
            .delete(&name, &DeleteParams::background())
            .await
            .map(drop)
            .or_else(ignore_not_found)?;
    }
    Ok(Action::await_change())
}

async fn apply(chaos: Arc<Chaos>, ctx: Arc<Context>) -> Result<Action, Error> {
    if decide::concluded(&chaos) {
        return Ok(Action::await_change());
    }
    if decide::finished_run_followed(&chaos) {
        return follow_finished(&chaos, &ctx).await;
    }
    let problems = problems(&chaos, &ctx.radius);
    let (job, pods) = current_runner(&ctx, &chaos).await?;
    match decide(&chaos, &problems, job.as_ref(), &pods, Timestamp::now()) {
        Step::Idle => Ok(Action::await_change()),
        Step::Reject { reason, message } => reject(&chaos, &ctx, reason, message).await,
        Step::Start => match ctx.halt.as_ref().and_then(|h| h.borrow().halt().cloned()) {
            Some(halt) => hold(&chaos, &ctx, &halt).await,
            None => start(&chaos, &ctx).await,
        },
        Step::Watch { recheck } => Ok(match recheck {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        }),
        Step::Conclude {
            message,
            stop_runner,
        } => conclude(&chaos, &ctx, message, stop_runner).await,
    }
}

/// `suspend` changed on a finished Chaos: not a new run, and nothing to pause. The outcome
/// stands, now for this generation too.
async fn follow_finished(chaos: &Chaos, ctx: &Context) -> Result<Action, Error> {
    let patch = status::followed(chaos);
    merge_status(ctx, chaos, &patch).await?;
    ctx.events(chaos)
        .publish(
            EventType::Normal,
            "OutcomeStands",
            "Follow",
            format!(
                "only spec.suspend changed on a finished experiment: no new run; its outcome stands for generation {}",
                chaos.metadata.generation.unwrap_or_default()
            ),
        )
        .await;
    Ok(Action::await_change())
}

/// Under an emergency stop a run does not start: the `Halted` condition and an Event say
/// why, once; lifting the stop wakes every Chaos.
async fn hold(chaos: &Chaos, ctx: &Context, halt: &Halt) -> Result<Action, Error> {
    let message = halt.describe();
    let shown = chaos.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == HALTED && c.status == "True" && c.message == message)
    });
    if !shown {
        let patch = status::halted(chaos, Some(&message), &now());
        merge_status(ctx, chaos, &patch).await?;
        ctx.events(chaos)
            .publish(EventType::Warning, "Halted", "Wait", message)
            .await;
    }
    Ok(Action::await_change())
}

/// Deletes the Chaos's leases (of one generation, or all) and returns how many still wait for
/// their agent. A lease whose agent has not answered long past its deadline has its finalizer
/// removed: deletion never hangs on a node that is gone.
async fn revoke_leases(
    chaos: &Chaos,
    ctx: &Context,
    generation: Option<i64>,
) -> Result<usize, Error> {
    let api: Api<FaultLease> =
        Api::namespaced(ctx.client.clone(), &chaos.namespace().unwrap_or_default());
    let mut selector = format!("{CHAOS_UID_LABEL}={}", uid_of(chaos));
    if let Some(generation) = generation {
        selector.push_str(&format!(",{GENERATION_LABEL}={generation}"));
    }
    let params = ListParams::default().labels(&selector);
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

/// Deleting a Chaos: stop its runners (their pods heal what they hold on SIGTERM), wait for
/// them to go, and heal every lease — bounded, so deletion never hangs on a lost node.
async fn cleanup(chaos: Arc<Chaos>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = chaos.namespace().unwrap_or_default();
    let selector = runner_selector(&chaos, None);
    let params = ListParams::default().labels(&selector);
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &namespace);
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
    let running = jobs.list(&params).await?.items;
    let stopping_a_run = running.iter().any(|job| {
        job.status
            .as_ref()
            .and_then(|s| s.active)
            .is_some_and(|active| active > 0)
    });
    if !running.is_empty() {
        jobs.delete_collection(
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            },
            &params,
        )
        .await?;
    }
    // The pods too, at once: they get SIGTERM now rather than when the collector gets to them.
    pods.delete_collection(&DeleteParams::default(), &params)
        .await?;
    if stopping_a_run {
        ctx.events(&chaos)
            .publish(
                EventType::Normal,
                "Stopped",
                "Delete",
                "deleted while running; its runner stops and heals its faults".into(),
            )
            .await;
    }
    let grace = k8s_openapi::jiff::SignedDuration::try_from(ctx.agent_grace).unwrap_or_default();
    let runners_left = pods
        .list(&params)
        .await?
        .items
        .iter()
        .filter(|pod| {
            // A pod whose grace ran out long ago is on a node that is gone.
            pod.metadata
                .deletion_timestamp
                .as_ref()
                .is_none_or(|deadline| deadline.0 + grace > Timestamp::now())
        })
        .count();
    let leases_left = revoke_leases(&chaos, &ctx, None).await?;
    if runners_left + leases_left > 0 {
        return Err(Error::Reverting(runners_left + leases_left));
    }
    ctx.metrics.set_experiment(&uid_of(&chaos), None);
    Ok(Action::await_change())
}

/// One reconciliation, wrapped in the finalizer helper.
pub async fn reconcile(chaos: Arc<Chaos>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api = chaos_api(&ctx, &chaos);
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
    result
}

/// Failed reconciliations are retried soon; waiting for runners and agents is not an error
/// worth a log.
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

/// Drops from a cached Chaos what the controller never reads, so that hundreds of concluded
/// experiments cost little memory: field ownership, `kubectl apply`'s copy of the object, and
/// the outcome's bulk (timeline, availability, consistency, reasons, Prometheus assertions,
/// the abort). Decisions that need the
/// whole status read it fresh from the API server.
pub fn trim_for_cache(chaos: &mut Chaos) {
    chaos.metadata.managed_fields = None;
    if let Some(annotations) = chaos.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    if let Some(status) = chaos.status.as_mut() {
        status.faults = Vec::new();
        status.faults_omitted = None;
        status.availability = None;
        status.consistency = None;
        status.reasons = Vec::new();
        status.report = None;
        status.assertions = Vec::new();
        status.abort = None;
    }
}

/// A tick on every change of the emergency stop (never, when it is not watched).
fn halt_changes(
    halt: Option<tokio::sync::watch::Receiver<HaltState>>,
) -> futures::stream::BoxStream<'static, ()> {
    match halt {
        None => Box::pin(futures::stream::pending()),
        Some(halt) => Box::pin(futures::stream::unfold(halt, |mut halt| async move {
            halt.changed().await.ok()?;
            Some(((), halt))
        })),
    }
}

/// Runs the controller until `shutdown` resolves. Watches Chaos objects in all namespaces (or
/// `namespace`), the runner Jobs they own, and the runner pods — nothing else.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (chaoses, jobs, pods): (Api<Chaos>, Api<Job>, Api<Pod>) = match namespace {
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
    let runners =
        watcher::Config::default().labels(&format!("{COMPONENT_LABEL}={RUNNER_COMPONENT}"));
    let (cache, writer) = reflector::store();
    let metrics = Arc::clone(&ctx.metrics);
    let chaos_changes = watcher(chaoses, watcher::Config::default())
        .default_backoff()
        // The metrics read the outcome's figures, which the cache drops: they are taken from
        // every event as it arrives, before the object is trimmed.
        .map_ok(move |event| {
            match &event {
                watcher::Event::Apply(chaos) | watcher::Event::InitApply(chaos) => {
                    metrics.set_experiment(&uid_of(chaos), Some(ExperimentSnapshot::of(chaos)))
                }
                watcher::Event::Delete(chaos) => metrics.set_experiment(&uid_of(chaos), None),
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            event
        })
        .modify(trim_for_cache)
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(chaos_changes, cache)
        // Reconciles are short API exchanges; a few at a time keep a restart over hundreds of
        // Chaos objects from holding hundreds of responses in memory at once.
        .with_config(
            kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
        )
        .owns(jobs, runners.clone())
        // A runner pod that changes (starts, fails to pull, is evicted) wakes its Chaos.
        .watches(pods, runners, |pod: Pod| {
            let name = pod.annotations().get(CHAOS_NAME_ANNOTATION)?.clone();
            Some(ObjectRef::new(&name).within(&pod.namespace()?))
        })
        // Lifting the emergency stop wakes every Chaos that waited for it.
        .reconcile_all_on(halt_changes(ctx.halt.clone()))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile stream");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_what_decisions_read_and_drops_the_bulk() {
        let mut chaos: Chaos = serde_json::from_value(serde_json::json!({
            "apiVersion": "schism.dev/v1alpha1", "kind": "Chaos",
            "metadata": {"name": "x", "namespace": "demo", "generation": 2, "resourceVersion": "9",
                "finalizers": [CHAOS_FINALIZER],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{…}", "team": "db"},
                "managedFields": [{"manager": "schism-runner", "operation": "Apply"}]},
            "spec": {"target": {"statefulSet": "etcd"}, "duration": "10s"},
            "status": {"phase": "Completed", "verdict": "Fail", "observedGeneration": 2,
                "conditions": [{"type": "Completed", "status": "True", "reason": "VerdictReached",
                    "message": "verdict Fail", "lastTransitionTime": "2026-12-01T10:00:00Z"}],
                "reasons": ["history is not linearizable"],
                "consistency": {"model": "cas-register", "operations": 1, "indeterminate": 0,
                    "result": "NotLinearizable", "checkMillis": 1, "counterexample": "…"},
                "faults": [{"name": "split", "kind": "partition"}]}
        }))
        .unwrap();
        trim_for_cache(&mut chaos);
        assert!(chaos.metadata.managed_fields.is_none());
        let annotations = chaos.metadata.annotations.clone().unwrap();
        assert_eq!(
            annotations.len(),
            1,
            "only kubectl's copy goes: {annotations:?}"
        );
        assert_eq!(chaos.metadata.finalizers.as_ref().unwrap().len(), 1);
        assert!(decide::concluded(&chaos));
        let status = chaos.status.unwrap();
        assert_eq!(status.conditions.len(), 1);
        assert!(
            status.consistency.is_none() && status.faults.is_empty() && status.reasons.is_empty()
        );
    }
}
