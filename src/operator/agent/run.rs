//! The thin Kubernetes layer of the node agent: watch this node's leases, ask
//! [`decide`](super::decide::decide) what to do, let the [`Actuator`] do it, write the outcome.
//!
//! kube's `Controller` (a reflector over a watcher of leases labelled for this node) calls
//! [`reconcile`] for every change of a lease and again at its deadline, so a fault is reverted
//! and reported on time with no other writer around.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;

use super::actuator::{Actuator, LeaseKey};
use super::decide::{AgentAction, LocalState, deadline_instant, decide, is_live, recheck_after};
use super::journal::PauseJournal;
use super::metrics::AgentMetrics;
use crate::api::{FaultLease, LEASE_FINALIZER, LEASE_NODE_LABEL};
use crate::operator::events::EventSink;

/// After a deadline, how long the agent waits before looking at the lease again: the fault's
/// own watchdog reverts exactly at the deadline, the agent then reports it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// How soon a failed reconcile is retried.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// `schism agent`: the node agent, run by a DaemonSet (hostPID, privileged).
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// The node this agent serves; set it from the pod's `spec.nodeName` (downward API).
    #[arg(long)]
    pub node_name: String,
    /// Where the host's /proc is visible (with hostPID, the agent's own /proc).
    #[arg(long, default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Where the node's cgroup filesystem is visible, writable: pauses freeze the pod's
    /// cgroup there (forks included). Where no pod cgroup is found, pauses fall back to
    /// SIGSTOP of each process; `none` always uses SIGSTOP.
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// A directory on the node (not in the container) where every pause is recorded before it
    /// is made, so a restarted agent resumes what Schism paused and nothing else.
    #[arg(long, default_value = "/run/schism-agent/pauses")]
    pub pause_journal: PathBuf,
    /// Watch leases only in these namespaces (comma-separated); all namespaces by default.
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub metrics_address: std::net::SocketAddr,
}

/// What the agent loop needs to know about its place.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The node this agent serves.
    pub node_name: String,
    /// Where the host's processes are listed.
    pub proc_root: PathBuf,
    /// Where pods' cgroups are looked up for freezing; `None`: pauses use SIGSTOP.
    pub cgroup_root: Option<PathBuf>,
    /// Where pauses are journalled.
    pub pause_journal: PathBuf,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
}

impl From<&AgentArgs> for AgentConfig {
    fn from(args: &AgentArgs) -> Self {
        Self {
            node_name: args.node_name.clone(),
            proc_root: args.proc_root.clone(),
            cgroup_root: Some(args.cgroup_root.clone()).filter(|root| root.as_os_str() != "none"),
            pause_journal: args.pause_journal.clone(),
            namespaces: args.namespaces.clone(),
        }
    }
}

/// Why the agent, or one reconcile of it, failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The Kubernetes API refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// No Kubernetes client configuration (in-cluster or kubeconfig) was found.
    #[error("no Kubernetes configuration (in-cluster service account or kubeconfig): {0}")]
    Config(String),
    /// The proc root could not be listed.
    #[error(
        "cannot list processes under {proc_root}: {source} (mount the host's /proc and run with hostPID)"
    )]
    Proc {
        /// The proc root.
        proc_root: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The pause journal's directory could not be made.
    #[error("cannot open the pause journal {dir}: {source} (mount a hostPath directory there)")]
    Journal {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A blocking task panicked.
    #[error("agent worker thread failed: {0}")]
    Worker(String),
}

/// Runs `schism agent` until SIGTERM or Ctrl-C; returns the process exit code. Logging is set
/// up by `main`.
pub fn run(args: &AgentArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("schism agent: cannot start the async runtime: {error}");
            return 1;
        }
    };
    let config = AgentConfig::from(args);
    let address = args.metrics_address;
    let outcome = runtime.block_on(async move {
        let metrics = Arc::new(AgentMetrics::default());
        let bound = crate::operator::metrics::serve(address, Arc::clone(&metrics))
            .await
            .map_err(|error| AgentError::Config(format!("cannot listen on {address}: {error}")))?;
        tracing::info!(address = %bound, "serving /metrics, /healthz, /readyz");
        let client = Client::try_default()
            .await
            .map_err(|error| AgentError::Config(error.to_string()))?;
        run_agent(
            client,
            config,
            metrics,
            crate::operator::termination_signal(),
        )
        .await
    });
    match outcome {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("schism agent: {error}");
            1
        }
    }
}

