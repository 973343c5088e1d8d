//! Making a lease's fault real on this node and taking it away again, with the data plane.
//!
//! Every applied fault keeps its data-plane watchdog, so it ends at its deadline even if the
//! agent's loop is stuck or the API server unreachable. Dropping the actuator reverts whatever
//! it still holds (a graceful agent shutdown leaves nothing behind; a new agent re-applies live
//! leases after its start-up reap).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use super::cgroups::{locate_freezer, pod_cgroups};
use super::decide::{FaultPlan, PlannedFault};
use super::discovery::{NamespaceId, PodProcesses, ProcSnapshot, process_state, start_time};
use super::journal::{self, HeldPause, PauseJournal, PauseRecord, ProcessStamp};
use crate::api::FaultLease;
use crate::dataplane::{
    self, AppliedFault, DataPlaneError, Freezer, FreezerState, Netns, ProcessTarget, ReapedItem,
    reap_netns,
};

/// Which lease a held fault belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    /// Namespace of the lease.
    pub namespace: String,
    /// Name of the lease.
    pub name: String,
    /// UID of the lease: a lease deleted and made again under the same name is another
    /// lease, and the fault the agent holds for the old one is not the new one's.
    pub uid: String,
}

impl LeaseKey {
    /// The key of a lease object.
    pub fn of(lease: &FaultLease) -> Self {
        Self {
            namespace: lease.metadata.namespace.clone().unwrap_or_default(),
            name: lease.metadata.name.clone().unwrap_or_default(),
            uid: lease.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a fault could not be applied, phrased for the lease's status.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// None of the pod's processes could be signalled (they all exited).
    #[error("pod {uid} has no running process left to pause")]
    NoProcess {
        /// The pod UID.
        uid: String,
    },
    /// No process of the pod has a readable `ns/net`.
    #[error(
        "no network namespace of pod {uid} is readable under {proc_root} (is the agent privileged with hostPID?)"
    )]
    NoNetns {
        /// The pod UID.
        uid: String,
        /// Where the agent looked.
        proc_root: PathBuf,
    },
    /// The pod shares the node's network namespace (or the agent's): a network fault there
    /// would hit every pod of the node, so Schism refuses it.
    #[error(
        "pod {uid} uses the node's network namespace (hostNetwork): Schism refuses network faults that would hit the whole node"
    )]
    HostNetwork {
        /// The pod UID.
        uid: String,
    },
    /// The process the namespace was found through exited between the scan and the open.
    #[error(
        "the process of pod {uid} whose network namespace was found exited before Schism could open it; try again"
    )]
    NamespaceChanged {
        /// The pod UID.
        uid: String,
    },
    /// The pause could not be written to the node's journal, so a restarted agent could
    /// not tell it from someone else's: it is not made.
    #[error("cannot record the pause in {dir}: {source}")]
    Journal {
        /// The journal's directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The data plane failed.
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
}

/// What the start-up reap did.
#[derive(Debug, Default)]
pub struct ReapReport {
    /// How many network namespaces were searched.
    pub namespaces: usize,
    /// Everything removed, with the namespace path it was removed from.
    pub removed: Vec<(PathBuf, ReapedItem)>,
    /// Processes Schism had stopped, of pods without a live lease, that were sent SIGCONT.
    pub resumed: Vec<i32>,
    /// Cgroups Schism had frozen, of pods without a live lease, that were thawed.
    pub thawed: Vec<PathBuf>,
    /// What could not be reaped or resumed, for the log.
    pub failures: Vec<String>,
}

/// A fault this agent applied for one lease. A pause is one freeze of the pod's cgroup, or
/// one fault per process where the cgroup cannot be frozen.
struct HeldFault {
    faults: Vec<AppliedFault>,
    mechanism: &'static str,
}

/// Applies and reverts lease faults on this node and remembers which it holds.
pub struct Actuator {
    proc_root: PathBuf,
    cgroup_root: Option<PathBuf>,
    journal: Option<PauseJournal>,
    held: Mutex<HashMap<LeaseKey, HeldFault>>,
}

impl Actuator {
    /// An actuator that finds pods under `proc_root` (the host's `/proc` for a hostPID agent).
    /// It pauses with signals and keeps no journal until told otherwise.
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
            cgroup_root: None,
            journal: None,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Pauses freeze the pod's cgroup, looked up under `cgroup_root` (the host's
    /// `/sys/fs/cgroup`), where it can be found and frozen.
    pub fn with_cgroup_root(mut self, cgroup_root: impl Into<PathBuf>) -> Self {
        self.cgroup_root = Some(cgroup_root.into());
        self
    }

