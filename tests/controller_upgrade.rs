//! A rolling upgrade of the controller, played with the real `schism controller` binary
//! against the API server double: the new replica is Ready while the old one still leads, the
//! old one gives the leader Lease up as it stops, and the experiments running meanwhile —
//! in runner pods — finish once with their verdict. With and without leader election.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/operator.rs"]
mod operator;

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use operator::{Cluster, ClusterOptions, JOBS, NAMESPACE, chaos, probe_target, wait_for};
use schism::api::Chaos;
use tokio::process::{Child, Command};

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Replica {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Replica {
    fn start(cluster: &Cluster, name: &'static str, election: bool) -> Replica {
        let port = free_port();
        let mut args = vec![
            "controller".to_owned(),
            format!("--watch-namespace={NAMESPACE}"),
            format!("--metrics-address=127.0.0.1:{port}"),
            "--runner-image=schism:test".to_owned(),
            "--check-timeout=60s".to_owned(),
        ];
        if election {
            args.push("--leader-lease=schism-controller".into());
            args.push(format!(
                "--leader-lease-namespace={}",
                chart::RELEASE_NAMESPACE
            ));
        } else {
            args.push("--no-leader-election".into());
        }
        let child = Command::new(env!("CARGO_BIN_EXE_schism"))
            .args(&args)
            .env("KUBECONFIG", &cluster.controller_kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(cluster.dir.join(format!("{name}.stderr"))).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the schism binary runs");
        Replica { name, port, child }
    }

    /// `/readyz` answers 200.
    async fn ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200)
    }

    async fn wait_ready(&self) {
        let started = Instant::now();
        while !self.ready().await {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} never became Ready",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, as the kubelet sends when a rollout replaces the pod; waits for the exit.
    async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap() as i32;
        // SAFETY: kill has no memory-safety preconditions; the pid is our child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the replica stops on SIGTERM")
            .unwrap()
    }
}

fn holder(cluster: &Cluster) -> Option<String> {
    cluster
        .server
        .get(
            "leases.coordination.k8s.io",
            Some(chart::RELEASE_NAMESPACE),
            "schism-controller",
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

async fn rolling_upgrade(election: bool) {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("etcd", 3, 10);
    let port = probe_target().await;
    let old = Replica::start(&cluster, "controller-old", election);
    old.wait_ready().await;
    if election {
        wait_for("the old replica to lead", Duration::from_secs(20), || {
            holder(&cluster).as_deref() == Some("controller-old")
        })
        .await;
    }
    let chaoses: Api<Chaos> = Api::namespaced(cluster.server.client(), NAMESPACE);
    let spec = format!(
        "target: {{statefulSet: etcd}}\nduration: 8s\nfaults:\n- partition: {{shape: isolate-one}}\n  start: 1s\n  duration: 2s\n- pause: {{}}\n  start: 5s\n  duration: 1s\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\nassertions: {{minAvailability: 0.9}}\n"
    );
    chaoses
        .create(&PostParams::default(), &chaos("during", &spec))
        .await
        .unwrap();
    wait_for("the run to start", Duration::from_secs(20), || {
        cluster.status("during")["phase"] == "Running"
    })
    .await;

    // The rollout starts the new replica; it must be Ready before the old one goes, leader
    // or not — or the rollout would never finish.
    let new = Replica::start(&cluster, "controller-new", election);
    new.wait_ready().await;
    if election {
        assert_eq!(
            holder(&cluster).as_deref(),
            Some("controller-old"),
            "the new one is Ready as a standby"
        );
    }
    // An experiment created while both run.
    chaoses
        .create(&PostParams::default(), &chaos("overlap", &spec))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = Instant::now();
    let status = old.stop().await;
    assert!(
        status.success(),
        "the old replica ends cleanly on SIGTERM: {status:?}"
    );
    if election {
        wait_for("the new replica to lead", Duration::from_secs(10), || {
            holder(&cluster).as_deref() == Some("controller-new")
        })
        .await;
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "the released Lease was taken without waiting for it to expire"
        );
    }
    for name in ["during", "overlap"] {
        wait_for(
            &format!("{name}'s verdict"),
            Duration::from_secs(40),
            || cluster.status(name)["phase"] == "Completed",
        )
        .await;
        let status = cluster.status(name);
        assert_eq!(
            status["verdict"], "Pass",
            "{name} ran to its verdict through the upgrade: {status:#}"
        );
    }
    assert_eq!(
        cluster.server.objects(JOBS).len(),
        2,
        "one Job per experiment"
    );
    assert_eq!(cluster.runner_records().len(), 2, "no experiment ran twice");
    let _ = new.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_with_leader_election_hands_over_and_runs_every_experiment_once() {
    rolling_upgrade(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_without_leader_election_overlaps_safely() {
    rolling_upgrade(false).await;
}
