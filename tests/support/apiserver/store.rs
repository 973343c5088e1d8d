//! The in-memory object store and the write semantics of the real API server: resource
//! versions, generation, the status subresource, finalizers, deletion and owner references.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};

use super::managed::{self, Part, Writer};
use super::patch::PatchBody;
use super::resources::ResourceType;
use super::schema::{self, Part as AdmittedPart};

/// An API error, sent to clients as a `Status` object (which kube turns into `Error::Api`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code, repeated in the `Status` body.
    pub code: u16,
    /// Machine-readable reason, e.g. `NotFound`, `AlreadyExists`, `Conflict`.
    pub reason: &'static str,
    /// Human-readable message in the real API server's wording.
    pub message: String,
    /// `details` of the `Status`: the object's name, group and kind (plural).
    pub details: Option<Value>,
}

impl ApiError {
    /// An error without object details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn about(
        resource: &ResourceType,
        name: &str,
        code: u16,
        reason: &'static str,
        message: String,
    ) -> Self {
        Self {
            details: Some(json!({"name": name, "group": resource.group, "kind": resource.plural})),
            ..Self::new(code, reason, message)
        }
    }

    /// 404 NotFound for one object.
    pub fn not_found(resource: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", resource.qualified_name());
        Self::about(resource, name, 404, "NotFound", message)
    }

    /// 409 AlreadyExists on create.
    pub fn already_exists(resource: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", resource.qualified_name());
        Self::about(resource, name, 409, "AlreadyExists", message)
    }

    /// 409 Conflict for a stale `resourceVersion` or a failed precondition.
    pub fn conflict(resource: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            resource.qualified_name()
        );
        Self::about(resource, name, 409, "Conflict", message)
    }

    /// 422 Invalid: the object fails validation.
    pub fn invalid(resource: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!("{} \"{name}\" is invalid: {why}", resource.kind);
        Self::about(resource, name, 422, "Invalid", message)
    }

    /// 410 Gone: a watch asked for history that is no longer kept.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `Status` object the API server sends for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// Index of a resource type in the store's registry.
pub type ResourceId = usize;

/// Where an object lives: its resource type, namespace (empty when cluster-scoped) and name.
/// The ordering (resource, namespace, name) is the order lists return objects in, as etcd does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The resource type.
    pub resource: ResourceId,
    /// Namespace, or empty for cluster-scoped objects.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

/// The kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// The object was created.
    Added,
    /// The object was updated.
    Modified,
    /// The object was removed from storage.
    Deleted,
}

/// One committed change, kept in the history ring and broadcast to open watches.
#[derive(Debug)]
pub struct Change {
    /// The resourceVersion the change was committed at.
    pub resource_version: u64,
    /// The changed object's resource type.
    pub resource: ResourceId,
    /// Added, Modified or Deleted.
    pub change_type: ChangeType,
    /// The object after the change (for Deleted: its last state, at the deletion's version).
    pub object: Value,
    /// The object before a modification, so watches with selectors can tell an object
    /// entering or leaving the selection (reported as ADDED / DELETED, as the API server does).
    pub previous: Option<Value>,
}

/// A watch resumed from a resourceVersion: the retained changes after it, then the live ones.
pub struct ResumedWatch {
    /// Retained changes newer than the requested version, oldest first.
    pub backlog: Vec<Arc<Change>>,
    /// Changes committed from now on.
    pub changes: broadcast::Receiver<Arc<Change>>,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTarget {
    /// The main resource: `.status` changes are ignored when a status subresource exists.
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
    /// Test hooks: everything except system metadata, and no resourceVersion precondition.
    Unrestricted,
}

/// Who owns the fields a write changes (`metadata.managedFields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership<'a> {
    /// A create, update or non-apply patch by this manager: it owns what it changed.
    Update(&'a str),
    /// A server-side apply: the candidate already carries the new `managedFields`.
    Applied,
}

/// The manager test hooks write as (they play the kubelet and other cluster actors).
pub const TEST_HOOK_MANAGER: &str = "test-hook";

/// How dependents of a deleted object are treated (`DeleteOptions.propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now and its dependents afterwards (the default).
    Background,
    /// Approximated as Background: the owner does not wait for its dependents to be gone.
    Foreground,
    /// Keep the dependents and strip their owner references to the deleted owner.
    Orphan,
}

