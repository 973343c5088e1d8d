//! Finding a pod's processes and network namespace on this node from `/proc` alone.
//!
//! The kubelet puts every container of a pod in a cgroup whose path names the pod UID, so
//! `/proc/<pid>/cgroup` says which pod a process belongs to without asking the container runtime.
//! Two layouts exist, depending on the kubelet's cgroup driver:
//!
//! * cgroupfs: `/kubepods/burstable/pod6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11/<container>`
//! * systemd:  `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c0d1e_8a55_4c55_9a0e_4d7f3f0b8a11.slice/cri-containerd-<id>.scope`
//!
//! both in cgroup v1 lines (`12:memory:/…`) and the v2 line (`0::/…`). When the agent runs in
//! its own cgroup namespace the paths are relative (`0::/../../kubepods-…-pod<uid>.slice/…`)
//! but still contain the pod's segment, so the same parsing applies.
//!
//! Everything reads below a root directory (normally `/proc`), so tests run on a fake tree.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A network namespace, identified the way the kernel does: device and inode of its nsfs file.
/// Every `/proc/<pid>/ns/net` of the processes inside, and every bind mount of it such as
/// `/run/netns/NAME`, has the same identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespaceId {
    /// Device of the nsfs file.
    pub device: u64,
    /// Inode of the nsfs file (what `ip netns identify` and `lsns` show).
    pub inode: u64,
}

impl NamespaceId {
    /// The identity of the namespace at `path` (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }
}

/// One process as seen under the proc root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEntry {
    /// Process id (in the proc root's PID namespace: the host's, for a hostPID agent).
    pub pid: i32,
    /// UID of the pod whose cgroup holds the process, lowercase with dashes.
    pub pod_uid: Option<String>,
    /// Its network namespace, when readable.
    pub netns: Option<NamespaceId>,
}

/// The processes of one pod on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProcesses {
    /// The pod UID, lowercase with dashes.
    pub uid: String,
    /// Its processes, lowest pid first.
    pub pids: Vec<i32>,
    /// The pod's network namespace: that of its lowest pid (the sandbox's `pause` process,
    /// which starts first and holds the namespace for the other containers).
    pub netns: Option<PodNetns>,
}

/// Where a pod's network namespace can be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetns {
    /// `<proc root>/<pid>/ns/net`.
    pub path: PathBuf,
    /// Its identity.
    pub id: NamespaceId,
    /// True when it is the namespace of the proc root's PID 1, i.e. the host's: a
    /// `hostNetwork` pod, whose faults would hit the whole node.
    pub is_host: bool,
}

/// What the proc root showed at one moment.
#[derive(Clone, Debug)]
pub struct ProcSnapshot {
    root: PathBuf,
    processes: Vec<ProcessEntry>,
}

impl ProcSnapshot {
    /// Reads every process under `root`. Processes that exit while being read are skipped.
    pub fn scan(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mut processes = Vec::new();
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
                .filter(|pid| *pid > 0)
            else {
                continue;
            };
            let dir = entry.path();
            let Ok(cgroup) = std::fs::read_to_string(dir.join("cgroup")) else {
                continue;
            };
            processes.push(ProcessEntry {
                pid,
                pod_uid: pod_uid_in_cgroup(&cgroup),
                netns: NamespaceId::of(&dir.join("ns/net")).ok(),
            });
        }
        processes.sort_by_key(|process| process.pid);
        Ok(Self { root, processes })
    }

    /// The proc root this snapshot was read from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every process read.
    pub fn processes(&self) -> &[ProcessEntry] {
        &self.processes
    }

    /// The processes of the pod with this UID (any case, dashes or underscores), or `None`
    /// when it has none here.
    pub fn pod(&self, uid: &str) -> Option<PodProcesses> {
        let uid = normalize_uid(uid)?;
        let members: Vec<&ProcessEntry> = self
            .processes
            .iter()
            .filter(|process| process.pod_uid.as_deref() == Some(uid.as_str()))
            .collect();
        if members.is_empty() {
            return None;
        }
        let host = self.host_namespace();
        let netns = members
            .iter()
            .find_map(|process| process.netns.map(|id| (process.pid, id)))
            .map(|(pid, id)| PodNetns {
                path: self.netns_path(pid),
                id,
                is_host: host == Some(id),
            });
        Some(PodProcesses {
            uid,
            pids: members.iter().map(|process| process.pid).collect(),
            netns,
        })
    }

    /// Every distinct network namespace of a pod's processes, but the host's, each with a
    /// path that opens it. Namespaces no pod process is in (another tool's, a local
    /// `schism run`'s) are not the agent's to touch.
    pub fn pod_namespaces(&self) -> Vec<(NamespaceId, PathBuf)> {
        let host = self.host_namespace();
        let mut unique = BTreeMap::new();
        for process in self.processes.iter().filter(|p| p.pod_uid.is_some()) {
            if let Some(id) = process.netns.filter(|id| Some(*id) != host) {
                unique
                    .entry(id)
                    .or_insert_with(|| self.netns_path(process.pid));
            }
        }
        unique.into_iter().collect()
    }

    /// The namespace of PID 1 under the root: the host's network namespace.
    fn host_namespace(&self) -> Option<NamespaceId> {
        self.processes
            .iter()
            .find(|process| process.pid == 1)
            .and_then(|process| process.netns)
    }

    fn netns_path(&self, pid: i32) -> PathBuf {
        self.root.join(pid.to_string()).join("ns/net")
    }
}

