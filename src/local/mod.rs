//! The local backend of `schism run`: a cluster of processes, each in its own network
//! namespace on a bridge that lives in a namespace of its own (nothing is added to the root
//! namespace), with faults applied through [`crate::dataplane`].
//!
//! Namespaces of a run: `sx-<runid>-br` (the bridge), `sx-<runid>-n1…` (nodes, interface
//! `eth0`), `sx-<runid>-client` (where workload clients and probes connect from; it reaches
//! every node and is never partitioned). A run writes what it will create to
//! `/run/schism/<runid>/run.json` *before* creating it; [`cleanup_crashed_runs`] uses these
//! records to remove the remains of runs whose owner died.

mod backend;
mod cluster;
mod deadman;
mod identity;
mod node_cgroups;
mod record;
mod roles;
mod subnet;
mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use backend::LocalBackend;
pub use cluster::{LocalCluster, LocalNode, TeardownHandle};
pub use record::{CleanupReport, RUNS_DIR, RunCleanup, RunRecord, cleanup_crashed_runs};
pub use roles::NodeRole;
pub use subnet::Ipv4Subnet;
pub use template::ClusterState;

use crate::dataplane::DataPlaneError;

/// How to tell that a node is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyCheck {
    /// A TCP connection to the node's IP and this port succeeds.
    Tcp {
        /// The port.
        port: u16,
    },
    /// `GET path` on the node's IP and this port answers with a 2xx status.
    Http {
        /// The port.
        port: u16,
        /// The request path, starting with `/`.
        path: String,
    },
}

/// Everything needed to build a local cluster (API `spec.target.local`, already validated).
#[derive(Clone, Debug)]
pub struct LocalClusterConfig {
    /// Number of nodes, 1–32.
    pub nodes: usize,
    /// Command template with `{name}`, `{index}`, `{ip}`, `{dataDir}`, `{peers}`,
    /// `{clusterState}`; run with `sh -c`.
    pub command: String,
    /// How each peer is rendered into `{peers}`.
    pub peer_format: String,
    /// What joins the rendered peers.
    pub peer_separator: String,
    /// Command template for restarts after a kill; `command` when `None`.
    pub restart_command: Option<String>,
    /// The readiness check.
    pub ready: ReadyCheck,
    /// How long a node may take to become ready.
    pub ready_timeout: Duration,
    /// How long a killed node stays down in [`LocalCluster::kill_and_restart`].
    pub restart_delay: Duration,
    /// The subnet; chosen per run from `10.231.X.0/24` when `None`.
    pub subnet: Option<Ipv4Subnet>,
    /// Extra environment for every node.
    pub env: BTreeMap<String, String>,
    /// Where logs and data directories go; `/tmp/schism-<runid>` when `None`. Logs are kept
    /// after teardown, data directories are deleted.
    pub work_dir: Option<PathBuf>,
    /// Run every node's processes (init step included) as this user, who owns the node's
    /// `{dataDir}`; `None`: as the runner (root).
    pub user: Option<String>,
    /// A command template run once per node, to its end, before the node first starts
    /// (`initdb -D {dataDir}/pg`, say); placeholders as in `command`.
    pub init: Option<String>,
    /// Nodes with commands of their own, started after the others.
    pub roles: Vec<NodeRole>,
}

impl LocalClusterConfig {
    /// A configuration with the API's defaults: peers as `{name}={ip}` joined by `,`, 30 s
    /// readiness timeout, 1 s restart delay, automatic subnet, no extra environment.
    pub fn new(nodes: usize, command: impl Into<String>, ready: ReadyCheck) -> Self {
        Self {
            nodes,
            command: command.into(),
            peer_format: "{name}={ip}".into(),
            peer_separator: ",".into(),
            restart_command: None,
            ready,
            ready_timeout: Duration::from_secs(30),
            restart_delay: Duration::from_secs(1),
            subnet: None,
            env: BTreeMap::new(),
            work_dir: None,
            user: None,
            init: None,
            roles: Vec::new(),
        }
    }
}

/// Why the local cluster could not be built or driven.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Not root, a tool missing, a rule that failed.
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
    /// The configuration is unusable.
    #[error("invalid local cluster configuration: {0}")]
    Config(String),
    /// A node process exited while the cluster expected it to run.
    #[error("node {node} exited during startup ({status}); last lines of {log}:\n{tail}")]
    NodeExited {
        /// Node name.
        node: String,
        /// Exit status.
        status: String,
        /// Log path.
        log: PathBuf,
        /// Last lines of the log.
        tail: String,
    },
    /// A node never passed its readiness check.
    #[error("node {node} was not ready after {timeout:?} ({check}); last lines of {log}:\n{tail}")]
    NotReady {
        /// Node name.
        node: String,
        /// The configured timeout.
        timeout: Duration,
        /// The check, described.
        check: String,
        /// Log path.
        log: PathBuf,
        /// Last lines of the log.
        tail: String,
    },
    /// The node command could not be started.
    #[error("cannot start node {node}: {source}")]
    Spawn {
        /// Node name.
        node: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No free subnet in 10.231.0.0/16.
    #[error("no free 10.231.X.0/24 subnet for this run; set `subnet` or run `schism cleanup`")]
    NoFreeSubnet,
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A node index out of range or a node in the wrong state.
    #[error("{0}")]
    Node(String),
    /// The cluster was already torn down.
    #[error("the local cluster has been torn down")]
    TornDown,
}

impl LocalError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        LocalError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
