//! Dead-man guards: one process per fault that undoes the fault when its owner dies, or when
//! the deadline has passed and the owner has not undone it, with no further command.
//!
//! Why a process, and why this one:
//! * the fault's own watchdog thread ([`super::AppliedFault`]) dies with its process, and the
//!   kernel has no expiry for a qdisc, an iptables rule or a stopped process (only nftables
//!   set elements time out), so something outside the owner must hold the deadline;
//! * the guard is forked from the owner, not started from a program on disk: it needs no
//!   binary of Schism's and no helper such as `systemd-run`, and it works the same in the
//!   agent, in `schism run` and in a test binary. Everything it will need (the tool paths,
//!   their arguments, the namespaces as open descriptors) is prepared before the fork; after
//!   it the guard only makes system calls that are safe in the child of a threaded process
//!   (`poll`, `read`, `fork`, `setns`, `execve`, `kill`, `waitpid`, `open`, `write`), and never
//!   allocates;
//! * it leaves the owner's session (`setsid`), so a Ctrl-C or a kill of the owner's process
//!   group does not take the guard with it, and closes every descriptor it does not need, so
//!   it holds no socket, no pipe of another guard and no terminal;
//! * it learns of its owner's death from a pipe: the owner holds the only write end, which the
//!   kernel closes whatever way the owner ends (SIGKILL included). A byte on the pipe disarms
//!   the guard (the owner reverted the fault itself); end of file fires it at once (the owner
//!   is gone, so nobody else will revert); so does the deadline plus [`GRACE`], which leaves a
//!   live owner's own watchdog time to revert first and disarm the guard, so that the two never
//!   both act (a guard firing after its owner reverted could undo a newer fault in the same
//!   place);
//! * the guard holds the namespace open, so it undoes the fault in the namespace the fault is
//!   in, even if the path that named it now names another (a reused PID in `/proc/PID/ns/net`).
//!
//! What it does not cover: a guard shares its container's fate. When the agent's container
//! is killed as a whole, the runtime kills the guards in it too; there the agent's reap at its
//! next start removes what is left, as before.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use super::DataPlaneError;
use super::netns::Netns;
use super::process::ProcessTarget;

/// How long after the fault's deadline the guard acts if its owner, still alive, has not
/// reverted the fault: the owner's watchdog reverts at the deadline itself and disarms the
/// guard, which takes a few tool runs.
pub(crate) const GRACE: Duration = Duration::from_millis(1500);