    /// Every pause is recorded in `journal` before it is made, and the start-up reap resumes
    /// only what the journal names.
    pub fn with_journal(mut self, journal: PauseJournal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Where pods' processes are looked up.
    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    /// Reads the proc root now.
    pub fn scan(&self) -> std::io::Result<ProcSnapshot> {
        ProcSnapshot::scan(&self.proc_root)
    }

    /// Whether this actuator holds a fault for the lease (until [`Actuator::revert`], even if
    /// the fault's watchdog already reverted it at the deadline).
    pub fn holds(&self, key: &LeaseKey) -> bool {
        self.lock().contains_key(key)
    }

    /// How the held fault of the lease was made (`nftables`, `netem`, `SIGSTOP`, …).
    pub fn mechanism(&self, key: &LeaseKey) -> Option<&'static str> {
        self.lock().get(key).map(|held| held.mechanism)
    }

    /// The leases whose faults this actuator holds.
    pub fn held_leases(&self) -> Vec<LeaseKey> {
        let mut keys: Vec<LeaseKey> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Applies `plan` to `pod` until `deadline` and returns the mechanism used. A fault
    /// already held for the lease is reverted first, so a lease never has two copies.
    pub fn apply(
        &self,
        key: &LeaseKey,
        plan: &FaultPlan,
        pod: &PodProcesses,
        deadline: Instant,
    ) -> Result<&'static str, ActuatorError> {
        self.revert(key)?;
        let faults = match &plan.fault {
            PlannedFault::Pause => self.pause_pod(key, pod, plan, deadline)?,
            PlannedFault::Partition(spec) => vec![dataplane::apply_partition(
                &self.pod_netns(pod)?,
                &plan.id,
                spec,
                deadline,
            )?],
            PlannedFault::Latency(spec) => vec![dataplane::apply_latency(
                &self.pod_netns(pod)?,
                &plan.id,
                spec,
                deadline,
            )?],
            PlannedFault::Loss(spec) => vec![dataplane::apply_loss(
                &self.pod_netns(pod)?,
                &plan.id,
                spec,
                deadline,
            )?],
            PlannedFault::Bandwidth(spec) => vec![dataplane::apply_bandwidth(
                &self.pod_netns(pod)?,
                &plan.id,
                spec,
                deadline,
            )?],
        };
        let mechanism = faults
            .first()
            .map(|fault| fault.kind().mechanism())
            .unwrap_or("none");
        tracing::info!(lease = %key, pod = %pod.uid, mechanism, "fault applied");
        self.lock()
            .insert(key.clone(), HeldFault { faults, mechanism });
        Ok(mechanism)
    }

