//! Checks a manifest against the CRD's structural OpenAPI schema, the way an API server with
//! strict field validation does: types, required fields, enums, bounds, patterns, and — unlike a
//! pruning server — every unknown field is an error at its own path.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use super::Problem;

/// Appends a problem for every way `value` breaks `schema`; `path` is where `value` sits.
pub fn check(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    if value.is_null() {
        if !flag(schema, "nullable") {
            problems.push(Problem::new(path, "must not be null"));
        }
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => check_object(schema, value, path, problems),
        Some("array") => check_array(schema, value, path, problems),
        Some("string") => check_string(schema, value, path, problems),
        Some("integer") => check_integer(schema, value, path, problems),
        Some("number") => check_number(schema, value, path, problems),
        Some("boolean") if !value.is_boolean() => problems.push(Problem::new(
            path,
            format!("must be true or false, not {}", describe(value)),
        )),
        _ => {}
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn child(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn check_object(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let Some(object) = value.as_object() else {
        problems.push(Problem::new(
            path,
            format!("must be an object, not {}", describe(value)),
        ));
        return;
    };
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let additional = schema.get("additionalProperties");
    let preserve_unknown = flag(schema, "x-kubernetes-preserve-unknown-fields");
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                problems.push(Problem::new(
                    &child(path, name),
                    "required field is missing",
                ));
            }
        }
    }
    for (key, item) in object {
        // A key can be megabytes long; the path shows a readable head of it.
        let item_path = if key.chars().count() > 64 {
            child(
                path,
                &format!("{}…", key.chars().take(64).collect::<String>()),
            )
        } else {
            child(path, key)
        };
        if let Some(item_schema) = properties.get(key) {
            check(item_schema, item, &item_path, problems);
        } else if let Some(item_schema) = additional.filter(|a| a.is_object()) {
            check(item_schema, item, &item_path, problems);
        } else if !(preserve_unknown || additional == Some(&Value::Bool(true))) {
            problems.push(Problem::new(&item_path, unknown_field(key, properties)));
        }
    }
}

fn unknown_field(key: &str, properties: &Map<String, Value>) -> String {
    let closest = properties
        .keys()
        .map(|known| (strsim::damerau_levenshtein(key, known), known))
        .filter(|(distance, known)| *distance <= 2.max(known.len() / 4))
        .min();
    let known: Vec<&str> = properties.keys().map(String::as_str).collect();
    match closest {
        Some((_, name)) => format!("unknown field; did you mean {name:?}?"),
        None if known.is_empty() => "unknown field: this object takes no fields".to_owned(),
        None => format!("unknown field; known fields: {}", known.join(", ")),
    }
}

fn check_array(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let Some(items) = value.as_array() else {
        problems.push(Problem::new(
            path,
            format!("must be a list, not {}", describe(value)),
        ));
        return;
    };
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        problems.push(Problem::new(
            path,
            format!("must have at least {min} item(s), has {}", items.len()),
        ));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        problems.push(Problem::new(
            path,
            format!("must have at most {max} items, has {}", items.len()),
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (index, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{index}]"), problems);
        }
    }
}

fn check_string(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let Some(text) = value.as_str() else {
        let hint = if value.is_number() || value.is_boolean() {
            " (quote it)"
        } else {
            ""
        };
        problems.push(Problem::new(
            path,
            format!("must be a string, not {}{hint}", describe(value)),
        ));
        return;
    };
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        if !choices.iter().any(|c| c.as_str() == Some(text)) {
            let names: Vec<&str> = choices.iter().filter_map(Value::as_str).collect();
            problems.push(Problem::new(
                path,
                format!("{text:?} is not one of: {}", names.join(", ")),
            ));
        }
        return;
    }
    let chars = text.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        let reason = if min == 1 {
            "must not be empty".to_owned()
        } else {
            format!("must be at least {min} characters long")
        };
        problems.push(Problem::new(path, reason));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        problems.push(Problem::new(
            path,
            format!("must be at most {max} characters long, is {chars}"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Ok(re) if !re.is_match(text) => {
                problems.push(Problem::new(path, pattern_reason(pattern, text)))
            }
            Ok(_) => {}
            Err(e) => problems.push(Problem::new(
                path,
                format!("schema pattern does not compile: {e}"),
            )),
        }
    }
}

/// The schema's pattern, compiled once: the CRD has a few, and compiling one took longer than
/// the rest of checking a field.
fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static PATTERNS: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let mut patterns = PATTERNS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(regex) = patterns.get(pattern) {
        return Ok(regex.clone());
    }
    let regex = Regex::new(pattern)?;
    patterns.insert(pattern.to_owned(), regex.clone());
    Ok(regex)
}

/// Says in words what the few patterns of the CRD mean, instead of showing a regex.
fn pattern_reason(pattern: &str, text: &str) -> String {
    if pattern == super::super::duration::DURATION_PATTERN {
        return format!(
            "{text:?} is not a duration: expected a number and a unit among ms, s, m, h (like 150ms, 1.5s, 10m)"
        );
    }
    if pattern.contains("kbit") {
        return format!(
            "{text:?} is not a rate: expected a number and a unit among bit, kbit, mbit, gbit (like 10mbit)"
        );
    }
    if pattern == "^/" || pattern == "^(/.*)?$" {
        return format!("{text:?} must start with /");
    }
    if pattern.starts_with("^[a-z0-9]") {
        return format!(
            "{text:?} must be lower-case letters, digits and '-', starting and ending with a letter or digit"
        );
    }
    format!("{text:?} does not match the pattern {pattern}")
}

fn check_integer(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let whole = value
        .as_i64()
        .map(|v| v as f64)
        .or_else(|| value.as_u64().map(|v| v as f64));
    let Some(number) = whole else {
        let reason = match value.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() >= 9.2e18 => {
                format!("{value} is out of range for a 64-bit integer")
            }
            Some(f) if f.fract() == 0.0 => {
                format!(
                    "must be an integer: write {} without a decimal point",
                    f as i64
                )
            }
            Some(_) => format!("must be a whole number, not {value}"),
            None => format!("must be an integer, not {}", describe(value)),
        };
        problems.push(Problem::new(path, reason));
        return;
    };
    check_bounds(schema, number, value, path, problems);
}

fn check_number(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    match value.as_f64() {
        Some(number) => check_bounds(schema, number, value, path, problems),
        None => problems.push(Problem::new(
            path,
            format!("must be a number, not {}", describe(value)),
        )),
    }
}

fn check_bounds(
    schema: &Value,
    number: f64,
    value: &Value,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && number < min
    {
        problems.push(Problem::new(
            path,
            format!("must be at least {}, not {value}", trim(min)),
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && number > max
    {
        problems.push(Problem::new(
            path,
            format!("must be at most {}, not {value}", trim(max)),
        ));
    }
}

fn trim(bound: f64) -> String {
    if bound.fract() == 0.0 && bound.abs() < 1e15 {
        format!("{}", bound as i64)
    } else {
        bound.to_string()
    }
}

/// A short description of a JSON value for messages, e.g. `a list` or `the number 3`.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a string".into(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}
