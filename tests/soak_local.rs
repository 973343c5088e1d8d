//! Soak of `schism run`: fifty short experiments back to back against a local Redis cluster in
//! network namespaces, each with two faults of a seeded mix (partition, latency, loss,
//! bandwidth, pause, pod kill) in a 2-second window. After every run nothing of it may be left:
//! no namespace, no run record, no node cgroup, no data directory, no node process, no stopped
//! process.
//!
//! And its crash campaign: `schism run` SIGKILLed at seeded moments of every phase (cluster
//! set-up, a fault injected, a fault healing, the check, the report being written). With no
//! command after the kill, nothing may be left, and a report is there only whole, with the
//! verdict of a run that finished.
//!
//! Other tests may run local clusters at the same time, so each run is told apart by its run
//! id, read from its record (`/run/schism/<id>/run.json`, owner = the `schism run` process)
//! while it runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schism::operator::agent::discovery::process_state;
use support::require;

const RUNS: u64 = 50;

/// The faults the soak mixes, as `faults:` entries without their window.
const FAULTS: &[&str] = &[
    "partition: {shape: isolate-one}",
    "latency: {delay: 30ms, jitter: 10ms, targets: {mode: one}}",
    "loss: {percent: 30, targets: {mode: all}}",
    "bandwidth: {rate: 1mbit, targets: {mode: one}}",
    "pause: {targets: {mode: one}}",
    "podKill: {targets: {mode: one}}",
];

/// Run `i`'s two faults: every pair of kinds comes up within the fifty runs.
fn manifest(i: u64) -> String {
    let first = FAULTS[(i % 6) as usize];
    let second = FAULTS[((i / 6 + i + 1) % 6) as usize];
    // podKill has no window: the node restarts after restartDelay.
    let window = |fault: &str, start: &str| {
        if fault.starts_with("podKill") {
            format!("      start: {start}\n")
        } else {
            format!("      start: {start}\n      duration: 700ms\n")
        }
    };
    format!(
        "apiVersion: schism.dev/v1alpha1
kind: Chaos
metadata:
  name: soak-{i}
spec:
  target:
    local:
      nodes: 3
      command: >-
        redis-server --bind {{ip}} --port 6379 --dir {{dataDir}} --save \"\"
        --appendonly no --protected-mode no
      ready:
        tcp: {{port: 6379}}
      restartDelay: 300ms
  duration: 2s
  seed: {i}
  faults:
    - name: first
      {first}
{}    - name: second
      {second}
{}  workload:
    client: redis
    model: register
    keys: 2
    concurrency: 3
    rate: 100
    timeout: 300ms
  availability:
    tcp: {{port: 6379}}
    interval: 100ms
",
        window(first, "200ms"),
        window(second, "1100ms"),
    )
}

/// The run id in the record whose owner is `pid`, if one exists yet.
fn run_owned_by(pid: u32) -> Option<String> {
    std::fs::read_dir("/run/schism")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|entry| {
            let text = std::fs::read_to_string(entry.path().join("run.json")).ok()?;
            let record: serde_json::Value = serde_json::from_str(&text).ok()?;
            (record["ownerPid"].as_u64()? == u64::from(pid))
                .then(|| record["runId"].as_str().map(str::to_string))?
        })
}

/// What is left of run `id`, whose output (and node data) went to `out`, described; empty
/// when nothing is.
fn leftovers_of(id: &str, out: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let prefix = format!("sx-{id}-");
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            left.push(format!("namespace {name}"));
        }
    }
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/freezer",
    ] {
        let cgroup = Path::new(root).join("schism").join(id);
        if cgroup.exists() {
            left.push(format!("cgroup {}", cgroup.display()));
        }
    }
    let record = PathBuf::from(format!("/run/schism/{id}"));
    let data: Vec<PathBuf> = (1..=3)
        .map(|n| out.join(format!("nodes/n{n}/data")))
        .collect();
    for path in std::iter::once(&record).chain(&data) {
        if path.exists() {
            left.push(format!("folder {}", path.display()));
        }
    }
    let needle = out.display().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| process_state(&s))
                .unwrap_or('?');
            left.push(format!("process {pid} (state {state})"));
        }
    }
    left
}

