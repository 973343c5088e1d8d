//! Asking one node whether it leads: the role probes behind faults aimed at the leader or
//! primary. Each answer keeps what the node said, so the timeline can show why a node was
//! taken for the leader.

use std::time::Duration;

use serde_json::Value;

use super::redis::{RedisClient, Resp};

/// How a node is asked for its role.
#[derive(Debug, Clone)]
pub enum RoleQuery {
    /// etcd's `/v3/maintenance/status`: a member leads when the leader it reports is itself.
    Etcd {
        /// Client port.
        port: u16,
    },
    /// Redis's `INFO replication`: `role:master` leads.
    Redis {
        /// Port.
        port: u16,
    },
    /// PostgreSQL's `pg_is_in_recovery()`: the server not in recovery is the primary.
    Postgres {
        /// Connection settings (the host is set per node).
        config: Box<tokio_postgres::Config>,
    },
    /// An HTTP GET: a leader answers with `leader_status` and, if given, a body containing
    /// `body_contains`.
    Http {
        /// Port.
        port: u16,
        /// Path, starting with `/`.
        path: String,
        /// The status a leader answers with.
        leader_status: u16,
        /// Text a leader's body contains.
        body_contains: Option<String>,
    },
}

/// What one node said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// It says it leads.
    pub leads: bool,
    /// Its term, where the system has one (etcd's Raft term): of two nodes that both say
    /// they lead, the one with the higher term does.
    pub term: Option<u64>,
}

/// Asks the node at `host`, giving up after `timeout`.
pub async fn ask(query: &RoleQuery, host: &str, timeout: Duration) -> Result<Role, String> {
    match tokio::time::timeout(timeout, ask_unbounded(query, host, timeout)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn ask_unbounded(query: &RoleQuery, host: &str, timeout: Duration) -> Result<Role, String> {
    match query {
        RoleQuery::Etcd { port } => {
            let http = plain_http(timeout)?;
            let url = format!("http://{host}:{port}/v3/maintenance/status");
            let status: Value = http
                .post(&url)
                .body("{}")
                .send()
                .await
                .map_err(|e| e.to_string())?
                .error_for_status()
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| format!("{url}: not the status JSON: {e}"))?;
            etcd_role(&status)
        }
        RoleQuery::Redis { port } => {
            let client = RedisClient::new(host, *port, false);
            match client.command(&[b"INFO", b"replication"], true).await {
                Ok(Resp::Bulk(Some(text))) => redis_role(&String::from_utf8_lossy(&text)),
                Ok(other) => Err(format!("INFO replication answered {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        }
        RoleQuery::Postgres { config } => {
            let mut config = (**config).clone();
            config.host(host).connect_timeout(timeout);
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let driver = tokio::spawn(connection);
            let row = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            let in_recovery: bool = row?.get(0);
            Ok(Role {
                leads: !in_recovery,
                term: None,
            })
        }
        RoleQuery::Http {
            port,
            path,
            leader_status,
            body_contains,
        } => {
            let http = plain_http(timeout)?;
            let answer = http
                .get(format!("http://{host}:{port}{path}"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = answer.status().as_u16();
            let body = answer.text().await.map_err(|e| e.to_string())?;
            let leads = status == *leader_status
                && body_contains
                    .as_ref()
                    .is_none_or(|text| body.contains(text));
            Ok(Role { leads, term: None })
        }
    }
}

fn plain_http(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// The role in an etcd status answer. The gateway writes 64-bit IDs as strings.
pub fn etcd_role(status: &Value) -> Result<Role, String> {
    let text = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let member = status
        .pointer("/header/member_id")
        .and_then(text)
        .ok_or("the status has no header.member_id")?;
    let leader = status.get("leader").and_then(text).unwrap_or_default();
    let term = status
        .get("raftTerm")
        .or_else(|| status.pointer("/header/raft_term"))
        .and_then(text)
        .and_then(|t| t.parse().ok());
    Ok(Role {
        leads: !leader.is_empty() && leader != "0" && leader == member,
        term,
    })
}

/// The role in Redis's `INFO replication` text.
pub fn redis_role(info: &str) -> Result<Role, String> {
    let role = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("role:"))
        .ok_or("INFO replication has no role: line")?;
    Ok(Role {
        leads: role == "master",
        term: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_etcd_member_leads_when_it_reports_itself() {
        let me = json!({"header": {"member_id": "42", "raft_term": "3"}, "leader": "42", "raftTerm": "3"});
        assert_eq!(
            etcd_role(&me),
            Ok(Role {
                leads: true,
                term: Some(3)
            })
        );
        let other = json!({"header": {"member_id": "42"}, "leader": "7"});
        assert!(!etcd_role(&other).unwrap().leads);
        let none = json!({"header": {"member_id": "42"}, "leader": "0"});
        assert!(!etcd_role(&none).unwrap().leads);
        assert!(etcd_role(&json!({"leader": "7"})).is_err());
    }

    #[test]
    fn a_redis_master_leads() {
        let master = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";
        assert!(redis_role(master).unwrap().leads);
        let replica = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\n";
        assert!(!redis_role(replica).unwrap().leads);
        assert!(redis_role("# Replication\r\n").is_err());
    }

    /// A loopback HTTP server answering every request with `status` and `body`.
    async fn answering(status: u16, body: &'static str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn an_http_role_probe_reads_the_status_and_the_body() {
        let query = |port, body_contains: Option<&str>| RoleQuery::Http {
            port,
            path: "/role".into(),
            leader_status: 200,
            body_contains: body_contains.map(str::to_owned),
        };
        let timeout = Duration::from_secs(2);
        let leader = answering(200, "{\"role\": \"leader\"}").await;
        let follower = answering(200, "{\"role\": \"follower\"}").await;
        let standby = answering(503, "standby").await;
        let ask_at = |port, text| {
            let query = query(port, text);
            async move { ask(&query, "127.0.0.1", timeout).await.unwrap().leads }
        };
        assert!(ask_at(leader, Some("\"leader\"")).await);
        assert!(!ask_at(follower, Some("\"leader\"")).await);
        assert!(ask_at(follower, None).await, "the status alone decides");
        assert!(!ask_at(standby, None).await);
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(
            ask(&query(closed, None), "127.0.0.1", timeout)
                .await
                .is_err()
        );
    }
}
