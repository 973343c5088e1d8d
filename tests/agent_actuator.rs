//! The node agent's actuator against real network namespaces: pods are found through a fake
//! `/proc` tree whose `ns/net` links point at namespaces this test created, and faults are
//! checked by sending traffic between those namespaces only.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/fake_proc.rs"]
mod fake_proc;
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cgroup::{CGROUP_ROOT, Counter, Hierarchy, PodCgroup};
use fake_proc::{FakeProc, SleepingProcess};
use schism::dataplane::{FaultId, LatencySpec, PartitionSpec, ReapedItem};
use schism::operator::agent::journal::{HeldPause, PauseJournal, PauseRecord, ProcessStamp};
use schism::operator::agent::{
    Actuator, ActuatorError, FaultPlan, LeaseKey, PlannedFault, ProcSnapshot,
};
use support::{TestNet, require, run};

const NET_TOOLS: &[&str] = &["ip", "nft", "tc", "iptables", "ping"];
const POD_A: &str = "6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11";
const POD_B: &str = "0a0b0c0d-1111-2222-3333-444455556666";

fn key(name: &str) -> LeaseKey {
    LeaseKey {
        namespace: "demo".into(),
        name: name.into(),
        uid: format!("uid-of-{name}"),
    }
}

fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// Two pods, A in the test's namespace 0 and B in namespace 1, each with two processes.
fn two_pods(net: &TestNet) -> FakeProc {
    let proc = FakeProc::new();
    for (uid, node) in [(POD_A, 0), (POD_B, 1)] {
        for _ in 0..2 {
            proc.pod_process(proc.next_unused_pid(), uid, &net.path(node), 'S');
        }
    }
    proc
}

fn partition_from(net: &TestNet, peer: usize) -> FaultPlan {
    FaultPlan {
        id: FaultId::new("agent_cut").unwrap(),
        fault: PlannedFault::Partition(PartitionSpec {
            drop_peers: vec![net.ips[peer]],
        }),
    }
}

/// Field 22 of a real process's stat: its start time.
fn start_time_of(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    schism::operator::agent::discovery::start_time(&stat).unwrap()
}

fn pod(proc: &FakeProc, uid: &str) -> schism::operator::agent::PodProcesses {
    ProcSnapshot::scan(proc.root())
        .unwrap()
        .pod(uid)
        .expect("pod in fake proc")
}

fn nft_tables(net: &TestNet, node: usize) -> String {
    String::from_utf8_lossy(&net.exec(node, "nft", &["list", "tables"]).stdout).into_owned()
}

#[test]
fn partition_lease_cuts_the_pod_off_its_peer_until_reverted() {
    require("agent partition", NET_TOOLS);
    let net = TestNet::new(2);
    let proc = two_pods(&net);
    let actuator = Actuator::new(proc.root());
    assert!(net.reachable(0, 1));

    let mechanism = actuator
        .apply(
            &key("cut"),
            &partition_from(&net, 1),
            &pod(&proc, POD_A),
            in_secs(60),
        )
        .unwrap();
    assert_eq!(mechanism, "nftables");
    assert!(actuator.holds(&key("cut")));
    assert!(net.unreachable(0, 1), "pod A cannot reach B");
    assert!(net.unreachable(1, 0), "pod B cannot reach A");

    assert!(actuator.revert(&key("cut")).unwrap());
    assert!(!actuator.holds(&key("cut")));
    assert!(net.reachable(0, 1) && net.reachable(1, 0));
    assert!(
        !actuator.revert(&key("cut")).unwrap(),
        "nothing left to revert"
    );
}

#[test]
fn fault_ends_at_its_deadline_without_any_call_to_the_agent() {
    require("agent deadline", NET_TOOLS);
    let net = TestNet::new(2);
    let proc = two_pods(&net);
    let actuator = Actuator::new(proc.root());
    let deadline = Instant::now() + Duration::from_millis(1500);
    actuator
        .apply(
            &key("short"),
            &partition_from(&net, 1),
            &pod(&proc, POD_A),
            deadline,
        )
        .unwrap();
    assert!(net.unreachable(0, 1));

    std::thread::sleep(
        deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(300),
    );
    assert!(
        net.reachable(0, 1),
        "the watchdog reverted the partition at the deadline"
    );
    assert!(!nft_tables(&net, 0).contains("schism_"), "table removed");
    // The loop reports it later; reverting a fault that already ended is not an error.
    assert!(actuator.revert(&key("short")).unwrap());
}

