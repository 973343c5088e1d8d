//! Transactional histories as `schism check --model list-append|rw-register` reads them
//! (native JSON Lines or EDN). What reads is checked under both models at the strictest
//! consistency, with small budgets.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use schism::check::txn::{self, Consistency, TxnModel, TxnOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(history) = txn::formats::read_str(text) else {
        return;
    };
    for model in [TxnModel::ListAppend, TxnModel::RwRegister] {
        let options = TxnOptions {
            timeout: Some(Duration::from_millis(200)),
            max_memory: Some(64 << 20),
            ..TxnOptions::new(model, Consistency::StrictSerializable)
        };
        if let Ok(outcome) = txn::check(&history, &options) {
            let _ = format!("{:?}", outcome.anomalies);
        }
    }
});
