//! What the agent reads of `/proc/<pid>/`: the `cgroup` lines that name a pod's UID and where
//! its cgroup is, and the `stat` line whose state and start time it records for a pause.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schism::operator::agent::cgroups::pod_cgroups;
use schism::operator::agent::discovery::{pod_uid_in_cgroup, process_state, start_time};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(uid) = pod_uid_in_cgroup(&text) {
        // A UID is 36 characters, lowercase with dashes: the agent compares it with the API's.
        assert_eq!(uid.len(), 36, "{uid:?}");
        assert!(
            uid.bytes()
                .all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{uid:?}"
        );
        // The pod's cgroup is a path below a hierarchy's root: never one that climbs out of
        // it, never absolute, and it ends at the pod's own segment.
        for cgroup in pod_cgroups(&text, &uid) {
            assert!(!cgroup.path.starts_with('/'), "{cgroup:?}");
            assert!(
                !cgroup.path.split('/').any(|s| s == ".." || s.is_empty()),
                "{cgroup:?}"
            );
            assert_eq!(
                pod_uid_in_cgroup(&format!("0::/{}\n", cgroup.path)).as_deref(),
                Some(uid.as_str()),
                "{cgroup:?}"
            );
        }
    }
    let _ = process_state(&text);
    let _ = start_time(&text);
});
