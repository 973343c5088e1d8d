//! What the controller does next with a `Chaos` (pure): given the object and what this
//! controller knows about its run, one step, and the status that step writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{Chaos, ChaosStatus, Phase, Verdict};

/// What this controller process knows about the run of one Chaos.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// No run of this Chaos in this process.
    None,
    /// The engine is running it.
    Running {
        /// Faults active right now.
        active_faults: usize,
        /// The chaos window is over; the history is being checked.
        checking: bool,
    },
    /// The engine finished; its status is ready to publish.
    Finished(Box<ChaosStatus>),
}

/// The next step for one Chaos.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The spec cannot run (invalid, outside the blast radius): record why, once.
    Reject {
        /// Condition reason, CamelCase.
        reason: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// Resolve the targets and start the experiment.
    Start,
    /// The run goes on: refresh progress and look again soon.
    Watch,
    /// The run ended in this process: publish the outcome.
    Publish,
    /// The status says a run is under way, but this process has none (the controller
    /// restarted): the history is lost, so heal what is left and conclude Inconclusive.
    Orphaned,
    /// Nothing to do: this generation has its outcome.
    Idle,
}

/// Decides the next step. `problems` are the spec's validation problems, already computed.
pub fn decide(chaos: &Chaos, run: &RunState, problems: &[String]) -> Step {
    let generation = chaos.metadata.generation;
    let status = chaos.status.as_ref();
    let phase = status.and_then(|s| s.phase);
    let observed = status.and_then(|s| s.observed_generation);
    match run {
        RunState::Running { .. } => return Step::Watch,
        RunState::Finished(_) => return Step::Publish,
        RunState::None => {}
    }
    let concluded = matches!(phase, Some(Phase::Completed | Phase::Error));
    if concluded && observed == generation {
        return Step::Idle;
    }
    if matches!(phase, Some(Phase::Running | Phase::Checking)) {
        return Step::Orphaned;
    }
    if !problems.is_empty() {
        return Step::Reject {
            reason: "InvalidSpec",
            message: problems.join("; "),
        };
    }
    Step::Start
}

/// Condition types of a Chaos.
pub const FAULTS_ACTIVE: &str = "FaultsActive";
/// The experiment reached a verdict (or an error).
pub const COMPLETED: &str = "Completed";
/// The verdict is Pass.
pub const PASSED: &str = "Passed";

/// Sets a condition, keeping `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status;
            existing.reason = reason.to_owned();
            existing.message = message.to_owned();
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

fn base(chaos: &Chaos) -> ChaosStatus {
    chaos.status.clone().unwrap_or_default()
}

/// The status of a rejected spec.
pub fn rejected(chaos: &Chaos, reason: &str, message: &str, now: &Time) -> ChaosStatus {
    let generation = chaos.metadata.generation;
    let mut status = base(chaos);
    status.phase = Some(Phase::Error);
    status.verdict = None;
    status.observed_generation = generation;
    status.reasons = vec![message.to_owned()];
    set_condition(
        &mut status.conditions,
        FAULTS_ACTIVE,
        false,
        "NotStarted",
        "the experiment did not start",
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        COMPLETED,
        true,
        reason,
        message,
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        PASSED,
        false,
        reason,
        message,
        generation,
        now,
    );
    status
}

