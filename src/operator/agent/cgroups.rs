//! Finding a pod's cgroup, so a pause can freeze the whole pod (forks included) rather than
//! signal the processes that happen to exist.
//!
//! The pod's segment of a process's `/proc/<pid>/cgroup` path (see `discovery`) is the pod's
//! own cgroup: every container of the pod is below it. It is looked up under the agent's
//! view of the node's cgroup filesystem (`--cgroup-root`, the host's `/sys/fs/cgroup`):
//!
//! * cgroup v2 (`0::/…`): `<root>/<path>` on a unified host, `<root>/unified/<path>` on a
//!   hybrid one;
//! * cgroup v1: the line whose controllers include `freezer`, at `<root>/freezer/<path>`
//!   (each hierarchy is mounted under the name of its controllers).
//!
//! A path seen from inside a cgroup namespace starts with `/..`: it is relative to the
//! agent's own cgroup, which the agent cannot see from the host's side, so the pod's
//! directory is then searched for by name (pod segments name the UID, so there is one).

use std::path::{Path, PathBuf};

use super::discovery::pod_uid_in_segment;
use crate::dataplane::Freezer;

/// Where a pod's cgroup is, as one line of `/proc/<pid>/cgroup` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    /// Which hierarchy the line is about.
    pub hierarchy: Hierarchy,
    /// The path from the hierarchy's root to the pod's segment, inclusive, without the leading
    /// `/..` steps of a relative path.
    pub path: String,
    /// Whether the line's path was relative to a cgroup namespace (began with `/..`).
    pub relative: bool,
}

/// Which cgroup hierarchy a line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// The v2 hierarchy (`0::`), which has `cgroup.freeze` in every non-root cgroup.
    Unified,
    /// The v1 freezer controller's hierarchy.
    V1Freezer,
}

/// The pod cgroups the `/proc/<pid>/cgroup` lines of a process of pod `uid` name, v2 first.
pub fn pod_cgroups(cgroup_file: &str, uid: &str) -> Vec<PodCgroup> {
    let mut found: Vec<PodCgroup> = cgroup_file
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let hierarchy = if id == "0" && controllers.is_empty() {
                Hierarchy::Unified
            } else if controllers.split(',').any(|c| c == "freezer") {
                Hierarchy::V1Freezer
            } else {
                return None;
            };
            let mut segments = path.split('/').filter(|s| !s.is_empty()).peekable();
            let mut relative = false;
            while segments.next_if_eq(&"..").is_some() {
                relative = true;
            }
            let mut kept = Vec::new();
            for segment in segments {
                // Only a cgroup namespace's steps up come first; one later would climb out of
                // the hierarchy once joined to its root.
                if segment == ".." || segment == "." {
                    return None;
                }
                kept.push(segment);
                if pod_uid_in_segment(segment).as_deref() == Some(uid) {
                    return Some(PodCgroup {
                        hierarchy,
                        path: kept.join("/"),
                        relative,
                    });
                }
            }
            None
        })
        .collect();
    found.sort_by_key(|cgroup| cgroup.hierarchy != Hierarchy::Unified);
    found
}

/// How deep below a hierarchy's root a pod's cgroup is searched for (kubepods, QoS class,
/// pod: three levels under kubelet's default parent; a few more for custom parents).
const SEARCH_DEPTH: usize = 6;

/// The freezer of the first of `cgroups` found under `cgroup_root`.
pub fn locate_freezer(cgroup_root: &Path, cgroups: &[PodCgroup]) -> Option<Freezer> {
    cgroups.iter().find_map(|cgroup| {
        hierarchy_roots(cgroup_root, cgroup.hierarchy)
            .into_iter()
            .find_map(|root| {
                let dir = if cgroup.relative {
                    let name = cgroup.path.rsplit('/').next()?;
                    search(&root, name, SEARCH_DEPTH)?
                } else {
                    root.join(&cgroup.path)
                };
                Freezer::at(dir)
            })
    })
}

/// Where a hierarchy may be mounted under the cgroup root.
fn hierarchy_roots(cgroup_root: &Path, hierarchy: Hierarchy) -> Vec<PathBuf> {
    match hierarchy {
        Hierarchy::Unified => {
            let unified_host = cgroup_root.join("cgroup.controllers").is_file();
            if unified_host {
                vec![cgroup_root.to_path_buf()]
            } else {
                vec![cgroup_root.join("unified")]
            }
        }
        Hierarchy::V1Freezer => vec![cgroup_root.join("freezer")],
    }
}

