//! The verdict: pure, from the assertions and what was measured.

use std::time::Duration;

use crate::api::{
    AssertionRecord, AssertionResult, Assertions, AvailabilitySummary, ConsistencyAssertion,
    ConsistencyResult, ConsistencySummary, Verdict,
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
    /// What shows a failure in full (the counterexample), if there is more than the message.
    pub detail: Option<String>,
}

/// Decides the verdict. Any failed assertion makes it Fail; otherwise anything undecided
/// (the checker out of time, no probes, a fault that could not be injected) makes it
/// Inconclusive; otherwise Pass.
pub fn decide(
    assertions: &Assertions,
    consistency: Option<&ConsistencySummary>,
    availability: Option<&AvailabilitySummary>,
    prometheus: &[AssertionRecord],
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
            checks.push(AssertionCheck {
                name,
                state,
                detail: None,
            });
        };
    if assertions.consistency != ConsistencyAssertion::None {
        let before = (failed.len(), undecided.len());
        let wanted = assertions.consistency.name();
        match consistency {
            None => undecided.push("no history was checked".to_owned()),
            Some(c) if c.operations == c.indeterminate => undecided.push(format!(
                "no operation of the {} recorded got an answer; nothing to check",
                c.operations
            )),
            Some(c) => match c.result {
                ConsistencyResult::Linearizable | ConsistencyResult::Satisfied => {}
                ConsistencyResult::NotLinearizable | ConsistencyResult::Violated => {
                    failed.push(match &c.anomaly {
                        Some(anomaly) => {
                            format!("history is not {wanted} ({}): {anomaly}", c.model)
                        }
                        None => format!("history is not {wanted} ({})", c.model),
                    })
                }
                ConsistencyResult::Unknown => undecided.push(match &c.anomaly {
                    Some(why) => format!("consistency undecided: {why}"),
                    None => format!(
                        "the {wanted} check ran out of its budget after {} ms",
                        c.check_millis
                    ),
                }),
                ConsistencyResult::Skipped => {
                    undecided.push("the consistency check was skipped".to_owned())
                }
            },
        }
        settle(format!("history is {wanted}"), &failed, &undecided, before);
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
    for record in prometheus {
        let before = (failed.len(), undecided.len());
        match (record.result, &record.reason) {
            (AssertionResult::Failed, Some(reason)) => failed.push(reason.clone()),
            (AssertionResult::Undecided, Some(reason)) => undecided.push(reason.clone()),
            (AssertionResult::Held, _) => {}
            (_, None) => undecided.push(format!("prometheus {}: no outcome", record.name)),
        }
        settle(prometheus_check_name(record), &failed, &undecided, before);
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
    // The counterexample goes with a failed consistency check, for CI systems that show it.
    if let Some(check) = checks.first_mut().filter(|c| {
        assertions.consistency != ConsistencyAssertion::None
            && matches!(c.state, AssertionState::Failed(_))
    }) {
        check.detail = consistency.and_then(|c| c.counterexample.clone());
    }
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

/// What a Prometheus assertion's test case is called: `prometheus errors (during): QUERY < 0.05`.
fn prometheus_check_name(record: &AssertionRecord) -> String {
    format!(
        "prometheus {} ({}): {} {}",
        record.name,
        record.when.name(),
        record.query,
        record.expect.trim()
    )
}

/// The check of one Prometheus assertion on its own (when nothing else was decided).
pub fn prometheus_check(record: &AssertionRecord) -> AssertionCheck {
    let message = record.reason.clone().unwrap_or_default();
    AssertionCheck {
        name: prometheus_check_name(record),
        state: match record.result {
            AssertionResult::Held => AssertionState::Held,
            AssertionResult::Failed => AssertionState::Failed(message),
            AssertionResult::Undecided => AssertionState::Undecided(message),
        },
        detail: None,
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
        let d = decide(
            &assertions,
            None,
            Some(&availability(0.82, Some(0))),
            &[],
            &[],
        );
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
            decide(
                &assertions,
                None,
                Some(&availability(1.0, Some(2500))),
                &[],
                &[]
            )
            .verdict,
            Verdict::Fail
        );
        assert_eq!(
            decide(&assertions, None, Some(&availability(1.0, None)), &[], &[]).verdict,
            Verdict::Fail
        );
        assert_eq!(
            decide(
                &assertions,
                None,
                Some(&availability(1.0, Some(1500))),
                &[],
                &[]
            )
            .verdict,
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

    #[test]
    fn a_transactional_violation_fails_naming_the_anomaly_with_its_cycle_as_detail() {
        let assertions = Assertions {
            consistency: ConsistencyAssertion::Serializable,
            ..Default::default()
        };
        let summary = ConsistencySummary {
            model: "list-append".into(),
            checked: Some("serializable".into()),
            operations: 100,
            result: ConsistencyResult::Violated,
            anomaly: Some("G2-item: write skew between T17 and T40".into()),
            counterexample: Some("T17 rw→ T40 …".into()),
            ..Default::default()
        };
        let d = decide(&assertions, Some(&summary), None, &[], &[]);
        assert_eq!(d.verdict, Verdict::Fail);
        assert_eq!(
            d.reasons,
            ["history is not serializable (list-append): G2-item: write skew between T17 and T40"]
        );
        assert_eq!(d.checks[0].name, "history is serializable");
        assert_eq!(d.checks[0].detail.as_deref(), Some("T17 rw→ T40 …"));
        let satisfied = ConsistencySummary {
            result: ConsistencyResult::Satisfied,
            ..summary
        };
        let d = decide(&assertions, Some(&satisfied), None, &[], &[]);
        assert_eq!(d.verdict, Verdict::Pass);
        assert_eq!(d.checks[0].detail, None);
    }
}
