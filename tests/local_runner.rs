//! The local cluster's safety: bad commands and readiness failures tear everything down, and
//! `kill -9` of the runner followed by cleanup leaves no namespace, rule or process.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schism::dataplane::FaultId;
use schism::faultplan::{PartitionShape, plan_partition, rng_from_seed};
use schism::local::{
    LocalCluster, LocalClusterConfig, LocalError, ReadyCheck, cleanup_crashed_runs,
};
use support::require;

const TOOLS: &[&str] = &["ip", "nft", "tc", "iptables"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn namespaces_of(run_id: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.starts_with(&format!("sx-{run_id}-")))
        .collect()
}

/// Records as (run id, owner pid).
fn records() -> Vec<(String, u32)> {
    std::fs::read_dir("/run/schism")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path().join("run.json")).ok()?;
            let record: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some((
                record["runId"].as_str()?.to_string(),
                record["ownerPid"].as_u64()? as u32,
            ))
        })
        .collect()
}

fn all_run_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.starts_with("sx-"))
        .collect()
}

/// Failing starts in this process run one at a time, so "nothing of this process is left"
/// is well defined. Other processes (another Schism run on the machine) are ignored.
static FAILING_STARTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn assert_nothing_left_by_this_process(namespaces_before: &[String]) {
    let own = std::process::id();
    let records = records();
    assert!(
        records.iter().all(|(_, owner)| *owner != own),
        "run record left behind: {records:?}"
    );
    let new_namespaces: Vec<String> = all_run_namespaces()
        .into_iter()
        .filter(|name| !namespaces_before.contains(name))
        .filter(|name| {
            !records
                .iter()
                .any(|(id, _)| name.starts_with(&format!("sx-{id}-")))
        })
        .collect();
    assert!(
        new_namespaces.is_empty(),
        "namespaces left behind: {new_namespaces:?}"
    );
}

#[test]
fn a_node_command_that_exits_at_once_is_reported_with_its_log_and_torn_down() {
    require("node exits", TOOLS);
    let _serial = FAILING_STARTS.lock().unwrap_or_else(|p| p.into_inner());
    let before = all_run_namespaces();
    let config = LocalClusterConfig::new(
        2,
        "echo boom-{name} >&2; exit 3",
        ReadyCheck::Tcp { port: 7000 },
    );
    let error = runtime()
        .block_on(LocalCluster::start(config))
        .err()
        .expect("must fail");
    let text = error.to_string();
    assert!(matches!(error, LocalError::NodeExited { .. }), "{text}");
    assert!(
        text.contains("exit status: 3") && text.contains("boom-n"),
        "{text}"
    );
    assert_nothing_left_by_this_process(&before);
}

#[test]
fn a_readiness_check_that_never_passes_times_out_naming_the_check_and_tears_down() {
    require("never ready", TOOLS);
    let _serial = FAILING_STARTS.lock().unwrap_or_else(|p| p.into_inner());
    let before = all_run_namespaces();
    let mut config = LocalClusterConfig::new(
        1,
        "sleep 30",
        ReadyCheck::Http {
            port: 7001,
            path: "/health".into(),
        },
    );
    config.ready_timeout = Duration::from_millis(800);
    let error = runtime()
        .block_on(LocalCluster::start(config))
        .err()
        .expect("must fail");
    let text = error.to_string();
    assert!(matches!(error, LocalError::NotReady { .. }), "{text}");
    assert!(text.contains("/health") && text.contains("n1"), "{text}");
    assert_nothing_left_by_this_process(&before);
}

#[test]
fn bad_configuration_is_rejected_before_anything_is_created() {
    let config = LocalClusterConfig::new(0, "x", ReadyCheck::Tcp { port: 1 });
    let error = runtime()
        .block_on(LocalCluster::start(config))
        .err()
        .unwrap();
    assert!(error.to_string().contains("nodes is 0"), "{error}");
    assert!(
        "10.0.0.0/28"
            .parse::<schism::local::Ipv4Subnet>()
            .unwrap_err()
            .contains("/26")
    );
}

/// A node whose command starts a counter in a session of its own (out of the node's process
/// group, as a daemonising child is) before it becomes a Redis server.
const REDIS_WITH_A_DAEMON: &str = "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > {dataDir}/count; sleep 0.02; done' & exec redis-server --port 7003 --bind {ip} --save '' --appendonly no --protected-mode no --dir {dataDir}";

