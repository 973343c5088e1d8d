//! The data plane against real namespaces: partitions, loss, latency, bandwidth, process
//! faults, deadlines, the reaper, and what survives a SIGKILL of the process holding faults.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schism::dataplane::{
    self, BandwidthSpec, FaultId, FaultKind, LatencyBackend, LatencySpec, LossSpec, PartitionSpec,
    ProcessTarget, ReapedItem,
};
use support::{TestNet, require};

const NET_TOOLS: &[&str] = &["ip", "nft", "tc", "iptables", "ping"];

fn id(text: &str) -> FaultId {
    FaultId::new(text).unwrap()
}

fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

#[test]
fn partition_cuts_both_directions_and_heal_restores_every_link() {
    require("partition", NET_TOOLS);
    let net = TestNet::new(3);
    let targets = vec![
        (
            net.netns(0),
            PartitionSpec {
                drop_peers: vec![net.ips[1], net.ips[2]],
            },
        ),
        (
            net.netns(1),
            PartitionSpec {
                drop_peers: vec![net.ips[0]],
            },
        ),
        (
            net.netns(2),
            PartitionSpec {
                drop_peers: vec![net.ips[0]],
            },
        ),
    ];
    let faults = dataplane::apply_partitions(&targets, &id("cut"), in_secs(60)).unwrap();
    assert!(faults.iter().all(|f| f.kind() == FaultKind::Partition));
    assert!(net.unreachable(0, 1) && net.unreachable(1, 0) && net.unreachable(2, 0));
    assert!(net.reachable(1, 2), "the majority still talks");

    let healed = dataplane::heal_all(faults);
    assert!(healed.iter().all(Result::is_ok), "{healed:?}");
    assert!(net.reachable(0, 1) && net.reachable(0, 2) && net.reachable(2, 0));
}

#[test]
fn partition_rules_carry_a_kernel_timeout_and_the_watchdog_heals_at_the_deadline() {
    require("partition deadline", NET_TOOLS);
    let net = TestNet::new(2);
    let spec = PartitionSpec {
        drop_peers: vec![net.ips[1]],
    };
    let deadline = Instant::now() + Duration::from_millis(1500);
    let fault =
        dataplane::apply_partition(&net.netns(0), &id("expiring"), &spec, deadline).unwrap();
    let listing = net.exec(
        0,
        "nft",
        &["list", "set", "inet", "schism_expiring", "peers"],
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("expires"),
        "set elements must expire in the kernel: {listing}"
    );
    assert!(net.unreachable(0, 1));

    std::thread::sleep(
        deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(300),
    );
    assert!(
        fault.is_reverted(),
        "watchdog should have reverted at the deadline"
    );
    assert!(net.reachable(0, 1));
    let tables = net.exec(0, "nft", &["list", "tables"]);
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("schism_"));
    fault.heal().unwrap();
}

#[test]
fn thirty_percent_loss_measures_thirty_percent_over_two_thousand_packets() {
    require("loss", NET_TOOLS);
    let net = TestNet::new(2);
    let spec = LossSpec {
        from_peers: vec![net.ips[0]],
        percent: 30.0,
    };
    let fault = dataplane::apply_loss(&net.netns(1), &id("lossy"), &spec, in_secs(120)).unwrap();
    let (loss, _) = net.ping(0, net.ips[1], 2000, "0.002");
    fault.heal().unwrap();
    assert!(
        (25.0..=35.0).contains(&loss),
        "measured {loss}% loss for 30%"
    );
    let (after, _) = net.ping(0, net.ips[1], 20, "0.01");
    assert_eq!(after, 0.0, "loss must be gone after heal");
}

fn average_rtt(net: &TestNet) -> Duration {
    let (loss, rtt) = net.ping(0, net.ips[1], 20, "0.05");
    assert_eq!(loss, 0.0);
    rtt.expect("rtt")
}

#[test]
fn a_100ms_delay_raises_round_trips_by_100ms() {
    require("latency", NET_TOOLS);
    let net = TestNet::new(2);
    let baseline = average_rtt(&net);
    let spec = LatencySpec {
        delay: Duration::from_millis(100),
        jitter: Duration::ZERO,
        from_peers: vec![],
        backend: None,
    };
    let fault = dataplane::apply_latency(&net.netns(1), &id("slow"), &spec, in_secs(60)).unwrap();
    let FaultKind::Latency(backend) = fault.kind() else {
        panic!("not a latency fault")
    };
    eprintln!("latency backend: {backend}");
    let delayed = average_rtt(&net);
    fault.heal().unwrap();
    let added = delayed.saturating_sub(baseline).as_secs_f64() * 1000.0;
    assert!(
        (85.0..=115.0).contains(&added),
        "added {added:.1} ms for 100 ms ({backend})"
    );
    let after = average_rtt(&net);
    assert!(
        after < Duration::from_millis(20),
        "delay must be gone after heal: {after:?}"
    );
}

