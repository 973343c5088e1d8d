//! The local cluster as an engine backend: the engine decides, this applies.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{LocalCluster, LocalError};
use crate::dataplane::{self, AppliedFault, FaultId, Rate};
use crate::engine::experiment::{Backend, NodeAddress};
use crate::engine::timeline::{FaultAction, FaultInstance};

/// Drives faults on a [`LocalCluster`].
///
/// A node that is killed and restarted keeps its network namespace, and with it every rule a
/// partition, latency, loss or bandwidth fault put there, on its side and its peers'. Its
/// process is new, though: a node restarted inside a pause's window is paused again, as a pod
/// recreated in a cluster gets its faults again.
pub struct LocalBackend {
    cluster: Arc<LocalCluster>,
    /// The run's prefix in fault ids, so that two concurrent runs never share a table name.
    id_prefix: String,
    active: Arc<Mutex<HashMap<usize, ActiveFault>>>,
    notes: Arc<Mutex<HashMap<usize, Vec<String>>>>,
    epoch: Instant,
    restarts: Vec<(String, JoinHandle<Result<(), LocalError>>)>,
}

/// What an injected instance holds, and for a pause what to pause again after a restart.
#[derive(Default)]
struct ActiveFault {
    faults: Vec<AppliedFault>,
    pause: Option<PauseWindow>,
}

struct PauseWindow {
    nodes: Vec<usize>,
    id: FaultId,
    deadline: Instant,
}

impl LocalBackend {
    /// Wraps a started cluster.
    pub fn new(cluster: Arc<LocalCluster>) -> Self {
        let id_prefix = cluster
            .run_id()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        Self {
            cluster,
            id_prefix,
            active: Arc::default(),
            notes: Arc::default(),
            epoch: Instant::now(),
            restarts: Vec::new(),
        }
    }

    /// The cluster.
    pub fn cluster(&self) -> &Arc<LocalCluster> {
        &self.cluster
    }

    fn fault_id(&self, index: usize) -> FaultId {
        FaultId::sanitized(&format!("{}_f{index}", self.id_prefix))
    }

    async fn apply(
        &mut self,
        index: usize,
        instance: &FaultInstance,
        deadline: Instant,
    ) -> Result<Vec<AppliedFault>, LocalError> {
        let id = self.fault_id(index);
        let cluster = Arc::clone(&self.cluster);
        let targets = instance.targets.clone();
        let action = instance.action.clone();
        match action {
            FaultAction::Kill { grace } => {
                for node in targets {
                    let cluster = Arc::clone(&cluster);
                    let name = cluster.nodes()[node].name.clone();
                    let active = Arc::clone(&self.active);
                    let notes = Arc::clone(&self.notes);
                    let epoch = self.epoch;
                    // The node stays down for the restart delay and comes back on its own; the
                    // timeline goes on meanwhile.
                    self.restarts.push((
                        name,
                        tokio::spawn(async move {
                            if !grace.is_zero() {
                                tokio::time::sleep(grace).await;
                            }
                            cluster.kill_and_restart(node).await?;
                            tokio::task::spawn_blocking(move || {
                                pause_again(&cluster, node, &active, &notes, epoch)
                            })
                            .await
                            .map_err(|e| LocalError::Config(format!("pause task failed: {e}")))
                        }),
                    ));
                }
                Ok(Vec::new())
            }
            // Rule changes shell out to nft/tc/iptables and wait for them; keep that off the
            // async workers.
            other => tokio::task::spawn_blocking(move || match other {
                FaultAction::Partition(plan) => cluster.apply_partition(&plan, &id, deadline),
                FaultAction::Latency { delay, jitter } => {
                    cluster.apply_latency(&targets, delay, jitter, &id, deadline)
                }
                FaultAction::Loss { percent } => {
                    cluster.apply_loss(&targets, percent, &id, deadline)
                }
                FaultAction::Bandwidth { bits_per_second } => {
                    let rate: Rate = format!("{bits_per_second}bit")
                        .parse()
                        .map_err(LocalError::from)?;
                    cluster.apply_bandwidth(&targets, rate, &id, deadline)
                }
                FaultAction::Pause => targets
                    .iter()
                    .map(|&node| cluster.pause_node(node, &id, deadline))
                    .collect(),
                FaultAction::Kill { .. } => unreachable!("handled above"),
            })
            .await
            .map_err(|e| LocalError::Config(format!("fault task failed: {e}")))?,
        }
    }
}

