//! The local cluster as an engine backend: the engine decides, this applies.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{LocalCluster, LocalError};
use crate::dataplane::{self, AppliedFault, FaultId, Rate};
use crate::engine::experiment::{Backend, NodeAddress};
use crate::engine::timeline::{FaultAction, FaultInstance};

/// Drives faults on a [`LocalCluster`].
pub struct LocalBackend {
    cluster: Arc<LocalCluster>,
    /// The run's prefix in fault ids, so that two concurrent runs never share a table name.
    id_prefix: String,
    active: HashMap<usize, Vec<AppliedFault>>,
    restarts: Vec<(String, JoinHandle<Result<(), LocalError>>)>,
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
            active: HashMap::new(),
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
                    // The node stays down for the restart delay and comes back on its own; the
                    // timeline goes on meanwhile.
                    self.restarts.push((
                        name,
                        tokio::spawn(async move {
                            if !grace.is_zero() {
                                tokio::time::sleep(grace).await;
                            }
                            cluster.kill_and_restart(node).await
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
        self.active.insert(index, applied);
        Ok(detail)
    }

    async fn heal(&mut self, index: usize, _instance: &FaultInstance) -> Result<(), String> {
        let faults = self.active.remove(&index).unwrap_or_default();
        tokio::task::spawn_blocking(move || heal_faults(faults))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn heal_all(&mut self) -> Vec<String> {
        let faults: Vec<AppliedFault> = self.active.drain().flat_map(|(_, f)| f).collect();
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
