//! What the agent does with one lease, decided from the lease, the wall clock and what the agent
//! holds locally. No I/O: the run loop gathers the inputs and carries out the answer.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::api::{FaultLease, LEASE_FINALIZER, LeaseFault, LeasePhase};
use crate::dataplane::{BandwidthSpec, FaultId, LatencySpec, LossSpec, PartitionSpec, Rate};

/// What the agent knows locally about a lease when it decides.
#[derive(Clone, Copy, Debug)]
pub struct LocalState<'a> {
    /// The node this agent serves.
    pub node_name: &'a str,
    /// Whether this agent process applied the lease's fault and has not reverted it yet.
    pub holds_fault: bool,
    /// Whether processes of the lease's pod were found on this node.
    pub pod_found: bool,
}

/// The one thing to do next with a lease.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentAction {
    /// The lease names another node: leave it (and its finalizer) to that node's agent.
    NotThisNode,
    /// Nothing to do until the lease changes or its deadline passes.
    Nothing,
    /// Apply the fault, then report phase Applied.
    Apply(FaultPlan),
    /// The fault is active here but the status does not say so (an earlier status write
    /// failed): report phase Applied.
    ReportApplied,
    /// The lease is being deleted: revert the fault, then remove the finalizer.
    RevertAndRelease,
    /// The lease is being deleted and nothing of it is active here: remove the finalizer.
    Release,
    /// The deadline passed: revert the fault (its watchdog may have done so already), then
    /// report phase Reverted.
    RevertAndReportReverted,
    /// The deadline passed while this agent held nothing of the lease (it restarted, and its
    /// start-up reap removed the fault): report phase Reverted.
    ReportReverted,
    /// The lease cannot be applied: report phase Failed with this reason.
    ReportFailed(String),
}

/// A data-plane fault ready to apply, translated from a lease's spec.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// Names everything the fault installs.
    pub id: FaultId,
    /// The fault.
    pub fault: PlannedFault,
}

/// The kinds of fault a lease can carry, in data-plane terms.
#[derive(Clone, Debug, PartialEq)]
pub enum PlannedFault {
    /// nftables drops to and from peers.
    Partition(PartitionSpec),
    /// Added delay on arriving packets.
    Latency(LatencySpec),
    /// Random drops of arriving packets.
    Loss(LossSpec),
    /// Egress rate limit.
    Bandwidth(BandwidthSpec),
    /// SIGSTOP of every process of the pod.
    Pause,
}

impl PlannedFault {
    /// Whether the fault lives in the pod's network namespace (everything but pause).
    pub fn is_network_fault(&self) -> bool {
        !matches!(self, PlannedFault::Pause)
    }
}

/// Decides what to do with `lease` at wall-clock time `now`.
///
/// Deletion wins over everything, then the deadline: a lease past its deadline is never
/// (re)applied, and a fault still held past it is reverted whether or not a controller is there
/// to ask. Reverted and Failed are final.
pub fn decide(lease: &FaultLease, now: Timestamp, local: &LocalState<'_>) -> AgentAction {
    let spec = &lease.spec;
    if spec.pod.node_name != local.node_name {
        return AgentAction::NotThisNode;
    }
    let phase = lease.status.as_ref().and_then(|status| status.phase);

    if lease.metadata.deletion_timestamp.is_some() {
        return if local.holds_fault {
            AgentAction::RevertAndRelease
        } else if has_agent_finalizer(lease) {
            AgentAction::Release
        } else {
            AgentAction::Nothing
        };
    }

    if now >= spec.deadline.0 {
        return match (local.holds_fault, phase) {
            (true, _) => AgentAction::RevertAndReportReverted,
            (false, Some(LeasePhase::Applied)) => AgentAction::ReportReverted,
            (false, Some(LeasePhase::Reverted | LeasePhase::Failed)) => AgentAction::Nothing,
            (false, Some(LeasePhase::Pending) | None) => AgentAction::ReportFailed(format!(
                "the deadline {} passed before the agent on {} applied the fault",
                spec.deadline.0, local.node_name
            )),
        };
    }

    if local.holds_fault {
        return if phase == Some(LeasePhase::Applied) {
            AgentAction::Nothing
        } else {
            AgentAction::ReportApplied
        };
    }
    if matches!(phase, Some(LeasePhase::Reverted | LeasePhase::Failed)) {
        return AgentAction::Nothing;
    }
    if !local.pod_found {
        return AgentAction::ReportFailed(format!(
            "pod {} (uid {}) has no process on node {}: no /proc/*/cgroup names its UID",
            spec.pod.name, spec.pod.uid, local.node_name
        ));
    }
    // Phase Pending (first time) or Applied (this agent restarted and reaped it): apply fresh.
    match plan_fault(&spec.fault_id, &spec.fault) {
        Ok(plan) => AgentAction::Apply(plan),
        Err(reason) => AgentAction::ReportFailed(reason),
    }
}

