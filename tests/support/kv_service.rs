//! A key-value service over HTTP on loopback, for the HTTP workload client and the runner:
//! GET /kv/K → {"value": V} or 404; PUT /kv/K {"value": V}; POST /kv/K/cas
//! {"expect": E, "value": V} → 200, or 409 when the value is not E. Optionally a share of the
//! requests is answered late (after it took effect): clients that time out record an unknown
//! outcome for an operation that happened, as against a real system under faults.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub type Store = Arc<Mutex<HashMap<String, String>>>;

/// How the service answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lateness {
    /// Percent of requests answered late.
    pub percent: u64,
    /// How late.
    pub by: Duration,
    /// Late writes are lost instead of applied (a primary that acknowledged nothing and
    /// dropped the write): unknown outcomes that never took effect, the hardest kind to check.
    pub lose_late_writes: bool,
}

/// Serves `listener` until it fails.
pub async fn serve(listener: TcpListener, store: Store, lateness: Lateness) {
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let store = Arc::clone(&store);
        let counter = Arc::clone(&counter);
        tokio::spawn(async move {
            let mut reader = BufReader::new(socket);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                    return;
                }
                if header.trim().is_empty() {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let n = counter.fetch_add(1, Ordering::Relaxed);
            // `percent` of the requests, spread evenly, are late.
            let late = lateness.percent > 0 && (n * lateness.percent) % 100 < lateness.percent;
            let lost = late && lateness.lose_late_writes && method != "GET";
            let (status, answer) = if lost {
                (200, String::new())
            } else {
                let mut store = store.lock().unwrap();
                match (
                    method,
                    path.strip_prefix("/kv/").unwrap_or("").split_once("/cas"),
                ) {
                    ("GET", None) => match store.get(path.strip_prefix("/kv/").unwrap_or("")) {
                        Some(v) => (200, serde_json::json!({"value": v}).to_string()),
                        None => (404, String::new()),
                    },
                    ("PUT", None) => {
                        store.insert(
                            path.strip_prefix("/kv/").unwrap_or("").to_owned(),
                            body["value"].as_str().unwrap_or_default().to_owned(),
                        );
                        (200, String::new())
                    }
                    ("POST", Some((key, _))) => {
                        let current = store.get(key).cloned().unwrap_or_default();
                        if current == body["expect"].as_str().unwrap_or_default() {
                            store.insert(
                                key.to_owned(),
                                body["value"].as_str().unwrap_or_default().to_owned(),
                            );
                            (200, String::new())
                        } else {
                            (409, String::new())
                        }
                    }
                    _ => (400, String::new()),
                }
            };
            if late {
                tokio::time::sleep(lateness.by).await;
            }
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = reader.get_mut().write_all(response.as_bytes()).await;
        });
    }
}