fn count_in(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the count rises within half a second.
fn counting(dir: &Path) -> bool {
    let before = count_in(dir);
    wait_until(Duration::from_millis(500), || count_in(dir) > before)
}

#[test]
fn a_paused_node_freezes_everything_it_runs_and_teardown_finds_what_left_its_group() {
    require("node cgroups", &["ip", "nft", "redis-server", "setsid"]);
    let rt = runtime();
    let config = LocalClusterConfig::new(1, REDIS_WITH_A_DAEMON, ReadyCheck::Tcp { port: 7003 });
    let cluster = rt.block_on(LocalCluster::start(config)).unwrap();
    let data = cluster.nodes()[0].data_dir.clone();
    assert!(counting(&data), "the daemon counts");
    let cgroup = cgroups_of(cluster.run_id());
    assert_eq!(cgroup.len(), 1, "the run has its cgroup: {cgroup:?}");
    let node_cgroup = cgroup[0].join("n1");
    let members = std::fs::read_to_string(node_cgroup.join("cgroup.procs")).unwrap();
    assert!(
        members.lines().count() >= 2,
        "the server and the daemon are in the node's cgroup: {members}"
    );

    let pause = cluster
        .pause_node(
            0,
            &FaultId::new("stop").unwrap(),
            Instant::now() + Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(pause.kind().mechanism(), "freezer");
    assert!(
        !counting(&data),
        "the daemon outside the node's process group is frozen too (SIGSTOP of the group would miss it)"
    );
    pause.heal().unwrap();
    assert!(counting(&data), "thawed, it counts again");

    let daemons: Vec<String> = std::fs::read_to_string(node_cgroup.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let run_id = cluster.run_id().to_string();
    cluster.teardown();
    assert!(
        daemons.iter().all(|pid| !alive(pid)),
        "teardown killed every process of the node's cgroup: {daemons:?}"
    );
    assert!(cgroups_of(&run_id).is_empty(), "and removed the cgroups");
}

const REDIS: &str = "redis-server --port 7002 --bind {ip} --save '' --appendonly no --protected-mode no --dir {dataDir}";

const RUNNER_ENV: &str = "SCHISM_TEST_LOCAL_RUNNER";

/// Not a test of its own: when the kill -9 test re-runs this binary with `RUNNER_ENV` set, this
/// function builds a 3-node cluster, applies a partition and a delay, prints the run id and
/// waits to be killed.
#[test]
fn helper_runner_process_that_is_killed_mid_fault() {
    if std::env::var(RUNNER_ENV).is_err() {
        return;
    }
    let rt = runtime();
    let mut config = LocalClusterConfig::new(3, REDIS, ReadyCheck::Tcp { port: 7002 });
    config.ready_timeout = Duration::from_secs(10);
    let cluster = rt.block_on(LocalCluster::start(config)).unwrap();
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let plan = plan_partition(&PartitionShape::Halves, &names, &mut rng_from_seed(1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let partition = cluster
        .apply_partition(&plan, &FaultId::new("cut").unwrap(), deadline)
        .unwrap();
    let latency = cluster
        .apply_latency(
            &[0],
            Duration::from_millis(50),
            Duration::ZERO,
            &FaultId::new("slow").unwrap(),
            deadline,
        )
        .unwrap();
    // A frozen node too: the guard thaws it before the kill, cleanup before its own.
    let pause = cluster
        .pause_node(2, &FaultId::new("stop").unwrap(), deadline)
        .unwrap();
    assert_eq!(
        pause.kind().mechanism(),
        "freezer",
        "each node has a cgroup"
    );
    let pids: Vec<String> = (0..3)
        .map(|n| cluster.node_pid(n).unwrap().to_string())
        .collect();
    println!("RUN {} {}", cluster.run_id(), pids.join(" "));
    std::thread::sleep(Duration::from_secs(600));
    drop((partition, latency, pause, cluster));
}

/// The run's node cgroups, wherever the machine keeps them, if any exist.
fn cgroups_of(run_id: &str) -> Vec<PathBuf> {
    [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/freezer",
    ]
    .iter()
    .map(|root| Path::new(root).join("schism").join(run_id))
    .filter(|dir| dir.exists())
    .collect()
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// A runner helper in the middle of its faults: the process, its run id and its nodes.
struct KilledRunner {
    runner: std::process::Child,
    run_id: String,
    node_pids: Vec<String>,
}

impl KilledRunner {
    /// The runner's guards: one for the run and one for the delay.
    fn guards(&self) -> Vec<i32> {
        let guards = guards_of(self.runner.id());
        assert!(
            guards.len() >= 2,
            "a guard for the run and one for the delay: {guards:?}"
        );
        guards
    }

    fn kill(&mut self) {
        self.runner.kill().unwrap();
        self.runner.wait().unwrap();
    }
}

fn start_runner_mid_fault() -> KilledRunner {
    let mut runner = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_runner_process_that_is_killed_mid_fault",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RUNNER_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = runner.stdout.take().unwrap();
    let (found, announced) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The test harness prints the test name before the helper's output on the same line.
        let line = BufReader::new(stdout)
            .lines()
            .find_map(|line| Some(line.ok()?.split_once("RUN ")?.1.to_string()));
        let _ = found.send(line);
    });
    let Ok(Some(line)) = announced.recv_timeout(Duration::from_secs(60)) else {
        runner.kill().unwrap();
        runner.wait().unwrap();
        panic!("runner did not start its cluster");
    };
    let mut words = line.split_whitespace();
    let run_id = words.next().unwrap().to_string();
    let node_pids: Vec<String> = words.map(str::to_string).collect();
    assert_eq!(
        namespaces_of(&run_id).len(),
        5,
        "bridge, client and three nodes"
    );
    KilledRunner {
        runner,
        run_id,
        node_pids,
    }
}

/// Every process id under /proc.
fn all_pids() -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

/// The runner's guards: its children forked from it (same executable), not its nodes.
fn guards_of(runner: u32) -> Vec<i32> {
    let exe = |pid: &str| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let own = exe(&runner.to_string());
    all_pids()
        .into_iter()
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .unwrap_or("");
            ppid == runner.to_string() && exe(pid) == own
        })
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

#[test]
fn kill_9_of_the_runner_mid_fault_leaves_nothing_with_no_further_command() {
    require(
        "kill -9 runner",
        &["ip", "nft", "tc", "iptables", "redis-server"],
    );
    let mut killed = start_runner_mid_fault();
    let guards = killed.guards();
    killed.kill();
    let run_id = killed.run_id.clone();
    assert!(
        wait_until(Duration::from_secs(5), || namespaces_of(&run_id).is_empty()
            && !killed.node_pids.iter().any(|pid| alive(pid))
            && !Path::new("/run/schism").join(&run_id).exists()
            && cgroups_of(&run_id).is_empty()),
        "left: namespaces {:?}, nodes alive {:?}, record {}, cgroups {:?}",
        namespaces_of(&run_id),
        killed
            .node_pids
            .iter()
            .filter(|pid| alive(pid))
            .collect::<Vec<_>>(),
        Path::new("/run/schism").join(&run_id).exists(),
        cgroups_of(&run_id)
    );
    assert!(
        wait_until(Duration::from_secs(5), || guards
            .iter()
            .all(|&pid| !alive(&pid.to_string()))),
        "the guards exit once done"
    );
    let report = cleanup_crashed_runs().unwrap();
    assert!(
        report.runs.iter().all(|run| run.run_id != run_id),
        "nothing left for cleanup: {report}"
    );
}

#[test]
fn kill_9_of_the_runner_and_its_guards_mid_fault_then_cleanup_leaves_nothing() {
    require(
        "kill -9 runner and guards",
        &["ip", "nft", "tc", "iptables", "redis-server"],
    );
    let mut killed = start_runner_mid_fault();
    // What a guard cannot cover: it dies together with its owner.
    for guard in killed.guards() {
        unsafe { libc::kill(guard, libc::SIGKILL) };
    }
    killed.kill();
    let run_id = killed.run_id.clone();
    assert!(
        wait_until(Duration::from_secs(5), || !killed
            .node_pids
            .iter()
            .any(|pid| alive(pid))),
        "node processes die with the runner"
    );
    assert!(
        !namespaces_of(&run_id).is_empty(),
        "namespaces stay until cleanup"
    );

    let report = cleanup_crashed_runs().unwrap();
    let text = report.to_string();
    eprintln!("{text}");
    let run = report
        .runs
        .iter()
        .find(|run| run.run_id == run_id)
        .expect("cleanup found the run");
    assert!(
        run.removed.iter().any(|line| line.contains("schism_cut")),
        "{text}"
    );
    assert!(
        run.removed.iter().any(|line| line.contains("schism:slow")),
        "{text}"
    );
    assert_eq!(
        run.removed
            .iter()
            .filter(|line| line.starts_with("network namespace"))
            .count(),
        5,
        "{text}"
    );
    assert!(
        run.removed
            .iter()
            .any(|line| line.starts_with("cgroup ") && line.contains(&run_id)),
        "{text}"
    );
    assert!(namespaces_of(&run_id).is_empty());
    assert!(!Path::new("/run/schism").join(&run_id).exists());
    assert!(cgroups_of(&run_id).is_empty(), "{:?}", cgroups_of(&run_id));
    let again = cleanup_crashed_runs().unwrap();
    assert!(again.runs.iter().all(|run| run.run_id != run_id));
}

/// The run whose record names `owner` as its owner, if one is written yet.
fn run_owned_by(owner: u32) -> Option<String> {
    std::fs::read_dir("/run/schism")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .find_map(|entry| {
            let text = std::fs::read_to_string(entry.path().join("run.json")).ok()?;
            let record: serde_json::Value = serde_json::from_str(&text).ok()?;
            (record["ownerPid"].as_u64()? == u64::from(owner))
                .then(|| record["runId"].as_str().map(str::to_string))?
        })
}

/// Processes whose command line mentions `path`.
fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(&needle))
        })
        .collect()
}