/// State shared by every reconcile.
struct AgentContext {
    client: Client,
    node_name: String,
    actuator: Arc<Actuator>,
    metrics: Arc<AgentMetrics>,
}

impl AgentContext {
    fn count_held(&self) {
        self.metrics
            .held
            .set(self.actuator.held_leases().len() as i64);
    }

    /// A Warning Event on the lease's Chaos, where people look (`kubectl describe chaos`).
    async fn warn(&self, lease: &FaultLease, reason: &str, note: String) {
        let Some(owner) = lease
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Chaos")
        else {
            return;
        };
        let regarding = ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: lease.metadata.namespace.clone(),
            uid: Some(owner.uid.clone()),
            ..Default::default()
        };
        let events = EventSink::new(self.client.clone(), "schism-agent", regarding);
        let action = format!(
            "{reason} {}",
            lease.metadata.name.as_deref().unwrap_or_default()
        );
        events
            .publish(EventType::Warning, reason, &action, note)
            .await;
    }
}

/// The agent loop: reaps the node, then applies and reverts this node's leases until
/// `shutdown` resolves, then reverts whatever it still holds.
pub async fn run_agent(
    client: Client,
    config: AgentConfig,
    metrics: Arc<AgentMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let journal =
        PauseJournal::open(&config.pause_journal).map_err(|source| AgentError::Journal {
            dir: config.pause_journal.clone(),
            source,
        })?;
    let mut actuator = Actuator::new(config.proc_root.clone()).with_journal(journal);
    if let Some(cgroup_root) = &config.cgroup_root {
        actuator = actuator.with_cgroup_root(cgroup_root);
    }
    let actuator = Arc::new(actuator);
    let selector = format!(
        "{LEASE_NODE_LABEL}={}",
        crate::api::node_label_value(&config.node_name)
    );
    let apis: Vec<Api<FaultLease>> = if config.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        config
            .namespaces
            .iter()
            .map(|namespace| Api::namespaced(client.clone(), namespace))
            .collect()
    };

    reap_at_start(&apis, &selector, &config.node_name, &actuator).await?;
    metrics.set_ready(true);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let context = Arc::new(AgentContext {
        client,
        node_name: config.node_name.clone(),
        actuator: Arc::clone(&actuator),
        metrics: Arc::clone(&metrics),
    });
    tracing::info!(node = %config.node_name, proc_root = %config.proc_root.display(), "agent watching fault leases");
    let controllers = apis.into_iter().map(|api| {
        let mut stopped = stopped.clone();
        Controller::new(api, watcher::Config::default().labels(&selector))
            .graceful_shutdown_on(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .run(reconcile, error_policy, Arc::clone(&context))
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "lease reconcile did not complete");
                }
            })
    });
    futures::future::join_all(controllers).await;

    metrics.set_ready(false);
    let held = actuator.held_leases().len();
    let failures = blocking(move || actuator.revert_all()).await?;
    for (lease, error) in &failures {
        tracing::warn!(%lease, %error, "revert at shutdown failed");
        metrics.failed("revert");
    }
    metrics
        .reverted
        .inc_by((held - failures.len().min(held)) as u64);
    metrics.held.set(0);
    Ok(())
}

