//! What the agent reads of `/proc/<pid>/`: the `cgroup` lines that name a pod's UID and the
//! `stat` line whose state says whether a process is stopped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schism::operator::agent::discovery::{pod_uid_in_cgroup, process_state};

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
    }
    let _ = process_state(&text);
});
