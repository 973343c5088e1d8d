//! The history model: what clients asked for, what they were told, and when.

use std::fmt;

/// A value read or written by an operation.
///
/// Histories carry integers (registers) and strings (key-value stores); `Nil` is "no value",
/// e.g. a read of a key that was never written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// No value: the key is absent.
    Nil,
    /// A signed 64-bit integer.
    Int(i64),
    /// A string.
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The function an operation called, with its arguments and (when known) its result.
///
/// `Get`/`Put` are the key-value names of `Read`/`Write`; they are kept apart only so that a
/// history is rendered back with the names it was recorded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Read the register. `value` is what was read; `None` when the outcome is not known.
    Read {
        /// The value read, `Some(Value::Nil)` for "absent", `None` if unknown.
        value: Option<Value>,
    },
    /// Read a key of a key-value store; same meaning as [`Call::Read`].
    Get {
        /// The value read, `None` if unknown.
        value: Option<Value>,
    },
    /// Overwrite the register.
    Write {
        /// The value written.
        value: Value,
    },
    /// Overwrite a key of a key-value store.
    Put {
        /// The value written.
        value: Value,
    },
    /// Compare-and-set: if the current value is `from`, replace it with `to`.
    Cas {
        /// The value compared against.
        from: Value,
        /// The value written when the comparison holds.
        to: Value,
        /// `Some(true)`: the comparison held and the value was replaced; `Some(false)`: the
        /// comparison failed (an `ok` operation that returned false); `None`: unknown.
        swapped: Option<bool>,
    },
    /// Append a string to a key of a key-value store.
    Append {
        /// The string appended.
        value: Value,
    },
}

impl Call {
    /// The function's name as written in histories (`read`, `cas`, `append`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Call::Read { .. } => "read",
            Call::Get { .. } => "get",
            Call::Write { .. } => "write",
            Call::Put { .. } => "put",
            Call::Cas { .. } => "cas",
            Call::Append { .. } => "append",
        }
    }

    /// True for functions that only observe the state.
    pub fn is_read(&self) -> bool {
        matches!(self, Call::Read { .. } | Call::Get { .. })
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The operation completed and its result is known.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// Unknown: it may have taken effect at any moment after its invocation, or never
    /// (a timeout, a lost connection, a crashed client).
    Info,
}

impl Outcome {
    /// The name used in histories: `ok`, `fail` or `info`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// What the timestamps of a history count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Nanoseconds since the start of the experiment.
    Nanoseconds,
    /// Line numbers of the source file: formats without clocks order events by line.
    Lines,
}

/// One operation of a client, from invocation to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client (process/thread) that ran it. A client runs one operation at a time.
    pub process: u64,
    /// The key it addressed; `None` for a history of a single register.
    pub key: Option<String>,
    /// The function, its arguments and its result.
    pub call: Call,
    /// How it ended.
    pub outcome: Outcome,
    /// When it was invoked (see [`History::time_unit`]).
    pub invoke: u64,
    /// When it completed; `None` when the outcome is unknown (it may take effect later).
    pub complete: Option<u64>,
    /// The line of the source file that recorded it (1-based), for error messages; 0 if none.
    pub line: usize,
}

/// A recorded history: every operation of every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The operations, in the order they were recorded. An operation's index in this vector
    /// is its id in verdicts and counterexamples.
    pub ops: Vec<Operation>,
    /// The model the source names (a native header, or implied by the format), if any.
    pub model: Option<super::models::ModelKind>,
    /// What `invoke` and `complete` count.
    pub time_unit: TimeUnit,
}

impl History {
    /// An empty history in nanoseconds with no model named.
    pub fn new() -> Self {
        History {
            ops: Vec::new(),
            model: None,
            time_unit: TimeUnit::Nanoseconds,
        }
    }

    /// Number of operations whose outcome is unknown.
    pub fn indeterminate(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| op.outcome == Outcome::Info)
            .count()
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

/// One line of text describing an operation, e.g.
/// `#12 p3 cas k1 1->2 => true [100, 250]`.
pub fn describe_op(id: usize, op: &Operation) -> String {
    let key = match &op.key {
        Some(k) => format!(" {k}"),
        None => String::new(),
    };
    let body = match &op.call {
        Call::Read { value } | Call::Get { value } => match value {
            Some(v) => format!(" => {v}"),
            None => " => ?".to_string(),
        },
        Call::Write { value } | Call::Put { value } | Call::Append { value } => format!(" {value}"),
        Call::Cas { from, to, swapped } => match swapped {
            Some(s) => format!(" {from}->{to} => {s}"),
            None => format!(" {from}->{to} => ?"),
        },
    };
    let complete = match op.complete {
        Some(c) => c.to_string(),
        None => "?".to_string(),
    };
    let outcome = match op.outcome {
        Outcome::Ok => "",
        Outcome::Fail => " (fail)",
        Outcome::Info => " (info: unknown outcome)",
    };
    format!(
        "#{id} p{} {}{key}{body} [{}, {complete}]{outcome}",
        op.process,
        op.call.name(),
        op.invoke
    )
}
