//! Building, driving and tearing down a local cluster.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::dataplane::{
    self, AppliedFault, BandwidthSpec, FaultId, LatencySpec, LossSpec, Netns, PartitionSpec,
    ProcessTarget, Rate, Tool,
};
use crate::faultplan::PartitionPlan;

use super::deadman;
use super::identity::RunAs;
use super::node_cgroups::{NodeCgroups, remove_node_cgroups};
use super::record::{
    NETNS_PREFIX, RunRecord, RunsLock, cleanup_crashed_runs, remove_run_resources, subnets_in_use,
};
use super::subnet::{Ipv4Subnet, choose_free_subnet};
use super::template::{ClusterState, NodeValues, render_command, shell_text};
use super::{LocalClusterConfig, LocalError, ReadyCheck};

/// One node of the cluster. Indices in the cluster's API are 0-based (as in
/// [`crate::faultplan`]); names and `{index}` are 1-based (`n1` is index 0).
#[derive(Clone, Debug)]
pub struct LocalNode {
    /// `n1`, `n2`, …
    pub name: String,
    /// The node's address on the cluster bridge.
    pub ip: Ipv4Addr,
    /// The namespace name under `/run/netns`.
    pub netns_name: String,
    /// The open namespace, for data-plane faults.
    pub netns: Netns,
    /// Where the node's stdout and stderr go (kept after teardown).
    pub log_path: PathBuf,
    /// The node's `{dataDir}` (deleted at teardown).
    pub data_dir: PathBuf,
}

/// A running node process: the child, leader of its own process group.
struct NodeProcess {
    child: Option<Child>,
}

/// Spawns node processes from one long-lived thread: `PR_SET_PDEATHSIG` fires when the
/// *thread* that forked a child exits, so children must never be forked from pool threads
/// that come and go.
struct Spawner {
    requests: mpsc::Sender<(Command, mpsc::Sender<std::io::Result<Child>>)>,
    thread: JoinHandle<()>,
}

impl Spawner {
    fn start() -> std::io::Result<Self> {
        let (requests, incoming) =
            mpsc::channel::<(Command, mpsc::Sender<std::io::Result<Child>>)>();
        let thread = std::thread::Builder::new()
            .name("schism-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })?;
        Ok(Self { requests, thread })
    }

    fn spawn(&self, command: Command) -> std::io::Result<Child> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .send((command, reply))
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
        answer
            .recv()
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?
    }
}

struct Inner {
    run_id: String,
    config: LocalClusterConfig,
    /// The user the nodes' processes run as, if not root.
    run_as: Option<RunAs>,
    subnet: Ipv4Subnet,
    nodes: Vec<LocalNode>,
    client_netns: Option<Netns>,
    client_ip: Ipv4Addr,
    namespaces: Vec<String>,
    data_dirs: Vec<PathBuf>,
    /// A cgroup per node, where the machine allows it.
    cgroups: Option<NodeCgroups>,
    work_dir: PathBuf,
    processes: Vec<Mutex<NodeProcess>>,
    spawner: Mutex<Option<Spawner>>,
    /// Removes the run if this process dies (see `deadman`).
    run_guard: Mutex<Option<dataplane::Guard>>,
    torn_down: AtomicBool,
}

/// A local cluster of processes in network namespaces. Dropping it tears everything down
/// (also during a panic); use [`LocalCluster::spawn_teardown_on_signal`] for Ctrl-C.
pub struct LocalCluster {
    inner: Arc<Inner>,
}

/// A cloneable handle that tears the cluster down from anywhere (a signal handler, another
/// task). Tearing down twice is harmless.
#[derive(Clone)]
pub struct TeardownHandle {
    inner: Arc<Inner>,
}

impl TeardownHandle {
    /// Kills every node, deletes the namespaces (and with them every rule), the data
    /// directories and the run record. Returns what was removed.
    pub fn teardown(&self) -> Vec<String> {
        self.inner.teardown()
    }
}

