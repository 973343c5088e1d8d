//! The conditions of a Chaos (pure): `FaultsActive`, `Completed` and `Passed`, as
//! `metav1.Condition`s whose `lastTransitionTime` moves only when their status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Faults are being applied right now.
pub const FAULTS_ACTIVE: &str = "FaultsActive";
/// The experiment reached a verdict (or an error).
pub const COMPLETED: &str = "Completed";
/// The verdict is Pass.
pub const PASSED: &str = "Passed";
/// The run waits for the emergency stop (`schism halt`) to be lifted.
pub const HALTED: &str = "Halted";
/// The run is paused by `spec.suspend`.
pub const SUSPENDED: &str = "Suspended";

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

/// The three conditions of an experiment that has ended without running (rejected) or
/// without a verdict of its own (its runner died): not active, completed, not passed.
pub fn set_ended(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    set_condition(
        conditions,
        FAULTS_ACTIVE,
        false,
        "NotActive",
        "no fault is active",
        generation,
        now,
    );
    set_condition(
        conditions, COMPLETED, true, reason, message, generation, now,
    );
    set_condition(conditions, PASSED, false, reason, message, generation, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
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
}
