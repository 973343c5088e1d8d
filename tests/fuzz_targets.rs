//! Runs every coverage-guided fuzz target (fuzz/, built by `bash scripts/fuzz.sh build`) for a
//! bounded time from its committed seeds, after replaying every input that once crashed it
//! (fuzz/regressions/<target>/). A crash, a hang past the per-input limit or memory past the
//! RSS limit fails the test, and the input that did it is kept and named in the failure.
//!
//! `SCHISM_FUZZ_SECONDS` sets the time per target (default 15 s).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One input may take this long before libFuzzer calls it a hang. The checkers run with
/// 200 ms budgets inside the targets, so anything near this is a budget that did not hold.
const HANG_SECONDS: u32 = 10;
/// Past this resident size libFuzzer stops with an out-of-memory report.
const RSS_LIMIT_MB: u32 = 2048;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fuzz_binary(target: &str) -> PathBuf {
    let profile = if std::env::var("SCHISM_FUZZ_RELEASE").is_ok_and(|v| v == "1") {
        "release"
    } else {
        "debug"
    };
    let dir = std::env::var_os("SCHISM_FUZZ_BIN_DIR").map_or_else(
        || {
            repo()
                .join("fuzz/target/x86_64-unknown-linux-gnu")
                .join(profile)
        },
        PathBuf::from,
    );
    let binary = dir.join(target);
    assert!(
        binary.is_file(),
        "fuzz target {target} is not built at {}: run `bash scripts/fuzz.sh build` \
         (needs the nightly toolchain and cargo-fuzz; scripts/install-deps.sh installs cargo-fuzz)",
        binary.display()
    );
    binary
}

fn seconds_per_target() -> u32 {
    std::env::var("SCHISM_FUZZ_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("SCHISM_FUZZ_SECONDS is a whole number of seconds")
        })
        .unwrap_or(15)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable regressions folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// What one fuzzing session reported.
struct Session {
    /// Inputs run in all, the seeds included.
    runs: u64,
    /// Inputs run to load the seeds, before fuzzing began.
    seeds: u64,
    seconds: u64,
}

/// From "#255\tINITED cov: …" (the seeds are loaded) and "Done 40027 runs in 9 second(s)"
/// (libFuzzer's last report).
fn session_of(log: &str) -> Option<Session> {
    let line = log.lines().rev().find(|l| l.starts_with("Done "))?;
    let mut words = line.split_whitespace();
    let runs = words.nth(1)?.parse().ok()?;
    let seconds = words.nth(2)?.parse().ok()?;
    let inited = log.lines().find(|l| l.contains("INITED"))?;
    let seeds = inited
        .split_whitespace()
        .next()?
        .strip_prefix('#')?
        .parse()
        .ok()?;
    Some(Session {
        runs,
        seeds,
        seconds,
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Replays the regressions, then fuzzes `target` from its seeds (or `extra_seeds`) for
/// `scale` times the time per target.
fn fuzz(target: &str, extra_seeds: &[&str], scale: u32) {
    let binary = fuzz_binary(target);

    let regressions = files_in(&repo().join("fuzz/regressions").join(target));
    if !regressions.is_empty() {
        let output = Command::new(&binary)
            .args(&regressions)
            .arg(format!("-timeout={HANG_SECONDS}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .output()
            .expect("the fuzz target runs");
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{target}: a regression input fails again:\n{}",
            tail(&log, 40)
        );
    }

    let work = std::env::temp_dir().join(format!("schism-fuzz-{target}-{}", std::process::id()));
    let corpus = work.join("corpus");
    std::fs::create_dir_all(&corpus).expect("a fresh corpus folder");
    // A target whose seeds are the project's own files (manifests) has no folder of its own.
    let mut seeds: Vec<PathBuf> = extra_seeds.iter().map(|s| repo().join(s)).collect();
    if seeds.is_empty() {
        seeds.push(repo().join("fuzz/seeds").join(target));
    }
    for seed in &seeds {
        assert!(
            seed.is_dir(),
            "{target}: seed folder {} is missing",
            seed.display()
        );
    }
    let seconds = seconds_per_target() * scale;
    // libFuzzer writes what it learns into the first folder and only reads the others, so the
    // committed seeds stay as they are.
    let mut child = Command::new(&binary);
    child
        .arg(&corpus)
        .args(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={HANG_SECONDS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg("-max_len=65536")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", work.display()));
    let output = run_with_deadline(
        child,
        Duration::from_secs(u64::from(seconds + 3 * HANG_SECONDS + 60)),
    );
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{target}: the fuzzer found an input that crashes, hangs or exhausts memory; it is kept \
         in {} (add it to fuzz/regressions/{target}/ with a test of the fix):\n{}",
        work.display(),
        tail(&log, 60)
    );
    let session = session_of(&log).unwrap_or_else(|| {
        panic!(
            "{target}: no final report from libFuzzer:\n{}",
            tail(&log, 30)
        )
    });
    // A target that ran little more than its seeds has not fuzzed anything.
    let fuzzed = session.runs.saturating_sub(session.seeds);
    assert!(
        fuzzed >= 100,
        "{target}: only {fuzzed} executions past the {} seeds in {} s:\n{}",
        session.seeds,
        session.seconds,
        tail(&log, 30)
    );
    let learned = files_in(&corpus).len();
    eprintln!(
        "fuzz {target}: {} executions in {} s ({} per second, {} of them the seeds), \
         {learned} new corpus inputs",
        session.runs,
        session.seconds,
        session.runs / session.seconds.max(1),
        session.seeds
    );
    std::fs::remove_dir_all(&work).expect("the work folder is removed");
}

/// Runs `command`, killing it if it outlives `deadline` (a hang of libFuzzer itself).
fn run_with_deadline(mut command: Command, deadline: Duration) -> std::process::Output {
    use std::process::Stdio;
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fuzz target starts");
    let pid = child.id();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(deadline).is_err() {
            // SAFETY: kill(2) on the child's PID, which is not reaped before this thread ends.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let output = child
        .wait_with_output()
        .expect("the fuzz target is waited for");
    let _ = done.send(());
    watchdog.join().expect("the watchdog ends");
    output
}

#[test]
fn manifests_through_validate() {
    // The invalid corpus (tests/invalid) is left out: loading its 215 files would take most of
    // the unoptimized target's time, and mutations of valid manifests reach the same checks.
    // Twice the time: a manifest goes through YAML, the schema, the semantic checks and CEL.
    fuzz("manifest", &["examples", "tests/valid"], 2);
}

#[test]
fn histories_through_the_linearizability_checker() {
    fuzz("history", &[], 1);
}

#[test]
fn transactional_histories_through_the_isolation_checker() {
    fuzz("txn_history", &[], 1);
}

#[test]
fn proc_cgroup_and_stat_lines() {
    fuzz("proc_cgroup", &[], 1);
}

#[test]
fn redis_replies() {
    fuzz("redis_reply", &[], 1);
}

#[test]
fn etcd_and_prometheus_json_answers() {
    fuzz("json_answer", &[], 1);
}

#[test]
fn api_objects_through_the_decisions_that_read_them() {
    fuzz("api_object", &[], 1);
}

#[test]
fn the_session_report_is_read() {
    let log = "#2\tINITED cov: 10 ft: 3 corp: 2/9b exec/s: 0 rss: 30Mb\n#4096\tpulse\nDone 40027 runs in 9 second(s)\nstat::number_of_executed_units: 40027\n";
    let session = session_of(log).expect("a report");
    assert_eq!(
        (session.runs, session.seeds, session.seconds),
        (40027, 2, 9)
    );
    assert!(session_of("crashed\n").is_none());
}
