//! The status writes of the controller (pure): a rejection, and the conclusion of a runner
//! that died. Both are JSON merge patches made from a fresh read and sent with its
//! `resourceVersion`, at a moment no runner of the generation can write any more (see the
//! ownership table in `runner::status`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::api::Chaos;
use crate::operator::conditions::{HALTED, set_condition, set_ended};

/// Fields of an earlier run's outcome, which a rejected generation must not seem to have.
const RUN_FIELDS: [&str; 9] = [
    "seed",
    "startTime",
    "faults",
    "faultsOmitted",
    "availability",
    "consistency",
    "report",
    "runner",
    "verdict",
];

/// The merge patch that rejects the current generation of `chaos`: phase Error, the reason,
/// and none of an earlier run's outcome.
pub fn rejection(chaos: &Chaos, reason: &str, message: &str, now: &Time) -> Value {
    let generation = chaos.metadata.generation;
    let mut conditions = chaos
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    set_ended(&mut conditions, reason, message, generation, now);
    let mut status = json!({
        "phase": "Error",
        "observedGeneration": generation,
        "completionTime": now,
        "reasons": [message],
        "conditions": conditions,
    });
    for field in RUN_FIELDS {
        status[field] = Value::Null;
    }
    with_version(chaos, status)
}

/// The merge patch that concludes the current generation Inconclusive because its runner can
/// no longer write: what it recorded so far (its timeline) stays.
pub fn runner_lost(chaos: &Chaos, message: &str, now: &Time) -> Value {
    let generation = chaos.metadata.generation;
    let mut conditions = chaos
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    set_ended(&mut conditions, "RunnerFailed", message, generation, now);
    with_version(
        chaos,
        json!({
            "phase": "Completed",
            "verdict": "Inconclusive",
            "observedGeneration": generation,
            "completionTime": now,
            "reasons": [format!("{message}; its faults were healed")],
            "conditions": conditions,
        }),
    )
}

/// The merge patch that shows a run waiting for the emergency stop (`Some(message)`), or
/// that the wait is over (`None`). Only the conditions change.
pub fn halted(chaos: &Chaos, message: Option<&str>, now: &Time) -> Value {
    let mut conditions = chaos
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let (held, reason, message) = match message {
        Some(message) => (true, "EmergencyStop", message),
        None => (
            false,
            "Lifted",
            "the emergency stop was lifted; the run starts",
        ),
    };
    set_condition(
        &mut conditions,
        HALTED,
        held,
        reason,
        message,
        chaos.metadata.generation,
        now,
    );
    with_version(chaos, json!({"conditions": conditions}))
}

/// The merge patch that carries a finished run's outcome over to a generation that only
/// changed `suspend`.
pub fn followed(chaos: &Chaos) -> Value {
    with_version(
        chaos,
        json!({"observedGeneration": chaos.metadata.generation}),
    )
}

fn with_version(chaos: &Chaos, status: Value) -> Value {
    json!({
        "metadata": {"resourceVersion": chaos.metadata.resource_version},
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChaosStatus, Phase, Verdict};
    use k8s_openapi::jiff::Timestamp;

    fn chaos() -> Chaos {
        let spec = serde_yaml::from_str("target: {statefulSet: etcd}\nduration: 10s").unwrap();
        let mut chaos = Chaos::new("x", spec);
        chaos.metadata.generation = Some(2);
        chaos.metadata.resource_version = Some("41".into());
        chaos.status = Some(ChaosStatus {
            phase: Some(Phase::Completed),
            verdict: Some(Verdict::Pass),
            observed_generation: Some(1),
            seed: Some(4),
            ..Default::default()
        });
        chaos
    }

    fn now() -> Time {
        Time(Timestamp::from_second(100).unwrap())
    }

    #[test]
    fn a_rejection_clears_the_earlier_run_and_carries_the_version() {
        let patch = rejection(
            &chaos(),
            "NamespaceNotAllowed",
            "namespace \"prod\" is not allowed",
            &now(),
        );
        assert_eq!(patch["metadata"]["resourceVersion"], "41");
        let status = &patch["status"];
        assert_eq!(status["phase"], "Error");
        assert_eq!(status["observedGeneration"], 2);
        assert!(status["verdict"].is_null() && status["seed"].is_null());
        assert!(
            status.as_object().unwrap().contains_key("seed"),
            "null removes the field"
        );
        let completed = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Completed")
            .unwrap();
        assert_eq!(completed["reason"], "NamespaceNotAllowed");
    }

    #[test]
    fn a_lost_runner_concludes_inconclusive_and_keeps_what_was_recorded() {
        let patch = runner_lost(&chaos(), "the runner was OOMKilled at 512Mi", &now());
        let status = &patch["status"];
        assert_eq!(status["verdict"], "Inconclusive");
        assert!(status["reasons"][0].as_str().unwrap().contains("OOMKilled"));
        assert!(!status.as_object().unwrap().contains_key("seed"));
    }
}
