//! A fake `/proc` tree for the node agent: `<root>/<pid>/cgroup` names a pod UID the way the
//! kubelet's cgroups do, `<root>/<pid>/ns/net` is a symlink to a real network namespace
//! (`/run/netns/NAME`) and `<root>/<pid>/stat` carries the process state. Removed on drop.
//!
//! Pids that the agent may signal (pause, resume) must be real processes the test started;
//! every other pid is above the kernel's `pid_max` limit, so a stray signal reaches nobody.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// First pid handed out by [`FakeProc::next_unused_pid`]: above 2^22, the largest `pid_max`.
const UNUSED_PID_BASE: i32 = 5_000_000;

/// A fake proc root in a fresh temporary directory.
pub struct FakeProc {
    root: PathBuf,
    next_pid: AtomicU32,
}

impl FakeProc {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "schism-test-proc-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).expect("create fake proc root");
        Self {
            root,
            next_pid: AtomicU32::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A pid no real process can have.
    pub fn next_unused_pid(&self) -> i32 {
        UNUSED_PID_BASE + self.next_pid.fetch_add(1, Ordering::Relaxed) as i32
    }

    /// Adds a process of pod `uid` (systemd cgroup layout, cgroup v2) in the namespace at
    /// `netns_path`, in state `state` (`S` running/sleeping, `T` stopped).
    pub fn pod_process(&self, pid: i32, uid: &str, netns_path: &str, state: char) {
        let cgroup = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{pid:x}.scope\n",
            uid.replace('-', "_")
        );
        self.process(pid, &cgroup, Some(netns_path), state);
    }

    /// Adds a process with any cgroup file and, optionally, a network namespace.
    pub fn process(&self, pid: i32, cgroup: &str, netns_path: Option<&str>, state: char) {
        let dir = self.root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("ns")).expect("create fake pid dir");
        std::fs::write(dir.join("cgroup"), cgroup).expect("write cgroup");
        self.set_state(pid, state);
        if let Some(netns_path) = netns_path {
            std::os::unix::fs::symlink(netns_path, dir.join("ns/net")).expect("link ns/net");
        }
    }

    /// Rewrites the state letter of a fake process. Its start time (field 22) is the real
    /// process's, for a pid that is one, so a pid is told apart from a reused one as on a
    /// real node.
    pub fn set_state(&self, pid: i32, state: char) {
        let start_time = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let fields = stat.rsplit_once(')')?.1.to_owned();
                fields.split_whitespace().nth(19).map(str::to_owned)
            })
            .unwrap_or_else(|| "1".into());
        let stat = format!(
            "{pid} (fake {pid}) {state} 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start_time} 0 0"
        );
        std::fs::write(self.root.join(pid.to_string()).join("stat"), stat).expect("write stat");
    }
}

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A real `sleep` process the test may pause and resume; killed on drop.
pub struct SleepingProcess {
    child: std::process::Child,
}

impl SleepingProcess {
    pub fn start() -> Self {
        let child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("start sleep");
        Self { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The real process state letter from `/proc/<pid>/stat`.
    pub fn state(&self) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .expect("state letter")
    }

    /// Waits briefly for the kernel to show `state` (signals are delivered asynchronously).
    pub fn wait_for_state(&self, state: char) -> bool {
        for _ in 0..100 {
            if self.state() == state {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }
}

impl Drop for SleepingProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
