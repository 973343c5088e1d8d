//! The Helm chart as `helm template` renders it, for tests that run Schism's components under
//! the RBAC the chart grants them. Helm is the real binary `scripts/validate-packaging.sh`
//! unpacks into `.tools/helm/helm` (the test command runs it before the tests); without it
//! these tests fail, loudly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::apiserver::ApiServer;

/// The namespace the tests install the chart into, as `helm install -n`.
pub const RELEASE_NAMESPACE: &str = "schism-system";
/// The release name; the chart's names derive from it (`schism-controller`, …).
pub const RELEASE: &str = "schism";

const RBAC_KINDS: &[&str] = &[
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ServiceAccount",
];

fn helm() -> PathBuf {
    let helm = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/helm/helm");
    assert!(
        helm.exists(),
        "{} is missing: scripts/validate-packaging.sh unpacks Helm there (scripts/test.sh runs it first)",
        helm.display()
    );
    helm
}

/// The chart rendered with `values_file` (relative to the chart; None: default values) and
/// `--set` arguments: every manifest as JSON, in the order Helm prints them.
pub fn render(values_file: Option<&str>, sets: &[&str]) -> Vec<Value> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/schism");
    let mut command = Command::new(helm());
    command
        .args(["template", RELEASE])
        .arg(&chart)
        .args(["--namespace", RELEASE_NAMESPACE]);
    if let Some(values) = values_file {
        command.arg("--values").arg(chart.join(values));
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().expect("helm runs");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("helm prints UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|document| {
            let value: Value = serde::Deserialize::deserialize(document).expect("helm prints YAML");
            (!value.is_null()).then_some(value)
        })
        .collect()
}

/// The RBAC objects and ServiceAccounts of a rendered chart.
pub fn rbac(manifests: &[Value]) -> Vec<Value> {
    manifests
        .iter()
        .filter(|m| RBAC_KINDS.iter().any(|kind| m["kind"] == *kind))
        .cloned()
        .collect()
}

/// Stores the objects in the double as `kubectl apply` of the rendered chart would.
pub fn install(server: &ApiServer, objects: &[Value]) {
    for object in objects {
        let resource = match object["kind"].as_str().unwrap_or_default() {
            "Role" => "roles.rbac.authorization.k8s.io",
            "ClusterRole" => "clusterroles.rbac.authorization.k8s.io",
            "RoleBinding" => "rolebindings.rbac.authorization.k8s.io",
            "ClusterRoleBinding" => "clusterrolebindings.rbac.authorization.k8s.io",
            "ServiceAccount" => "serviceaccounts",
            other => panic!("chart::install does not install {other} objects"),
        };
        server.apply_raw(resource, object.clone());
    }
}

/// The name of a component's ServiceAccount (`controller`, `runner`, `agent`) in a rendered
/// chart, and its namespaces (the runner has one per prepared namespace).
pub fn service_account(manifests: &[Value], component: &str) -> (String, Vec<String>) {
    let accounts: Vec<&Value> = manifests
        .iter()
        .filter(|m| {
            m["kind"] == "ServiceAccount"
                && m["metadata"]["labels"]["app.kubernetes.io/component"] == component
        })
        .collect();
    let name = accounts
        .first()
        .and_then(|a| a["metadata"]["name"].as_str())
        .unwrap_or_else(|| panic!("the rendered chart has no ServiceAccount for the {component}"))
        .to_owned();
    let namespaces = accounts
        .iter()
        .filter_map(|a| a["metadata"]["namespace"].as_str().map(str::to_owned))
        .collect();
    (name, namespaces)
}
