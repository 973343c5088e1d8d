//! The engine's backend in a cluster: network and process faults become `FaultLease`s that
//! the node agents apply; kills are pod deletions through the API. While a fault's window is
//! open, a follower watches the target's pods and gives the fault again to a pod that is
//! recreated (see [`reinject`](super::reinject)).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};

use super::reinject::{self, ActiveFault, PlacedLease, PodSlot, Replacement};
use crate::api::{
    Chaos, FaultLease, FaultLeaseSpec, LEASE_FINALIZER, LEASE_NODE_LABEL, LeaseFault, LeasePhase,
    LeasePod,
};
use crate::dataplane::FaultId;
use crate::engine::experiment::{Backend, NodeAddress};
use crate::engine::timeline::{FaultAction, FaultInstance};
use crate::operator::events::EventSink;
use crate::operator::labels::{CHAOS_UID_LABEL, GENERATION_LABEL, INSTANCE_LABEL};
use crate::operator::lookup::{ResolvedTarget, selector_string};
use crate::operator::targets;

/// How long to wait for the agents to report on a lease before calling it failed.
const AGENT_ANSWER: Duration = Duration::from_secs(10);

/// What a running experiment shares with the runner for its status.
#[derive(Debug, Default)]
pub struct RunProgress {
    /// Faults active now.
    pub active_faults: AtomicUsize,
    /// The chaos window is over: the run heals and checks now.
    pub window_over: AtomicBool,
}

/// The target's pods and the faults whose windows are open: what injection, healing and the
/// follower share. Only one of them changes leases at a time, so no lease of a healed fault
/// is ever created after its heal.
struct FaultBook {
    slots: Vec<PodSlot>,
    active: BTreeMap<usize, ActiveFault>,
}

/// Everything that names and creates leases; shared with the follower task.
struct Leases {
    client: Client,
    chaos: Arc<Chaos>,
    namespace: String,
    generation: i64,
    events: EventSink,
    revisions: AtomicU64,
    epoch: Instant,
    notes: Mutex<HashMap<usize, Vec<String>>>,
}

