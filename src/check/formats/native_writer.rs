//! Writes a history in Schism's native JSON Lines, the format `schism check` reads back.

use serde_json::{Value as Json, json};

use crate::check::history::{Call, History, Value};

fn value(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Int(i) => json!(i),
        Value::Str(s) => json!(s),
    }
}

/// The history as native JSON Lines: a header naming the model, then one completed operation
/// per line in recorded order.
pub fn write_native(history: &History) -> String {
    let mut out = String::new();
    let mut header = serde_json::Map::new();
    header.insert("version".into(), json!(1));
    if let Some(model) = history.model {
        header.insert("model".into(), json!(model.name()));
    }
    out.push_str(&Json::Object(header).to_string());
    out.push('\n');
    for op in &history.ops {
        let mut line = serde_json::Map::new();
        line.insert("process".into(), json!(op.process));
        line.insert("type".into(), json!(op.outcome.name()));
        line.insert("f".into(), json!(op.call.name()));
        if let Some(key) = &op.key {
            line.insert("key".into(), json!(key));
        }
        match &op.call {
            Call::Read { value: v } | Call::Get { value: v } => {
                if let Some(v) = v {
                    line.insert("value".into(), value(v));
                }
            }
            Call::Write { value: v } | Call::Put { value: v } | Call::Append { value: v } => {
                line.insert("value".into(), value(v));
            }
            Call::Cas { from, to, swapped } => {
                line.insert("value".into(), json!([value(from), value(to)]));
                if let Some(swapped) = swapped {
                    line.insert("swapped".into(), json!(swapped));
                }
            }
        }
        line.insert("invoke".into(), json!(op.invoke));
        if let Some(complete) = op.complete {
            line.insert("complete".into(), json!(complete));
        }
        out.push_str(&Json::Object(line).to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::formats::{Format, read_str};
    use crate::check::history::{Operation, Outcome};
    use crate::check::models::ModelKind;

    #[test]
    fn a_written_history_reads_back_the_same() {
        let mut history = History::new();
        history.model = Some(ModelKind::CasRegister);
        let op = |process, call, outcome, invoke, complete| Operation {
            process,
            key: Some("k1".into()),
            call,
            outcome,
            invoke,
            complete,
            line: 0,
        };
        history.ops = vec![
            op(
                0,
                Call::Write {
                    value: Value::Int(1),
                },
                Outcome::Ok,
                0,
                Some(10),
            ),
            op(
                1,
                Call::Read {
                    value: Some(Value::Nil),
                },
                Outcome::Ok,
                5,
                Some(8),
            ),
            op(
                2,
                Call::Cas {
                    from: Value::Int(1),
                    to: Value::Int(2),
                    swapped: Some(false),
                },
                Outcome::Ok,
                12,
                Some(20),
            ),
            op(
                3,
                Call::Write {
                    value: Value::Int(3),
                },
                Outcome::Info,
                15,
                None,
            ),
            op(4, Call::Read { value: None }, Outcome::Fail, 16, Some(30)),
        ];
        let text = write_native(&history);
        let back = read_str(&text, Format::Auto).unwrap();
        assert_eq!(back.model, Some(ModelKind::CasRegister));
        assert_eq!(back.ops.len(), history.ops.len());
        for (a, b) in back.ops.iter().zip(&history.ops) {
            assert_eq!(
                (a.process, &a.key, &a.call, a.outcome, a.invoke, a.complete),
                (b.process, &b.key, &b.call, b.outcome, b.invoke, b.complete)
            );
        }
    }
}
