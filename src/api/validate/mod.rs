//! Offline validation of `Chaos` manifests: YAML, then the CRD's structural schema, then the
//! semantic rules, then the CRD's CEL rules through kube's local evaluator — the same checks an
//! API server and the controller make, each problem with its field path.

pub mod schedule;
mod schema;
pub mod semantic;

use std::fmt;
use std::sync::OnceLock;

use kube::core::cel::{CompiledSchema, compile_schema, validate_compiled};

use serde::Deserialize;
use serde_json::Value;

use crate::api::{API_VERSION, Chaos, ChaosSchedule, GROUP};

/// User text quoted for a message, cut to a readable length: a manifest may hold megabytes.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}… ({} characters)", text.chars().count())
    }
}

/// One thing wrong with a document: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path such as `spec.faults[2].latency.delay`; for YAML syntax errors, the line.
    pub path: String,
    /// What was expected, in words.
    pub reason: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: &str, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// The outcome for one YAML document of a file.
#[derive(Debug)]
pub struct DocumentReport {
    /// 0-based index of the document in its file.
    pub index: usize,
    /// Everything wrong with it; empty when valid.
    pub problems: Vec<Problem>,
    /// The parsed Chaos, when it is one and valid.
    pub chaos: Option<Box<Chaos>>,
    /// The parsed ChaosSchedule, when it is one and valid.
    pub schedule: Option<Box<ChaosSchedule>>,
}

impl DocumentReport {
    fn invalid(index: usize, problems: Vec<Problem>) -> Self {
        Self {
            index,
            problems,
            chaos: None,
            schedule: None,
        }
    }
}

/// Validates every document of a multi-document YAML file given as raw bytes.
pub fn validate_bytes(bytes: &[u8]) -> Vec<DocumentReport> {
    match std::str::from_utf8(bytes) {
        Ok(text) => validate_text(text),
        Err(e) => vec![DocumentReport::invalid(
            0,
            vec![Problem::new(
                "(file)",
                format!(
                    "is not UTF-8 text (invalid byte at offset {}); a manifest must be YAML",
                    e.valid_up_to()
                ),
            )],
        )],
    }
}

/// Validates every document of a multi-document YAML text. Empty documents (a trailing `---`)
/// are skipped, as kubectl does; a text without any document is one problem.
pub fn validate_text(text: &str) -> Vec<DocumentReport> {
    let mut reports = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = match serde_yaml::Value::deserialize(document) {
            Ok(value) => value,
            Err(e) => {
                reports.push(DocumentReport::invalid(index, vec![yaml_problem(&e)]));
                // After a syntax error the parser cannot find the next document reliably.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        reports.push(validate_value(index, value));
    }
    if reports.is_empty() {
        reports.push(DocumentReport::invalid(
            0,
            vec![Problem::new(
                "(file)",
                "holds no YAML document; expected a Chaos manifest",
            )],
        ));
    }
    reports
}

fn yaml_problem(e: &serde_yaml::Error) -> Problem {
    let message = e.to_string();
    // An integer beyond 64 bits arrives as "spec.seed: invalid type: …";
    // the path in front is the field's.
    if let Some((path, reason)) = message.split_once(": ") {
        let looks_like_path = !path.is_empty()
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._[]".contains(c));
        if looks_like_path && (reason.contains("u128") || reason.contains("i128")) {
            return Problem::new(path, "is out of range for a 64-bit integer");
        }
    }
    match e.location() {
        Some(at) => {
            // serde_yaml appends the location to its message; say it once, in front.
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            Problem::new(
                &format!("line {} column {}", at.line(), at.column()),
                format!("invalid YAML: {message}"),
            )
        }
        None => Problem::new("(document)", format!("invalid YAML: {message}")),
    }
}

/// Turns YAML into JSON, refusing what JSON (and so the API server) cannot hold.
fn to_json(value: serde_yaml::Value, path: &str, problems: &mut Vec<Problem>) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    None => {
                        problems.push(Problem::new(path, format!("{n} is not a finite number")));
                        Value::Null
                    }
                }
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]"), problems))
                .collect(),
        ),
        Y::Mapping(map) => {
            let mut object = serde_json::Map::new();
            for (key, item) in map {
                let key = match key {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    other => {
                        let key = serde_yaml::to_string(&other).unwrap_or_default();
                        problems.push(Problem::new(
                            path,
                            format!("has a key that is not a string: {}", shown(key.trim())),
                        ));
                        continue;
                    }
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let item = to_json(item, &child, problems);
                object.insert(key, item);
            }
            Value::Object(object)
        }
        Y::Tagged(tagged) => {
            problems.push(Problem::new(
                path,
                format!(
                    "uses the YAML tag {}, which Kubernetes manifests cannot hold",
                    tagged.tag
                ),
            ));
            Value::Null
        }
    }
}