/// Drives one experiment's faults through the API.
pub struct KubeBackend {
    leases: Arc<Leases>,
    /// The targets as the engine indexes them: the pods' names when the run started, and
    /// how clients reach them.
    nodes: Vec<NodeAddress>,
    progress: Arc<RunProgress>,
    book: Arc<tokio::sync::Mutex<FaultBook>>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for KubeBackend {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl KubeBackend {
    /// A backend for `chaos` over its resolved target; `hosts[i]` is how clients reach pod
    /// `i`. Starts following the target's pods at once.
    pub fn new(
        client: Client,
        chaos: Arc<Chaos>,
        target: &ResolvedTarget,
        events: EventSink,
        progress: Arc<RunProgress>,
    ) -> Self {
        let namespace = chaos
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let nodes = target
            .pods
            .iter()
            .zip(target.hosts(&namespace))
            .map(|(pod, host)| NodeAddress {
                name: pod.name.clone(),
                host,
            })
            .collect();
        let leases = Arc::new(Leases {
            client: client.clone(),
            generation: chaos.metadata.generation.unwrap_or(0),
            chaos: Arc::clone(&chaos),
            namespace: namespace.clone(),
            events,
            revisions: AtomicU64::new(0),
            epoch: Instant::now(),
            notes: Mutex::default(),
        });
        let book = Arc::new(tokio::sync::Mutex::new(FaultBook {
            slots: target
                .pods
                .iter()
                .map(|pod| PodSlot {
                    pod: pod.clone(),
                    ready: true,
                })
                .collect(),
            active: BTreeMap::new(),
        }));
        let follower = tokio::spawn(follow_pods(
            Arc::clone(&leases),
            Arc::clone(&book),
            target.selector.clone(),
            chaos.spec.target.stateful_set.is_some(),
        ));
        Self {
            leases,
            nodes,
            progress,
            book,
            follower,
        }
    }
}

impl Leases {
    fn chaos_uid(&self) -> &str {
        self.chaos.metadata.uid.as_deref().unwrap_or_default()
    }

    fn api(&self) -> Api<FaultLease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A label selector for this run's leases, or one instance's.
    fn selector(&self, instance: Option<usize>) -> String {
        let mut selector = format!(
            "{CHAOS_UID_LABEL}={},{GENERATION_LABEL}={}",
            self.chaos_uid(),
            self.generation
        );
        if let Some(instance) = instance {
            selector.push_str(&format!(",{INSTANCE_LABEL}={instance}"));
        }
        selector
    }

    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        self.events.publish(type_, reason, action, note).await;
    }

    fn note(&self, instance: usize, text: String) {
        let at = self.epoch.elapsed().as_secs_f64();
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(instance)
            .or_default()
            .push(format!("{text} at {at:.1}s"));
    }

    /// The lease for target `target` of instance `index`. Every lease gets a name of its
    /// own (a revision number), so a replacement never collides with the lease it replaces
    /// while that one is still being reverted.
    fn lease(
        &self,
        index: usize,
        slot: &PodSlot,
        target: usize,
        fault: LeaseFault,
        deadline: Time,
    ) -> FaultLease {
        let chaos = self.chaos.metadata.name.clone().unwrap_or_default();
        let uid = self.chaos_uid().to_owned();
        let short_uid: String = uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
        let revision = self.revisions.fetch_add(1, Ordering::Relaxed);
        let mut prefix: String = chaos.chars().take(40).collect();
        while prefix.ends_with(['-', '.']) {
            prefix.pop();
        }
        let name = format!(
            "{prefix}-{}-g{}-f{index}-p{target}-r{revision}",
            &short_uid[..short_uid.len().min(8)],
            self.generation
        );
        let labels = BTreeMap::from([
            (CHAOS_UID_LABEL.to_owned(), uid.clone()),
            (GENERATION_LABEL.to_owned(), self.generation.to_string()),
            (
                LEASE_NODE_LABEL.to_owned(),
                crate::api::node_label_value(&slot.pod.node_name),
            ),
            (INSTANCE_LABEL.to_owned(), index.to_string()),
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
                // Generation and revision keep data-plane names apart across runs and
                // replacements, as the lease names are.
                fault_id: FaultId::sanitized(&format!(
                    "x{short_uid}_{}_{index}_{target}_{revision}",
                    self.generation
                ))
                .as_str()
                .to_owned(),
                pod: LeasePod {
                    name: slot.pod.name.clone(),
                    uid: slot.pod.uid.clone(),
                    node_name: slot.pod.node_name.clone(),
                    ip: Some(slot.pod.ip.clone()),
                },
                fault,
                deadline,
            },
            status: None,
        }
    }

    /// Creates a lease and returns its name.
    async fn create(&self, lease: &FaultLease) -> Result<String, String> {
        self.api()
            .create(&PostParams::default(), lease)
            .await
            .map(|made| made.metadata.name.unwrap_or_default())
            .map_err(|e| format!("creating lease for {}: {e}", lease.spec.pod.name))
    }

    /// Waits until every lease reports Applied (or one reports Failed), and returns the
    /// mechanisms the agents used.
    async fn await_applied(&self, names: &[String]) -> Result<Vec<String>, String> {
        let leases = self.api();
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

    /// Deletes the leases `selector` selects and waits until their agents released them, so
    /// a heal means healed.
    async fn delete_and_wait(&self, selector: &str) -> Result<(), String> {
        let leases = self.api();
        let params = ListParams::default().labels(selector);
        leases
            .delete_collection(&DeleteParams::default(), &params)
            .await
            .map_err(|e| format!("deleting leases {selector}: {e}"))?;
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

    /// Re-reads target pods (a killed pod comes back with a new UID and IP) into `slots` and
    /// returns the names of those that are gone or not running yet.
    async fn refresh(&self, slots: &mut [PodSlot], indices: &[usize]) -> Vec<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut missing = Vec::new();
        for &i in indices {
            let found = pods.get_opt(&slots[i].pod.name).await.ok().flatten();
            let running = found.as_ref().and_then(|pod| {
                let uid = pod.metadata.uid.clone()?;
                let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone())?;
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone())?;
                pod.metadata
                    .deletion_timestamp
                    .is_none()
                    .then_some((uid, ip, node))
            });
            match running {
                Some((uid, ip, node)) => {
                    slots[i].pod.uid = uid;
                    slots[i].pod.ip = ip;
                    slots[i].pod.node_name = node;
                    slots[i].ready = true;
                }
                None => {
                    slots[i].ready = false;
                    missing.push(slots[i].pod.name.clone());
                }
            }
        }
        missing
    }

