//! The operator under kills and over time, against the API server double with the real
//! `schism runner` binary for every Job:
//!
//! * runners SIGKILLed at seeded moments in every phase of their run (setting up, a fault
//!   injected, between faults, the second fault, concluding): the verdict is the one the runner
//!   had written before it died, else Inconclusive, never one it did not earn; every lease is
//!   released; no generation runs twice;
//! * `schism controller` SIGKILLed at seeded moments (just after a Chaos is made, mid-run, while
//!   runners conclude, during deletion) and started again: every experiment runs exactly once,
//!   concludes with its runner's verdict, and deletion completes;
//! * a long-running controller through waves of short experiments: its memory and open files
//!   stay flat.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/operator.rs"]
mod operator;

use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use operator::{
    CHAOSES, Cluster, ClusterOptions, JOBS, LEASES, NAMESPACE, chaos, probe_target, wait_for,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schism::api::Chaos;
use schism::operator::targets::BlastRadius;
use serde_json::Value;

fn chaoses(cluster: &Cluster) -> Api<Chaos> {
    Api::namespaced(cluster.server.client(), NAMESPACE)
}

/// Two faults in a 3-second run: a partition of one pod, then a pause of all three.
fn spec(port: u16, seed: u64) -> String {
    format!(
        "target: {{statefulSet: db}}\nduration: 3s\nseed: {seed}\nfaults:\n- name: split\n  partition: {{shape: isolate-one}}\n  start: 300ms\n  duration: 1s\n- name: freeze\n  pause: {{targets: {{mode: all}}}}\n  start: 1800ms\n  duration: 500ms\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\nassertions: {{minAvailability: 0.5}}\n"
    )
}

fn concluded(status: &Value) -> bool {
    matches!(status["phase"].as_str(), Some("Completed" | "Error"))
}

fn jobs_of(cluster: &Cluster, name: &str) -> usize {
    cluster
        .server
        .objects(JOBS)
        .iter()
        .filter(|j| {
            j["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["name"] == name))
        })
        .count()
}

/// The phases of a runner's run a kill is aimed at, as windows after the runner started.
const RUNNER_PHASES: &[(&str, u64, u64)] = &[
    ("setting up", 0, 250),
    ("partition injected", 450, 1200),
    ("between faults", 1350, 1750),
    ("pause injected", 1850, 2250),
    ("concluding", 2950, 3400),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_killed_at_seeded_moments_in_every_phase_never_get_a_verdict_they_did_not_earn() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("db", 3, 10);
    let port = probe_target().await;
    let (_ctx, _stop, controller) = cluster.controller(BlastRadius::default());
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let mut survived = Vec::new();
    // Two rounds, each with one runner per phase running at once.
    for round in 0..2 {
        let mut plans = Vec::new();
        for (phase, from, to) in RUNNER_PHASES {
            let name = format!("kill-{round}-{}", plans.len());
            let at = Duration::from_millis(rng.random_range(*from..*to));
            chaoses(&cluster)
                .create(
                    &PostParams::default(),
                    &chaos(&name, &spec(port, round * 10 + plans.len() as u64)),
                )
                .await
                .unwrap();
            plans.push((name, *phase, at));
        }
        // Each runner is killed at its moment after it started; all of them run at once.
        let earned = futures::future::join_all(
            plans
                .into_iter()
                .map(|(name, phase, at)| kill_runner_at(&cluster, name, phase, at)),
        )
        .await;
        for (name, phase, at, written) in earned {
            wait_for(
                &format!("{name} to conclude"),
                Duration::from_secs(30),
                || concluded(&cluster.status(&name)),
            )
            .await;
            let status = cluster.status(&name);
            let expected = written.clone().unwrap_or_else(|| "Inconclusive".into());
            assert_eq!(
                status["verdict"],
                expected.as_str(),
                "{name} killed at {at:?} ({phase}); the runner had written {written:?}: {status:#}"
            );
            if written.is_none() {
                let reason = status["reasons"][0].as_str().unwrap_or_default();
                assert!(reason.contains("SIGKILL"), "{name}: {status:#}");
            }
            survived.push(format!("{phase} at {at:?} → {expected}"));
        }
        wait_for("every lease released", Duration::from_secs(20), || {
            cluster.server.objects(LEASES).is_empty()
        })
        .await;
        for i in 0..RUNNER_PHASES.len() {
            let name = format!("kill-{round}-{i}");
            assert_eq!(jobs_of(&cluster, &name), 1, "{name}: one Job");
            let job = cluster.status(&name)["runner"]["job"]
                .as_str()
                .unwrap()
                .to_owned();
            let runs = cluster
                .runner_records()
                .iter()
                .filter(|r| r.job == job)
                .count();
            assert_eq!(runs, 1, "{name}: never run a second time");
        }
    }
    eprintln!(
        "runner kills survived: {} of {}",
        survived.len(),
        2 * RUNNER_PHASES.len()
    );
    for line in &survived {
        eprintln!("  {line}");
    }
    controller.abort();
}

/// Kills `name`'s runner `at` after it started. Answers what the runner had written as its
/// verdict when it died, and what the run had done by then.
async fn kill_runner_at(
    cluster: &Cluster,
    name: String,
    phase: &'static str,
    at: Duration,
) -> (String, &'static str, Duration, Option<String>) {
    let mut job = String::new();
    wait_for(&format!("{name}'s runner"), Duration::from_secs(30), || {
        let Some(named) = cluster.status(&name)["runner"]["job"]
            .as_str()
            .map(str::to_owned)
        else {
            return false;
        };
        job = named;
        cluster.runner_records().iter().any(|r| r.job == job)
    })
    .await;
    let started = cluster
        .runner_records()
        .iter()
        .find(|r| r.job == job)
        .unwrap()
        .started;
    tokio::time::sleep_until((started + at).into()).await;
    let running = cluster
        .runner_records()
        .iter()
        .any(|r| r.job == job && r.exit.is_none());
    assert!(
        running,
        "{name}: its runner ended before the kill at {at:?} ({phase})"
    );
    let leases: Vec<String> = cluster
        .server
        .objects(LEASES)
        .iter()
        .filter(|l| l["spec"]["chaos"] == name.as_str())
        .map(|l| {
            format!(
                "{}:{}",
                l["spec"]["faultId"].as_str().unwrap_or("?"),
                l["status"]["phase"].as_str().unwrap_or("new")
            )
        })
        .collect();
    // What the runner has written by now is all it ever writes. (Once it is dead the
    // controller concludes the run, so the status is read before the kill.)
    let written = cluster.status(&name)["verdict"].as_str().map(str::to_owned);
    cluster.kill_runner(&job);
    wait_for(
        &format!("{name}'s runner to die"),
        Duration::from_secs(5),
        || {
            cluster
                .runner_records()
                .iter()
                .any(|r| r.job == job && r.exit.is_some())
        },
    )
    .await;
    eprintln!(
        "  {name}: killed {at:?} after start ({phase}); leases then {leases:?}; verdict written {written:?}"
    );
    (name, phase, at, written)
}

fn start_controller(cluster: &Cluster) -> tokio::process::Child {
    cluster.controller_process("schism:test")
}

async fn kill_and_restart(
    cluster: &Cluster,
    controller: &mut tokio::process::Child,
    rng: &mut ChaCha8Rng,
) {
    controller.start_kill().unwrap();
    controller.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    *controller = start_controller(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_at_seeded_moments_runs_every_experiment_once_and_concludes_it() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("db", 3, 10);
    let port = probe_target().await;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut controller = start_controller(&cluster);
    let mut kills: Vec<String> = Vec::new();
    for round in 0..2 {
        let names: Vec<String> = (0..3).map(|i| format!("ctl-{round}-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            chaoses(&cluster)
                .create(
                    &PostParams::default(),
                    &chaos(name, &spec(port, round * 10 + i as u64)),
                )
                .await
                .unwrap();
        }
        // Just after the Chaos objects were made: before or while their Jobs are created.
        let at = rng.random_range(0..150);
        tokio::time::sleep(Duration::from_millis(at)).await;
        kill_and_restart(&cluster, &mut controller, &mut rng).await;
        kills.push(format!("set-up +{at} ms"));

        wait_for("every runner started", Duration::from_secs(30), || {
            names
                .iter()
                .all(|n| cluster.status(n)["phase"] == "Running")
        })
        .await;
        let at = rng.random_range(300..2000);
        tokio::time::sleep(Duration::from_millis(at)).await;
        kill_and_restart(&cluster, &mut controller, &mut rng).await;
        kills.push(format!("mid-run +{at} ms"));

        wait_for("a runner to end", Duration::from_secs(30), || {
            cluster
                .runner_records()
                .iter()
                .any(|r| r.exit.is_some() && names.iter().any(|n| r.job.starts_with(n.as_str())))
        })
        .await;
        let at = rng.random_range(0..200);
        tokio::time::sleep(Duration::from_millis(at)).await;
        kill_and_restart(&cluster, &mut controller, &mut rng).await;
        kills.push(format!("concluding +{at} ms"));

        wait_for(
            "every experiment concluded",
            Duration::from_secs(40),
            || names.iter().all(|n| concluded(&cluster.status(n))),
        )
        .await;
        // A runner exits just after writing its outcome.
        wait_for("every runner to exit", Duration::from_secs(20), || {
            cluster
                .runner_records()
                .iter()
                .filter(|r| names.iter().any(|n| r.job.starts_with(n.as_str())))
                .all(|r| r.exit.is_some())
        })
        .await;
        for name in &names {
            let status = cluster.status(name);
            let job = status["runner"]["job"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let runs: Vec<_> = cluster
                .runner_records()
                .into_iter()
                .filter(|r| r.job == job)
                .collect();
            assert_eq!(
                runs.len(),
                1,
                "{name} ran once: {runs:?}, jobs {:?}: {status:#}",
                cluster
                    .runner_records()
                    .iter()
                    .map(|r| r.job.clone())
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                runs[0].exit,
                Some(0),
                "{name}'s runner was never killed: {status:#}"
            );
            assert_eq!(jobs_of(&cluster, name), 1, "{name}: one Job");
            // The runner's own verdict stands: the controller's kills cost it nothing.
            assert!(
                matches!(status["verdict"].as_str(), Some("Pass" | "Fail")),
                "{name}: {status:#}"
            );
        }

        for name in &names {
            chaoses(&cluster)
                .delete(name, &DeleteParams::default())
                .await
                .unwrap();
        }
        let at = rng.random_range(0..150);
        tokio::time::sleep(Duration::from_millis(at)).await;
        kill_and_restart(&cluster, &mut controller, &mut rng).await;
        kills.push(format!("deleting +{at} ms"));
        wait_for("every Chaos gone", Duration::from_secs(30), || {
            names
                .iter()
                .all(|n| cluster.server.get(CHAOSES, Some(NAMESPACE), n).is_none())
        })
        .await;
    }
    wait_for("every lease released", Duration::from_secs(20), || {
        cluster.server.objects(LEASES).is_empty()
    })
    .await;
    eprintln!(
        "controller kills survived: {} ({})",
        kills.len(),
        kills.join(", ")
    );
    let _ = controller.kill().await;
}

/// `VmRSS` in KiB and the number of open descriptors of a process.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

const WAVES: usize = 6;
const PER_WAVE: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_controller_keeps_flat_memory_and_descriptors_through_waves_of_experiments()
{
    let cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_stateful_set("db", 3, 10);
    let port = probe_target().await;
    let mut controller = start_controller(&cluster);
    let pid = controller.id().unwrap();
    let mut samples = Vec::new();
    for wave in 0..WAVES {
        let wave_started = std::time::Instant::now();
        let names: Vec<String> = (0..PER_WAVE).map(|i| format!("wave-{wave}-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let spec = format!(
                "target: {{statefulSet: db}}\nduration: 1s\nseed: {}\nfaults:\n- partition: {{shape: isolate-one}}\n  start: 200ms\n  duration: 500ms\navailability: {{tcp: {{port: {port}}}, interval: 100ms}}\n",
                wave * PER_WAVE + i
            );
            chaoses(&cluster)
                .create(&PostParams::default(), &chaos(name, &spec))
                .await
                .unwrap();
        }
        wait_for("the wave to conclude", Duration::from_secs(40), || {
            names.iter().all(|n| concluded(&cluster.status(n)))
        })
        .await;
        for name in &names {
            chaoses(&cluster)
                .delete(name, &DeleteParams::default())
                .await
                .unwrap();
        }
        let concluded_at = wave_started.elapsed();
        wait_for("the wave to be gone", Duration::from_secs(30), || {
            names
                .iter()
                .all(|n| cluster.server.get(CHAOSES, Some(NAMESPACE), n).is_none())
        })
        .await;
        // Let the watches settle before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!(
            "  wave {wave}: concluded after {concluded_at:?}, gone after {:?}",
            wave_started.elapsed()
        );
        samples.push(footprint(pid));
    }
    eprintln!(
        "controller through {WAVES} waves of {PER_WAVE} experiments: RSS KiB {:?}, descriptors {:?}",
        samples.iter().map(|s| s.0).collect::<Vec<_>>(),
        samples.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    // The first waves warm the caches, the allocator and the connection pool up; from then
    // on nothing may grow with the number of experiments run.
    let (rss_warm, fds_warm) = samples[1];
    let (rss_end, fds_end) = samples[WAVES - 1];
    assert!(fds_end <= fds_warm + 4, "descriptors grew: {samples:?}");
    assert!(
        rss_end <= rss_warm + (rss_warm / 5).max(4096),
        "memory grew: {samples:?}"
    );
    let _ = controller.kill().await;
}
