//! The verdict: pure, from the assertions and what was measured.

use std::time::Duration;

use crate::api::{
    Assertions, AvailabilitySummary, ConsistencyAssertion, ConsistencyResult, ConsistencySummary,
    Verdict,
};

/// The verdict and the reasons a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Pass, Fail or Inconclusive.
    pub verdict: Verdict,
    /// One line per assertion that did not simply hold.
    pub reasons: Vec<String>,
    /// Every assertion made, with its own outcome (one JUnit test case each).
    pub checks: Vec<AssertionCheck>,
}

/// How one assertion came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionState {
    /// It held.
    Held,
    /// It failed; the message says how.
    Failed(String),
    /// It could not be decided; the message says why.
    Undecided(String),
}

/// One assertion and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionCheck {
    /// What was asserted, e.g. `availability >= 0.90`.
    pub name: String,
    /// How it came out.
    pub state: AssertionState,
}

/// Decides the verdict. Any failed assertion makes it Fail; otherwise anything undecided
/// (the checker out of time, no probes, a fault that could not be injected) makes it
/// Inconclusive; otherwise Pass.
pub fn decide(
    assertions: &Assertions,
    consistency: Option<&ConsistencySummary>,
    availability: Option<&AvailabilitySummary>,
    fault_errors: &[String],
) -> Decision {
    let mut failed = Vec::new();
    let mut undecided = Vec::new();
    let mut checks = Vec::new();
    // Records the outcome of the assertion named `name` from what the last step added.
    let mut settle =
        |name: String, failed: &Vec<String>, undecided: &Vec<String>, before: (usize, usize)| {
            let state = if failed.len() > before.0 {
                AssertionState::Failed(failed[before.0..].join("; "))
            } else if undecided.len() > before.1 {
                AssertionState::Undecided(undecided[before.1..].join("; "))
            } else {
                AssertionState::Held
            };
            checks.push(AssertionCheck { name, state });
        };
    if assertions.consistency == ConsistencyAssertion::Linearizable {
        let before = (failed.len(), undecided.len());
        match consistency {
            None => undecided.push("no history was checked".to_owned()),
            Some(c) if c.operations == c.indeterminate => undecided.push(format!(
                "no operation of the {} recorded got an answer; nothing to check",
                c.operations
            )),
            Some(c) => match c.result {
                ConsistencyResult::Linearizable => {}
                ConsistencyResult::NotLinearizable => failed.push(match &c.anomaly {
                    Some(anomaly) => {
                        format!("history is not linearizable ({}): {anomaly}", c.model)
                    }
                    None => format!("history is not linearizable ({})", c.model),
                }),
                ConsistencyResult::Unknown => undecided.push(match &c.anomaly {
                    Some(why) => format!("consistency undecided: {why}"),
                    None => format!(
                        "the linearizability check ran out of its budget after {} ms",
                        c.check_millis
                    ),
                }),
                ConsistencyResult::Skipped => {
                    undecided.push("the consistency check was skipped".to_owned())
                }
            },
        }
        settle(
            "history is linearizable".to_owned(),
            &failed,
            &undecided,
            before,
        );
    }
    if let Some(min) = assertions.min_availability {
        let before = (failed.len(), undecided.len());
        match availability {
            Some(a) if a.probes > 0 => {
                if a.ratio < min {
                    failed.push(format!(
                        "availability {:.2} < {min:.2} ({} of {} probes succeeded)",
                        a.ratio, a.successes, a.probes
                    ));
                }
            }
            _ => undecided.push("no availability probe ran inside the chaos window".to_owned()),
        }
        settle(
            format!("availability >= {min:.2}"),
            &failed,
            &undecided,
            before,
        );
    }
    if let Some(max) = assertions.max_recovery {
        let before = (failed.len(), undecided.len());
        match availability.map(|a| a.recovery_ms) {
            Some(Some(ms)) => {
                if Duration::from_millis(ms as u64) > max.get() {
                    failed.push(format!(
                        "recovery took {} > maxRecovery {max}",
                        crate::api::duration::format(Duration::from_millis(ms as u64))
                    ));
                }
            }
            Some(None) => failed.push(format!(
                "a target did not answer probes again after the last heal (maxRecovery {max})"
            )),
            None => undecided.push("recovery was not measured".to_owned()),
        }
        settle(format!("recovery <= {max}"), &failed, &undecided, before);
    }
    let before = (failed.len(), undecided.len());
    for error in fault_errors {
        undecided.push(format!("fault not as planned: {error}"));
    }
    settle(
        "every fault injected and healed as planned".to_owned(),
        &failed,
        &undecided,
        before,
    );
    let verdict = if !failed.is_empty() {
        Verdict::Fail
    } else if !undecided.is_empty() {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    failed.extend(undecided);
    Decision {
        verdict,
        reasons: failed,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::KubeDuration;

    fn availability(ratio: f64, recovery_ms: Option<i64>) -> AvailabilitySummary {
        AvailabilitySummary {
            probes: 100,
            successes: (ratio * 100.0) as i64,
            ratio,
            recovery_ms,
            ..Default::default()
        }
    }

    fn consistency(result: ConsistencyResult) -> ConsistencySummary {
        ConsistencySummary {
            model: "cas-register".into(),
            operations: 10,
            indeterminate: 1,
            result,
            anomaly: Some("stale read".into()),
            ..Default::default()
        }
    }

    #[test]
    fn low_availability_fails_with_the_figures() {
        let assertions = Assertions {
            min_availability: Some(0.9),
            ..Default::default()
        };
        let d = decide(&assertions, None, Some(&availability(0.82, Some(0))), &[]);
        assert_eq!(d.verdict, Verdict::Fail);
        assert_eq!(
            d.reasons,
            ["availability 0.82 < 0.90 (82 of 100 probes succeeded)"]
        );
    }

    #[test]
    fn a_violation_fails_and_outranks_an_undecided_assertion() {
        let assertions = Assertions {
            consistency: ConsistencyAssertion::Linearizable,
            max_recovery: Some(KubeDuration::from_secs(1)),
            ..Default::default()
        };
        let d = decide(
            &assertions,
            Some(&consistency(ConsistencyResult::NotLinearizable)),
            None,
            &[],
        );
        assert_eq!(d.verdict, Verdict::Fail);
        assert!(d.reasons[0].contains("stale read"));
        assert_eq!(d.reasons.len(), 2);
    }

    #[test]
    fn checker_out_of_time_is_inconclusive_never_pass() {
        let assertions = Assertions {
            consistency: ConsistencyAssertion::Linearizable,
            ..Default::default()
        };
        let d = decide(
            &assertions,
            Some(&consistency(ConsistencyResult::Unknown)),
            None,
            &[],
        );
        assert_eq!(d.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn slow_or_missing_recovery_fails() {
        let assertions = Assertions {
            max_recovery: Some(KubeDuration::from_secs(2)),
            ..Default::default()
        };
        assert_eq!(
            decide(&assertions, None, Some(&availability(1.0, Some(2500))), &[]).verdict,
            Verdict::Fail
        );
        assert_eq!(
            decide(&assertions, None, Some(&availability(1.0, None)), &[]).verdict,
            Verdict::Fail
        );
        assert_eq!(
            decide(&assertions, None, Some(&availability(1.0, Some(1500))), &[]).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn all_assertions_holding_pass() {
        let assertions = Assertions {
            consistency: ConsistencyAssertion::Linearizable,
            min_availability: Some(0.5),
            ..Default::default()
        };
        let d = decide(
            &assertions,
            Some(&consistency(ConsistencyResult::Linearizable)),
            Some(&availability(0.6, Some(0))),
            &[],
        );
        assert_eq!(d.verdict, Verdict::Pass);
        assert!(d.reasons.is_empty());
        let names: Vec<&str> = d.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "history is linearizable",
                "availability >= 0.50",
                "every fault injected and healed as planned"
            ]
        );
        assert!(d.checks.iter().all(|c| c.state == AssertionState::Held));
    }
}
