//! One cgroup per local node, so a pause freezes the node's whole process tree (everything
//! it forks, even what leaves its process group) and teardown finds every process it left.
//!
//! The cgroups live at `<hierarchy>/schism/<run id>/<node>` in the machine's cgroup v2
//! hierarchy where there is one (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified`
//! on a hybrid one), else in the v1 freezer hierarchy. A node's process joins its cgroup in
//! the child before `exec` (and before it changes to the node's user), so nothing it starts
//! runs outside. Without a usable hierarchy the nodes run in the runner's cgroup and pauses
//! fall back to SIGSTOP of the node's process group.
//!
//! The run's record lists the directories, and the run's guard thaws and kills them when the
//! runner dies; [`remove_node_cgroups`] thaws, empties and removes them at teardown and in
//! `schism cleanup`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::dataplane::{Freezer, FreezerVersion, UndoStep};

use super::LocalError;

/// The directory under a hierarchy's root that holds every run's node cgroups.
pub const CGROUP_PARENT: &str = "schism";

/// The machine's cgroup filesystem.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where node cgroups can be made: a writable hierarchy with a freezer.
fn hierarchy() -> Option<(PathBuf, FreezerVersion)> {
    let root = Path::new(CGROUP_ROOT);
    [
        (root.to_path_buf(), FreezerVersion::V2, "cgroup.controllers"),
        (root.join("unified"), FreezerVersion::V2, "cgroup.procs"),
        (root.join("freezer"), FreezerVersion::V1, "cgroup.procs"),
    ]
    .into_iter()
    .find(|(dir, _, marker)| dir.join(marker).is_file())
    .map(|(dir, version, _)| (dir, version))
}

/// The node cgroups of one run.
#[derive(Debug)]
pub(crate) struct NodeCgroups {
    run_dir: PathBuf,
    nodes: Vec<Freezer>,
}

impl NodeCgroups {
    /// Makes a cgroup for each of `node_names` under the run's directory; `None` where the
    /// machine has no usable hierarchy (or it is not writable, as in a container).
    pub(crate) fn create(run_id: &str, node_names: &[String]) -> Option<Self> {
        let (root, _) = hierarchy()?;
        let run_dir = root.join(CGROUP_PARENT).join(run_id);
        let mut nodes = Vec::new();
        for name in node_names {
            let dir = run_dir.join(name);
            let made = std::fs::create_dir_all(&dir)
                .ok()
                .and_then(|()| Freezer::at(&dir));
            match made {
                Some(freezer) => nodes.push(freezer),
                None => {
                    tracing::warn!(cgroup = %dir.display(), "cannot make a node cgroup; pauses use SIGSTOP");
                    remove_node_cgroups(&Self::dirs_of(&run_dir, &nodes));
                    return None;
                }
            }
        }
        Some(Self { run_dir, nodes })
    }

    /// The run's directory, parent of the nodes'.
    pub(crate) fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Every directory, nodes first, then the run's: the order they are removed in.
    pub(crate) fn dirs(&self) -> Vec<PathBuf> {
        Self::dirs_of(&self.run_dir, &self.nodes)
    }

    fn dirs_of(run_dir: &Path, nodes: &[Freezer]) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = nodes.iter().map(|n| n.dir().to_path_buf()).collect();
        dirs.push(run_dir.to_path_buf());
        dirs
    }

    /// The freezer of node `node`'s cgroup.
    pub(crate) fn freezer(&self, node: usize) -> Option<&Freezer> {
        self.nodes.get(node)
    }

    /// Makes the child of `command` join node `node`'s cgroup before it `exec`s. Register it
    /// before the switch to the node's user: moving a process needs root.
    pub(crate) fn join_in_child(
        &self,
        node: usize,
        command: &mut Command,
    ) -> Result<(), LocalError> {
        let Some(freezer) = self.nodes.get(node) else {
            return Ok(());
        };
        let path = freezer.dir().join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| LocalError::io("opening", &path, e))?;
        let procs = Arc::new(procs);
        // SAFETY: the closure only calls `write`, which is async-signal-safe, on a descriptor
        // opened before the fork.
        unsafe {
            command.pre_exec(move || join(&procs));
        }
        Ok(())
    }

    /// The guard's steps, taken before the node processes are killed: a frozen process is
    /// thawed first, so the kill takes effect at once.
    pub(crate) fn thaw_steps(&self) -> Vec<UndoStep> {
        self.nodes
            .iter()
            .map(|freezer| UndoStep::WriteFile {
                path: freezer.dir().join(match freezer.version() {
                    FreezerVersion::V1 => "freezer.state",
                    FreezerVersion::V2 => "cgroup.freeze",
                }),
                contents: match freezer.version() {
                    FreezerVersion::V1 => &b"THAWED"[..],
                    FreezerVersion::V2 => &b"0"[..],
                },
            })
            .collect()
    }

    /// The guard's steps after the process groups are killed: cgroup v2 kills whatever is
    /// still in a node's cgroup (what left the group); v1 has no such file.
    pub(crate) fn kill_steps(&self) -> Vec<UndoStep> {
        self.nodes
            .iter()
            .filter(|freezer| freezer.version() == FreezerVersion::V2)
            .map(|freezer| UndoStep::WriteFile {
                path: freezer.dir().join("cgroup.kill"),
                contents: &b"1"[..],
            })
            .collect()
    }
}

/// Writes "0" (the writer itself) to an open `cgroup.procs`.
fn join(procs: &File) -> std::io::Result<()> {
    // SAFETY: writing a local buffer to a descriptor we hold.
    if unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) } == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The pids in a cgroup directory.
fn pids_in(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Thaws, empties (SIGKILL to every process left) and removes node cgroup directories, in the
/// order given (children before parents); returns what was removed.
pub(crate) fn remove_node_cgroups(dirs: &[PathBuf]) -> Vec<String> {
    let mut removed = Vec::new();
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        if let Some(freezer) = Freezer::at(dir) {
            let _ = freezer.thaw();
        }
        for _ in 0..100 {
            let pids = pids_in(dir);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: plain syscall; the process is in a cgroup of Schism's run.
                if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                    removed.push(format!("process {pid} in cgroup {}", dir.display()));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        removed.dedup();
        // A cgroup goes with rmdir (its control files are not files to remove).
        if std::fs::remove_dir(dir).is_ok() {
            removed.push(format!("cgroup {}", dir.display()));
        }
    }
    removed
}

/// Run directories under the node cgroup parent, `(run id, directory)`, in every hierarchy.
pub(crate) fn run_cgroup_dirs() -> Vec<(String, PathBuf)> {
    let Some((root, _)) = hierarchy() else {
        return Vec::new();
    };
    let parent = root.join(CGROUP_PARENT);
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| Some((entry.file_name().to_str()?.to_owned(), entry.path())))
        .collect()
}

/// A run directory's node cgroups, then the run directory: the order to remove them in.
pub(crate) fn dirs_below(run_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .collect();
    dirs.sort();
    dirs.push(run_dir.to_path_buf());
    dirs
}
