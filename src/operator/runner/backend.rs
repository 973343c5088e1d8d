//! The engine's backend in a cluster: network and process faults become `FaultLease`s that
//! the node agents apply; kills are pod deletions through the API.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};

use super::targets::TargetPod;
use crate::api::{
    Chaos, FaultLease, FaultLeaseSpec, LEASE_FINALIZER, LEASE_NODE_LABEL, LeaseBandwidth,
    LeaseFault, LeaseLatency, LeaseLoss, LeasePartition, LeasePause, LeasePhase, LeasePod,
};
use crate::dataplane::FaultId;
use crate::engine::experiment::{Backend, NodeAddress};
use crate::engine::timeline::{FaultAction, FaultInstance};

/// Label holding the UID of the Chaos a lease belongs to (a UID always fits a label value;
/// a name of up to 253 characters does not).
pub const LEASE_CHAOS_LABEL: &str = "schism.dev/chaos-uid";
/// Label naming the timeline instance a lease implements.
pub const LEASE_INSTANCE_LABEL: &str = "schism.dev/instance";

/// How long to wait for the agents to report on a lease before calling it failed.
const AGENT_ANSWER: Duration = Duration::from_secs(10);

/// Drives one experiment's faults through the API.
pub struct KubeBackend {
    client: Client,
    chaos: Arc<Chaos>,
    namespace: String,
    pods: Vec<TargetPod>,
    hosts: Vec<String>,
    recorder: Recorder,
    progress: Arc<RunProgress>,
    instances: HashMap<usize, Vec<String>>,
}

/// What a running experiment shares with the reconciler for its status.
#[derive(Debug, Default)]
pub struct RunProgress {
    /// Faults active now.
    pub active_faults: AtomicUsize,
    /// The chaos window is over: the run heals and checks now.
    pub window_over: AtomicBool,
}

impl KubeBackend {
    /// A backend for `chaos` over its resolved target pods; `hosts[i]` is how clients reach
    /// pod `i` (a stable DNS name for StatefulSet pods, the IP otherwise).
    pub fn new(
        client: Client,
        chaos: Arc<Chaos>,
        pods: Vec<TargetPod>,
        hosts: Vec<String>,
        recorder: Recorder,
        progress: Arc<RunProgress>,
    ) -> Self {
        let namespace = chaos
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        Self {
            client,
            chaos,
            namespace,
            pods,
            hosts,
            recorder,
            progress,
            instances: HashMap::new(),
        }
    }

