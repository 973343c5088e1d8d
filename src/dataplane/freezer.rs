//! Pausing a whole cgroup with the kernel's freezer, and thawing it at the deadline.
//!
//! SIGSTOP stops the processes that exist when it is sent; a process forked a moment later
//! (a worker, a shell in a health check) runs on, so a "paused" server may still answer. The
//! freezer stops every task of the cgroup and its descendants, including tasks that join or
//! are forked while it is frozen, and the tasks cannot notice or undo it. Two interfaces:
//!
//! * cgroup v1: `<cgroup>/freezer.state` in the freezer hierarchy; write `FROZEN` or `THAWED`,
//!   read back `FREEZING` until every task has stopped;
//! * cgroup v2: `<cgroup>/cgroup.freeze` (`1` or `0`), with `frozen 1` in `cgroup.events`
//!   once every task has stopped.
//!
//! A frozen cgroup stays frozen when the process that froze it dies, so each freeze has a
//! [`Guard`] that writes the thaw value when its owner dies or past the deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::guard::{Guard, UndoStep};
use super::{AppliedFault, DataPlaneError, FaultId, FaultKind};

/// Which freezer interface a cgroup directory offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezerVersion {
    /// `freezer.state` (cgroup v1's freezer controller).
    V1,
    /// `cgroup.freeze` (cgroup v2, any non-root cgroup).
    V2,
}

impl FreezerVersion {
    fn control_file(self) -> &'static str {
        match self {
            FreezerVersion::V1 => "freezer.state",
            FreezerVersion::V2 => "cgroup.freeze",
        }
    }

    fn frozen_value(self) -> &'static [u8] {
        match self {
            FreezerVersion::V1 => &b"FROZEN"[..],
            FreezerVersion::V2 => &b"1"[..],
        }
    }

    fn thawed_value(self) -> &'static [u8] {
        match self {
            FreezerVersion::V1 => &b"THAWED"[..],
            FreezerVersion::V2 => &b"0"[..],
        }
    }
}

/// A cgroup directory whose tasks can be frozen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freezer {
    dir: PathBuf,
    version: FreezerVersion,
}

/// Whether a freezer's tasks are running, stopping or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezerState {
    /// Not frozen (nor asked to be).
    Thawed,
    /// Asked to freeze; some tasks have not stopped yet.
    Freezing,
    /// Every task is stopped.
    Frozen,
}

impl Freezer {
    /// The freezer of the cgroup at `dir`, if it has one: `freezer.state` in a v1 freezer
    /// hierarchy, `cgroup.freeze` in a v2 cgroup (the root cgroup of either has none).
    pub fn at(dir: impl Into<PathBuf>) -> Option<Self> {
        let dir = dir.into();
        [FreezerVersion::V2, FreezerVersion::V1]
            .into_iter()
            .find(|version| dir.join(version.control_file()).is_file())
            .map(|version| Self { dir, version })
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which interface it offers.
    pub fn version(&self) -> FreezerVersion {
        self.version
    }

    /// What the kernel says of the cgroup now.
    pub fn state(&self) -> Result<FreezerState, DataPlaneError> {
        match self.version {
            FreezerVersion::V1 => {
                let state = std::fs::read_to_string(self.dir.join("freezer.state"))?;
                Ok(match state.trim() {
                    "FROZEN" => FreezerState::Frozen,
                    "FREEZING" => FreezerState::Freezing,
                    _ => FreezerState::Thawed,
                })
            }
            FreezerVersion::V2 => {
                let asked = std::fs::read_to_string(self.dir.join("cgroup.freeze"))?;
                let events = std::fs::read_to_string(self.dir.join("cgroup.events"))?;
                let frozen = events.lines().any(|line| line.trim() == "frozen 1");
                Ok(match (asked.trim() == "1", frozen) {
                    (_, true) => FreezerState::Frozen,
                    (true, false) => FreezerState::Freezing,
                    (false, false) => FreezerState::Thawed,
                })
            }
        }
    }

    /// Thaws the cgroup. A cgroup that no longer exists (its pod is gone) needs no thawing.
    pub fn thaw(&self) -> Result<(), DataPlaneError> {
        self.write(self.version.thawed_value())
    }

    fn write(&self, value: &[u8]) -> Result<(), DataPlaneError> {
        use std::io::Write;
        let path = self.control_file();
        // Never created: a control file that is missing means the cgroup is gone.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut file| file.write_all(value));
        match written {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(DataPlaneError::NotRoot {
                    action: "writing a cgroup's freezer",
                })
            }
            Err(error) => Err(DataPlaneError::Freezer {
                path,
                reason: error.to_string(),
            }),
        }
    }

