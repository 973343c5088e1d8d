//! Writes a transactional history as Schism's native JSON Lines, the format
//! [`super::formats::read_str`] reads back: a header naming the model, then one completed
//! transaction per line.

use serde_json::{Value, json};

use super::history::{MicroOp, ReadValue, TxnHistory};
use crate::check::history::Outcome;

/// The history as native JSON Lines.
pub fn write_native(history: &TxnHistory) -> String {
    let mut out = String::new();
    let mut header = serde_json::Map::new();
    header.insert("version".into(), json!(1));
    if let Some(model) = history.model {
        header.insert("model".into(), json!(model.name()));
    }
    out.push_str(&Value::Object(header).to_string());
    out.push('\n');
    for txn in &history.txns {
        let ops: Vec<Value> = txn
            .ops
            .iter()
            .map(|op| {
                let key = history.key_name(op.key());
                match op {
                    MicroOp::Append { value, .. } => json!(["append", key, value]),
                    MicroOp::Write { value, .. } => json!(["w", key, value]),
                    // What a read of an unfinished transaction returned is not known.
                    MicroOp::Read { value, .. } => match (txn.outcome, value) {
                        (Outcome::Ok, ReadValue::List(list)) => json!(["r", key, list]),
                        (Outcome::Ok, ReadValue::Int(v)) => json!(["r", key, v]),
                        _ => json!(["r", key, null]),
                    },
                }
            })
            .collect();
        let line = json!({
            "process": txn.process,
            "type": txn.outcome.name(),
            "f": "txn",
            "value": ops,
            "invoke": txn.invoke,
            "complete": txn.complete,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::txn::formats::read_str;
    use crate::check::txn::history::TxnModel;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let text = r#"{"version":1,"model":"list-append"}
{"process":0,"type":"ok","f":"txn","value":[["append","x",1],["r","y",[3,4]],["r","z",null]],"invoke":1000,"complete":2000}
{"process":1,"type":"fail","f":"txn","value":[["append","y",5]],"invoke":1500,"complete":1900}
{"process":2,"type":"info","f":"txn","value":[["r","x",null],["append","x",2]],"invoke":2100,"complete":null}
"#;
        let history = read_str(text).unwrap();
        let written = write_native(&history);
        let again = read_str(&written).unwrap();
        assert_eq!(again.txns, history.txns);
        assert_eq!(again.keys, history.keys);
        assert_eq!(again.model, Some(TxnModel::ListAppend));
    }

    #[test]
    fn registers_read_back_the_same() {
        let text = r#"{"version":1,"model":"rw-register"}
{"process":0,"type":"ok","f":"txn","value":[["w","x",1],["r","y",3],["r","z",null]],"invoke":10,"complete":20}
"#;
        let history = read_str(text).unwrap();
        let again = read_str(&write_native(&history)).unwrap();
        assert_eq!(again.txns, history.txns);
        assert_eq!(again.model, Some(TxnModel::RwRegister));
    }
}