/// The kinds `schism validate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chaos,
    Schedule,
}

fn openapi_schema<K: kube::CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the derived CRD has a schema");
    serde_json::to_value(schema).expect("a schema serializes to JSON")
}

/// The Chaos CRD's `openAPIV3Schema` as JSON, built once.
fn chaos_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(openapi_schema::<Chaos>)
}

/// The ChaosSchedule CRD's `openAPIV3Schema` as JSON, built once.
fn schedule_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(openapi_schema::<ChaosSchedule>)
}

impl Kind {
    fn schema(self) -> &'static Value {
        match self {
            Kind::Chaos => chaos_schema(),
            Kind::Schedule => schedule_schema(),
        }
    }
}

fn validate_value(index: usize, yaml: serde_yaml::Value) -> DocumentReport {
    let mut problems = Vec::new();
    let json = to_json(yaml, "", &mut problems);
    for problem in &mut problems {
        if problem.path.is_empty() {
            problem.path = "(document)".into();
        }
    }
    if !problems.is_empty() {
        return DocumentReport::invalid(index, problems);
    }
    let Some(object) = json.as_object() else {
        return DocumentReport::invalid(
            index,
            vec![Problem::new(
                "(document)",
                format!(
                    "must be a mapping with apiVersion, kind, metadata and spec, not {}",
                    schema::describe(&json)
                ),
            )],
        );
    };
    let kind = check_identity(object, &mut problems);
    let Some(kind) = kind.filter(|_| problems.is_empty()) else {
        return DocumentReport::invalid(index, problems);
    };
    // metadata is an open object in every CRD schema; its fields are the API server's business,
    // so only name and namespace are checked here.
    // The CRD schema describes spec and status; apiVersion, kind and metadata belong to every
    // object and were checked above.
    let mut for_schema = json.clone();
    if let Some(object) = for_schema.as_object_mut() {
        if let Some(meta) = object.get("metadata") {
            check_metadata(meta, &mut problems);
        }
        for field in ["apiVersion", "kind", "metadata"] {
            object.remove(field);
        }
    }
    schema::check(kind.schema(), &for_schema, "", &mut problems);
    if kind == Kind::Schedule {
        return validate_schedule(index, &json, problems);
    }
    let schema_clean = problems.is_empty();
    let chaos: Chaos = match serde_path_to_error::deserialize(&json) {
        Ok(chaos) => chaos,
        // The schema already explained why the typed form cannot be built.
        Err(_) if !schema_clean => return DocumentReport::invalid(index, problems),
        Err(e) => {
            let path = e.path().to_string();
            return DocumentReport::invalid(
                index,
                vec![Problem::new(&path, e.into_inner().to_string())],
            );
        }
    };
    // Semantic rules run even after schema problems when the spec could be read, so one pass
    // reports everything; a field both layers object to is reported once.
    for problem in semantic::check_spec(&chaos.spec) {
        if !problems.iter().any(|p| p.path == problem.path) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        // Every CEL rule is mirrored by a semantic rule with a sharper path, so CEL speaks only
        // when the two disagree — which would itself be worth knowing.
        problems.extend(cel_problems(&json));
    }
    if problems.is_empty() {
        DocumentReport {
            index,
            problems,
            chaos: Some(Box::new(chaos)),
            schedule: None,
        }
    } else {
        DocumentReport::invalid(index, problems)
    }
}