    fn control_file(&self) -> PathBuf {
        self.dir.join(self.version.control_file())
    }
}

impl std::fmt::Display for Freezer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cgroup {}", self.dir.display())
    }
}

/// How long a freeze may take to stop every task before [`freeze_cgroup`] gives up. A task
/// in an uninterruptible sleep (a disk write, a FUSE call) stops only when the call returns.
const FREEZE_SETTLE: Duration = Duration::from_secs(2);

/// Freezes every task of the cgroup until `deadline`; the returned fault thaws it when
/// healed, dropped or at the deadline, and its guard when this process dies.
pub fn freeze_cgroup(
    freezer: &Freezer,
    id: &FaultId,
    deadline: Instant,
) -> Result<AppliedFault, DataPlaneError> {
    // The guard first: from the moment the cgroup freezes, something outside this process
    // will thaw it.
    let guard = Guard::start(
        vec![UndoStep::WriteFile {
            path: freezer.control_file(),
            contents: freezer.version.thawed_value(),
        }],
        Some(deadline),
    )?;
    let frozen = freezer
        .write(freezer.version.frozen_value())
        .and_then(|()| wait_frozen(freezer));
    if let Err(error) = frozen {
        let _ = freezer.thaw();
        guard.disarm();
        return Err(error);
    }
    let thaw = freezer.clone();
    Ok(AppliedFault::new(
        id.clone(),
        FaultKind::Freeze,
        freezer.to_string(),
        deadline,
        Box::new(move || thaw.thaw()),
        Some(guard),
    ))
}

/// Waits until every task of the cgroup has stopped.
fn wait_frozen(freezer: &Freezer) -> Result<(), DataPlaneError> {
    let give_up = Instant::now() + FREEZE_SETTLE;
    loop {
        match freezer.state()? {
            FreezerState::Frozen => return Ok(()),
            FreezerState::Thawed => {
                return Err(DataPlaneError::Freezer {
                    path: freezer.control_file(),
                    reason: "the cgroup thawed while it was being frozen".into(),
                });
            }
            FreezerState::Freezing if Instant::now() >= give_up => {
                return Err(DataPlaneError::Freezer {
                    path: freezer.control_file(),
                    reason: format!(
                        "some tasks did not stop within {} s (in an uninterruptible sleep?)",
                        FREEZE_SETTLE.as_secs()
                    ),
                });
            }
            FreezerState::Freezing => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake cgroup directory (a plain directory with the control files).
    fn fake(files: &[(&str, &str)]) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "schism-fake-cgroup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        dir
    }

    #[test]
    fn the_interface_is_told_by_the_control_file() {
        let v1 = fake(&[("freezer.state", "THAWED\n")]);
        let v2 = fake(&[("cgroup.freeze", "0\n"), ("cgroup.events", "frozen 0\n")]);
        let none = fake(&[("cgroup.procs", "")]);
        assert_eq!(Freezer::at(&v1).unwrap().version(), FreezerVersion::V1);
        assert_eq!(Freezer::at(&v2).unwrap().version(), FreezerVersion::V2);
        assert_eq!(Freezer::at(&none), None);
        for dir in [v1, v2, none] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn states_are_read_from_either_interface() {
        let cases = [
            (vec![("freezer.state", "FROZEN\n")], FreezerState::Frozen),
            (
                vec![("freezer.state", "FREEZING\n")],
                FreezerState::Freezing,
            ),
            (vec![("freezer.state", "THAWED\n")], FreezerState::Thawed),
            (
                vec![
                    ("cgroup.freeze", "1\n"),
                    ("cgroup.events", "populated 1\nfrozen 1\n"),
                ],
                FreezerState::Frozen,
            ),
            (
                vec![
                    ("cgroup.freeze", "1\n"),
                    ("cgroup.events", "populated 1\nfrozen 0\n"),
                ],
                FreezerState::Freezing,
            ),
            (
                vec![
                    ("cgroup.freeze", "0\n"),
                    ("cgroup.events", "populated 1\nfrozen 0\n"),
                ],
                FreezerState::Thawed,
            ),
        ];
        for (files, expected) in cases {
            let dir = fake(&files);
            assert_eq!(
                Freezer::at(&dir).unwrap().state().unwrap(),
                expected,
                "{files:?}"
            );
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn a_cgroup_that_is_gone_needs_no_thawing() {
        let dir = fake(&[("cgroup.freeze", "1\n"), ("cgroup.events", "frozen 1\n")]);
        let freezer = Freezer::at(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        freezer.thaw().expect("nothing to thaw is not an error");
    }
}