#[test]
fn ctrl_c_during_the_set_up_of_schism_run_stops_it_and_leaves_nothing() {
    require(
        "Ctrl-C during set-up",
        &["ip", "nft", "tc", "iptables", "etcd"],
    );
    let out = std::env::temp_dir().join(format!("schism-ctrl-c-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local/etcd-3node.yaml");
    let mut run = Command::new(env!("CARGO_BIN_EXE_schism"))
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .arg(&manifest)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid set-up: the run is recorded and its first namespace exists, its nodes not all ready.
    let mut run_id = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            run_id = run_id.clone().or_else(|| run_owned_by(run.id()));
            run_id
                .as_ref()
                .is_some_and(|id| !namespaces_of(id).is_empty())
        }),
        "the run never started setting up"
    );
    let run_id = run_id.unwrap();
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let status = run.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted during set-up"), "{stderr}");
    assert!(
        wait_until(Duration::from_secs(5), || namespaces_of(&run_id).is_empty()
            && !Path::new("/run/schism").join(&run_id).exists()
            && processes_mentioning(&out).is_empty()),
        "left: namespaces {:?}, record {}, processes {:?}",
        namespaces_of(&run_id),
        Path::new("/run/schism").join(&run_id).exists(),
        processes_mentioning(&out)
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn cleanup_running_throughout_another_runs_set_up_leaves_that_run_alone() {
    require(
        "cleanup beside a live run",
        &["ip", "nft", "tc", "iptables", "redis-server"],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cleaner = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut reports = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                reports.push(cleanup_crashed_runs().unwrap());
            }
            reports
        })
    };
    let rt = runtime();
    let mut config = LocalClusterConfig::new(3, REDIS, ReadyCheck::Tcp { port: 7002 });
    config.ready_timeout = Duration::from_secs(10);
    let started = rt.block_on(LocalCluster::start(config));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reports = cleaner.join().unwrap();
    let cluster = started.expect("the run sets up with a cleanup running beside it");
    let run_id = cluster.run_id().to_string();
    assert!(reports.len() > 1, "the cleanup ran during the set-up");
    for report in &reports {
        assert!(
            report
                .runs
                .iter()
                .all(|run| run.removed.iter().all(|line| !line.contains(&run_id))),
            "a cleanup touched the live run: {report}"
        );
    }
    assert_eq!(
        namespaces_of(&run_id).len(),
        5,
        "bridge, client and three nodes"
    );
    for node in 0..3 {
        let pid = cluster.node_pid(node).expect("node started");
        assert!(alive(&pid.to_string()), "node {node} still runs");
    }
    drop(cluster);
    assert!(namespaces_of(&run_id).is_empty());
}