fn new_run_id() -> String {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(clock ^ (u64::from(std::process::id()) << 32));
    loop {
        let id = format!("{:06x}", rng.random_range(0..0x100_0000u32));
        if !Path::new(super::RUNS_DIR).join(&id).exists() {
            return id;
        }
    }
}

fn validate(config: &LocalClusterConfig) -> Result<(), LocalError> {
    if !(1..=32).contains(&config.nodes) {
        return Err(LocalError::Config(format!(
            "nodes is {}, must be 1 to 32",
            config.nodes
        )));
    }
    if config.command.trim().is_empty() {
        return Err(LocalError::Config("command is empty".into()));
    }
    if let ReadyCheck::Http { path, .. } = &config.ready
        && !path.starts_with('/')
    {
        return Err(LocalError::Config(format!(
            "ready.http.path {path:?} must start with '/'"
        )));
    }
    if config.ready_timeout.is_zero() {
        return Err(LocalError::Config("readyTimeout must be > 0".into()));
    }
    Ok(())
}

fn ip_command(args: &[&str]) -> Result<(), LocalError> {
    let ip = Tool::Ip.locate()?;
    let output = Command::new(ip)
        .args(args)
        .output()
        .map_err(|e| LocalError::io("running", Path::new("ip"), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(LocalError::DataPlane(
        dataplane::DataPlaneError::ToolFailed {
            command: format!("ip {}", args.join(" ")),
            netns: "the root namespace".into(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        },
    ))
}

/// Creates a namespace with `eth0` on the bridge (bridge port `port`) and `address`.
fn add_member_namespace(
    bridge: &str,
    name: &str,
    port: &str,
    address: Ipv4Addr,
    prefix: u8,
) -> Result<(), LocalError> {
    ip_command(&["netns", "add", name])?;
    // Both ends are created directly inside their namespaces: nothing appears in the root
    // namespace, not even for a moment.
    ip_command(&[
        "link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", port, "netns", bridge,
    ])?;
    ip_command(&["-n", bridge, "link", "set", port, "master", "br0", "up"])?;
    ip_command(&[
        "-n",
        name,
        "addr",
        "add",
        &format!("{address}/{prefix}"),
        "dev",
        "eth0",
    ])?;
    ip_command(&["-n", name, "link", "set", "eth0", "up"])?;
    ip_command(&["-n", name, "link", "set", "lo", "up"])
}

/// Waits for a node's init step (`initdb`, say) to end; a failure names the node and shows
/// its log.
fn finish_init(node: &LocalNode, mut child: Child) -> Result<(), LocalError> {
    let status = child
        .wait()
        .map_err(|e| LocalError::io("waiting for the init step of", &node.log_path, e))?;
    if status.success() {
        return Ok(());
    }
    Err(LocalError::NodeExited {
        node: format!("{} (its init step)", node.name),
        status: status.to_string(),
        log: node.log_path.clone(),
        tail: log_tail(&node.log_path, 20),
    })
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.is_empty() {
        "(log is empty)".into()
    } else {
        tail
    }
}

/// One readiness probe, run on a fresh thread inside the client namespace.
fn probe_once(client: &Netns, address: SocketAddr, check: &ReadyCheck) -> bool {
    let check = check.clone();
    client
        .run_in(move || -> bool {
            let timeout = Duration::from_millis(500);
            let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
                return false;
            };
            let ReadyCheck::Http { path, .. } = check else {
                return true;
            };
            let _ = stream.set_read_timeout(Some(timeout));
            let _ = stream.set_write_timeout(Some(timeout));
            let request =
                format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_err() {
                return false;
            }
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
        })
        .unwrap_or(false)
}

impl LocalCluster {
    /// Builds the namespaces, starts every node and waits until all pass the readiness check.
    /// On any failure everything already created is torn down before the error is returned.
    /// Remains of crashed runs are cleaned up first.
    pub async fn start(config: LocalClusterConfig) -> Result<Self, LocalError> {
        validate(&config)?;
        dataplane::require_root("building a local cluster")?;
        dataplane::require_tools(&[
            Tool::Ip,
            Tool::Nft,
            Tool::Tc,
            Tool::Iptables,
            Tool::IptablesRestore,
        ])?;
        let report = tokio::task::spawn_blocking(cleanup_crashed_runs)
            .await
            .map_err(|_| LocalError::Node("cleanup task panicked".into()))??;
        if !report.is_empty() {
            tracing::info!("cleaned up crashed runs:\n{report}");
        }
        let cluster = tokio::task::spawn_blocking(move || Self::create(config))
            .await
            .map_err(|_| LocalError::Node("cluster setup task panicked".into()))??;
        // Stage by stage (nodes without a role, then each role's): a replica's init step
        // may copy a primary that must be up already.
        for stage in cluster.inner.config.stages() {
            cluster.start_stage(&stage).await?;
        }
        Ok(cluster)
    }

    /// Initialises, starts and waits for the nodes of one stage.
    async fn start_stage(&self, stage: &[usize]) -> Result<(), LocalError> {
        // Every init step of the stage at once; each is waited for off the runtime's threads.
        let mut waits = Vec::new();
        for &node in stage {
            let Some(init) = self.inner.config.init_template(node).map(str::to_owned) else {
                continue;
            };
            let this = self.node(node)?.clone();
            let child = self.spawn_step(node, &init, "initializing")?;
            waits.push(tokio::task::spawn_blocking(move || {
                finish_init(&this, child)
            }));
        }
        for wait in waits {
            wait.await
                .map_err(|_| LocalError::Node("init task panicked".into()))??;
        }
        for &node in stage {
            self.start_node_process(node, ClusterState::New)?;
        }
        try_join_all(stage.iter().map(|&node| self.wait_ready(node)).collect()).await?;
        Ok(())
    }

    /// Records, then creates, the run's namespaces and directories (blocking).
    fn create(config: LocalClusterConfig) -> Result<Self, LocalError> {
        let run_as = config.user.as_deref().map(RunAs::resolve).transpose()?;
        let run_id = new_run_id();
        let lock = RunsLock::acquire()?;
        let subnet = match config.subnet {
            Some(subnet) => subnet,
            None => choose_free_subnet(&subnets_in_use()).ok_or(LocalError::NoFreeSubnet)?,
        };
        let prefix = format!("{NETNS_PREFIX}{run_id}");
        let bridge = format!("{prefix}-br");
        let client = format!("{prefix}-client");
        let node_names: Vec<String> = (1..=config.nodes).map(|i| format!("n{i}")).collect();
        let work_dir = config
            .work_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/schism-{run_id}")));
        let mut namespaces = vec![bridge.clone(), client.clone()];
        namespaces.extend(node_names.iter().map(|name| format!("{prefix}-{name}")));
        let data_dirs: Vec<PathBuf> = node_names
            .iter()
            .map(|name| work_dir.join(name).join("data"))
            .collect();
        // Made under the lock, with the record, so cleanup never sees one without the other.
        let cgroups = NodeCgroups::create(&run_id, &node_names);
        let record = RunRecord {
            run_id: run_id.clone(),
            owner_pid: std::process::id(),
            owner_start_ticks: super::record::process_start_ticks(std::process::id()).unwrap_or(0),
            subnet,
            namespaces: namespaces.clone(),
            data_dirs: data_dirs.clone(),
            cgroup_dir: cgroups.as_ref().map(|c| c.run_dir().to_path_buf()),
        };
        if let Err(error) = record.write() {
            if let Some(cgroups) = &cgroups {
                remove_node_cgroups(&cgroups.dirs());
            }
            return Err(error);
        }
        drop(lock);

        let processes = (0..config.nodes)
            .map(|_| Mutex::new(NodeProcess { child: None }))
            .collect();
        // From here on, dropping `partial` removes whatever exists of the run.
        let mut partial = Inner {
            run_id,
            subnet,
            nodes: Vec::new(),
            client_netns: None,
            client_ip: subnet.client_address(),
            namespaces,
            data_dirs,
            cgroups,
            work_dir: work_dir.clone(),
            processes,
            spawner: Mutex::new(None),
            run_guard: Mutex::new(None),
            torn_down: AtomicBool::new(false),
            config,
            run_as,
        };
        // Armed before the first namespace exists: from here on a dead owner leaves nothing.
        let guard = deadman::arm(&partial.holdings()).map_err(|e| partial.fail(e))?;
        *partial.run_guard.lock().expect("fresh mutex") = Some(guard);
        ip_command(&["netns", "add", &bridge]).map_err(|e| partial.fail(e))?;
        ip_command(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])
            .map_err(|e| partial.fail(e))?;
        ip_command(&["-n", &bridge, "link", "set", "br0", "up"]).map_err(|e| partial.fail(e))?;
        add_member_namespace(&bridge, &client, "vc", partial.client_ip, subnet.prefix())
            .map_err(|e| partial.fail(e))?;
        partial.client_netns =
            Some(Netns::open(format!("/run/netns/{client}")).map_err(|e| partial.fail(e.into()))?);
        for (index, name) in node_names.iter().enumerate() {
            let netns_name = format!("{prefix}-{name}");
            let ip = subnet.node_address(index + 1);
            add_member_namespace(
                &bridge,
                &netns_name,
                &format!("v{}", index + 1),
                ip,
                subnet.prefix(),
            )
            .map_err(|e| partial.fail(e))?;
            let netns = Netns::open(format!("/run/netns/{netns_name}"))
                .map_err(|e| partial.fail(e.into()))?;
            let data_dir = partial.data_dirs[index].clone();
            std::fs::create_dir_all(&data_dir)
                .map_err(|e| partial.fail(LocalError::io("creating", &data_dir, e)))?;
            if let Some(user) = &partial.run_as {
                user.chown(&data_dir).map_err(|e| partial.fail(e))?;
            }
            partial.nodes.push(LocalNode {
                name: name.clone(),
                ip,
                netns_name,
                netns,
                log_path: work_dir.join(format!("{name}.log")),
                data_dir,
            });
        }
        let spawner = Spawner::start().map_err(|e| {
            partial.fail(LocalError::io("starting", Path::new("spawner thread"), e))
        })?;
        *partial.spawner.lock().expect("fresh mutex") = Some(spawner);
        Ok(Self {
            inner: Arc::new(partial),
        })
    }

    /// The run id (part of every namespace name).
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The run's subnet.
    pub fn subnet(&self) -> Ipv4Subnet {
        self.inner.subnet
    }

    /// The nodes, index 0 = `n1`.
    pub fn nodes(&self) -> &[LocalNode] {
        &self.inner.nodes
    }

    /// The directory with logs (and data directories while the run lives).
    pub fn work_dir(&self) -> &Path {
        &self.inner.work_dir
    }

    /// The namespace workload clients and probes must connect from: sockets created by a
    /// thread inside it reach every node (see [`Netns::enter_current_thread`], e.g. in a tokio
    /// runtime's `on_thread_start`). It is never partitioned.
    pub fn client_netns(&self) -> &Netns {
        self.inner
            .client_netns
            .as_ref()
            .expect("set during creation")
    }

    /// The client namespace's address.
    pub fn client_ip(&self) -> Ipv4Addr {
        self.inner.client_ip
    }

    /// A handle for signal handlers and other tasks.
    pub fn teardown_handle(&self) -> TeardownHandle {
        TeardownHandle {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Tears the cluster down on SIGINT, SIGTERM or SIGHUP, then exits the process with
    /// 128 + the signal number. Must be called inside a tokio runtime.
    pub fn spawn_teardown_on_signal(&self) -> tokio::task::JoinHandle<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let handle = self.teardown_handle();
        tokio::spawn(async move {
            let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::warn!(
                    "cannot install signal handlers; teardown relies on Drop and cleanup"
                );
                return;
            };
            let code = tokio::select! {
                _ = interrupt.recv() => 128 + libc::SIGINT,
                _ = terminate.recv() => 128 + libc::SIGTERM,
                _ = hangup.recv() => 128 + libc::SIGHUP,
            };
            eprintln!(
                "signal received: tearing down local cluster {}",
                handle.inner.run_id
            );
            let removed = tokio::task::spawn_blocking(move || handle.teardown()).await;
            if let Ok(removed) = removed {
                tracing::info!(?removed, "torn down after signal");
            }
            std::process::exit(code);
        })
    }

    fn node(&self, node: usize) -> Result<&LocalNode, LocalError> {
        self.inner.nodes.get(node).ok_or_else(|| {
            LocalError::Node(format!(
                "node index {node} is out of range (0..{})",
                self.inner.nodes.len()
            ))
        })
    }

    fn check_alive(&self) -> Result<(), LocalError> {
        if self.inner.torn_down.load(Ordering::SeqCst) {
            Err(LocalError::TornDown)
        } else {
            Ok(())
        }
    }

    /// Starts node `node`'s process (it must not be running).
    fn start_node_process(&self, node: usize, state: ClusterState) -> Result<(), LocalError> {
        self.check_alive()?;
        let inner = &self.inner;
        let this = self.node(node)?;
        let mut process = inner.processes[node]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if process.child.is_some() {
            return Err(LocalError::Node(format!(
                "node {} is already running",
                this.name
            )));
        }
        let template = inner.config.start_template(node, state);
        let command = self.node_command(node, template, state, "starting")?;
        let spawner = inner.spawner.lock().unwrap_or_else(|p| p.into_inner());
        let spawner = spawner.as_ref().ok_or(LocalError::TornDown)?;
        let child = spawner.spawn(command).map_err(|source| LocalError::Spawn {
            node: this.name.clone(),
            source,
        })?;
        process.child = Some(child);
        drop((spawner, process));
        inner.rearm();
        Ok(())
    }

    /// Spawns `template` for node `node` (its init step), not waiting for it.
    fn spawn_step(&self, node: usize, template: &str, doing: &str) -> Result<Child, LocalError> {
        self.check_alive()?;
        let this = self.node(node)?;
        let command = self.node_command(node, template, ClusterState::New, doing)?;
        let spawner = self.inner.spawner.lock().unwrap_or_else(|p| p.into_inner());
        let spawner = spawner.as_ref().ok_or(LocalError::TornDown)?;
        spawner.spawn(command).map_err(|source| LocalError::Spawn {
            node: this.name.clone(),
            source,
        })
    }

    /// The command that runs `template` for node `node`: through `sh -c` in the node's
    /// namespace, as its user, logging to its log, dying with the runner.
    fn node_command(
        &self,
        node: usize,
        template: &str,
        state: ClusterState,
        doing: &str,
    ) -> Result<Command, LocalError> {
        let inner = &self.inner;
        let this = self.node(node)?;
        let data_dirs: Vec<String> = inner
            .data_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let values: Vec<NodeValues<'_>> = inner
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeValues {
                name: &n.name,
                index: i + 1,
                ip: n.ip,
                data_dir: &data_dirs[i],
            })
            .collect();
        let config = &inner.config;
        let text = render_command(
            template,
            &config.peer_format,
            &config.peer_separator,
            &values[node],
            &values,
            state,
        );
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&this.log_path)
            .map_err(|e| LocalError::io("opening", &this.log_path, e))?;
        let _ = writeln!(log, "=== schism: {doing} {} ({state:?}): {text}", this.name);
        let stderr = log
            .try_clone()
            .map_err(|e| LocalError::io("opening", &this.log_path, e))?;
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(shell_text(&text))
            .envs(&config.env)
            .current_dir(this.data_dir.parent().unwrap_or(&this.data_dir))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0);
        this.netns.enter_in_child(&mut command);
        if let Some(cgroups) = &inner.cgroups {
            cgroups.join_in_child(node, &mut command)?;
        }
        if let Some(user) = &inner.run_as {
            // Before the parent-death signal: changing credentials clears it.
            user.apply(&mut command);
            command.env("USER", &user.name).env("LOGNAME", &user.name);
        }
        let runner = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                // The node dies with the runner even on SIGKILL of the runner.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != runner {
                    return Err(std::io::Error::other(
                        "runner exited while starting the node",
                    ));
                }
                Ok(())
            });
        }
        Ok(command)
    }

    /// Waits until node `node` passes the readiness check; fails with the log's tail if the
    /// process exits or the timeout passes.
    pub async fn wait_ready(&self, node: usize) -> Result<(), LocalError> {
        let this = self.node(node)?.clone();
        let check = self.inner.config.ready.clone();
        let timeout = self.inner.config.ready_timeout;
        let port = match &check {
            ReadyCheck::Tcp { port } | ReadyCheck::Http { port, .. } => *port,
        };
        let address = SocketAddr::from((this.ip, port));
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let exited = {
                let mut process = self.inner.processes[node]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match process.child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => {
                        process.child = None;
                        Some(status.to_string())
                    }
                    None => Some("not running".to_string()),
                    _ => None,
                }
            };
            if let Some(status) = exited {
                return Err(LocalError::NodeExited {
                    node: this.name.clone(),
                    status,
                    log: this.log_path.clone(),
                    tail: log_tail(&this.log_path, 20),
                });
            }
            let client = self.client_netns().clone();
            let probe_check = check.clone();
            let ready =
                tokio::task::spawn_blocking(move || probe_once(&client, address, &probe_check))
                    .await
                    .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let check = match &check {
                    ReadyCheck::Tcp { port } => format!("tcp {}:{port}", this.ip),
                    ReadyCheck::Http { port, path } => format!("http://{}:{port}{path}", this.ip),
                };
                return Err(LocalError::NotReady {
                    node: this.name.clone(),
                    timeout,
                    check,
                    log: this.log_path.clone(),
                    tail: log_tail(&this.log_path, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pid of node `node`'s process (also its process group), if it runs.
    pub fn node_pid(&self, node: usize) -> Option<u32> {
        let process = self
            .inner
            .processes
            .get(node)?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        process.child.as_ref().map(Child::id)
    }

    /// SIGKILLs node `node`'s process group and waits for the process to be gone.
    pub async fn kill_node(&self, node: usize) -> Result<(), LocalError> {
        self.check_alive()?;
        let name = self.node(node)?.name.clone();
        let child = self.inner.processes[node]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .child
            .take();
        let Some(mut child) = child else {
            return Err(LocalError::Node(format!("node {name} is not running")));
        };
        let group = ProcessTarget::Group(child.id() as i32);
        if let Err(error) = dataplane::kill_process(group) {
            tracing::debug!(%error, node = %name, "kill of an already exited node");
        }
        if let Some(freezer) = self.inner.cgroups.as_ref().and_then(|c| c.freezer(node)) {
            // Killed first, then thawed: a frozen node (v1) takes its SIGKILL as it thaws,
            // before it runs again, and the restarted node is not born frozen (a pause in
            // force is taken up again once it is ready, as for a recreated pod).
            if let Err(error) = freezer.thaw() {
                tracing::warn!(%error, node = %name, "cannot thaw a killed node's cgroup");
            }
        }
        self.inner.rearm();
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .map_err(|_| LocalError::Node("wait task panicked".into()))?
            .map_err(|source| LocalError::Spawn { node: name, source })?;
        Ok(())
    }

    /// Starts a stopped node again with `{clusterState}` = `existing` and waits until ready.
    pub async fn restart_node(&self, node: usize) -> Result<(), LocalError> {
        self.start_node_process(node, ClusterState::Existing)?;
        self.wait_ready(node).await
    }

    /// Kills node `node`, keeps it down for the configured restart delay, restarts it and
    /// waits until it is ready.
    pub async fn kill_and_restart(&self, node: usize) -> Result<(), LocalError> {
        self.kill_node(node).await?;
        tokio::time::sleep(self.inner.config.restart_delay).await;
        self.restart_node(node).await
    }

    /// Freezes node `node`'s cgroup (everything the node runs, forks included), or where it
    /// has none SIGSTOPs its process group; it resumes when the fault is healed, dropped, or
    /// at `deadline`.
    pub fn pause_node(
        &self,
        node: usize,
        id: &FaultId,
        deadline: Instant,
    ) -> Result<AppliedFault, LocalError> {
        let pid = self.node_pid(node).ok_or_else(|| {
            LocalError::Node(format!(
                "node {} is not running",
                self.node(node).map(|n| n.name.as_str()).unwrap_or("?")
            ))
        })?;
        if let Some(freezer) = self.inner.cgroups.as_ref().and_then(|c| c.freezer(node)) {
            return Ok(dataplane::freeze_cgroup(freezer, id, deadline)?);
        }
        Ok(dataplane::pause_process(
            ProcessTarget::Group(pid as i32),
            id,
            deadline,
        )?)
    }

    /// Applies a partition plan: each affected node drops its peers both ways, all nodes in
    /// parallel. The client namespace keeps reaching every node.
    pub fn apply_partition(
        &self,
        plan: &PartitionPlan,
        id: &FaultId,
        deadline: Instant,
    ) -> Result<Vec<AppliedFault>, LocalError> {
        self.check_alive()?;
        if plan.node_count() != self.inner.nodes.len() {
            return Err(LocalError::Node(format!(
                "partition plan covers {} nodes, the cluster has {}",
                plan.node_count(),
                self.inner.nodes.len()
            )));
        }
        let targets: Vec<(Netns, PartitionSpec)> = plan
            .affected_nodes()
            .into_iter()
            .map(|node| {
                let drop_peers = plan
                    .drops(node)
                    .iter()
                    .map(|&peer| self.inner.nodes[peer].ip)
                    .collect();
                (
                    self.inner.nodes[node].netns.clone(),
                    PartitionSpec { drop_peers },
                )
            })
            .collect();
        Ok(dataplane::apply_partitions(&targets, id, deadline)?)
    }

    fn apply_each<F>(&self, nodes: &[usize], apply: F) -> Result<Vec<AppliedFault>, LocalError>
    where
        F: Fn(&LocalNode) -> Result<AppliedFault, dataplane::DataPlaneError> + Sync,
    {
        self.check_alive()?;
        let targets: Vec<&LocalNode> = nodes
            .iter()
            .map(|&n| self.node(n))
            .collect::<Result<_, _>>()?;
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .map(|node| scope.spawn(|| apply(node)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(dataplane::DataPlaneError::ThreadPanicked("apply")))
                })
                .collect()
        });
        let mut applied = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(fault) => applied.push(fault),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            None => Ok(applied),
            Some(error) => {
                dataplane::heal_all(applied);
                Err(error.into())
            }
        }
    }

    /// Makes `nodes` slow: every packet arriving at them (from nodes and the client) is held
    /// for `delay` ± `jitter`.
    pub fn apply_latency(
        &self,
        nodes: &[usize],
        delay: Duration,
        jitter: Duration,
        id: &FaultId,
        deadline: Instant,
    ) -> Result<Vec<AppliedFault>, LocalError> {
        let spec = LatencySpec {
            delay,
            jitter,
            from_peers: Vec::new(),
            backend: None,
        };
        self.apply_each(nodes, |node| {
            dataplane::apply_latency(&node.netns, id, &spec, deadline)
        })
    }

    /// Drops `percent` % of the packets arriving at `nodes`.
    pub fn apply_loss(
        &self,
        nodes: &[usize],
        percent: f64,
        id: &FaultId,
        deadline: Instant,
    ) -> Result<Vec<AppliedFault>, LocalError> {
        let spec = LossSpec {
            from_peers: Vec::new(),
            percent,
        };
        self.apply_each(nodes, |node| {
            dataplane::apply_loss(&node.netns, id, &spec, deadline)
        })
    }

    /// Limits the egress bandwidth of `nodes`.
    pub fn apply_bandwidth(
        &self,
        nodes: &[usize],
        rate: Rate,
        id: &FaultId,
        deadline: Instant,
    ) -> Result<Vec<AppliedFault>, LocalError> {
        let spec = BandwidthSpec { rate };
        self.apply_each(nodes, |node| {
            dataplane::apply_bandwidth(&node.netns, id, &spec, deadline)
        })
    }

    /// Tears the cluster down now (what `Drop` does), returning what was removed.
    pub fn teardown(self) -> Vec<String> {
        self.inner.teardown()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.inner.teardown();
    }
}

