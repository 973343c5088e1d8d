//! JSON answers from outside as the clients read them: etcd's gateway (ranges, transactions,
//! snapshots of lists, maintenance status) and Prometheus's `/api/v1/query`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schism::workload::{etcd, role};

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for integers in [false, true] {
        let _ = etcd::range_value(&answer, integers);
    }
    let _ = etcd::txn_succeeded(&answer);
    let _ = etcd::snapshot_lists(&answer, &["0", "1", "2"]);
    let _ = role::etcd_role(&answer);
    if let Ok(values) = schism::engine::prometheus::values_of(&answer) {
        let _ = format!("{values:?}");
    }
});
