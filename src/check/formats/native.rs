//! Schism's native JSON Lines (see docs/history-format.md).
//!
//! An optional header line `{"version":1,"model":"cas-register"}`, then one JSON object per
//! line: either a completed operation (has `"invoke"`) or an event (has `"time"` and a `"type"`
//! of `invoke`, `ok`, `fail` or `info`), paired by process as in Jepsen.

use serde_json::{Map, Value as Json};

use super::{Completion, Pairer, ReadError};
use crate::check::history::{Call, History, Operation, Outcome, TimeUnit, Value};
use crate::check::models::ModelKind;

/// The newest version of the format this reader understands.
const VERSION: u64 = 1;

fn value(line: usize, j: &Json, what: &str) -> Result<Value, ReadError> {
    match j {
        Json::Null => Ok(Value::Nil),
        Json::String(s) => Ok(Value::Str(s.clone())),
        Json::Number(n) => n.as_i64().map(Value::Int).ok_or_else(|| {
            ReadError::at(
                line,
                format!("{what} {n} is not an integer that fits in 64 bits"),
            )
        }),
        other => Err(ReadError::at(
            line,
            format!("{what} must be null, an integer or a string, found {other}"),
        )),
    }
}

fn time(line: usize, obj: &Map<String, Json>, field: &str) -> Result<Option<u64>, ReadError> {
    match obj.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            ReadError::at(
                line,
                format!("\"{field}\" must be a non-negative integer of nanoseconds, found {n}"),
            )
        }),
        Some(other) => Err(ReadError::at(
            line,
            format!("\"{field}\" must be a non-negative integer of nanoseconds, found {other}"),
        )),
    }
}

/// The call as invoked: arguments known, results unknown.
fn invocation(line: usize, f: &str, obj: &Map<String, Json>) -> Result<Call, ReadError> {
    let arg = |what: &str| -> Result<Value, ReadError> {
        match obj.get("value") {
            Some(v) => value(line, v, what),
            None => Err(ReadError::at(line, format!("a {f} needs a \"value\""))),
        }
    };
    Ok(match f {
        "read" => Call::Read { value: None },
        "get" => Call::Get { value: None },
        "write" => Call::Write {
            value: arg("value")?,
        },
        "put" => Call::Put {
            value: arg("value")?,
        },
        "append" => Call::Append {
            value: arg("value")?,
        },
        "cas" => match obj.get("value") {
            Some(Json::Array(a)) if a.len() == 2 => Call::Cas {
                from: value(line, &a[0], "cas from")?,
                to: value(line, &a[1], "cas to")?,
                swapped: None,
            },
            _ => {
                return Err(ReadError::at(line, "a cas needs \"value\": [from, to]"));
            }
        },
        other => {
            return Err(ReadError::at(
                line,
                format!(
                    "unknown function {other:?}: expected read, write, cas, get, put or append"
                ),
            ));
        }
    })
}

/// What a completed operation returned.
fn completion(
    line: usize,
    f: &str,
    outcome: Outcome,
    obj: &Map<String, Json>,
) -> Result<Completion, ReadError> {
    if outcome != Outcome::Ok {
        return Ok(Completion::Nothing);
    }
    match f {
        "read" | "get" => match obj.get("value") {
            Some(v) => Ok(Completion::Read(value(line, v, "value")?)),
            None => Err(ReadError::at(
                line,
                format!("an ok {f} needs the \"value\" it read (null for absent)"),
            )),
        },
        "cas" => match obj.get("swapped") {
            Some(Json::Bool(b)) => Ok(Completion::Swapped(*b)),
            _ => Err(ReadError::at(
                line,
                "an ok cas needs \"swapped\": true or false",
            )),
        },
        _ => Ok(Completion::Nothing),
    }
}

