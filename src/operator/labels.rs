//! The names the operator's components agree on: labels, annotations and field managers.

/// Label holding the UID of the Chaos an object belongs to (a UID always fits a label value;
/// a name of up to 253 characters does not). On FaultLeases, runner Jobs and their pods, and
/// report ConfigMaps.
pub const CHAOS_UID_LABEL: &str = "schism.dev/chaos-uid";
/// Label holding the generation of the Chaos whose run made the object.
pub const GENERATION_LABEL: &str = "schism.dev/generation";
/// Label naming the timeline instance a lease implements.
pub const INSTANCE_LABEL: &str = "schism.dev/instance";
/// Label of the operator's component an object belongs to.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// [`COMPONENT_LABEL`]'s value on runner Jobs and pods.
pub const RUNNER_COMPONENT: &str = "schism-runner";
/// Annotation on runner pods naming their Chaos, so a pod event finds the Chaos to wake.
pub const CHAOS_NAME_ANNOTATION: &str = "schism.dev/chaos";

/// Label naming the ChaosSchedule a Chaos run belongs to (for people and `kubectl -l`).
pub const SCHEDULE_LABEL: &str = "schism.dev/schedule";
/// Label holding the UID of the ChaosSchedule a Chaos run belongs to: what the schedule
/// controller selects its runs by.
pub const SCHEDULE_UID_LABEL: &str = "schism.dev/schedule-uid";
/// Annotation on a Chaos run: the cron time it was made for (RFC 3339).
pub const SCHEDULED_TIME_ANNOTATION: &str = "schism.dev/scheduled-time";

/// Field manager of everything the controller writes: the finalizer, the runner Job's name in
/// status, a rejection and the conclusion of a runner that died.
pub const CONTROLLER_MANAGER: &str = "schism-controller";
/// Field manager of everything a runner writes: the run's progress and outcome.
pub const RUNNER_MANAGER: &str = "schism-runner";