    /// Carries out replacements: each new lease is created while the book is held (so a heal
    /// cannot slip in between), the leases they replace are returned for deletion.
    async fn replace(
        &self,
        book: &mut FaultBook,
        replacements: Vec<Replacement>,
    ) -> Vec<(usize, String, String)> {
        let mut made = Vec::new();
        for replacement in replacements {
            let Some(fault) = book.active.get(&replacement.instance) else {
                continue;
            };
            let slot = book.slots[replacement.target].clone();
            let lease = self.lease(
                replacement.instance,
                &slot,
                replacement.target,
                replacement.fault.clone(),
                fault.deadline.clone(),
            );
            let name = match self.create(&lease).await {
                Ok(name) => name,
                Err(error) => {
                    self.note(
                        replacement.instance,
                        format!("re-injection on {} failed: {error}", slot.pod.name),
                    );
                    continue;
                }
            };
            let Some(fault) = book.active.get_mut(&replacement.instance) else {
                continue;
            };
            let old = std::mem::replace(
                &mut fault.leases[replacement.old],
                PlacedLease {
                    name: name.clone(),
                    target: replacement.target,
                    pod_uid: slot.pod.uid.clone(),
                    fault: replacement.fault,
                },
            );
            self.note(replacement.instance, replacement.why.clone());
            self.event(
                EventType::Normal,
                "FaultReinjected",
                &format!("Reinject {}", fault.instance.name),
                format!("{}: {}", fault.instance.name, replacement.why),
            )
            .await;
            made.push((replacement.instance, name, old.name));
        }
        made
    }
}

/// Follows the target's pods for the whole run; whenever they change, gives the open faults
/// to pods that came back. Ends with the backend.
async fn follow_pods(
    leases: Arc<Leases>,
    book: Arc<tokio::sync::Mutex<FaultBook>>,
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    names_stable: bool,
) {
    let api: Api<Pod> = Api::namespaced(leases.client.clone(), &leases.namespace);
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(&selector_string(&selector));
    let mut changes = reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects()
        .boxed();
    while let Some(change) = changes.next().await {
        if let Err(error) = change {
            tracing::debug!(%error, "following the target's pods");
            continue;
        }
        let pods = reader.state();
        let ready = targets::ready_pods(&selector, pods.iter().map(|p| p.as_ref()));
        let made = {
            let mut book = book.lock().await;
            book.slots = reinject::rebind(&book.slots, &ready, names_stable);
            let replacements = reinject::plan(&book.active, &book.slots);
            if replacements.is_empty() {
                continue;
            }
            leases.replace(&mut book, replacements).await
        };
        for (instance, new, old) in made {
            if let Err(error) = leases.await_applied(std::slice::from_ref(&new)).await {
                leases.note(instance, format!("re-injection failed: {error}"));
                leases
                    .event(
                        EventType::Warning,
                        "FaultFailed",
                        &format!("Reinject {new}"),
                        error,
                    )
                    .await;
            }
            // The old lease names a pod that is gone; its agent releases it.
            if let Err(error) = leases.api().delete(&old, &DeleteParams::default()).await {
                tracing::debug!(%error, lease = %old, "deleting a replaced lease");
            }
        }
    }
}

fn wall_clock(deadline: Instant) -> Time {
    let left = deadline.saturating_duration_since(Instant::now());
    Time(Timestamp::now() + SignedDuration::try_from(left).unwrap_or(SignedDuration::ZERO))
}

