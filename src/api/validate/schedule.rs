//! The rules of a `ChaosSchedule` that its schema cannot express: the cron expression and time
//! zone, the run names it will make, and its template — checked as every Chaos is, with paths
//! under `spec.template`.

use super::Problem;
use super::semantic;
use crate::api::ChaosScheduleSpec;
use crate::api::cron::{CronProblem, CronSchedule};

/// Longest schedule name: its runs are named `NAME-MINUTES` (the scheduled time in minutes
/// since 1970, 8 digits for centuries), and Chaos names feed runner Job names.
pub const MAX_SCHEDULE_NAME: usize = 52;

/// Every problem of a schedule named `name`.
pub fn check_schedule(spec: &ChaosScheduleSpec, name: Option<&str>) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(name) = name
        && name.len() > MAX_SCHEDULE_NAME
    {
        out.push(Problem::new(
            "metadata.name",
            format!(
                "is {} characters; a schedule's name may have at most {MAX_SCHEDULE_NAME}, so its runs' names (NAME-MINUTES) stay valid",
                name.len()
            ),
        ));
    }
    match CronSchedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(_) => {}
        Err(CronProblem::Schedule(reason)) => out.push(Problem::new("spec.schedule", reason)),
        Err(CronProblem::TimeZone(reason)) => out.push(Problem::new("spec.timeZone", reason)),
    }
    if spec.starting_deadline.is_some_and(|d| d.get().is_zero()) {
        out.push(Problem::new(
            "spec.startingDeadline",
            "must be greater than 0",
        ));
    }
    let template = &spec.template;
    if template.seed.is_some() {
        out.push(Problem::new(
            "spec.template.seed",
            "every run gets a fresh seed, recorded in its spec and status: remove it (to replay a run, make a Chaos with that run's seed)",
        ));
    }
    if template.suspend {
        out.push(Problem::new(
            "spec.template.suspend",
            "would make every run start suspended: suspend the schedule instead (spec.suspend)",
        ));
    }
    if template.target.local.is_some() {
        out.push(Problem::new(
            "spec.template.target.local",
            "a schedule runs in a cluster: target a deployment, statefulSet or selector",
        ));
    }
    for problem in semantic::check_spec(template) {
        let path = match problem.path.strip_prefix("spec.") {
            Some(rest) => format!("spec.template.{rest}"),
            None => format!("spec.template.{}", problem.path),
        };
        if !out.iter().any(|p| p.path == path) {
            out.push(Problem::new(&path, problem.reason));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ChaosScheduleSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_template_is_checked_as_a_chaos_under_its_own_path() {
        let problems = check_schedule(
            &spec(
                "schedule: '0 3 * * *'\ntemplate: {target: {statefulSet: etcd}, duration: 10s, seed: 4, faults: [{latency: {delay: 90s}, duration: 5s}]}",
            ),
            Some("nightly"),
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"spec.template.seed"), "{paths:?}");
        assert!(
            paths
                .iter()
                .any(|p| p.starts_with("spec.template.faults[0].latency.delay")),
            "{paths:?}"
        );
    }

    #[test]
    fn a_bad_schedule_zone_or_name_is_named() {
        let problems = check_schedule(
            &spec(
                "schedule: 'every day'\ntimeZone: Nowhere/City\ntemplate: {target: {statefulSet: etcd}, duration: 10s}",
            ),
            Some(&"x".repeat(60)),
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["metadata.name", "spec.schedule"], "{problems:?}");
        let zone = check_schedule(
            &spec(
                "schedule: '@daily'\ntimeZone: Nowhere/City\ntemplate: {target: {statefulSet: etcd}, duration: 10s}",
            ),
            Some("ok"),
        );
        assert_eq!(zone.len(), 1);
        assert_eq!(zone[0].path, "spec.timeZone");
    }
}