/// One step of undoing something, as the guard will take it.
pub enum UndoStep {
    /// Run a program inside a namespace (`None`: the namespace the guard was started in); its
    /// exit status is not looked at (what it removes may already be gone).
    Run {
        /// Where the program runs.
        netns: Option<Netns>,
        /// The program's absolute path.
        program: std::path::PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Send SIGCONT.
    Continue(ProcessTarget),
    /// Send SIGKILL.
    Kill(ProcessTarget),
    /// Write `contents` to an existing file (a cgroup's freezer control file); a file that
    /// is gone is left alone.
    WriteFile {
        /// The file.
        path: std::path::PathBuf,
        /// What to write.
        contents: &'static [u8],
    },
}

/// A step prepared for the child: nothing in it allocates when used.
enum Prepared {
    Run {
        /// Index into the namespaces the guard keeps open, if it enters one.
        netns: Option<usize>,
        program: CString,
        /// Keeps the strings `argv` points into alive.
        _args: Vec<CString>,
        argv: Vec<*const libc::c_char>,
    },
    Signal(libc::pid_t, libc::c_int),
    Write(CString, &'static [u8]),
}

/// An armed guard. Disarm it once what it guards is undone; dropping it without disarming
/// fires it at once.
pub struct Guard {
    /// The write end of the pipe the guard waits on.
    pipe: OwnedFd,
    pid: libc::pid_t,
    disarmed: bool,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("pid", &self.pid).finish()
    }
}

impl Guard {
    /// Forks a guard that takes `steps` when this process dies or at `deadline` + [`GRACE`]
    /// (`None`: only when this process dies).
    pub fn start(steps: Vec<UndoStep>, deadline: Option<Instant>) -> Result<Self, DataPlaneError> {
        let mut namespaces: Vec<Netns> = Vec::new();
        let mut prepared = Vec::with_capacity(steps.len());
        for step in steps {
            prepared.push(match step {
                UndoStep::Run {
                    netns,
                    program,
                    args,
                } => {
                    let index =
                        netns.map(
                            |netns| match namespaces.iter().position(|n| same(n, &netns)) {
                                Some(i) => i,
                                None => {
                                    namespaces.push(netns);
                                    namespaces.len() - 1
                                }
                            },
                        );
                    let program = c_string(program.as_os_str().as_bytes())?;
                    let mut all = vec![program.clone()];
                    for arg in &args {
                        all.push(c_string(arg.as_bytes())?);
                    }
                    let mut argv: Vec<*const libc::c_char> =
                        all.iter().map(|a| a.as_ptr()).collect();
                    argv.push(std::ptr::null());
                    Prepared::Run {
                        netns: index,
                        program,
                        _args: all,
                        argv,
                    }
                }
                UndoStep::Continue(target) => {
                    Prepared::Signal(target.kill_argument(), libc::SIGCONT)
                }
                UndoStep::Kill(target) => Prepared::Signal(target.kill_argument(), libc::SIGKILL),
                UndoStep::WriteFile { path, contents } => {
                    Prepared::Write(c_string(path.as_os_str().as_bytes())?, contents)
                }
            });
        }
        let env = [
            c"PATH=/usr/sbin:/usr/bin:/sbin:/bin".as_ptr(),
            std::ptr::null(),
        ];
        let ns_fds: Vec<libc::c_int> = namespaces.iter().map(|n| n.raw_fd()).collect();
        // The guard's descriptors: the pipe at 3, the namespaces from 4 on.
        if ns_fds.len() > 64 {
            return Err(DataPlaneError::Invalid {
                what: "fault guard",
                reason: format!("{} namespaces in one fault (at most 64)", ns_fds.len()),
            });
        }
        let fire_at = match deadline {
            Some(deadline) => {
                monotonic_now() + deadline.saturating_duration_since(Instant::now()) + GRACE
            }
            None => Duration::MAX,
        };

        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: plain syscall into a local array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let (read_end, write_end) = (fds[0], fds[1]);
        // SAFETY: after the fork the child runs `guard_main`, which only makes async-signal-
        // safe system calls on data prepared above and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let error = std::io::Error::last_os_error();
            // SAFETY: closing descriptors we own.
            unsafe {
                libc::close(read_end);
                libc::close(write_end);
            }
            return Err(error.into());
        }
        if pid == 0 {
            // SAFETY: see above; does not return.
            unsafe { guard_main(read_end, &ns_fds, &prepared, env.as_ptr(), fire_at) }
        }
        // SAFETY: the read end is the guard's now; the write end is ours alone.
        unsafe { libc::close(read_end) };
        let pipe = unsafe { OwnedFd::from_raw_fd(write_end) };
        Ok(Guard {
            pipe,
            pid,
            disarmed: false,
        })
    }

    /// The guard's process id.
    #[cfg(test)]
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// What it guards is undone: the guard exits without acting, and is reaped.
    pub fn disarm(mut self) {
        let byte = [b'x'];
        // SAFETY: writing one byte from a local buffer to our pipe.
        let _ = unsafe { libc::write(self.pipe.as_raw_fd(), byte.as_ptr().cast(), 1) };
        self.disarmed = true;
        reap(self.pid);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.disarmed {
            return;
        }
        // Closing the pipe (after this function) fires the guard. It is this process's child:
        // reap it once its steps are done, without making the caller wait for them.
        let pid = self.pid;
        let _ = std::thread::Builder::new()
            .name("schism-guard-reap".into())
            .spawn(move || reap(pid));
    }
}

