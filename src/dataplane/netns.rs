//! Network namespaces named by a path, and child processes or threads entered into them.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::DataPlaneError;

/// An open network namespace, identified by a path such as `/run/netns/NAME` or
/// `/proc/PID/ns/net`.
///
/// Holding the file keeps the namespace alive and lets every fault enter it by descriptor, so a
/// namespace renamed or unmounted after opening is still the one faults land in.
#[derive(Clone, Debug)]
pub struct Netns {
    path: PathBuf,
    file: Arc<File>,
}

impl Netns {
    /// Opens the namespace at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataPlaneError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| DataPlaneError::NetnsOpen {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            file: Arc::new(file),
        })
    }

    /// The path the namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open descriptor (for a forked guard that keeps the namespace, see `guard`).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The namespace's inode number, which identifies it across paths (`/proc/PID/ns/net` of
    /// every process inside links to the same inode).
    pub fn inode(&self) -> Result<u64, DataPlaneError> {
        use std::os::unix::fs::MetadataExt;
        let meta = self
            .file
            .metadata()
            .map_err(|source| DataPlaneError::NetnsOpen {
                path: self.path.clone(),
                source,
            })?;
        Ok(meta.ino())
    }

    /// A command that runs `program` inside this namespace (the child calls `setns` before
    /// `exec`, so the caller's own namespace is never touched).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        self.enter_in_child(&mut command);
        command
    }

    /// Makes an existing command enter this namespace in the child before `exec`.
    pub fn enter_in_child(&self, command: &mut Command) {
        // The child gets its own reference to the descriptor; it stays open in the parent until
        // the command is dropped because the closure owns a clone of the Arc.
        let file = Arc::clone(&self.file);
        // SAFETY: the closure only calls `setns`, which is async-signal-safe.
        unsafe {
            command.pre_exec(move || setns_net(file.as_raw_fd()));
        }
    }

    /// Moves the calling thread into this namespace. Sockets the thread creates afterwards
    /// belong to the namespace and keep belonging to it when used from other threads.
    ///
    /// Only call this on a thread you own and never give back to a pool (a fresh
    /// `std::thread`, or a runtime's `on_thread_start` hook): the thread stays in the
    /// namespace until it exits.
    pub fn enter_current_thread(&self) -> Result<(), DataPlaneError> {
        setns_net(self.file.as_raw_fd()).map_err(|source| DataPlaneError::NetnsEnter {
            path: self.path.clone(),
            source,
        })
    }

    /// Runs `work` on a fresh thread inside this namespace and returns its result.
    pub fn run_in<T, F>(&self, work: F) -> Result<T, DataPlaneError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let netns = self.clone();
        std::thread::Builder::new()
            .name("schism-netns".into())
            .spawn(move || -> Result<T, DataPlaneError> {
                netns.enter_current_thread()?;
                Ok(work())
            })
            .map_err(DataPlaneError::Io)?
            .join()
            .map_err(|_| DataPlaneError::ThreadPanicked("netns worker"))?
    }
}

fn setns_net(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
