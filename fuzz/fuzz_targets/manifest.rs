//! Manifests as `schism validate` reads them: YAML, then the schema, the semantic checks and
//! the CEL rules. Every input must end in a report, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reports = schism::api::validate::validate_bytes(data);
    // A report names each problem; rendering them must hold for any input too.
    for report in &reports {
        let _ = format!("{report:?}");
    }
});