/// Waits for the guard to exit (it does at once when disarmed; when firing, after its steps).
fn reap(pid: libc::pid_t) {
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn same(a: &Netns, b: &Netns) -> bool {
    match (a.inode(), b.inode()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.path() == b.path(),
    }
}

fn c_string(bytes: &[u8]) -> Result<CString, DataPlaneError> {
    CString::new(bytes).map_err(|_| DataPlaneError::Invalid {
        what: "fault guard argument",
        reason: format!("{:?} contains a NUL byte", String::from_utf8_lossy(bytes)),
    })
}

/// CLOCK_MONOTONIC now, as a duration since its epoch (the clock `Instant` reads on Linux).
fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The guard. Runs in the forked child: only async-signal-safe calls, no allocation, no
/// return.
unsafe fn guard_main(
    read_end: libc::c_int,
    ns_fds: &[libc::c_int],
    steps: &[Prepared],
    env: *const *const libc::c_char,
    fire_at: Duration,
) -> ! {
    unsafe {
        libc::setsid();
        // Signals: the owner's handlers mean nothing here; a terminal's or a group's signals
        // must not end the guard.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        for signal in [libc::SIGINT, libc::SIGHUP, libc::SIGPIPE, libc::SIGQUIT] {
            libc::signal(signal, libc::SIG_IGN);
        }
        for signal in [libc::SIGTERM, libc::SIGCHLD, libc::SIGALRM, libc::SIGUSR1] {
            libc::signal(signal, libc::SIG_DFL);
        }
        // Descriptors: the pipe at 3 and the namespaces at 4.., /dev/null at 0-2, no others.
        // Everything is first copied above where the moves land (at most 4 + 64), so that no
        // move overwrites a descriptor still to move.
        const ABOVE: libc::c_int = 100;
        let pipe_copy = libc::fcntl(read_end, libc::F_DUPFD, ABOVE);
        if pipe_copy < 0 {
            libc::_exit(2);
        }
        let mut ns_copies = [0 as libc::c_int; 64];
        for (i, &fd) in ns_fds.iter().enumerate() {
            ns_copies[i] = libc::fcntl(fd, libc::F_DUPFD, ABOVE);
            if ns_copies[i] < 0 {
                libc::_exit(2);
            }
        }
        libc::dup2(pipe_copy, 3);
        for (i, &fd) in ns_copies[..ns_fds.len()].iter().enumerate() {
            libc::dup2(fd, 4 + i as libc::c_int);
        }
        let keep_to = 4 + ns_fds.len() as libc::c_int;
        if libc::syscall(
            libc::SYS_close_range,
            keep_to as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) != 0
        {
            // Kernels before 5.9: close what a default limit allows.
            for fd in keep_to..65_536 {
                libc::close(fd);
            }
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        // The tools get none of the guard's own descriptors.
        for fd in 3..keep_to {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }

        // Wait for a byte (disarmed), end of file (owner gone) or the deadline.
        let mut owner_gone = false;
        loop {
            let now = monotonic_now();
            if now >= fire_at {
                break;
            }
            let left = (fire_at - now).as_millis().min(i32::MAX as u128) as libc::c_int;
            let mut pfd = libc::pollfd {
                fd: 3,
                events: libc::POLLIN,
                revents: 0,
            };
            let r = libc::poll(&mut pfd, 1, left.max(1));
            if r < 0 {
                continue; // EINTR
            }
            if r == 0 {
                continue; // the clock decides
            }
            let mut byte = [0u8; 1];
            let n = libc::read(3, byte.as_mut_ptr().cast(), 1);
            if n == 1 {
                libc::_exit(0);
            }
            if n == 0 || (pfd.revents & (libc::POLLHUP | libc::POLLERR)) != 0 {
                owner_gone = true;
                break;
            }
        }

        take_steps(steps, env);
        if owner_gone {
            // A tool the owner started just before it died may still be finishing its change:
            // it dies with its owner (PR_SET_PDEATHSIG), but the guard may wake first. A second
            // pass removes what such a tool added; nothing else of the owner's can come.
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 300_000_000,
            };
            libc::nanosleep(&pause, std::ptr::null_mut());
            take_steps(steps, env);
        }
        libc::_exit(0)
    }
}

