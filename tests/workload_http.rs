//! The HTTP workload client against a small key-value service on loopback: templated paths
//! and bodies, the JSON pointer for reads, success statuses, and how failures are classified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use schism::api::{HttpMethod, HttpRequestTemplate, HttpWorkload};
use schism::workload::http::HttpKvClient;
use schism::workload::{Datum, KvClient, OpError, Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

type Store = Arc<Mutex<HashMap<String, String>>>;

/// A key-value service: GET /kv/K → {"value": V} or 404; PUT /kv/K {"value": V};
/// POST /kv/K/cas {"expect": E, "value": V} → 200, or 409 when the value is not E.
async fn serve(listener: TcpListener, store: Store) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut reader = BufReader::new(socket);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).await.unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, answer) = {
                let mut store = store.lock().unwrap();
                match (
                    method,
                    path.strip_prefix("/kv/").unwrap_or("").split_once("/cas"),
                ) {
                    ("GET", None) => match store.get(path.strip_prefix("/kv/").unwrap()) {
                        Some(v) => (200, serde_json::json!({"value": v}).to_string()),
                        None => (404, String::new()),
                    },
                    ("PUT", None) => {
                        store.insert(
                            path.strip_prefix("/kv/").unwrap().to_owned(),
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
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = reader.get_mut().write_all(response.as_bytes()).await;
        });
    }
}

fn templates() -> HttpWorkload {
    let template = |method, path: &str, body: Option<&str>| HttpRequestTemplate {
        method,
        path: path.into(),
        body: body.map(str::to_owned),
        value_pointer: Some("/value".into()),
        success_status: None,
    };
    HttpWorkload {
        read: template(HttpMethod::Get, "/kv/{key}", None),
        write: template(
            HttpMethod::Put,
            "/kv/{key}",
            Some(r#"{"value": "{value}"}"#),
        ),
        cas: Some(template(
            HttpMethod::Post,
            "/kv/{key}/cas",
            Some(r#"{"expect": "{expected}", "value": "{value}"}"#),
        )),
    }
}

async fn client_and_store() -> (HttpKvClient, Store) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let store = Store::default();
    tokio::spawn(serve(listener, Arc::clone(&store)));
    (
        HttpKvClient::new(reqwest::Client::new(), "127.0.0.1", port, templates(), true),
        store,
    )
}

#[tokio::test]
async fn templated_requests_read_write_and_compare_and_set() {
    let (client, store) = client_and_store().await;
    let write = Request::Write(Datum::Int(7));
    assert_eq!(client.perform("k1", &write).await, Ok(Reply::Done));
    assert_eq!(
        store.lock().unwrap().get("k1").map(String::as_str),
        Some("7")
    );
    assert_eq!(
        client.perform("k1", &Request::Read).await,
        Ok(Reply::Value(Datum::Int(7)))
    );
    let cas = Request::Cas {
        from: Datum::Int(7),
        to: Datum::Int(8),
    };
    assert_eq!(client.perform("k1", &cas).await, Ok(Reply::Swapped(true)));
    assert_eq!(
        client.perform("k1", &Request::Read).await,
        Ok(Reply::Value(Datum::Int(8)))
    );
}

#[tokio::test]
async fn a_refused_comparison_is_an_unknown_outcome_and_a_failed_read_a_failure() {
    let (client, _store) = client_and_store().await;
    // The service answers 409: outside successStatus, which a write-like request cannot take
    // as proof that nothing happened.
    let cas = Request::Cas {
        from: Datum::Int(1),
        to: Datum::Int(2),
    };
    assert!(matches!(
        client.perform("k2", &cas).await,
        Err(OpError::Indeterminate(_))
    ));
    // A read has no effect, so any failure of it is a plain failure.
    assert!(matches!(
        client.perform("absent", &Request::Read).await,
        Err(OpError::Failed(_))
    ));
}

#[tokio::test]
async fn a_service_that_is_not_there_fails_definitely() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = HttpKvClient::new(reqwest::Client::new(), "127.0.0.1", port, templates(), true);
    let write = Request::Write(Datum::Int(1));
    assert!(
        matches!(client.perform("k", &write).await, Err(OpError::Failed(_))),
        "nothing was sent, so the write certainly did not happen"
    );
}
