//! Admission of custom resources against their CRD's structural schema, in the API server's
//! order: unknown fields are pruned, schema defaults applied, then the object is validated —
//! types and formats, `nullable`, enums, `required`, numeric bounds, string lengths and
//! patterns, item and property counts, unique list-map keys and set items — and the
//! `x-kubernetes-validations` CEL rules are evaluated with kube-cel, transition rules
//! (`oldSelf`) against the stored object. Failures are the API server's 422 Invalid, one
//! cause per field.
//!
//! Like the API server with validation ratcheting, a write is judged on the part it writes:
//! the main resource on everything but `status`, the `/status` subresource on `status`.
//! Left out: `fieldValidation=Strict` (unknown fields are always pruned, silently; the API
//! server also sends a warning), and CEL cost limits.

use regex::Regex;
use serde_json::{Map, Value, json};

use super::store::ApiError;

/// A CRD version's `openAPIV3Schema`, ready to admit objects.
#[derive(Debug)]
pub struct CrdSchema {
    root: Value,
}

impl PartialEq for CrdSchema {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Eq for CrdSchema {}

/// Which top-level fields a write is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A resource without a status subresource: everything.
    All,
    /// The main resource: everything but `status`.
    Main,
    /// The `/status` subresource: `status`.
    Status,
}

impl Part {
    fn covers(self, field: &str) -> bool {
        match self {
            Part::All => true,
            Part::Main => field != "status",
            Part::Status => field == "status",
        }
    }
}

/// One failed check: the field and what is wrong, as the API server words it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl CrdSchema {
    pub fn new(root: Value) -> Self {
        Self { root }
    }

    /// Prunes, defaults and validates `object` (the whole resource) for a write of `part`,
    /// with `old` the stored object for updates. On success the object is left pruned and
    /// defaulted.
    pub fn admit(
        &self,
        object: &mut Value,
        old: Option<&Value>,
        part: Part,
    ) -> Result<(), Vec<Cause>> {
        let properties = self.root["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let fields = object.as_object_mut().expect("objects are JSON maps");
        // Top-level fields the schema does not name are pruned, but never the type meta.
        fields.retain(|name, _| {
            matches!(name.as_str(), "apiVersion" | "kind" | "metadata")
                || properties.contains_key(name)
        });
        let mut causes = Vec::new();
        for (name, schema) in &properties {
            if matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if !part.covers(name) {
                continue;
            }
            let Some(value) = fields.get_mut(name) else {
                if let Some(default) = schema.get("default") {
                    fields.insert(name.clone(), default.clone());
                }
                continue;
            };
            prune(schema, value);
            apply_defaults(schema, value);
            validate(schema, value, name, &mut causes);
            let old_value = old.and_then(|o| o.get(name));
            cel(schema, value, old_value, name, &mut causes);
        }
        let required = self.root["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for name in required.iter().filter_map(Value::as_str) {
            if part.covers(name) && !fields.contains_key(name) {
                causes.push(required_cause(name));
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(causes)
        }
    }
}

/// The API server's answer to an invalid object.
pub fn invalid(kind: &str, group: &str, name: &str, causes: &[Cause]) -> ApiError {
    let texts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let joined = if texts.len() == 1 {
        texts[0].clone()
    } else {
        format!("[{}]", texts.join(", "))
    };
    ApiError {
        details: Some(json!({
            "name": name,
            "group": group,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({
                "reason": c.reason, "message": c.message, "field": c.field,
            })).collect::<Vec<_>>(),
        })),
        ..ApiError::new(
            422,
            "Invalid",
            format!("{kind}.{group} \"{name}\" is invalid: {joined}"),
        )
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

/// Removes what the schema does not describe.
fn prune(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(fields) => {
            if let Some(properties) = schema["properties"].as_object() {
                if !preserves_unknown(schema) {
                    fields.retain(|name, _| properties.contains_key(name));
                }
                for (name, child) in fields.iter_mut() {
                    if let Some(child_schema) = properties.get(name) {
                        prune(child_schema, child);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for child in fields.values_mut() {
                    prune(&schema["additionalProperties"], child);
                }
            } else if !preserves_unknown(schema) && schema["type"] == "object" {
                fields.clear();
            }
        }
        Value::Array(items) => {
            for item in items {
                prune(&schema["items"], item);
            }
        }
        _ => {}
    }
}

/// Fills in the schema's defaults where a field is missing (and defaults inside defaults).
fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(fields) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (name, child_schema) in properties {
                    if !fields.contains_key(name)
                        && let Some(default) = child_schema.get("default")
                    {
                        fields.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = fields.get_mut(name) {
                        apply_defaults(child_schema, child);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for child in fields.values_mut() {
                    apply_defaults(&schema["additionalProperties"], child);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                apply_defaults(&schema["items"], item);
            }
        }
        _ => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How a value is quoted in a message: strings in quotes, others as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("\"{text}\""),
        Value::Object(_) => "\"object\"".to_owned(),
        Value::Array(_) => "\"array\"".to_owned(),
        other => other.to_string(),
    }
}

fn required_cause(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field: field.to_owned(),
        message: "Required value".to_owned(),
    }
}

fn invalid_cause(field: &str, value: &Value, why: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.to_owned(),
        message: format!("Invalid value: {}: {why}", shown(value)),
    }
}

/// The OpenAPI checks, recursively.
fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        if schema["nullable"] != true {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                field: path.to_owned(),
                message: format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            });
        }
        return;
    }
    let actual = type_name(value);
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if let Some(expected) = schema["type"].as_str() {
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                field: path.to_owned(),
                message: format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
                ),
            });
            return;
        }
    } else if int_or_string && !matches!(actual, "integer" | "string") {
        causes.push(invalid_cause(
            path,
            value,
            format!("{path} in body must be of type integer-or-string"),
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(shown).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_owned(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                listed.join(", ")
            ),
        });
    }
    match value {
        Value::String(text) => validate_string(schema, value, text, path, causes),
        Value::Number(number) => validate_number(
            schema,
            value,
            number.as_f64().unwrap_or_default(),
            path,
            causes,
        ),
        Value::Array(items) => validate_array(schema, value, items, path, causes),
        Value::Object(fields) => validate_object(schema, fields, path, causes),
        _ => {}
    }
}