/// Starts `schism run` on `manifest` with a fresh output folder of run `i`; returns both.
fn start_run(i: u64, manifest: &str, stderr: Stdio) -> (PathBuf, std::process::Child) {
    let dir = out_dir(i);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest_path = dir.join("experiment.yaml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_schism"))
        .args(["run", "--quiet", "--out"])
        .arg(&dir)
        .arg(&manifest_path)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("schism runs");
    (dir, run)
}

fn out_dir(i: u64) -> PathBuf {
    std::env::temp_dir().join(format!("schism-soak-{}-{i}", std::process::id()))
}

#[test]
fn fifty_short_local_experiments_back_to_back_leave_nothing_between_them() {
    require("the soak", &["ip", "nft", "tc", "iptables", "redis-server"]);
    let started = Instant::now();
    let mut verdicts = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..RUNS {
        let (dir, mut run) = start_run(i, &manifest(i), Stdio::piped());
        let pid = run.id();
        let mut id = None;
        let status = loop {
            if id.is_none() {
                id = run_owned_by(pid);
            }
            if let Some(status) = run.try_wait().unwrap() {
                break status;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        use std::io::Read as _;
        run.stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let id = id.unwrap_or_else(|| panic!("run {i}: no run record was seen\n{stderr}"));
        let result: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("result.json"))
                .unwrap_or_else(|e| panic!("run {i}: no result.json ({e})\n{stderr}")),
        )
        .unwrap();
        let verdict = result["verdict"].as_str().unwrap_or_default().to_string();
        // 0 Pass, 1 Fail, 2 Inconclusive: anything else is the run itself failing.
        assert!(
            matches!(status.code(), Some(0..=2))
                && ["Pass", "Fail", "Inconclusive"].contains(&verdict.as_str()),
            "run {i}: exit {status}, verdict {verdict:?}\n{}\n{stderr}",
            manifest(i)
        );
        let faults = result["faults"].as_array().map_or(0, Vec::len);
        assert_eq!(
            faults, 2,
            "run {i}: both faults are in the timeline: {result:#}"
        );
        let left = leftovers_of(&id, &dir);
        assert!(left.is_empty(), "run {i} ({id}) left: {left:?}");
        *verdicts.entry(verdict).or_default() += 1;
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "soak: {RUNS} local experiments in {:.1} s, verdicts {verdicts:?}, nothing left after any",
        started.elapsed().as_secs_f64()
    );
}

/// The kill campaign's experiment: a partition, then a pause, in a 2-second window.
fn kill_manifest(i: u64) -> String {
    format!(
        "apiVersion: schism.dev/v1alpha1
kind: Chaos
metadata:
  name: killed-{i}
spec:
  target:
    local:
      nodes: 3
      command: >-
        redis-server --bind {{ip}} --port 6379 --dir {{dataDir}} --save \"\"
        --appendonly no --protected-mode no
      ready:
        tcp: {{port: 6379}}
  duration: 2s
  seed: {i}
  faults:
    - name: split
      partition: {{shape: isolate-one}}
      start: 200ms
      duration: 700ms
    - name: freeze
      pause: {{targets: {{mode: one}}}}
      start: 1100ms
      duration: 700ms
  workload:
    client: redis
    model: register
    keys: 2
    concurrency: 3
    rate: 100
    timeout: 300ms
  availability:
    tcp: {{port: 6379}}
    interval: 100ms
"
    )
}

/// Whether any namespace of run `id` holds a table of Schism's.
fn partitioned(id: &str) -> bool {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&format!("sx-{id}-n")))
        .any(|name| {
            Command::new("ip")
                .args(["netns", "exec", &name, "nft", "list", "tables"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("schism_"))
        })
}

