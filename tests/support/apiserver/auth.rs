//! Authentication and RBAC authorization, as the API server does them, so that a component's
//! missing permission fails a test the way it fails in a cluster.
//!
//! * Authentication: bearer tokens, each naming one identity. ServiceAccount tokens name
//!   `system:serviceaccount:NS:NAME` in the groups `system:serviceaccounts`,
//!   `system:serviceaccounts:NS` and `system:authenticated`; an administrator token is in
//!   `system:masters`, which RBAC does not restrict. No token, or an unknown one: 401.
//! * Authorization: the Roles, ClusterRoles, RoleBindings and ClusterRoleBindings stored in
//!   the double (`rbac.authorization.k8s.io/v1`), evaluated as the RBAC authorizer does: a
//!   ClusterRoleBinding grants its role's rules everywhere, a RoleBinding only in its own
//!   namespace; a rule matches on API group, resource (with `resource/subresource` and `*`),
//!   verb and, when it lists `resourceNames`, the object's name (so it never allows `create`,
//!   nor `list`/`watch`/`deletecollection` of a whole collection). Discovery paths are open
//!   to every authenticated user (the default `system:discovery` binding). Denied: 403.
//! * Admission: OwnerReferencesPermissionEnforcement, which clusters with the garbage
//!   collector's protections enable: changing an object's `ownerReferences` on update takes
//!   `delete` on the object, and a new reference with `blockOwnerDeletion: true` takes
//!   `update` on the owner's `finalizers` subresource.
//!
//! Left out: aggregated ClusterRoles (`aggregationRule`), impersonation, and the
//! authorizer's escalation checks on writes of RBAC objects themselves.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::store::ApiError;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// A ServiceAccount's identity, as its projected token authenticates.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }

    /// A cluster administrator (`system:masters`: RBAC allows everything).
    pub fn administrator() -> Self {
        Self {
            user: "kubernetes-admin".to_owned(),
            groups: vec![
                "system:masters".to_owned(),
                "system:authenticated".to_owned(),
            ],
        }
    }

    /// The ServiceAccount's namespace and name, for a ServiceAccount user.
    fn service_account_name(&self) -> Option<(&str, &str)> {
        let rest = self.user.strip_prefix("system:serviceaccount:")?;
        rest.split_once(':')
    }
}

/// The tokens the double accepts.
#[derive(Debug, Default)]
pub struct Tokens {
    identities: HashMap<String, Identity>,
}

impl Tokens {
    /// Issues a fresh random token for `identity`.
    pub fn issue(&mut self, identity: Identity) -> String {
        // RandomState is seeded from the OS per instance: unguessable enough for a test.
        let random = || {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let token = format!("{:016x}{:016x}", random(), random());
        self.identities.insert(token.clone(), identity);
        token
    }

    /// The identity of an `Authorization` header's bearer token; 401 without a valid one.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, ApiError> {
        authorization
            .and_then(|header| header.strip_prefix("Bearer "))
            .and_then(|token| self.identities.get(token.trim()))
            .cloned()
            .ok_or_else(|| ApiError::new(401, "Unauthorized", "Unauthorized"))
    }
}

/// What a resource request does to what, in the authorizer's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    pub api_group: String,
    /// The plural, e.g. `chaoses`.
    pub resource: String,
    /// `status`, `finalizers`, or empty.
    pub subresource: String,
    /// The object's name; empty for collections and creates.
    pub name: String,
    /// Empty for cluster-scoped resources and requests across all namespaces.
    pub namespace: String,
}

impl Attributes {
    /// `resource/subresource`, as RBAC rules spell it.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// Which rule allowed a request: the role (`ClusterRole/NAME` or `Role/NS/NAME`), the
/// binding that granted it, and the rule's index in the role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    pub role: String,
    pub binding: String,
    pub rule: usize,
}

/// One authorization decision, kept for tests that ask which rules a lifecycle needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub user: String,
    pub attributes: Attributes,
    /// Every rule that allows the request (empty when denied, or for `system:masters`).
    pub allowed_by: Vec<RuleRef>,
    pub allowed: bool,
}

/// The RBAC objects stored in the double, by kind.
pub struct RbacObjects<'a> {
    pub roles: Vec<&'a Value>,
    pub cluster_roles: Vec<&'a Value>,
    pub role_bindings: Vec<&'a Value>,
    pub cluster_role_bindings: Vec<&'a Value>,
}

