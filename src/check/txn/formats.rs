//! Readers for transactional histories: Schism's native JSON Lines and Jepsen's EDN.
//!
//! Native (docs/history-format.md): an optional header `{"version":1,"model":"list-append"}`,
//! then one JSON object per transaction with `"f":"txn"` and a `"value"` of micro-operations
//! `["append", key, 3]`, `["r", key, [1, 2, 3]]`, `["w", key, 4]`, `["r", key, 4]`, either
//! completed (`invoke`/`complete`) or as events (`time`, paired by process).
//!
//! EDN, one map per line, as Jepsen writes them:
//! `{:type :ok, :f :txn, :value [[:append 1 2] [:r 1 [1 2]]], :process 0, :time 123}`.
//!
//! Every error names its line.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::history::{KeyId, MicroOp, ReadValue, Transaction, TxnHistory};
use crate::check::formats::ReadError;
use crate::check::formats::edn::{self, Edn};
use crate::check::history::{Outcome, TimeUnit};

/// Reads a transactional history file, native or EDN (told apart by the first line),
/// a line at a time: the file is never held in memory whole.
pub fn read_file(path: &Path) -> Result<TxnHistory, ReadError> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path).map_err(|e| ReadError::Io(format!("cannot read: {e}")))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let start = reader
        .fill_buf()
        .map_err(|e| ReadError::Io(format!("cannot read: {e}")))?;
    let edn = start
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|i| start[i..].starts_with(b"{:") || start[i..].starts_with(b"{ :"));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if edn || threads < 2 {
        return read_lines(&mut BufLines {
            reader,
            buf: Vec::new(),
            line: 0,
        });
    }
    parallel::read_native(reader, threads, parallel::CHUNK)
}

/// Reads a transactional history from text.
pub fn read_str(text: &str) -> Result<TxnHistory, ReadError> {
    read_lines(&mut StrLines {
        lines: text.lines(),
        line: 0,
    })
}

/// A source of numbered lines, each borrowed until the next is asked for.
trait Lines {
    fn next_line(&mut self) -> Result<Option<(usize, &str)>, ReadError>;
}

struct StrLines<'a> {
    lines: std::str::Lines<'a>,
    line: usize,
}

impl Lines for StrLines<'_> {
    fn next_line(&mut self) -> Result<Option<(usize, &str)>, ReadError> {
        self.line += 1;
        Ok(self.lines.next().map(|l| (self.line, l)))
    }
}

struct BufLines<R> {
    reader: R,
    buf: Vec<u8>,
    line: usize,
}

