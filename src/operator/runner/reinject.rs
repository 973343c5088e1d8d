//! Keeping faults on pods that come back (pure).
//!
//! A target pod recreated while a fault's window is open (a `podKill` of a partitioned
//! member, an eviction, a crash) is a new pod: a new UID, usually a new IP, and none of the
//! old pod's rules. [`rebind`] follows the target's pods as they change; [`plan`] says which
//! leases no longer describe the pods they are for — the recreated pod's own, and its peers'
//! partition rules that still name its old IP — so the runner can replace them and the cut
//! holds from both sides until the window ends.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{LeaseBandwidth, LeaseFault, LeaseLatency, LeaseLoss, LeasePartition, LeasePause};
use crate::engine::timeline::{FaultAction, FaultInstance};
use crate::operator::targets::TargetPod;

/// One target of the experiment, at its index in the fault plans, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSlot {
    /// The pod (name, UID, node and IP as last seen).
    pub pod: TargetPod,
    /// Whether that pod is there, Running and Ready, now.
    pub ready: bool,
}

/// A lease that carries part of an active fault.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedLease {
    /// The lease's name.
    pub name: String,
    /// Index of the target it is for.
    pub target: usize,
    /// UID of the pod it names.
    pub pod_uid: String,
    /// The fault it carries.
    pub fault: LeaseFault,
}

/// A fault whose window is open.
#[derive(Debug, Clone)]
pub struct ActiveFault {
    /// The timeline instance.
    pub instance: FaultInstance,
    /// When its leases end at the latest.
    pub deadline: Time,
    /// Its leases now.
    pub leases: Vec<PlacedLease>,
}

/// A lease to replace: the fault `fault` for target `target` of instance `instance`, instead
/// of lease `old` of that instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    /// The timeline instance.
    pub instance: usize,
    /// Position of the lease in the instance's `leases`.
    pub old: usize,
    /// The target index.
    pub target: usize,
    /// The fault as it must be now.
    pub fault: LeaseFault,
    /// Why, for the timeline and the event.
    pub why: String,
}

/// The lease fault for target `target` of `action`, with the peers' current addresses.
/// `None` for a pod kill, which is an API call, not a lease.
pub fn lease_fault(action: &FaultAction, target: usize, slots: &[PodSlot]) -> Option<LeaseFault> {
    let fault = match action {
        FaultAction::Partition(plan) => LeaseFault {
            partition: Some(LeasePartition {
                drop_peers: plan
                    .drops(target)
                    .iter()
                    .map(|&peer| slots[peer].pod.ip.clone())
                    .collect(),
            }),
            ..Default::default()
        },
        FaultAction::Latency { delay, jitter } => LeaseFault {
            latency: Some(LeaseLatency {
                delay: (*delay).into(),
                jitter: (!jitter.is_zero()).then(|| (*jitter).into()),
                from_peers: Vec::new(),
            }),
            ..Default::default()
        },
        FaultAction::Loss { percent } => LeaseFault {
            loss: Some(LeaseLoss {
                percent: *percent,
                from_peers: Vec::new(),
            }),
            ..Default::default()
        },
        FaultAction::Bandwidth { bits_per_second } => LeaseFault {
            bandwidth: Some(LeaseBandwidth {
                rate: format!("{bits_per_second}bit"),
            }),
            ..Default::default()
        },
        FaultAction::Pause => LeaseFault {
            pause: Some(LeasePause {}),
            ..Default::default()
        },
        FaultAction::Kill { .. } => return None,
    };
    Some(fault)
}

/// The targets that carry leases of `action`: a partition's affected pods (those with a
/// link to cut), every target otherwise.
pub fn lease_targets(instance: &FaultInstance) -> Vec<usize> {
    match &instance.action {
        FaultAction::Partition(plan) => plan.affected_nodes(),
        _ => instance.targets.clone(),
    }
}

/// The target slots after seeing the target's `ready` pods now. A target keeps its index:
/// first by name (a StatefulSet's pod comes back under its name); with `names_stable` false
/// (a Deployment's or a selector's pods), a target whose pod is gone is then bound to a ready
/// pod no target has, oldest name first — the replacement its ReplicaSet made.
pub fn rebind(slots: &[PodSlot], ready: &[TargetPod], names_stable: bool) -> Vec<PodSlot> {
    let mut next: Vec<PodSlot> = slots
        .iter()
        .map(
            |slot| match ready.iter().find(|p| p.name == slot.pod.name) {
                Some(pod) => PodSlot {
                    pod: pod.clone(),
                    ready: true,
                },
                None => PodSlot {
                    pod: slot.pod.clone(),
                    ready: false,
                },
            },
        )
        .collect();
    if !names_stable {
        let mut spare: Vec<&TargetPod> = ready
            .iter()
            .filter(|p| !slots.iter().any(|s| s.pod.name == p.name))
            .collect();
        spare.sort_by(|a, b| a.name.cmp(&b.name));
        let mut spare = spare.into_iter();
        for slot in next.iter_mut().filter(|s| !s.ready) {
            match spare.next() {
                Some(pod) => {
                    *slot = PodSlot {
                        pod: pod.clone(),
                        ready: true,
                    }
                }
                None => break,
            }
        }
    }
    next
}

