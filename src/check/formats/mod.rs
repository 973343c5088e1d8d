//! Readers for recorded histories.
//!
//! * [`Format::Native`]: Schism's JSON Lines (docs/history-format.md), one completed operation
//!   per line, or Jepsen-style invoke/complete events;
//! * [`Format::Jepsen`]: the `jepsen.util` lines of a Jepsen etcd log (a single CAS register);
//! * [`Format::Kv`]: EDN maps, one event per line (`{:process 0, :type :invoke, :f :get, …}`).
//!
//! Every error names the line it is on. Readers never panic on any input.

pub(in crate::check) mod edn;
mod jepsen;
mod native;
mod native_writer;
pub use native_writer::write_native;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rustc_hash::FxHashMap;

use super::history::{Call, History, Operation, Outcome, Value};

/// A history file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Decide from the first non-blank line.
    Auto,
    /// Schism's JSON Lines.
    Native,
    /// Jepsen etcd log lines (`INFO jepsen.util - 3 :invoke :cas [1 2]`).
    Jepsen,
    /// EDN event maps, one per line (`{:process 0, :type :ok, :f :get, :key "1", :value "x"}`).
    Kv,
}

impl Format {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Native => "native",
            Format::Jepsen => "jepsen",
            Format::Kv => "kv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Format::Auto),
            "native" | "jsonl" | "json" => Ok(Format::Native),
            "jepsen" | "etcd" => Ok(Format::Jepsen),
            "kv" | "edn" => Ok(Format::Kv),
            other => Err(format!(
                "unknown format {other:?}: expected auto, native, jepsen or kv"
            )),
        }
    }
}

/// Why a history could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(String),
    /// The content is not a valid history.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong, and where possible what was expected.
        message: String,
    },
}

impl ReadError {
    pub(crate) fn at(line: usize, message: impl Into<String>) -> Self {
        ReadError::Syntax {
            line,
            message: message.into(),
        }
    }

    /// The line the error is on, if it is about the content.
    pub fn line(&self) -> Option<usize> {
        match self {
            ReadError::Io(_) => None,
            ReadError::Syntax { line, .. } => Some(*line),
        }
    }
}

/// Reads a history file.
pub fn read_file(path: &Path, format: Format) -> Result<History, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| ReadError::Io(format!("cannot read: {e}")))?;
    read_bytes(&bytes, format)
}

/// Reads a history from bytes, which must be UTF-8 text.
pub fn read_bytes(bytes: &[u8], format: Format) -> Result<History, ReadError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => read_str(text, format),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Err(ReadError::at(
                line,
                "not UTF-8 text (is this a binary file?)",
            ))
        }
    }
}

/// Reads a history from text.
pub fn read_str(text: &str, format: Format) -> Result<History, ReadError> {
    let format = match format {
        Format::Auto => detect(text)?,
        f => f,
    };
    let history = match format {
        Format::Jepsen => jepsen::read(text)?,
        Format::Kv => edn::read(text)?,
        // `detect` never answers Auto.
        Format::Native | Format::Auto => native::read(text)?,
    };
    if history.ops.is_empty() {
        return Err(ReadError::at(
            text.lines().count().max(1),
            "the history has no operations",
        ));
    }
    Ok(history)
}

/// Decides the format from the first non-blank line.
pub fn detect(text: &str) -> Result<Format, ReadError> {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with("INFO") || t.contains("jepsen.util") {
            return Ok(Format::Jepsen);
        }
        if let Some(rest) = t.strip_prefix('{') {
            let rest = rest.trim_start();
            if rest.starts_with('"') || rest.starts_with('}') {
                return Ok(Format::Native);
            }
            if rest.starts_with(':') {
                return Ok(Format::Kv);
            }
        }
        return Err(ReadError::at(
            i + 1,
            "cannot tell the format: expected JSON Lines, a Jepsen etcd log or kv EDN maps; \
             pass --format native|jepsen|kv",
        ));
    }
    Err(ReadError::at(1, "the file is empty"))
}

