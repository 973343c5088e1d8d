//! Label and field selectors, as the API server parses them from `labelSelector` and
//! `fieldSelector` query parameters.

use serde_json::Value;

/// One requirement of a label selector (`app=web`, `tier in (a,b)`, `!legacy`, …).
#[derive(Debug, Clone, PartialEq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelRequirement {
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value_of = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        match self {
            Self::Equals(key, want) => value_of(key) == Some(want.as_str()),
            // As in Kubernetes, `!=` and `notin` also select objects that lack the label.
            Self::NotEquals(key, unwanted) => value_of(key) != Some(unwanted.as_str()),
            Self::In(key, set) => value_of(key).is_some_and(|v| set.iter().any(|s| s == v)),
            Self::NotIn(key, set) => !value_of(key).is_some_and(|v| set.iter().any(|s| s == v)),
            Self::Exists(key) => value_of(key).is_some(),
            Self::DoesNotExist(key) => value_of(key).is_none(),
        }
    }
}

/// A parsed `labelSelector`: all requirements must hold. The empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses the Kubernetes label selector syntax: equality-based (`=`, `==`, `!=`) and
    /// set-based (`in`, `notin`, `key`, `!key`) requirements separated by commas.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for clause in split_outside_parentheses(text) {
            let clause = clause.trim();
            if clause.is_empty() {
                continue;
            }
            requirements.push(parse_label_requirement(clause)?);
        }
        Ok(Self { requirements })
    }

    /// True when the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

fn parse_label_requirement(clause: &str) -> Result<LabelRequirement, String> {
    if let Some(key) = clause.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(checked_key(key, clause)?));
    }
    if let Some((key, value)) = clause.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(
            checked_key(key, clause)?,
            value.trim().to_string(),
        ));
    }
    if let Some((key, value)) = clause.split_once("==").or_else(|| clause.split_once('=')) {
        return Ok(LabelRequirement::Equals(
            checked_key(key, clause)?,
            value.trim().to_string(),
        ));
    }
    if let Some(open) = clause.find('(') {
        let head = clause[..open].trim();
        let body = clause[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("unable to parse requirement `{clause}`: missing `)`"))?;
        let values: Vec<String> = body
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let (key, operator) = head
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| format!("unable to parse requirement `{clause}`"))?;
        let key = checked_key(key, clause)?;
        return match operator {
            "in" => Ok(LabelRequirement::In(key, values)),
            "notin" => Ok(LabelRequirement::NotIn(key, values)),
            other => Err(format!(
                "unknown operator `{other}` in requirement `{clause}`"
            )),
        };
    }
    Ok(LabelRequirement::Exists(checked_key(clause, clause)?))
}

fn checked_key(key: &str, clause: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("invalid label key in requirement `{clause}`"));
    }
    Ok(key.to_string())
}

/// Splits on commas that are not inside `( … )`, so `a in (x,y),b=c` yields two clauses.
fn split_outside_parentheses(text: &str) -> Vec<&str> {
    let mut clauses = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                clauses.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    clauses.push(&text[start..]);
    clauses
}

/// A parsed `fieldSelector`: `path=value`, `path==value` or `path!=value` terms.
///
/// The real API server only accepts a few fields per kind (`metadata.name`,
/// `metadata.namespace`, `spec.nodeName` and `status.phase` for pods, …); this double accepts
/// any dotted path, which is a superset. A missing field compares as the empty string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses comma-separated `path=value` / `path!=value` terms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, equal, value) = if let Some((path, value)) = term.split_once("!=") {
                (path, false, value)
            } else if let Some((path, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                (path, true, value)
            } else {
                return Err(format!(
                    "invalid field selector term `{term}`: expected `field=value`"
                ));
            };
            terms.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    /// True when every term holds for the object.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(path, equal, want)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            };
            (actual == *want) == *equal
        })
    }
}
