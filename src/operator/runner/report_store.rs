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

/// The name of a Chaos's report ConfigMap: `NAME-report`, within the 253 characters a name
/// may have (a long Chaos name is cut, never the suffix, so it never ends in `-` or `.`).
pub fn config_map_name(chaos: &Chaos) -> String {
    const SUFFIX: &str = "-report";
    let mut name: String = chaos
        .metadata
        .name
        .clone()
        .unwrap_or_default()
        .chars()
        .take(253 - SUFFIX.len())
        .collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name.push_str(SUFFIX);
    name
}

/// Whether an existing ConfigMap is this Chaos's report, which it may overwrite. One that is
/// not (a user's own `NAME-report`) is never taken over.
pub fn is_owned_by(config_map: &ConfigMap, chaos: &Chaos) -> bool {
    config_map
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| Some(&owner.uid) == chaos.metadata.uid.as_ref())
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
            gzip(outcome.recorded.history_jsonl().as_bytes()),
        ),
        (
            REPORT_KEY,
            gzip(crate::report::html::render(&name, outcome).as_bytes()),
        ),
    ];
    if let Some(page) = outcome.recorded.check_page(&name) {
        parts.push((CHECK_KEY, gzip(page.as_bytes())));
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
                crate::operator::labels::CHAOS_UID_LABEL.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(name: &str) -> Chaos {
        let spec = serde_yaml::from_str("target: {statefulSet: etcd}\nduration: 10s").unwrap();
        let mut chaos = Chaos::new(name, spec);
        chaos.metadata.uid = Some("u1".into());
        chaos
    }

    #[test]
    fn the_report_name_fits_and_never_ends_in_a_dash() {
        assert_eq!(config_map_name(&chaos("etcd")), "etcd-report");
        let long = format!("{}-{}", "a".repeat(245), "b".repeat(7));
        let name = config_map_name(&chaos(&long));
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.ends_with("-report") && !name.contains("--"), "{name}");
    }

    #[test]
    fn only_a_config_map_owned_by_the_chaos_is_its_report() {
        let mine = chaos("x");
        let mut config_map = ConfigMap::default();
        assert!(!is_owned_by(&config_map, &mine));
        config_map.metadata.owner_references = Some(vec![OwnerReference {
            uid: "u1".into(),
            ..Default::default()
        }]);
        assert!(is_owned_by(&config_map, &mine));
    }
}