/// Pauses a restarted `node` again for every pause whose window is still open on it.
fn pause_again(
    cluster: &LocalCluster,
    node: usize,
    active: &Mutex<HashMap<usize, ActiveFault>>,
    notes: &Mutex<HashMap<usize, Vec<String>>>,
    epoch: Instant,
) {
    let name = cluster.nodes()[node].name.clone();
    // Held while pausing, so a heal of the same instance cannot slip in between.
    let mut active = active.lock().unwrap_or_else(|p| p.into_inner());
    for (index, fault) in active.iter_mut() {
        let Some(window) = fault
            .pause
            .as_ref()
            .filter(|w| w.nodes.contains(&node) && w.deadline > Instant::now())
        else {
            continue;
        };
        let at = epoch.elapsed().as_secs_f64();
        let note = match cluster.pause_node(node, &window.id, window.deadline) {
            Ok(applied) => {
                fault.faults.push(applied);
                format!("node {name} restarted; paused again at {at:.1}s")
            }
            Err(error) => {
                format!("node {name} restarted; pausing it again failed at {at:.1}s: {error}")
            }
        };
        notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*index)
            .or_default()
            .push(note);
    }
}

/// How an injected fault was made: its mechanism, and for a partition which links it cut.
fn describe(
    instance: &FaultInstance,
    applied: &[AppliedFault],
    names: &[String],
) -> Option<String> {
    let mechanism = applied.first().map(|f| f.kind().mechanism());
    match (&instance.action, mechanism) {
        (FaultAction::Partition(plan), mechanism) => {
            let cuts: Vec<String> = (0..plan.node_count())
                .flat_map(|a| {
                    plan.drops(a)
                        .iter()
                        .filter(move |b| a < **b)
                        .map(move |b| format!("{}-{}", names[a], names[*b]))
                })
                .collect();
            Some(format!(
                "{}; cuts {}",
                mechanism.unwrap_or("nftables"),
                cuts.join(" ")
            ))
        }
        (FaultAction::Kill { .. }, _) => Some("SIGKILL, then restart".to_owned()),
        (_, Some(mechanism)) => Some(mechanism.to_owned()),
        (_, None) => None,
    }
}

fn heal_faults(faults: Vec<AppliedFault>) -> Result<(), String> {
    let errors: Vec<String> = dataplane::heal_all(faults)
        .into_iter()
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

impl Backend for LocalBackend {
    fn nodes(&self) -> Vec<NodeAddress> {
        self.cluster
            .nodes()
            .iter()
            .map(|n| NodeAddress {
                name: n.name.clone(),
                host: n.ip.to_string(),
            })
            .collect()
    }

    fn client_netns(&self) -> Option<PathBuf> {
        Some(self.cluster.client_netns().path().to_owned())
    }

    async fn inject(
        &mut self,
        index: usize,
        instance: &FaultInstance,
        deadline: Instant,
    ) -> Result<Option<String>, String> {
        let applied = self
            .apply(index, instance, deadline)
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = self
            .cluster
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let detail = describe(instance, &applied, &names);
        let pause = matches!(instance.action, FaultAction::Pause).then(|| PauseWindow {
            nodes: instance.targets.clone(),
            id: self.fault_id(index),
            deadline,
        });
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                index,
                ActiveFault {
                    faults: applied,
                    pause,
                },
            );
        Ok(detail)
    }

    async fn heal(&mut self, index: usize, _instance: &FaultInstance) -> Result<(), String> {
        let faults = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&index)
            .unwrap_or_default()
            .faults;
        tokio::task::spawn_blocking(move || heal_faults(faults))
            .await
            .map_err(|e| e.to_string())?
    }

    fn notes(&mut self, index: usize) -> Vec<String> {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&index)
            .unwrap_or_default()
    }

    async fn heal_all(&mut self) -> Vec<String> {
        let faults: Vec<AppliedFault> = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .flat_map(|(_, f)| f.faults)
            .collect();
        let mut errors = match tokio::task::spawn_blocking(move || heal_faults(faults)).await {
            Ok(Ok(())) => Vec::new(),
            Ok(Err(e)) => vec![e],
            Err(e) => vec![e.to_string()],
        };
        // Killed nodes must be back before the run ends, or recovery is not measured.
        for (name, restart) in self.restarts.drain(..) {
            match tokio::time::timeout(Duration::from_secs(60), restart).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(format!("restart of {name}: {e}")),
                Ok(Err(e)) => errors.push(format!("restart of {name}: {e}")),
                Err(_) => errors.push(format!("restart of {name} did not finish within 60s")),
            }
        }
        errors
    }
}