/// Takes every step once. Runs in the guard: only async-signal-safe calls.
unsafe fn take_steps(steps: &[Prepared], env: *const *const libc::c_char) {
    unsafe {
        for step in steps {
            match step {
                Prepared::Signal(target, signal) => {
                    libc::kill(*target, *signal);
                }
                Prepared::Write(path, contents) => {
                    // No O_CREAT: a cgroup that is gone is not made into a plain file.
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd >= 0 {
                        libc::write(fd, contents.as_ptr().cast(), contents.len());
                        libc::close(fd);
                    }
                }
                Prepared::Run {
                    netns,
                    program,
                    argv,
                    ..
                } => {
                    let child = libc::fork();
                    if child == 0 {
                        if let Some(netns) = netns
                            && libc::setns(4 + *netns as libc::c_int, libc::CLONE_NEWNET) != 0
                        {
                            libc::_exit(126);
                        }
                        libc::execve(program.as_ptr(), argv.as_ptr(), env);
                        libc::_exit(127);
                    }
                    if child > 0 {
                        while libc::waitpid(child, std::ptr::null_mut(), 0) < 0
                            && *libc::__errno_location() == libc::EINTR
                        {}
                    }
                }
            }
        }
    }
}

/// The program and arguments of `tool` for an undo step, or why it cannot be found.
pub(crate) fn tool_step(
    netns: &Netns,
    tool: super::Tool,
    args: &[&str],
) -> Result<UndoStep, DataPlaneError> {
    Ok(UndoStep::Run {
        netns: Some(netns.clone()),
        program: tool.locate()?,
        args: args.iter().map(|a| a.to_string()).collect(),
    })
}

/// For tests: whether a process exists (and is not a zombie).
#[cfg(test)]
fn alive(pid: libc::pid_t) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = status
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    matches!(state, Some(s) if s != 'Z' && s != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disarmed_guard_exits_without_acting_and_is_reaped() {
        // A guard that fired would resume the stopped child.
        let (mut child, pid) = stopped_sleeper();
        let guard =
            Guard::start(resume(pid), Some(Instant::now() + Duration::from_secs(30))).unwrap();
        let guard_pid = guard.pid();
        assert!(alive(guard_pid));
        guard.disarm();
        assert!(!alive(guard_pid), "reaped at once");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            state_of(pid),
            Some('T'),
            "still stopped: the guard did not act"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_guard_dropped_without_disarming_acts_at_once() {
        let (mut child, pid) = stopped_sleeper();
        let guard =
            Guard::start(resume(pid), Some(Instant::now() + Duration::from_secs(30))).unwrap();
        drop(guard);
        assert!(
            wait_for(|| state_of(pid) == Some('S'), Duration::from_secs(2)),
            "resumed once the owner's end closed"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_guard_acts_after_the_deadline_and_grace_while_its_owner_lives() {
        let (mut child, pid) = stopped_sleeper();
        let start = Instant::now();
        let guard = Guard::start(resume(pid), Some(start + Duration::from_millis(200))).unwrap();
        assert!(wait_for(
            || state_of(pid) == Some('S'),
            Duration::from_secs(5)
        ));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) + GRACE,
            "not before the deadline and grace: {took:?}"
        );
        guard.disarm();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_fired_guard_writes_existing_files_and_creates_none() {
        let dir = std::env::temp_dir().join(format!("schism-guard-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let present = dir.join("freezer.state");
        std::fs::write(&present, "FROZEN").unwrap();
        let missing = dir.join("gone/freezer.state");
        let steps = [&present, &missing]
            .into_iter()
            .map(|path| UndoStep::WriteFile {
                path: path.clone(),
                contents: b"THAWED",
            })
            .collect();
        drop(Guard::start(steps, None).unwrap());
        assert!(
            wait_for(
                || std::fs::read_to_string(&present).unwrap() == "THAWED",
                Duration::from_secs(2)
            ),
            "the guard wrote the thaw value"
        );
        assert!(!missing.exists() && !dir.join("gone").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A child of ours, stopped: it stands for a paused node.
    fn stopped_sleeper() -> (std::process::Child, i32) {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        (child, pid)
    }

    fn resume(pid: i32) -> Vec<UndoStep> {
        vec![UndoStep::Continue(ProcessTarget::Pid(pid))]
    }

    fn state_of(pid: i32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.chars().next()
    }

    fn wait_for(mut done: impl FnMut() -> bool, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done()
    }
}
