//! The node agent (`schism agent`, one per node): applies the `FaultLease`s of pods on its
//! node with the data plane, reports in their status, and reverts them when they are deleted
//! or their deadline passes, with or without a controller.
//!
//! * [`decide`] — pure: what to do with one lease, given the clock and local state;
//! * [`discovery`] — a pod's processes and network namespace from `/proc/*/cgroup`;
//! * [`cgroups`] — a pod's cgroup on the node, for freezing it;
//! * [`journal`] — the node's record of the pauses the agent holds, which outlives it;
//! * [`actuator`] — applies, reverts and reaps with the data plane;
//! * [`metrics`] — what it counts, on `/metrics`, with `/healthz` and `/readyz`;
//! * [`run`] — the kube-runtime loop, the status and finalizer writes, and the Events.

pub mod actuator;
pub mod cgroups;
pub mod decide;
pub mod discovery;
pub mod journal;
pub mod metrics;
pub mod run;

pub use actuator::{Actuator, ActuatorError, LeaseKey, ReapReport};
pub use decide::{AgentAction, FaultPlan, LocalState, PlannedFault, decide};
pub use discovery::{NamespaceId, PodNetns, PodProcesses, ProcSnapshot};
pub use metrics::AgentMetrics;
pub use run::{AgentArgs, AgentConfig, AgentError, run, run_agent};
