//! Locating and running the system tools the data plane drives.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};

use super::{DataPlaneError, Netns};

/// A system tool the data plane runs as a child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `nft` (partitions, loss).
    Nft,
    /// `tc` (netem, tbf).
    Tc,
    /// `iptables` (NFQUEUE rules for the delay loop).
    Iptables,
    /// `iptables-restore` (atomic batches of NFQUEUE rules).
    IptablesRestore,
    /// `ip` (namespaces, links, addresses).
    Ip,
}

impl Tool {
    /// The program name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Nft => "nft",
            Tool::Tc => "tc",
            Tool::Iptables => "iptables",
            Tool::IptablesRestore => "iptables-restore",
            Tool::Ip => "ip",
        }
    }

    /// The Debian package providing the program.
    pub fn package(self) -> &'static str {
        match self {
            Tool::Nft => "nftables",
            Tool::Tc | Tool::Ip => "iproute2",
            Tool::Iptables | Tool::IptablesRestore => "iptables",
        }
    }

    /// The absolute path of the program, searching PATH and the sbin directories (which a
    /// non-login root shell may not have on PATH).
    pub fn locate(self) -> Result<PathBuf, DataPlaneError> {
        let program = self.program();
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let fallback = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
        std::env::split_paths(&path_var)
            .chain(fallback)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
            .ok_or(DataPlaneError::ToolMissing {
                tool: program,
                package: self.package(),
            })
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Fails with [`DataPlaneError::NotRoot`] unless the effective user is root.
pub fn require_root(action: &'static str) -> Result<(), DataPlaneError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(DataPlaneError::NotRoot { action })
    }
}

/// Fails with [`DataPlaneError::ToolMissing`] for the first tool that is not installed.
pub fn require_tools(tools: &[Tool]) -> Result<(), DataPlaneError> {
    tools.iter().try_for_each(|tool| tool.locate().map(drop))
}

/// A tool invocation inside a namespace that has been started but not yet waited for, so
/// several namespaces can be changed in parallel.
pub(crate) struct RunningTool {
    child: Child,
    description: String,
    netns: String,
}

impl RunningTool {
    /// Starts `tool args…` inside `netns`, feeding `stdin` to it.
    pub(crate) fn start(
        netns: &Netns,
        tool: Tool,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Self, DataPlaneError> {
        let program = tool.locate()?;
        let mut command = netns.command(&program);
        // A tool outlives a killed owner only as long as it takes the kernel to deliver this
        // SIGKILL, so a fault's guard (see `guard`) never races a change still being made.
        // SAFETY: prctl is async-signal-safe. The tool is started and waited for on one
        // thread, so the thread whose exit would also fire the signal outlives it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                DataPlaneError::NotRoot {
                    action: "entering a network namespace",
                }
            } else {
                DataPlaneError::Io(source)
            }
        })?;
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            pipe.write_all(text.as_bytes())?;
        }
        Ok(Self {
            child,
            description: format!("{} {}", tool.program(), args.join(" ")),
            netns: netns.path().display().to_string(),
        })
    }

    /// Waits for the tool and turns a failure into [`DataPlaneError::ToolFailed`].
    pub(crate) fn finish(self) -> Result<String, DataPlaneError> {
        let Output {
            status,
            stdout,
            stderr,
        } = self.child.wait_with_output()?;
        if status.success() {
            return Ok(String::from_utf8_lossy(&stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        if stderr.contains("Operation not permitted") {
            return Err(DataPlaneError::NotRoot {
                action: "changing network rules",
            });
        }
        Err(DataPlaneError::ToolFailed {
            command: self.description,
            netns: self.netns,
            status: status.to_string(),
            stderr,
        })
    }
}

/// Runs `tool args…` inside `netns` and returns its stdout.
pub(crate) fn run_tool(
    netns: &Netns,
    tool: Tool,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, DataPlaneError> {
    RunningTool::start(netns, tool, args, stdin)?.finish()
}