#[test]
fn applying_a_lease_again_replaces_it_instead_of_stacking_a_second_copy() {
    require("agent reapply", NET_TOOLS);
    let net = TestNet::new(2);
    let proc = two_pods(&net);
    let actuator = Actuator::new(proc.root());
    let plan = partition_from(&net, 1);
    let pod_a = pod(&proc, POD_A);
    actuator
        .apply(&key("twice"), &plan, &pod_a, in_secs(60))
        .unwrap();
    actuator
        .apply(&key("twice"), &plan, &pod_a, in_secs(60))
        .unwrap();
    assert_eq!(nft_tables(&net, 0).matches("schism_agent_cut").count(), 1);
    assert!(net.unreachable(0, 1));
    actuator.revert(&key("twice")).unwrap();
    assert!(net.reachable(0, 1));
}

#[test]
fn latency_lease_slows_the_pod_and_reports_its_mechanism() {
    require("agent latency", NET_TOOLS);
    let net = TestNet::new(2);
    let proc = two_pods(&net);
    let actuator = Actuator::new(proc.root());
    let plan = FaultPlan {
        id: FaultId::new("agent_slow").unwrap(),
        fault: PlannedFault::Latency(LatencySpec {
            delay: Duration::from_millis(80),
            jitter: Duration::ZERO,
            from_peers: vec![],
            backend: None,
        }),
    };
    let mechanism = actuator
        .apply(&key("slow"), &plan, &pod(&proc, POD_A), in_secs(60))
        .unwrap();
    assert!(
        ["netem", "nfqueue"].contains(&mechanism),
        "mechanism {mechanism}"
    );
    let (loss, rtt) = net.ping(1, net.ips[0], 5, "0.1");
    assert_eq!(loss, 0.0);
    assert!(rtt.unwrap() >= Duration::from_millis(75), "rtt {rtt:?}");

    actuator.revert(&key("slow")).unwrap();
    let (_, rtt) = net.ping(1, net.ips[0], 5, "0.1");
    assert!(
        rtt.unwrap() < Duration::from_millis(40),
        "rtt {rtt:?} after revert"
    );
}

#[test]
fn pause_lease_stops_every_process_of_the_pod_until_reverted() {
    require("agent pause", &[]);
    let first = SleepingProcess::start();
    let second = SleepingProcess::start();
    let bystander = SleepingProcess::start();
    let proc = FakeProc::new();
    proc.pod_process(first.pid(), POD_A, "/nonexistent", 'S');
    proc.pod_process(second.pid(), POD_A, "/nonexistent", 'S');
    proc.pod_process(bystander.pid(), POD_B, "/nonexistent", 'S');
    let actuator = Actuator::new(proc.root());
    let plan = FaultPlan {
        id: FaultId::new("agent_freeze").unwrap(),
        fault: PlannedFault::Pause,
    };

    let mechanism = actuator
        .apply(&key("freeze"), &plan, &pod(&proc, POD_A), in_secs(60))
        .unwrap();
    assert_eq!(mechanism, "SIGSTOP");
    assert!(first.wait_for_state('T') && second.wait_for_state('T'));
    // A process just started may still be running ('R') rather than asleep; either way it
    // must not be stopped ('T').
    assert_ne!(bystander.state(), 'T', "another pod's process is untouched");

    actuator.revert(&key("freeze")).unwrap();
    assert!(first.wait_for_state('S') && second.wait_for_state('S'));
}

/// Freezes pod A's real cgroup in `hierarchy` through the actuator, as a lease's pause does.
fn pause_freezes_the_whole_pod(hierarchy: Hierarchy) {
    require("agent freezer pause", &["sh", "sleep"]);
    let cgroup = PodCgroup::new(hierarchy, POD_A);
    let proc = FakeProc::new();
    let counter = Counter::start(proc.root().join("count-1"));
    cgroup.add(counter.pid());
    // The scan saw only the shell; the `sleep` it forks every 20 ms is in the cgroup too.
    proc.process(counter.pid(), &cgroup.proc_file(), None, 'S');
    let bystander = SleepingProcess::start();
    proc.pod_process(bystander.pid(), POD_B, "/nonexistent", 'S');
    let journal = PauseJournal::open(proc.root().join("schism-pauses")).unwrap();
    let actuator = Actuator::new(proc.root())
        .with_cgroup_root(CGROUP_ROOT)
        .with_journal(journal.clone());
    let plan = FaultPlan {
        id: FaultId::new("agent_freeze").unwrap(),
        fault: PlannedFault::Pause,
    };

    let mechanism = actuator
        .apply(&key("freeze"), &plan, &pod(&proc, POD_A), in_secs(60))
        .unwrap();
    assert_eq!(mechanism, "freezer");
    assert!(
        cgroup.frozen(),
        "the kernel reports the pod's cgroup frozen"
    );
    assert!(
        !counter.advances(),
        "the pod's process and its forks are frozen"
    );
    let records = journal.records().unwrap().0;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].held,
        HeldPause::Freezer {
            dir: cgroup.pod_dir.clone()
        },
        "the pause is journalled before it is made"
    );
    // A process that joins the pod while it is paused (an exec, a restarted container) is
    // frozen too: SIGSTOP would have missed it.
    let late = Counter::start(proc.root().join("count-2"));
    cgroup.add(late.pid());
    assert!(
        !late.advances(),
        "a process that joined the frozen pod is frozen"
    );
    assert_ne!(bystander.state(), 'T', "another pod's process is untouched");

    actuator.revert(&key("freeze")).unwrap();
    assert!(!cgroup.frozen());
    assert!(
        counter.advances() && late.advances(),
        "thawed, both run again"
    );
    assert!(
        journal.records().unwrap().0.is_empty(),
        "a reverted pause is forgotten"
    );
}

