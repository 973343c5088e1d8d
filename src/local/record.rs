//! What a run created, written under `/run/schism/<runid>/run.json` before it is created, so
//! `schism cleanup` can remove the remains of a run whose owner died.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::dataplane::{self, Netns, Tool};

use super::LocalError;
use super::node_cgroups::{dirs_below, remove_node_cgroups, run_cgroup_dirs};
use super::subnet::Ipv4Subnet;

/// Directory holding one folder per live (or crashed) run.
pub const RUNS_DIR: &str = "/run/schism";

/// Prefix of every network namespace a run creates (`sx-<runid>-n1`, `sx-<runid>-br`, …).
pub const NETNS_PREFIX: &str = "sx-";

/// The durable description of a run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run's id (part of every name it creates).
    pub run_id: String,
    /// The process driving the run.
    pub owner_pid: u32,
    /// The owner's start time in clock ticks after boot, so a reused pid is not mistaken for
    /// the owner.
    pub owner_start_ticks: u64,
    /// The run's subnet.
    pub subnet: Ipv4Subnet,
    /// Network namespace names (under `/run/netns`).
    pub namespaces: Vec<String>,
    /// Data directories to delete with the run (logs are kept).
    pub data_dirs: Vec<PathBuf>,
    /// The directory of the run's node cgroups, if it made them.
    #[serde(default)]
    pub cgroup_dir: Option<PathBuf>,
}

impl RunRecord {
    fn dir(run_id: &str) -> PathBuf {
        Path::new(RUNS_DIR).join(run_id)
    }

    /// Writes the record atomically (temporary file, then rename).
    pub fn write(&self) -> Result<(), LocalError> {
        let dir = Self::dir(&self.run_id);
        std::fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
        let temporary = dir.join("run.json.tmp");
        let text = serde_json::to_string_pretty(self).expect("record serialises");
        std::fs::write(&temporary, text).map_err(|e| LocalError::io("writing", &temporary, e))?;
        let path = dir.join("run.json");
        std::fs::rename(&temporary, &path).map_err(|e| LocalError::io("writing", &path, e))
    }

    /// Deletes the record.
    pub fn remove(run_id: &str) {
        let _ = std::fs::remove_dir_all(Self::dir(run_id));
    }

    fn read_all() -> Vec<(PathBuf, Option<RunRecord>)> {
        let Ok(entries) = std::fs::read_dir(RUNS_DIR) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .map(|entry| {
                let record = std::fs::read_to_string(entry.path().join("run.json"))
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok());
                (entry.path(), record)
            })
            .collect()
    }

    /// Whether the owner process is still the one that wrote the record.
    pub fn owner_alive(&self) -> bool {
        process_start_ticks(self.owner_pid) == Some(self.owner_start_ticks)
    }
}

/// Subnets of runs whose owner is alive.
pub fn subnets_in_use() -> Vec<Ipv4Subnet> {
    RunRecord::read_all()
        .into_iter()
        .filter_map(|(_, record)| record)
        .filter(RunRecord::owner_alive)
        .map(|record| record.subnet)
        .collect()
}

/// Field 22 of `/proc/PID/stat`: the process start time.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// An exclusive `flock` on `/run/schism/.lock`, held while runs choose subnets and while
/// cleanup decides what is orphaned.
pub struct RunsLock {
    _file: File,
}

impl RunsLock {
    /// Takes the lock, waiting for other Schism processes.
    pub fn acquire() -> Result<Self, LocalError> {
        std::fs::create_dir_all(RUNS_DIR)
            .map_err(|e| LocalError::io("creating", Path::new(RUNS_DIR), e))?;
        let path = Path::new(RUNS_DIR).join(".lock");
        let file = File::create(&path).map_err(|e| LocalError::io("opening", &path, e))?;
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(LocalError::io(
                "locking",
                &path,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self { _file: file })
    }
}

/// Pids of processes whose network namespace is `netns` (any depth of descendants, even ones
/// that left their process group).
pub fn processes_in(netns: &Netns) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(inode) = netns.inode() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|meta| meta.ino() == inode)
        })
        .collect()
}

fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// SIGKILLs every process in `netns` and waits briefly for them to go; returns descriptions.
pub fn kill_processes_in(netns: &Netns) -> Vec<String> {
    let mut killed = Vec::new();
    for _ in 0..50 {
        let pids = processes_in(netns);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let name = command_name(pid);
            // SAFETY: plain syscall.
            if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                let description = format!("process {pid} ({name})");
                if !killed.contains(&description) {
                    killed.push(description);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

/// Deletes network namespaces by name, in parallel; returns those that existed and are gone.
pub fn delete_namespaces(names: &[String]) -> Vec<String> {
    let Ok(ip) = Tool::Ip.locate() else {
        return Vec::new();
    };
    let children: Vec<_> = names
        .iter()
        .filter(|name| Path::new("/run/netns").join(name).exists())
        .filter_map(|name| {
            let child = Command::new(&ip)
                .args(["netns", "del", name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()?;
            Some((name.clone(), child))
        })
        .collect();
    children
        .into_iter()
        .filter_map(|(name, mut child)| child.wait().ok()?.success().then_some(name))
        .collect()
}

/// What cleanup removed for one run.
#[derive(Clone, Debug, Default)]
pub struct RunCleanup {
    /// The run id.
    pub run_id: String,
    /// One line per removed thing.
    pub removed: Vec<String>,
}

/// What `schism cleanup` removed.
#[derive(Clone, Debug, Default)]
pub struct CleanupReport {
    /// Runs whose remains were removed.
    pub runs: Vec<RunCleanup>,
}

impl CleanupReport {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

impl std::fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.runs.is_empty() {
            return writeln!(f, "nothing to clean up");
        }
        for run in &self.runs {
            writeln!(f, "run {}:", run.run_id)?;
            for line in &run.removed {
                writeln!(f, "  removed {line}")?;
            }
        }
        Ok(())
    }
}

/// Removes everything of runs whose owner process is gone: their node cgroups and the
/// processes in them, processes inside their namespaces, Schism's rules there, the
/// namespaces, data directories and records. Also removes `sx-…` namespaces and node cgroups
/// that no live run claims. Live runs are left alone.
pub fn cleanup_crashed_runs() -> Result<CleanupReport, LocalError> {
    dataplane::require_root("cleaning up local runs").map_err(LocalError::DataPlane)?;
    let _lock = RunsLock::acquire()?;
    let mut report = CleanupReport::default();
    let mut claimed: Vec<String> = Vec::new();
    let mut live_runs: Vec<String> = Vec::new();
    for (dir, record) in RunRecord::read_all() {
        let run_id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        match record {
            Some(record) if record.owner_alive() => {
                claimed.push(format!("{NETNS_PREFIX}{run_id}-"));
                live_runs.push(run_id);
            }
            Some(record) => {
                // Thawed and emptied first: a frozen process takes a kill only once thawed.
                let mut removed = record
                    .cgroup_dir
                    .as_deref()
                    .map(|dir| remove_node_cgroups(&dirs_below(dir)))
                    .unwrap_or_default();
                removed.extend(remove_run_resources(&record.namespaces, &record.data_dirs));
                let _ = std::fs::remove_dir_all(&dir);
                removed.push(format!("record {}", dir.display()));
                report.runs.push(RunCleanup { run_id, removed });
            }
            None => {
                // A record directory without a readable record: the run died while writing
                // it, before it created anything (records are written first).
                let _ = std::fs::remove_dir_all(&dir);
                report.runs.push(RunCleanup {
                    run_id,
                    removed: vec![format!("incomplete record {}", dir.display())],
                });
            }
        }
    }
    let orphans: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .filter(|name| name.starts_with(NETNS_PREFIX))
        .filter(|name| {
            !claimed
                .iter()
                .any(|prefix| name.starts_with(prefix.as_str()))
        })
        .collect();
    // Node cgroups of runs that are not live (a guard that fired removes its record before
    // the last node process is gone, and so cannot always remove the cgroup itself).
    let mut removed: Vec<String> = run_cgroup_dirs()
        .into_iter()
        .filter(|(run_id, _)| !live_runs.contains(run_id))
        .flat_map(|(_, dir)| remove_node_cgroups(&dirs_below(&dir)))
        .collect();
    if !orphans.is_empty() {
        removed.extend(remove_run_resources(&orphans, &[]));
    }
    if !removed.is_empty() {
        report.runs.push(RunCleanup {
            run_id: "(no record)".into(),
            removed,
        });
    }
    Ok(report)
}

/// Removes processes, rules and the namespaces themselves, then data directories.
pub fn remove_run_resources(namespaces: &[String], data_dirs: &[PathBuf]) -> Vec<String> {
    let mut removed = Vec::new();
    for name in namespaces {
        let Ok(netns) = Netns::open(Path::new("/run/netns").join(name)) else {
            continue;
        };
        removed.extend(
            kill_processes_in(&netns)
                .into_iter()
                .map(|p| format!("{p} in {name}")),
        );
        match dataplane::reap_netns(&netns) {
            Ok(items) => removed.extend(items.iter().map(|item| format!("{item} in {name}"))),
            Err(error) => tracing::warn!(netns = %name, %error, "reaping rules failed"),
        }
    }
    removed.extend(
        delete_namespaces(namespaces)
            .into_iter()
            .map(|name| format!("network namespace {name}")),
    );
    for dir in data_dirs.iter().filter(|dir| dir.exists()) {
        if std::fs::remove_dir_all(dir).is_ok() {
            removed.push(format!("data directory {}", dir.display()));
        }
    }
    removed
}
