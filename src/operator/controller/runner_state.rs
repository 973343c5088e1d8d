//! How a runner is doing, from its Job and pod (pure): running, finished, or stuck — and when
//! it ended without a verdict, why, in words an operator can act on.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// What the controller sees of a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerState {
    /// Starting or running.
    Running {
        /// Its pod is not running yet: look again after this long (a start timeout may
        /// pass without any event).
        recheck: Option<Duration>,
    },
    /// Its Job ended; if the run has no verdict, this is why.
    Ended(String),
    /// It will never get anywhere (its image cannot be pulled, its pod cannot be
    /// scheduled): stop it, for this reason.
    Stuck(String),
}

/// How long a runner pod may stay unscheduled before the run is given up.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Container waiting reasons that never resolve by themselves.
const STUCK_REASONS: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

fn job_condition<'a>(
    job: &'a Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn memory_limit(pod: &Pod) -> Option<String> {
    let container = pod.spec.as_ref()?.containers.first()?;
    let limits = container.resources.as_ref()?.limits.as_ref()?;
    limits.get("memory").map(|q| q.0.clone())
}

fn last_lines(message: &str) -> String {
    let lines: Vec<&str> = message.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    crate::operator::events::bounded(tail, 600)
}

/// Why the runner of `pods` ended, read from its container's last state.
fn why_it_ended(pods: &[Pod]) -> Option<String> {
    let pod = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone())?;
    let status = pod.status.as_ref()?;
    if let Some(disruption) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    {
        return Some(format!(
            "the runner pod {} was evicted ({}): {}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            disruption.reason.as_deref().unwrap_or("disruption"),
            disruption.message.as_deref().unwrap_or_default()
        ));
    }
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref())?;
    let reason = terminated.reason.as_deref().unwrap_or_default();
    if reason == "OOMKilled" {
        return Some(match memory_limit(pod) {
            Some(limit) => format!(
                "the runner was OOMKilled at {limit}: raise spec.runner.resources.limits.memory"
            ),
            None => "the runner was OOMKilled: give it spec.runner.resources.limits.memory".into(),
        });
    }
    let signal = match terminated.exit_code {
        137 => " (SIGKILL)",
        143 => " (SIGTERM)",
        _ => "",
    };
    let mut why = format!(
        "the runner exited with code {}{signal}",
        terminated.exit_code
    );
    if let Some(message) = terminated
        .message
        .as_deref()
        .filter(|m| !m.trim().is_empty())
    {
        why.push_str(&format!(": {}", last_lines(message)));
    }
    Some(why)
}