#[test]
fn pause_freezes_the_pods_v1_cgroup_forks_and_late_joiners_included() {
    pause_freezes_the_whole_pod(Hierarchy::V1Freezer);
}

#[test]
fn pause_freezes_the_pods_v2_cgroup_forks_and_late_joiners_included() {
    pause_freezes_the_whole_pod(Hierarchy::V2);
}

#[test]
fn a_frozen_pod_is_thawed_by_the_reap_only_if_the_journal_names_it() {
    require("agent freezer reap", &["sh", "sleep"]);
    // Pod A was frozen by an agent whose container was killed with its guards; pod B's
    // cgroup was frozen by someone else (`docker pause` uses the freezer too).
    let ours = PodCgroup::new(Hierarchy::V1Freezer, POD_A);
    let theirs = PodCgroup::new(Hierarchy::V1Freezer, POD_B);
    let proc = FakeProc::new();
    let a = Counter::start(proc.root().join("count-a"));
    let b = Counter::start(proc.root().join("count-b"));
    ours.add(a.pid());
    theirs.add(b.pid());
    for cgroup in [&ours, &theirs] {
        std::fs::write(cgroup.pod_dir.join("freezer.state"), "FROZEN").unwrap();
    }
    assert!(!a.advances() && !b.advances());
    let journal = PauseJournal::open(proc.root().join("schism-pauses")).unwrap();
    journal
        .record(&PauseRecord {
            lease: "demo/gone".into(),
            lease_uid: "uid-of-gone".into(),
            pod_uid: POD_A.into(),
            held: HeldPause::Freezer {
                dir: ours.pod_dir.clone(),
            },
        })
        .unwrap();

    let actuator = Actuator::new(proc.root())
        .with_cgroup_root(CGROUP_ROOT)
        .with_journal(journal.clone());
    let snapshot = ProcSnapshot::scan(proc.root()).unwrap();
    let report = actuator.reap_node(&snapshot, &HashSet::new());

    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.thawed, vec![ours.pod_dir.clone()]);
    assert!(a.advances(), "the pod Schism froze runs again");
    assert!(!b.advances(), "a pod someone else froze stays frozen");
    assert!(journal.records().unwrap().0.is_empty());
}