impl Backend for KubeBackend {
    fn nodes(&self) -> Vec<NodeAddress> {
        self.nodes.clone()
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
        let leases = Arc::clone(&self.leases);
        let mut book = self.book.lock().await;
        let targets = reinject::lease_targets(instance);
        // A partition needs every peer's current address; other faults only their targets'.
        let stale: Vec<usize> = match instance.action {
            FaultAction::Partition(_) => (0..book.slots.len()).collect(),
            _ => targets.clone(),
        };
        let missing = leases.refresh(&mut book.slots, &stale).await;
        let needed: Vec<&String> = missing
            .iter()
            .filter(|name| {
                targets.iter().any(|&t| book.slots[t].pod.name == **name)
                    || matches!(instance.action, FaultAction::Partition(_))
            })
            .collect();
        let action = format!("Inject {}", instance.name);
        if !needed.is_empty() && !matches!(instance.action, FaultAction::Kill { .. }) {
            let names: Vec<&str> = needed.iter().map(|n| n.as_str()).collect();
            let message = format!(
                "target pod(s) {} vanished or are not running; the fault was not injected",
                names.join(", ")
            );
            leases
                .event(
                    EventType::Warning,
                    "TargetVanished",
                    &action,
                    format!("{}: {message}", instance.name),
                )
                .await;
            return Err(message);
        }
        let names: Vec<String> = targets
            .iter()
            .map(|&t| book.slots[t].pod.name.clone())
            .collect();
        if let FaultAction::Kill { grace } = instance.action {
            drop(book);
            let pods: Api<Pod> = Api::namespaced(leases.client.clone(), &leases.namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(grace.as_secs() as u32),
                ..Default::default()
            };
            for name in &names {
                pods.delete(name, &params)
                    .await
                    .map_err(|e| format!("deleting pod {name}: {e}"))?;
            }
            leases
                .event(
                    EventType::Normal,
                    "PodKilled",
                    &action,
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
        // Counted as active from the first lease on: heal deletes every lease of the
        // instance by label, also those of a half-made injection.
        book.active.insert(
            index,
            ActiveFault {
                instance: instance.clone(),
                deadline: deadline.clone(),
                leases: Vec::new(),
            },
        );
        self.progress.active_faults.fetch_add(1, Ordering::Relaxed);
        let mut created = Vec::new();
        for &target in &targets {
            let slot = book.slots[target].clone();
            let fault = reinject::lease_fault(&instance.action, target, &book.slots)
                .expect("kills returned above");
            let lease = leases.lease(index, &slot, target, fault.clone(), deadline.clone());
            let name = leases.create(&lease).await?;
            created.push(name.clone());
            if let Some(active) = book.active.get_mut(&index) {
                active.leases.push(PlacedLease {
                    name,
                    target,
                    pod_uid: slot.pod.uid.clone(),
                    fault,
                });
            }
        }
        drop(book);
        match leases.await_applied(&created).await {
            Ok(mechanisms) => {
                leases
                    .event(
                        EventType::Normal,
                        "FaultInjected",
                        &action,
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
                leases
                    .event(
                        EventType::Warning,
                        "FaultFailed",
                        &action,
                        format!("{}: {e}", instance.name),
                    )
                    .await;
                Err(e)
            }
        }
    }

    async fn heal(&mut self, index: usize, instance: &FaultInstance) -> Result<(), String> {
        let leases = Arc::clone(&self.leases);
        let mut book = self.book.lock().await;
        if book.active.remove(&index).is_some() {
            self.progress.active_faults.fetch_sub(1, Ordering::Relaxed);
        }
        // By label, not by the names recorded: that also catches leases of an injection that
        // failed halfway, and replacements.
        let result = leases.delete_and_wait(&leases.selector(Some(index))).await;
        drop(book);
        let action = format!("Heal {}", instance.name);
        match &result {
            Ok(()) => {
                leases
                    .event(
                        EventType::Normal,
                        "FaultHealed",
                        &action,
                        format!("{} healed", instance.name),
                    )
                    .await
            }
            Err(e) => {
                leases
                    .event(
                        EventType::Warning,
                        "HealFailed",
                        &action,
                        format!("{}: {e}", instance.name),
                    )
                    .await
            }
        }
        result
    }

    async fn heal_all(&mut self) -> Vec<String> {
        let mut book = self.book.lock().await;
        book.active.clear();
        self.progress.active_faults.store(0, Ordering::Relaxed);
        self.progress.window_over.store(true, Ordering::Relaxed);
        let result = self
            .leases
            .delete_and_wait(&self.leases.selector(None))
            .await;
        drop(book);
        match result {
            Ok(()) => Vec::new(),
            Err(e) => vec![e],
        }
    }

    fn notes(&mut self, index: usize) -> Vec<String> {
        self.leases
            .notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&index)
            .unwrap_or_default()
    }
}