/// Whether a lease still wants its fault active: on this node, not being deleted, deadline
/// ahead, not finished. Faults of pods without such a lease are removed when the agent starts.
pub fn is_live(lease: &FaultLease, now: Timestamp, node_name: &str) -> bool {
    let phase = lease.status.as_ref().and_then(|status| status.phase);
    lease.spec.pod.node_name == node_name
        && lease.metadata.deletion_timestamp.is_none()
        && now < lease.spec.deadline.0
        && !matches!(phase, Some(LeasePhase::Reverted | LeasePhase::Failed))
}

/// How long until the lease needs another look even if nothing about it changes: its deadline,
/// while it is live. `None` means only a change of the lease matters.
pub fn recheck_after(lease: &FaultLease, now: Timestamp, node_name: &str) -> Option<Duration> {
    if !is_live(lease, now, node_name) {
        return None;
    }
    wall_clock_remaining(lease.spec.deadline.0, now)
}

/// The monotonic instant of a wall-clock `deadline`, given the same moment on both clocks.
/// Data-plane watchdogs run on [`Instant`], which wall-clock steps (NTP) cannot move.
pub fn deadline_instant(deadline: Timestamp, now: Timestamp, now_instant: Instant) -> Instant {
    now_instant + wall_clock_remaining(deadline, now).unwrap_or_default()
}

/// Time from `now` to `deadline`, `None` when it has passed.
fn wall_clock_remaining(deadline: Timestamp, now: Timestamp) -> Option<Duration> {
    let remaining = deadline.as_nanosecond() - now.as_nanosecond();
    (remaining > 0).then(|| Duration::from_nanos(u64::try_from(remaining).unwrap_or(u64::MAX)))
}

/// Whether the agent's finalizer is on the lease.
pub fn has_agent_finalizer(lease: &FaultLease) -> bool {
    lease
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|finalizers| finalizers.iter().any(|f| f == LEASE_FINALIZER))
}

/// Translates a lease's fault into data-plane terms, or says what is wrong with it.
pub fn plan_fault(fault_id: &str, fault: &LeaseFault) -> Result<FaultPlan, String> {
    let id = FaultId::new(fault_id).map_err(|e| format!("spec.faultId: {e}"))?;
    let mut kinds: Vec<PlannedFault> = Vec::new();
    if let Some(partition) = &fault.partition {
        kinds.push(PlannedFault::Partition(PartitionSpec {
            drop_peers: parse_peers("spec.fault.partition.dropPeers", &partition.drop_peers)?,
        }));
    }
    if let Some(latency) = &fault.latency {
        kinds.push(PlannedFault::Latency(LatencySpec {
            delay: latency.delay.get(),
            jitter: latency.jitter.map(|j| j.get()).unwrap_or_default(),
            from_peers: parse_peers("spec.fault.latency.fromPeers", &latency.from_peers)?,
            backend: None,
        }));
    }
    if let Some(loss) = &fault.loss {
        kinds.push(PlannedFault::Loss(LossSpec {
            from_peers: parse_peers("spec.fault.loss.fromPeers", &loss.from_peers)?,
            percent: loss.percent,
        }));
    }
    if let Some(bandwidth) = &fault.bandwidth {
        let rate = Rate::from_str(&bandwidth.rate)
            .map_err(|e| format!("spec.fault.bandwidth.rate: {e}"))?;
        kinds.push(PlannedFault::Bandwidth(BandwidthSpec { rate }));
    }
    if fault.pause.is_some() {
        kinds.push(PlannedFault::Pause);
    }
    match kinds.len() {
        1 => Ok(FaultPlan {
            id,
            fault: kinds.remove(0),
        }),
        0 => Err(
            "spec.fault: no fault set; set exactly one of partition, latency, loss, bandwidth, pause"
                .into(),
        ),
        _ => Err(
            "spec.fault: several faults set; set exactly one of partition, latency, loss, bandwidth, pause"
                .into(),
        ),
    }
}

