//! Running a node's processes as a given user: databases such as PostgreSQL refuse to run
//! as root, and own their data directory.
//!
//! The user is resolved once, in the parent (name lookups are not safe between `fork` and
//! `exec`); the child only calls `setgroups`, `setgid` and `setuid`, which are.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::LocalError;

/// A user to run as, with its primary and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl RunAs {
    /// Looks `name` up in the user database.
    pub(crate) fn resolve(name: &str) -> Result<RunAs, LocalError> {
        let unknown = || {
            LocalError::Config(format!(
                "user: no user {name:?} on this machine (the node's processes run as it)"
            ))
        };
        let c_name = CString::new(name).map_err(|_| unknown())?;
        let mut buf = vec![0u8; 16 << 10];
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives the use of `entry`.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return Err(unknown());
        }
        let (uid, gid) = (entry.pw_uid, entry.pw_gid);
        let mut count: libc::c_int = 64;
        let mut groups = vec![0 as libc::gid_t; count as usize];
        // SAFETY: `groups` has room for `count` entries; the call updates `count`.
        let rc =
            unsafe { libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc < 0 {
            groups = vec![0; count.max(0) as usize];
            // SAFETY: as above, with the size the first call asked for.
            unsafe { libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        }
        groups.truncate(count.max(0) as usize);
        Ok(RunAs {
            name: name.to_string(),
            uid,
            gid,
            groups,
        })
    }

    /// Gives `path` to the user.
    pub(crate) fn chown(&self, path: &Path) -> Result<(), LocalError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| LocalError::io("giving to the node's user", path, e))
    }

    /// Makes `command` switch to the user in the child, before `exec`. Register it before
    /// anything that must survive the switch (the parent-death signal is reset by it).
    pub(crate) fn apply(&self, command: &mut Command) {
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        // SAFETY: setgroups, setgid and setuid are async-signal-safe; `groups` was built
        // before the fork and is only read.
        unsafe {
            command.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
