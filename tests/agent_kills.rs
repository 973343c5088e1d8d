//! The crash campaign for the node agent: `schism agent` processes against the API double,
//! with pods found through a fake `/proc` whose namespaces are real ones this test made and
//! whose paused pod is a real cgroup, are SIGKILLed at seeded moments of every phase — the
//! start-up reap, while faults are applied, while they are held, while they are reverted,
//! and the moment a status is written. After each kill, with no command at all, every fault
//! must be gone (each has a guard); then a restarted agent must conclude every lease, leave
//! nothing behind, keep an empty pause journal and stop cleanly.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/fake_proc.rs"]
mod fake_proc;
mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use cgroup::{CGROUP_ROOT, Counter, Hierarchy, PodCgroup};
use fake_proc::FakeProc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use schism::api::{
    FaultLease, FaultLeaseSpec, KubeDuration, LEASE_FINALIZER, LEASE_NODE_LABEL, LeaseBandwidth,
    LeaseFault, LeaseLatency, LeasePartition, LeasePause, LeasePod,
};
use support::{TestNet, require};

const NODE: &str = "node-a";
const NAMESPACE: &str = "demo";
const LEASES: &str = "faultleases.schism.dev";
/// Pod A (namespace 0) is cut off from B and rate-limited; B (namespace 1) is delayed; C is
/// a counting process in a cgroup of its own, paused.
const POD_A: &str = "6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11";
const POD_B: &str = "0a0b0c0d-1111-2222-3333-444455556666";
const POD_C: &str = "7e7e7e7e-aaaa-4bbb-8ccc-0123456789ab";
/// How long each round's leases last.
const LEASE_LIFE: Duration = Duration::from_secs(3);

/// The phases a kill lands in.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// The leases exist before the agent starts: it dies during its reap or first applies.
    StartUp,
    /// The leases are created while it runs: it dies while applying them.
    Applying,
    /// Every lease is Applied: it dies while holding them.
    Holding,
    /// The leases are deleted: it dies while reverting them and releasing their finalizers.
    Reverting,
    /// It dies the moment the first lease's status says Applied, with the others' writes
    /// in flight.
    WritingStatus,
}

const PHASES: [Phase; 5] = [
    Phase::StartUp,
    Phase::Applying,
    Phase::Holding,
    Phase::Reverting,
    Phase::WritingStatus,
];

/// A seeded generator (xorshift), so a failing kill can be replayed.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

struct Rig {
    net: TestNet,
    proc: FakeProc,
    paused: PodCgroup,
    counter: Counter,
    server: ApiServer,
    kubeconfig: PathBuf,
    journal: PathBuf,
    dir: PathBuf,
}

impl Rig {
    async fn new() -> Self {
        let net = TestNet::new(2);
        let proc = FakeProc::new();
        proc.pod_process(proc.next_unused_pid(), POD_A, &net.path(0), 'S');
        proc.pod_process(proc.next_unused_pid(), POD_B, &net.path(1), 'S');
        let paused = PodCgroup::new(Hierarchy::V2, POD_C);
        let counter = Counter::start(proc.root().join("count"));
        paused.add(counter.pid());
        proc.process(counter.pid(), &paused.proc_file(), None, 'S');

        let server = ApiServer::builder()
            .authenticate()
            .resources(chart::crds())
            .start()
            .await;
        let manifests = chart::render(None, &[]);
        chart::install(&server, &chart::rbac(&manifests));
        let (account, namespaces) = chart::service_account(&manifests, "agent");
        let token = server.service_account_token(&namespaces[0], &account);
        let dir = std::env::temp_dir().join(format!("schism-agent-kills-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("agent.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{}\"}}\nusers:\n- name: agent\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: double\n  context: {{cluster: double, user: agent}}\ncurrent-context: double\n",
                server.url()
            ),
        )
        .unwrap();
        Self {
            journal: dir.join("pauses"),
            net,
            proc,
            paused,
            counter,
            server,
            kubeconfig,
            dir,
        }
    }

    /// Starts `schism agent` as the chart runs it, but on the fake `/proc` and the test's
    /// journal; returns it and its metrics address.
    fn agent(&self) -> (Child, SocketAddr) {
        let metrics = free_address();
        let child = Command::new(env!("CARGO_BIN_EXE_schism"))
            .args(["agent", "--node-name", NODE, "--proc-root"])
            .arg(self.proc.root())
            .args(["--cgroup-root", CGROUP_ROOT, "--pause-journal"])
            .arg(&self.journal)
            .args(["--metrics-address", &metrics.to_string()])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the schism binary runs");
        (child, metrics)
    }

