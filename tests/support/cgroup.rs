//! Real cgroups laid out as the kubelet lays out a pod's (`…/kubepods/besteffort/pod<UID>/<ctr>`)
//! under a test-owned parent in the machine's cgroup v1 freezer hierarchy or its cgroup v2
//! hierarchy, and a process that counts, to tell a frozen process from a running one. Every
//! cgroup made is thawed, emptied (its processes killed) and removed on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The machine's cgroup filesystem.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which hierarchy a test cgroup is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1's freezer controller, `/sys/fs/cgroup/freezer`.
    V1Freezer,
    /// cgroup v2: `/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid one.
    V2,
}

impl Hierarchy {
    /// Where the hierarchy is mounted; fails loudly when it is not.
    pub fn mount(self) -> PathBuf {
        let root = Path::new(CGROUP_ROOT);
        let dir = match self {
            Hierarchy::V1Freezer => root.join("freezer"),
            Hierarchy::V2 if root.join("cgroup.controllers").is_file() => root.to_path_buf(),
            Hierarchy::V2 => root.join("unified"),
        };
        assert!(
            dir.join("cgroup.procs").is_file(),
            "this test needs the cgroup {self:?} hierarchy mounted at {} (Debian's kernel with \
             systemd's hybrid or unified layout has it)",
            dir.display()
        );
        dir
    }

    /// The `/proc/<pid>/cgroup` line of a process in `path` of this hierarchy.
    pub fn proc_line(self, path: &str) -> String {
        match self {
            Hierarchy::V1Freezer => format!("6:freezer:/{path}\n"),
            Hierarchy::V2 => format!("0::/{path}\n"),
        }
    }
}

/// A pod's cgroup with one container cgroup below it, under a parent of the test's own.
pub struct PodCgroup {
    pub hierarchy: Hierarchy,
    /// The test's parent, directly under the hierarchy's mount.
    parent: PathBuf,
    /// `…/pod<UID>`.
    pub pod_dir: PathBuf,
    /// `…/pod<UID>/ctr`, where the processes go.
    pub container_dir: PathBuf,
    /// The container's path from the hierarchy's root, as `/proc/<pid>/cgroup` shows it.
    pub container_path: String,
}

impl PodCgroup {
    pub fn new(hierarchy: Hierarchy, pod_uid: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mount = hierarchy.mount();
        let top = format!(
            "schism-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let container_path = format!("{top}/kubepods/besteffort/pod{pod_uid}/ctr");
        let container_dir = mount.join(&container_path);
        std::fs::create_dir_all(&container_dir)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", container_dir.display()));
        Self {
            hierarchy,
            parent: mount.join(top),
            pod_dir: container_dir.parent().unwrap().to_path_buf(),
            container_dir,
            container_path,
        }
    }

    /// The `/proc/<pid>/cgroup` contents of a process in the container.
    pub fn proc_file(&self) -> String {
        self.hierarchy.proc_line(&self.container_path)
    }

    /// Moves a process into the container's cgroup.
    pub fn add(&self, pid: i32) {
        std::fs::write(self.container_dir.join("cgroup.procs"), pid.to_string()).unwrap_or_else(
            |e| {
                panic!(
                    "cannot move {pid} into {}: {e}",
                    self.container_dir.display()
                )
            },
        );
    }

    /// Every process in the container's cgroup.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.container_dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Whether the pod's cgroup is frozen, as the kernel reports it.
    pub fn frozen(&self) -> bool {
        match self.hierarchy {
            Hierarchy::V1Freezer => {
                std::fs::read_to_string(self.pod_dir.join("freezer.state"))
                    .unwrap_or_default()
                    .trim()
                    == "FROZEN"
            }
            Hierarchy::V2 => std::fs::read_to_string(self.pod_dir.join("cgroup.events"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.trim() == "frozen 1"),
        }
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let thaw = match self.hierarchy {
            Hierarchy::V1Freezer => ("freezer.state", "THAWED"),
            Hierarchy::V2 => ("cgroup.freeze", "0"),
        };
        let _ = std::fs::write(self.pod_dir.join(thaw.0), thaw.1);
        for pid in self.pids() {
            // SAFETY: plain syscall; the processes are the test's own.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for _ in 0..100 {
            if self.pids().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Bottom up: a cgroup is removed with rmdir once it has no children or tasks.
        let mut dir = self.container_dir.clone();
        while dir.starts_with(&self.parent) {
            let _ = std::fs::remove_dir(&dir);
            if !dir.pop() {
                break;
            }
        }
    }
}

/// A shell that writes a rising count to a file every 20 ms, forking a `sleep` each time: a
/// frozen one stops counting, forks included.
pub struct Counter {
    child: std::process::Child,
    file: PathBuf,
}

impl Counter {
    pub fn start(file: PathBuf) -> Self {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "i=0; while :; do i=$((i+1)); echo $i > {}; sleep 0.02; done",
                file.display()
            ))
            .spawn()
            .expect("start sh");
        let counter = Self { child, file };
        assert!(counter.advances(), "the counter runs");
        counter
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn count(&self) -> u64 {
        std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether the count rises within half a second.
    pub fn advances(&self) -> bool {
        let before = self.count();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(10));
            if self.count() > before {
                return true;
            }
        }
        false
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // A process frozen by cgroup v1 takes its SIGKILL only once thawed, which the
        // cgroup's own drop does: do not wait for it forever here.
        for _ in 0..50 {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&self.file);
    }
}
