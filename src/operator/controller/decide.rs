//! What the controller does next with a `Chaos` (pure), from the object, its validation
//! problems, and its current generation's runner Job and pods. The controller keeps no state
//! of its own: everything it decides on is in the API, so a restart, an upgrade or a second
//! controller changes nothing about a running experiment.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

use super::runner_state::{RunnerState, runner_state};
use crate::api::{Chaos, Phase};

/// The next step for one Chaos.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to do: this generation has its outcome.
    Idle,
    /// The spec cannot run here: record why, once.
    Reject {
        /// Condition reason, CamelCase.
        reason: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// No runner for this generation yet: check the blast radius and create its Job.
    Start,
    /// The runner is at work; look again on the next change (or after `recheck`).
    Watch {
        /// When to look even without a change.
        recheck: Option<Duration>,
    },
    /// The runner can no longer write a verdict: conclude the generation Inconclusive, for
    /// this reason (after a fresh read confirms it has no outcome).
    Conclude {
        /// What happened to the runner.
        message: String,
        /// Also stop the runner (it is stuck and would never finish).
        stop_runner: bool,
    },
}

/// Whether the status says this generation started (a runner claimed it).
pub fn started(chaos: &Chaos) -> bool {
    let status = chaos.status.as_ref();
    status.and_then(|s| s.observed_generation) == chaos.metadata.generation
        && matches!(
            status.and_then(|s| s.phase),
            Some(Phase::Running | Phase::Checking)
        )
}

/// Whether the status holds this generation's outcome.
pub fn concluded(chaos: &Chaos) -> bool {
    let status = chaos.status.as_ref();
    status.and_then(|s| s.observed_generation) == chaos.metadata.generation
        && matches!(
            status.and_then(|s| s.phase),
            Some(Phase::Completed | Phase::Error)
        )
}

/// The Job of the run this generation follows: the status describes a run whose identity
/// (its spec without `suspend`) is the current spec's, so only `suspend` changed since.
pub fn followed_job(chaos: &Chaos) -> Option<&str> {
    let runner = chaos.status.as_ref()?.runner.as_ref()?;
    (runner.run.as_deref()? == chaos.spec.run_identity()).then_some(())?;
    runner.job.as_deref()
}

/// A finished run whose Chaos then changed only in `suspend`: the outcome stands for the new
/// generation, and no run starts.
pub fn finished_run_followed(chaos: &Chaos) -> bool {
    let status = chaos.status.as_ref();
    let finished = matches!(
        status.and_then(|s| s.phase),
        Some(Phase::Completed | Phase::Error)
    );
    finished
        && status.and_then(|s| s.observed_generation) != chaos.metadata.generation
        && followed_job(chaos).is_some()
}

/// Decides the next step. `problems` are the spec's validation problems; `job` is the
/// runner Job of the current generation, `pods` its pods.
pub fn decide(
    chaos: &Chaos,
    problems: &[String],
    job: Option<&Job>,
    pods: &[Pod],
    now: Timestamp,
) -> Step {
    if concluded(chaos) {
        return Step::Idle;
    }
    if !problems.is_empty() && job.is_none() {
        return Step::Reject {
            reason: "InvalidSpec",
            message: problems.join("; "),
        };
    }
    let Some(job) = job else {
        return if started(chaos) {
            // Started, yet its Job is gone: the runner went with it. Never made again, or the
            // generation would run twice.
            Step::Conclude {
                message: format!(
                    "the runner Job of generation {} was deleted before it wrote a verdict",
                    chaos.metadata.generation.unwrap_or_default()
                ),
                stop_runner: false,
            }
        } else {
            Step::Start
        };
    };
    match runner_state(job, pods, now) {
        RunnerState::Running { recheck } => Step::Watch { recheck },
        RunnerState::Ended(message) => Step::Conclude {
            message,
            stop_runner: false,
        },
        RunnerState::Stuck(message) => Step::Conclude {
            message,
            stop_runner: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ChaosStatus;
    use serde_json::json;

    fn chaos(generation: i64, status: Option<(Phase, i64)>) -> Chaos {
        let spec = serde_yaml::from_str("target: {statefulSet: etcd}\nduration: 10s").unwrap();
        let mut chaos = Chaos::new("x", spec);
        chaos.metadata.generation = Some(generation);
        chaos.status = status.map(|(phase, observed)| ChaosStatus {
            phase: Some(phase),
            observed_generation: Some(observed),
            ..Default::default()
        });
        chaos
    }

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"template": {}},
            "status": {"conditions": conditions}}))
        .unwrap()
    }

    fn running_pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "j-1"}, "status": {"phase": "Running"}}))
            .unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn a_new_generation_gets_a_runner_and_an_invalid_one_is_rejected() {
        assert_eq!(decide(&chaos(1, None), &[], None, &[], now()), Step::Start);
        let completed_before = chaos(2, Some((Phase::Completed, 1)));
        assert_eq!(
            decide(&completed_before, &[], None, &[], now()),
            Step::Start
        );
        assert!(matches!(
            decide(
                &chaos(1, None),
                &["spec.duration: bad".into()],
                None,
                &[],
                now()
            ),
            Step::Reject {
                reason: "InvalidSpec",
                ..
            }
        ));
    }

    #[test]
    fn a_concluded_generation_is_left_alone() {
        let done = chaos(1, Some((Phase::Completed, 1)));
        let failed = job(json!([{"type": "Failed", "status": "True"}]));
        assert_eq!(decide(&done, &[], Some(&failed), &[], now()), Step::Idle);
        assert_eq!(
            decide(
                &chaos(1, Some((Phase::Error, 1))),
                &["bad".into()],
                None,
                &[],
                now()
            ),
            Step::Idle
        );
    }

    #[test]
    fn a_running_runner_is_watched_and_a_dead_one_concluded() {
        let running = chaos(1, Some((Phase::Running, 1)));
        let active = job(json!([]));
        assert_eq!(
            decide(&running, &[], Some(&active), &[running_pod()], now()),
            Step::Watch { recheck: None }
        );
        let failed =
            job(json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]));
        assert!(matches!(
            decide(&running, &[], Some(&failed), &[], now()),
            Step::Conclude {
                stop_runner: false,
                ..
            }
        ));
    }

    #[test]
    fn a_started_generation_whose_job_is_gone_is_concluded_never_restarted() {
        let started_run = chaos(3, Some((Phase::Checking, 3)));
        let Step::Conclude { message, .. } = decide(&started_run, &[], None, &[], now()) else {
            panic!("a started generation is never started again");
        };
        assert!(message.contains("generation 3"), "{message}");
    }

    #[test]
    fn a_generation_that_only_changed_suspend_follows_the_run_and_any_other_edit_does_not() {
        let mut finished = chaos(2, Some((Phase::Completed, 1)));
        let run = finished.spec.run_identity();
        finished.status.as_mut().unwrap().runner = Some(crate::api::RunnerRef {
            job: Some("x-g1".into()),
            pod: Some("x-g1-r1".into()),
            run: Some(run),
        });
        finished.spec.suspend = true;
        assert_eq!(followed_job(&finished), Some("x-g1"));
        assert!(finished_run_followed(&finished));
        let mut edited = finished.clone();
        edited.spec.seed = Some(9);
        assert_eq!(followed_job(&edited), None, "another spec is another run");
        assert!(!finished_run_followed(&edited));
        let mut adopted = finished;
        adopted.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(!finished_run_followed(&adopted), "already followed");
    }
}
