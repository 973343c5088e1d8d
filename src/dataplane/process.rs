//! Process faults: SIGKILL, and SIGSTOP with a SIGCONT at the deadline.

use std::time::Instant;

use super::guard::{Guard, UndoStep};
use super::{AppliedFault, DataPlaneError, FaultId, FaultKind};

/// Which processes a signal goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessTarget {
    /// One process.
    Pid(i32),
    /// Every process of a process group (a node started in its own group with its children).
    Group(i32),
}

impl ProcessTarget {
    /// The `pid` argument of kill(2) for this target.
    pub(crate) fn kill_argument(self) -> i32 {
        match self {
            ProcessTarget::Pid(pid) => pid,
            ProcessTarget::Group(pgid) => -pgid,
        }
    }

    fn signal(self, signal: libc::c_int, name: &'static str) -> Result<(), DataPlaneError> {
        let id = match self {
            ProcessTarget::Pid(pid) | ProcessTarget::Group(pid) => pid,
        };
        if id <= 1 {
            return Err(DataPlaneError::Invalid {
                what: "process target",
                reason: format!("{self} would signal init or every process"),
            });
        }
        // SAFETY: plain syscall.
        if unsafe { libc::kill(self.kill_argument(), signal) } == 0 {
            return Ok(());
        }
        let source = std::io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::EPERM) {
            return Err(DataPlaneError::NotRoot {
                action: "signalling another user's process",
            });
        }
        Err(DataPlaneError::Signal {
            signal: name,
            target: self.to_string(),
            source,
        })
    }
}

impl std::fmt::Display for ProcessTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessTarget::Pid(pid) => write!(f, "process {pid}"),
            ProcessTarget::Group(pgid) => write!(f, "process group {pgid}"),
        }
    }
}

/// Sends SIGKILL. A target that no longer exists is an error ([`DataPlaneError::Signal`] with
/// ESRCH), so callers notice they killed nothing.
pub fn kill_process(target: ProcessTarget) -> Result<(), DataPlaneError> {
    target.signal(libc::SIGKILL, "SIGKILL")
}

/// Sends SIGSTOP; the returned fault sends SIGCONT when healed, dropped or at `deadline`.
pub fn pause_process(
    target: ProcessTarget,
    id: &FaultId,
    deadline: Instant,
) -> Result<AppliedFault, DataPlaneError> {
    // The guard first: from the moment the process stops, something outside this process
    // will resume it (see `guard`).
    let guard = Guard::start(vec![UndoStep::Continue(target)], Some(deadline))?;
    if let Err(error) = target.signal(libc::SIGSTOP, "SIGSTOP") {
        guard.disarm();
        return Err(error);
    }
    let resume = move || match target.signal(libc::SIGCONT, "SIGCONT") {
        // A paused process that was killed meanwhile needs no resuming.
        Err(DataPlaneError::Signal { source, .. })
            if source.raw_os_error() == Some(libc::ESRCH) =>
        {
            Ok(())
        }
        other => other,
    };
    Ok(AppliedFault::new(
        id.clone(),
        FaultKind::Pause,
        target.to_string(),
        deadline,
        Box::new(resume),
        Some(guard),
    ))
}