    fn leases(&self) -> Api<FaultLease> {
        Api::namespaced(self.server.client(), NAMESPACE)
    }

    /// The round's four leases, created through the API.
    async fn create_leases(&self, round: usize) -> Vec<String> {
        let ip = |node: usize| self.net.ips[node].to_string();
        let faults = [
            (
                POD_A,
                Some(ip(0)),
                LeaseFault {
                    partition: Some(LeasePartition {
                        drop_peers: vec![ip(1)],
                    }),
                    ..LeaseFault::default()
                },
                "cut",
            ),
            (
                POD_A,
                Some(ip(0)),
                LeaseFault {
                    bandwidth: Some(LeaseBandwidth {
                        rate: "1mbit".into(),
                    }),
                    ..LeaseFault::default()
                },
                "narrow",
            ),
            (
                POD_B,
                Some(ip(1)),
                LeaseFault {
                    latency: Some(LeaseLatency {
                        delay: "50ms".parse::<KubeDuration>().unwrap(),
                        jitter: None,
                        from_peers: Vec::new(),
                    }),
                    ..LeaseFault::default()
                },
                "slow",
            ),
            (
                POD_C,
                None,
                LeaseFault {
                    pause: Some(LeasePause {}),
                    ..LeaseFault::default()
                },
                "stop",
            ),
        ];
        let mut names = Vec::new();
        for (uid, pod_ip, fault, kind) in faults {
            let name = format!("{kind}-{round}");
            let mut lease = FaultLease::new(
                &name,
                FaultLeaseSpec {
                    chaos: "kills".into(),
                    fault_id: name.replace('-', "_"),
                    pod: LeasePod {
                        name: format!("pod-{kind}"),
                        uid: uid.into(),
                        node_name: NODE.into(),
                        ip: pod_ip,
                    },
                    fault,
                    deadline: Time(Timestamp::now() + LEASE_LIFE),
                },
            );
            lease.metadata.namespace = Some(NAMESPACE.into());
            lease.metadata.labels = Some([(LEASE_NODE_LABEL.to_string(), NODE.to_string())].into());
            lease.metadata.finalizers = Some(vec![LEASE_FINALIZER.into()]);
            self.leases()
                .create(&PostParams::default(), &lease)
                .await
                .unwrap();
            names.push(name);
        }
        names
    }

    fn phase(&self, name: &str) -> Option<String> {
        self.server
            .get(LEASES, Some(NAMESPACE), name)?
            .pointer("/status/phase")?
            .as_str()
            .map(str::to_owned)
    }

