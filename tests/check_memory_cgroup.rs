//! A check too big for its memory ends Unknown instead of being OOM-killed, inside a real
//! memory cgroup limited to 256 MiB (as root): `schism check` takes its budget from the
//! cgroup's limit and counts everything the search allocates. The same check with the budget
//! forced past the limit is killed by the kernel, which shows the cgroup really bites.

#[path = "common/history_gen.rs"]
mod history_gen;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use history_gen::{Gen, Rng, generate};
use schism::check::ModelKind;

const LIMIT: u64 = 256 << 20;

/// A memory cgroup of this test's own, removed on drop.
struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    /// A child of this process's memory cgroup (v1's memory controller, else v2 with the
    /// memory controller enabled), limited to `limit` bytes with no swap.
    fn new(limit: u64) -> MemoryCgroup {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let name = format!("schism-test-{}", std::process::id());
        let v1_path = cgroups
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, path)| path.to_owned()));
        if let Some(path) = v1_path {
            let parent = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            let dir = parent.join(&name);
            std::fs::create_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot create the memory cgroup {dir:?}: {e}"));
            std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
            let swap = dir.join("memory.memsw.limit_in_bytes");
            if swap.exists() {
                std::fs::write(swap, limit.to_string()).unwrap();
            }
            return MemoryCgroup { dir, v2: false };
        }
        let path = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("this machine has neither cgroup v1's memory controller nor cgroup v2");
        let parent = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        let controllers = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
        assert!(
            controllers.split_whitespace().any(|c| c == "memory"),
            "cgroup v2 at {parent:?} does not delegate the memory controller; this test needs it"
        );
        let dir = parent.join(&name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("memory.max"), limit.to_string()).unwrap();
        std::fs::write(dir.join("memory.swap.max"), "0").unwrap();
        MemoryCgroup { dir, v2: true }
    }

    /// Runs `program args` inside the cgroup: a shell moves itself in, then becomes it.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let procs = self.dir.join("cgroup.procs");
        Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(&procs)
            .arg(program)
            .args(args)
            .output()
            .expect("sh runs")
    }

    /// How many processes the kernel's OOM killer killed in the cgroup.
    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill ")
        } else {
            ("memory.oom_control", "oom_kill ")
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A single-key kv history with many concurrent unknown outcomes: a search whose memo grows
/// by tens of MiB a second and would need far more than 256 MiB to finish.
fn write_hard_history() -> PathBuf {
    let history = generate(
        &Gen {
            model: ModelKind::Kv,
            keys: 1,
            processes: 64,
            ops: 20_000,
            info: 50,
            fail: 2,
            spread: 800,
        },
        &mut Rng(5),
    );
    let path =
        std::env::temp_dir().join(format!("schism-memory-test-{}.jsonl", std::process::id()));
    std::fs::write(&path, schism::check::formats::write_native(&history)).unwrap();
    path
}

#[test]
fn a_check_too_big_for_its_cgroup_ends_unknown_without_an_oom_kill() {
    support::require("memory cgroup check", &["sh"]);
    let history = write_hard_history();
    let schism = env!("CARGO_BIN_EXE_schism");
    let file = history.to_str().unwrap();

    let cgroup = MemoryCgroup::new(LIMIT);
    let output = cgroup.run(
        schism,
        &["check", "--model", "kv", "--timeout", "10m", "--json", file],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(2),
        "expected Unknown (exit 2); stdout {stdout}\nstderr {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["verdict"], "unknown", "{result}");
    let reason = result["unknown_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("memory budget"), "{result}");
    assert_eq!(cgroup.oom_kills(), 0, "the kernel killed the check");
    drop(cgroup);

    // The same check told to ignore the limit: the kernel ends it, so the limit above was real.
    let cgroup = MemoryCgroup::new(LIMIT);
    let output = cgroup.run(
        schism,
        &[
            "check",
            "--model",
            "kv",
            "--timeout",
            "10m",
            "--max-memory",
            "4Gi",
            file,
        ],
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGKILL),
        "without its budget the check should have been OOM-killed: {:?}",
        output.status
    );
    assert!(cgroup.oom_kills() >= 1);
    let _ = std::fs::remove_file(history);
}