/// The first directory named `name` under `root`, breadth first, at most `depth` levels down.
fn search(root: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let mut level = vec![root.to_path_buf()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if entry.file_name() == name {
                    return Some(entry.path());
                }
                next.push(entry.path());
            }
        }
        level = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11";

    fn systemd_segment() -> String {
        format!("kubepods-burstable-pod{}.slice", UID.replace('-', "_"))
    }

    #[test]
    fn the_v2_line_gives_the_pod_segment_and_its_parents() {
        let file = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/{}/cri-containerd-abc.scope\n",
            systemd_segment()
        );
        assert_eq!(
            pod_cgroups(&file, UID),
            vec![PodCgroup {
                hierarchy: Hierarchy::Unified,
                path: format!(
                    "kubepods.slice/kubepods-burstable.slice/{}",
                    systemd_segment()
                ),
                relative: false,
            }]
        );
    }

    #[test]
    fn only_the_freezer_line_of_v1_counts_and_v2_comes_first() {
        let file = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/abc\n\
             6:freezer:/kubepods/besteffort/pod{UID}/abc\n\
             3:cpu,cpuacct:/kubepods/besteffort/pod{UID}/abc\n\
             0::/kubepods/besteffort/pod{UID}/abc\n"
        );
        let found = pod_cgroups(&file, UID);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].hierarchy, Hierarchy::Unified);
        assert_eq!(found[1].hierarchy, Hierarchy::V1Freezer);
        assert_eq!(found[1].path, format!("kubepods/besteffort/pod{UID}"));
    }

    #[test]
    fn a_hybrid_host_whose_v2_line_names_no_pod_uses_the_v1_freezer() {
        let file = format!("6:freezer:/kubepods/besteffort/pod{UID}/abc\n0::/\n");
        let found = pod_cgroups(&file, UID);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].hierarchy, Hierarchy::V1Freezer);
    }

    #[test]
    fn relative_paths_lose_their_steps_up_and_say_so() {
        let file = format!("0::/../../{}/cri-containerd-abc.scope\n", systemd_segment());
        assert_eq!(
            pod_cgroups(&file, UID),
            vec![PodCgroup {
                hierarchy: Hierarchy::Unified,
                path: systemd_segment(),
                relative: true,
            }]
        );
    }

    #[test]
    fn a_path_that_climbs_after_its_start_gives_nothing() {
        let file = format!("0::/kubepods/../../etc/pod{UID}/abc\n6:freezer:/a/./pod{UID}\n");
        assert!(pod_cgroups(&file, UID).is_empty());
    }

    #[test]
    fn another_pods_cgroup_and_host_processes_give_nothing() {
        let other = "0::/kubepods/besteffort/pod0a0b0c0d-1111-2222-3333-444455556666/abc\n";
        assert!(pod_cgroups(other, UID).is_empty());
        assert!(pod_cgroups("0::/system.slice/kubelet.service\n", UID).is_empty());
        assert!(pod_cgroups("garbage\n\n::\n", UID).is_empty());
    }

    /// A fake cgroup tree in a temporary directory, removed on drop.
    struct FakeTree(PathBuf);

    impl FakeTree {
        fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let root = std::env::temp_dir().join(format!(
                "schism-fake-cgroups-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&root).unwrap();
            Self(root)
        }

        fn cgroup(&self, path: &str, control: &str) -> PathBuf {
            let dir = self.0.join(path);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(control), "0\n").unwrap();
            dir
        }
    }

    impl Drop for FakeTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_unified_host_has_the_v2_tree_at_the_root() {
        let tree = FakeTree::new();
        std::fs::write(tree.0.join("cgroup.controllers"), "cpu io memory\n").unwrap();
        let path = format!("kubepods/besteffort/pod{UID}");
        let dir = tree.cgroup(&path, "cgroup.freeze");
        let file = format!("0::/{path}/abc\n");
        let freezer = locate_freezer(&tree.0, &pod_cgroups(&file, UID)).unwrap();
        assert_eq!(freezer.dir(), dir);
    }

    #[test]
    fn a_hybrid_host_has_it_under_unified_and_v1_under_freezer() {
        let tree = FakeTree::new();
        let path = format!("kubepods/besteffort/pod{UID}");
        let v1 = tree.cgroup(&format!("freezer/{path}"), "freezer.state");
        let only_v1 = format!("6:freezer:/{path}/abc\n0::/\n");
        assert_eq!(
            locate_freezer(&tree.0, &pod_cgroups(&only_v1, UID))
                .unwrap()
                .dir(),
            v1
        );
        let v2 = tree.cgroup(&format!("unified/{path}"), "cgroup.freeze");
        let both = format!("6:freezer:/{path}/abc\n0::/{path}/abc\n");
        assert_eq!(
            locate_freezer(&tree.0, &pod_cgroups(&both, UID))
                .unwrap()
                .dir(),
            v2
        );
    }

    #[test]
    fn a_relative_path_is_found_by_the_pods_segment() {
        let tree = FakeTree::new();
        std::fs::write(tree.0.join("cgroup.controllers"), "cpu\n").unwrap();
        let dir = tree.cgroup(
            &format!(
                "kubepods.slice/kubepods-burstable.slice/{}",
                systemd_segment()
            ),
            "cgroup.freeze",
        );
        tree.cgroup("system.slice/containerd.service", "cgroup.freeze");
        let file = format!("0::/../../{}/cri-containerd-abc.scope\n", systemd_segment());
        assert_eq!(
            locate_freezer(&tree.0, &pod_cgroups(&file, UID))
                .unwrap()
                .dir(),
            dir
        );
    }

    #[test]
    fn no_tree_or_no_pod_directory_means_no_freezer() {
        let tree = FakeTree::new();
        let file = format!("0::/kubepods/pod{UID}/abc\n");
        assert_eq!(locate_freezer(&tree.0, &pod_cgroups(&file, UID)), None);
        assert_eq!(
            locate_freezer(Path::new("/nonexistent/cgroup"), &pod_cgroups(&file, UID)),
            None
        );
    }
}
