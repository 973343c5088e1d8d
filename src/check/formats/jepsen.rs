//! Jepsen etcd logs: `INFO jepsen.util - PROC TYPE F VALUE`, one event per line, no clocks.
//!
//! Time is the line number. The register starts absent (nil). `:fail` means the operation did
//! not take effect (a failed CAS is dropped rather than read as "the compare failed": the
//! log does not say why it failed). `:info` is an unknown outcome.

use super::{Completion, Pairer, ReadError, parse_int};
use crate::check::history::{Call, History, Operation, Outcome, TimeUnit, Value};
use crate::check::models::ModelKind;

enum JValue {
    Nil,
    Int(i64),
    Pair(i64, i64),
    TimedOut,
}

fn parse_value(line: usize, text: &str) -> Result<JValue, ReadError> {
    let t = text.trim();
    match t {
        "nil" => return Ok(JValue::Nil),
        ":timed-out" => return Ok(JValue::TimedOut),
        _ => {}
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let parts: Vec<&str> = inner.split_whitespace().collect();
        if let [a, b] = parts[..] {
            return Ok(JValue::Pair(
                parse_int(line, a, "value")?,
                parse_int(line, b, "value")?,
            ));
        }
        return Err(ReadError::at(
            line,
            format!("expected a pair [A B], found {t:?}"),
        ));
    }
    if t.is_empty() {
        return Err(ReadError::at(line, "missing value"));
    }
    Ok(JValue::Int(parse_int(line, t, "value")?))
}

pub(super) fn read(text: &str) -> Result<History, ReadError> {
    let mut pairer = Pairer::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let mut tokens = raw.split_whitespace();
        let head: Vec<&str> = tokens.by_ref().take(3).collect();
        if head != ["INFO", "jepsen.util", "-"] {
            return Err(ReadError::at(
                line,
                "expected a Jepsen etcd log line: INFO jepsen.util - PROC TYPE F VALUE",
            ));
        }
        let (Some(proc_), Some(kind), Some(f)) = (tokens.next(), tokens.next(), tokens.next())
        else {
            return Err(ReadError::at(
                line,
                "incomplete line: expected PROC TYPE F VALUE after \"INFO jepsen.util -\"",
            ));
        };
        let process = parse_int(line, proc_, "process")?;
        let process = u64::try_from(process)
            .map_err(|_| ReadError::at(line, format!("process {process} is negative")))?;
        let rest: Vec<&str> = tokens.collect();
        let value = parse_value(line, &rest.join(" "))?;
        let time = line as u64;
        let f_name = match f {
            ":read" => "read",
            ":write" => "write",
            ":cas" => "cas",
            other => {
                return Err(ReadError::at(
                    line,
                    format!("unknown function {other}: expected :read, :write or :cas"),
                ));
            }
        };
        let outcome = match kind {
            ":invoke" => None,
            ":ok" => Some(Outcome::Ok),
            ":fail" => Some(Outcome::Fail),
            ":info" => Some(Outcome::Info),
            other => {
                return Err(ReadError::at(
                    line,
                    format!("unknown type {other}: expected :invoke, :ok, :fail or :info"),
                ));
            }
        };
        match outcome {
            None => {
                let call = match (f_name, value) {
                    ("read", _) => Call::Read { value: None },
                    ("write", JValue::Int(v)) => Call::Write {
                        value: Value::Int(v),
                    },
                    ("cas", JValue::Pair(a, b)) => Call::Cas {
                        from: Value::Int(a),
                        to: Value::Int(b),
                        swapped: None,
                    },
                    (f, _) => {
                        return Err(ReadError::at(
                            line,
                            format!("invalid argument for {f} (write takes N, cas takes [A B])"),
                        ));
                    }
                };
                pairer.invoke(
                    line,
                    Operation {
                        process,
                        key: None,
                        call,
                        outcome: Outcome::Info,
                        invoke: time,
                        complete: None,
                        line,
                    },
                )?;
            }
            Some(outcome) => {
                let result = match (f_name, outcome, value) {
                    ("read", Outcome::Ok, JValue::Nil) => Completion::Read(Value::Nil),
                    ("read", Outcome::Ok, JValue::Int(v)) => Completion::Read(Value::Int(v)),
                    ("read", Outcome::Ok, _) => {
                        return Err(ReadError::at(line, "an ok read must return nil or N"));
                    }
                    ("cas", Outcome::Ok, _) => Completion::Swapped(true),
                    _ => Completion::Nothing,
                };
                pairer.complete(line, process, f_name, outcome, time, result)?;
            }
        }
    }
    Ok(History {
        ops: pairer.finish(),
        model: Some(ModelKind::CasRegister),
        time_unit: TimeUnit::Lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tabs_and_spaces_and_pairs_by_process() {
        let text = "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]\n\
                    INFO  jepsen.util - 2   :invoke :read   nil\n\
                    INFO  jepsen.util - 2   :ok :read   1\n\
                    INFO  jepsen.util - 1\t:ok\t:cas\t[1 2]\n\
                    INFO  jepsen.util - 3\t:invoke\t:write\t4\n\
                    INFO  jepsen.util - 3\t:info\t:write\t:timed-out\n";
        let h = read(text).expect("valid log");
        assert_eq!(h.ops.len(), 3);
        assert_eq!(
            h.ops[0].call,
            Call::Cas {
                from: Value::Int(1),
                to: Value::Int(2),
                swapped: Some(true)
            }
        );
        assert_eq!((h.ops[0].invoke, h.ops[0].complete), (1, Some(4)));
        assert_eq!(
            h.ops[1].call,
            Call::Read {
                value: Some(Value::Int(1))
            }
        );
        assert_eq!(h.ops[2].outcome, Outcome::Info);
        assert_eq!(h.ops[2].complete, None);
    }

    #[test]
    fn errors_name_the_line() {
        let text = "INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:invoke\t:frob\tnil\n";
        assert_eq!(read(text).unwrap_err().line(), Some(2));
        let text = "INFO  jepsen.util - 1\t:invoke\t:write\t99999999999999999999999\n";
        let err = read(text).unwrap_err();
        assert!(err.to_string().contains("64-bit"), "{err}");
    }
}