/// The typed and CEL layers for a ChaosSchedule, after its schema check found `problems`.
fn validate_schedule(index: usize, json: &Value, mut problems: Vec<Problem>) -> DocumentReport {
    let schema_clean = problems.is_empty();
    let schedule: ChaosSchedule = match serde_path_to_error::deserialize(json) {
        Ok(schedule) => schedule,
        Err(_) if !schema_clean => return DocumentReport::invalid(index, problems),
        Err(e) => {
            let path = e.path().to_string();
            return DocumentReport::invalid(
                index,
                vec![Problem::new(&path, e.into_inner().to_string())],
            );
        }
    };
    let name = schedule.metadata.name.as_deref();
    for problem in schedule::check_schedule(&schedule.spec, name) {
        if !problems.iter().any(|p| p.path == problem.path) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        problems.extend(cel_problems_of(schedule_rules(), json));
    }
    if problems.is_empty() {
        DocumentReport {
            index,
            problems,
            chaos: None,
            schedule: Some(Box::new(schedule)),
        }
    } else {
        DocumentReport::invalid(index, problems)
    }
}

/// Evaluates the CRD's CEL rules on the object as an API server would.
pub fn cel_problems(object: &Value) -> Vec<Problem> {
    cel_problems_of(chaos_rules(), object)
}

/// The Chaos CRD's CEL rules, compiled once: compiling them took most of the time of
/// validating a manifest.
fn chaos_rules() -> &'static CompiledSchema {
    static RULES: OnceLock<CompiledSchema> = OnceLock::new();
    RULES.get_or_init(|| compile_schema(chaos_schema()))
}

/// The ChaosSchedule CRD's CEL rules, compiled once.
fn schedule_rules() -> &'static CompiledSchema {
    static RULES: OnceLock<CompiledSchema> = OnceLock::new();
    RULES.get_or_init(|| compile_schema(schedule_schema()))
}

fn cel_problems_of(rules: &CompiledSchema, object: &Value) -> Vec<Problem> {
    match validate_compiled(rules, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                Problem::new(
                    if e.field_path.is_empty() {
                        "(document)"
                    } else {
                        &e.field_path
                    },
                    e.message,
                )
            })
            .collect(),
    }
}

fn check_identity(
    object: &serde_json::Map<String, Value>,
    problems: &mut Vec<Problem>,
) -> Option<Kind> {
    match object.get("apiVersion") {
        None => problems.push(Problem::new(
            "apiVersion",
            format!("required field is missing; expected {API_VERSION}"),
        )),
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(Value::String(v)) if v.starts_with(&format!("{GROUP}/")) => {
            problems.push(Problem::new(
                "apiVersion",
                format!("{v:?} is not a served version; expected {API_VERSION}"),
            ))
        }
        Some(other) => problems.push(Problem::new(
            "apiVersion",
            format!("{other} is not {API_VERSION}; this tool validates Chaos resources"),
        )),
    }
    let kind = match object.get("kind") {
        None => {
            problems.push(Problem::new(
                "kind",
                "required field is missing; expected Chaos or ChaosSchedule",
            ));
            None
        }
        Some(Value::String(k)) if k == "Chaos" => Some(Kind::Chaos),
        Some(Value::String(k)) if k == "ChaosSchedule" => Some(Kind::Schedule),
        Some(other) => {
            problems.push(Problem::new(
                "kind",
                format!("{other} is not Chaos or ChaosSchedule"),
            ));
            None
        }
    };
    if !object.contains_key("metadata") {
        problems.push(Problem::new(
            "metadata",
            "required field is missing; give at least metadata.name",
        ));
    }
    if !object.contains_key("spec") {
        problems.push(Problem::new("spec", "required field is missing"));
    }
    kind
}

fn check_metadata(meta: &Value, problems: &mut Vec<Problem>) {
    let Some(meta) = meta.as_object() else {
        problems.push(Problem::new("metadata", "must be an object"));
        return;
    };
    for field in ["name", "namespace"] {
        match meta.get(field) {
            None if field == "name" && !meta.contains_key("generateName") => {
                problems.push(Problem::new("metadata.name", "required field is missing"));
            }
            None => {}
            Some(Value::String(name))
                if semantic::is_dns_subdomain(name)
                    && (field == "name" || name.len() <= 63 && !name.contains('.')) => {}
            Some(Value::String(name)) => problems.push(Problem::new(
                &format!("metadata.{field}"),
                format!("{name:?} is not a valid {field}: lower-case letters, digits and '-'"),
            )),
            Some(other) => problems.push(Problem::new(
                &format!("metadata.{field}"),
                format!("must be a string, not {}", schema::describe(other)),
            )),
        }
    }
}
