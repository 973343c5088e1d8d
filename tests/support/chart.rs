//! The Helm chart as `helm template` renders it, for tests that run Schism's components under
//! the RBAC the chart grants them. Helm is the real binary `scripts/validate-packaging.sh`
//! unpacks into `.tools/helm/helm` (the test command runs it before the tests); without it
//! these tests fail, loudly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::apiserver::{ApiServer, ResourceType};

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

/// The CRDs the chart installs (its `crds/`), as the API server serves them: every write of
/// a Chaos or a FaultLease is pruned, defaulted and validated against their schemas.
pub fn crds() -> Vec<ResourceType> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/schism/crds/schism.yaml");
    let yaml = std::fs::read_to_string(&path).expect("the chart's CRDs are readable");
    ResourceType::from_crd_manifests(&yaml)
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

/// One verb on one resource that one rule of a rendered role grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `ClusterRole/NAME` or `Role/NAMESPACE/NAME`, as the double's decisions name roles.
    pub role: String,
    pub rule: usize,
    pub api_group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub verb: String,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.api_group.is_empty() {
            "core"
        } else {
            &self.api_group
        };
        write!(
            f,
            "{} rule {}: {} {} ({group})",
            self.role, self.rule, self.verb, self.resource
        )
    }
}

/// Every grant the rendered bindings give ServiceAccount `namespace/name`.
pub fn grants_to(manifests: &[Value], namespace: &str, name: &str) -> Vec<Grant> {
    let text = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut roles: Vec<(String, &Value)> = Vec::new();
    for binding in manifests
        .iter()
        .filter(|m| m["kind"] == "RoleBinding" || m["kind"] == "ClusterRoleBinding")
    {
        let binds = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == name && s["namespace"] == namespace
            });
        if !binds {
            continue;
        }
        let role_kind = text(binding, "/roleRef/kind");
        let role_name = text(binding, "/roleRef/name");
        let binding_namespace = text(binding, "/metadata/namespace");
        let role = manifests.iter().find(|m| {
            m["kind"] == role_kind.as_str()
                && m["metadata"]["name"] == role_name.as_str()
                && (role_kind == "ClusterRole"
                    || text(m, "/metadata/namespace") == binding_namespace)
        });
        let Some(role) = role else { continue };
        let label = if role_kind == "ClusterRole" {
            format!("ClusterRole/{role_name}")
        } else {
            format!("Role/{binding_namespace}/{role_name}")
        };
        if !roles.iter().any(|(l, _)| *l == label) {
            roles.push((label, role));
        }
    }
    let listed = |rule: &Value, field: &str| -> Vec<String> {
        rule[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let mut grants = Vec::new();
    for (label, role) in roles {
        for (index, rule) in role["rules"].as_array().into_iter().flatten().enumerate() {
            for api_group in listed(rule, "apiGroups") {
                for resource in listed(rule, "resources") {
                    for verb in listed(rule, "verbs") {
                        grants.push(Grant {
                            role: label.clone(),
                            rule: index,
                            api_group: api_group.clone(),
                            resource: resource.clone(),
                            verb,
                        });
                    }
                }
            }
        }
    }
    grants
}

/// For each grant, a request of `user` that it alone allowed (every rule that allowed the
/// request is this grant's rule): dropping the grant refuses that request with 403. `None`
/// when no request needed it.
pub fn sole_grants<'a>(
    grants: &'a [Grant],
    decisions: &'a [crate::apiserver::auth::Decision],
    user: &str,
) -> Vec<(&'a Grant, Option<&'a crate::apiserver::auth::Decision>)> {
    grants
        .iter()
        .map(|grant| {
            let needed_by = decisions.iter().find(|d| {
                d.user == user
                    && d.allowed
                    && d.attributes.verb == grant.verb
                    && d.attributes.api_group == grant.api_group
                    && d.attributes.resource_path() == grant.resource
                    && d.allowed_by
                        .iter()
                        .all(|r| r.role == grant.role && r.rule == grant.rule)
            });
            (grant, needed_by)
        })
        .collect()
}

/// Fails, listing them, unless every grant was the only one allowing some request; prints
/// which request proved each.
pub fn assert_every_grant_needed(
    component: &str,
    proofs: &[(&Grant, Option<&crate::apiserver::auth::Decision>)],
) {
    let mut unneeded = Vec::new();
    println!("{component}: which request needs each grant of the chart");
    for (grant, decision) in proofs {
        match decision {
            Some(d) => {
                let a = &d.attributes;
                let scope = if a.namespace.is_empty() {
                    "cluster".to_owned()
                } else {
                    a.namespace.clone()
                };
                println!(
                    "  {grant}  <-  {} {} {:?} in {scope}",
                    a.verb,
                    a.resource_path(),
                    a.name
                );
            }
            None => unneeded.push(grant.to_string()),
        }
    }
    assert!(
        unneeded.is_empty(),
        "the {component}'s lifecycle needed none of these grants (drop them from the chart, or test what needs them):\n  {}",
        unneeded.join("\n  ")
    );
}
