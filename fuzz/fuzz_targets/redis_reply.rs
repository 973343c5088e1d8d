//! Redis answers as the workload client reads them: RESP replies, one after another until the
//! input ends or is refused, and the `INFO replication` text the role probe reads.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use schism::workload::redis::read_reply;
use schism::workload::role::redis_role;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    });
    runtime.block_on(async {
        let mut reader = tokio::io::BufReader::new(data);
        for _ in 0..64 {
            if read_reply(&mut reader, 0).await.is_err() {
                break;
            }
        }
    });
    let _ = redis_role(&String::from_utf8_lossy(data));
});
