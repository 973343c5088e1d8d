//! The HTTP workload client against a small key-value service on loopback: templated paths
//! and bodies, the JSON pointer for reads, success statuses, and how failures are classified.

#[path = "support/kv_service.rs"]
mod kv_service;

use std::sync::Arc;

use kv_service::{Lateness, Store, serve};
use schism::api::{HttpMethod, HttpRequestTemplate, HttpWorkload};
use schism::workload::http::HttpKvClient;
use schism::workload::{Datum, KvClient, OpError, Reply, Request};
use tokio::net::TcpListener;

fn templates() -> HttpWorkload {
    let template = |method, path: &str, body: Option<&str>| HttpRequestTemplate {
        method,
        path: path.into(),
        body: body.map(str::to_owned),
        value_pointer: Some("/value".into()),
        success_status: None,
        mismatch_status: None,
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
    tokio::spawn(serve(listener, Arc::clone(&store), Lateness::default()));
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
async fn a_comparison_refused_with_a_mismatch_status_is_a_definite_not_swapped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let store = Store::default();
    tokio::spawn(serve(listener, Arc::clone(&store), Lateness::default()));
    let mut templates = templates();
    if let Some(cas) = templates.cas.as_mut() {
        cas.mismatch_status = Some(vec![409]);
    }
    let client = HttpKvClient::new(reqwest::Client::new(), "127.0.0.1", port, templates, true);
    let cas = Request::Cas {
        from: Datum::Int(1),
        to: Datum::Int(2),
    };
    assert_eq!(client.perform("k3", &cas).await, Ok(Reply::Swapped(false)));
    assert!(
        store.lock().unwrap().get("k3").is_none(),
        "nothing was written"
    );
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