/// Before applying anything: remove every Schism rule and qdisc on the node, and resume the
/// journalled pauses of pods whose lease is not live (live ones are applied fresh by the
/// loop).
async fn reap_at_start(
    apis: &[Api<FaultLease>],
    selector: &str,
    node_name: &str,
    actuator: &Arc<Actuator>,
) -> Result<(), AgentError> {
    let now = Timestamp::now();
    let mut live_pods = HashSet::new();
    for api in apis {
        // Without the API, no lease can be shown to be live: reap everything (the safe
        // direction); the watch loop re-applies live leases once the API answers again.
        let leases = match api.list(&ListParams::default().labels(selector)).await {
            Ok(leases) => leases,
            Err(error) => {
                tracing::warn!(%error, "cannot list leases at start; reaping every Schism fault on this node");
                live_pods.clear();
                break;
            }
        };
        live_pods.extend(
            leases
                .items
                .iter()
                .filter(|lease| is_live(lease, now, node_name))
                .map(|lease| lease.spec.pod.uid.to_ascii_lowercase()),
        );
    }
    let actuator = Arc::clone(actuator);
    let report = blocking(move || {
        let snapshot = actuator.scan().map_err(|source| AgentError::Proc {
            proc_root: actuator.proc_root().to_path_buf(),
            source,
        })?;
        Ok::<_, AgentError>(actuator.reap_node(&snapshot, &live_pods))
    })
    .await??;
    for failure in &report.failures {
        tracing::warn!(%failure, "start-up reap");
    }
    tracing::info!(
        namespaces = report.namespaces,
        removed = report.removed.len(),
        resumed = report.resumed.len(),
        thawed = report.thawed.len(),
        "start-up reap done"
    );
    Ok(())
}

/// One look at one lease: gather the local state, decide, act, report.
async fn reconcile(
    lease: Arc<FaultLease>,
    context: Arc<AgentContext>,
) -> Result<Action, AgentError> {
    let key = LeaseKey::of(&lease);
    let holds_fault = context.actuator.holds(&key);
    // The pod is only looked up when the fault might be applied.
    let pod = if holds_fault {
        None
    } else {
        let actuator = Arc::clone(&context.actuator);
        let snapshot =
            blocking(move || actuator.scan())
                .await?
                .map_err(|source| AgentError::Proc {
                    proc_root: context.actuator.proc_root().to_path_buf(),
                    source,
                })?;
        snapshot.pod(&lease.spec.pod.uid)
    };
    let now = Timestamp::now();
    let local = LocalState {
        node_name: &context.node_name,
        holds_fault,
        pod_found: holds_fault || pod.is_some(),
    };
    let action = decide(&lease, now, &local);
    let api: Api<FaultLease> = Api::namespaced(context.client.clone(), &key.namespace);
    let agent = context.node_name.as_str();

    match action {
        AgentAction::NotThisNode => tracing::warn!(
            lease = %key,
            pod_node = %lease.spec.pod.node_name,
            "lease is labelled for this node but names another; leaving it alone"
        ),
        AgentAction::Nothing => {}
        AgentAction::Apply(plan) => {
            let Some(pod) = pod else {
                return Ok(Action::requeue(RETRY_AFTER));
            };
            let deadline = deadline_instant(lease.spec.deadline.0, now, Instant::now());
            let actuator = Arc::clone(&context.actuator);
            let applying = key.clone();
            let applied =
                blocking(move || actuator.apply(&applying, &plan, &pod, deadline)).await?;
            let status = match applied {
                Ok(mechanism) => {
                    context.metrics.applied.inc();
                    applied_status(agent, mechanism)
                }
                Err(error) => {
                    tracing::warn!(lease = %key, %error, "cannot apply fault");
                    context.metrics.failed("apply");
                    context
                        .warn(
                            &lease,
                            "FaultApplyFailed",
                            format!(
                                "agent on {agent} could not apply {key} to pod {}: {error}",
                                lease.spec.pod.name
                            ),
                        )
                        .await;
                    failed_status(agent, &error.to_string())
                }
            };
            context.count_held();
            patch_status(&api, &key, status).await?;
        }
        AgentAction::ReportApplied => {
            let mechanism = context.actuator.mechanism(&key).unwrap_or("unknown");
            patch_status(&api, &key, applied_status(agent, mechanism)).await?;
        }
        AgentAction::RevertAndRelease => {
            if let Err(error) = revert(&context, &lease, &key).await? {
                // The nftables elements expire in the kernel at the deadline and the next
                // agent start reaps the rest; holding the finalizer would only hang deletion.
                tracing::warn!(lease = %key, %error, "revert before deletion failed");
            }
            release_finalizer(&api, &lease, &key).await?;
        }
        AgentAction::Release => release_finalizer(&api, &lease, &key).await?,
        AgentAction::RevertAndReportReverted => {
            let status = match revert(&context, &lease, &key).await? {
                Ok(()) => reverted_status(agent),
                Err(error) => failed_status(agent, &format!("revert at the deadline: {error}")),
            };
            patch_status(&api, &key, status).await?;
        }
        AgentAction::ReportReverted => patch_status(&api, &key, reverted_status(agent)).await?,
        AgentAction::ReportFailed(reason) => {
            tracing::warn!(lease = %key, %reason, "lease cannot be applied");
            context.metrics.failed("apply");
            context
                .warn(&lease, "FaultApplyFailed", format!("{key}: {reason}"))
                .await;
            patch_status(&api, &key, failed_status(agent, &reason)).await?;
        }
    }

    Ok(
        match recheck_after(&lease, Timestamp::now(), &context.node_name) {
            Some(remaining) => Action::requeue(remaining + DEADLINE_MARGIN),
            None => Action::await_change(),
        },
    )
}

