//! EDN event maps, one per line, as in Jepsen histories and Porcupine's kv logs:
//! `{:process 3, :type :invoke, :f :append, :key "1", :value "x 3 0 y"}`.
//!
//! Keys may come in any order; unknown keys (`:index`, `:error`, …) are ignored. `:time`
//! (nanoseconds) is used when every line has it, otherwise the line number is the time.
//! Functions: `:get`/`:put`/`:append` (kv) and `:read`/`:write`/`:cas` (registers, cas values
//! as `[from to]`).

use super::{Completion, Pairer, ReadError, parse_int};
use crate::check::history::{Call, History, Operation, Outcome, TimeUnit, Value};
use crate::check::models::ModelKind;

/// An EDN value, as far as histories use them.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::check) enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
    Keyword(String),
    Vector(Vec<Edn>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> ReadError {
        ReadError::at(self.line, format!("{} (column {})", msg.into(), self.i + 1))
    }

    fn skip(&mut self) {
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_whitespace() || self.s[self.i] == b',')
        {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn symbol(&mut self) -> &str {
        let start = self.i;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if c.is_ascii_whitespace() || matches!(c, b',' | b'}' | b']' | b'{' | b'[' | b'"') {
                break;
            }
            self.i += 1;
        }
        // The slice is between ASCII delimiters of valid UTF-8, so it is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    fn value(&mut self, depth: usize) -> Result<Edn, ReadError> {
        self.skip();
        match self.peek() {
            None => Err(self.err("unexpected end of line")),
            Some(b'"') => self.string(),
            Some(b':') => {
                self.i += 1;
                let k = self.symbol().to_string();
                if k.is_empty() {
                    return Err(self.err("empty keyword"));
                }
                Ok(Edn::Keyword(k))
            }
            Some(b'[') => {
                if depth > 8 {
                    return Err(self.err("vectors nested too deeply"));
                }
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip();
                    match self.peek() {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Edn::Vector(items));
                        }
                        None => return Err(self.err("unterminated vector")),
                        _ => items.push(self.value(depth + 1)?),
                    }
                }
            }
            Some(_) => {
                let line = self.line;
                let sym = self.symbol().to_string();
                match sym.as_str() {
                    "nil" => Ok(Edn::Nil),
                    "true" => Ok(Edn::Bool(true)),
                    "false" => Ok(Edn::Bool(false)),
                    "" => Err(self.err("unexpected character")),
                    s if s.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                        Ok(Edn::Int(parse_int(line, s, "number")?))
                    }
                    s => Err(self.err(format!("unsupported value {s:?}"))),
                }
            }
        }
    }

    fn string(&mut self) -> Result<Edn, ReadError> {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => {
                    return String::from_utf8(out)
                        .map(Edn::Str)
                        .map_err(|_| self.err("string is not UTF-8"));
                }
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                other => out.push(other),
            }
        }
        Err(self.err("unterminated string"))
    }

    fn map(&mut self) -> Result<Vec<(String, Edn)>, ReadError> {
        self.skip();
        if self.peek() != Some(b'{') {
            return Err(self.err("expected an EDN map {:process …}"));
        }
        self.i += 1;
        let mut entries = Vec::new();
        loop {
            self.skip();
            match self.peek() {
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                None => return Err(self.err("unterminated map")),
                _ => {}
            }
            let Edn::Keyword(k) = self.value(0)? else {
                return Err(self.err("map keys must be keywords"));
            };
            self.skip();
            if self.peek() == Some(b'}') {
                return Err(self.err(format!("key :{k} has no value")));
            }
            let v = self.value(0)?;
            entries.push((k, v));
        }
        self.skip();
        if self.i < self.s.len() {
            return Err(self.err("unexpected text after the map"));
        }
        Ok(entries)
    }
}

/// Parses one line holding one EDN map into its entries, keys without the colon.
pub(in crate::check) fn parse_map(
    text: &str,
    line: usize,
) -> Result<Vec<(String, Edn)>, ReadError> {
    Parser {
        s: text.as_bytes(),
        i: 0,
        line,
    }
    .map()
}

fn to_value(line: usize, e: &Edn, what: &str) -> Result<Value, ReadError> {
    match e {
        Edn::Nil => Ok(Value::Nil),
        Edn::Int(i) => Ok(Value::Int(*i)),
        Edn::Str(s) => Ok(Value::Str(s.clone())),
        other => Err(ReadError::at(
            line,
            format!("{what}: expected nil, an integer or a string, found {other:?}"),
        )),
    }
}