    /// Reverts the lease's fault if this actuator holds it; says whether it did. Succeeds when
    /// the watchdog already reverted it at the deadline.
    pub fn revert(&self, key: &LeaseKey) -> Result<bool, DataPlaneError> {
        let Some(held) = self.lock().remove(key) else {
            return Ok(false);
        };
        let mut first_error = None;
        for result in dataplane::heal_all(held.faults) {
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        if first_error.is_none()
            && let Some(journal) = &self.journal
            && let Err(error) = journal.forget(&key.uid)
        {
            // The pause is over; a record left behind makes a later reap look at a cgroup
            // or process that is running, which it leaves alone.
            tracing::warn!(lease = %key, %error, "cannot forget a reverted pause");
        }
        match first_error {
            None => {
                tracing::info!(lease = %key, "fault reverted");
                Ok(true)
            }
            Some(error) => Err(error),
        }
    }

    /// Reverts everything held (agent shutdown); returns what failed.
    pub fn revert_all(&self) -> Vec<(LeaseKey, DataPlaneError)> {
        self.held_leases()
            .into_iter()
            .filter_map(|key| self.revert(&key).err().map(|error| (key, error)))
            .collect()
    }

    /// The start-up reap: removes everything Schism installed in every pod's network
    /// namespace of the snapshot (never the host's, nor one no pod is in), and resumes the
    /// pauses the journal names whose pods' UIDs are not in `live_pods`.
    ///
    /// Faults of live leases are removed too and then applied fresh by the caller, so a
    /// restarted agent never leaves two copies of a fault (nor a qdisc without a watchdog).
    pub fn reap_node(&self, snapshot: &ProcSnapshot, live_pods: &HashSet<String>) -> ReapReport {
        let mut report = ReapReport::default();
        for (_, path) in snapshot.pod_namespaces() {
            report.namespaces += 1;
            match Netns::open(&path).and_then(|netns| reap_netns(&netns)) {
                Ok(removed) => {
                    for item in removed {
                        tracing::info!(netns = %path.display(), %item, "reaped");
                        report.removed.push((path.clone(), item));
                    }
                }
                // A process that exited since the scan took its namespace path with it.
                Err(DataPlaneError::NetnsOpen { .. }) => {}
                Err(error) => report
                    .failures
                    .push(format!("reaping {}: {error}", path.display())),
            }
        }
        self.resume_stale_pauses(live_pods, &mut report);
        report
    }

    /// Resumes the pauses the journal names whose pods have no live lease, and forgets them.
    /// Nothing the journal does not name is resumed: a process or cgroup stopped by someone
    /// else is not Schism's.
    fn resume_stale_pauses(&self, live_pods: &HashSet<String>, report: &mut ReapReport) {
        let Some(journal) = &self.journal else {
            return;
        };
        let records = match journal.records() {
            Ok((records, unreadable)) => {
                report.failures.extend(unreadable);
                records
            }
            Err(error) => {
                report.failures.push(format!(
                    "reading the pause journal {}: {error}",
                    journal.dir().display()
                ));
                return;
            }
        };
        for record in journal::stale(&records, live_pods) {
            match &record.held {
                // Only a cgroup under the node's cgroup root is the agent's to write to.
                HeldPause::Freezer { dir }
                    if !self.cgroup_root.as_deref().is_some_and(|root| {
                        dir.starts_with(root)
                            && !dir
                                .components()
                                .any(|c| c == std::path::Component::ParentDir)
                    }) =>
                {
                    report.failures.push(format!(
                        "the pause of {} names {}, which is not under the cgroup root",
                        record.lease,
                        dir.display()
                    ));
                }
                HeldPause::Freezer { dir } => match Freezer::at(dir) {
                    // Gone with its pod.
                    None => {}
                    Some(freezer) => match freezer.state() {
                        Ok(FreezerState::Thawed) => {}
                        Ok(_) => match freezer.thaw() {
                            Ok(()) => {
                                tracing::info!(lease = %record.lease, cgroup = %dir.display(), "thawed a pod Schism froze");
                                report.thawed.push(dir.clone());
                            }
                            Err(error) => report
                                .failures
                                .push(format!("thawing {}: {error}", dir.display())),
                        },
                        Err(error) => report
                            .failures
                            .push(format!("reading {}: {error}", dir.display())),
                    },
                },
                HeldPause::Processes { processes } => {
                    for stamp in processes {
                        self.resume_if_same(record, *stamp, report);
                    }
                }
            }
            if let Err(error) = journal.forget(&record.lease_uid) {
                report
                    .failures
                    .push(format!("forgetting the pause of {}: {error}", record.lease));
            }
        }
    }

    /// Sends SIGCONT to a process Schism stopped if it is still that process (same start
    /// time) and still stopped.
    fn resume_if_same(&self, record: &PauseRecord, stamp: ProcessStamp, report: &mut ReapReport) {
        let Some((state, started)) = self.stamp_now(stamp.pid) else {
            return;
        };
        if started != stamp.start_time || state != 'T' {
            return;
        }
        // SAFETY: plain syscall; the pid is a process Schism stopped, checked just above.
        if unsafe { libc::kill(stamp.pid, libc::SIGCONT) } == 0 {
            tracing::info!(pid = stamp.pid, lease = %record.lease, "resumed a process Schism stopped");
            report.resumed.push(stamp.pid);
        } else {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ESRCH) {
                report.failures.push(format!(
                    "SIGCONT to process {} of pod {}: {error}",
                    stamp.pid, record.pod_uid
                ));
            }
        }
    }

