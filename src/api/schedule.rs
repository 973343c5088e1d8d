//! The `ChaosSchedule` custom resource: a Chaos spec run on a cron schedule, each run a Chaos
//! object of its own with a fresh seed, and the history of how the runs came out — flaky
//! resilience only shows over many runs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::chaos::ChaosSpec;
use super::duration::KubeDuration;
use super::status::{Phase, Verdict};

/// Runs of a schedule kept by default (their Chaos objects and status entries).
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// A Chaos experiment repeated on a schedule, with the history of its runs.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "schism.dev",
    version = "v1alpha1",
    kind = "ChaosSchedule",
    plural = "chaosschedules",
    singular = "chaosschedule",
    shortname = "cxs",
    category = "schism",
    namespaced,
    status = "ChaosScheduleStatus",
    doc = "A Chaos experiment run on a cron schedule: each run a Chaos of its own with a fresh seed, the last runs and the pass rate in status.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.schedule",
        description = "When runs start (cron)"
    ),
    printcolumn(
        name = "Suspend",
        type_ = "boolean",
        json_path = ".spec.suspend",
        description = "No new runs while true"
    ),
    printcolumn(
        name = "Last Verdict",
        type_ = "string",
        json_path = ".status.lastVerdict",
        description = "Verdict of the latest concluded run"
    ),
    printcolumn(
        name = "Pass Rate",
        type_ = "string",
        json_path = ".status.passRate",
        description = "Share of concluded runs that passed"
    ),
    printcolumn(
        name = "Last Run",
        type_ = "date",
        json_path = ".status.lastScheduleTime",
        description = "When the latest run was started"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChaosScheduleSpec {
    /// When runs start: five cron fields (minute, hour, day of month, month, day of week;
    /// lists, ranges, steps, names, `L`, `#`, `W`) or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`, read in `timeZone`.
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,

    /// The IANA time zone the schedule is read in, e.g. `Europe/Berlin`; default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,

    /// What happens when a run is due while the previous one is still going: `Forbid`
    /// (default: the new run is skipped and counted as such) or `Replace` (the running one
    /// is stopped, its faults healed, and the new one starts).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// Concluded runs kept (their Chaos objects, reports and status entries), 1 to 100,
    /// default 10. Counts and the pass rate cover every run, kept or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: Option<i32>,

    /// No new runs while true; a running one goes on. When it turns false again, the latest
    /// time missed meanwhile runs once, unless `startingDeadline` says it is too late.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// A run that could not start within this long of its time (the controller was down,
    /// say) is skipped; default: the latest missed time still runs, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<KubeDuration>,

    /// The experiment each run carries out: a Chaos spec. Leave `seed` unset: every run
    /// gets a fresh one, recorded in its spec and status so a failing run can be replayed.
    pub template: ChaosSpec,
}

/// What a due run does when the previous one still runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConcurrencyPolicy {
    /// Skip the new run.
    #[default]
    Forbid,
    /// Stop the running one and start the new one.
    Replace,
}

/// What the schedule has done and how its runs came out.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChaosScheduleStatus {
    /// The generation these fields describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The scheduled time of the latest run started (or skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the next run is due (absent while suspended or invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The Chaos of the run going on now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// The latest runs, newest first: at most `historyLimit` concluded ones, any running, and
    /// older ones until their Chaos is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub runs: Vec<ScheduledRun>,
    /// Every run's outcome since the schedule was made, kept or not.
    #[serde(default)]
    pub counts: RunCounts,
    /// Verdict of the latest concluded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<Verdict>,
    /// Pass share of concluded runs, e.g. `75% (3/4)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_rate: Option<String>,
    /// `Ready` (the schedule is valid and scheduling) with the reason when it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One run of a schedule.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledRun {
    /// Name of its Chaos.
    pub name: String,
    /// The cron time it ran for.
    pub scheduled_time: Time,
    /// Its seed (replay a failing run with this seed in a Chaos of its own).
    pub seed: i64,
    /// Its Chaos's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Its verdict, once concluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// When it concluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The newer run that stopped this one (`concurrencyPolicy: Replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

/// Runs by outcome.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunCounts {
    /// Concluded Pass.
    #[serde(default)]
    pub pass: i64,
    /// Concluded Fail.
    #[serde(default)]
    pub fail: i64,
    /// Concluded Inconclusive.
    #[serde(default)]
    pub inconclusive: i64,
    /// Due while another ran, under `Forbid`, or past `startingDeadline`: not run.
    #[serde(default)]
    pub skipped: i64,
    /// Stopped by a newer run, under `Replace`.
    #[serde(default)]
    pub replaced: i64,
}

impl RunCounts {
    /// Concluded runs.
    pub fn concluded(&self) -> i64 {
        self.pass + self.fail + self.inconclusive
    }

    /// Counts one more run with this verdict.
    pub fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
        }
    }

    /// `75% (3/4)`, or `None` before any run concluded.
    pub fn pass_rate(&self) -> Option<String> {
        let total = self.concluded();
        (total > 0).then(|| {
            let percent = (self.pass as f64 * 100.0 / total as f64).round();
            format!("{percent}% ({}/{total})", self.pass)
        })
    }
}

impl ChaosScheduleSpec {
    /// Concluded runs to keep.
    pub fn history_limit(&self) -> usize {
        self.history_limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
            .clamp(1, 100) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_rate_covers_concluded_runs_only() {
        let mut counts = RunCounts::default();
        assert_eq!(counts.pass_rate(), None);
        counts.skipped = 4;
        for verdict in [Verdict::Pass, Verdict::Pass, Verdict::Fail, Verdict::Pass] {
            counts.add(verdict);
        }
        assert_eq!(counts.pass_rate().as_deref(), Some("75% (3/4)"));
    }
}
