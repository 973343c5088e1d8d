//! The resource types the double serves: plural → kind, scope and whether `/status` exists.

use std::sync::Arc;

use serde_json::{Value, json};

use super::managed::ListSchema;
use super::schema::CrdSchema;

/// One servable resource type, as an API server learns it from a built-in registration or a
/// CustomResourceDefinition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group (`/api/v1`).
    pub group: String,
    /// API version within the group, e.g. `v1` or `v1alpha1`.
    pub version: String,
    /// Lower-case plural used in URLs, e.g. `configmaps`.
    pub plural: String,
    /// The object kind, e.g. `ConfigMap`.
    pub kind: String,
    /// True for namespaced resources, false for cluster-scoped ones.
    pub namespaced: bool,
    /// True when the resource has a `/status` subresource: writes to the main resource then
    /// ignore `.status`, and writes to `/status` change nothing but `.status`.
    pub status_subresource: bool,
    /// True when PUT may omit `metadata.resourceVersion`, as built-in kinds allow. Custom
    /// resources do not: the API server answers 422, so the constructors default to false.
    pub unconditional_update: bool,
    /// How lists merge under server-side apply (list-maps by key, sets, else atomic).
    pub lists: ListSchema,
    /// The CRD's schema, when it came from one: writes are pruned, defaulted and validated.
    pub schema: Option<Arc<CrdSchema>>,
}

impl ResourceType {
    /// A namespaced custom resource without a status subresource.
    pub fn namespaced(group: &str, version: &str, plural: &str, kind: &str) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced: true,
            status_subresource: false,
            unconditional_update: false,
            lists: ListSchema::default().with_metadata_lists(),
            schema: None,
        }
    }

    /// Every CustomResourceDefinition in a YAML stream (`crds/schism.yaml`, say).
    pub fn from_crd_manifests(yaml: &str) -> Vec<Self> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|document| {
                let crd: Value =
                    serde::Deserialize::deserialize(document).expect("the CRDs are YAML");
                Self::from_crd(&crd)
            })
            .collect()
    }

    /// The resource a CustomResourceDefinition (JSON) defines, in its storage version: scope,
    /// status subresource, list-maps, and its `openAPIV3Schema` for admission.
    pub fn from_crd(crd: &Value) -> Self {
        let spec = &crd["spec"];
        let text = |v: &Value| {
            v.as_str()
                .expect("the CRD names its group and kinds")
                .to_owned()
        };
        let version = spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["storage"] == true)
            .expect("a CRD has a storage version");
        let mut resource = Self::namespaced(
            &text(&spec["group"]),
            &text(&version["name"]),
            &text(&spec["names"]["plural"]),
            &text(&spec["names"]["kind"]),
        );
        resource.namespaced = spec["scope"] == "Namespaced";
        resource.status_subresource = version["subresources"].get("status").is_some();
        let schema = version["schema"]["openAPIV3Schema"].clone();
        let mut maps = Vec::new();
        list_maps(&schema, "", &mut maps);
        for (path, keys) in maps {
            resource.lists.maps.push((path, keys));
        }
        resource.schema = Some(Arc::new(CrdSchema::new(schema)));
        resource
    }

    /// A cluster-scoped custom resource without a status subresource.
    pub fn cluster_scoped(group: &str, version: &str, plural: &str, kind: &str) -> Self {
        Self {
            namespaced: false,
            ..Self::namespaced(group, version, plural, kind)
        }
    }

    /// The same resource with a `/status` subresource.
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// The same resource with the list at `path` (dotted field names) merged by `keys` under
    /// server-side apply, as `x-kubernetes-list-type: map` makes it.
    pub fn list_map(mut self, path: &str, keys: &[&str]) -> Self {
        self.lists.maps.push((
            path.to_owned(),
            keys.iter().map(|k| k.to_string()).collect(),
        ));
        self
    }

    /// The same resource with the update rules of built-in kinds (PUT without
    /// `metadata.resourceVersion` is an unconditional update).
    pub fn built_in(mut self) -> Self {
        self.unconditional_update = true;
        self
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name test hooks use: `plural` for the core group, `plural.group` otherwise
    /// (the same spelling as `kubectl get configmaps` / `kubectl get leases.coordination.k8s.io`).
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// This resource's entry in an `APIResourceList`.
    pub(crate) fn discovery_entries(&self) -> Vec<Value> {
        let mut entries = vec![json!({
            "name": self.plural,
            "singularName": self.kind.to_lowercase(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": [
                "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch",
            ],
        })];
        if self.status_subresource {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }
}

/// The list-maps of a schema, as dotted paths (not below other lists, which the merge does
/// not address).
fn list_maps(schema: &Value, path: &str, maps: &mut Vec<(String, Vec<String>)>) {
    for (name, child) in schema["properties"].as_object().into_iter().flatten() {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        if child["x-kubernetes-list-type"] == "map" {
            let keys = child["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            maps.push((child_path.clone(), keys));
        }
        list_maps(child, &child_path, maps);
    }
}

/// The built-in resources a controller and its tests typically touch.
pub(crate) fn builtin_resources() -> Vec<ResourceType> {
    let resources = vec![
        ResourceType::cluster_scoped("", "v1", "namespaces", "Namespace").with_status(),
        ResourceType::cluster_scoped("", "v1", "nodes", "Node").with_status(),
        ResourceType::namespaced("", "v1", "configmaps", "ConfigMap"),
        ResourceType::namespaced("", "v1", "secrets", "Secret"),
        ResourceType::namespaced("", "v1", "pods", "Pod")
            .with_status()
            .list_map("spec.containers", &["name"])
            .list_map("status.conditions", &["type"])
            .list_map("status.containerStatuses", &["name"]),
        ResourceType::namespaced("", "v1", "services", "Service").with_status(),
        ResourceType::namespaced("", "v1", "serviceaccounts", "ServiceAccount"),
        ResourceType::namespaced("", "v1", "events", "Event"),
        ResourceType::namespaced("events.k8s.io", "v1", "events", "Event"),
        ResourceType::namespaced("coordination.k8s.io", "v1", "leases", "Lease"),
        ResourceType::namespaced("apps", "v1", "deployments", "Deployment").with_status(),
        ResourceType::namespaced("apps", "v1", "statefulsets", "StatefulSet").with_status(),
        ResourceType::namespaced("apps", "v1", "replicasets", "ReplicaSet").with_status(),
        ResourceType::namespaced("apps", "v1", "daemonsets", "DaemonSet").with_status(),
        ResourceType::namespaced("batch", "v1", "jobs", "Job")
            .with_status()
            .list_map("status.conditions", &["type"]),
        ResourceType::namespaced("rbac.authorization.k8s.io", "v1", "roles", "Role"),
        ResourceType::namespaced(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
        ),
        ResourceType::cluster_scoped(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
        ),
        ResourceType::cluster_scoped(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
        ),
    ];
    resources.into_iter().map(ResourceType::built_in).collect()
}