/// The moments a kill is aimed at.
#[derive(Clone, Copy, Debug)]
enum RunPhase {
    SettingUp,
    Injected,
    Healing,
    Checking,
    WritingReport,
}

#[test]
fn schism_run_killed_at_seeded_moments_of_every_phase_leaves_nothing_and_no_unearned_verdict() {
    require(
        "the run crash campaign",
        &["ip", "nft", "tc", "iptables", "redis-server"],
    );
    let phases = [
        RunPhase::SettingUp,
        RunPhase::Injected,
        RunPhase::Healing,
        RunPhase::Checking,
        RunPhase::WritingReport,
    ];
    let mut seed: u64 = 0x5c15_2026_0f0f;
    let mut below = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let mut survived = Vec::new();
    for (i, phase) in phases
        .iter()
        .flat_map(|p| std::iter::repeat_n(*p, 2))
        .enumerate()
    {
        let i = i as u64 + 1000;
        let (dir, mut run) = start_run(i, &kill_manifest(i), Stdio::null());
        let pid = run.id();
        let started = Instant::now();
        let wait = |what: &str, done: &mut dyn FnMut() -> bool| {
            while !done() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "run {i}: timed out waiting until {what}"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        let mut id = None;
        wait("its record is written", &mut || {
            id = run_owned_by(pid);
            id.is_some()
        });
        let id = id.unwrap();
        let delay = Duration::from_millis(match phase {
            RunPhase::SettingUp => below(150),
            RunPhase::Injected => below(400),
            RunPhase::Healing => below(30),
            RunPhase::Checking => below(300),
            RunPhase::WritingReport => 0,
        });
        match phase {
            RunPhase::SettingUp => {}
            RunPhase::Injected => wait("the partition is in", &mut || partitioned(&id)),
            RunPhase::Healing => {
                wait("the partition is in", &mut || partitioned(&id));
                wait("the partition heals", &mut || !partitioned(&id));
            }
            RunPhase::Checking => {
                // The window ends 2 s after the workload starts, soon after the partition.
                wait("the partition is in", &mut || partitioned(&id));
                std::thread::sleep(Duration::from_millis(1800));
            }
            RunPhase::WritingReport => wait("a report file appears", &mut || {
                std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("result.json"))
            }),
        }
        std::thread::sleep(delay);
        let finished_before_the_kill = run.try_wait().unwrap().is_some();
        let _ = run.kill();
        run.wait().unwrap();

        // No command now: the run's guards remove everything.
        let limit = Instant::now() + Duration::from_secs(5);
        let left = loop {
            let left = leftovers_of(&id, &dir);
            if left.is_empty() || Instant::now() > limit {
                break left;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            left.is_empty(),
            "run {i} killed {phase:?} +{delay:?} left: {left:?}"
        );
        // A report is whole or absent, and a verdict only comes with a run that finished
        // its check.
        let result = std::fs::read_to_string(dir.join("result.json")).ok();
        if let Some(text) = &result {
            let result: serde_json::Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("run {i}: a partial result.json ({e}): {text}"));
            assert!(
                ["Pass", "Fail", "Inconclusive"]
                    .contains(&result["verdict"].as_str().unwrap_or("")),
                "run {i}: {result:#}"
            );
            assert!(
                result["consistency"]["result"].is_string(),
                "run {i}: a verdict without its check: {result:#}"
            );
        } else {
            assert!(
                !finished_before_the_kill,
                "run {i} finished yet wrote no result"
            );
        }
        let junit = std::fs::read_to_string(dir.join("junit.xml")).ok();
        if let Some(xml) = &junit {
            assert!(
                xml.trim_end().ends_with("</testsuites>"),
                "run {i}: a partial junit.xml: {xml}"
            );
        }
        survived.push(format!(
            "{phase:?} +{delay:?}: {}",
            if result.is_some() {
                "report whole"
            } else {
                "no report"
            }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "schism run: {} of {} kills survived, nothing left: {survived:?}",
        survived.len(),
        phases.len() * 2
    );
}
