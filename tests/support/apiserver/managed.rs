//! Field ownership (`metadata.managedFields`) and server-side apply, as the API server's
//! structured-merge-diff does it where controllers depend on it:
//!
//! * every write records which manager owns which fields: an apply owns exactly the fields of
//!   its configuration (entry `operation: Apply`), any other write owns the fields it changed
//!   (`operation: Update`), taking them away from every other manager;
//! * an apply that would change a field another manager owns is a 409 Conflict naming the
//!   manager and the field, unless forced (`force=true`), which transfers ownership; applying
//!   the value a field already has makes the managers co-owners, never a conflict;
//! * fields a manager applied before and no longer applies are removed from the object, unless
//!   another manager still owns them;
//! * lists are merged by their schema: list-maps by their keys (`status.conditions` by `type`),
//!   sets by value (`metadata.finalizers`), every other list is atomic and replaced whole.
//!
//! Left out: field types beyond what the JSON shows (an integer written as a string is another
//! value), `null` in an applied configuration (it removes the field, as kubectl's does, but is
//! not recorded), and managers' `time` beyond "now".

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::store::ApiError;

/// How the lists of one resource merge: paths are dotted field names from the object's root,
/// list elements left out (`spec.containers.ports`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSchema {
    /// Lists merged by the values of these key fields.
    pub maps: Vec<(String, Vec<String>)>,
    /// Lists of scalars merged as sets.
    pub sets: Vec<String>,
}

impl ListSchema {
    /// What every object has: owner references keyed by `uid`, finalizers as a set.
    pub fn with_metadata_lists(mut self) -> Self {
        self.maps
            .push(("metadata.ownerReferences".into(), vec!["uid".into()]));
        self.sets.push("metadata.finalizers".into());
        self
    }

    fn keys(&self, path: &str) -> Option<&[String]> {
        self.maps
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, keys)| keys.as_slice())
    }

    fn is_set(&self, path: &str) -> bool {
        self.sets.iter().any(|p| p == path)
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A field of a map: `f:name`.
    Field(String),
    /// The element of a list-map with these key values: `k:{"type":"Ready"}`.
    Key(String),
    /// The element of a set with this value: `v:"a"`.
    Value(String),
}

/// A field path; a path ending in `Key` or `Value` names the list element itself.
pub type FieldPath = Vec<Step>;

/// A set of field paths: what one manager owns.
pub type FieldSet = BTreeSet<FieldPath>;

/// Which writes are tracked for a resource: the main resource, or its `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but `.status` (when a status subresource exists), and `.status` otherwise.
    Main { status_subresource: bool },
    /// Only `.status`.
    Status,
}

impl Part {
    fn tracks_top_level(self, field: &str) -> bool {
        match (self, field) {
            (_, "apiVersion" | "kind") => false,
            (Part::Status, "status") => true,
            (Part::Status, _) => false,
            (
                Part::Main {
                    status_subresource: true,
                },
                "status",
            ) => false,
            (Part::Main { .. }, _) => true,
        }
    }

    fn subresource(self) -> Option<&'static str> {
        match self {
            Part::Status => Some("status"),
            Part::Main { .. } => None,
        }
    }
}

/// Metadata fields that belong to the object's owner rather than the system.
const MANAGED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// The fields `object` sets, as ownership sees them.
pub fn fields_of(object: &Value, schema: &ListSchema, part: Part) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(map) = object.as_object() else {
        return set;
    };
    for (name, value) in map {
        if !part.tracks_top_level(name) || value.is_null() {
            continue;
        }
        let path = vec![Step::Field(name.clone())];
        if name == "metadata" {
            if let Some(metadata) = value.as_object() {
                for (field, value) in metadata {
                    if MANAGED_METADATA.contains(&field.as_str()) && !value.is_null() {
                        let path = vec![Step::Field("metadata".into()), Step::Field(field.clone())];
                        collect(value, &path, &format!("metadata.{field}"), schema, &mut set);
                    }
                }
            }
            continue;
        }
        collect(value, &path, name, schema, &mut set);
    }
    set
}

fn collect(
    value: &Value,
    path: &FieldPath,
    pattern: &str,
    schema: &ListSchema,
    set: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (name, child) in map {
                if child.is_null() {
                    continue;
                }
                let mut child_path = path.clone();
                child_path.push(Step::Field(name.clone()));
                collect(
                    child,
                    &child_path,
                    &format!("{pattern}.{name}"),
                    schema,
                    set,
                );
            }
        }
        Value::Array(items) if schema.keys(pattern).is_some() => {
            let keys = schema.keys(pattern).unwrap_or_default();
            for item in items {
                let mut item_path = path.clone();
                item_path.push(Step::Key(key_of(item, keys)));
                set.insert(item_path.clone());
                if let Some(fields) = item.as_object() {
                    for (name, child) in fields {
                        if child.is_null() {
                            continue;
                        }
                        let mut child_path = item_path.clone();
                        child_path.push(Step::Field(name.clone()));
                        collect(
                            child,
                            &child_path,
                            &format!("{pattern}.{name}"),
                            schema,
                            set,
                        );
                    }
                }
            }
        }
        Value::Array(items) if schema.is_set(pattern) => {
            for item in items {
                let mut item_path = path.clone();
                item_path.push(Step::Value(item.to_string()));
                set.insert(item_path);
            }
        }
        // Scalars, atomic lists and empty maps are leaves.
        _ => {
            set.insert(path.clone());
        }
    }
}

