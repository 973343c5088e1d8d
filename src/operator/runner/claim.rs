//! Whether a runner may start its run (pure): exactly one run per generation.
//!
//! The runner reads the Chaos fresh from the API server and claims the run by writing its pod
//! name and phase Running with that read's `resourceVersion` as a precondition; a concurrent
//! claim makes the write conflict, and the loser reads again and finds the run started.

use crate::api::{Chaos, Phase};

/// What a runner does with the generation it was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The Chaos is gone, being deleted, or at another generation: nothing to do.
    Superseded,
    /// This generation has its outcome already.
    AlreadyConcluded,
    /// Nobody started this generation: start it.
    Start,
    /// Another runner pod started this generation. If it still runs, it owns the run; if it
    /// is gone, the run's history went with it and the generation is concluded Inconclusive,
    /// never run a second time.
    StartedBy(String),
}

/// Decides the claim of runner pod `me` for generation `generation` of the Chaos with UID
/// `uid`, from a fresh read of the Chaos.
pub fn claim(chaos: &Chaos, uid: &str, generation: i64, me: &str) -> Claim {
    if chaos.metadata.uid.as_deref() != Some(uid)
        || chaos.metadata.generation != Some(generation)
        || chaos.metadata.deletion_timestamp.is_some()
    {
        return Claim::Superseded;
    }
    let Some(status) = chaos.status.as_ref() else {
        return Claim::Start;
    };
    if status.observed_generation != Some(generation) {
        return Claim::Start;
    }
    match status.phase {
        Some(Phase::Completed | Phase::Error) => Claim::AlreadyConcluded,
        Some(Phase::Running | Phase::Checking) => {
            match status.runner.as_ref().and_then(|r| r.pod.as_deref()) {
                Some(pod) if pod == me => Claim::Start,
                Some(pod) => Claim::StartedBy(pod.to_owned()),
                None => Claim::StartedBy("an unknown pod".to_owned()),
            }
        }
        Some(Phase::Pending) | None => Claim::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChaosStatus, RunnerRef};

    fn chaos(generation: i64, status: Option<ChaosStatus>) -> Chaos {
        let spec = serde_yaml::from_str("target: {statefulSet: etcd}\nduration: 10s").unwrap();
        let mut chaos = Chaos::new("x", spec);
        chaos.metadata.uid = Some("u1".into());
        chaos.metadata.generation = Some(generation);
        chaos.status = status;
        chaos
    }

    fn status(phase: Phase, observed: i64, pod: Option<&str>) -> ChaosStatus {
        ChaosStatus {
            phase: Some(phase),
            observed_generation: Some(observed),
            runner: pod.map(|p| RunnerRef {
                job: None,
                pod: Some(p.into()),
                run: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_fresh_generation_is_started_and_an_older_outcome_does_not_matter() {
        assert_eq!(claim(&chaos(1, None), "u1", 1, "me"), Claim::Start);
        let previous = chaos(2, Some(status(Phase::Completed, 1, Some("old"))));
        assert_eq!(claim(&previous, "u1", 2, "me"), Claim::Start);
    }

    #[test]
    fn another_uid_generation_or_a_deletion_supersedes_the_runner() {
        assert_eq!(claim(&chaos(1, None), "u2", 1, "me"), Claim::Superseded);
        assert_eq!(claim(&chaos(2, None), "u1", 1, "me"), Claim::Superseded);
        let mut deleting = chaos(1, None);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
            ));
        assert_eq!(claim(&deleting, "u1", 1, "me"), Claim::Superseded);
    }

    #[test]
    fn a_generation_started_elsewhere_is_never_run_again() {
        let started = chaos(3, Some(status(Phase::Running, 3, Some("runner-a"))));
        assert_eq!(
            claim(&started, "u1", 3, "runner-b"),
            Claim::StartedBy("runner-a".into())
        );
        let checking = chaos(3, Some(status(Phase::Checking, 3, None)));
        assert!(matches!(
            claim(&checking, "u1", 3, "runner-b"),
            Claim::StartedBy(_)
        ));
        let done = chaos(3, Some(status(Phase::Completed, 3, Some("runner-a"))));
        assert_eq!(claim(&done, "u1", 3, "runner-b"), Claim::AlreadyConcluded);
        // Its own claim, read back, is its own.
        assert_eq!(claim(&started, "u1", 3, "runner-a"), Claim::Start);
    }
}
