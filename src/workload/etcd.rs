//! etcd through its v3 JSON gateway (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`).
//!
//! Keys and values travel base64-encoded; the gateway leaves out zero, false and empty fields,
//! so a failed transaction has no `succeeded` and a missing key has no `kvs`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{Datum, KvClient, OpError, OpFuture, Reply, Request, classify_reqwest};

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
        let response = self
            .http
            .post(format!("{}{path}", self.base))
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
                let value = answer["kvs"].get(0).and_then(|kv| kv["value"].as_str());
                let datum = match value {
                    None => Datum::Nil,
                    Some(encoded) => {
                        let bytes = B64
                            .decode(encoded)
                            .map_err(|e| OpError::Failed(format!("bad base64 in answer: {e}")))?;
                        Datum::from_wire(&String::from_utf8_lossy(&bytes), self.integers)
                    }
                };
                Ok(Reply::Value(datum))
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
                Ok(Reply::Swapped(
                    answer["succeeded"].as_bool().unwrap_or(false),
                ))
            }
            Request::Append(_) => Err(OpError::Failed("the etcd client has no append".into())),
        }
    }
}

impl KvClient for EtcdClient {
    fn perform<'a>(&'a self, key: &'a str, request: &'a Request) -> OpFuture<'a> {
        Box::pin(self.run(key, request))
    }
}