pub(super) fn read(text: &str) -> Result<History, ReadError> {
    let mut pairer = Pairer::default();
    let mut model = None;
    let mut seen_op = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let obj = match serde_json::from_str::<Json>(raw) {
            Ok(Json::Object(o)) => o,
            Ok(_) => return Err(ReadError::at(line, "expected a JSON object")),
            Err(e) => return Err(ReadError::at(line, format!("invalid JSON: {e}"))),
        };
        let Some(f) = obj.get("f") else {
            if seen_op {
                return Err(ReadError::at(
                    line,
                    "a header (an object without \"f\") may only be the first line",
                ));
            }
            if let Some(v) = obj.get("version")
                && v.as_u64().is_none_or(|v| v > VERSION)
            {
                return Err(ReadError::at(
                    line,
                    format!("unsupported format version {v}: this reader knows {VERSION}"),
                ));
            }
            if let Some(m) = obj.get("model") {
                let name = m
                    .as_str()
                    .ok_or_else(|| ReadError::at(line, "\"model\" must be a string"))?;
                model = Some(
                    name.parse::<ModelKind>()
                        .map_err(|e| ReadError::at(line, e))?,
                );
            }
            seen_op = true;
            continue;
        };
        seen_op = true;
        let f = f
            .as_str()
            .ok_or_else(|| ReadError::at(line, "\"f\" must be a string"))?;
        let process = match obj.get("process") {
            Some(Json::Number(n)) => n.as_u64().ok_or_else(|| {
                ReadError::at(
                    line,
                    format!("\"process\" must be a non-negative integer, found {n}"),
                )
            })?,
            _ => {
                return Err(ReadError::at(
                    line,
                    "\"process\" (a non-negative integer) is required",
                ));
            }
        };
        let key = match obj.get("key") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(ReadError::at(
                    line,
                    format!("\"key\" must be a string or an integer, found {other}"),
                ));
            }
        };
        let kind = obj.get("type").and_then(Json::as_str).ok_or_else(|| {
            ReadError::at(line, "\"type\" (ok, fail, info or invoke) is required")
        })?;
        let outcome = match kind {
            "ok" => Some(Outcome::Ok),
            "fail" => Some(Outcome::Fail),
            "info" => Some(Outcome::Info),
            "invoke" => None,
            other => {
                return Err(ReadError::at(
                    line,
                    format!("unknown type {other:?}: expected ok, fail, info or invoke"),
                ));
            }
        };

        if obj.contains_key("invoke") {
            // A completed operation on one line.
            let Some(outcome) = outcome else {
                return Err(ReadError::at(
                    line,
                    "a line with \"invoke\" is a completed operation: its type is ok, fail or info",
                ));
            };
            let invoke = time(line, &obj, "invoke")?
                .ok_or_else(|| ReadError::at(line, "\"invoke\" must be a time in nanoseconds"))?;
            let complete = time(line, &obj, "complete")?;
            let complete = match (outcome, complete) {
                (Outcome::Info, _) => None,
                (_, Some(c)) if c >= invoke => Some(c),
                (_, Some(c)) => {
                    return Err(ReadError::at(
                        line,
                        format!("completes at {c}, before its invocation at {invoke}"),
                    ));
                }
                (_, None) => {
                    return Err(ReadError::at(
                        line,
                        format!("an operation of type {kind} needs a \"complete\" time"),
                    ));
                }
            };
            let mut call = invocation(line, f, &obj)?;
            match (&mut call, completion(line, f, outcome, &obj)?) {
                (Call::Read { value } | Call::Get { value }, Completion::Read(v)) => {
                    *value = Some(v)
                }
                (Call::Cas { swapped, .. }, Completion::Swapped(s)) => *swapped = Some(s),
                _ => {}
            }
            pairer.push(Operation {
                process,
                key,
                call,
                outcome,
                invoke,
                complete,
                line,
            });
        } else {
            let t = time(line, &obj, "time")?.ok_or_else(|| {
                ReadError::at(
                    line,
                    "each line needs \"invoke\" (a completed operation) or \"time\" (an event)",
                )
            })?;
            match outcome {
                None => pairer.invoke(
                    line,
                    Operation {
                        process,
                        key,
                        call: invocation(line, f, &obj)?,
                        outcome: Outcome::Info,
                        invoke: t,
                        complete: None,
                        line,
                    },
                )?,
                Some(outcome) => {
                    let result = completion(line, f, outcome, &obj)?;
                    pairer.complete(line, process, f, outcome, t, result)?;
                }
            }
        }
    }
    Ok(History {
        ops: pairer.finish(),
        model,
        time_unit: TimeUnit::Nanoseconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_completed_operations_and_events() {
        let text = r#"{"version":1,"model":"cas-register"}
{"process":0,"type":"ok","f":"cas","key":"k","value":[1,2],"swapped":false,"invoke":5,"complete":9}
{"process":1,"type":"invoke","f":"read","key":"k","time":6}
{"process":1,"type":"ok","f":"read","key":"k","value":null,"time":8}
{"process":2,"type":"info","f":"write","key":"k","value":3,"invoke":7,"complete":null}
"#;
        let h = read(text).expect("valid");
        assert_eq!(h.model, Some(ModelKind::CasRegister));
        assert_eq!(h.ops.len(), 3);
        assert_eq!(
            h.ops[0].call,
            Call::Cas {
                from: Value::Int(1),
                to: Value::Int(2),
                swapped: Some(false)
            }
        );
        assert_eq!(
            h.ops[1].call,
            Call::Read {
                value: Some(Value::Nil)
            }
        );
        assert_eq!((h.ops[1].invoke, h.ops[1].complete), (6, Some(8)));
        assert_eq!(h.ops[2].outcome, Outcome::Info);
    }

    #[test]
    fn rejects_huge_numbers_and_unknown_functions_with_the_line() {
        let big = r#"{"process":0,"type":"ok","f":"write","value":123456789012345678901234567890,"invoke":1,"complete":2}"#;
        assert_eq!(read(big).unwrap_err().line(), Some(1));
        let text = "{\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":1,\"invoke\":1,\"complete\":2}\n{\"process\":0,\"type\":\"ok\",\"f\":\"frob\",\"invoke\":1,\"complete\":2}";
        let err = read(text).unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(err.to_string().contains("frob"), "{err}");
    }
}
