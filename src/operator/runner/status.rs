//! The status a runner writes (pure). The runner keeps the whole of it in memory, from the
//! claim to the verdict, and applies all of it every time with its own field manager: a field
//! is never lost to a stale cache, and a field the runner stops writing disappears.
//!
//! Who owns what in `.status` (so two writers never fight over a field):
//!
//! | field | writer |
//! |---|---|
//! | `phase`, `verdict`, `observedGeneration`, `seed`, `startTime`, `completionTime`, `conditions`, `faults`, `faultsOmitted`, `availability`, `consistency`, `reasons`, `report`, `runner.pod` | the runner of the generation (`schism-runner`), from its claim to its verdict |
//! | `runner.job` | the controller (`schism-controller`), when it creates the Job |
//! | `phase`, `verdict`, `reasons`, `completionTime`, `conditions` | the controller, only when no runner of the generation can write any more: a rejection (no Job was made) or the conclusion of a runner that died (its Job ended) |
//!
//! The runner applies with `force`, so it takes its fields back from a controller's earlier
//! conclusion; every write carries the `resourceVersion` of a fresh read that showed the
//! runner's own generation, so a superseded runner can never overwrite a newer run.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{ChaosStatus, Phase, ReportRef, RunnerRef, Verdict};
use crate::operator::conditions::{
    COMPLETED, FAULTS_ACTIVE, PASSED, SUSPENDED, set_condition, set_ended,
};

/// The status of a run that was just claimed by pod `pod`: Running, with its seed.
pub fn claimed(
    generation: i64,
    seed: i64,
    pod: &str,
    run: &str,
    previous_conditions: Vec<Condition>,
    now: &Time,
) -> ChaosStatus {
    let generation = Some(generation);
    let mut status = ChaosStatus {
        phase: Some(Phase::Running),
        observed_generation: generation,
        seed: Some(seed),
        start_time: Some(now.clone()),
        conditions: previous_conditions,
        runner: Some(RunnerRef {
            job: None,
            pod: Some(pod.to_owned()),
            run: Some(run.to_owned()),
        }),
        ..Default::default()
    };
    let conditions = &mut status.conditions;
    set_condition(
        conditions,
        FAULTS_ACTIVE,
        false,
        "Starting",
        "the chaos window opened",
        generation,
        now,
    );
    set_condition(
        conditions,
        COMPLETED,
        false,
        "Running",
        "the experiment is running",
        generation,
        now,
    );
    set_condition(
        conditions,
        PASSED,
        false,
        "Running",
        "no verdict yet",
        generation,
        now,
    );
    status
}

/// The status while the run goes on: Running during the chaos window, Checking after it.
pub fn progress(
    base: &ChaosStatus,
    active_faults: usize,
    checking: bool,
    suspended: bool,
    now: &Time,
) -> ChaosStatus {
    let mut status = base.clone();
    status.phase = Some(if checking {
        Phase::Checking
    } else {
        Phase::Running
    });
    let (reason, message) = match (active_faults, suspended) {
        (0, true) => ("Suspended", "suspended: every fault is healed".to_owned()),
        (0, false) => ("NoFaultActive", "no fault is active".to_owned()),
        (n, _) => ("Injected", format!("{n} fault(s) active")),
    };
    let generation = status.observed_generation;
    set_condition(
        &mut status.conditions,
        FAULTS_ACTIVE,
        active_faults > 0,
        reason,
        &message,
        generation,
        now,
    );
    // Shown once the run was suspended at least once: True while it is, False after.
    let ever = status.conditions.iter().any(|c| c.type_ == SUSPENDED);
    if suspended || ever {
        let (reason, message) = if suspended {
            (
                "SuspendRequested",
                "spec.suspend is true: faults healed, the window's clock stopped",
            )
        } else {
            ("Resumed", "the run resumed")
        };
        set_condition(
            &mut status.conditions,
            SUSPENDED,
            suspended,
            reason,
            message,
            generation,
            now,
        );
    }
    status
}

/// The final status: the engine's outcome, with the claim's fields and conditions carried on.
pub fn finished(
    base: &ChaosStatus,
    outcome: &ChaosStatus,
    report_config_map: Option<String>,
    now: &Time,
) -> ChaosStatus {
    let generation = base.observed_generation;
    let mut status = outcome.clone();
    status.observed_generation = generation;
    status.conditions = base.conditions.clone();
    status.start_time = base.start_time.clone().or(status.start_time);
    status.seed = base.seed.or(status.seed);
    status.runner = base.runner.clone();
    status.report = report_config_map.map(|name| ReportRef {
        config_map: Some(name),
        path: None,
    });
    let verdict = status.verdict.unwrap_or(Verdict::Inconclusive);
    let summary = if status.reasons.is_empty() {
        "every assertion held".to_owned()
    } else {
        status.reasons.join("; ")
    };
    let conditions = &mut status.conditions;
    set_condition(
        conditions,
        FAULTS_ACTIVE,
        false,
        "Healed",
        "every fault was healed",
        generation,
        now,
    );
    set_condition(
        conditions,
        COMPLETED,
        true,
        "VerdictReached",
        &format!("verdict {verdict:?}"),
        generation,
        now,
    );
    set_condition(
        conditions,
        PASSED,
        verdict == Verdict::Pass,
        &format!("{verdict:?}"),
        &summary,
        generation,
        now,
    );
    status
}