/// The parts of `DeleteOptions` the double honours.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteOptions {
    /// `propagationPolicy`.
    pub propagation: Propagation,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_resource_version: Option<String>,
    /// `dryRun=All`: validate and answer, but change nothing.
    pub dry_run: bool,
    /// `gracePeriodSeconds`: how long a pod may take to stop (default: the pod's
    /// `terminationGracePeriodSeconds`, else 30).
    pub grace_period_seconds: Option<i64>,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        Self {
            propagation: Propagation::Background,
            precondition_uid: None,
            precondition_resource_version: None,
            dry_run: false,
            grace_period_seconds: None,
        }
    }
}

/// All objects of all resource types, with the change history watches resume from.
pub struct Store {
    resources: Vec<ResourceType>,
    objects: BTreeMap<ObjectKey, Value>,
    /// The last resourceVersion handed out; one counter for all resources, like etcd's revision.
    resource_version: u64,
    history: VecDeque<Arc<Change>>,
    history_capacity: usize,
    /// Every change committed after this version is still in `history`; a watch from an older
    /// version gets 410 Gone.
    history_floor: u64,
    changes: broadcast::Sender<Arc<Change>>,
    /// UIDs of removed objects, for the garbage collector to find their dependents.
    removed_owners: mpsc::UnboundedSender<String>,
    names_generated: u64,
    /// How the simulated kubelet and workload controllers treat pods.
    pub pod_lifecycle: PodLifecycle,
    /// Terminating pods and when the kubelet removes them.
    terminating: BTreeMap<ObjectKey, std::time::Instant>,
    /// Pods a StatefulSet or ReplicaSet will create, and when.
    replacements: Vec<(std::time::Instant, ObjectKey, Value)>,
    /// Addresses handed to replacement pods.
    next_pod_ip: u32,
}

/// What the double plays of the kubelet and the workload controllers.
#[derive(Debug, Clone, Copy)]
pub struct PodLifecycle {
    /// A gracefully deleted pod stays Terminating for its grace period, but at most this
    /// long (tests should not wait 30 s), then the kubelet removes it.
    pub longest_termination: std::time::Duration,
    /// When set, a removed pod owned by a StatefulSet comes back with the same name (by a
    /// ReplicaSet: a new name), a new UID and a new IP, Running and Ready, this long after.
    pub replace_after: Option<std::time::Duration>,
}

impl Store {
    /// An empty store serving `resources`.
    pub fn new(
        resources: Vec<ResourceType>,
        history_capacity: usize,
        removed_owners: mpsc::UnboundedSender<String>,
    ) -> Self {
        // A watch that falls this far behind the live changes is ended with 410 Gone.
        let (changes, _) = broadcast::channel(history_capacity.max(1024));
        Self {
            resources,
            objects: BTreeMap::new(),
            resource_version: 0,
            history: VecDeque::new(),
            history_capacity: history_capacity.max(1),
            history_floor: 0,
            changes,
            removed_owners,
            names_generated: 0,
            pod_lifecycle: PodLifecycle {
                longest_termination: std::time::Duration::from_millis(300),
                replace_after: None,
            },
            terminating: BTreeMap::new(),
            replacements: Vec::new(),
            next_pod_ip: 0,
        }
    }

    /// The registered resource types.
    pub fn resources(&self) -> &[ResourceType] {
        &self.resources
    }

    /// The resource type with this id.
    pub fn resource(&self, id: ResourceId) -> &ResourceType {
        &self.resources[id]
    }

    /// Finds a resource by its URL coordinates.
    pub fn find_resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceId> {
        self.resources
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Finds a resource by `plural` (core group) or `plural.group`.
    pub fn find_by_qualified_name(&self, name: &str) -> Option<ResourceId> {
        self.resources
            .iter()
            .position(|r| r.qualified_name() == name)
    }

    /// The last committed resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// The stored object, if any.
    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of one resource type, in one namespace or all, that satisfy `selected`.
    pub fn list(
        &self,
        resource: ResourceId,
        namespace: Option<&str>,
        selected: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(key, _)| {
                key.resource == resource && namespace.is_none_or(|ns| key.namespace == ns)
            })
            .map(|(_, object)| object)
            .filter(|object| selected(object))
            .cloned()
            .collect()
    }

