//! The schedule controller: reconciles `ChaosSchedule` objects into Chaos runs on their cron
//! schedule. Each run is a Chaos owned by the schedule (so deleting the schedule deletes its
//! runs, and each run's own finalizer heals its faults), with a fresh seed; the schedule's
//! status keeps the last runs and every run's count.
//!
//! * [`decide`] — pure: the run to make, the runs to delete, the status.

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use self::decide::{OwnedRun, Removal};
use super::clock::Clock;
use super::events::EventSink;
use super::labels::{
    CONTROLLER_MANAGER, SCHEDULE_LABEL, SCHEDULE_UID_LABEL, SCHEDULED_TIME_ANNOTATION,
};
use super::metrics::{Metrics, ScheduleSnapshot};
use crate::api::{Chaos, ChaosSchedule, validate::schedule::check_schedule};

/// Longest sleep between looks at a schedule without a change: a safety net, since owned
/// runs wake their schedule when they change.
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// What every reconciliation shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
}

fn key(schedule: &ChaosSchedule) -> String {
    schedule.uid().unwrap_or_default()
}

fn snapshot(schedule: &ChaosSchedule) -> ScheduleSnapshot {
    let counts = schedule
        .status
        .as_ref()
        .map(|s| s.counts)
        .unwrap_or_default();
    ScheduleSnapshot {
        namespace: schedule.namespace().unwrap_or_default(),
        name: schedule.name_any(),
        runs_by_verdict: [
            ("Pass".to_owned(), counts.pass),
            ("Fail".to_owned(), counts.fail),
            ("Inconclusive".to_owned(), counts.inconclusive),
        ]
        .into(),
    }
}

/// A run as the planner sees it: its cron time from its annotation, its outcome only when it
/// belongs to the run's current generation.
fn owned_run(chaos: &Chaos) -> Option<OwnedRun> {
    let scheduled: Timestamp = chaos
        .annotations()
        .get(SCHEDULED_TIME_ANNOTATION)?
        .parse()
        .ok()?;
    let status = chaos
        .status
        .as_ref()
        .filter(|s| s.observed_generation == chaos.metadata.generation);
    Some(OwnedRun {
        name: chaos.name_any(),
        scheduled,
        seed: chaos.spec.seed.unwrap_or_default(),
        phase: status.and_then(|s| s.phase),
        verdict: status.and_then(|s| s.verdict),
        completion_time: status.and_then(|s| s.completion_time.clone()),
        deleting: chaos.metadata.deletion_timestamp.is_some(),
    })
}

/// Reconciles one schedule: reads its runs fresh, plans, and carries the plan out — create
/// first, then deletes, then the status with the read's `resourceVersion`.
pub async fn reconcile(schedule: Arc<ChaosSchedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = schedule.namespace().unwrap_or_default();
    let uid = key(&schedule);
    let chaoses: Api<Chaos> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = chaoses
        .list(&ListParams::default().labels(&format!("{SCHEDULE_UID_LABEL}={uid}")))
        .await?;
    let owned: Vec<OwnedRun> = listed
        .items
        .iter()
        .filter(|c| c.owner_references().iter().any(|o| o.uid == uid))
        .filter_map(owned_run)
        .collect();
    let problems: Vec<String> = check_schedule(&schedule.spec, schedule.metadata.name.as_deref())
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    let now = ctx.clock.now();
    let plan = decide::plan(&schedule, &owned, &problems, now);

    if let Some(run) = &plan.create {
        let mut spec = schedule.spec.template.clone();
        spec.seed = Some(run.seed);
        let mut chaos = Chaos::new(&run.name, spec);
        chaos.metadata = ObjectMeta {
            name: Some(run.name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(
                [
                    (SCHEDULE_LABEL.to_owned(), schedule.name_any()),
                    (SCHEDULE_UID_LABEL.to_owned(), uid.clone()),
                ]
                .into(),
            ),
            annotations: Some(
                [(
                    SCHEDULED_TIME_ANNOTATION.to_owned(),
                    run.scheduled.to_string(),
                )]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: crate::api::API_VERSION.into(),
                kind: "ChaosSchedule".into(),
                name: schedule.name_any(),
                uid: uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        };
        let params = PostParams {
            field_manager: Some(CONTROLLER_MANAGER.into()),
            ..Default::default()
        };
        match chaoses.create(&params, &chaos).await {
            Ok(_) => {}
            // Made by an earlier attempt whose status write did not land.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for removal in &plan.delete {
        let name = match removal {
            Removal::Replaced { name, .. } | Removal::Trimmed { name } => name,
        };
        match chaoses.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let changed = schedule.status.as_ref() != Some(&plan.status);
    if changed {
        let mut written = (*schedule).clone();
        written.status = Some(plan.status.clone());
        written.metadata.managed_fields = None;
        let schedules: Api<ChaosSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
        match schedules
            .replace_status(&schedule.name_any(), &PostParams::default(), &written)
            .await
        {
            Ok(fresh) => ctx.metrics.set_schedule(&uid, Some(snapshot(&fresh))),
            // Planned from a stale read: plan again from the newer one, which is on its way.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        ctx.metrics.set_schedule(&uid, Some(snapshot(&schedule)));
    }
    let events = EventSink::new(
        ctx.client.clone(),
        CONTROLLER_MANAGER,
        schedule.object_ref(&()),
    );
    for notice in &plan.notices {
        let type_ = if notice.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        events
            .publish(type_, notice.reason, notice.reason, notice.message.clone())
            .await;
    }
    let sleep = plan
        .wake_at
        .map(|at| {
            let until = at.duration_since(now);
            Duration::from_millis(until.as_millis().max(0) as u64) + Duration::from_millis(50)
        })
        .unwrap_or(MAX_SLEEP)
        .min(MAX_SLEEP);
    Ok(Action::requeue(sleep))
}

/// What to do after a failed reconciliation.
pub fn error_policy(_schedule: Arc<ChaosSchedule>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed("schedule");
    tracing::warn!(%error, "schedule reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the schedule controller until `shutdown` resolves, for schedules in all namespaces
/// (or `namespace`).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (schedules, chaoses): (Api<ChaosSchedule>, Api<Chaos>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let (cache, writer) = reflector::store();
    let metrics = Arc::clone(&ctx.metrics);
    let changes = watcher(schedules, watcher::Config::default())
        .default_backoff()
        // A deleted schedule's series go with it.
        .map_ok(move |event| {
            if let watcher::Event::Delete(schedule) = &event {
                metrics.set_schedule(&key(schedule), None);
            }
            event
        })
        .reflect(writer)
        .applied_objects();
    let runs = watcher::Config::default().labels(SCHEDULE_UID_LABEL);
    Controller::for_stream(changes, cache)
        .owns(chaoses, runs)
        .reconcile_all_on(ctx.clock.jumps())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "schedule reconcile stream");
            }
        })
        .await;
}
