//! Where requests meet `auth`: the authorizer's attributes of a routed request, the RBAC
//! objects the store holds, and the owner-reference admission check of a write.

use serde_json::Value;

use super::Shared;
use super::auth::{
    Attributes, Identity, RbacObjects, authorize, blocking_owner_references, forbidden,
};
use super::store::{ApiError, ObjectKey, ResourceId, Store};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The authorizer's attributes of a request on a collection or an object.
pub fn attributes(
    store: &Store,
    resource: ResourceId,
    namespace: &str,
    name: &str,
    status: bool,
    verb: &str,
) -> Attributes {
    let resource_type = store.resource(resource);
    Attributes {
        verb: verb.to_owned(),
        api_group: resource_type.group.clone(),
        resource: resource_type.plural.clone(),
        subresource: if status {
            "status".to_owned()
        } else {
            String::new()
        },
        name: name.to_owned(),
        namespace: namespace.to_owned(),
    }
}

/// The verb of a collection request; the name a `metadata.name` field selector pins, which
/// the API server authorizes like a request for that object.
pub fn collection_verb(
    method: &hyper::Method,
    watch: bool,
    field_selector: &str,
) -> (&'static str, String) {
    let verb = match *method {
        hyper::Method::GET if watch => "watch",
        hyper::Method::GET => "list",
        hyper::Method::POST => "create",
        hyper::Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    let pinned = field_selector
        .split(',')
        .find_map(|term| term.strip_prefix("metadata.name="))
        .filter(|_| matches!(verb, "list" | "watch"))
        .unwrap_or_default()
        .to_owned();
    (verb, pinned)
}

/// The verb of a request on one object.
pub fn object_verb(method: &hyper::Method) -> &'static str {
    match *method {
        hyper::Method::GET => "get",
        hyper::Method::PUT => "update",
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// Authorizes `attributes` for `identity` against the stored RBAC objects, records the
/// decision, and answers 403 when denied.
pub fn check(
    shared: &Shared,
    store: &Store,
    identity: &Identity,
    attributes: &Attributes,
) -> Result<(), ApiError> {
    let stored = |plural: &str| -> Vec<Value> {
        store
            .find_resource(RBAC_GROUP, "v1", plural)
            .map(|resource| store.list(resource, None, |_| true))
            .unwrap_or_default()
    };
    let (roles, cluster_roles, role_bindings, cluster_role_bindings) = (
        stored("roles"),
        stored("clusterroles"),
        stored("rolebindings"),
        stored("clusterrolebindings"),
    );
    let rbac = RbacObjects {
        roles: roles.iter().collect(),
        cluster_roles: cluster_roles.iter().collect(),
        role_bindings: role_bindings.iter().collect(),
        cluster_role_bindings: cluster_role_bindings.iter().collect(),
    };
    let decision = authorize(&rbac, identity, attributes);
    let allowed = decision.allowed;
    shared.decisions().push(decision);
    if allowed {
        Ok(())
    } else {
        Err(forbidden(identity, attributes))
    }
}

/// OwnerReferencesPermissionEnforcement for a write that makes the object at `key` (none
/// stored: a create) `new`: changed references take `delete` on the object, and every new
/// reference that blocks its owner's deletion takes `update` on the owner's `finalizers`.
pub fn admit_owner_references(
    shared: &Shared,
    store: &Store,
    identity: &Identity,
    key: &ObjectKey,
    new: &Value,
) -> Result<(), ApiError> {
    let old = store.get(key);
    let references = |object: Option<&Value>| {
        object
            .and_then(|o| o.pointer("/metadata/ownerReferences"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let resource_type = store.resource(key.resource).clone();
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(&key.name)
        .to_owned();
    if old.is_some() && references(old) != references(Some(new)) {
        let delete = attributes(store, key.resource, &key.namespace, &name, false, "delete");
        check(shared, store, identity, &delete).map_err(|_| {
            owner_reference_error(
                &resource_type,
                &name,
                "cannot set an ownerRef on a resource you can't delete",
            )
        })?;
    }
    let before = old.map(blocking_owner_references).unwrap_or_default();
    for (api_version, kind, owner) in blocking_owner_references(new) {
        if before.contains(&(api_version.clone(), kind.clone(), owner.clone())) {
            continue;
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let Some(owner_resource) = store
            .resources()
            .iter()
            .position(|r| r.group == group && r.version == version && r.kind == kind)
        else {
            return Err(owner_reference_error(
                &resource_type,
                &name,
                &format!(
                    "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion {api_version} Kind {kind}"
                ),
            ));
        };
        let mut finalizers = attributes(
            store,
            owner_resource,
            &key.namespace,
            &owner,
            false,
            "update",
        );
        finalizers.subresource = "finalizers".to_owned();
        check(shared, store, identity, &finalizers).map_err(|_| {
            owner_reference_error(
                &resource_type,
                &name,
                "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on",
            )
        })?;
    }
    Ok(())
}

fn owner_reference_error(resource: &super::ResourceType, name: &str, why: &str) -> ApiError {
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{} \"{name}\" is forbidden: {why}",
            resource.qualified_name()
        ),
    )
}
