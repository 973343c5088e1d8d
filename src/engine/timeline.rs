//! The experiment's timeline, decided up front from the spec and the seed: every injection
//! and heal with its offset and its resolved targets, so a seed replays a run exactly and the
//! plan can be shown before anything is touched.

use std::time::Duration;

use crate::api::{
    self, ChaosSpec, FaultEntry,
    validate::semantic::{fault_name, parse_rate},
};
use crate::faultplan::{self, PartitionPlan, PlanError, rng_for_fault};

/// What one injection does, with everything random already chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Drop traffic along the plan's cut links.
    Partition(PartitionPlan),
    /// Delay packets arriving at the targets.
    Latency {
        /// Added delay.
        delay: Duration,
        /// Random variation.
        jitter: Duration,
    },
    /// Drop this share (0–100) of packets arriving at the targets.
    Loss {
        /// Percentage.
        percent: f64,
    },
    /// Limit the targets' outgoing rate.
    Bandwidth {
        /// Bits per second.
        bits_per_second: u64,
    },
    /// Kill the targets (and, locally, start them again after the restart delay).
    Kill {
        /// Grace period before the kill.
        grace: Duration,
    },
    /// SIGSTOP the targets' processes; SIGCONT at heal.
    Pause,
}

impl FaultAction {
    /// The kind's name as in the API (`partition`, `podKill`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            FaultAction::Partition(_) => "partition",
            FaultAction::Latency { .. } => "latency",
            FaultAction::Loss { .. } => "loss",
            FaultAction::Bandwidth { .. } => "bandwidth",
            FaultAction::Kill { .. } => "podKill",
            FaultAction::Pause => "pause",
        }
    }
}

/// A fault aimed by role: its targets are chosen when it starts, from the leader then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aim {
    /// `targets.mode: leader`.
    Leader,
    /// `targets.mode: followers`.
    Followers,
    /// `partition.shape: isolate-leader`.
    IsolateLeader,
    /// `partition.shape: leader-in-minority`.
    LeaderInMinority,
}

impl Aim {
    /// How the timeline tells what was done to the leader.
    pub fn describe(self, leader: &str, at: Duration) -> String {
        let at = at.as_secs_f64();
        match self {
            Aim::Leader => format!("hit {leader}, the leader at {at:.1}s"),
            Aim::Followers => format!("hit the followers of {leader}, the leader at {at:.1}s"),
            Aim::IsolateLeader => format!("isolated {leader}, the leader at {at:.1}s"),
            Aim::LeaderInMinority => {
                format!("put {leader}, the leader at {at:.1}s, in the minority")
            }
        }
    }
}

/// One injection of one fault entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultInstance {
    /// Index of the entry in `spec.faults`.
    pub fault_index: usize,
    /// The entry's name; repeats are `NAME#2`, `NAME#3`, ….
    pub name: String,
    /// 0 for the first injection, 1 for the first repeat, ….
    pub repeat: u32,
    /// What is done.
    pub action: FaultAction,
    /// Node indices affected (for a partition: the nodes that need rules). Empty for a fault
    /// aimed by role until [`aim`] resolves it.
    pub targets: Vec<usize>,
    /// Set when the targets depend on who leads when the fault starts.
    pub aim: Option<Aim>,
    /// Offset of the injection from the start of the window.
    pub inject_at: Duration,
    /// Offset of the heal; `None` for instantaneous faults (kills).
    pub heal_at: Option<Duration>,
}

/// The whole plan of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The seed every choice came from.
    pub seed: u64,
    /// The chaos window.
    pub window: Duration,
    /// Every injection, ordered by time.
    pub instances: Vec<FaultInstance>,
}

/// A step of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Inject instance `i`.
    Inject(usize),
    /// Heal instance `i`.
    Heal(usize),
}

impl Timeline {
    /// Every step with its offset, in the order to run them; at equal offsets heals come
    /// first, so a repeat never overlaps its predecessor.
    pub fn steps(&self) -> Vec<(Duration, Step)> {
        let mut steps = Vec::new();
        for (i, instance) in self.instances.iter().enumerate() {
            steps.push((instance.inject_at, Step::Inject(i)));
            if let Some(heal) = instance.heal_at {
                steps.push((heal, Step::Heal(i)));
            }
        }
        steps.sort_by_key(|(at, step)| {
            (
                *at,
                matches!(step, Step::Inject(_)),
                match step {
                    Step::Inject(i) | Step::Heal(i) => *i,
                },
            )
        });
        steps
    }

    /// The offset of the last heal (or kill), if any fault ran.
    pub fn last_heal(&self) -> Option<Duration> {
        self.instances
            .iter()
            .map(|i| i.heal_at.unwrap_or(i.inject_at))
            .max()
    }
}

/// Why a timeline cannot be made: which fault, and the plan's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.faults[{index}] ({name}): {source}")]
pub struct TimelineError {
    /// Index of the fault entry.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub source: PlanError,
}

