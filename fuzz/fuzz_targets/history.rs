//! Histories as `schism check` reads them: the first byte picks the format (auto, native JSON
//! Lines, Jepsen log, EDN), the rest is the file. What reads is checked under every model with
//! small budgets, so the search sees odd but valid histories too.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use schism::check::{self, CheckOptions, Format, ModelKind};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let format = [Format::Auto, Format::Native, Format::Jepsen, Format::Kv][selector as usize % 4];
    let Ok(history) = check::formats::read_bytes(file, format) else {
        return;
    };
    let _ = check::formats::write_native(&history);
    for model in [ModelKind::Register, ModelKind::CasRegister, ModelKind::Kv] {
        let options = CheckOptions {
            timeout: Some(Duration::from_millis(200)),
            threads: 1,
            max_memory: Some(64 << 20),
            ..CheckOptions::new(model)
        };
        if let Ok(outcome) = check::check_history(&history, &options) {
            let _ = format!("{:?}", outcome.counterexample);
        }
    }
});