fn parse_peers(field: &str, peers: &[String]) -> Result<Vec<Ipv4Addr>, String> {
    peers
        .iter()
        .enumerate()
        .map(|(index, peer)| {
            peer.parse()
                .map_err(|_| format!("{field}[{index}]: {peer:?} is not an IPv4 address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FaultLeaseStatus, LeaseBandwidth, LeasePause};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const NODE: &str = "node-a";
    const NOW: &str = "2025-06-01T12:00:00Z";

    /// A partition lease for a pod on `node-a`, deadline one minute after [`NOW`].
    fn lease() -> FaultLease {
        serde_yaml::from_str(
            r#"
apiVersion: schism.dev/v1alpha1
kind: FaultLease
metadata:
  name: etcd-partition-etcd-0
  namespace: demo
  labels: {schism.dev/node: node-a}
  finalizers: [schism.dev/agent-revert]
spec:
  chaos: etcd-partition
  faultId: etcd_partition_1
  pod: {name: etcd-0, uid: 6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11, nodeName: node-a, ip: 10.0.0.5}
  fault:
    partition: {dropPeers: [10.0.0.6, 10.0.0.7]}
  deadline: "2025-06-01T12:01:00Z"
"#,
        )
        .expect("fixture parses")
    }

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn with_phase(mut lease: FaultLease, phase: LeasePhase) -> FaultLease {
        lease.status = Some(FaultLeaseStatus {
            phase: Some(phase),
            ..FaultLeaseStatus::default()
        });
        lease
    }

    fn deleted(mut lease: FaultLease) -> FaultLease {
        lease.metadata.deletion_timestamp = Some(Time(now()));
        lease
    }

    fn expired(mut lease: FaultLease) -> FaultLease {
        lease.spec.deadline = Time("2025-06-01T11:59:59Z".parse().unwrap());
        lease
    }

    fn holding() -> LocalState<'static> {
        LocalState {
            node_name: NODE,
            holds_fault: true,
            pod_found: true,
        }
    }

    fn not_holding() -> LocalState<'static> {
        LocalState {
            node_name: NODE,
            holds_fault: false,
            pod_found: true,
        }
    }

    fn partition_plan() -> AgentAction {
        AgentAction::Apply(FaultPlan {
            id: FaultId::new("etcd_partition_1").unwrap(),
            fault: PlannedFault::Partition(PartitionSpec {
                drop_peers: vec!["10.0.0.6".parse().unwrap(), "10.0.0.7".parse().unwrap()],
            }),
        })
    }

    #[test]
    fn new_lease_for_a_pod_on_this_node_is_applied() {
        assert_eq!(decide(&lease(), now(), &not_holding()), partition_plan());
        let pending = with_phase(lease(), LeasePhase::Pending);
        assert_eq!(decide(&pending, now(), &not_holding()), partition_plan());
    }

    #[test]
    fn lease_for_another_node_is_left_alone_even_when_deleted_or_expired() {
        let mut other = lease();
        other.spec.pod.node_name = "node-b".into();
        for lease in [other.clone(), deleted(other.clone()), expired(other)] {
            assert_eq!(
                decide(&lease, now(), &not_holding()),
                AgentAction::NotThisNode
            );
        }
    }

    #[test]
    fn applied_lease_this_agent_holds_needs_nothing_until_its_deadline() {
        let applied = with_phase(lease(), LeasePhase::Applied);
        assert_eq!(decide(&applied, now(), &holding()), AgentAction::Nothing);
        assert_eq!(
            recheck_after(&applied, now(), NODE),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn held_fault_whose_status_write_was_lost_is_reported_again() {
        assert_eq!(
            decide(&lease(), now(), &holding()),
            AgentAction::ReportApplied
        );
    }

    #[test]
    fn applied_lease_not_held_after_an_agent_restart_is_applied_fresh() {
        let applied = with_phase(lease(), LeasePhase::Applied);
        assert_eq!(decide(&applied, now(), &not_holding()), partition_plan());
    }

    #[test]
    fn reverted_and_failed_leases_are_final() {
        for phase in [LeasePhase::Reverted, LeasePhase::Failed] {
            let finished = with_phase(lease(), phase);
            assert_eq!(
                decide(&finished, now(), &not_holding()),
                AgentAction::Nothing
            );
            assert!(!is_live(&finished, now(), NODE));
            assert_eq!(recheck_after(&finished, now(), NODE), None);
        }
    }

    #[test]
    fn deleted_lease_is_reverted_then_released() {
        let deleting = deleted(with_phase(lease(), LeasePhase::Applied));
        assert_eq!(
            decide(&deleting, now(), &holding()),
            AgentAction::RevertAndRelease
        );
    }

    #[test]
    fn deleted_lease_with_nothing_active_is_released_at_once_in_every_phase() {
        for phase in [
            None,
            Some(LeasePhase::Pending),
            Some(LeasePhase::Applied),
            Some(LeasePhase::Reverted),
            Some(LeasePhase::Failed),
        ] {
            let mut deleting = deleted(lease());
            if let Some(phase) = phase {
                deleting = with_phase(deleting, phase);
            }
            assert_eq!(
                decide(&deleting, now(), &not_holding()),
                AgentAction::Release,
                "{phase:?}"
            );
        }
    }

    #[test]
    fn deleted_lease_without_the_finalizer_needs_nothing() {
        let mut deleting = deleted(lease());
        deleting.metadata.finalizers = Some(vec!["someone.else/keep".into()]);
        assert_eq!(
            decide(&deleting, now(), &not_holding()),
            AgentAction::Nothing
        );
    }

    #[test]
    fn deletion_of_an_expired_lease_is_still_a_release() {
        let deleting = deleted(expired(with_phase(lease(), LeasePhase::Applied)));
        assert_eq!(
            decide(&deleting, now(), &holding()),
            AgentAction::RevertAndRelease
        );
    }

    #[test]
    fn held_fault_is_reverted_at_the_deadline_without_any_controller() {
        let applied = expired(with_phase(lease(), LeasePhase::Applied));
        assert_eq!(
            decide(&applied, now(), &holding()),
            AgentAction::RevertAndReportReverted
        );
        // Exactly at the deadline counts as passed.
        let mut at_deadline = with_phase(lease(), LeasePhase::Applied);
        at_deadline.spec.deadline = Time(now());
        assert_eq!(
            decide(&at_deadline, now(), &holding()),
            AgentAction::RevertAndReportReverted
        );
    }

    #[test]
    fn expired_applied_lease_after_a_restart_is_reported_reverted() {
        let applied = expired(with_phase(lease(), LeasePhase::Applied));
        assert_eq!(
            decide(&applied, now(), &not_holding()),
            AgentAction::ReportReverted
        );
    }

    #[test]
    fn expired_lease_is_never_applied() {
        for lease in [
            expired(lease()),
            expired(with_phase(lease(), LeasePhase::Pending)),
        ] {
            let action = decide(&lease, now(), &not_holding());
            let AgentAction::ReportFailed(reason) = action else {
                panic!("expected a failure, got {action:?}");
            };
            assert!(reason.contains("deadline"), "{reason}");
            assert!(!is_live(&lease, now(), NODE));
        }
        for phase in [LeasePhase::Reverted, LeasePhase::Failed] {
            let finished = expired(with_phase(lease(), phase));
            assert_eq!(
                decide(&finished, now(), &not_holding()),
                AgentAction::Nothing
            );
        }
    }

    #[test]
    fn lease_for_a_pod_without_processes_here_fails_with_the_pod_named() {
        let local = LocalState {
            pod_found: false,
            ..not_holding()
        };
        let action = decide(&lease(), now(), &local);
        let AgentAction::ReportFailed(reason) = action else {
            panic!("expected a failure, got {action:?}");
        };
        assert!(
            reason.contains("etcd-0") && reason.contains("6f1c0d1e") && reason.contains(NODE),
            "{reason}"
        );
    }

    #[test]
    fn invalid_fault_specs_fail_with_the_field_path() {
        let mut bad_peer = lease();
        bad_peer.spec.fault.partition.as_mut().unwrap().drop_peers[1] = "10.0.0".into();
        let mut two_faults = lease();
        two_faults.spec.fault.pause = Some(LeasePause {});
        let mut no_fault = lease();
        no_fault.spec.fault = LeaseFault::default();
        let mut bad_rate = lease();
        bad_rate.spec.fault = LeaseFault {
            bandwidth: Some(LeaseBandwidth {
                rate: "fast".into(),
            }),
            ..LeaseFault::default()
        };
        let mut bad_id = lease();
        bad_id.spec.fault_id = "has-dash".into();
        for (lease, expected) in [
            (bad_peer, "spec.fault.partition.dropPeers[1]"),
            (two_faults, "several faults"),
            (no_fault, "no fault set"),
            (bad_rate, "spec.fault.bandwidth.rate"),
            (bad_id, "spec.faultId"),
        ] {
            match decide(&lease, now(), &not_holding()) {
                AgentAction::ReportFailed(reason) => {
                    assert!(reason.contains(expected), "{reason} lacks {expected}")
                }
                other => panic!("expected failure {expected}, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_lease_fault_kind_translates_to_the_data_plane() {
        let faults: Vec<(&str, PlannedFault)> = vec![
            (
                "{latency: {delay: 100ms, jitter: 10ms, fromPeers: [10.0.0.6]}}",
                PlannedFault::Latency(LatencySpec {
                    delay: Duration::from_millis(100),
                    jitter: Duration::from_millis(10),
                    from_peers: vec!["10.0.0.6".parse().unwrap()],
                    backend: None,
                }),
            ),
            (
                "{loss: {percent: 30}}",
                PlannedFault::Loss(LossSpec {
                    from_peers: vec![],
                    percent: 30.0,
                }),
            ),
            (
                "{bandwidth: {rate: 10mbit}}",
                PlannedFault::Bandwidth(BandwidthSpec {
                    rate: "10mbit".parse().unwrap(),
                }),
            ),
            ("{pause: {}}", PlannedFault::Pause),
        ];
        for (yaml, expected) in faults {
            let fault: LeaseFault = serde_yaml::from_str(yaml).unwrap();
            let plan = plan_fault("f1", &fault).unwrap();
            assert_eq!(plan.fault, expected, "{yaml}");
            assert_eq!(
                plan.fault.is_network_fault(),
                expected != PlannedFault::Pause
            );
        }
    }

    #[test]
    fn only_unexpired_unfinished_undeleted_leases_of_this_node_are_live() {
        assert!(is_live(&lease(), now(), NODE));
        assert!(is_live(
            &with_phase(lease(), LeasePhase::Applied),
            now(),
            NODE
        ));
        assert!(!is_live(&lease(), now(), "node-b"));
        assert!(!is_live(&deleted(lease()), now(), NODE));
        assert!(!is_live(&expired(lease()), now(), NODE));
    }

    #[test]
    fn wall_clock_deadline_becomes_the_same_distance_on_the_monotonic_clock() {
        let start = Instant::now();
        let deadline: Timestamp = "2025-06-01T12:00:01.5Z".parse().unwrap();
        assert_eq!(
            deadline_instant(deadline, now(), start),
            start + Duration::from_millis(1500)
        );
        let past: Timestamp = "2025-06-01T11:00:00Z".parse().unwrap();
        assert_eq!(deadline_instant(past, now(), start), start);
    }
}
