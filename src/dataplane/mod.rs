//! The fault data plane: how a fault is made real inside one network namespace.
//!
//! Everything here works on a namespace named by a path (`/run/netns/NAME` for the local
//! backend, `/proc/PID/ns/net` for a pod), so the local cluster and the Kubernetes node agent
//! share one code path. This module imports nothing else of Schism's.
//!
//! Safety model (ARCHITECTURE.md §4):
//! * every rule lives somewhere Schism owns and can find again: an nftables table named
//!   `inet schism_<faultid>`, a root qdisc with handle [`QDISC_HANDLE`], an iptables rule whose
//!   comment starts with [`RULE_COMMENT_PREFIX`];
//! * every applied fault has a deadline: partition and loss rules sit behind nftables set
//!   elements with a kernel `timeout`, so they expire even if Schism is killed; NFQUEUE rules use
//!   `--queue-bypass`, so traffic passes when the delay loop dies; every [`AppliedFault`] also has
//!   a watchdog thread that reverts at the deadline even if its owner is stuck;
//! * every fault also has a [`Guard`]: a process forked before the fault is applied that
//!   undoes it when its owner dies, or past the deadline if the owner has not (see `guard`
//!   for why this design). For what the kernel cannot time out (qdiscs, NFQUEUE rules,
//!   stopped processes, frozen cgroups) it is the only dead-man; for partitions and loss it
//!   removes the table the kernel's timeouts would leave empty;
//! * [`reap_netns`] removes everything Schism-owned in a namespace and says what it removed.
//!
//! Tools (`nft`, `tc`, `iptables`, `ip`) run as child processes entered into the target
//! namespace with `setns` before `exec`.

mod fault;
mod freezer;
mod guard;
mod latency;
mod netns;
mod nft;
mod process;
mod qdisc;
mod reaper;
mod tools;

use std::path::PathBuf;

pub use fault::{AppliedFault, FaultId, FaultKind, heal_all};
pub use freezer::{Freezer, FreezerState, FreezerVersion, freeze_cgroup};
pub use guard::{Guard, UndoStep};
pub use latency::{LatencyBackend, LatencySpec, apply_latency};
pub use netns::Netns;
pub use nft::{LossSpec, PartitionSpec, apply_loss, apply_partition, apply_partitions};
pub use process::{ProcessTarget, kill_process, pause_process};
pub use qdisc::{BandwidthSpec, Rate, apply_bandwidth};
pub use reaper::{ReapedItem, reap_netns};
pub use tools::{Tool, require_root, require_tools};

/// Handle of every root qdisc Schism installs (`5c15:`), so the reaper can tell them apart
/// from qdiscs someone else configured.
pub const QDISC_HANDLE: &str = "5c15:";

/// Prefix of the comment on every iptables rule Schism installs (`schism:<faultid>`).
pub const RULE_COMMENT_PREFIX: &str = "schism:";

/// Prefix of every nftables table Schism owns (`inet schism_<faultid>`).
pub const TABLE_PREFIX: &str = "schism_";

/// Why a data-plane operation failed, phrased for the person running Schism.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// A required command-line tool is not installed.
    #[error("`{tool}` was not found in PATH or /usr/sbin, /sbin: install the `{package}` package")]
    ToolMissing {
        /// The program name.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The process lacks the privileges to change network or process state.
    #[error("{action} needs root (CAP_NET_ADMIN/CAP_SYS_ADMIN); run Schism as root")]
    NotRoot {
        /// What was being attempted.
        action: &'static str,
    },
    /// The namespace path could not be opened.
    #[error("cannot open network namespace {path}: {source}")]
    NetnsOpen {
        /// The namespace path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `setns` into the namespace failed.
    #[error("cannot enter network namespace {path}: {source}")]
    NetnsEnter {
        /// The namespace path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tool ran but reported failure.
    #[error("`{command}` in {netns} failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line, for the reader.
        command: String,
        /// The namespace it ran in.
        netns: String,
        /// Exit status.
        status: String,
        /// What the tool printed on stderr.
        stderr: String,
    },
    /// The fault description is not valid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which input.
        what: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A signal could not be delivered to a process.
    #[error("cannot send {signal} to {target}: {source}")]
    Signal {
        /// Signal name.
        signal: &'static str,
        /// Target description.
        target: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The NFQUEUE delay loop could not be set up.
    #[error("NFQUEUE delay loop in {netns}: {reason}")]
    DelayQueue {
        /// The namespace.
        netns: String,
        /// What went wrong.
        reason: String,
    },
    /// A cgroup's freezer could not be set or did not settle.
    #[error("cgroup freezer {path}: {reason}")]
    Freezer {
        /// The control file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A helper thread panicked.
    #[error("internal {0} thread panicked")]
    ThreadPanicked(&'static str),
    /// Any other I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