    /// The state letter and start time of a process, read under the proc root.
    fn stamp_now(&self, pid: i32) -> Option<(char, u64)> {
        let stat =
            std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("stat")).ok()?;
        Some((process_state(&stat)?, start_time(&stat)?))
    }

    /// Pauses the pod: freezes its cgroup where it can be found, else SIGSTOPs each of its
    /// processes (never the agent itself). The pause is journalled first.
    fn pause_pod(
        &self,
        key: &LeaseKey,
        pod: &PodProcesses,
        plan: &FaultPlan,
        deadline: Instant,
    ) -> Result<Vec<AppliedFault>, ActuatorError> {
        let own_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        // A pod the agent is in is never frozen whole: the agent would freeze itself.
        let freezer = self
            .cgroup_root
            .as_deref()
            .filter(|_| !pod.pids.contains(&own_pid))
            .and_then(|root| self.pod_freezer(root, pod));
        let pids: Vec<i32> = pod.pids.iter().copied().filter(|&p| p != own_pid).collect();
        let held = match &freezer {
            Some(freezer) => HeldPause::Freezer {
                dir: freezer.dir().to_path_buf(),
            },
            None => HeldPause::Processes {
                processes: pids
                    .iter()
                    .filter_map(|&pid| {
                        let (_, start_time) = self.stamp_now(pid)?;
                        Some(ProcessStamp { pid, start_time })
                    })
                    .collect(),
            },
        };
        if let Some(journal) = &self.journal {
            let record = PauseRecord {
                lease: key.to_string(),
                lease_uid: key.uid.clone(),
                pod_uid: pod.uid.clone(),
                held,
            };
            journal
                .record(&record)
                .map_err(|source| ActuatorError::Journal {
                    dir: journal.dir().to_path_buf(),
                    source,
                })?;
        }
        let paused = match &freezer {
            Some(freezer) => dataplane::freeze_cgroup(freezer, &plan.id, deadline)
                .map(|fault| vec![fault])
                .map_err(ActuatorError::from),
            None => signal_pause(&pod.uid, &pids, plan, deadline),
        };
        if paused.is_err()
            && let Some(journal) = &self.journal
        {
            let _ = journal.forget(&key.uid);
        }
        paused
    }

    /// The freezer of the pod's cgroup, from the cgroup file of its first process that names
    /// one that exists.
    fn pod_freezer(&self, cgroup_root: &Path, pod: &PodProcesses) -> Option<Freezer> {
        pod.pids.iter().find_map(|pid| {
            let file = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("cgroup"))
                .ok()?;
            locate_freezer(cgroup_root, &pod_cgroups(&file, &pod.uid))
        })
    }

    /// Opens the pod's network namespace, refusing the node's own.
    fn pod_netns(&self, pod: &PodProcesses) -> Result<Netns, ActuatorError> {
        let found = pod.netns.as_ref().ok_or_else(|| ActuatorError::NoNetns {
            uid: pod.uid.clone(),
            proc_root: self.proc_root.clone(),
        })?;
        let agent_netns = NamespaceId::of(Path::new("/proc/thread-self/ns/net")).ok();
        if found.is_host || agent_netns == Some(found.id) {
            return Err(ActuatorError::HostNetwork {
                uid: pod.uid.clone(),
            });
        }
        let netns = Netns::open(&found.path)?;
        // The path names a process, whose PID may have been reused by a host process since
        // the scan: act only if what was opened is the namespace the scan found.
        if netns.inode()? != found.id.inode {
            return Err(ActuatorError::NamespaceChanged {
                uid: pod.uid.clone(),
            });
        }
        Ok(netns)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseKey, HeldFault>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// SIGSTOPs each of `pids`, each with its own SIGCONT at the deadline. Processes that exited
/// since the scan are skipped.
fn signal_pause(
    uid: &str,
    pids: &[i32],
    plan: &FaultPlan,
    deadline: Instant,
) -> Result<Vec<AppliedFault>, ActuatorError> {
    let mut paused = Vec::new();
    for &pid in pids {
        match dataplane::pause_process(ProcessTarget::Pid(pid), &plan.id, deadline) {
            Ok(fault) => paused.push(fault),
            Err(DataPlaneError::Signal { source, .. })
                if source.raw_os_error() == Some(libc::ESRCH) => {}
            Err(error) => {
                dataplane::heal_all(paused);
                return Err(error.into());
            }
        }
    }
    if paused.is_empty() {
        return Err(ActuatorError::NoProcess {
            uid: uid.to_owned(),
        });
    }
    Ok(paused)
}