/// The state of the runner whose Job is `job` and whose pods are `pods`, at `now`.
pub fn runner_state(job: &Job, pods: &[Pod], now: Timestamp) -> RunnerState {
    if job_condition(job, "Complete").is_some() {
        return RunnerState::Ended(
            why_it_ended(pods)
                .map(|why| format!("{why} without writing a verdict"))
                .unwrap_or_else(|| "the runner exited without writing a verdict".into()),
        );
    }
    if let Some(failed) = job_condition(job, "Failed") {
        let reason = failed.reason.as_deref().unwrap_or_default();
        if reason == "DeadlineExceeded" {
            let deadline = job
                .spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .unwrap_or_default();
            return RunnerState::Ended(format!(
                "the runner ran past its deadline of {deadline}s (activeDeadlineSeconds) and was stopped"
            ));
        }
        return RunnerState::Ended(why_it_ended(pods).unwrap_or_else(|| {
            if pods.is_empty() {
                "the runner pod was deleted before it wrote a verdict".into()
            } else {
                format!(
                    "the runner's Job failed ({reason}): {}",
                    failed.message.as_deref().unwrap_or_default()
                )
            }
        }));
    }
    let Some(pod) = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone())
    else {
        return RunnerState::Running {
            recheck: Some(Duration::from_secs(10)),
        };
    };
    let status = pod.status.clone().unwrap_or_default();
    for container in status.container_statuses.iter().flatten() {
        if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = waiting.reason.as_deref()
            && STUCK_REASONS.contains(&reason)
        {
            return RunnerState::Stuck(format!(
                "the runner cannot start: {reason} for image {}: {}",
                container.image,
                waiting.message.as_deref().unwrap_or_default()
            ));
        }
    }
    let running = status.phase.as_deref() == Some("Running");
    if !running {
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let waited = created
            .map(|c| Duration::from_secs(u64::try_from((now - c).get_seconds()).unwrap_or(0)))
            .unwrap_or_default();
        if let Some(unschedulable) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            && waited >= START_TIMEOUT
        {
            return RunnerState::Stuck(format!(
                "the runner pod could not be scheduled for {}s: {}",
                waited.as_secs(),
                unschedulable.message.as_deref().unwrap_or_default()
            ));
        }
        return RunnerState::Running {
            recheck: Some(Duration::from_secs(15)),
        };
    }
    RunnerState::Running { recheck: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"activeDeadlineSeconds": 671, "template": {}},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "j-abc", "creationTimestamp": "2026-12-01T10:00:00Z"},
            "spec": {"containers": [{"name": "runner", "resources": {"limits": {"memory": "512Mi"}}}]},
            "status": status
        }))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn terminated(reason: &str, code: i32, message: &str) -> serde_json::Value {
        json!({"phase": "Failed", "containerStatuses": [{"name": "runner", "image": "schism", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"reason": reason, "exitCode": code, "message": message}}}]})
    }

    #[test]
    fn an_oom_kill_names_the_limit_and_what_to_raise() {
        let failed =
            job(json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]));
        let state = runner_state(
            &failed,
            &[pod(terminated("OOMKilled", 137, ""))],
            at("2026-12-01T10:01:00Z"),
        );
        assert_eq!(
            state,
            RunnerState::Ended(
                "the runner was OOMKilled at 512Mi: raise spec.runner.resources.limits.memory"
                    .into()
            )
        );
    }

    #[test]
    fn a_killed_or_crashed_runner_says_how_with_its_last_words() {
        let failed =
            job(json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]));
        let state = runner_state(
            &failed,
            &[pod(terminated("Error", 137, ""))],
            at("2026-12-01T10:01:00Z"),
        );
        assert_eq!(
            state,
            RunnerState::Ended("the runner exited with code 137 (SIGKILL)".into())
        );
        let state = runner_state(
            &failed,
            &[pod(terminated(
                "Error",
                1,
                "line one\nschism runner: Kubernetes API: forbidden\n",
            ))],
            at("2026-12-01T10:01:00Z"),
        );
        let RunnerState::Ended(why) = state else {
            panic!()
        };
        assert!(why.contains("code 1") && why.contains("forbidden"), "{why}");
    }

    #[test]
    fn a_deleted_pod_a_deadline_and_a_silent_success_are_told_apart() {
        let failed =
            job(json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]));
        assert_eq!(
            runner_state(&failed, &[], at("2026-12-01T10:01:00Z")),
            RunnerState::Ended("the runner pod was deleted before it wrote a verdict".into())
        );
        let late = job(json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]));
        let RunnerState::Ended(why) = runner_state(&late, &[], at("2026-12-01T10:01:00Z")) else {
            panic!()
        };
        assert!(why.contains("671s"), "{why}");
        let done = job(json!([{"type": "Complete", "status": "True"}]));
        let RunnerState::Ended(why) = runner_state(
            &done,
            &[pod(terminated("Completed", 0, ""))],
            at("2026-12-01T10:01:00Z"),
        ) else {
            panic!()
        };
        assert!(why.contains("without writing a verdict"), "{why}");
    }

    #[test]
    fn an_image_that_cannot_be_pulled_or_a_pod_that_cannot_be_scheduled_is_stuck() {
        let running = job(json!([]));
        let pulling = pod(
            json!({"phase": "Pending", "containerStatuses": [{"name": "runner",
            "image": "schism:9.9", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}),
        );
        let RunnerState::Stuck(why) =
            runner_state(&running, &[pulling], at("2026-12-01T10:00:10Z"))
        else {
            panic!()
        };
        assert!(
            why.contains("ImagePullBackOff") && why.contains("schism:9.9"),
            "{why}"
        );
        let unschedulable = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
        );
        assert!(matches!(
            runner_state(
                &running,
                std::slice::from_ref(&unschedulable),
                at("2026-12-01T10:01:00Z")
            ),
            RunnerState::Running { recheck: Some(_) }
        ));
        let RunnerState::Stuck(why) =
            runner_state(&running, &[unschedulable], at("2026-12-01T10:06:00Z"))
        else {
            panic!()
        };
        assert!(why.contains("0/3 nodes"), "{why}");
        let up = pod(json!({"phase": "Running"}));
        assert_eq!(
            runner_state(&running, &[up], at("2026-12-01T10:06:00Z")),
            RunnerState::Running { recheck: None }
        );
    }
}