/// The pod UID named in a `/proc/<pid>/cgroup` file, lowercase with dashes.
pub fn pod_uid_in_cgroup(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        // `hierarchy-ID:controller-list:cgroup-path`; the path may itself contain ':'.
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'))
        .find_map(pod_uid_in_segment)
}

/// The pod UID in one cgroup path segment, in either the cgroupfs or the systemd layout.
pub(super) fn pod_uid_in_segment(segment: &str) -> Option<String> {
    if let Some(uid) = segment.strip_prefix("pod") {
        return is_uid(uid, '-').then(|| uid.to_ascii_lowercase());
    }
    // systemd escapes '-' inside a unit name component as '_'.
    let slice = segment.strip_suffix(".slice")?;
    let (_, uid) = slice.rsplit_once("-pod")?;
    is_uid(uid, '_').then(|| uid.replace('_', "-").to_ascii_lowercase())
}

/// Whether `text` is a UUID in 8-4-4-4-12 hex form with `separator` between the groups.
fn is_uid(text: &str, separator: char) -> bool {
    let groups: Vec<&str> = text.split(separator).collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A pod UID as the API writes it, or `None` if it is not a UUID.
fn normalize_uid(uid: &str) -> Option<String> {
    let dashed = uid.replace('_', "-");
    is_uid(&dashed, '-').then(|| dashed.to_ascii_lowercase())
}

/// The state letter in `/proc/<pid>/stat` (`pid (comm) S …`). The command name may contain
/// spaces and parentheses, so the state is read after the last `)`.
pub fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The start time in `/proc/<pid>/stat` (field 22, clock ticks since boot): with the pid, it
/// names one process, as a pid alone does not once it is reused.
pub fn start_time(stat: &str) -> Option<u64> {
    // After the command name, fields start at 3 (the state): field 22 is the 20th.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11";

    #[test]
    fn cgroupfs_v2_path_names_the_pod() {
        let cgroup = format!("0::/kubepods/besteffort/pod{UID}/0123456789abcdef\n");
        assert_eq!(pod_uid_in_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn systemd_v2_path_names_the_pod_with_underscores() {
        let cgroup = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-0123abcd.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid_in_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn guaranteed_pods_have_no_qos_slice() {
        let cgroup = format!(
            "0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-0123abcd.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid_in_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn cgroup_v1_lines_name_the_pod_in_either_layout() {
        let cgroupfs = format!(
            "12:pids:/kubepods/burstable/pod{UID}/abc\n11:memory:/kubepods/burstable/pod{UID}/abc\n1:name=systemd:/kubepods/burstable/pod{UID}/abc\n"
        );
        let systemd = format!(
            "11:cpu,cpuacct:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/docker-abc.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid_in_cgroup(&cgroupfs).as_deref(), Some(UID));
        assert_eq!(pod_uid_in_cgroup(&systemd).as_deref(), Some(UID));
    }

    #[test]
    fn relative_paths_seen_from_a_cgroup_namespace_still_name_the_pod() {
        let cgroup = format!(
            "0::/../../kubepods-besteffort-pod{}.slice/cri-containerd-abc.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid_in_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn uppercase_uids_are_lowercased() {
        let cgroup = format!("0::/kubepods/pod{}/abc\n", UID.to_uppercase());
        assert_eq!(pod_uid_in_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn host_processes_and_lookalikes_belong_to_no_pod() {
        for cgroup in [
            "0::/\n",
            "0::/system.slice/containerd.service\n",
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "0::/kubepods/burstable/podnot-a-uid/abc\n",
            "0::/kubepods.slice/kubepods-pod6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11.slice\n",
            "0::/pods/pod6f1c0d1e_8a55_4c55_9a0e_4d7f3f0b8a11/abc\n",
            "0::/kubepods/pod6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a1/abc\n",
        ] {
            assert_eq!(pod_uid_in_cgroup(cgroup), None, "{cgroup}");
        }
    }

    #[test]
    fn process_state_is_read_after_the_command_name() {
        assert_eq!(process_state("42 (etcd) S 1 42 42 0"), Some('S'));
        assert_eq!(process_state("42 (odd) name) T 1 42"), Some('T'));
        assert_eq!(process_state("garbage"), None);
    }

    #[test]
    fn start_time_is_field_22() {
        let stat =
            "42 (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time(stat), Some(987_654));
        assert_eq!(start_time("42 (short) S 1 2"), None);
    }

    /// A fake proc root in a temporary directory, removed on drop.
    struct FakeProc {
        root: PathBuf,
    }

    impl FakeProc {
        fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let root = std::env::temp_dir().join(format!(
                "schism-fakeproc-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&root).unwrap();
            Self { root }
        }

        /// Adds a process whose network namespace is the file `netns` (any file stands in for
        /// an nsfs file: identity is device and inode).
        fn process(&self, pid: i32, cgroup: &str, state: char, netns: Option<&Path>) {
            let dir = self.root.join(pid.to_string());
            std::fs::create_dir_all(dir.join("ns")).unwrap();
            std::fs::write(dir.join("cgroup"), cgroup).unwrap();
            std::fs::write(dir.join("stat"), format!("{pid} (proc {pid}) {state} 1 1")).unwrap();
            if let Some(netns) = netns {
                std::os::unix::fs::symlink(netns, dir.join("ns/net")).unwrap();
            }
        }

        fn namespace_file(&self, name: &str) -> PathBuf {
            let path = self.root.join(name);
            std::fs::write(&path, name).unwrap();
            path
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn pod_cgroup(uid: &str) -> String {
        format!("0::/kubepods/burstable/pod{uid}/c0ffee\n")
    }

    const OTHER_UID: &str = "0a0b0c0d-1111-2222-3333-444455556666";

    #[test]
    fn scan_groups_processes_by_pod_and_finds_the_pod_namespace() {
        let proc = FakeProc::new();
        let host_ns = proc.namespace_file("host-ns");
        let pod_ns = proc.namespace_file("pod-ns");
        let other_ns = proc.namespace_file("other-ns");
        proc.process(1, "0::/init.scope\n", 'S', Some(&host_ns));
        proc.process(300, &pod_cgroup(UID), 'S', Some(&pod_ns));
        proc.process(200, &pod_cgroup(UID), 'S', Some(&pod_ns));
        proc.process(400, &pod_cgroup(OTHER_UID), 'T', Some(&other_ns));
        proc.process(
            500,
            "0::/system.slice/kubelet.service\n",
            'T',
            Some(&host_ns),
        );
        // A namespace no pod is in (another tool's): not the agent's.
        let tool_ns = proc.namespace_file("tool-ns");
        proc.process(
            600,
            "0::/system.slice/tool.service
",
            'S',
            Some(&tool_ns),
        );
        std::fs::create_dir_all(proc.root.join("self")).unwrap();
        std::fs::write(proc.root.join("uptime"), "1 1").unwrap();

        let snapshot = ProcSnapshot::scan(&proc.root).unwrap();
        assert_eq!(snapshot.processes().len(), 6);

        let pod = snapshot.pod(UID).expect("pod found");
        assert_eq!(pod.pids, vec![200, 300]);
        let netns = pod.netns.expect("pod namespace");
        assert_eq!(netns.path, proc.root.join("200/ns/net"));
        assert_eq!(netns.id, NamespaceId::of(&pod_ns).unwrap());
        assert!(!netns.is_host);

        assert_eq!(
            snapshot.pod(&UID.replace('-', "_").to_uppercase()),
            Some(snapshot.pod(UID).unwrap()),
            "the lease may spell the UID either way"
        );
        assert_eq!(snapshot.pod("7e7e7e7e-1111-2222-3333-444455556666"), None);
        assert_eq!(snapshot.pod("not-a-uid"), None);

        let namespaces: Vec<NamespaceId> = snapshot
            .pod_namespaces()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            namespaces.len(),
            2,
            "pod and other pod, each once; not the host's"
        );
    }

    #[test]
    fn pod_in_the_host_network_namespace_is_flagged() {
        let proc = FakeProc::new();
        let host_ns = proc.namespace_file("host-ns");
        proc.process(1, "0::/init.scope\n", 'S', Some(&host_ns));
        proc.process(77, &pod_cgroup(UID), 'S', Some(&host_ns));
        let snapshot = ProcSnapshot::scan(&proc.root).unwrap();
        assert!(snapshot.pod(UID).unwrap().netns.unwrap().is_host);
    }

    #[test]
    fn processes_without_a_readable_namespace_still_belong_to_their_pod() {
        let proc = FakeProc::new();
        proc.process(9, &pod_cgroup(UID), 'S', None);
        let snapshot = ProcSnapshot::scan(&proc.root).unwrap();
        let pod = snapshot.pod(UID).unwrap();
        assert_eq!(pod.pids, vec![9]);
        assert_eq!(pod.netns, None);
        assert!(snapshot.pod_namespaces().is_empty());
    }

    #[test]
    fn missing_proc_root_is_an_error() {
        assert!(ProcSnapshot::scan("/nonexistent/schism/proc").is_err());
    }
}
