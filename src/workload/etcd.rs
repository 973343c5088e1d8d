//! etcd through its v3 JSON gateway (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`).
//!
//! Keys and values travel base64-encoded; the gateway leaves out zero, false and empty fields,
//! so a failed transaction has no `succeeded` and a missing key has no `kvs`.
//!
//! [`EtcdTxnClient`] runs list-append transactions the way Jepsen's etcd append workload
//! does: read every key the transaction touches in one etcd transaction (one revision, so
//! the reads are a snapshot), compute the new lists, and commit them in a second etcd
//! transaction guarded by each key's `mod_revision`. If any key changed in between, nothing
//! is written and the transaction definitely failed; a read-only transaction needs no
//! commit, its snapshot is its serialization point. Register writes (rw-register) go the
//! same way, replacing the list with one value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{
    Datum, KvClient, OpError, OpFuture, Reply, Request, TxnClient, TxnFuture, TxnStep,
    classify_reqwest,
};

/// A client of one etcd member.
pub struct EtcdClient {
    http: reqwest::Client,
    base: String,
    serializable: bool,
    integers: bool,
}

impl EtcdClient {
    /// A client of the member at `host:port`; `serializable` reads are answered locally.
    pub fn new(
        http: reqwest::Client,
        host: &str,
        port: u16,
        serializable: bool,
        integers: bool,
    ) -> Self {
        Self {
            http,
            base: format!("http://{host}:{port}"),
            serializable,
            integers,
        }
    }

    async fn call(&self, path: &str, body: Value, is_read: bool) -> Result<Value, OpError> {
        post(&self.http, &self.base, path, body, is_read).await
    }

    async fn run(&self, key: &str, request: &Request) -> Result<Reply, OpError> {
        let key64 = B64.encode(key);
        match request {
            Request::Read => {
                let answer = self
                    .call(
                        "/v3/kv/range",
                        json!({"key": key64, "serializable": self.serializable}),
                        true,
                    )
                    .await?;
                Ok(Reply::Value(range_value(&answer, self.integers)?))
            }
            Request::Write(value) => {
                self.call(
                    "/v3/kv/put",
                    json!({"key": key64, "value": B64.encode(value.to_wire())}),
                    false,
                )
                .await?;
                Ok(Reply::Done)
            }
            Request::Cas { from, to } => {
                let compare = match from {
                    Datum::Nil => {
                        json!({"key": key64, "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
                    }
                    other => {
                        json!({"key": key64, "target": "VALUE", "result": "EQUAL", "value": B64.encode(other.to_wire())})
                    }
                };
                let body = json!({
                    "compare": [compare],
                    "success": [{"request_put": {"key": key64, "value": B64.encode(to.to_wire())}}],
                });
                let answer = self.call("/v3/kv/txn", body, false).await?;
                Ok(Reply::Swapped(txn_succeeded(&answer)))
            }
            Request::Append(_) => Err(OpError::Failed("the etcd client has no append".into())),
        }
    }
}

/// POSTs `body` to the gateway. An error status, an unreadable answer or a transport error
/// is a definite failure for reads and an unknown outcome for anything that writes.
async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
    is_read: bool,
) -> Result<Value, OpError> {
    let response = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| classify_reqwest(&e, is_read))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| classify_reqwest(&e, is_read))?;
    if !status.is_success() {
        // An error status from etcd (no leader, timeout inside raft) does not prove the
        // proposal was dropped, so only reads may call it a failure.
        let message = format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        );
        return Err(if is_read {
            OpError::Failed(message)
        } else {
            OpError::Indeterminate(message)
        });
    }
    serde_json::from_str(&text).map_err(|e| {
        let message = format!("unreadable answer ({e})");
        if is_read {
            OpError::Failed(message)
        } else {
            OpError::Indeterminate(message)
        }
    })
}

/// The value of the first key in a `/v3/kv/range` answer: `Nil` when the key is absent.
pub fn range_value(answer: &Value, integers: bool) -> Result<Datum, OpError> {
    match answer["kvs"].get(0).and_then(|kv| kv["value"].as_str()) {
        None => Ok(Datum::Nil),
        Some(encoded) => {
            let bytes = decode_base64(encoded)?;
            Ok(Datum::from_wire(&String::from_utf8_lossy(&bytes), integers))
        }
    }
}

/// Whether a `/v3/kv/txn` answer says its comparisons held. The gateway leaves out `false`.
pub fn txn_succeeded(answer: &Value) -> bool {
    answer["succeeded"].as_bool() == Some(true)
}