/// The run could not start (its target is gone, its plan is impossible): phase Error.
pub fn could_not_start(base: &ChaosStatus, reason: &str, message: &str, now: &Time) -> ChaosStatus {
    let mut status = base.clone();
    status.phase = Some(Phase::Error);
    status.verdict = None;
    status.completion_time = Some(now.clone());
    status.reasons = vec![message.to_owned()];
    let generation = status.observed_generation;
    set_ended(&mut status.conditions, reason, message, generation, now);
    status
}

/// A generation that another runner pod started and that pod is gone: Inconclusive, never
/// run a second time.
pub fn started_elsewhere(
    generation: i64,
    other_pod: &str,
    previous: &ChaosStatus,
    now: &Time,
) -> ChaosStatus {
    let message = format!(
        "generation {generation} was started by runner pod {other_pod}, which is gone with the run's history; its faults were healed. A generation never runs twice: edit the spec to run again"
    );
    let mut status = previous.clone();
    status.phase = Some(Phase::Completed);
    status.verdict = Some(Verdict::Inconclusive);
    status.observed_generation = Some(generation);
    status.completion_time = Some(now.clone());
    status.reasons = vec![message.clone()];
    set_ended(
        &mut status.conditions,
        "RunnerLost",
        &message,
        Some(generation),
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn condition<'a>(status: &'a ChaosStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn a_claim_carries_generation_seed_pod_and_start() {
        let status = claimed(3, 42, "runner-abc", "r", Vec::new(), &at(5));
        assert_eq!(status.phase, Some(Phase::Running));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.seed, Some(42));
        assert_eq!(status.start_time, Some(at(5)));
        assert_eq!(status.runner.unwrap().pod.as_deref(), Some("runner-abc"));
    }

    #[test]
    fn progress_moves_to_checking_once_the_window_is_over() {
        let base = claimed(1, 1, "p", "r", Vec::new(), &at(1));
        let during = progress(&base, 2, false, false, &at(2));
        assert_eq!(during.phase, Some(Phase::Running));
        assert_eq!(condition(&during, FAULTS_ACTIVE).status, "True");
        let after = progress(&during, 0, true, false, &at(3));
        assert_eq!(after.phase, Some(Phase::Checking));
        assert_eq!(condition(&after, FAULTS_ACTIVE).status, "False");
        assert_eq!(
            after.seed,
            Some(1),
            "progress never drops the claim's fields"
        );
    }

    #[test]
    fn the_final_status_keeps_the_claim_and_carries_verdict_conditions_and_report() {
        let base = claimed(3, 42, "p", "r", Vec::new(), &at(5));
        let outcome = ChaosStatus {
            phase: Some(Phase::Completed),
            verdict: Some(Verdict::Fail),
            seed: Some(42),
            start_time: Some(at(6)),
            reasons: vec!["availability 0.82 < 0.90".into()],
            ..Default::default()
        };
        let status = finished(&base, &outcome, Some("x-report".into()), &at(50));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.start_time, Some(at(5)));
        assert_eq!(status.runner.as_ref().unwrap().pod.as_deref(), Some("p"));
        let passed = condition(&status, PASSED);
        assert_eq!(
            (passed.status.as_str(), passed.reason.as_str()),
            ("False", "Fail")
        );
        assert!(passed.message.contains("0.82"));
        assert_eq!(condition(&status, COMPLETED).status, "True");
        assert_eq!(
            status.report.unwrap().config_map.as_deref(),
            Some("x-report")
        );
    }

    #[test]
    fn a_run_that_cannot_start_is_an_error_and_a_lost_one_inconclusive() {
        let base = claimed(1, 1, "p", "r", Vec::new(), &at(1));
        let error = could_not_start(
            &base,
            "TargetNotFound",
            "statefulSet etcd not found",
            &at(2),
        );
        assert_eq!(error.phase, Some(Phase::Error));
        assert_eq!(condition(&error, COMPLETED).reason, "TargetNotFound");
        let lost = started_elsewhere(4, "runner-a", &ChaosStatus::default(), &at(3));
        assert_eq!(lost.verdict, Some(Verdict::Inconclusive));
        assert_eq!(lost.observed_generation, Some(4));
        assert!(lost.reasons[0].contains("runner-a"));
    }
}