    /// POST: stores a new object, assigning uid, creationTimestamp, resourceVersion and
    /// generation, and a name from `generateName` when it has none.
    pub fn create(
        &mut self,
        resource: ResourceId,
        namespace: &str,
        mut object: Value,
        target: WriteTarget,
        dry_run: bool,
        ownership: Ownership<'_>,
    ) -> Result<Value, ApiError> {
        let resource_type = self.resources[resource].clone();
        set_type_meta(&resource_type, &mut object)?;
        let metadata = metadata_mut(&mut object);
        if resource_type.namespaced {
            match metadata.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    metadata.insert("namespace".into(), namespace.into());
                }
                Some(given) if given != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                Some(_) => {}
            }
        } else {
            metadata.remove("namespace");
        }
        let name = match metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(name) => name.to_string(),
            None => {
                let prefix = metadata
                    .get("generateName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if prefix.is_empty() {
                    return Err(ApiError::invalid(
                        &resource_type,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
                let name = self.generate_name(resource, namespace, &prefix);
                metadata_mut(&mut object).insert("name".into(), name.clone().into());
                name
            }
        };
        if let Err(why) = validate_name(&name) {
            return Err(ApiError::invalid(
                &resource_type,
                &name,
                &format!("metadata.name: Invalid value: \"{name}\": {why}"),
            ));
        }
        let key = ObjectKey {
            resource,
            namespace: if resource_type.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.clone(),
        };
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&resource_type, &name));
        }
        if target == WriteTarget::Main
            && resource_type.status_subresource
            && let Some(fields) = object.as_object_mut()
        {
            // With a status subresource the API server resets status on create.
            fields.remove("status");
        }
        if target != WriteTarget::Unrestricted {
            admit(&resource_type, &mut object, None, target, &name)?;
        }
        drop_empty_metadata_fields(&mut object);
        let metadata = metadata_mut(&mut object);
        // Test hooks may pin `uid` and `creationTimestamp` (say, a pod UID that a fake
        // `/proc` tree refers to); API clients cannot.
        for (field, assigned) in [("uid", new_uid()), ("creationTimestamp", now_rfc3339())] {
            let given = metadata
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty());
            if target != WriteTarget::Unrestricted || !given {
                metadata.insert(field.into(), assigned.into());
            }
        }
        metadata.insert("generation".into(), 1.into());
        for system_field in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
        ] {
            metadata.remove(system_field);
        }
        if let Ownership::Update(manager) = ownership {
            metadata.remove("managedFields");
            let writer = Writer {
                manager,
                api_version: &resource_type.api_version(),
                part: Part::Main {
                    status_subresource: resource_type.status_subresource
                        && target != WriteTarget::Unrestricted,
                },
            };
            managed::record_update(
                None,
                &mut object,
                &writer,
                &resource_type.lists,
                &now_rfc3339(),
            );
        }
        if dry_run {
            return Ok(object);
        }
        let version = self.next_resource_version();
        metadata_mut(&mut object).insert("resourceVersion".into(), version.to_string().into());
        self.objects.insert(key, object.clone());
        self.record(version, resource, ChangeType::Added, object.clone(), None);
        // The garbage collector also removes dependents created after their owner was gone.
        let owner_uids = owner_uids(&object);
        if !owner_uids.is_empty() && owner_uids.iter().all(|uid| !self.uid_exists(uid)) {
            for uid in owner_uids {
                let _ = self.removed_owners.send(uid);
            }
        }
        Ok(object)
    }

    /// PUT (and the last step of PATCH): replaces an object with optimistic concurrency.
    pub fn update(
        &mut self,
        key: &ObjectKey,
        mut candidate: Value,
        target: WriteTarget,
        dry_run: bool,
        ownership: Ownership<'_>,
    ) -> Result<Value, ApiError> {
        let resource_type = self.resources[key.resource].clone();
        let old = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&resource_type, &key.name))?;
        set_type_meta(&resource_type, &mut candidate)?;
        let candidate_metadata = metadata_mut(&mut candidate);
        if let Some(name) = candidate_metadata.get("name").and_then(Value::as_str)
            && name != key.name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                key.name
            )));
        }
        if let Some(namespace) = candidate_metadata.get("namespace").and_then(Value::as_str)
            && resource_type.namespaced
            && !namespace.is_empty()
            && namespace != key.namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let stored_version = resource_version_of(&old);
        // PATCH candidates carry the stored version unless the patch set one: a stale one
        // is a precondition failure, exactly as for PUT.
        let given_version = candidate_metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if target != WriteTarget::Unrestricted
            && given_version.is_empty()
            && !resource_type.unconditional_update
        {
            return Err(ApiError::invalid(
                &resource_type,
                &key.name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        if target != WriteTarget::Unrestricted
            && !given_version.is_empty()
            && given_version != stored_version
        {
            return Err(ApiError::conflict(
                &resource_type,
                &key.name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }

        let candidate_managed_fields = candidate.pointer("/metadata/managedFields").cloned();
        let mut new = match target {
            WriteTarget::Main if resource_type.status_subresource => {
                copy_top_level_field(&old, &mut candidate, "status");
                candidate
            }
            WriteTarget::Main | WriteTarget::Unrestricted => candidate,
            WriteTarget::Status => {
                let mut new = old.clone();
                copy_top_level_field(&candidate, &mut new, "status");
                new
            }
        };
        let old_metadata = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let new_metadata = metadata_mut(&mut new);
        for system_field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_metadata.get(system_field) {
                Some(value) => new_metadata.insert(system_field.into(), value.clone()),
                None => new_metadata.remove(system_field),
            };
        }
        if target != WriteTarget::Unrestricted {
            admit(&resource_type, &mut new, Some(&old), target, &key.name)?;
        }
        let being_deleted = old_metadata.contains_key("deletionTimestamp");
        let old_finalizers = finalizers(&old);
        if being_deleted && finalizers(&new).iter().any(|f| !old_finalizers.contains(f)) {
            return Err(ApiError::invalid(
                &resource_type,
                &key.name,
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
            ));
        }
        match ownership {
            Ownership::Applied => {
                let applied = candidate_managed_fields;
                let metadata = metadata_mut(&mut new);
                match applied {
                    Some(fields) => metadata.insert("managedFields".into(), fields),
                    None => metadata.remove("managedFields"),
                };
            }
            Ownership::Update(manager) => {
                let writer = Writer {
                    manager,
                    api_version: &resource_type.api_version(),
                    part: match target {
                        WriteTarget::Status => Part::Status,
                        WriteTarget::Main => Part::Main {
                            status_subresource: resource_type.status_subresource,
                        },
                        WriteTarget::Unrestricted => Part::Main {
                            status_subresource: false,
                        },
                    },
                };
                managed::record_update(
                    Some(&old),
                    &mut new,
                    &writer,
                    &resource_type.lists,
                    &now_rfc3339(),
                );
            }
        }
        drop_empty_metadata_fields(&mut new);
        if without_metadata_and_status(&old) != without_metadata_and_status(&new) {
            let generation = old_metadata
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            metadata_mut(&mut new).insert("generation".into(), (generation + 1).into());
        }
        // An update that changes nothing is a no-op: no new resourceVersion, no watch event.
        if new == old || dry_run {
            return Ok(new);
        }
        if being_deleted && finalizers(&new).is_empty() {
            return Ok(self.remove(key, new));
        }
        let version = self.next_resource_version();
        metadata_mut(&mut new).insert("resourceVersion".into(), version.to_string().into());
        self.objects.insert(key.clone(), new.clone());
        self.record(
            version,
            key.resource,
            ChangeType::Modified,
            new.clone(),
            Some(old),
        );
        Ok(new)
    }

    /// PATCH: applies the patch to the stored object and updates it; server-side apply
    /// creates a missing object. Returns the object and whether it was created.
    pub fn patch(
        &mut self,
        key: &ObjectKey,
        patch: &PatchBody,
        target: WriteTarget,
        dry_run: bool,
        manager: &str,
    ) -> Result<(Value, bool), ApiError> {
        let resource_type = self.resources[key.resource].clone();
        if let PatchBody::Apply { body, .. } = patch {
            for field in ["apiVersion", "kind"] {
                if body
                    .get(field)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::bad_request(format!(
                        "{field} must be set in an apply patch"
                    )));
                }
            }
        }
        let part = match target {
            WriteTarget::Status => Part::Status,
            WriteTarget::Main => Part::Main {
                status_subresource: resource_type.status_subresource,
            },
            WriteTarget::Unrestricted => Part::Main {
                status_subresource: false,
            },
        };
        let api_version = resource_type.api_version();
        let applied = |live: &Value| -> Result<Value, ApiError> {
            let PatchBody::Apply {
                body,
                field_manager,
                force,
            } = patch
            else {
                unreachable!("only called for apply patches")
            };
            let writer = Writer {
                manager: field_manager,
                api_version: &api_version,
                part,
            };
            let mut candidate = managed::apply(
                live,
                body,
                &writer,
                *force,
                &resource_type.lists,
                &now_rfc3339(),
            )?;
            // A resourceVersion in the configuration is a precondition, as for any update.
            if let Some(version) = body.pointer("/metadata/resourceVersion").cloned() {
                metadata_mut(&mut candidate).insert("resourceVersion".into(), version);
            }
            Ok(candidate)
        };
        match self.objects.get(key) {
            Some(old) if patch.creates_missing_object() => {
                let candidate = applied(old)?;
                self.update(key, candidate, target, dry_run, Ownership::Applied)
                    .map(|object| (object, false))
            }
            Some(old) => {
                let candidate = patch.apply_to(old)?;
                self.update(key, candidate, target, dry_run, Ownership::Update(manager))
                    .map(|object| (object, false))
            }
            None if patch.creates_missing_object() && target == WriteTarget::Main => {
                let mut object = applied(&json!({}))?;
                if !object.is_object() {
                    return Err(ApiError::bad_request("an apply patch must be an object"));
                }
                let metadata = metadata_mut(&mut object);
                match metadata.get("name").and_then(Value::as_str) {
                    Some(name) if name != key.name => {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({name}) does not match the name on the URL ({})",
                            key.name
                        )));
                    }
                    _ => metadata.insert("name".into(), key.name.clone().into()),
                };
                if let Some(body) = patch.body() {
                    for field in ["namespace", "name"] {
                        if let Some(value) = body.pointer(&format!("/metadata/{field}")) {
                            metadata_mut(&mut object).insert(field.into(), value.clone());
                        }
                    }
                }
                self.create(
                    key.resource,
                    &key.namespace,
                    object,
                    target,
                    dry_run,
                    Ownership::Applied,
                )
                .map(|object| (object, true))
            }
            None => Err(ApiError::not_found(&resource_type, &key.name)),
        }
    }

    /// DELETE: removes the object, or — when it has finalizers — marks it as being deleted
    /// and keeps it until an update removes the last finalizer.
    pub fn delete(&mut self, key: &ObjectKey, options: &DeleteOptions) -> Result<Value, ApiError> {
        let resource_type = self.resources[key.resource].clone();
        let old = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&resource_type, &key.name))?;
        let uid = old
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(want) = &options.precondition_uid
            && *want != uid
        {
            let why = format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
            );
            return Err(ApiError::conflict(&resource_type, &key.name, &why));
        }
        if let Some(want) = &options.precondition_resource_version
            && want != resource_version_of(&old)
        {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                resource_version_of(&old)
            );
            return Err(ApiError::conflict(&resource_type, &key.name, &why));
        }
        if options.dry_run {
            return Ok(old);
        }
        if options.propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        if let Some(grace) = self.pod_grace(&resource_type, &old, options) {
            return Ok(self.terminate_pod(key, old, grace));
        }
        if finalizers(&old).is_empty() {
            return Ok(self.remove(key, old));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut deleting = old.clone();
        let metadata = metadata_mut(&mut deleting);
        metadata.insert("deletionTimestamp".into(), now_rfc3339().into());
        metadata.insert("deletionGracePeriodSeconds".into(), 0.into());
        // The API server bumps generation when it marks an object for deletion, so
        // controllers that only react to generation changes still see the deletion.
        if let Some(generation) = metadata
            .get("generation")
            .and_then(Value::as_i64)
            .filter(|g| *g > 0)
        {
            metadata.insert("generation".into(), (generation + 1).into());
        }
        let version = self.next_resource_version();
        metadata_mut(&mut deleting).insert("resourceVersion".into(), version.to_string().into());
        self.objects.insert(key.clone(), deleting.clone());
        self.record(
            version,
            key.resource,
            ChangeType::Modified,
            deleting.clone(),
            Some(old),
        );
        Ok(deleting)
    }

    /// A scheduled pod deleted with a grace period is not removed at once: the kubelet stops
    /// its containers first. `None`: remove it now (not a pod, never scheduled, or grace 0).
    fn pod_grace(
        &self,
        resource: &ResourceType,
        pod: &Value,
        options: &DeleteOptions,
    ) -> Option<i64> {
        if !(resource.group.is_empty() && resource.plural == "pods") {
            return None;
        }
        pod.pointer("/spec/nodeName").and_then(Value::as_str)?;
        let grace = options.grace_period_seconds.unwrap_or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        (grace > 0).then_some(grace)
    }

    /// Marks a pod Terminating with `grace` seconds; the kubelet removes it later (see
    /// [`Store::finish_terminations`]). A second deletion can only shorten the grace.
    fn terminate_pod(&mut self, key: &ObjectKey, old: Value, grace: i64) -> Value {
        let shortest = self.pod_lifecycle.longest_termination;
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs(grace as u64).min(shortest);
        let previous = self.terminating.get(key).copied();
        self.terminating
            .insert(key.clone(), previous.map_or(deadline, |p| p.min(deadline)));
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return old;
        }
        let mut deleting = old.clone();
        let stamp = (k8s_openapi::jiff::Timestamp::now()
            + k8s_openapi::jiff::SignedDuration::from_secs(grace))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
        let metadata = metadata_mut(&mut deleting);
        metadata.insert("deletionTimestamp".into(), stamp.into());
        metadata.insert("deletionGracePeriodSeconds".into(), grace.into());
        let version = self.next_resource_version();
        metadata_mut(&mut deleting).insert("resourceVersion".into(), version.to_string().into());
        self.objects.insert(key.clone(), deleting.clone());
        self.record(
            version,
            key.resource,
            ChangeType::Modified,
            deleting.clone(),
            Some(old),
        );
        deleting
    }

    /// The kubelet's part: removes pods whose termination is over (finalizers still hold
    /// them, as on a real node), and the workload controllers' part: creates the replacement
    /// pods that are due. Called periodically by the server.
    pub fn finish_terminations(&mut self, now: std::time::Instant) {
        let done: Vec<ObjectKey> = self
            .terminating
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in done {
            self.terminating.remove(&key);
            let Some(pod) = self.objects.get(&key).cloned() else {
                continue;
            };
            if finalizers(&pod).is_empty() {
                self.remove(&key, pod);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.replacements)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.replacements = later;
        for (_, key, pod) in due {
            let _ = self.create(
                key.resource,
                &key.namespace,
                pod,
                WriteTarget::Unrestricted,
                false,
                Ownership::Update("kube-controller-manager"),
            );
        }
    }

    /// When a pod of a StatefulSet or ReplicaSet that still exists is removed, schedules the
    /// pod its controller would make: same template, new UID and IP.
    fn schedule_replacement(&mut self, key: &ObjectKey, pod: &Value) {
        let Some(delay) = self.pod_lifecycle.replace_after else {
            return;
        };
        let resource = &self.resources[key.resource];
        if !(resource.group.is_empty() && resource.plural == "pods") {
            return;
        }
        let Some(owner) = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        else {
            return;
        };
        let kind = owner["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "StatefulSet" | "ReplicaSet") {
            return;
        }
        let owner_uid = owner["uid"].as_str().unwrap_or_default();
        if !self.uid_exists(owner_uid) {
            return;
        }
        self.next_pod_ip += 1;
        let ip = format!("127.0.1.{}", self.next_pod_ip % 250 + 1);
        let mut replacement = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "namespace": key.namespace,
                "labels": pod.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                "ownerReferences": [owner.clone()],
            },
            "spec": pod.get("spec").cloned().unwrap_or(json!({})),
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        let metadata = metadata_mut(&mut replacement);
        if kind == "StatefulSet" {
            metadata.insert("name".into(), key.name.clone().into());
        } else {
            let prefix = key
                .name
                .rsplit_once('-')
                .map_or(key.name.as_str(), |(p, _)| p);
            metadata.insert("generateName".into(), format!("{prefix}-").into());
        }
        let at = std::time::Instant::now() + delay;
        self.replacements.push((at, key.clone(), replacement));
    }

    /// Deletes the dependents of a removed owner whose owners are all gone, as the garbage
    /// collector's background propagation does. Dependents with finalizers are only marked
    /// for deletion; their own dependents follow once they are really removed.
    pub fn collect_garbage(&mut self, owner_uid: &str) {
        let live_uids: HashSet<&str> = self
            .objects
            .values()
            .filter_map(|object| object.pointer("/metadata/uid").and_then(Value::as_str))
            .collect();
        let orphaned: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, object)| {
                let owners = owner_uids(object);
                owners.contains(owner_uid)
                    && owners.iter().all(|uid| !live_uids.contains(uid.as_str()))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in orphaned {
            // Only NotFound can happen here, when a dependent vanished meanwhile; nothing to do.
            let _ = self.delete(&key, &DeleteOptions::default());
        }
    }

    /// Starts a watch after `since`: the retained changes newer than it, and a receiver for
    /// the changes still to come. Taken under the store lock, so nothing falls in between.
    pub fn watch_from(&self, since: u64) -> Result<ResumedWatch, ApiError> {
        if since < self.history_floor {
            return Err(ApiError::gone(format!(
                "too old resource version: {since} ({})",
                self.history_floor + 1
            )));
        }
        let backlog = self
            .history
            .iter()
            .filter(|c| c.resource_version > since)
            .cloned()
            .collect();
        Ok(ResumedWatch {
            backlog,
            changes: self.changes.subscribe(),
        })
    }

    /// A receiver for all changes committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Forgets the change history, as an etcd compaction does: watches from any earlier
    /// resourceVersion then get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.history_floor = self.resource_version;
    }

    /// Creates the object if missing, otherwise merge-patches it with no restrictions
    /// (status included): the test hook that simulates other actors, such as the kubelet.
    pub fn apply_unrestricted(
        &mut self,
        resource: ResourceId,
        object: Value,
    ) -> Result<Value, ApiError> {
        let resource_type = self.resources[resource].clone();
        let namespace = if resource_type.namespaced {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = ObjectKey {
            resource,
            namespace,
            name,
        };
        match self.objects.get(&key) {
            Some(old) => {
                let candidate = PatchBody::Merge(object).apply_to(old)?;
                self.update(
                    &key,
                    candidate,
                    WriteTarget::Unrestricted,
                    false,
                    Ownership::Update(TEST_HOOK_MANAGER),
                )
            }
            None => self.create(
                resource,
                &key.namespace,
                object,
                WriteTarget::Unrestricted,
                false,
                Ownership::Update(TEST_HOOK_MANAGER),
            ),
        }
    }

    fn remove(&mut self, key: &ObjectKey, mut object: Value) -> Value {
        self.terminating.remove(key);
        self.schedule_replacement(key, &object);
        let version = self.next_resource_version();
        metadata_mut(&mut object).insert("resourceVersion".into(), version.to_string().into());
        self.objects.remove(key);
        if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) {
            // The receiver only goes away when the server shuts down.
            let _ = self.removed_owners.send(uid.to_string());
        }
        self.record(
            version,
            key.resource,
            ChangeType::Deleted,
            object.clone(),
            None,
        );
        object
    }

    fn orphan_dependents(&mut self, owner_uid: &str) {
        let dependents: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, object)| owner_uids(object).iter().any(|uid| uid == owner_uid))
            .map(|(key, _)| key.clone())
            .collect();
        for key in dependents {
            let mut orphan = self.objects[&key].clone();
            if let Some(references) = orphan
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                references.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            }
            // Cannot fail: the object exists and only its owner references change.
            let _ = self.update(
                &key,
                orphan,
                WriteTarget::Unrestricted,
                false,
                Ownership::Update("garbage-collector"),
            );
        }
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.objects
            .values()
            .any(|object| object.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid))
    }

    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn record(
        &mut self,
        version: u64,
        resource: ResourceId,
        change_type: ChangeType,
        object: Value,
        previous: Option<Value>,
    ) {
        let change = Arc::new(Change {
            resource_version: version,
            resource,
            change_type,
            object,
            previous,
        });
        if self.history.len() == self.history_capacity
            && let Some(evicted) = self.history.pop_front()
        {
            self.history_floor = evicted.resource_version;
        }
        self.history.push_back(change.clone());
        // Sending fails only when no watch is open, which is fine.
        let _ = self.changes.send(change);
    }

    /// `prefix` plus five characters from the API server's alphabet (no vowels, so generated
    /// names never spell words), unique among existing objects.
    fn generate_name(&mut self, resource: ResourceId, namespace: &str, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        loop {
            self.names_generated += 1;
            // A multiplicative hash spreads consecutive counters over the alphabet.
            let mut seed = self.names_generated.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let suffix: String = (0..5)
                .map(|_| {
                    let character = ALPHABET[(seed % ALPHABET.len() as u64) as usize] as char;
                    seed /= ALPHABET.len() as u64;
                    character
                })
                .collect();
            let name = format!("{prefix}{suffix}");
            let key = ObjectKey {
                resource,
                namespace: namespace.to_string(),
                name: name.clone(),
            };
            if !self.objects.contains_key(&key) {
                return name;
            }
        }
    }
}

