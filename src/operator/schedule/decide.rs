//! What the schedule controller does next (pure): from a ChaosSchedule, the Chaos runs it
//! owns and the time, the run to create, the runs to delete and the status to write.
//!
//! The status is the schedule's memory, written with the `resourceVersion` of the read it was
//! planned from: a run is counted when its entry first gets a verdict, in the same write, so a
//! conflict or a restart never counts a run twice. Runs are named after their cron time, so a
//! creation that is retried finds the run it made instead of making a second.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::cron::CronSchedule;
use crate::api::{
    ChaosSchedule, ChaosScheduleStatus, ConcurrencyPolicy, Phase, ScheduledRun, Verdict,
};
use crate::operator::conditions::set_condition;

/// The schedule's condition: valid and scheduling, suspended, or why not.
pub const READY: &str = "Ready";

/// One Chaos the schedule made, as read from the API.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedRun {
    /// Its name.
    pub name: String,
    /// The cron time it was made for.
    pub scheduled: Timestamp,
    /// Its seed.
    pub seed: i64,
    /// Its phase.
    pub phase: Option<Phase>,
    /// Its verdict, once it has the outcome of its current generation.
    pub verdict: Option<Verdict>,
    /// When it concluded.
    pub completion_time: Option<Time>,
    /// It is being deleted.
    pub deleting: bool,
}

impl OwnedRun {
    fn concluded(&self) -> bool {
        matches!(self.phase, Some(Phase::Completed | Phase::Error))
    }
}

/// A run to make.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// Name of the Chaos.
    pub name: String,
    /// Its cron time.
    pub scheduled: Timestamp,
    /// Its fresh seed.
    pub seed: i64,
}

/// Why a run's Chaos goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// A newer run replaces it (`Replace`).
    Replaced {
        /// The run's Chaos.
        name: String,
        /// The run that replaces it.
        by: String,
    },
    /// It is older than the kept history.
    Trimmed {
        /// The run's Chaos.
        name: String,
    },
}

/// An Event to publish about the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Reason, CamelCase.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
    /// Warning rather than Normal.
    pub warning: bool,
}

/// Everything one reconciliation does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The run to create, first (its name makes a retry harmless).
    pub create: Option<NewRun>,
    /// Runs to delete.
    pub delete: Vec<Removal>,
    /// The status to write.
    pub status: ChaosScheduleStatus,
    /// Events.
    pub notices: Vec<Notice>,
    /// When to look again without a change.
    pub wake_at: Option<Timestamp>,
}

/// The name of the run for cron time `scheduled`: the schedule's name and the minutes since
/// 1970 (cron's resolution), as Kubernetes names CronJob runs.
pub fn run_name(schedule: &str, scheduled: Timestamp) -> String {
    format!("{schedule}-{}", scheduled.as_second().div_euclid(60))
}