fn error_policy(lease: Arc<FaultLease>, error: &AgentError, context: Arc<AgentContext>) -> Action {
    tracing::warn!(lease = %LeaseKey::of(&lease), %error, "lease reconcile failed; retrying");
    context.metrics.failed("api");
    Action::requeue(RETRY_AFTER)
}

/// Reverts the lease's fault on a blocking thread, counts it, and on failure says so on the
/// lease's Chaos; the outer error is the thread's, the inner the data plane's.
async fn revert(
    context: &AgentContext,
    lease: &FaultLease,
    key: &LeaseKey,
) -> Result<Result<(), crate::dataplane::DataPlaneError>, AgentError> {
    let actuator = Arc::clone(&context.actuator);
    let reverting = key.clone();
    let reverted = blocking(move || actuator.revert(&reverting)).await?;
    context.count_held();
    match &reverted {
        Ok(true) => {
            context.metrics.reverted.inc();
        }
        Ok(false) => {}
        Err(error) => {
            context.metrics.failed("revert");
            context
                .warn(
                    lease,
                    "FaultRevertFailed",
                    format!(
                        "agent on {} could not revert {key}: {error}; the kernel's timeouts and the agent's reaper remove what is left",
                        context.node_name
                    ),
                )
                .await;
        }
    }
    Ok(reverted.map(drop))
}

/// Status after a successful apply. Stale `revertedAt` and `error` from an earlier life of
/// the lease are cleared.
fn applied_status(agent: &str, mechanism: &str) -> serde_json::Value {
    json!({
        "phase": "Applied",
        "agent": agent,
        "mechanism": mechanism,
        "appliedAt": Time(Timestamp::now()),
        "revertedAt": null,
        "error": null,
    })
}

fn reverted_status(agent: &str) -> serde_json::Value {
    json!({
        "phase": "Reverted",
        "agent": agent,
        "revertedAt": Time(Timestamp::now()),
    })
}

fn failed_status(agent: &str, reason: &str) -> serde_json::Value {
    json!({
        "phase": "Failed",
        "agent": agent,
        "error": reason,
    })
}

/// Writes status fields with a JSON merge patch on the status subresource, so fields this
/// agent does not own stay as they are. A lease deleted meanwhile needs no status.
async fn patch_status(
    api: &Api<FaultLease>,
    key: &LeaseKey,
    status: serde_json::Value,
) -> Result<(), AgentError> {
    let patch = Patch::Merge(json!({ "status": status }));
    match api
        .patch_status(&key.name, &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Removes the agent's finalizer. The patch carries the lease's resourceVersion, so a
/// concurrent change of the finalizer list makes it fail (409) and be retried on the new
/// object, instead of dropping someone else's finalizer.
async fn release_finalizer(
    api: &Api<FaultLease>,
    lease: &FaultLease,
    key: &LeaseKey,
) -> Result<(), AgentError> {
    let remaining: Vec<&String> = lease
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|finalizer| *finalizer != LEASE_FINALIZER)
        .collect();
    let patch = Patch::Merge(json!({
        "metadata": {
            "finalizers": remaining,
            "resourceVersion": lease.metadata.resource_version,
        }
    }));
    match api.patch(&key.name, &PatchParams::default(), &patch).await {
        Ok(_) => {
            tracing::info!(lease = %key, "finalizer released");
            Ok(())
        }
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

/// Runs data-plane work (child processes, /proc reads) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| AgentError::Worker(error.to_string()))
}