/// Checks `apiVersion` and `kind` against the URL's resource and fills them in when absent.
fn set_type_meta(resource: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let Some(fields) = object.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let api_version = resource.api_version();
    for (field, expected) in [
        ("apiVersion", api_version.as_str()),
        ("kind", resource.kind.as_str()),
    ] {
        match fields.get(field).and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != expected => {
                return Err(ApiError::bad_request(format!(
                    "{field} {given:?} in the body does not match {expected:?}, the {} resource this request was sent to",
                    resource.qualified_name()
                )));
            }
            _ => {
                fields.insert(field.into(), expected.into());
            }
        }
    }
    Ok(())
}

/// `metadata` as a mutable map, created if missing. Callers have checked the object is a map.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    let fields = object.as_object_mut().expect("objects are JSON maps");
    let metadata = fields.entry("metadata").or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    metadata
        .as_object_mut()
        .expect("metadata was just made a map")
}

/// Drops null, empty-list and empty-map metadata fields, as the API server's typed storage
/// does (Go's `omitempty`). This matters: kube's finalizer helper tests
/// `/metadata/finalizers` for `null` after the last finalizer of an object was removed.
fn drop_empty_metadata_fields(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.retain(|_, value| match value {
            Value::Null => false,
            Value::Array(items) => !items.is_empty(),
            Value::Object(fields) => !fields.is_empty(),
            _ => true,
        });
    }
}