/// Decides a resource request.
pub fn authorize(rbac: &RbacObjects<'_>, identity: &Identity, attributes: &Attributes) -> Decision {
    let decision = |allowed_by: Vec<RuleRef>, allowed: bool| Decision {
        user: identity.user.clone(),
        attributes: attributes.clone(),
        allowed_by,
        allowed,
    };
    if identity.groups.iter().any(|g| g == "system:masters") {
        return decision(Vec::new(), true);
    }
    let mut allowed_by = Vec::new();
    let cluster_role = |name: &str| {
        rbac.cluster_roles
            .iter()
            .find(|r| r["metadata"]["name"] == name)
            .copied()
    };
    for binding in &rbac.cluster_role_bindings {
        if !binds(binding, identity) || binding["roleRef"]["kind"] != "ClusterRole" {
            continue;
        }
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        if let Some(role) = cluster_role(role_name) {
            for index in matching_rules(role, attributes) {
                allowed_by.push(RuleRef {
                    role: format!("ClusterRole/{role_name}"),
                    binding: format!("ClusterRoleBinding/{}", text(binding, "/metadata/name")),
                    rule: index,
                });
            }
        }
    }
    if !attributes.namespace.is_empty() {
        for binding in &rbac.role_bindings {
            if text(binding, "/metadata/namespace") != attributes.namespace
                || !binds(binding, identity)
            {
                continue;
            }
            let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let (role, label) = match binding["roleRef"]["kind"].as_str() {
                Some("ClusterRole") => {
                    (cluster_role(role_name), format!("ClusterRole/{role_name}"))
                }
                Some("Role") => (
                    rbac.roles
                        .iter()
                        .find(|r| {
                            r["metadata"]["name"] == role_name
                                && text(r, "/metadata/namespace") == attributes.namespace
                        })
                        .copied(),
                    format!("Role/{}/{role_name}", attributes.namespace),
                ),
                _ => (None, String::new()),
            };
            if let Some(role) = role {
                for index in matching_rules(role, attributes) {
                    allowed_by.push(RuleRef {
                        role: label.clone(),
                        binding: format!(
                            "RoleBinding/{}/{}",
                            attributes.namespace,
                            text(binding, "/metadata/name")
                        ),
                        rule: index,
                    });
                }
            }
        }
    }
    let allowed = !allowed_by.is_empty();
    decision(allowed_by, allowed)
}

/// The API server's 403 for a denied request.
pub fn forbidden(identity: &Identity, attributes: &Attributes) -> ApiError {
    let what = if attributes.api_group.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}.{}", attributes.resource, attributes.api_group)
    };
    let subject = if attributes.name.is_empty() {
        format!("{what} is forbidden")
    } else {
        format!("{what} \"{}\" is forbidden", attributes.name)
    };
    let scope = if attributes.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace \"{}\"", attributes.namespace)
    };
    let message = format!(
        "{subject}: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        identity.user,
        attributes.verb,
        attributes.resource_path(),
        attributes.api_group
    );
    ApiError {
        details: Some(json!({
            "name": attributes.name,
            "group": attributes.api_group,
            "kind": attributes.resource,
        })),
        ..ApiError::new(403, "Forbidden", message)
    }
}

/// Whether a binding's subjects include the identity.
fn binds(binding: &Value, identity: &Identity) -> bool {
    let binding_namespace = text(binding, "/metadata/namespace");
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|subject| match subject["kind"].as_str() {
            Some("ServiceAccount") => {
                let namespace = match text(subject, "/namespace") {
                    "" => binding_namespace,
                    namespace => namespace,
                };
                identity.service_account_name() == Some((namespace, text(subject, "/name")))
            }
            Some("User") => identity.user == text(subject, "/name"),
            Some("Group") => identity.groups.iter().any(|g| g == text(subject, "/name")),
            _ => false,
        })
}

/// The indices of a role's rules that allow the request.
fn matching_rules(role: &Value, attributes: &Attributes) -> Vec<usize> {
    let resource_path = attributes.resource_path();
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, rule)| {
            let listed = |field: &str| -> Vec<&str> {
                rule[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect()
            };
            let groups = listed("apiGroups");
            let resources = listed("resources");
            let verbs = listed("verbs");
            let names = listed("resourceNames");
            let wildcard_subresource = format!("*/{}", attributes.subresource);
            (groups.contains(&"*") || groups.contains(&attributes.api_group.as_str()))
                && (verbs.contains(&"*") || verbs.contains(&attributes.verb.as_str()))
                && resources.iter().any(|r| {
                    *r == "*"
                        || *r == resource_path
                        || (!attributes.subresource.is_empty() && *r == wildcard_subresource)
                })
                && (names.is_empty()
                    || (!attributes.name.is_empty() && names.contains(&attributes.name.as_str())))
        })
        .map(|(index, _)| index)
        .collect()
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The owner references of an object that block their owner's deletion, as (apiVersion,
/// kind, name).
pub fn blocking_owner_references(object: &Value) -> Vec<(String, String, String)> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r["blockOwnerDeletion"] == true)
        .map(|r| {
            (
                text(r, "/apiVersion").to_owned(),
                text(r, "/kind").to_owned(),
                text(r, "/name").to_owned(),
            )
        })
        .collect()
}