#[test]
fn nfqueue_delay_can_target_chosen_peers_only() {
    require("latency from peers", NET_TOOLS);
    let net = TestNet::new(3);
    let spec = LatencySpec {
        delay: Duration::from_millis(50),
        jitter: Duration::from_millis(5),
        from_peers: vec![net.ips[0]],
        backend: Some(LatencyBackend::NfQueue),
    };
    let fault =
        dataplane::apply_latency(&net.netns(1), &id("peer_slow"), &spec, in_secs(60)).unwrap();
    assert_eq!(fault.kind(), FaultKind::Latency(LatencyBackend::NfQueue));
    let (_, from_chosen) = net.ping(0, net.ips[1], 10, "0.05");
    let (_, from_other) = net.ping(2, net.ips[1], 10, "0.05");
    fault.heal().unwrap();
    assert!(
        from_chosen.unwrap() > Duration::from_millis(40),
        "{from_chosen:?}"
    );
    assert!(
        from_other.unwrap() < Duration::from_millis(20),
        "{from_other:?}"
    );
}

#[test]
fn bandwidth_installs_a_schism_tbf_and_heal_removes_it() {
    require("bandwidth", NET_TOOLS);
    let net = TestNet::new(2);
    let spec = BandwidthSpec {
        rate: "10mbit".parse().unwrap(),
    };
    let fault =
        dataplane::apply_bandwidth(&net.netns(0), &id("narrow"), &spec, in_secs(60)).unwrap();
    let shown =
        String::from_utf8_lossy(&net.exec(0, "tc", &["qdisc", "show", "dev", "eth0"]).stdout)
            .into_owned();
    assert!(
        shown.contains("tbf 5c15:") && shown.contains("rate 10Mbit"),
        "{shown}"
    );
    assert!(net.reachable(0, 1));
    fault.heal().unwrap();
    let shown =
        String::from_utf8_lossy(&net.exec(0, "tc", &["qdisc", "show", "dev", "eth0"]).stdout)
            .into_owned();
    assert!(!shown.contains("5c15:"), "{shown}");
}