/// The list each of `keys` holds, with its `mod_revision`, in the answer to a transaction of
/// one range per key (in the same order). An absent key holds the empty list.
pub fn snapshot_lists(snapshot: &Value, keys: &[&str]) -> Result<Vec<(Vec<i64>, String)>, OpError> {
    let mut lists = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let kv = &snapshot["responses"][i]["response_range"]["kvs"][0];
        let list = match kv["value"].as_str() {
            None => Vec::new(),
            Some(encoded) => serde_json::from_slice(&decode_base64(encoded)?)
                .map_err(|e| OpError::Failed(format!("key {key} does not hold a list: {e}")))?,
        };
        // Absent keys have no mod_revision in the answer: 0 is what etcd compares them as.
        let revision = kv["mod_revision"].as_str().unwrap_or("0").to_string();
        lists.push((list, revision));
    }
    Ok(lists)
}

fn decode_base64(encoded: &str) -> Result<Vec<u8>, OpError> {
    B64.decode(encoded)
        .map_err(|e| OpError::Failed(format!("bad base64 in answer: {e}")))
}

impl KvClient for EtcdClient {
    fn perform<'a>(&'a self, key: &'a str, request: &'a Request) -> OpFuture<'a> {
        Box::pin(self.run(key, request))
    }
}

/// A transactional client of one etcd member. A key holds its list as JSON text (`[1,2,3]`);
/// a register write replaces it with a list of one value.
pub struct EtcdTxnClient {
    http: reqwest::Client,
    base: String,
}

impl EtcdTxnClient {
    /// A client of the member at `host:port`.
    pub fn new(http: reqwest::Client, host: &str, port: u16) -> Self {
        Self {
            http,
            base: format!("http://{host}:{port}"),
        }
    }

    async fn run(&self, steps: &[TxnStep]) -> Result<Vec<Option<Vec<i64>>>, OpError> {
        let mut keys: Vec<&str> = Vec::new();
        for step in steps {
            if !keys.contains(&step.key()) {
                keys.push(step.key());
            }
        }
        // One etcd transaction of ranges is one revision: a snapshot of every key.
        let ranges: Vec<Value> = keys
            .iter()
            .map(|k| json!({"request_range": {"key": B64.encode(k)}}))
            .collect();
        let snapshot = post(
            &self.http,
            &self.base,
            "/v3/kv/txn",
            json!({"success": ranges}),
            true,
        )
        .await?;
        let mut lists = snapshot_lists(&snapshot, &keys)?;
        let mut results = Vec::with_capacity(steps.len());
        let mut written = vec![false; keys.len()];
        for step in steps {
            let i = keys
                .iter()
                .position(|k| *k == step.key())
                .expect("collected");
            match step {
                TxnStep::Read { .. } => results.push(Some(lists[i].0.clone())),
                TxnStep::Append { value, .. } => {
                    lists[i].0.push(*value);
                    written[i] = true;
                    results.push(None);
                }
                TxnStep::Write { value, .. } => {
                    lists[i].0 = vec![*value];
                    written[i] = true;
                    results.push(None);
                }
            }
        }
        if !written.contains(&true) {
            return Ok(results);
        }
        let compare: Vec<Value> = keys
            .iter()
            .zip(&lists)
            .map(|(k, (_, revision))| {
                json!({"key": B64.encode(k), "target": "MOD", "result": "EQUAL", "mod_revision": revision})
            })
            .collect();
        let puts: Vec<Value> = keys
            .iter()
            .zip(&lists)
            .zip(&written)
            .filter(|(_, w)| **w)
            .map(|((k, (list, _)), _)| {
                let text = serde_json::to_string(list).expect("a list of integers serializes");
                json!({"request_put": {"key": B64.encode(k), "value": B64.encode(text)}})
            })
            .collect();
        let answer = post(
            &self.http,
            &self.base,
            "/v3/kv/txn",
            json!({"compare": compare, "success": puts}),
            false,
        )
        .await?;
        if txn_succeeded(&answer) {
            Ok(results)
        } else {
            // A comparison failed: etcd applied nothing.
            Err(OpError::Failed(
                "a key changed since the snapshot; nothing was written".into(),
            ))
        }
    }
}

impl TxnClient for EtcdTxnClient {
    fn transact<'a>(&'a self, steps: &'a [TxnStep]) -> TxnFuture<'a> {
        Box::pin(self.run(steps))
    }
}