    fn chaos_uid(&self) -> String {
        self.chaos.metadata.uid.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.chaos.metadata.name.clone().unwrap_or_default()
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(super::bounded_note(note)),
            action: "Chaos".into(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &self.chaos.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, "cannot publish an event");
        }
    }

    /// Re-reads target pods: a killed pod comes back with a new UID and IP.
    /// Re-reads target pods (a killed pod comes back with a new UID and IP) and returns the
    /// names of those that are gone or not running yet.
    async fn refresh(&mut self, indices: &[usize]) -> Vec<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut missing = Vec::new();
        for &i in indices {
            let found = pods.get_opt(&self.pods[i].name).await.ok().flatten();
            let running = found.as_ref().and_then(|pod| {
                let uid = pod.metadata.uid.clone()?;
                let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone())?;
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone())?;
                Some((uid, ip, node))
            });
            match running {
                Some((uid, ip, node)) => {
                    self.pods[i].uid = uid;
                    self.pods[i].ip = ip;
                    self.pods[i].node_name = node;
                }
                None => missing.push(self.pods[i].name.clone()),
            }
        }
        missing
    }

    fn lease(&self, index: usize, pod: usize, fault: LeaseFault, deadline: Time) -> FaultLease {
        let chaos = self.name();
        let target = &self.pods[pod];
        let uid = self.chaos.metadata.uid.clone().unwrap_or_default();
        let prefix: String = uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
        // The generation keeps a re-run's names apart from leases of an earlier run that are
        // still being reverted.
        let generation = self.chaos.metadata.generation.unwrap_or(0);
        let mut name = format!("{chaos}-g{generation}-f{index}-{}", target.name);
        name.truncate(253);
        let name = name.trim_end_matches(['-', '.']).to_owned();
        let labels = BTreeMap::from([
            (LEASE_CHAOS_LABEL.to_owned(), self.chaos_uid()),
            (
                LEASE_NODE_LABEL.to_owned(),
                crate::api::node_label_value(&target.node_name),
            ),
            (LEASE_INSTANCE_LABEL.to_owned(), index.to_string()),
        ]);
        let owner = OwnerReference {
            api_version: crate::api::API_VERSION.into(),
            kind: "Chaos".into(),
            name: chaos.clone(),
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        FaultLease {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                owner_references: Some(vec![owner]),
                finalizers: Some(vec![LEASE_FINALIZER.to_owned()]),
                ..Default::default()
            },
            spec: FaultLeaseSpec {
                chaos,
                fault_id: FaultId::sanitized(&format!("x{prefix}_f{index}_p{pod}"))
                    .as_str()
                    .to_owned(),
                pod: LeasePod {
                    name: target.name.clone(),
                    uid: target.uid.clone(),
                    node_name: target.node_name.clone(),
                    ip: Some(target.ip.clone()),
                },
                fault,
                deadline,
            },
            status: None,
        }
    }

    /// Waits until every lease reports Applied (or one reports Failed), and returns the
    /// mechanisms the agents used.
    async fn await_applied(&self, names: &[String]) -> Result<Vec<String>, String> {
        let leases: Api<FaultLease> = Api::namespaced(self.client.clone(), &self.namespace);
        let started = Instant::now();
        loop {
            let mut mechanisms = Vec::new();
            let mut pending = Vec::new();
            for name in names {
                let lease = leases
                    .get(name)
                    .await
                    .map_err(|e| format!("reading lease {name}: {e}"))?;
                let status = lease.status.unwrap_or_default();
                match status.phase {
                    Some(LeasePhase::Applied) => mechanisms.extend(status.mechanism),
                    Some(LeasePhase::Failed) => {
                        return Err(format!(
                            "agent on {} could not apply {name}: {}",
                            lease.spec.pod.node_name,
                            status.error.unwrap_or_default()
                        ));
                    }
                    _ => pending.push(format!("{name} (node {})", lease.spec.pod.node_name)),
                }
            }
            if pending.is_empty() {
                mechanisms.sort();
                mechanisms.dedup();
                return Ok(mechanisms);
            }
            if started.elapsed() > AGENT_ANSWER {
                return Err(format!(
                    "no agent applied {} within {AGENT_ANSWER:?}; is the schism agent DaemonSet running on those nodes?",
                    pending.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn delete_leases(&self, selector: &str) -> Result<(), String> {
        let leases: Api<FaultLease> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(selector);
        leases
            .delete_collection(&DeleteParams::default(), &params)
            .await
            .map_err(|e| format!("deleting leases {selector}: {e}"))?;
        // The agents revert, then release their finalizer; wait for that so a heal means healed.
        let started = Instant::now();
        loop {
            let left = leases
                .list(&params)
                .await
                .map_err(|e| format!("listing leases: {e}"))?;
            if left.items.is_empty() {
                return Ok(());
            }
            if started.elapsed() > AGENT_ANSWER {
                let names: Vec<String> = left
                    .items
                    .iter()
                    .filter_map(|l| l.metadata.name.clone())
                    .collect();
                return Err(format!(
                    "leases not reverted by their agents within {AGENT_ANSWER:?}: {}",
                    names.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn wall_clock(deadline: Instant) -> Time {
    let left = deadline.saturating_duration_since(Instant::now());
    Time(Timestamp::now() + SignedDuration::try_from(left).unwrap_or(SignedDuration::ZERO))
}

impl Backend for KubeBackend {
    fn nodes(&self) -> Vec<NodeAddress> {
        self.pods
            .iter()
            .zip(&self.hosts)
            .map(|(p, host)| NodeAddress {
                name: p.name.clone(),
                host: host.clone(),
            })
            .collect()
    }

    fn client_netns(&self) -> Option<PathBuf> {
        None
    }

    async fn inject(
        &mut self,
        index: usize,
        instance: &FaultInstance,
        deadline: Instant,
    ) -> Result<Option<String>, String> {
        let targets = match &instance.action {
            FaultAction::Partition(plan) => plan.affected_nodes(),
            _ => instance.targets.clone(),
        };
        // A partition needs every peer's current address; other faults only their targets'.
        let stale: Vec<usize> = match instance.action {
            FaultAction::Partition(_) => (0..self.pods.len()).collect(),
            _ => targets.clone(),
        };
        let missing = self.refresh(&stale).await;
        let needed: Vec<&String> = missing
            .iter()
            .filter(|name| {
                targets.iter().any(|&t| self.pods[t].name == **name)
                    || matches!(instance.action, FaultAction::Partition(_))
            })
            .collect();
        if !needed.is_empty() && !matches!(instance.action, FaultAction::Kill { .. }) {
            let names: Vec<&str> = needed.iter().map(|n| n.as_str()).collect();
            let message = format!(
                "target pod(s) {} vanished or are not running; the fault was not injected",
                names.join(", ")
            );
            self.event(
                EventType::Warning,
                "TargetVanished",
                format!("{}: {message}", instance.name),
            )
            .await;
            return Err(message);
        }
        let names: Vec<String> = targets.iter().map(|&t| self.pods[t].name.clone()).collect();
        if let FaultAction::Kill { grace } = instance.action {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(grace.as_secs() as u32),
                ..Default::default()
            };
            for name in &names {
                pods.delete(name, &params)
                    .await
                    .map_err(|e| format!("deleting pod {name}: {e}"))?;
            }
            self.event(
                EventType::Normal,
                "PodKilled",
                format!(
                    "{}: deleted pod(s) {} (grace {}s)",
                    instance.name,
                    names.join(", "),
                    grace.as_secs()
                ),
            )
            .await;
            return Ok(Some(format!("pod deletion, grace {}s", grace.as_secs())));
        }
        let deadline = wall_clock(deadline);
        let leases: Vec<FaultLease> = targets
            .iter()
            .map(|&pod| {
                let fault = match &instance.action {
                    FaultAction::Partition(plan) => LeaseFault {
                        partition: Some(LeasePartition {
                            drop_peers: plan
                                .drops(pod)
                                .iter()
                                .map(|&p| self.pods[p].ip.clone())
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
                    FaultAction::Kill { .. } => unreachable!("handled above"),
                };
                self.lease(index, pod, fault, deadline.clone())
            })
            .collect();
        let api: Api<FaultLease> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut created = Vec::new();
        // Counted as active from the first lease on: heal deletes every lease of the
        // instance by label, also those of a half-made injection.
        self.instances.insert(index, Vec::new());
        self.progress.active_faults.fetch_add(1, Ordering::Relaxed);
        for lease in &leases {
            let made = api
                .create(&PostParams::default(), lease)
                .await
                .map_err(|e| format!("creating lease for {}: {e}", lease.spec.pod.name))?;
            created.push(made.metadata.name.unwrap_or_default());
        }
        self.instances.insert(index, created.clone());
        match self.await_applied(&created).await {
            Ok(mechanisms) => {
                self.event(
                    EventType::Normal,
                    "FaultInjected",
                    format!(
                        "{} ({}) on {}",
                        instance.name,
                        instance.action.kind(),
                        names.join(", ")
                    ),
                )
                .await;
                Ok(Some(mechanisms.join(", ")))
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FaultFailed",
                    format!("{}: {e}", instance.name),
                )
                .await;
                Err(e)
            }
        }
    }

    async fn heal(&mut self, index: usize, instance: &FaultInstance) -> Result<(), String> {
        if self.instances.remove(&index).is_some() {
            self.progress.active_faults.fetch_sub(1, Ordering::Relaxed);
        }
        // By label, not by the names recorded: that also catches leases of an injection that
        // failed halfway.
        let result = self
            .delete_leases(&format!(
                "{LEASE_CHAOS_LABEL}={},{LEASE_INSTANCE_LABEL}={index}",
                self.chaos_uid()
            ))
            .await;
        match &result {
            Ok(()) => {
                self.event(
                    EventType::Normal,
                    "FaultHealed",
                    format!("{} healed", instance.name),
                )
                .await
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "HealFailed",
                    format!("{}: {e}", instance.name),
                )
                .await
            }
        }
        result
    }

    async fn heal_all(&mut self) -> Vec<String> {
        self.instances.clear();
        self.progress.active_faults.store(0, Ordering::Relaxed);
        self.progress.window_over.store(true, Ordering::Relaxed);
        match self
            .delete_leases(&format!("{LEASE_CHAOS_LABEL}={}", self.chaos_uid()))
            .await
        {
            Ok(()) => Vec::new(),
            Err(e) => vec![e],
        }
    }
}
