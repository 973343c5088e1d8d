//! Runs a whole `schism check` process on a file, for the benchmarks that measure it as
//! people run it: wall time, peak RSS and its JSON line.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Runs `schism check ARGS… PATH`; returns wall seconds, peak RSS in MiB and the first line
/// of its output as JSON (null when there is none).
// The child is reaped by `wait4`, which also returns its resource usage.
#[allow(clippy::zombie_processes)]
pub fn run_check(args: &[&str], path: &Path) -> (f64, f64, serde_json::Value) {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_schism"))
        .arg("check")
        .args(args)
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run schism check");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("stdout");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).expect("read output");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `usage` is a valid out-pointer.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4");
    let json = serde_json::from_str(text.lines().next().unwrap_or("null")).unwrap_or_default();
    (wall, usage.ru_maxrss as f64 / 1024.0, json)
}
