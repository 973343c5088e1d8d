//! The run's dead-man: a guard process (see `dataplane::Guard`) that removes what a local run
//! created if the process driving it dies, with no command after that.
//!
//! It is armed before the first namespace exists and re-armed whenever the set of node
//! process groups changes (a new guard first, then the old one disarmed, so the run is never
//! unguarded). When it fires it kills every node's process group (the nodes themselves die
//! with their owner by `PR_SET_PDEATHSIG`, but not what they started), deletes the run's
//! namespaces (and with them every veth, the bridge and every rule inside), its data
//! directories, its node cgroups (thawed before the kill, emptied after it) and its record,
//! in that order: exactly what a normal teardown removes. A
//! normal teardown disarms it at the end, so an owner killed during its own teardown still
//! leaves nothing. `schism cleanup` remains for what a guard cannot cover (a guard killed
//! together with its owner, a reboot mid-run leaves nothing anyway).

use std::path::{Path, PathBuf};

use crate::dataplane::{Guard, ProcessTarget, Tool, UndoStep};

use super::LocalError;
use super::node_cgroups::NodeCgroups;
use super::record::RUNS_DIR;

/// What a run holds, as the guard needs it.
pub(crate) struct RunHoldings<'a> {
    pub run_id: &'a str,
    pub node_groups: Vec<i32>,
    pub cgroups: Option<&'a NodeCgroups>,
    pub namespaces: &'a [String],
    pub data_dirs: &'a [PathBuf],
}

/// The guard's steps for `run`, in the order they must be taken (pure but for locating the
/// two programs).
pub(crate) fn undo_steps(run: &RunHoldings<'_>) -> Result<Vec<UndoStep>, LocalError> {
    let ip = Tool::Ip.locate()?;
    let rm = locate("rm")?;
    let rmdir = locate("rmdir")?;
    let mut steps: Vec<UndoStep> = run.cgroups.map(NodeCgroups::thaw_steps).unwrap_or_default();
    steps.extend(
        run.node_groups
            .iter()
            .map(|&group| UndoStep::Kill(ProcessTarget::Group(group))),
    );
    steps.extend(run.cgroups.map(NodeCgroups::kill_steps).unwrap_or_default());
    steps.extend(run.namespaces.iter().map(|name| UndoStep::Run {
        netns: None,
        program: ip.clone(),
        args: vec!["netns".into(), "del".into(), name.clone()],
    }));
    for dir in run.data_dirs {
        steps.push(UndoStep::Run {
            netns: None,
            program: rm.clone(),
            args: vec!["-rf".into(), "--".into(), dir.display().to_string()],
        });
    }
    // The killed nodes have had the namespace and directory removals to exit in; a cgroup
    // still busy stays for `schism cleanup`, which removes node cgroups no live run claims.
    if let Some(cgroups) = run.cgroups {
        let mut args = vec!["--".to_string()];
        args.extend(cgroups.dirs().iter().map(|dir| dir.display().to_string()));
        steps.push(UndoStep::Run {
            netns: None,
            program: rmdir,
            args,
        });
    }
    steps.push(UndoStep::Run {
        netns: None,
        program: rm,
        args: vec![
            "-rf".into(),
            "--".into(),
            Path::new(RUNS_DIR).join(run.run_id).display().to_string(),
        ],
    });
    Ok(steps)
}

/// Starts a guard for `run`.
pub(crate) fn arm(run: &RunHoldings<'_>) -> Result<Guard, LocalError> {
    Ok(Guard::start(undo_steps(run)?, None)?)
}

/// A coreutils program's path.
fn locate(program: &str) -> Result<PathBuf, LocalError> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.exists())
        .ok_or_else(|| {
            LocalError::Node(format!(
                "`{program}` was not found in /usr/bin or /bin (package coreutils)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_kills_the_nodes_before_their_namespaces_go_and_removes_the_record_last() {
        let namespaces = vec!["sx-r1-br".to_string(), "sx-r1-n1".to_string()];
        let data_dirs = vec![PathBuf::from("/tmp/schism-r1/n1/data")];
        let steps = undo_steps(&RunHoldings {
            run_id: "r1",
            node_groups: vec![4242],
            cgroups: None,
            namespaces: &namespaces,
            data_dirs: &data_dirs,
        })
        .unwrap();
        let described: Vec<String> = steps
            .iter()
            .map(|step| match step {
                UndoStep::Kill(target) => format!("kill {target}"),
                UndoStep::Continue(target) => format!("continue {target}"),
                UndoStep::Run { args, .. } => args.join(" "),
                UndoStep::WriteFile { path, contents } => {
                    format!(
                        "write {} to {}",
                        String::from_utf8_lossy(contents),
                        path.display()
                    )
                }
            })
            .collect();
        assert_eq!(
            described,
            vec![
                "kill process group 4242",
                "netns del sx-r1-br",
                "netns del sx-r1-n1",
                "-rf -- /tmp/schism-r1/n1/data",
                "-rf -- /run/schism/r1",
            ]
        );
    }
}