/// The canonical key of a list-map element: its key fields as a JSON object, sorted by name.
fn key_of(item: &Value, keys: &[String]) -> String {
    let mut key = Map::new();
    for name in keys {
        if let Some(value) = item.get(name) {
            key.insert(name.clone(), value.clone());
        }
    }
    Value::Object(key).to_string()
}

/// The value at `path` in `object`, if present.
fn value_at<'a>(object: &'a Value, path: &[Step], schema: &ListSchema) -> Option<&'a Value> {
    let mut current = object;
    let mut pattern = String::new();
    let mut pending_keys: Option<Vec<String>> = None;
    for step in path {
        match step {
            Step::Field(name) => {
                current = current.get(name)?;
                if !pattern.is_empty() {
                    pattern.push('.');
                }
                pattern.push_str(name);
                pending_keys = schema.keys(&pattern).map(<[String]>::to_vec);
            }
            Step::Key(key) => {
                let keys = pending_keys.take()?;
                current = current
                    .as_array()?
                    .iter()
                    .find(|item| key_of(item, &keys) == *key)?;
            }
            Step::Value(value) => {
                current = current
                    .as_array()?
                    .iter()
                    .find(|item| item.to_string() == *value)?;
            }
        }
    }
    Some(current)
}

/// One entry of `managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub apply: bool,
    pub subresource: Option<String>,
    pub api_version: String,
    pub fields: FieldSet,
}

impl Entry {
    fn same_slot(&self, manager: &str, apply: bool, subresource: Option<&str>) -> bool {
        self.manager == manager && self.apply == apply && self.subresource.as_deref() == subresource
    }
}

/// Reads `metadata.managedFields` of a stored object.
pub fn entries_of(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                    apply: e["operation"] == "Apply",
                    subresource: e["subresource"].as_str().map(str::to_owned),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn set_entries(object: &mut Value, entries: &[Entry], now: &str) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut entry = json!({
                "manager": e.manager,
                "operation": if e.apply { "Apply" } else { "Update" },
                "apiVersion": e.api_version,
                "time": now,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(subresource) = &e.subresource {
                entry["subresource"] = subresource.clone().into();
            }
            entry
        })
        .collect();
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if list.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}

fn step_name(step: &Step) -> String {
    match step {
        Step::Field(name) => format!("f:{name}"),
        Step::Key(key) => format!("k:{key}"),
        Step::Value(value) => format!("v:{value}"),
    }
}

/// The `FieldsV1` form: a tree of `f:`/`k:`/`v:` steps, with `.` marking a list element that
/// is owned itself.
pub fn to_fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for step in path {
            node = node
                .entry(step_name(step))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("nodes are maps");
        }
        if matches!(path.last(), Some(Step::Key(_) | Step::Value(_))) {
            node.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

fn from_fields_v1(tree: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, path: &mut FieldPath, set: &mut FieldSet) {
        let children: Vec<(&String, &Value)> = node.iter().filter(|(k, _)| *k != ".").collect();
        if (node.contains_key(".") || children.is_empty()) && !path.is_empty() {
            set.insert(path.clone());
        }
        for (name, child) in children {
            let step = if let Some(rest) = name.strip_prefix("f:") {
                Step::Field(rest.to_owned())
            } else if let Some(rest) = name.strip_prefix("k:") {
                Step::Key(rest.to_owned())
            } else if let Some(rest) = name.strip_prefix("v:") {
                Step::Value(rest.to_owned())
            } else {
                continue;
            };
            path.push(step);
            walk(child.as_object().unwrap_or(&Map::new()), path, set);
            path.pop();
        }
    }
    let mut set = FieldSet::new();
    if let Some(map) = tree.as_object() {
        walk(map, &mut Vec::new(), &mut set);
    }
    set
}

/// Who writes, and how.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub part: Part,
}

