//! Transactional histories: each operation is a transaction, a list of micro-operations on
//! keys, with the same invoke/ok/fail/info completions as single-object histories.

use std::fmt;
use std::str::FromStr;

use rustc_hash::FxHashMap;

use crate::check::history::{Outcome, TimeUnit};

/// What a transactional history's micro-operations mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnModel {
    /// Every key holds a list of integers; `append k v` adds `v` at its end and `r k` returns
    /// the whole list. Appended values are unique per key, so a read names every write it saw
    /// and the order they were applied in.
    ListAppend,
    /// Every key is a register of integers; `w k v` overwrites it and `r k` returns it (`nil`
    /// before the first write). Written values are unique per key.
    RwRegister,
}

impl TxnModel {
    /// `list-append` or `rw-register`.
    pub fn name(self) -> &'static str {
        match self {
            TxnModel::ListAppend => "list-append",
            TxnModel::RwRegister => "rw-register",
        }
    }
}

impl fmt::Display for TxnModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TxnModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "list-append" | "append" => Ok(TxnModel::ListAppend),
            "rw-register" => Ok(TxnModel::RwRegister),
            other => Err(format!(
                "unknown transactional model {other:?}: expected list-append or rw-register"
            )),
        }
    }
}

/// A key, as an index into [`TxnHistory::keys`].
pub type KeyId = u32;

/// What a read returned. Only the reads of `ok` transactions are observations; the values in
/// `info` and `fail` transactions are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadValue {
    /// `nil`: an unborn register, or a list that does not exist yet (read as empty).
    Nil,
    /// A register's value.
    Int(i64),
    /// A list's elements, oldest first.
    List(Vec<i64>),
}

/// One step of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicroOp {
    /// `append k v` (list-append).
    Append {
        /// The key.
        key: KeyId,
        /// The value appended.
        value: i64,
    },
    /// `w k v` (rw-register).
    Write {
        /// The key.
        key: KeyId,
        /// The value written.
        value: i64,
    },
    /// `r k value`.
    Read {
        /// The key.
        key: KeyId,
        /// What it returned (meaningful only in `ok` transactions).
        value: ReadValue,
    },
}

impl MicroOp {
    /// The key this micro-operation addresses.
    pub fn key(&self) -> KeyId {
        match self {
            MicroOp::Append { key, .. }
            | MicroOp::Write { key, .. }
            | MicroOp::Read { key, .. } => *key,
        }
    }
}

/// One transaction of a client, from invocation to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The client that ran it; a client runs one transaction at a time.
    pub process: u64,
    /// `ok`: committed, results known. `fail`: certainly did not commit. `info`: unknown; it
    /// may have committed at any moment after `invoke`, or never.
    pub outcome: Outcome,
    /// When it was invoked (see [`TxnHistory::time_unit`]).
    pub invoke: u64,
    /// When it completed; `None` for `info`.
    pub complete: Option<u64>,
    /// Its micro-operations, in the order it ran them.
    pub ops: Vec<MicroOp>,
    /// The source line that recorded it (1-based), 0 if none.
    pub line: usize,
}

/// A recorded transactional history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnHistory {
    /// The transactions, in the order they were recorded; an index here is the `T` number in
    /// every explanation.
    pub txns: Vec<Transaction>,
    /// Key names, indexed by [`KeyId`], as the source wrote them.
    pub keys: Vec<String>,
    /// The model the source names (a header) or implies (its micro-operations), if any.
    pub model: Option<TxnModel>,
    /// What `invoke` and `complete` count.
    pub time_unit: TimeUnit,
    names: FxHashMap<String, KeyId>,
}

impl Default for TxnHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl TxnHistory {
    /// An empty history in nanoseconds.
    pub fn new() -> Self {
        TxnHistory {
            txns: Vec::new(),
            keys: Vec::new(),
            model: None,
            time_unit: TimeUnit::Nanoseconds,
            names: FxHashMap::default(),
        }
    }

    /// The id of the key called `name`, adding it if it is new.
    pub fn key(&mut self, name: &str) -> KeyId {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = self.keys.len() as KeyId;
        self.keys.push(name.to_string());
        self.names.insert(name.to_string(), id);
        id
    }

    /// The name of key `id`.
    pub fn key_name(&self, id: KeyId) -> &str {
        self.keys.get(id as usize).map_or("?", String::as_str)
    }

    /// Transactions whose outcome is unknown.
    pub fn indeterminate(&self) -> usize {
        self.txns
            .iter()
            .filter(|t| t.outcome == Outcome::Info)
            .count()
    }

    /// The model implied by the micro-operations: list-append if any appends, rw-register if
    /// any writes, `None` for a history of reads only.
    pub fn implied_model(&self) -> Option<TxnModel> {
        let mut writes = false;
        for op in self.txns.iter().flat_map(|t| &t.ops) {
            match op {
                MicroOp::Append { .. } => return Some(TxnModel::ListAppend),
                MicroOp::Write { .. } => writes = true,
                MicroOp::Read { .. } => {}
            }
        }
        writes.then_some(TxnModel::RwRegister)
    }

    /// `[append 9 2] [r 8 [1 2]]`, with key names.
    pub fn describe_ops(&self, txn: &Transaction) -> String {
        let mut out = String::new();
        for (i, op) in txn.ops.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let key = self.key_name(op.key());
            match op {
                MicroOp::Append { value, .. } => out.push_str(&format!("[append {key} {value}]")),
                MicroOp::Write { value, .. } => out.push_str(&format!("[w {key} {value}]")),
                MicroOp::Read { value, .. } => {
                    let v = if txn.outcome == Outcome::Ok {
                        describe_read(value)
                    } else {
                        "?".to_string()
                    };
                    out.push_str(&format!("[r {key} {v}]"));
                }
            }
        }
        out
    }

    /// `T17 (process 3, ok, line 40): [append 9 2] [r 8 [1 2]]`.
    pub fn describe(&self, id: usize) -> String {
        let Some(txn) = self.txns.get(id) else {
            return format!("T{id}");
        };
        let outcome = match txn.outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "failed",
            Outcome::Info => "unknown outcome",
        };
        let line = if txn.line > 0 {
            format!(", line {}", txn.line)
        } else {
            String::new()
        };
        format!(
            "T{id} (process {}, {outcome}{line}): {}",
            txn.process,
            self.describe_ops(txn)
        )
    }
}

/// `nil`, `3` or `[1 2 3]`.
pub fn describe_read(value: &ReadValue) -> String {
    match value {
        ReadValue::Nil => "nil".to_string(),
        ReadValue::Int(i) => i.to_string(),
        ReadValue::List(items) => {
            let items: Vec<String> = items.iter().map(i64::to_string).collect();
            format!("[{}]", items.join(" "))
        }
    }
}