/// The leases of the active faults that no longer describe their pods. A target that is not
/// ready yet is left until it is (its lease cannot be applied to a pod that is not there).
pub fn plan(active: &BTreeMap<usize, ActiveFault>, slots: &[PodSlot]) -> Vec<Replacement> {
    let mut replacements = Vec::new();
    for (&instance, fault) in active {
        for (position, lease) in fault.leases.iter().enumerate() {
            let Some(slot) = slots.get(lease.target) else {
                continue;
            };
            if !slot.ready {
                continue;
            }
            let Some(want) = lease_fault(&fault.instance.action, lease.target, slots) else {
                continue;
            };
            let why = if slot.pod.uid != lease.pod_uid {
                format!(
                    "pod {} was recreated (uid {}); fault applied again",
                    slot.pod.name, slot.pod.uid
                )
            } else if want != lease.fault {
                format!(
                    "a peer of {} was recreated with a new IP; its rules now name it",
                    slot.pod.name
                )
            } else {
                continue;
            };
            replacements.push(Replacement {
                instance,
                old: position,
                target: lease.target,
                fault: want,
                why,
            });
        }
    }
    replacements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faultplan::{PartitionShape, plan_partition, rng_from_seed};
    use std::time::Duration;

    fn pod(name: &str, uid: &str, ip: &str) -> TargetPod {
        TargetPod {
            name: name.into(),
            uid: uid.into(),
            node_name: "node-a".into(),
            ip: ip.into(),
        }
    }

    fn slots() -> Vec<PodSlot> {
        (0..3)
            .map(|i| PodSlot {
                pod: pod(
                    &format!("etcd-{i}"),
                    &format!("u{i}"),
                    &format!("10.0.0.{i}"),
                ),
                ready: true,
            })
            .collect()
    }

    /// etcd-0 isolated from etcd-1 and etcd-2.
    fn isolate_first() -> FaultInstance {
        let names: Vec<String> = (0..3).map(|i| format!("etcd-{i}")).collect();
        let shape = PartitionShape::Groups(vec![vec!["etcd-0".into()], names[1..].to_vec()]);
        let plan = plan_partition(&shape, &names, &mut rng_from_seed(1)).unwrap();
        FaultInstance {
            fault_index: 0,
            name: "split".into(),
            repeat: 0,
            action: FaultAction::Partition(plan),
            targets: vec![0, 1, 2],
            aim: None,
            inject_at: Duration::from_secs(1),
            heal_at: Some(Duration::from_secs(10)),
        }
    }

    fn active(instance: FaultInstance, slots: &[PodSlot]) -> BTreeMap<usize, ActiveFault> {
        let leases = lease_targets(&instance)
            .into_iter()
            .map(|t| PlacedLease {
                name: format!("lease-{t}"),
                target: t,
                pod_uid: slots[t].pod.uid.clone(),
                fault: lease_fault(&instance.action, t, slots).unwrap(),
            })
            .collect();
        BTreeMap::from([(
            0,
            ActiveFault {
                instance,
                deadline: Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap()),
                leases,
            },
        )])
    }

    #[test]
    fn nothing_changes_while_the_pods_stay() {
        let slots = slots();
        assert!(plan(&active(isolate_first(), &slots), &slots).is_empty());
    }

    #[test]
    fn a_recreated_partitioned_pod_is_cut_again_from_both_sides() {
        let before = slots();
        let faults = active(isolate_first(), &before);
        // etcd-0 is killed: gone, then back with a new UID and IP.
        let gone = rebind(
            &before,
            &[before[1].pod.clone(), before[2].pod.clone()],
            true,
        );
        assert!(!gone[0].ready);
        assert!(
            plan(&faults, &gone).is_empty(),
            "nothing to do until it is back"
        );
        let back = rebind(
            &gone,
            &[
                pod("etcd-0", "u0-new", "10.0.0.9"),
                before[1].pod.clone(),
                before[2].pod.clone(),
            ],
            true,
        );
        let replacements = plan(&faults, &back);
        let targets: Vec<usize> = replacements.iter().map(|r| r.target).collect();
        assert_eq!(targets, [0, 1, 2], "its own lease and both peers'");
        assert!(replacements[0].why.contains("recreated"));
        for replacement in &replacements[1..] {
            let drops = &replacement.fault.partition.as_ref().unwrap().drop_peers;
            assert_eq!(
                drops,
                &["10.0.0.9".to_owned()],
                "peers drop the new address"
            );
        }
        let own = &replacements[0].fault.partition.as_ref().unwrap().drop_peers;
        assert_eq!(own, &["10.0.0.1".to_owned(), "10.0.0.2".to_owned()]);
    }

    #[test]
    fn a_deployments_replacement_pod_takes_the_place_of_the_one_that_went() {
        let before = slots();
        let ready = [
            pod("web-zzz", "u9", "10.0.0.9"),
            before[0].pod.clone(),
            before[2].pod.clone(),
        ];
        let after = rebind(&before, &ready, false);
        assert_eq!(after[1].pod.name, "web-zzz");
        assert!(after.iter().all(|s| s.ready));
        let stable = rebind(&before, &ready, true);
        assert!(
            !stable[1].ready,
            "a StatefulSet's pod comes back under its own name"
        );
    }

    #[test]
    fn a_pause_is_given_again_to_a_recreated_pod_only() {
        let before = slots();
        let pause = FaultInstance {
            fault_index: 1,
            name: "freeze".into(),
            repeat: 0,
            action: FaultAction::Pause,
            targets: vec![1],
            aim: None,
            inject_at: Duration::ZERO,
            heal_at: Some(Duration::from_secs(5)),
        };
        let faults = active(pause, &before);
        let mut after = before.clone();
        after[0].pod.uid = "other".into();
        assert!(
            plan(&faults, &after).is_empty(),
            "etcd-0 carries no part of it"
        );
        after[1].pod.uid = "u1-new".into();
        let replacements = plan(&faults, &after);
        assert_eq!(replacements.len(), 1);
        assert!(replacements[0].fault.pause.is_some());
    }
}