/// Ownership after a non-apply write from `old` (None on create) to `new`: the writer owns
/// what it changed or added; nobody owns what it removed.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    writer: &Writer<'_>,
    schema: &ListSchema,
    now: &str,
) {
    let mut entries = old.map(entries_of).unwrap_or_default();
    let new_fields = fields_of(new, schema, writer.part);
    let old_fields = old
        .map(|o| fields_of(o, schema, writer.part))
        .unwrap_or_default();
    let changed: FieldSet = new_fields
        .iter()
        .filter(|path| {
            !old_fields.contains(*path)
                || old.and_then(|o| value_at(o, path, schema)) != value_at(new, path, schema)
        })
        .cloned()
        .collect();
    let removed: FieldSet = old_fields.difference(&new_fields).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        if let Some(old) = old {
            copy_managed_fields(old, new);
        }
        return;
    }
    for entry in &mut entries {
        entry
            .fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    let subresource = writer.part.subresource();
    match entries
        .iter_mut()
        .find(|e| e.same_slot(writer.manager, false, subresource))
    {
        Some(entry) => entry.fields.extend(changed),
        None => entries.push(Entry {
            manager: writer.manager.to_owned(),
            apply: false,
            subresource: subresource.map(str::to_owned),
            api_version: writer.api_version.to_owned(),
            fields: changed,
        }),
    }
    set_entries(new, &entries, now);
}

fn copy_managed_fields(from: &Value, to: &mut Value) {
    let managed = from.pointer("/metadata/managedFields").cloned();
    if let Some(metadata) = to.get_mut("metadata").and_then(Value::as_object_mut) {
        match managed {
            Some(managed) => metadata.insert("managedFields".into(), managed),
            None => metadata.remove("managedFields"),
        };
    }
}