impl Inner {
    /// What the run's guard must remove now.
    fn holdings(&self) -> deadman::RunHoldings<'_> {
        let node_groups = self
            .processes
            .iter()
            .filter_map(|process| {
                let process = process.lock().unwrap_or_else(|p| p.into_inner());
                process.child.as_ref().map(|child| child.id() as i32)
            })
            .collect();
        deadman::RunHoldings {
            run_id: &self.run_id,
            node_groups,
            cgroups: self.cgroups.as_ref(),
            namespaces: &self.namespaces,
            data_dirs: &self.data_dirs,
        }
    }

    /// Replaces the run's guard by one that knows the current node process groups: the new
    /// one is armed before the old one is disarmed. If it cannot be started, the old one
    /// stays (it still removes the namespaces, and the nodes die with their owner).
    fn rearm(&self) {
        if self.torn_down.load(Ordering::SeqCst) {
            return;
        }
        match deadman::arm(&self.holdings()) {
            Ok(guard) => {
                let old = self
                    .run_guard
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(guard);
                if let Some(old) = old {
                    old.disarm();
                }
            }
            Err(error) => {
                tracing::warn!(run = %self.run_id, %error, "cannot re-arm the run's guard")
            }
        }
    }

    /// Tears down a partially built run and passes the error on.
    fn fail(&mut self, error: LocalError) -> LocalError {
        self.teardown();
        error
    }

    fn teardown(&self) -> Vec<String> {
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return Vec::new();
        }
        let mut removed = Vec::new();
        for (node, process) in self.processes.iter().enumerate() {
            let mut process = process.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(mut child) = process.child.take() {
                let _ = dataplane::kill_process(ProcessTarget::Group(child.id() as i32));
                let _ = child.wait();
                removed.push(format!(
                    "node {} (pid {})",
                    self.nodes.get(node).map(|n| n.name.as_str()).unwrap_or("?"),
                    child.id()
                ));
            }
        }
        if let Some(cgroups) = &self.cgroups {
            removed.extend(remove_node_cgroups(&cgroups.dirs()));
        }
        removed.extend(remove_run_resources(&self.namespaces, &self.data_dirs));
        RunRecord::remove(&self.run_id);
        if let Some(spawner) = self
            .spawner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            drop(spawner.requests);
            let _ = spawner.thread.join();
        }
        // Everything is gone: the guard has nothing left to do.
        if let Some(guard) = self
            .run_guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            guard.disarm();
        }
        tracing::info!(run = %self.run_id, ?removed, "local cluster torn down");
        removed
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Awaits futures concurrently; returns at the first error (the others are dropped).
async fn try_join_all<F, E>(futures: Vec<F>) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
{
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        let mut index = 0;
        while index < pending.len() {
            match pending[index].as_mut().poll(cx) {
                std::task::Poll::Ready(Err(error)) => return std::task::Poll::Ready(Err(error)),
                std::task::Poll::Ready(Ok(())) => {
                    drop(pending.swap_remove(index));
                }
                std::task::Poll::Pending => index += 1,
            }
        }
        if pending.is_empty() {
            std::task::Poll::Ready(Ok(()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