fn validate_string(schema: &Value, value: &Value, text: &str, path: &str, causes: &mut Vec<Cause>) {
    let length = text.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64()
        && length > max
    {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: path.to_owned(),
            message: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(min) = schema["minLength"].as_u64()
        && length < min
    {
        causes.push(invalid_cause(
            path,
            value,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        let regex = Regex::new(pattern)
            .unwrap_or_else(|e| panic!("the CRD's pattern {pattern} compiles: {e}"));
        if !regex.is_match(text) {
            causes.push(invalid_cause(
                path,
                value,
                format!("{path} in body should match '{pattern}'"),
            ));
        }
    }
    if schema["format"] == "date-time" && text.parse::<k8s_openapi::jiff::Timestamp>().is_err() {
        causes.push(invalid_cause(
            path,
            value,
            format!("{path} in body must be of type date-time: {}", shown(value)),
        ));
    }
}

fn validate_number(
    schema: &Value,
    value: &Value,
    number: f64,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    if let Some(min) = schema["minimum"].as_f64() {
        let exclusive = schema["exclusiveMinimum"] == true;
        if number < min || (exclusive && number == min) {
            let relation = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            causes.push(invalid_cause(
                path,
                value,
                format!("{path} in body should be {relation} {}", schema["minimum"]),
            ));
        }
    }
    if let Some(max) = schema["maximum"].as_f64() {
        let exclusive = schema["exclusiveMaximum"] == true;
        if number > max || (exclusive && number == max) {
            let relation = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            causes.push(invalid_cause(
                path,
                value,
                format!("{path} in body should be {relation} {}", schema["maximum"]),
            ));
        }
    }
    let range = match schema["format"].as_str() {
        Some("int32") => Some((i32::MIN as f64, i32::MAX as f64)),
        Some("uint8") => Some((0.0, 255.0)),
        Some("uint16") => Some((0.0, 65535.0)),
        Some("uint32") => Some((0.0, u32::MAX as f64)),
        _ => None,
    };
    if let Some((low, high)) = range
        && (number < low || number > high)
    {
        causes.push(invalid_cause(
            path,
            value,
            format!(
                "{path} in body must be of type {}",
                schema["format"].as_str().unwrap_or_default()
            ),
        ));
    }
}

fn validate_array(
    schema: &Value,
    value: &Value,
    items: &[Value],
    path: &str,
    causes: &mut Vec<Cause>,
) {
    let count = items.len() as u64;
    if let Some(max) = schema["maxItems"].as_u64()
        && count > max
    {
        causes.push(Cause {
            reason: "FieldValueTooMany",
            field: path.to_owned(),
            message: format!("Too many: {count}: must have at most {max} items"),
        });
    }
    if let Some(min) = schema["minItems"].as_u64()
        && count < min
    {
        causes.push(invalid_cause(
            path,
            value,
            format!("{path} in body should have at least {min} items"),
        ));
    }
    for (index, item) in items.iter().enumerate() {
        validate(&schema["items"], item, &format!("{path}[{index}]"), causes);
    }
    let keys: Option<Vec<&str>> = match schema["x-kubernetes-list-type"].as_str() {
        Some("map") => Some(
            schema["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
        ),
        Some("set") => Some(Vec::new()),
        _ => None,
    };
    if let Some(keys) = keys {
        let identity = |item: &Value| -> Value {
            if keys.is_empty() {
                item.clone()
            } else {
                Value::Object(
                    keys.iter()
                        .map(|k| (k.to_string(), item[*k].clone()))
                        .collect(),
                )
            }
        };
        for (index, item) in items.iter().enumerate() {
            let id = identity(item);
            if items[..index].iter().any(|earlier| identity(earlier) == id) {
                causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    field: format!("{path}[{index}]"),
                    message: format!("Duplicate value: {id}"),
                });
            }
        }
    }
}

fn validate_object(
    schema: &Value,
    fields: &Map<String, Value>,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !fields.contains_key(name) {
            causes.push(required_cause(&format!("{path}.{name}")));
        }
    }
    let count = fields.len() as u64;
    if let Some(max) = schema["maxProperties"].as_u64()
        && count > max
    {
        causes.push(Cause {
            reason: "FieldValueTooMany",
            field: path.to_owned(),
            message: format!("Too many: {count}: must have at most {max} items"),
        });
    }
    if let Some(min) = schema["minProperties"].as_u64()
        && count < min
    {
        causes.push(invalid_cause(
            path,
            &Value::Object(fields.clone()),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    let properties = schema["properties"].as_object();
    for (name, child) in fields {
        let child_path = format!("{path}.{name}");
        match properties.and_then(|p| p.get(name)) {
            Some(child_schema) => validate(child_schema, child, &child_path, causes),
            None if schema["additionalProperties"].is_object() => {
                validate(&schema["additionalProperties"], child, &child_path, causes);
            }
            None => {}
        }
    }
}

/// The CEL rules under `schema`, evaluated on `value` (with `old` for transition rules).
fn cel(schema: &Value, value: &Value, old: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Err(errors) = kube_cel::validate(schema, value, old) else {
        return;
    };
    for error in errors.into_vec() {
        let relative = error.field_path.trim_start_matches('.');
        let field = if relative.is_empty() {
            path.to_owned()
        } else {
            format!("{path}.{relative}")
        };
        let at = lookup(value, relative).unwrap_or(value);
        causes.push(invalid_cause(&field, at, error.message.clone()));
    }
}

/// The value at a dotted path with `[i]` indices, relative to `value`.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indices) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        for index in indices.split(['[', ']']).filter(|i| !i.is_empty()) {
            current = current.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}