/// Server-side apply of `config` by `writer` to `live` (an empty object when creating):
/// conflicts, removal of fields the manager gave up, the merge, and the new ownership.
pub fn apply(
    live: &Value,
    config: &Value,
    writer: &Writer<'_>,
    force: bool,
    schema: &ListSchema,
    now: &str,
) -> Result<Value, ApiError> {
    let subresource = writer.part.subresource();
    let mut entries = entries_of(live);
    let applied = fields_of(config, schema, writer.part);

    // Conflicts: fields another manager owns whose value this apply would change.
    let mut conflicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in &entries {
        if entry.manager == writer.manager {
            continue;
        }
        for path in entry.fields.intersection(&applied) {
            let is_element = matches!(path.last(), Some(Step::Key(_) | Step::Value(_)));
            if !is_element && value_at(live, path, schema) != value_at(config, path, schema) {
                conflicts
                    .entry(entry.manager.clone())
                    .or_default()
                    .push(render_path(path));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let count: usize = conflicts.values().map(Vec::len).sum();
        let lines: Vec<String> = conflicts
            .iter()
            .flat_map(|(manager, paths)| {
                paths
                    .iter()
                    .map(move |p| format!("conflict with \"{manager}\": {p}"))
            })
            .collect();
        let plural = if count == 1 { "conflict" } else { "conflicts" };
        return Err(ApiError::new(
            409,
            "Conflict",
            format!("Apply failed with {count} {plural}: {}", lines.join("\n")),
        ));
    }
    // Forcing takes the conflicting fields away from their owners.
    for manager in conflicts.keys() {
        for entry in entries.iter_mut().filter(|e| &e.manager == manager) {
            entry.fields.retain(|p| {
                !applied.contains(p)
                    || value_at(live, p, schema) == value_at(config, p, schema)
                    || matches!(p.last(), Some(Step::Key(_) | Step::Value(_)))
            });
        }
    }

    // Fields this manager applied last time and gives up now go, unless someone else owns
    // them; descendants of what is removed go with it.
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.same_slot(writer.manager, true, subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !e.same_slot(writer.manager, true, subresource))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut object = live.clone();
    for path in previous.difference(&applied) {
        let kept_by_others = others.iter().any(|p| p.starts_with(path));
        let applied_below = applied.iter().any(|p| p.starts_with(path) && p != path);
        if !kept_by_others && !applied_below {
            remove_at(&mut object, path, schema);
        }
    }

    merge(&mut object, config, "", schema, writer.part, true);

    match entries
        .iter_mut()
        .find(|e| e.same_slot(writer.manager, true, subresource))
    {
        Some(entry) => {
            entry.fields = applied;
            entry.api_version = writer.api_version.to_owned();
        }
        None => entries.push(Entry {
            manager: writer.manager.to_owned(),
            apply: true,
            subresource: subresource.map(str::to_owned),
            api_version: writer.api_version.to_owned(),
            fields: applied,
        }),
    }
    // An apply that changes nothing, ownership included, leaves the object as it is (no new
    // resourceVersion, no watch event), as the API server does.
    if without_managed_fields(&object) == without_managed_fields(live)
        && entries == entries_of(live)
    {
        copy_managed_fields(live, &mut object);
    } else {
        set_entries(&mut object, &entries, now);
    }
    Ok(object)
}

fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    copy
}

fn render_path(path: &FieldPath) -> String {
    path.iter()
        .map(|step| match step {
            Step::Field(name) => format!(".{name}"),
            Step::Key(key) => format!("[{key}]"),
            Step::Value(value) => format!("[={value}]"),
        })
        .collect()
}

/// Merges an applied configuration into the object: maps field by field, list-maps by key,
/// sets by value, everything else replaced. `null` removes a field.
fn merge(
    target: &mut Value,
    config: &Value,
    pattern: &str,
    schema: &ListSchema,
    part: Part,
    top: bool,
) {
    let (Some(target_map), Some(config_map)) = (target.as_object_mut(), config.as_object()) else {
        *target = config.clone();
        return;
    };
    for (name, value) in config_map {
        if top && !part.tracks_top_level(name) && name != "metadata" {
            continue;
        }
        let child_pattern = if pattern.is_empty() {
            name.clone()
        } else {
            format!("{pattern}.{name}")
        };
        if value.is_null() {
            target_map.remove(name);
            continue;
        }
        if top && name == "metadata" {
            if part == Part::Status {
                continue;
            }
            // Only the owner's metadata is applied; name, namespace and the system fields
            // are the server's.
            let metadata = target_map.entry("metadata").or_insert_with(|| json!({}));
            if let Some(fields) = value.as_object() {
                for (field, value) in fields {
                    if !MANAGED_METADATA.contains(&field.as_str()) {
                        continue;
                    }
                    let slot = &mut metadata[field.as_str()];
                    if value.is_null() {
                        if let Some(m) = metadata.as_object_mut() {
                            m.remove(field);
                        }
                        continue;
                    }
                    if slot.is_null() {
                        *slot = empty_like(value);
                    }
                    merge(
                        slot,
                        value,
                        &format!("metadata.{field}"),
                        schema,
                        part,
                        false,
                    );
                }
            }
            continue;
        }
        let slot = target_map
            .entry(name.clone())
            .or_insert_with(|| empty_like(value));
        match value {
            Value::Object(_) if slot.is_object() => {
                merge(slot, value, &child_pattern, schema, part, false)
            }
            Value::Array(items) => merge_list(slot, items, &child_pattern, schema, part),
            _ => *slot = value.clone(),
        }
    }
}

fn empty_like(value: &Value) -> Value {
    match value {
        Value::Object(_) => json!({}),
        Value::Array(_) => json!([]),
        other => other.clone(),
    }
}

fn merge_list(slot: &mut Value, items: &[Value], pattern: &str, schema: &ListSchema, part: Part) {
    if let Some(keys) = schema.keys(pattern) {
        let keys = keys.to_vec();
        let mut list = slot.as_array().cloned().unwrap_or_default();
        for item in items {
            let key = key_of(item, &keys);
            match list
                .iter_mut()
                .find(|existing| key_of(existing, &keys) == key)
            {
                Some(existing) => merge(existing, item, pattern, schema, part, false),
                None => list.push(item.clone()),
            }
        }
        *slot = Value::Array(list);
    } else if schema.is_set(pattern) {
        let mut list = slot.as_array().cloned().unwrap_or_default();
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        *slot = Value::Array(list);
    } else {
        *slot = Value::Array(items.to_vec());
    }
}

/// Removes the field or list element at `path`, then any map or list left empty on the way.
fn remove_at(object: &mut Value, path: &[Step], schema: &ListSchema) {
    fn remove(node: &mut Value, path: &[Step], pattern: &str, schema: &ListSchema) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        match first {
            Step::Field(name) => {
                let child_pattern = if pattern.is_empty() {
                    name.clone()
                } else {
                    format!("{pattern}.{name}")
                };
                let Some(map) = node.as_object_mut() else {
                    return false;
                };
                if rest.is_empty() {
                    return map.remove(name).is_some();
                }
                let Some(child) = map.get_mut(name) else {
                    return false;
                };
                let removed = remove(child, rest, &child_pattern, schema);
                if removed && is_empty_container(child) {
                    map.remove(name);
                }
                removed
            }
            Step::Key(key) => {
                let Some(keys) = schema.keys(pattern).map(<[String]>::to_vec) else {
                    return false;
                };
                let Some(list) = node.as_array_mut() else {
                    return false;
                };
                let Some(index) = list.iter().position(|item| key_of(item, &keys) == *key) else {
                    return false;
                };
                if rest.is_empty() {
                    list.remove(index);
                    return true;
                }
                remove(&mut list[index], rest, pattern, schema)
            }
            Step::Value(value) => {
                let Some(list) = node.as_array_mut() else {
                    return false;
                };
                let before = list.len();
                list.retain(|item| {
                    serde_json::to_string(item).ok().as_deref() != Some(value.as_str())
                });
                list.len() != before
            }
        }
    }
    remove(object, path, "", schema);
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}
