//! Soak of `schism run`: fifty short experiments back to back against a local Redis cluster in
//! network namespaces, each with two faults of a seeded mix (partition, latency, loss,
//! bandwidth, pause, pod kill) in a 2-second window. After every run nothing of it may be left:
//! no namespace, no run record, no data directory, no node process, no stopped process.
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

fn out_dir(i: u64) -> PathBuf {
    std::env::temp_dir().join(format!("schism-soak-{}-{i}", std::process::id()))
}

#[test]
fn fifty_short_local_experiments_back_to_back_leave_nothing_between_them() {
    require("the soak", &["ip", "nft", "tc", "iptables", "redis-server"]);
    let started = Instant::now();
    let mut verdicts = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..RUNS {
        let dir = out_dir(i);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let manifest_path = dir.join("soak.yaml");
        std::fs::write(&manifest_path, manifest(i)).unwrap();
        let mut run = Command::new(env!("CARGO_BIN_EXE_schism"))
            .args(["run", "--quiet", "--out"])
            .arg(&dir)
            .arg(&manifest_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("schism runs");
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