/// The status when a run starts.
pub fn started(chaos: &Chaos, seed: i64, now: &Time) -> ChaosStatus {
    let generation = chaos.metadata.generation;
    let mut status = ChaosStatus {
        conditions: base(chaos).conditions,
        ..Default::default()
    };
    status.phase = Some(Phase::Running);
    status.seed = Some(seed);
    status.start_time = Some(now.clone());
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        FAULTS_ACTIVE,
        false,
        "Starting",
        "the chaos window opened",
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        COMPLETED,
        false,
        "Running",
        "the experiment is running",
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
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
pub fn progress(chaos: &Chaos, active_faults: usize, checking: bool, now: &Time) -> ChaosStatus {
    let mut status = base(chaos);
    status.phase = Some(if checking {
        Phase::Checking
    } else {
        Phase::Running
    });
    let generation = status.observed_generation;
    let (reason, message) = match active_faults {
        0 => ("NoFaultActive", "no fault is active".to_owned()),
        n => ("Injected", format!("{n} fault(s) active")),
    };
    set_condition(
        &mut status.conditions,
        FAULTS_ACTIVE,
        active_faults > 0,
        reason,
        &message,
        generation,
        now,
    );
    status
}

/// The final status: the engine's outcome, with the conditions carried forward.
pub fn finished(
    chaos: &Chaos,
    outcome: &ChaosStatus,
    report_config_map: Option<String>,
    now: &Time,
) -> ChaosStatus {
    let previous = base(chaos);
    let generation = previous.observed_generation;
    let mut status = outcome.clone();
    status.observed_generation = generation;
    status.conditions = previous.conditions;
    status.start_time = previous.start_time.or(status.start_time);
    if report_config_map.is_some() {
        status.report = Some(crate::api::ReportRef {
            config_map: report_config_map,
            path: None,
        });
    }
    let verdict = status.verdict.unwrap_or(Verdict::Inconclusive);
    let summary = if status.reasons.is_empty() {
        "every assertion held".to_owned()
    } else {
        status.reasons.join("; ")
    };
    set_condition(
        &mut status.conditions,
        FAULTS_ACTIVE,
        false,
        "Healed",
        "every fault was healed",
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        COMPLETED,
        true,
        "VerdictReached",
        &format!("verdict {verdict:?}"),
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        PASSED,
        verdict == Verdict::Pass,
        &format!("{verdict:?}"),
        &summary,
        generation,
        now,
    );
    status
}

/// The status after a controller restart lost the run.
pub fn orphaned(chaos: &Chaos, now: &Time) -> ChaosStatus {
    let mut status = base(chaos);
    let generation = status.observed_generation;
    let message = "the controller restarted during the run, so the run's history is lost; its faults were healed. Delete and re-create the Chaos to run it again";
    status.phase = Some(Phase::Completed);
    status.verdict = Some(Verdict::Inconclusive);
    status.completion_time = Some(now.clone());
    status.reasons = vec![message.to_owned()];
    set_condition(
        &mut status.conditions,
        FAULTS_ACTIVE,
        false,
        "Healed",
        "every fault was healed",
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        COMPLETED,
        true,
        "ControllerRestarted",
        message,
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        PASSED,
        false,
        "Inconclusive",
        message,
        generation,
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn chaos(generation: i64, status: Option<ChaosStatus>) -> Chaos {
        let spec = serde_yaml::from_str("target: {statefulSet: etcd}\nduration: 10s").unwrap();
        let mut chaos = Chaos::new("x", spec);
        chaos.metadata.generation = Some(generation);
        chaos.status = status;
        chaos
    }

    fn status(phase: Phase, observed: i64) -> ChaosStatus {
        ChaosStatus {
            phase: Some(phase),
            observed_generation: Some(observed),
            ..Default::default()
        }
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn a_new_chaos_starts_and_an_invalid_one_is_rejected() {
        assert_eq!(decide(&chaos(1, None), &RunState::None, &[]), Step::Start);
        let step = decide(
            &chaos(1, None),
            &RunState::None,
            &["spec.duration: must be greater than 0".into()],
        );
        assert!(matches!(
            step,
            Step::Reject {
                reason: "InvalidSpec",
                ..
            }
        ));
    }

    #[test]
    fn a_rejected_or_completed_generation_is_left_alone_until_the_spec_changes() {
        assert_eq!(
            decide(
                &chaos(1, Some(status(Phase::Error, 1))),
                &RunState::None,
                &["bad".into()]
            ),
            Step::Idle
        );
        assert_eq!(
            decide(
                &chaos(1, Some(status(Phase::Completed, 1))),
                &RunState::None,
                &[]
            ),
            Step::Idle
        );
        assert_eq!(
            decide(
                &chaos(2, Some(status(Phase::Completed, 1))),
                &RunState::None,
                &[]
            ),
            Step::Start
        );
    }

    #[test]
    fn a_running_experiment_is_watched_and_then_published() {
        let running = chaos(1, Some(status(Phase::Running, 1)));
        assert_eq!(
            decide(
                &running,
                &RunState::Running {
                    active_faults: 2,
                    checking: false
                },
                &[]
            ),
            Step::Watch
        );
        let done = RunState::Finished(Box::new(ChaosStatus {
            verdict: Some(Verdict::Pass),
            ..Default::default()
        }));
        assert_eq!(decide(&running, &done, &[]), Step::Publish);
    }

    #[test]
    fn progress_moves_to_checking_once_the_window_is_over() {
        let running = chaos(1, Some(status(Phase::Running, 1)));
        let during = progress(&running, 1, false, &at(1));
        assert_eq!(during.phase, Some(Phase::Running));
        assert!(
            during
                .conditions
                .iter()
                .any(|c| c.type_ == FAULTS_ACTIVE && c.status == "True")
        );
        let after = progress(&running, 0, true, &at(2));
        assert_eq!(after.phase, Some(Phase::Checking));
        assert!(
            after
                .conditions
                .iter()
                .any(|c| c.type_ == FAULTS_ACTIVE && c.status == "False")
        );
    }

    #[test]
    fn a_run_lost_to_a_controller_restart_is_orphaned() {
        assert_eq!(
            decide(
                &chaos(1, Some(status(Phase::Running, 1))),
                &RunState::None,
                &[]
            ),
            Step::Orphaned
        );
        assert_eq!(
            decide(
                &chaos(1, Some(status(Phase::Checking, 1))),
                &RunState::None,
                &[]
            ),
            Step::Orphaned
        );
        let orphaned = orphaned(&chaos(1, Some(status(Phase::Running, 1))), &at(100));
        assert_eq!(orphaned.verdict, Some(Verdict::Inconclusive));
        assert_eq!(orphaned.phase, Some(Phase::Completed));
    }

    #[test]
    fn last_transition_time_changes_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            FAULTS_ACTIVE,
            false,
            "A",
            "a",
            Some(1),
            &at(10),
        );
        set_condition(
            &mut conditions,
            FAULTS_ACTIVE,
            false,
            "B",
            "b",
            Some(1),
            &at(20),
        );
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].reason, "B");
        set_condition(
            &mut conditions,
            FAULTS_ACTIVE,
            true,
            "C",
            "c",
            Some(1),
            &at(30),
        );
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn the_final_status_carries_verdict_conditions_and_report() {
        let running = chaos(3, Some(started(&chaos(3, None), 42, &at(5))));
        let outcome = ChaosStatus {
            phase: Some(Phase::Completed),
            verdict: Some(Verdict::Fail),
            reasons: vec!["availability 0.82 < 0.90".into()],
            ..Default::default()
        };
        let status = finished(&running, &outcome, Some("x-report".into()), &at(50));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.start_time, Some(at(5)));
        let passed = status
            .conditions
            .iter()
            .find(|c| c.type_ == PASSED)
            .unwrap();
        assert_eq!(
            (passed.status.as_str(), passed.reason.as_str()),
            ("False", "Fail")
        );
        assert!(passed.message.contains("0.82"));
        assert_eq!(
            status.report.unwrap().config_map.as_deref(),
            Some("x-report")
        );
        let completed = status
            .conditions
            .iter()
            .find(|c| c.type_ == COMPLETED)
            .unwrap();
        assert_eq!(completed.status, "True");
    }

    #[test]
    fn rejection_is_an_error_phase_with_the_reason() {
        let status = rejected(
            &chaos(1, None),
            "NamespaceNotAllowed",
            "namespace \"prod\" is not allowed",
            &at(1),
        );
        assert_eq!(status.phase, Some(Phase::Error));
        assert_eq!(status.observed_generation, Some(1));
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == COMPLETED && c.reason == "NamespaceNotAllowed")
        );
    }
}
