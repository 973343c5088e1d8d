//! The node's record of the pauses this agent holds, so that a restarted agent resumes what
//! Schism paused and nothing else.
//!
//! A pause's guard resumes it when the agent dies, but a guard lives in the agent's container
//! and dies with it when the container is killed as a whole. The start-up reap then has to
//! find the pause again, and the node alone cannot tell it apart from a pause someone else
//! made (`docker pause` freezes a cgroup too; a debugger stops a process). So every pause is
//! written here before it is made and forgotten once it is reverted. The directory is on the
//! node (the chart mounts a `hostPath` under `/run`), so it outlives the agent's pod too, and
//! a reboot, which ends every pause, empties it.
//!
//! One JSON file per lease, named by the lease's UID, written whole to a temporary name and
//! renamed, so a reader sees either the old record or the new one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One lease's pause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseRecord {
    /// The lease, `namespace/name`, for the log.
    pub lease: String,
    /// The lease's UID (the file's name).
    pub lease_uid: String,
    /// The paused pod's UID, lowercase with dashes.
    pub pod_uid: String,
    /// What was paused.
    pub held: HeldPause,
}

/// What a pause holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeldPause {
    /// The pod's cgroup, frozen.
    Freezer {
        /// The cgroup directory, as the agent sees it.
        dir: PathBuf,
    },
    /// The pod's processes, each sent SIGSTOP.
    Processes {
        /// Each process, with its start time so a reused pid is not mistaken for it.
        processes: Vec<ProcessStamp>,
    },
}

/// A process as it was when paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStamp {
    /// Its pid.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: when it started, in clock ticks since boot.
    pub start_time: u64,
}

/// The records left by an agent that did not revert them: those whose pod has no live lease
/// are to be resumed; those of live leases stay paused for the loop to take over.
pub fn stale<'a>(records: &'a [PauseRecord], live_pods: &HashSet<String>) -> Vec<&'a PauseRecord> {
    records
        .iter()
        .filter(|record| !live_pods.contains(&record.pod_uid))
        .collect()
}

/// The journal's directory.
#[derive(Clone, Debug)]
pub struct PauseJournal {
    dir: PathBuf,
}

impl PauseJournal {
    /// The journal in `dir`, made if missing.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes (or replaces) the record of one lease's pause.
    pub fn record(&self, record: &PauseRecord) -> std::io::Result<()> {
        let file = self.file(&record.lease_uid);
        let partial = file.with_extension("partial");
        let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        std::fs::write(&partial, json)?;
        std::fs::rename(&partial, &file)
    }

    /// Removes the record of a lease's pause; a record that is not there is no error.
    pub fn forget(&self, lease_uid: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.file(lease_uid)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Every record, and what could not be read (file and reason). Unreadable files are
    /// removed: they name nothing that can be resumed.
    pub fn records(&self) -> std::io::Result<(Vec<PauseRecord>, Vec<String>)> {
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|e| e == "partial") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<PauseRecord>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(record) => records.push(record),
                Err(reason) => {
                    unreadable.push(format!("{}: {reason}", path.display()));
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok((records, unreadable))
    }

    fn file(&self, lease_uid: &str) -> PathBuf {
        let name: String = lease_uid
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lease_uid: &str, pod_uid: &str) -> PauseRecord {
        PauseRecord {
            lease: format!("demo/{lease_uid}"),
            lease_uid: lease_uid.into(),
            pod_uid: pod_uid.into(),
            held: HeldPause::Processes {
                processes: vec![ProcessStamp {
                    pid: 42,
                    start_time: 1234,
                }],
            },
        }
    }

    fn temp_dir() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        std::env::temp_dir().join(format!(
            "schism-journal-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
    }

    #[test]
    fn records_are_written_replaced_read_and_forgotten() {
        let dir = temp_dir();
        let journal = PauseJournal::open(&dir).unwrap();
        journal.record(&record("lease-1", "pod-a")).unwrap();
        let mut frozen = record("lease-2", "pod-b");
        frozen.held = HeldPause::Freezer {
            dir: "/sys/fs/cgroup/freezer/kubepods/podb".into(),
        };
        journal.record(&frozen).unwrap();
        journal.record(&record("lease-1", "pod-a")).unwrap();
        let (records, unreadable) = journal.records().unwrap();
        assert!(unreadable.is_empty());
        assert_eq!(records, vec![record("lease-1", "pod-a"), frozen]);
        journal.forget("lease-1").unwrap();
        journal.forget("lease-1").unwrap();
        assert_eq!(journal.records().unwrap().0.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unreadable_records_are_reported_and_removed_and_partial_writes_ignored() {
        let dir = temp_dir();
        let journal = PauseJournal::open(&dir).unwrap();
        std::fs::write(dir.join("broken.json"), "{\"lease\":").unwrap();
        std::fs::write(dir.join("x.partial"), "{").unwrap();
        let (records, unreadable) = journal.records().unwrap();
        assert!(records.is_empty());
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
        assert!(unreadable[0].contains("broken.json"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_pauses_of_pods_without_a_live_lease_are_stale() {
        let records = vec![record("l1", "pod-a"), record("l2", "pod-b")];
        let live: HashSet<String> = ["pod-b".to_string()].into();
        let stale = stale(&records, &live);
        assert_eq!(stale, vec![&records[0]]);
    }

    #[test]
    fn lease_uids_cannot_name_a_file_elsewhere() {
        let dir = temp_dir();
        let journal = PauseJournal::open(&dir).unwrap();
        assert_eq!(journal.file("../../etc/x"), dir.join("______etc_x.json"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
