//! The full report of a run in a ConfigMap owned by the Chaos: the status as JSON and JUnit XML
//! as text, the history and the HTML pages gzip-compressed, all within the ConfigMap size
//! limit — the largest parts are left out (and named) when they would not fit.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use crate::api::Chaos;
use crate::engine::experiment::ExperimentOutcome;

/// Kubernetes refuses objects over 1 MiB; keep clear of it.
pub const MAX_REPORT_BYTES: usize = 900 * 1024;
/// Key of the JSON status.
pub const RESULT_KEY: &str = "result.json";
/// Key of the JUnit XML.
pub const JUNIT_KEY: &str = "junit.xml";
/// Key of the gzip-compressed history.
pub const HISTORY_KEY: &str = "history.jsonl.gz";
/// Key of the gzip-compressed HTML report.
pub const REPORT_KEY: &str = "report.html.gz";
/// Key of the gzip-compressed checker view.
pub const CHECK_KEY: &str = "check.html.gz";
/// Key listing what was left out for size.
pub const OMITTED_KEY: &str = "omitted.txt";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(data)
        .expect("writing to memory cannot fail");
    encoder.finish().expect("writing to memory cannot fail")
}

/// The name of a Chaos's report ConfigMap.
pub fn config_map_name(chaos: &Chaos) -> String {
    let mut name = format!("{}-report", chaos.metadata.name.clone().unwrap_or_default());
    name.truncate(253);
    name
}

/// Builds the report ConfigMap (pure).
pub fn build(chaos: &Chaos, outcome: &ExperimentOutcome) -> ConfigMap {
    let name = chaos.metadata.name.clone().unwrap_or_default();
    let mut data = BTreeMap::new();
    data.insert(
        RESULT_KEY.to_owned(),
        serde_json::to_string_pretty(&outcome.status).expect("status serializes"),
    );
    data.insert(
        JUNIT_KEY.to_owned(),
        crate::report::junit::render(&name, outcome),
    );
    let mut budget = MAX_REPORT_BYTES.saturating_sub(data.values().map(String::len).sum());
    let mut binary = BTreeMap::new();
    let mut omitted = Vec::new();
    // In order of importance: the history is the evidence, the pages are views of it.
    let mut parts: Vec<(&str, Vec<u8>)> = vec![
        (
            HISTORY_KEY,
            gzip(crate::check::formats::write_native(&outcome.history).as_bytes()),
        ),
        (
            REPORT_KEY,
            gzip(crate::report::html::render(&name, outcome).as_bytes()),
        ),
    ];
    if let Some(check) = &outcome.check {
        parts.push((
            CHECK_KEY,
            gzip(crate::check::html::render(&outcome.history, check, &name).as_bytes()),
        ));
    }
    for (key, bytes) in parts {
        // base64 grows data by a third on the wire.
        let cost = bytes.len() * 4 / 3 + 4;
        if cost <= budget {
            budget -= cost;
            binary.insert(key.to_owned(), ByteString(bytes));
        } else {
            omitted.push(format!(
                "{key} ({} bytes compressed) did not fit the {MAX_REPORT_BYTES}-byte limit",
                bytes.len()
            ));
        }
    }
    if !omitted.is_empty() {
        data.insert(OMITTED_KEY.to_owned(), omitted.join("\n"));
    }
    let owner = OwnerReference {
        api_version: crate::api::API_VERSION.into(),
        kind: "Chaos".into(),
        name: name.clone(),
        uid: chaos.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(chaos)),
            namespace: chaos.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                super::backend::LEASE_CHAOS_LABEL.to_owned(),
                chaos.metadata.uid.clone().unwrap_or_default(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(data),
        binary_data: Some(binary),
        ..Default::default()
    }
}

/// Reads a gzip-compressed entry back.
pub fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut decoder = flate2::read::GzDecoder::new(bytes);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut decoder, &mut out)?;
    Ok(out)
}