/// A fresh seed for the run at `scheduled`, from the schedule's UID: distinct per run,
/// the same on a retry.
pub fn run_seed(uid: &str, scheduled: Timestamp) -> i64 {
    let mut state = uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) ^ scheduled.as_second() as u64;
    // splitmix64's finalizer spreads neighbouring times over the whole range.
    state = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    state = (state ^ (state >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    state ^= state >> 31;
    (state >> 1) as i64
}

/// Plans one reconciliation. `problems` are the schedule's validation problems; `owned` its
/// runs, in any order.
pub fn plan(
    schedule: &ChaosSchedule,
    owned: &[OwnedRun],
    problems: &[String],
    now: Timestamp,
) -> Plan {
    let spec = &schedule.spec;
    let name = schedule.metadata.name.clone().unwrap_or_default();
    let generation = schedule.metadata.generation;
    let previous = schedule.status.clone().unwrap_or_default();
    let now_time = Time(now);
    let mut status = previous.clone();
    status.observed_generation = generation;
    let mut notices = Vec::new();
    let mut delete = Vec::new();

    // The history, newest first: every owned run, and concluded entries whose Chaos is gone.
    let mut owned: Vec<&OwnedRun> = owned.iter().collect();
    owned.sort_by(|a, b| b.scheduled.cmp(&a.scheduled).then(a.name.cmp(&b.name)));
    let mut runs: Vec<ScheduledRun> = Vec::new();
    for run in &owned {
        let before = previous.runs.iter().find(|r| r.name == run.name);
        // A run that ended without a verdict of its own (refused, say) proved nothing.
        let verdict = run
            .concluded()
            .then(|| run.verdict.unwrap_or(Verdict::Inconclusive));
        if let Some(verdict) = verdict
            && before.is_none_or(|b| b.verdict.is_none())
        {
            status.counts.add(verdict);
        }
        runs.push(ScheduledRun {
            name: run.name.clone(),
            scheduled_time: Time(run.scheduled),
            seed: run.seed,
            phase: run.phase,
            verdict,
            completion_time: run.completion_time.clone().filter(|_| run.concluded()),
            replaced_by: before.and_then(|b| b.replaced_by.clone()),
        });
    }
    for kept in &previous.runs {
        if kept.verdict.is_some() && !runs.iter().any(|r| r.name == kept.name) {
            runs.push(kept.clone());
        }
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.scheduled_time.0));

    let cron = if problems.is_empty() {
        CronSchedule::parse(&spec.schedule, spec.time_zone.as_deref()).ok()
    } else {
        None
    };
    let active: Vec<&OwnedRun> = owned
        .iter()
        .copied()
        .filter(|r| !r.concluded() && !r.deleting)
        .collect();
    let mut created = None;
    match (&cron, spec.suspend) {
        (None, _) => {
            let message = if problems.is_empty() {
                "the schedule cannot be read".to_owned()
            } else {
                problems.join("; ")
            };
            if previous
                .conditions
                .iter()
                .all(|c| c.type_ != READY || c.message != message)
            {
                notices.push(Notice {
                    reason: "InvalidSpec",
                    message: message.clone(),
                    warning: true,
                });
            }
            set_condition(
                &mut status.conditions,
                READY,
                false,
                "InvalidSpec",
                &message,
                generation,
                &now_time,
            );
            status.next_schedule_time = None;
        }
        (Some(_), true) => {
            set_condition(
                &mut status.conditions,
                READY,
                true,
                "Suspended",
                "suspended: no new runs until spec.suspend is false",
                generation,
                &now_time,
            );
            status.next_schedule_time = None;
        }
        (Some(cron), false) => {
            // Runs are never made for times before the schedule existed or already handled.
            let created_at = schedule
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(now);
            let handled = [
                previous.last_schedule_time.as_ref().map(|t| t.0),
                owned.first().map(|r| r.scheduled),
            ]
            .into_iter()
            .flatten()
            .max()
            .map_or(created_at, |last| last.max(created_at));
            if let Some(due) = cron.due(handled, now) {
                status.last_schedule_time = Some(Time(due));
                let late = now.duration_since(due);
                let too_late = spec
                    .starting_deadline
                    .is_some_and(|d| late.unsigned_abs() > d.get());
                if too_late {
                    status.counts.skipped += 1;
                    notices.push(Notice {
                        reason: "MissedSchedule",
                        message: format!(
                            "the run due at {due} is skipped: it is {}s late, past startingDeadline",
                            late.as_secs()
                        ),
                        warning: true,
                    });
                } else if !active.is_empty() && spec.concurrency_policy == ConcurrencyPolicy::Forbid
                {
                    status.counts.skipped += 1;
                    notices.push(Notice {
                        reason: "SkippedRun",
                        message: format!(
                            "the run due at {due} is skipped: {} is still running (concurrencyPolicy Forbid)",
                            active[0].name
                        ),
                        warning: false,
                    });
                } else {
                    let run = NewRun {
                        name: run_name(&name, due),
                        scheduled: due,
                        seed: run_seed(schedule.metadata.uid.as_deref().unwrap_or(&name), due),
                    };
                    notices.push(Notice {
                        reason: "RunStarted",
                        message: format!("{} started for {due} with seed {}", run.name, run.seed),
                        warning: false,
                    });
                    runs.insert(
                        0,
                        ScheduledRun {
                            name: run.name.clone(),
                            scheduled_time: Time(due),
                            seed: run.seed,
                            phase: None,
                            verdict: None,
                            completion_time: None,
                            replaced_by: None,
                        },
                    );
                    created = Some(run);
                }
            }
            set_condition(
                &mut status.conditions,
                READY,
                true,
                "Scheduling",
                &format!("runs start on {:?}", spec.schedule),
                generation,
                &now_time,
            );
            status.next_schedule_time = cron.next_after(now).map(Time);
        }
    }

    // Replace: every running run but the newest goes, whenever it is noticed (so a delete
    // that failed is tried again); it is counted once, when its entry is first marked.
    if spec.concurrency_policy == ConcurrencyPolicy::Replace {
        let newest = runs.first().map(|r| r.name.clone()).unwrap_or_default();
        for run in active.iter().filter(|r| r.name != newest) {
            if let Some(entry) = runs.iter_mut().find(|e| e.name == run.name) {
                if entry.replaced_by.is_none() {
                    status.counts.replaced += 1;
                    notices.push(Notice {
                        reason: "RunReplaced",
                        message: format!("{} is stopped: {newest} replaces it", run.name),
                        warning: false,
                    });
                }
                entry.replaced_by = Some(newest.clone());
            }
            delete.push(Removal::Replaced {
                name: run.name.clone(),
                by: newest.clone(),
            });
        }
    }

    // Keep `historyLimit` concluded runs; older ones and their Chaos objects go. An entry
    // stays until its Chaos is gone, so a run seen again before the delete lands is known as
    // counted. A run stopped by a replacement is no longer running either.
    let limit = spec.history_limit();
    let mut concluded_seen = 0usize;
    let mut trimmed = Vec::new();
    runs.retain(|entry| {
        let exists = owned.iter().any(|r| r.name == entry.name);
        let running = entry.verdict.is_none()
            && entry.replaced_by.is_none()
            && (owned.iter().any(|r| r.name == entry.name && !r.concluded())
                || created.as_ref().is_some_and(|c| c.name == entry.name));
        if running {
            return true;
        }
        if entry.verdict.is_none() {
            // Replaced, or deleted by someone before it concluded: nothing to count; shown
            // until its Chaos is gone.
            return exists;
        }
        concluded_seen += 1;
        if concluded_seen <= limit {
            return true;
        }
        if exists {
            trimmed.push(entry.name.clone());
        }
        exists
    });
    for run in &owned {
        let already = delete
            .iter()
            .any(|d| matches!(d, Removal::Replaced { name, .. } if name == &run.name));
        if trimmed.contains(&run.name) && !run.deleting && !already {
            delete.push(Removal::Trimmed {
                name: run.name.clone(),
            });
        }
    }

    status.active = runs
        .iter()
        .find(|e| e.verdict.is_none() && e.replaced_by.is_none())
        .map(|e| e.name.clone());
    status.last_verdict = runs
        .iter()
        .find_map(|e| e.verdict)
        .or(previous.last_verdict);
    status.pass_rate = status.counts.pass_rate();
    status.runs = runs;
    Plan {
        create: created,
        delete,
        wake_at: status.next_schedule_time.as_ref().map(|t| t.0),
        status,
        notices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(minute: i64) -> Timestamp {
        Timestamp::from_second(1_796_000_000 / 3600 * 3600 + minute * 60).unwrap()
    }

    fn schedule(extra: serde_json::Value, status: Option<ChaosScheduleStatus>) -> ChaosSchedule {
        let mut spec = json!({
            "schedule": "*/5 * * * *",
            "template": {"target": {"statefulSet": "etcd"}, "duration": "30s"}
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let mut object: ChaosSchedule = serde_json::from_value(json!({
            "apiVersion": "schism.dev/v1alpha1", "kind": "ChaosSchedule",
            "metadata": {"name": "nightly", "namespace": "demo", "uid": "u-1", "generation": 1,
                "creationTimestamp": Time(at(0))},
            "spec": spec
        }))
        .unwrap();
        object.status = status;
        object
    }

    fn owned(plan: &Plan, phase: Option<Phase>, verdict: Option<Verdict>) -> OwnedRun {
        let run = plan.create.clone().expect("a run was made");
        OwnedRun {
            name: run.name,
            scheduled: run.scheduled,
            seed: run.seed,
            phase,
            verdict,
            completion_time: None,
            deleting: false,
        }
    }

    #[test]
    fn a_due_run_is_made_once_with_a_fresh_seed_and_the_next_time_is_known() {
        let first = plan(&schedule(json!({}), None), &[], &[], at(6));
        let run = first.create.clone().unwrap();
        assert_eq!(run.scheduled, at(5));
        assert_eq!(run.name, format!("nightly-{}", at(5).as_second() / 60));
        assert_eq!(first.status.next_schedule_time.clone().unwrap().0, at(10));
        assert_eq!(first.status.active.as_deref(), Some(run.name.as_str()));
        // The same moment again, with the run made: nothing more.
        let again = plan(
            &schedule(json!({}), Some(first.status.clone())),
            &[owned(&first, Some(Phase::Running), None)],
            &[],
            at(7),
        );
        assert_eq!(again.create, None);
        let second = plan(
            &schedule(json!({}), Some(first.status.clone())),
            &[],
            &[],
            at(11),
        );
        assert_ne!(
            second.create.unwrap().seed,
            run.seed,
            "every run gets its own seed"
        );
    }

    #[test]
    fn forbid_skips_a_run_due_while_one_runs_and_counts_it() {
        let first = plan(&schedule(json!({}), None), &[], &[], at(5));
        let running = owned(&first, Some(Phase::Running), None);
        let tick = plan(
            &schedule(json!({}), Some(first.status.clone())),
            std::slice::from_ref(&running),
            &[],
            at(10),
        );
        assert_eq!(tick.create, None);
        assert_eq!(tick.status.counts.skipped, 1);
        assert!(tick.notices.iter().any(|n| n.reason == "SkippedRun"));
        assert_eq!(tick.status.active.as_deref(), Some(running.name.as_str()));
    }

    #[test]
    fn replace_stops_the_running_run_and_counts_it_once() {
        let replace = json!({"concurrencyPolicy": "Replace"});
        let first = plan(&schedule(replace.clone(), None), &[], &[], at(5));
        let old = owned(&first, Some(Phase::Running), None);
        let tick = plan(
            &schedule(replace.clone(), Some(first.status.clone())),
            std::slice::from_ref(&old),
            &[],
            at(10),
        );
        let new = tick.create.clone().unwrap();
        assert_eq!(
            tick.delete,
            vec![Removal::Replaced {
                name: old.name.clone(),
                by: new.name.clone()
            }]
        );
        assert_eq!(tick.status.counts.replaced, 1);
        // The delete failed: tried again, not counted again.
        let retry = plan(
            &schedule(replace, Some(tick.status.clone())),
            &[old.clone(), owned(&tick, Some(Phase::Running), None)],
            &[],
            at(11),
        );
        assert_eq!(retry.delete.len(), 1);
        assert_eq!(retry.status.counts.replaced, 1);
        assert_eq!(retry.status.active.as_deref(), Some(new.name.as_str()));
    }

    #[test]
    fn runs_are_counted_once_and_the_history_is_trimmed_to_its_limit() {
        let limit = json!({"historyLimit": 2});
        let mut status = None;
        let mut runs: Vec<OwnedRun> = Vec::new();
        for (tick, verdict) in [Verdict::Pass, Verdict::Fail, Verdict::Pass]
            .into_iter()
            .enumerate()
        {
            let now = at(5 * (tick as i64 + 1));
            let made = plan(&schedule(limit.clone(), status.clone()), &runs, &[], now);
            runs.push(owned(&made, Some(Phase::Completed), Some(verdict)));
            let seen = plan(&schedule(limit.clone(), Some(made.status)), &runs, &[], now);
            // Seen twice: still counted once.
            let twice = plan(
                &schedule(limit.clone(), Some(seen.status.clone())),
                &runs,
                &[],
                now,
            );
            assert_eq!(twice.status.counts, seen.status.counts);
            for removal in &twice.delete {
                let Removal::Trimmed { name } = removal else {
                    panic!("{removal:?}")
                };
                runs.retain(|r| &r.name != name);
            }
            status = Some(twice.status);
        }
        // The trimmed run's entry goes once its Chaos is gone.
        let status = plan(&schedule(limit, status), &runs, &[], at(16)).status;
        assert_eq!((status.counts.pass, status.counts.fail), (2, 1));
        assert_eq!(status.runs.len(), 2, "{:?}", status.runs);
        assert_eq!(runs.len(), 2, "the oldest run's Chaos is deleted");
        assert_eq!(status.pass_rate.as_deref(), Some("67% (2/3)"));
        assert_eq!(status.last_verdict, Some(Verdict::Pass));
    }

    #[test]
    fn suspended_or_invalid_schedules_make_no_runs() {
        let suspended = plan(&schedule(json!({"suspend": true}), None), &[], &[], at(30));
        assert_eq!(suspended.create, None);
        assert_eq!(suspended.status.next_schedule_time, None);
        let invalid = plan(
            &schedule(json!({}), None),
            &[],
            &["spec.schedule: not a cron schedule".into()],
            at(30),
        );
        assert_eq!(invalid.create, None);
        let ready = &invalid.status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
    }

    #[test]
    fn a_run_past_its_starting_deadline_is_skipped() {
        let late = plan(
            &schedule(json!({"startingDeadline": "1m"}), None),
            &[],
            &[],
            at(8),
        );
        assert_eq!(late.create, None);
        assert_eq!(late.status.counts.skipped, 1);
        assert!(late.notices.iter().any(|n| n.reason == "MissedSchedule"));
    }
}