/// Copies a top-level field from one object to another, or removes it when the source lacks it.
fn copy_top_level_field(from: &Value, to: &mut Value, field: &str) {
    let Some(target) = to.as_object_mut() else {
        return;
    };
    match from.get(field) {
        Some(value) => target.insert(field.into(), value.clone()),
        None => target.remove(field),
    };
}

/// Everything generation tracks: the object minus type, metadata and status.
fn without_metadata_and_status(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Some(fields) = rest.as_object_mut() {
        for field in ["apiVersion", "kind", "metadata", "status"] {
            fields.remove(field);
        }
    }
    rest
}

fn resource_version_of(object: &Value) -> &str {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(object: &Value) -> HashSet<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|references| {
            references
                .iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A DNS-1123 subdomain, which is what most resources require of `metadata.name`.
/// Schema admission for a resource a CRD defines (others pass as they are).
fn admit(
    resource_type: &ResourceType,
    object: &mut Value,
    old: Option<&Value>,
    target: WriteTarget,
    name: &str,
) -> Result<(), ApiError> {
    let Some(schema) = &resource_type.schema else {
        return Ok(());
    };
    let part = match target {
        _ if !resource_type.status_subresource => AdmittedPart::All,
        WriteTarget::Status => AdmittedPart::Status,
        _ => AdmittedPart::Main,
    };
    schema
        .admit(object, old, part)
        .map_err(|causes| schema::invalid(&resource_type.kind, &resource_type.group, name, &causes))
}

fn validate_name(name: &str) -> Result<(), &'static str> {
    let valid_characters = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let alphanumeric_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() <= 253 && valid_characters && alphanumeric_ends {
        Ok(())
    } else {
        Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        )
    }
}

/// A random version-4 UUID, as the API server assigns to `metadata.uid`.
fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per instance: two instances give unrelated 64-bit values
    // without needing a random-number crate in the tests.
    let random = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let (high, low) = (random(), random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        0x8000 | ((low >> 48) & 0x3fff),
        low & 0xffff_ffff_ffff
    )
}

/// Now, in the second-precision RFC 3339 form of `metav1.Time`.
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