    /// Whatever of Schism's faults is in place: tables, qdiscs, NFQUEUE rules, a frozen
    /// pod (and a pod that does not run).
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for node in 0..2 {
            let tables = self.net.exec(node, "nft", &["list", "tables"]);
            let qdiscs = self.net.exec(node, "tc", &["qdisc", "show"]);
            let rules = self
                .net
                .exec(node, "iptables", &["-w", "-t", "mangle", "-S"]);
            for (output, mark) in [
                (tables, schism::dataplane::TABLE_PREFIX),
                (qdiscs, schism::dataplane::QDISC_HANDLE),
                (rules, schism::dataplane::RULE_COMMENT_PREFIX),
            ] {
                for line in String::from_utf8_lossy(&output.stdout).lines() {
                    if line.contains(mark) {
                        left.push(format!("namespace {node}: {line}"));
                    }
                }
            }
        }
        if self.paused.frozen() {
            left.push("pod C is frozen".into());
        }
        left
    }

    /// Waits for nothing to be left; returns what is, after `limit`.
    fn wait_clean(&self, limit: Duration) -> (Vec<String>, Duration) {
        let start = Instant::now();
        loop {
            let left = self.leftovers();
            if left.is_empty() || start.elapsed() > limit {
                return (left, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An address on loopback no one listens on.
fn free_address() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Whether the agent's `/readyz` answers 200.
fn ready(metrics: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&metrics, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: agent\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn kill(agent: &mut Child) {
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_agent_in_every_phase_leaves_nothing_and_a_restarted_agent_concludes() {
    require(
        "the agent crash campaign",
        &["ip", "nft", "tc", "iptables", "sh", "sleep"],
    );
    let rig = Rig::new().await;
    let mut rng = Seeded(0x5c15_a6e7);
    let mut survived = 0;
    let mut slowest_clean = Duration::ZERO;
    const KILLS_PER_PHASE: usize = 2;
    for (round, phase) in PHASES
        .iter()
        .flat_map(|phase| std::iter::repeat_n(*phase, KILLS_PER_PHASE))
        .enumerate()
    {
        let delay = Duration::from_millis(match phase {
            Phase::StartUp => rng.below(600),
            Phase::Applying => rng.below(300),
            Phase::Holding => rng.below(400),
            Phase::Reverting => rng.below(150),
            Phase::WritingStatus => 0,
        });
        let names = if matches!(phase, Phase::StartUp) {
            rig.create_leases(round).await
        } else {
            Vec::new()
        };
        let (mut agent, metrics) = rig.agent();
        let names = match phase {
            Phase::StartUp => {
                tokio::time::sleep(delay).await;
                names
            }
            _ => {
                wait_until("the agent is ready", Duration::from_secs(20), || {
                    ready(metrics)
                })
                .await;
                let names = rig.create_leases(round).await;
                match phase {
                    Phase::Applying => tokio::time::sleep(delay).await,
                    Phase::WritingStatus => {
                        wait_until("a lease is Applied", Duration::from_secs(20), || {
                            names
                                .iter()
                                .any(|n| rig.phase(n).as_deref() == Some("Applied"))
                        })
                        .await
                    }
                    _ => {
                        wait_until("every lease is Applied", Duration::from_secs(20), || {
                            names
                                .iter()
                                .all(|n| rig.phase(n).as_deref() == Some("Applied"))
                        })
                        .await;
                        assert!(!rig.counter.advances(), "pod C is paused");
                        if matches!(phase, Phase::Reverting) {
                            for name in &names {
                                rig.leases()
                                    .delete(name, &DeleteParams::default())
                                    .await
                                    .unwrap();
                            }
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
                names
            }
        };
        kill(&mut agent);

        // No command now: every fault's guard acts on its owner's death.
        let (left, took) = rig.wait_clean(Duration::from_secs(3));
        assert!(
            left.is_empty(),
            "kill {round} ({phase:?}, {delay:?}) left, with no further command: {left:?}"
        );
        assert!(
            rig.counter.advances(),
            "pod C runs again after kill {round}"
        );
        slowest_clean = slowest_clean.max(took);

        // A restarted agent concludes every lease and leaves nothing.
        let (mut restarted, metrics) = rig.agent();
        wait_until(
            "the restarted agent is ready",
            Duration::from_secs(20),
            || ready(metrics),
        )
        .await;
        wait_until(
            "every lease is concluded",
            LEASE_LIFE + Duration::from_secs(15),
            || {
                names.iter().all(|n| {
                    rig.server.get(LEASES, Some(NAMESPACE), n).is_none()
                        || rig.phase(n).as_deref() == Some("Reverted")
                })
            },
        )
        .await;
        for name in &names {
            if let Some(phase) = rig.phase(name) {
                assert_eq!(
                    phase, "Reverted",
                    "lease {name} after kill {round} ({phase:?})"
                );
            }
            let _ = rig.leases().delete(name, &DeleteParams::default()).await;
        }
        wait_until("the leases are released", Duration::from_secs(20), || {
            names
                .iter()
                .all(|n| rig.server.get(LEASES, Some(NAMESPACE), n).is_none())
        })
        .await;
        let (left, _) = rig.wait_clean(Duration::from_secs(2));
        assert!(
            left.is_empty(),
            "after the restart of round {round}: {left:?}"
        );
        let journal: Vec<_> = std::fs::read_dir(&rig.journal).unwrap().collect();
        assert!(
            journal.is_empty(),
            "the pause journal is empty: {journal:?}"
        );
        // SAFETY: plain syscall to a child of ours.
        unsafe { libc::kill(restarted.id() as i32, libc::SIGTERM) };
        let status = restarted.wait().unwrap();
        assert!(
            status.success(),
            "the restarted agent stops cleanly: {status}"
        );
        survived += 1;
    }
    println!(
        "agent: {survived} of {} kills survived (2 in each of {} phases), nothing left; \
         faults gone at most {slowest_clean:?} after a kill, with no command",
        PHASES.len() * KILLS_PER_PHASE,
        PHASES.len()
    );
}