impl<R: std::io::BufRead> Lines for BufLines<R> {
    fn next_line(&mut self) -> Result<Option<(usize, &str)>, ReadError> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| ReadError::Io(format!("cannot read: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let text = std::str::from_utf8(&self.buf)
            .map_err(|_| ReadError::at(self.line, "not UTF-8 text (is this a binary file?)"))?;
        Ok(Some((self.line, text.trim_end_matches(['\n', '\r']))))
    }
}

fn read_lines(lines: &mut dyn Lines) -> Result<TxnHistory, ReadError> {
    let mut reader: Option<Reader> = None;
    let mut last = 0;
    while let Some((line, raw)) = lines.next_line()? {
        last = line;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        let reader = reader.get_or_insert_with(|| {
            if trimmed.starts_with("{:") || trimmed.starts_with("{ :") {
                Reader::Edn(EdnReader::default())
            } else {
                Reader::Native(NativeReader::default())
            }
        });
        match reader {
            Reader::Native(r) => r.line(line, raw)?,
            Reader::Edn(r) => r.line(line, raw)?,
        }
    }
    let history = match reader {
        None => return Err(ReadError::at(1, "the file is empty")),
        Some(Reader::Native(r)) => r.history,
        Some(Reader::Edn(r)) => r.finish(),
    };
    if history.txns.is_empty() {
        return Err(ReadError::at(
            last.max(1),
            "the history has no transactions",
        ));
    }
    Ok(history)
}

enum Reader {
    Native(NativeReader),
    Edn(EdnReader),
}

/// Whether a history file holds transactions: a header naming a transactional model, or a
/// first operation that is a `txn`.
pub fn looks_transactional(text: &str) -> bool {
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(2)
    {
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("\"f\":\"txn\"")
            || compact.contains(":f:txn")
            || compact.contains("\"model\":\"list-append\"")
            || compact.contains("\"model\":\"rw-register\"")
        {
            return true;
        }
    }
    false
}

/// A key as written: an integer or a string.
enum RawKey<'a> {
    Int(i64),
    Str(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawKey<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key: an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawKey::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(RawKey::Int)
                    .map_err(|_| E::custom(format!("key {v} does not fit in 64 bits")))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawKey::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawKey::Str(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A micro-operation's value: nil, an integer or a list of integers.
struct RawValue(ReadValue);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null, an integer or a list of integers")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawValue(ReadValue::Nil))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawValue(ReadValue::Nil))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawValue(ReadValue::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(|v| RawValue(ReadValue::Int(v)))
                    .map_err(|_| E::custom(format!("{v} does not fit in 64 bits")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Collected on the stack first, so the list is allocated once at its size:
                // a million-transaction history holds millions of them.
                let mut items: smallvec::SmallVec<[i64; 64]> = smallvec::SmallVec::new();
                while let Some(v) = seq.next_element::<i64>()? {
                    items.push(v);
                }
                Ok(RawValue(ReadValue::List(items.to_vec())))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[f, key, value]`.
struct RawOp<'a> {
    f: Cow<'a, str>,
    key: RawKey<'a>,
    value: ReadValue,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawOp<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawOp<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a micro-operation [f, key, value]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let missing = || de::Error::custom("a micro-operation is [f, key, value]");
                let f: Cow<'de, str> = seq.next_element()?.ok_or_else(missing)?;
                let key: RawKey<'de> = seq.next_element()?.ok_or_else(missing)?;
                let value = seq
                    .next_element::<RawValue>()?
                    .map_or(ReadValue::Nil, |v| v.0);
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(missing());
                }
                Ok(RawOp { f, key, value })
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    process: Option<u64>,
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    f: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    value: Option<Vec<RawOp<'a>>>,
    #[serde(default)]
    invoke: Option<u64>,
    #[serde(default)]
    complete: Option<u64>,
    #[serde(default)]
    time: Option<u64>,
}

/// Interns keys, remembering integer keys without formatting them each time.
#[derive(Default)]
struct Keys {
    ints: FxHashMap<i64, KeyId>,
}

impl Keys {
    fn id(&mut self, history: &mut TxnHistory, key: &RawKey) -> KeyId {
        match key {
            RawKey::Int(i) => *self
                .ints
                .entry(*i)
                .or_insert_with(|| history.key(&i.to_string())),
            RawKey::Str(s) => history.key(s),
        }
    }
}

fn micro_op(
    line: usize,
    history: &mut TxnHistory,
    keys: &mut Keys,
    op: RawOp,
) -> Result<MicroOp, ReadError> {
    let key = keys.id(history, &op.key);
    let int = |what: &str| match op.value {
        ReadValue::Int(v) => Ok(v),
        _ => Err(ReadError::at(
            line,
            format!("{what} {} takes an integer value", history.key_name(key)),
        )),
    };
    match op.f.as_ref() {
        "append" => Ok(MicroOp::Append {
            key,
            value: int("append to key")?,
        }),
        "w" => Ok(MicroOp::Write {
            key,
            value: int("w of key")?,
        }),
        "r" => Ok(MicroOp::Read {
            key,
            value: op.value,
        }),
        other => Err(ReadError::at(
            line,
            format!("unknown micro-operation {other:?}: expected \"append\", \"r\" or \"w\""),
        )),
    }
}

fn outcome(line: usize, kind: &str) -> Result<Option<Outcome>, ReadError> {
    match kind {
        "invoke" => Ok(None),
        "ok" => Ok(Some(Outcome::Ok)),
        "fail" => Ok(Some(Outcome::Fail)),
        "info" => Ok(Some(Outcome::Info)),
        other => Err(ReadError::at(
            line,
            format!("\"type\" {other:?}: expected invoke, ok, fail or info"),
        )),
    }
}

/// Pairs invocation and completion events by process.
#[derive(Default)]
struct Pairs {
    open: FxHashMap<u64, usize>,
}

impl Pairs {
    fn invoke(
        &mut self,
        line: usize,
        history: &mut TxnHistory,
        txn: Transaction,
    ) -> Result<(), ReadError> {
        if let Some(&i) = self.open.get(&txn.process) {
            return Err(ReadError::at(
                line,
                format!(
                    "process {} invokes a transaction while its transaction from line {} is still outstanding",
                    txn.process, history.txns[i].line
                ),
            ));
        }
        self.open.insert(txn.process, history.txns.len());
        history.txns.push(txn);
        Ok(())
    }

    fn complete(
        &mut self,
        line: usize,
        history: &mut TxnHistory,
        process: u64,
        outcome: Outcome,
        time: u64,
        ops: Option<Vec<MicroOp>>,
    ) -> Result<(), ReadError> {
        let Some(i) = self.open.remove(&process) else {
            return Err(ReadError::at(
                line,
                format!("process {process} completes a transaction it never invoked"),
            ));
        };
        let txn = &mut history.txns[i];
        if time < txn.invoke {
            return Err(ReadError::at(
                line,
                format!(
                    "completes at {time}, before its invocation at {}",
                    txn.invoke
                ),
            ));
        }
        txn.outcome = outcome;
        txn.complete = (outcome != Outcome::Info).then_some(time);
        match ops {
            Some(ops) => {
                if ops.len() != txn.ops.len() {
                    return Err(ReadError::at(
                        line,
                        format!(
                            "the completion has {} micro-operations, its invocation (line {}) {}",
                            ops.len(),
                            txn.line,
                            txn.ops.len()
                        ),
                    ));
                }
                txn.ops = ops;
            }
            None if outcome == Outcome::Ok => {
                return Err(ReadError::at(
                    line,
                    "an ok completion needs the \"value\" it returned",
                ));
            }
            None => {}
        }
        Ok(())
    }
}

#[derive(Default)]
struct NativeReader {
    history: TxnHistory,
    keys: Keys,
    pairs: Pairs,
    seen_first: bool,
}

/// `s` as a static string when it is one of `known`, so that owning it costs nothing.
fn known(s: Cow<'_, str>, names: &[&'static str]) -> Cow<'static, str> {
    match names.iter().find(|n| **n == s) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(s.into_owned()),
    }
}

impl RawLine<'_> {
    /// The line, no longer borrowing its text (for parsing on other threads).
    fn into_static(self) -> RawLine<'static> {
        RawLine {
            version: self.version,
            model: self.model.map(|m| Cow::Owned(m.into_owned())),
            process: self.process,
            kind: self
                .kind
                .map(|k| known(k, &["invoke", "ok", "fail", "info"])),
            f: self.f.map(|f| known(f, &["txn"])),
            value: self.value.map(|ops| {
                ops.into_iter()
                    .map(|op| RawOp {
                        f: known(op.f, &["append", "r", "w"]),
                        key: match op.key {
                            RawKey::Int(i) => RawKey::Int(i),
                            RawKey::Str(s) => RawKey::Str(Cow::Owned(s.into_owned())),
                        },
                        value: op.value,
                    })
                    .collect()
            }),
            invoke: self.invoke,
            complete: self.complete,
            time: self.time,
        }
    }
}

/// Parses one non-blank native line, without any state: the part that runs in parallel.
fn parse_native(line: usize, raw: &str) -> Result<RawLine<'static>, ReadError> {
    serde_json::from_str::<RawLine>(raw)
        .map(RawLine::into_static)
        .map_err(|e| json_error(line, raw, &e))
}

impl NativeReader {
    fn line(&mut self, line: usize, raw: &str) -> Result<(), ReadError> {
        let parsed = parse_native(line, raw)?;
        self.apply(line, parsed)
    }

    /// Adds a parsed line: interning its keys and pairing its events, in file order.
    fn apply(&mut self, line: usize, parsed: RawLine) -> Result<(), ReadError> {
        let NativeReader {
            history,
            keys,
            pairs,
            seen_first,
        } = self;
        let history = &mut *history;
        let is_first = !std::mem::replace(seen_first, true);
        if parsed.process.is_none() && (parsed.version.is_some() || parsed.model.is_some()) {
            if !is_first {
                return Err(ReadError::at(
                    line,
                    "a header (version, model) must be the first line",
                ));
            }
            if let Some(v) = parsed.version
                && v != 1
            {
                return Err(ReadError::at(
                    line,
                    format!("format version {v} is newer than this reader (1)"),
                ));
            }
            if let Some(m) = parsed.model {
                history.model = Some(m.parse().map_err(|e: String| ReadError::at(line, e))?);
            }
            return Ok(());
        }
        let process = parsed.process.ok_or_else(|| {
            ReadError::at(line, "\"process\" (a non-negative integer) is required")
        })?;
        let kind = parsed.kind.ok_or_else(|| {
            ReadError::at(line, "\"type\" (invoke, ok, fail or info) is required")
        })?;
        match parsed.f.as_deref() {
            Some("txn") => {}
            Some(other) => {
                return Err(ReadError::at(
                    line,
                    format!(
                        "\"f\" is {other:?}: a transactional history holds only \"txn\" operations"
                    ),
                ));
            }
            None => return Err(ReadError::at(line, "\"f\": \"txn\" is required")),
        }
        let ops = match parsed.value {
            Some(ops) => Some(
                ops.into_iter()
                    .map(|op| micro_op(line, history, keys, op))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let outcome = outcome(line, &kind)?;
        match (parsed.invoke, parsed.time) {
            (Some(invoke), _) => {
                let Some(outcome) = outcome else {
                    return Err(ReadError::at(
                        line,
                        "a completed transaction (with \"invoke\") has type ok, fail or info; events use \"time\"",
                    ));
                };
                let complete = match outcome {
                    Outcome::Info => None,
                    _ => Some(parsed.complete.ok_or_else(|| {
                        ReadError::at(line, format!("an {} transaction needs \"complete\"", kind))
                    })?),
                };
                if complete.is_some_and(|c| c < invoke) {
                    return Err(ReadError::at(line, "\"complete\" is before \"invoke\""));
                }
                history.txns.push(Transaction {
                    process,
                    outcome,
                    invoke,
                    complete,
                    ops: ops.ok_or_else(|| {
                        ReadError::at(line, "\"value\" (the micro-operations) is required")
                    })?,
                    line,
                });
            }
            (None, Some(time)) => match outcome {
                None => pairs.invoke(
                    line,
                    history,
                    Transaction {
                        process,
                        outcome: Outcome::Info,
                        invoke: time,
                        complete: None,
                        ops: ops.ok_or_else(|| {
                            ReadError::at(
                                line,
                                "an invocation needs its \"value\" (the micro-operations)",
                            )
                        })?,
                        line,
                    },
                )?,
                Some(outcome) => pairs.complete(line, history, process, outcome, time, ops)?,
            },
            (None, None) => {
                return Err(ReadError::at(
                    line,
                    "needs \"invoke\" (a completed transaction) or \"time\" (an event)",
                ));
            }
        }
        Ok(())
    }
}

/// serde_json's message with the field named, and without its own line number (the
/// caller's is the file's).
fn json_error(line: usize, raw: &str, e: &serde_json::Error) -> ReadError {
    let mut de = serde_json::Deserializer::from_str(raw);
    let path = match serde_path_to_error::deserialize::<_, RawLine>(&mut de) {
        Err(err) => err.path().to_string(),
        Ok(_) => String::new(),
    };
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message);
    if path.is_empty() || path == "." {
        ReadError::at(line, format!("not a JSON transaction: {message}"))
    } else {
        ReadError::at(line, format!("{path}: {message}"))
    }
}

#[derive(Default)]
struct EdnReader {
    history: TxnHistory,
    keys: Keys,
    pairs: Pairs,
    clocked: Option<bool>,
}

impl EdnReader {
    fn line(&mut self, line: usize, raw: &str) -> Result<(), ReadError> {
        let EdnReader {
            history,
            keys,
            pairs,
            clocked,
        } = self;
        let history = &mut *history;
        let entries = edn::parse_map(raw, line)?;
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let process = match get("process") {
            Some(Edn::Int(p)) if *p >= 0 => *p as u64,
            Some(other) => {
                return Err(ReadError::at(
                    line,
                    format!(":process must be a non-negative integer, found {other:?}"),
                ));
            }
            None => return Err(ReadError::at(line, "missing :process")),
        };
        let kind = match get("type") {
            Some(Edn::Keyword(k)) => k.as_str(),
            _ => {
                return Err(ReadError::at(
                    line,
                    ":type must be a keyword (:invoke, :ok, :fail, :info)",
                ));
            }
        };
        match get("f") {
            Some(Edn::Keyword(f)) if f == "txn" => {}
            Some(other) => {
                return Err(ReadError::at(
                    line,
                    format!(":f is {other:?}: a transactional history holds only :txn operations"),
                ));
            }
            None => return Err(ReadError::at(line, "missing :f")),
        }
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
        let ops = match get("value") {
            Some(Edn::Vector(items)) => Some(
                items
                    .iter()
                    .map(|item| edn_op(line, history, keys, item))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(Edn::Nil) | None => None,
            Some(other) => {
                return Err(ReadError::at(
                    line,
                    format!(":value must be a vector of micro-operations, found {other:?}"),
                ));
            }
        };
        match outcome(line, kind)? {
            None => pairs.invoke(
                line,
                history,
                Transaction {
                    process,
                    outcome: Outcome::Info,
                    invoke: time,
                    complete: None,
                    ops: ops
                        .ok_or_else(|| ReadError::at(line, "an invocation needs its :value"))?,
                    line,
                },
            )?,
            Some(outcome) => pairs.complete(line, history, process, outcome, time, ops)?,
        }
        Ok(())
    }

    fn finish(mut self) -> TxnHistory {
        self.history.time_unit = if self.clocked == Some(true) {
            TimeUnit::Nanoseconds
        } else {
            TimeUnit::Lines
        };
        self.history
    }
}

fn edn_op(
    line: usize,
    history: &mut TxnHistory,
    keys: &mut Keys,
    item: &Edn,
) -> Result<MicroOp, ReadError> {
    let Edn::Vector(parts) = item else {
        return Err(ReadError::at(
            line,
            format!("a micro-operation is [:f key value], found {item:?}"),
        ));
    };
    let (Some(Edn::Keyword(f)), Some(key)) = (parts.first(), parts.get(1)) else {
        return Err(ReadError::at(
            line,
            format!("a micro-operation is [:f key value], found {item:?}"),
        ));
    };
    let key = match key {
        Edn::Int(i) => RawKey::Int(*i),
        Edn::Str(s) => RawKey::Str(Cow::Borrowed(s.as_str())),
        Edn::Keyword(s) => RawKey::Str(Cow::Borrowed(s.as_str())),
        other => {
            return Err(ReadError::at(
                line,
                format!("a key is an integer or a string, found {other:?}"),
            ));
        }
    };
    let value = match parts.get(2) {
        None | Some(Edn::Nil) => ReadValue::Nil,
        Some(Edn::Int(v)) => ReadValue::Int(*v),
        Some(Edn::Vector(items)) => ReadValue::List(
            items
                .iter()
                .map(|e| match e {
                    Edn::Int(v) => Ok(*v),
                    other => Err(ReadError::at(
                        line,
                        format!("list elements are integers, found {other:?}"),
                    )),
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(other) => {
            return Err(ReadError::at(
                line,
                format!("a value is nil, an integer or a vector, found {other:?}"),
            ));
        }
    };
    micro_op(
        line,
        history,
        keys,
        RawOp {
            f: Cow::Borrowed(f.as_str()),
            key,
            value,
        },
    )
}

/// The native reader on several threads: one cuts the file into chunks of whole lines,
/// workers parse them, and the caller applies the parsed lines in file order, so keys are
/// numbered and events paired exactly as the sequential reader does.
mod parallel {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    use std::sync::{Arc, Mutex};

    use super::{NativeReader, RawLine, ReadError, TxnHistory, parse_native};

    /// Bytes per chunk (lines longer than this are kept whole).
    pub(super) const CHUNK: usize = 4 << 20;

    struct Chunk {
        index: usize,
        first_line: usize,
        bytes: Vec<u8>,
    }

    type Parsed = Result<Vec<(usize, RawLine<'static>)>, ReadError>;

    pub(super) fn read_native(
        mut reader: impl Read + Send,
        threads: usize,
        chunk: usize,
    ) -> Result<TxnHistory, ReadError> {
        std::thread::scope(|scope| {
            let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(threads * 2);
            let chunk_rx = Arc::new(Mutex::new(chunk_rx));
            let (done_tx, done_rx) = sync_channel::<(usize, Parsed)>(threads * 2);
            let cutter = scope.spawn(move || cut(&mut reader, &chunk_tx, chunk));
            for _ in 0..threads {
                let rx = Arc::clone(&chunk_rx);
                let tx = done_tx.clone();
                scope.spawn(move || parse_chunks(&rx, &tx));
            }
            drop(done_tx);
            let result = apply_in_order(&done_rx);
            // Whatever is still queued is dropped with the receivers.
            drop(done_rx);
            drop(chunk_rx);
            let cut_result = cutter.join().unwrap_or(Ok(()));
            let (history, last_line) = result?;
            cut_result?;
            if history.txns.is_empty() {
                return Err(ReadError::at(
                    last_line.max(1),
                    "the history has no transactions",
                ));
            }
            Ok(history)
        })
    }

    /// Sends the file in chunks that end at a line end.
    fn cut(reader: &mut impl Read, tx: &SyncSender<Chunk>, size: usize) -> Result<(), ReadError> {
        let mut carry: Vec<u8> = Vec::new();
        let mut index = 0;
        let mut line = 1;
        loop {
            let mut bytes = std::mem::take(&mut carry);
            let start = bytes.len();
            bytes.resize(start + size, 0);
            let mut filled = start;
            while filled < bytes.len() {
                match reader.read(&mut bytes[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ReadError::Io(format!("cannot read: {e}"))),
                }
            }
            bytes.truncate(filled);
            let at_end = filled < start + size;
            if !at_end {
                match bytes.iter().rposition(|&b| b == b'\n') {
                    Some(end) => carry = bytes.split_off(end + 1),
                    // A line longer than a chunk: keep reading it.
                    None => {
                        carry = bytes;
                        continue;
                    }
                }
            }
            let lines = bytes.iter().filter(|&&b| b == b'\n').count();
            let chunk = Chunk {
                index,
                first_line: line,
                bytes,
            };
            index += 1;
            line += lines;
            if tx.send(chunk).is_err() || at_end {
                return Ok(());
            }
        }
    }

    fn parse_chunks(rx: &Mutex<Receiver<Chunk>>, tx: &SyncSender<(usize, Parsed)>) {
        loop {
            let chunk = match rx.lock() {
                Ok(rx) => match rx.recv() {
                    Ok(chunk) => chunk,
                    Err(_) => return,
                },
                Err(_) => return,
            };
            let parsed = parse_chunk(&chunk);
            if tx.send((chunk.index, parsed)).is_err() {
                return;
            }
        }
    }

    fn parse_chunk(chunk: &Chunk) -> Parsed {
        let mut out = Vec::new();
        for (i, raw) in chunk.bytes.split(|&b| b == b'\n').enumerate() {
            let line = chunk.first_line + i;
            let text = std::str::from_utf8(raw)
                .map_err(|_| ReadError::at(line, "not UTF-8 text (is this a binary file?)"))?;
            let text = text.trim_end_matches('\r');
            if text.trim().is_empty() {
                continue;
            }
            out.push((line, parse_native(line, text)?));
        }
        Ok(out)
    }

    /// Applies parsed chunks in file order; the first error in file order wins.
    fn apply_in_order(rx: &Receiver<(usize, Parsed)>) -> Result<(TxnHistory, usize), ReadError> {
        let mut reader = NativeReader::default();
        let mut waiting: BTreeMap<usize, Parsed> = BTreeMap::new();
        let mut next = 0;
        let mut last_line = 0;
        for (index, parsed) in rx.iter() {
            waiting.insert(index, parsed);
            while let Some(parsed) = waiting.remove(&next) {
                next += 1;
                for (line, raw) in parsed? {
                    last_line = line;
                    reader.apply(line, raw)?;
                }
            }
        }
        Ok((reader.history, last_line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::txn::history::TxnModel;

    #[test]
    fn reads_completed_native_transactions() {
        let text = "{\"version\":1,\"model\":\"list-append\"}\n\
            {\"process\":0,\"type\":\"ok\",\"f\":\"txn\",\"value\":[[\"append\",1,2],[\"r\",\"k\",[1,2]]],\"invoke\":5,\"complete\":9}\n";
        let h = read_str(text).unwrap();
        assert_eq!(h.model, Some(TxnModel::ListAppend));
        assert_eq!(h.keys, vec!["1".to_string(), "k".to_string()]);
        assert_eq!(
            h.txns[0].ops[1],
            MicroOp::Read {
                key: 1,
                value: ReadValue::List(vec![1, 2])
            }
        );
        assert_eq!(
            (h.txns[0].invoke, h.txns[0].complete, h.txns[0].line),
            (5, Some(9), 2)
        );
    }

    #[test]
    fn pairs_jepsen_edn_events() {
        let text = "{:type :invoke, :f :txn, :value [[:append 1 2] [:r 1 nil]], :process 0, :time 10, :index 0}\n\
                    {:type :ok, :f :txn, :value [[:append 1 2] [:r 1 [1 2]]], :process 0, :time 20, :index 1}\n\
                    {:type :invoke, :f :txn, :value [[:w 2 7]], :process 1, :time 30}\n";
        let h = read_str(text).unwrap();
        assert_eq!(h.txns.len(), 2);
        assert_eq!(h.txns[0].outcome, Outcome::Ok);
        assert_eq!(h.txns[0].complete, Some(20));
        assert_eq!(
            h.txns[0].ops[1],
            MicroOp::Read {
                key: 0,
                value: ReadValue::List(vec![1, 2])
            }
        );
        assert_eq!(h.txns[1].outcome, Outcome::Info, "never completed");
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let text = "{\"process\":0,\"type\":\"ok\",\"f\":\"txn\",\"value\":[[\"append\",1,2]],\"invoke\":5,\"complete\":9}\n\
                    {\"process\":0,\"type\":\"ok\",\"f\":\"txn\",\"value\":[[\"append\",1,\"x\"]],\"invoke\":5,\"complete\":9}\n";
        let err = read_str(text).unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(err.to_string().contains("integer"), "{err}");
        let err = read_str("{\"process\":-1,\"type\":\"ok\",\"f\":\"txn\"}").unwrap_err();
        assert!(err.to_string().contains("process"), "{err}");
        let err = read_str("{:type :ok, :f :txn, :value [[:append 1]], :process 0}\n{:type :ok}")
            .unwrap_err();
        assert_eq!(err.line(), Some(1));
    }

    #[test]
    fn parallel_reader_reads_what_the_sequential_one_does() {
        let mut text = String::from("{\"version\":1,\"model\":\"list-append\"}\n\n");
        for i in 0..200 {
            text.push_str(&format!(
                "{{\"process\":{},\"type\":\"ok\",\"f\":\"txn\",\"value\":[[\"append\",\"k{}\",{i}],[\"r\",{},[{}]]],\"invoke\":{i},\"complete\":{}}}\r\n",
                i % 7,
                i % 5,
                i % 3,
                (0..i % 40).map(|v| v.to_string()).collect::<Vec<_>>().join(","),
                i + 5
            ));
        }
        let sequential = read_str(&text).unwrap();
        // Chunks far smaller than a line exercise lines split across chunks.
        for chunk in [16, 100, 1000, 1 << 20] {
            let parallel = parallel::read_native(text.as_bytes(), 3, chunk).unwrap();
            assert_eq!(parallel, sequential, "chunk {chunk}");
        }
        let broken = text.replacen("\"invoke\":7,", "\"invoke\":\"7\",", 1);
        let want = read_str(&broken).unwrap_err();
        assert_eq!(
            parallel::read_native(broken.as_bytes(), 2, 64).unwrap_err(),
            want
        );
    }

    #[test]
    fn sniffs_transactional_histories() {
        assert!(looks_transactional(
            "{\"version\":1,\"model\":\"rw-register\"}\n"
        ));
        assert!(looks_transactional("{:type :ok, :f :txn, :value []}"));
        assert!(!looks_transactional(
            "{\"process\":0,\"type\":\"ok\",\"f\":\"read\"}"
        ));
    }
}