/// Builds the timeline for a target with these node names.
pub fn build(
    spec: &ChaosSpec,
    node_names: &[String],
    seed: u64,
) -> Result<Timeline, TimelineError> {
    let window = spec.duration.get();
    let mut instances = Vec::new();
    for (index, fault) in spec.faults.iter().enumerate() {
        let name = fault_name(fault, index);
        let fail = |source| TimelineError {
            index,
            name: name.clone(),
            source,
        };
        let mut rng = rng_for_fault(seed, index as u64);
        let start = fault.start.map(|s| s.get()).unwrap_or_default();
        let length = fault.duration.map(|d| d.get());
        let mut repeat = 0u32;
        let mut at = start;
        loop {
            // A fault aimed by role is planned with a stand-in leader, so a shape that cannot
            // work on this target is refused now; its real targets wait for the fault's start.
            let (action, mut targets, aim) =
                resolve(fault, node_names, &mut rng, 0).map_err(fail)?;
            if aim.is_some() {
                targets.clear();
            }
            instances.push(FaultInstance {
                fault_index: index,
                name: if repeat == 0 {
                    name.clone()
                } else {
                    format!("{name}#{}", repeat + 1)
                },
                repeat,
                action,
                targets,
                aim,
                inject_at: at,
                heal_at: length.map(|l| at + l),
            });
            let Some(every) = fault.every.map(|e| e.get()).filter(|e| !e.is_zero()) else {
                break;
            };
            at += every;
            repeat += 1;
            // A repeat runs only if it fits the window whole; a kill only if it is inside.
            let fits = match length {
                Some(l) => at + l <= window,
                None => at < window,
            };
            if !fits {
                break;
            }
        }
    }
    instances.sort_by_key(|i| (i.inject_at, i.fault_index));
    Ok(Timeline {
        seed,
        window,
        instances,
    })
}

/// Resolves an instance aimed by role now that `leader` (an index into `node_names`) is
/// known to lead: the same entry planned again, with the leader in its place. Pure and
/// reproducible: the same seed and leader give the same choice of companions.
pub fn aim(
    spec: &ChaosSpec,
    instance: &FaultInstance,
    node_names: &[String],
    seed: u64,
    leader: usize,
) -> Result<FaultInstance, PlanError> {
    let fault = spec
        .faults
        .get(instance.fault_index)
        .ok_or(PlanError::NoNodes)?;
    let mut rng = rng_for_fault(
        seed ^ (u64::from(instance.repeat + 1) << 40),
        instance.fault_index as u64,
    );
    let (action, targets, _) = resolve(fault, node_names, &mut rng, leader)?;
    Ok(FaultInstance {
        action,
        targets,
        ..instance.clone()
    })
}

type Resolved = (FaultAction, Vec<usize>, Option<Aim>);