pub(super) fn read(text: &str) -> Result<History, ReadError> {
    let mut pairer = Pairer::default();
    let mut clocked: Option<bool> = None;
    let (mut kv_fns, mut reg_fns, mut cas_fns) = (false, false, false);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let entries = parse_map(raw, line)?;
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let missing = |k: &str| ReadError::at(line, format!("missing :{k}"));

        let process = match get("process").ok_or_else(|| missing("process"))? {
            Edn::Int(p) if *p >= 0 => *p as u64,
            other => {
                return Err(ReadError::at(
                    line,
                    format!(":process must be a non-negative integer, found {other:?}"),
                ));
            }
        };
        let Edn::Keyword(kind) = get("type").ok_or_else(|| missing("type"))? else {
            return Err(ReadError::at(line, ":type must be a keyword"));
        };
        let Edn::Keyword(f) = get("f").ok_or_else(|| missing("f"))? else {
            return Err(ReadError::at(line, ":f must be a keyword"));
        };
        let key = match get("key") {
            None | Some(Edn::Nil) => None,
            Some(Edn::Str(s)) => Some(s.clone()),
            Some(Edn::Int(i)) => Some(i.to_string()),
            Some(other) => {
                return Err(ReadError::at(
                    line,
                    format!(":key must be a string or an integer, found {other:?}"),
                ));
            }
        };
        let value = get("value").cloned().unwrap_or(Edn::Nil);
        let has_time = get("time").is_some();
        if *clocked.get_or_insert(has_time) != has_time {
            return Err(ReadError::at(
                line,
                ":time must be on every line or on none",
            ));
        }
        let time = match get("time") {
            Some(Edn::Int(t)) if *t >= 0 => *t as u64,
            Some(other) => {
                return Err(ReadError::at(
                    line,
                    format!(":time must be a non-negative integer, found {other:?}"),
                ));
            }
            None => line as u64,
        };
        let f = match f.as_str() {
            "get" | "put" | "append" => {
                kv_fns = true;
                f.as_str()
            }
            "read" | "write" => {
                reg_fns = true;
                f.as_str()
            }
            "cas" => {
                cas_fns = true;
                "cas"
            }
            other => {
                return Err(ReadError::at(
                    line,
                    format!(
                        "unknown function :{other}: expected :get, :put, :append, :read, :write or :cas"
                    ),
                ));
            }
        };
        match kind.as_str() {
            "invoke" => {
                let call = match f {
                    "get" => Call::Get { value: None },
                    "read" => Call::Read { value: None },
                    "put" => Call::Put {
                        value: to_value(line, &value, ":value")?,
                    },
                    "write" => Call::Write {
                        value: to_value(line, &value, ":value")?,
                    },
                    "append" => Call::Append {
                        value: to_value(line, &value, ":value")?,
                    },
                    _ => match &value {
                        Edn::Vector(v) if v.len() == 2 => Call::Cas {
                            from: to_value(line, &v[0], "cas")?,
                            to: to_value(line, &v[1], "cas")?,
                            swapped: None,
                        },
                        _ => return Err(ReadError::at(line, ":cas takes [from to]")),
                    },
                };
                pairer.invoke(
                    line,
                    Operation {
                        process,
                        key,
                        call,
                        outcome: Outcome::Info,
                        invoke: time,
                        complete: None,
                        line,
                    },
                )?;
            }
            "ok" | "fail" | "info" => {
                let outcome = match kind.as_str() {
                    "ok" => Outcome::Ok,
                    "fail" => Outcome::Fail,
                    _ => Outcome::Info,
                };
                let result = match (f, outcome) {
                    ("get" | "read", Outcome::Ok) => {
                        Completion::Read(to_value(line, &value, ":value")?)
                    }
                    ("cas", Outcome::Ok) => Completion::Swapped(true),
                    _ => Completion::Nothing,
                };
                pairer.complete(line, process, f, outcome, time, result)?;
            }
            other => {
                return Err(ReadError::at(
                    line,
                    format!("unknown type :{other}: expected :invoke, :ok, :fail or :info"),
                ));
            }
        }
    }
    let model = if cas_fns {
        ModelKind::CasRegister
    } else if reg_fns && !kv_fns {
        ModelKind::Register
    } else {
        ModelKind::Kv
    };
    Ok(History {
        ops: pairer.finish(),
        model: Some(model),
        time_unit: if clocked == Some(true) {
            TimeUnit::Nanoseconds
        } else {
            TimeUnit::Lines
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_porcupine_kv_lines() {
        let text = "{:process 0, :type :invoke, :f :append, :key \"1\", :value \"x 0 0 y\"}\n\
                    {:process 1, :type :invoke, :f :get, :key \"1\", :value nil}\n\
                    {:process 1, :type :ok, :f :get, :key \"1\", :value \"\"}\n\
                    {:process 0, :type :ok, :f :append, :key \"1\", :value \"x 0 0 y\"}\n";
        let h = read(text).expect("valid");
        assert_eq!(h.model, Some(ModelKind::Kv));
        assert_eq!(h.ops.len(), 2);
        assert_eq!(h.ops[0].key.as_deref(), Some("1"));
        assert_eq!((h.ops[0].invoke, h.ops[0].complete), (1, Some(4)));
        assert_eq!(
            h.ops[1].call,
            Call::Get {
                value: Some(Value::Str(String::new()))
            }
        );
    }

    #[test]
    fn malformed_maps_name_line_and_column() {
        let text =
            "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n{:process 0 :type}\n";
        let err = read(text).unwrap_err();
        assert_eq!(err.line(), Some(2));
        let err = read("{:process 0, :type :invoke, :f :get, :key \"1").unwrap_err();
        assert_eq!(err.line(), Some(1));
    }
}