#[test]
fn reaper_removes_tables_rules_and_qdiscs_and_says_what_it_removed() {
    require("reaper", NET_TOOLS);
    let net = TestNet::new(2);
    let netns = net.netns(0);
    let partition = dataplane::apply_partition(
        &netns,
        &id("r1"),
        &PartitionSpec {
            drop_peers: vec![net.ips[1]],
        },
        in_secs(60),
    )
    .unwrap();
    let latency_spec = LatencySpec {
        delay: Duration::from_millis(10),
        jitter: Duration::ZERO,
        from_peers: vec![net.ips[1]],
        backend: Some(LatencyBackend::NfQueue),
    };
    let latency = dataplane::apply_latency(&netns, &id("r2"), &latency_spec, in_secs(60)).unwrap();
    let bandwidth = dataplane::apply_bandwidth(
        &netns,
        &id("r3"),
        &BandwidthSpec {
            rate: "1mbit".parse().unwrap(),
        },
        in_secs(60),
    )
    .unwrap();

    let removed = dataplane::reap_netns(&netns).unwrap();
    eprintln!(
        "reaped: {}",
        removed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert!(removed.contains(&ReapedItem::NftTable("schism_r1".into())));
    assert!(removed.contains(&ReapedItem::Qdisc("eth0".into())));
    assert!(
        removed.iter().any(
            |item| matches!(item, ReapedItem::IptablesRule(rule) if rule.contains("schism:r2"))
        )
    );
    assert!(net.reachable(0, 1));
    assert!(
        dataplane::reap_netns(&netns).unwrap().is_empty(),
        "nothing left the second time"
    );
    // Healing faults the reaper already removed is not an error.
    for result in dataplane::heal_all(vec![partition, latency, bandwidth]) {
        result.unwrap();
    }
}

fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

#[test]
fn pause_stops_a_process_until_heal_and_kill_ends_it() {
    require("process faults", &[]);
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let target = ProcessTarget::Pid(pid as i32);
    let paused = dataplane::pause_process(target, &id("pause"), in_secs(60)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(process_state(pid), Some('T'));
    paused.heal().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(process_state(pid), Some('S'));
    dataplane::kill_process(target).unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn pause_resumes_by_itself_at_the_deadline() {
    require("pause deadline", &[]);
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let fault = dataplane::pause_process(
        ProcessTarget::Pid(pid as i32),
        &id("pause_deadline"),
        Instant::now() + Duration::from_millis(300),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(process_state(pid), Some('S'));
    assert!(fault.is_reverted());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn missing_namespace_and_bad_input_give_clear_errors() {
    let error = dataplane::Netns::open("/run/netns/schism-does-not-exist").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("/run/netns/schism-does-not-exist"),
        "{error}"
    );
    assert!(
        "10furlongs"
            .parse::<dataplane::Rate>()
            .unwrap_err()
            .to_string()
            .contains("10mbit")
    );
}

const HELPER_ENV: &str = "SCHISM_TEST_FAULT_HOLDER";

/// What the fault holder works on: a namespace for the partition and the NFQUEUE delay, one
/// for the tbf qdisc, a peer address, and a process to pause.
struct HolderTargets {
    delayed: String,
    limited: String,
    peer: std::net::Ipv4Addr,
    paused: i32,
}

impl HolderTargets {
    fn encode(&self, mode: &str, seed: u64) -> String {
        format!(
            "{mode},{},{},{},{},{seed}",
            self.delayed, self.limited, self.peer, self.paused
        )
    }
}

/// Applies every kind of fault the guards cover, plus a partition.
fn hold_faults(t: &HolderTargets, tag: &str, deadline: Instant) -> Vec<dataplane::AppliedFault> {
    let delayed = dataplane::Netns::open(&t.delayed).unwrap();
    let limited = dataplane::Netns::open(&t.limited).unwrap();
    let partition = dataplane::apply_partition(
        &delayed,
        &id(&format!("{tag}_cut")),
        &PartitionSpec {
            drop_peers: vec![t.peer],
        },
        Instant::now() + Duration::from_secs(2),
    )
    .unwrap();
    let latency = dataplane::apply_latency(
        &delayed,
        &id(&format!("{tag}_slow")),
        &LatencySpec {
            delay: Duration::from_millis(200),
            jitter: Duration::ZERO,
            from_peers: vec![],
            backend: Some(LatencyBackend::NfQueue),
        },
        deadline,
    )
    .unwrap();
    let bandwidth = dataplane::apply_bandwidth(
        &limited,
        &id(&format!("{tag}_narrow")),
        &BandwidthSpec {
            rate: "1mbit".parse().unwrap(),
        },
        deadline,
    )
    .unwrap();
    let pause = dataplane::pause_process(
        ProcessTarget::Pid(t.paused),
        &id(&format!("{tag}_stop")),
        deadline,
    )
    .unwrap();
    vec![partition, latency, bandwidth, pause]
}

/// Not a test of its own: when a kill -9 test re-runs this binary with `HELPER_ENV` set, this
/// function holds faults until it is killed. Mode `hold`: applies them once, reports READY
/// and waits. Mode `cycle`: applies and heals them over and over at seeded intervals,
/// reporting READY after the first round, so that a kill lands in any phase.
#[test]
fn helper_process_that_holds_faults_until_killed() {
    let Ok(config) = std::env::var(HELPER_ENV) else {
        return;
    };
    let parts: Vec<&str> = config.split(',').collect();
    let targets = HolderTargets {
        delayed: parts[1].to_string(),
        limited: parts[2].to_string(),
        peer: parts[3].parse().unwrap(),
        paused: parts[4].parse().unwrap(),
    };
    let mut rng: u64 = parts[5].parse().unwrap();
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    match parts[0] {
        "hold" => {
            let faults = hold_faults(&targets, "held", in_secs(600));
            println!("READY");
            std::thread::sleep(Duration::from_secs(600));
            drop(faults);
        }
        _ => {
            for round in 0.. {
                let faults = hold_faults(&targets, "cycled", in_secs(600));
                if round == 0 {
                    println!("READY");
                }
                std::thread::sleep(Duration::from_millis(next(40)));
                assert!(dataplane::heal_all(faults).iter().all(Result::is_ok));
                std::thread::sleep(Duration::from_millis(next(10)));
            }
        }
    }
}

/// A namespace pair, a process to pause, and a way to start fault holders on them.
struct HolderRig {
    net: TestNet,
    victim: std::process::Child,
}

impl HolderRig {
    fn new() -> Self {
        Self {
            net: TestNet::new(3),
            victim: Command::new("sleep").arg("600").spawn().unwrap(),
        }
    }

    fn targets(&self) -> HolderTargets {
        HolderTargets {
            delayed: self.net.path(0),
            limited: self.net.path(2),
            peer: self.net.ips[1],
            paused: self.victim.id() as i32,
        }
    }

    fn start(&self, mode: &str, seed: u64) -> (Holder, Instant) {
        let mut holder = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_process_that_holds_faults_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, self.targets().encode(mode, seed))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
        let holder = Holder(holder);
        assert!(
            lines.any(|line| line.unwrap().contains("READY")),
            "helper did not get ready"
        );
        (holder, started)
    }

    /// What of the faults is still in place: Schism's nftables tables, its qdiscs, its
    /// NFQUEUE rules and a stopped victim.
    fn guarded_leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for node in [0, 2] {
            let tables = self.net.exec(node, "nft", &["list", "tables"]);
            for line in String::from_utf8_lossy(&tables.stdout).lines() {
                if line.contains(dataplane::TABLE_PREFIX) {
                    left.push(format!("n{node}: {line}"));
                }
            }
            let qdiscs = self.net.exec(node, "tc", &["qdisc", "show"]);
            for line in String::from_utf8_lossy(&qdiscs.stdout).lines() {
                if line.contains(dataplane::QDISC_HANDLE) {
                    left.push(format!("n{node}: {line}"));
                }
            }
            let rules = self
                .net
                .exec(node, "iptables", &["-w", "-t", "mangle", "-S"]);
            for line in String::from_utf8_lossy(&rules.stdout).lines() {
                if line.contains(dataplane::RULE_COMMENT_PREFIX) {
                    left.push(format!("n{node}: {line}"));
                }
            }
        }
        if process_state(self.victim.id()) == Some('T') {
            left.push(format!("process {} is still stopped", self.victim.id()));
        }
        left
    }

    fn wait_until_clean(&self, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let left = self.guarded_leftovers();
            if left.is_empty() || start.elapsed() > limit {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A running fault holder, killed if a test fails before killing it.
struct Holder(std::process::Child);

impl Holder {
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for HolderRig {
    fn drop(&mut self) {
        let _ = self.victim.kill();
        let _ = self.victim.wait();
    }
}

#[test]
fn sigkill_of_the_fault_holder_undoes_every_fault_with_no_further_command() {
    require("kill -9 of fault holder", NET_TOOLS);
    let rig = HolderRig::new();
    let (mut holder, applied_at) = rig.start("hold", 1);
    assert!(
        rig.net.unreachable(1, 0),
        "partition is active while the holder runs"
    );
    // The partition's table, the NFQUEUE rule, the tbf qdisc and the stopped process.
    let held = rig.guarded_leftovers();
    assert_eq!(held.len(), 4, "{held:?}");

    holder.kill();
    let killed_at = Instant::now();
    // Every fault has a guard, which acts once its owner is gone; the deadlines (ten
    // minutes away) are not waited for.
    let left = rig.wait_until_clean(Duration::from_secs(3));
    assert!(left.is_empty(), "left behind after the kill: {left:?}");
    let undone_in = killed_at.elapsed();
    assert!(undone_in < Duration::from_secs(3), "{undone_in:?}");
    println!("guarded faults undone {undone_in:?} after the holder's SIGKILL");
    // The partition expires in the kernel.
    std::thread::sleep(
        (applied_at + Duration::from_millis(2600)).saturating_duration_since(Instant::now()),
    );
    let (loss, rtt) = rig.net.ping(1, rig.net.ips[0], 5, "0.05");
    assert_eq!(loss, 0.0, "traffic flows after the deadline without Schism");
    assert!(
        rtt.unwrap() < Duration::from_millis(50),
        "no delay left: {rtt:?}"
    );
    // The reaper finds nothing: not even the partition's table is left.
    assert!(dataplane::reap_netns(&rig.net.netns(0)).unwrap().is_empty());
    assert!(dataplane::reap_netns(&rig.net.netns(2)).unwrap().is_empty());
}

/// The crash campaign for the data plane: a holder that applies and heals faults in a loop is
/// killed at seeded moments (applying, holding, healing); each time, with no command after
/// the kill, every guarded fault must be gone.
#[test]
fn sigkill_at_seeded_moments_of_apply_hold_and_heal_leaves_no_guarded_fault() {
    require("crash campaign of the fault holder", NET_TOOLS);
    let rig = HolderRig::new();
    let mut rng: u64 = 0x5c15_2026;
    let mut survived = 0;
    const KILLS: usize = 20;
    for kill in 0..KILLS {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (mut holder, _) = rig.start("cycle", rng | 1);
        let after = Duration::from_millis((rng >> 33) % 400);
        std::thread::sleep(after);
        holder.kill();
        let left = rig.wait_until_clean(Duration::from_secs(3));
        assert!(
            left.is_empty(),
            "kill {kill} ({after:?} after ready) left: {left:?}"
        );
        survived += 1;
    }
    println!("fault holder: {survived} of {KILLS} kills survived, no fault left");
}