/// What a completion event says about its operation's result.
pub(crate) enum Completion {
    /// Nothing beyond the outcome.
    Nothing,
    /// A read returned this value.
    Read(Value),
    /// A CAS returned whether it swapped.
    Swapped(bool),
}

/// Pairs invoke and completion events by process: a process has at most one operation
/// outstanding, and a completion closes it. Operations are kept in invocation order.
#[derive(Default)]
pub(crate) struct Pairer {
    ops: Vec<Operation>,
    open: FxHashMap<u64, usize>,
}

impl Pairer {
    pub(crate) fn invoke(&mut self, line: usize, op: Operation) -> Result<(), ReadError> {
        if let Some(&i) = self.open.get(&op.process) {
            return Err(ReadError::at(
                line,
                format!(
                    "process {} invokes {} while its {} from line {} is still outstanding",
                    op.process,
                    op.call.name(),
                    self.ops[i].call.name(),
                    self.ops[i].line
                ),
            ));
        }
        self.open.insert(op.process, self.ops.len());
        self.ops.push(op);
        Ok(())
    }

    pub(crate) fn complete(
        &mut self,
        line: usize,
        process: u64,
        f: &str,
        outcome: Outcome,
        time: u64,
        result: Completion,
    ) -> Result<(), ReadError> {
        let Some(i) = self.open.remove(&process) else {
            return Err(ReadError::at(
                line,
                format!("process {process} completes a {f} it never invoked"),
            ));
        };
        let op = &mut self.ops[i];
        if op.call.name() != f {
            return Err(ReadError::at(
                line,
                format!(
                    "process {process} completes a {f}, but its outstanding operation (line {}) \
                     is a {}",
                    op.line,
                    op.call.name()
                ),
            ));
        }
        if time < op.invoke {
            return Err(ReadError::at(
                line,
                format!(
                    "completes at {time}, before its invocation at {}",
                    op.invoke
                ),
            ));
        }
        op.outcome = outcome;
        op.complete = match outcome {
            Outcome::Info => None,
            _ => Some(time),
        };
        match (&mut op.call, result, outcome) {
            (Call::Read { value } | Call::Get { value }, Completion::Read(v), Outcome::Ok) => {
                *value = Some(v)
            }
            (Call::Read { .. } | Call::Get { .. }, _, Outcome::Ok) => {
                return Err(ReadError::at(
                    line,
                    format!("an ok {f} must carry the value it read"),
                ));
            }
            (Call::Cas { swapped, .. }, Completion::Swapped(s), Outcome::Ok) => *swapped = Some(s),
            (Call::Cas { .. }, _, Outcome::Ok) => {
                return Err(ReadError::at(line, "an ok cas must say whether it swapped"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Adds an operation recorded whole, on one line.
    pub(crate) fn push(&mut self, op: Operation) {
        self.ops.push(op);
    }

    /// The history; operations still outstanding have an unknown outcome.
    pub(crate) fn finish(self) -> Vec<Operation> {
        self.ops
    }
}

/// Parses a decimal integer token, with a clear message when it does not fit.
pub(crate) fn parse_int(line: usize, token: &str, what: &str) -> Result<i64, ReadError> {
    token.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "does not fit in a 64-bit integer"
            }
            _ => "is not an integer",
        };
        ReadError::at(line, format!("{what} {token:?} {why}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format_from_its_first_line() {
        assert_eq!(detect("\n{\"process\":1}").ok(), Some(Format::Native));
        assert_eq!(detect("{:process 1}").ok(), Some(Format::Kv));
        assert_eq!(
            detect("INFO  jepsen.util - 4\t:invoke\t:read\tnil").ok(),
            Some(Format::Jepsen)
        );
        assert_eq!(detect("hello").err().and_then(|e| e.line()), Some(1));
    }

    #[test]
    fn binary_junk_is_an_error_with_a_line() {
        let err = read_bytes(b"INFO x\n\xff\xfe\x00", Format::Auto).unwrap_err();
        assert_eq!(err.line(), Some(2));
    }
}