fn resolve(
    fault: &FaultEntry,
    node_names: &[String],
    rng: &mut impl rand::Rng,
    leader: usize,
) -> Result<Resolved, PlanError> {
    let nodes = node_names.len();
    let select = |targets: &Option<api::Selection>,
                  rng: &mut dyn rand::RngCore|
     -> Result<(Vec<usize>, Option<Aim>), PlanError> {
        let selection = targets.clone().unwrap_or_default();
        let value = selection.value.unwrap_or(0).max(0) as u32;
        let aim = match selection.mode {
            api::SelectionMode::Leader => Some(Aim::Leader),
            api::SelectionMode::Followers => Some(Aim::Followers),
            _ => None,
        };
        let mode = match selection.mode {
            api::SelectionMode::Leader => faultplan::SelectionMode::Leader(leader),
            api::SelectionMode::Followers => faultplan::SelectionMode::Followers(leader),
            api::SelectionMode::One => faultplan::SelectionMode::One,
            api::SelectionMode::All => faultplan::SelectionMode::All,
            api::SelectionMode::Fixed => faultplan::SelectionMode::Fixed(value),
            api::SelectionMode::FixedPercent => faultplan::SelectionMode::FixedPercent(value),
            api::SelectionMode::RandomMaxPercent => {
                faultplan::SelectionMode::RandomMaxPercent(value)
            }
        };
        Ok((faultplan::select_targets(mode, nodes, rng)?, aim))
    };
    // Every kind but a partition is an action on selected targets.
    let on_selected = |action: FaultAction, targets: &Option<api::Selection>, rng| {
        select(targets, rng).map(|(chosen, aim)| (action, chosen, aim))
    };
    if let Some(partition) = &fault.partition {
        let shape = match partition.shape {
            api::PartitionShape::IsolateOne => faultplan::PartitionShape::IsolateOne,
            api::PartitionShape::MajorityMinority => faultplan::PartitionShape::MajorityMinority,
            api::PartitionShape::Halves => faultplan::PartitionShape::Halves,
            api::PartitionShape::Bridge => faultplan::PartitionShape::Bridge,
            api::PartitionShape::Ring => faultplan::PartitionShape::Ring,
            api::PartitionShape::Groups => {
                faultplan::PartitionShape::Groups(partition.groups.clone().unwrap_or_default())
            }
            api::PartitionShape::IsolateLeader => faultplan::PartitionShape::IsolateLeader(leader),
            api::PartitionShape::LeaderInMinority => {
                faultplan::PartitionShape::LeaderInMinority(leader)
            }
        };
        let aim = match partition.shape {
            api::PartitionShape::IsolateLeader => Some(Aim::IsolateLeader),
            api::PartitionShape::LeaderInMinority => Some(Aim::LeaderInMinority),
            _ => None,
        };
        let plan = faultplan::plan_partition(&shape, node_names, rng)?;
        let targets = plan.affected_nodes();
        return Ok((FaultAction::Partition(plan), targets, aim));
    }
    if let Some(latency) = &fault.latency {
        let action = FaultAction::Latency {
            delay: latency.delay.get(),
            jitter: latency.jitter.map(|j| j.get()).unwrap_or_default(),
        };
        return on_selected(action, &latency.targets, rng);
    }
    if let Some(loss) = &fault.loss {
        let action = FaultAction::Loss {
            percent: loss.percent,
        };
        return on_selected(action, &loss.targets, rng);
    }
    if let Some(bandwidth) = &fault.bandwidth {
        let bits_per_second = parse_rate(&bandwidth.rate).unwrap_or(0);
        return on_selected(
            FaultAction::Bandwidth { bits_per_second },
            &bandwidth.targets,
            rng,
        );
    }
    if let Some(kill) = &fault.pod_kill {
        let grace = kill.grace_period.map(|g| g.get()).unwrap_or_default();
        return on_selected(FaultAction::Kill { grace }, &kill.targets, rng);
    }
    if let Some(pause) = &fault.pause {
        return on_selected(FaultAction::Pause, &pause.targets, rng);
    }
    // Validation guarantees exactly one kind; an entry without one plans nothing.
    Err(PlanError::NoNodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ChaosSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    const SCHEDULE: &str = r#"
target: {statefulSet: etcd}
duration: 60s
faults:
  - name: split
    partition: {shape: majority-minority}
    start: 10s
    duration: 15s
    every: 20s
  - name: kill
    podKill: {}
    start: 5s
    every: 25s
  - latency: {delay: 100ms, targets: {mode: fixed, value: 2}}
    start: 0s
    duration: 60s
"#;

    #[test]
    fn repeats_fit_the_window_and_every_fault_is_healed_inside_it() {
        let timeline = build(&spec(SCHEDULE), &names(5), 42).unwrap();
        let split: Vec<_> = timeline
            .instances
            .iter()
            .filter(|i| i.fault_index == 0)
            .map(|i| (i.inject_at.as_secs(), i.heal_at.unwrap().as_secs()))
            .collect();
        // 10–25, 30–45; 50–65 would outlive the 60 s window.
        assert_eq!(split, [(10, 25), (30, 45)]);
        let kills: Vec<_> = timeline
            .instances
            .iter()
            .filter(|i| i.fault_index == 1)
            .map(|i| i.inject_at.as_secs())
            .collect();
        assert_eq!(kills, [5, 30, 55]);
        for instance in &timeline.instances {
            assert!(instance.heal_at.unwrap_or(instance.inject_at) <= timeline.window);
        }
        let latency = timeline
            .instances
            .iter()
            .find(|i| i.fault_index == 2)
            .unwrap();
        assert_eq!(latency.targets.len(), 2);
        assert_eq!(latency.name, "fault-2");
    }

    #[test]
    fn the_same_seed_replays_the_same_choices_and_another_seed_differs() {
        let a = build(&spec(SCHEDULE), &names(5), 7).unwrap();
        assert_eq!(a, build(&spec(SCHEDULE), &names(5), 7).unwrap());
        let differs = (0..20)
            .any(|seed| build(&spec(SCHEDULE), &names(5), seed).unwrap().instances != a.instances);
        assert!(differs, "twenty seeds all gave the same choices");
    }

    #[test]
    fn heals_run_before_injections_at_the_same_offset() {
        let timeline = build(&spec("target: {statefulSet: x}\nduration: 10s\nfaults:\n- pause: {}\n  duration: 2s\n  every: 2s\n"), &names(3), 1).unwrap();
        let steps = timeline.steps();
        let at_2s: Vec<Step> = steps
            .iter()
            .filter(|(at, _)| at.as_secs() == 2)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(at_2s, [Step::Heal(0), Step::Inject(1)]);
        assert_eq!(timeline.instances.len(), 5);
        assert_eq!(timeline.last_heal(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_plan_that_cannot_be_made_names_the_fault() {
        let error = build(&spec("target: {statefulSet: x}\nduration: 10s\nfaults:\n- name: r\n  partition: {shape: ring}\n  duration: 2s\n"), &names(3), 1).unwrap_err();
        assert_eq!(error.index, 0);
        assert!(error.to_string().contains("spec.faults[0] (r)"), "{error}");
    }
}
