//! Workload clients: each talks to one node and performs one operation at a time, with a
//! deadline and **no hidden retries** — a retried write could apply twice, and an operation
//! without an answer must be recorded as having an unknown outcome, never as failed.

pub mod etcd;
pub mod http;
pub mod postgres;
pub mod redis;
pub mod role;

use std::future::Future;
use std::pin::Pin;

/// A value stored by the workload. Registers hold integers; the kv model holds strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    /// Absent key.
    Nil,
    /// An integer register value.
    Int(i64),
    /// A string (kv model).
    Str(String),
}

impl Datum {
    /// The text sent over the wire for this value.
    pub fn to_wire(&self) -> String {
        match self {
            Datum::Nil => String::new(),
            Datum::Int(i) => i.to_string(),
            Datum::Str(s) => s.clone(),
        }
    }

    /// Reads a stored text back as the kind of value the model uses.
    pub fn from_wire(text: &str, integers: bool) -> Datum {
        if integers {
            match text.trim().parse() {
                Ok(i) => Datum::Int(i),
                Err(_) => Datum::Str(text.to_owned()),
            }
        } else {
            Datum::Str(text.to_owned())
        }
    }
}

/// One request of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read a key.
    Read,
    /// Overwrite a key.
    Write(Datum),
    /// Replace `from` with `to` if the key holds `from`.
    Cas {
        /// Expected current value.
        from: Datum,
        /// New value.
        to: Datum,
    },
    /// Append to a key (kv model).
    Append(Datum),
}

/// What the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The value read.
    Value(Datum),
    /// A write or append was acknowledged.
    Done,
    /// A CAS ran: true when the comparison held and the value was replaced.
    Swapped(bool),
}

/// Why an operation has no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// It certainly did not take effect (the connection was refused, the server rejected it
    /// before applying it).
    #[error("failed: {0}")]
    Failed(String),
    /// It may or may not have taken effect (timeout, connection lost after sending, a server
    /// error that does not rule out a later apply).
    #[error("unknown outcome: {0}")]
    Indeterminate(String),
}

/// The boxed future a client returns, so clients of different kinds fit one list.
pub type OpFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, OpError>> + Send + 'a>>;

/// A client bound to one node.
pub trait KvClient: Send + Sync {
    /// Performs one request on `key`. The caller enforces the deadline by dropping the future;
    /// a dropped request has an unknown outcome.
    fn perform<'a>(&'a self, key: &'a str, request: &'a Request) -> OpFuture<'a>;
}

/// One step of a transaction. Every key holds a list of integers: list-append transactions
/// append to it, rw-register transactions overwrite it with a list of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnStep {
    /// Append an integer to the list at a key.
    Append {
        /// The key.
        key: String,
        /// The value, unique per key.
        value: i64,
    },
    /// Replace the value at a key (a register write): the list becomes `[value]`.
    Write {
        /// The key.
        key: String,
        /// The value, unique per key.
        value: i64,
    },
    /// Read the whole list at a key (a register's value is a list of zero or one element).
    Read {
        /// The key.
        key: String,
    },
}

impl TxnStep {
    /// The key the step addresses.
    pub fn key(&self) -> &str {
        match self {
            TxnStep::Append { key, .. } | TxnStep::Write { key, .. } | TxnStep::Read { key } => key,
        }
    }
}

/// The boxed future of a transaction: per step, the list a read returned (`None` for a
/// write). `Err(Failed)` means the transaction certainly did not commit (a conflict, a
/// refused connection); `Err(Indeterminate)` that it may have.
pub type TxnFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Option<Vec<i64>>>, OpError>> + Send + 'a>>;

/// A client that runs list-append or rw-register transactions against one node.
pub trait TxnClient: Send + Sync {
    /// Runs `steps` as one transaction. The caller enforces the deadline by dropping the
    /// future; a dropped transaction has an unknown outcome.
    fn transact<'a>(&'a self, steps: &'a [TxnStep]) -> TxnFuture<'a>;

    /// Gets the store ready for transactions (creates tables, say); nothing by default.
    fn prepare(&self) -> Pin<Box<dyn Future<Output = Result<(), OpError>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }
}

/// Classifies a transport error of an HTTP client: nothing was sent when the connection could
/// not be made; anything later may have reached the server.
pub(crate) fn classify_reqwest(error: &reqwest::Error, is_read: bool) -> OpError {
    let text = error.to_string();
    if error.is_connect() || error.is_builder() || is_read {
        OpError::Failed(text)
    } else {
        OpError::Indeterminate(text)
    }
}