#[test]
fn pod_sharing_the_node_network_namespace_is_refused() {
    require("agent hostNetwork", NET_TOOLS);
    let net = TestNet::new(2);
    let proc = FakeProc::new();
    // PID 1 of this fake node lives in namespace 0, and so does the pod: a hostNetwork pod.
    proc.process(1, "0::/init.scope\n", Some(&net.path(0)), 'S');
    proc.pod_process(proc.next_unused_pid(), POD_A, &net.path(0), 'S');
    let actuator = Actuator::new(proc.root());

    let error = actuator
        .apply(
            &key("host"),
            &partition_from(&net, 1),
            &pod(&proc, POD_A),
            in_secs(60),
        )
        .unwrap_err();
    assert!(
        matches!(error, ActuatorError::HostNetwork { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("hostNetwork"));
    assert!(!actuator.holds(&key("host")));
    assert!(!nft_tables(&net, 0).contains("schism_"));
    assert!(net.reachable(0, 1));
}

#[test]
fn start_up_reap_removes_leftovers_and_resumes_only_what_schism_paused_without_a_live_lease() {
    require("agent reap", NET_TOOLS);
    let net = TestNet::new(3);
    let proc = two_pods(&net);
    // Namespace 2 holds no pod, only another tool's process, and a table of Schism's name
    // (a local `schism run` on the same machine): the agent must not touch it.
    proc.process(
        proc.next_unused_pid(),
        "0::/system.slice/tool.service\n",
        Some(net.path(2).as_str()),
        'S',
    );
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.names[2],
            "nft",
            "add table inet schism_someone_elses",
        ],
    );
    // What an agent killed with SIGKILL leaves behind in pod A's namespace: a partition table
    // (here without kernel timeout) and a latency qdisc.
    let leftover = format!(
        "table inet schism_crashed {{ chain input {{ type filter hook input priority -300; policy accept; ip saddr {} drop; }}; }}",
        net.ips[1]
    );
    run("ip", &["netns", "exec", &net.names[0], "nft", &leftover]);
    run(
        "tc",
        &[
            "-n",
            &net.names[0],
            "qdisc",
            "add",
            "dev",
            "eth0",
            "root",
            "handle",
            "5c15:",
            "tbf",
            "rate",
            "100mbit",
            "burst",
            "32kb",
            "latency",
            "50ms",
        ],
    );
    // A delay-loop rule whose loop died with the agent (bypass lets traffic through).
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.names[0],
            "iptables",
            "-w",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-s",
            &net.ips[1].to_string(),
            "-m",
            "comment",
            "--comment",
            "schism:crashed",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "23573",
            "--queue-bypass",
        ],
    );
    assert!(net.unreachable(1, 0));
    // The crashed agent had paused a process of pod A, whose lease is gone, and one of pod
    // B, whose lease is live, and journalled both. A third process of pod A was stopped by
    // someone else (a debugger), and a fourth record names a pid now used by a process
    // Schism never stopped (its start time differs): neither is Schism's to resume.
    let paused_a = SleepingProcess::start();
    let paused_b = SleepingProcess::start();
    let stopped_by_someone = SleepingProcess::start();
    let reused = SleepingProcess::start();
    for (process, uid, node) in [
        (&paused_a, POD_A, 0),
        (&paused_b, POD_B, 1),
        (&stopped_by_someone, POD_A, 0),
        (&reused, POD_A, 0),
    ] {
        // SAFETY: plain syscall on a child this test started.
        unsafe { libc::kill(process.pid(), libc::SIGSTOP) };
        assert!(process.wait_for_state('T'));
        proc.pod_process(process.pid(), uid, &net.path(node), 'T');
    }
    let journal_dir = proc.root().join("schism-pauses");
    let journal = PauseJournal::open(&journal_dir).unwrap();
    for (lease, process, uid, start_offset) in [
        ("gone", &paused_a, POD_A, 0),
        ("live", &paused_b, POD_B, 0),
        ("reused", &reused, POD_A, 1),
    ] {
        let start_time = start_time_of(process.pid()) + start_offset;
        journal
            .record(&PauseRecord {
                lease: format!("demo/{lease}"),
                lease_uid: format!("uid-of-{lease}"),
                pod_uid: uid.into(),
                held: HeldPause::Processes {
                    processes: vec![ProcessStamp {
                        pid: process.pid(),
                        start_time,
                    }],
                },
            })
            .unwrap();
    }

    let actuator = Actuator::new(proc.root()).with_journal(journal.clone());
    let snapshot = ProcSnapshot::scan(proc.root()).unwrap();
    let live_pods: HashSet<String> = [POD_B.to_string()].into();
    let report = actuator.reap_node(&snapshot, &live_pods);

    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.namespaces, 2, "each namespace searched once");
    let removed: Vec<&ReapedItem> = report.removed.iter().map(|(_, item)| item).collect();
    assert!(removed.contains(&&ReapedItem::NftTable("schism_crashed".into())));
    assert!(removed.contains(&&ReapedItem::Qdisc("eth0".into())));
    assert!(
        removed.iter().any(
            |item| matches!(item, ReapedItem::IptablesRule(rule) if rule.contains("schism:crashed"))
        ),
        "{removed:?}"
    );
    assert!(net.reachable(1, 0), "the leftover partition is gone");
    assert_eq!(report.resumed, vec![paused_a.pid()]);
    assert!(paused_a.wait_for_state('S'));
    assert_eq!(paused_b.state(), 'T', "a pause with a live lease is kept");
    assert_eq!(
        stopped_by_someone.state(),
        'T',
        "a process Schism did not stop stays stopped"
    );
    assert_eq!(
        reused.state(),
        'T',
        "a reused pid is not the process Schism stopped"
    );
    let left: Vec<String> = journal
        .records()
        .unwrap()
        .0
        .into_iter()
        .map(|record| record.lease)
        .collect();
    assert_eq!(
        left,
        vec!["demo/live".to_string()],
        "resumed and stale records are forgotten; the live lease's stays for the loop"
    );
    let tables = net.exec(2, "nft", &["list", "tables"]);
    assert!(
        String::from_utf8_lossy(&tables.stdout).contains("schism_someone_elses"),
        "a namespace no pod is in is left alone"
    );
}

#[test]
fn dropping_the_actuator_reverts_what_it_holds() {
    require("agent shutdown", NET_TOOLS);
    let net = TestNet::new(2);
    let proc = two_pods(&net);
    let actuator = Actuator::new(proc.root());
    actuator
        .apply(
            &key("cut"),
            &partition_from(&net, 0),
            &pod(&proc, POD_B),
            in_secs(60),
        )
        .unwrap();
    assert!(net.unreachable(1, 0));
    drop(actuator);
    assert!(net.reachable(1, 0));
}
