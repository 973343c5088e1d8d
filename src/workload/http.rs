//! Any HTTP key-value service, through the request templates of `spec.workload.http`.

use reqwest::Method;

use super::{Datum, KvClient, OpError, OpFuture, Reply, Request, classify_reqwest};
use crate::api::{HttpMethod, HttpRequestTemplate, HttpWorkload};

/// A client of one node's HTTP service.
pub struct HttpKvClient {
    http: reqwest::Client,
    base: String,
    templates: HttpWorkload,
    integers: bool,
}

impl HttpKvClient {
    /// A client of `host:port` using the templates.
    pub fn new(
        http: reqwest::Client,
        host: &str,
        port: u16,
        templates: HttpWorkload,
        integers: bool,
    ) -> Self {
        Self {
            http,
            base: format!("http://{host}:{port}"),
            templates,
            integers,
        }
    }

    async fn send(
        &self,
        template: &HttpRequestTemplate,
        key: &str,
        value: &str,
        expected: &str,
        is_read: bool,
    ) -> Result<Answer, OpError> {
        let fill = |text: &str, encode: bool| {
            let esc = |s: &str| {
                if encode {
                    percent_encode(s)
                } else {
                    s.to_owned()
                }
            };
            text.replace("{key}", &esc(key))
                .replace("{value}", &esc(value))
                .replace("{expected}", &esc(expected))
        };
        let method = match template.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Post => Method::POST,
            HttpMethod::Delete => Method::DELETE,
            HttpMethod::Patch => Method::PATCH,
        };
        let mut request = self.http.request(
            method,
            format!("{}{}", self.base, fill(&template.path, true)),
        );
        if let Some(body) = &template.body {
            request = request.body(fill(body, false));
        }
        let response = request
            .send()
            .await
            .map_err(|e| classify_reqwest(&e, is_read))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| classify_reqwest(&e, is_read))?;
        let ok = match &template.success_status {
            Some(codes) => codes.iter().any(|c| *c == i32::from(status)),
            None => (200..300).contains(&status),
        };
        let mismatch = template
            .mismatch_status
            .as_ref()
            .is_some_and(|codes| codes.iter().any(|c| *c == i32::from(status)));
        if ok {
            Ok(Answer::Success(text))
        } else if mismatch {
            Ok(Answer::Mismatch)
        } else if is_read {
            Err(OpError::Failed(format!("HTTP {status}")))
        } else {
            // A status outside the success list does not prove the write was not applied.
            Err(OpError::Indeterminate(format!("HTTP {status}")))
        }
    }

    async fn run(&self, key: &str, request: &Request) -> Result<Reply, OpError> {
        match request {
            Request::Read => {
                let Answer::Success(body) =
                    self.send(&self.templates.read, key, "", "", true).await?
                else {
                    return Err(OpError::Failed("a read cannot mismatch".into()));
                };
                Ok(Reply::Value(extract(
                    &body,
                    self.templates.read.value_pointer.as_deref(),
                    self.integers,
                )?))
            }
            Request::Write(v) => {
                self.send(&self.templates.write, key, &v.to_wire(), "", false)
                    .await?;
                Ok(Reply::Done)
            }
            Request::Cas { from, to } => {
                let Some(template) = &self.templates.cas else {
                    return Err(OpError::Failed("no cas template".into()));
                };
                // A failed comparison is definite only with the statuses mismatchStatus names;
                // any other refusal is recorded as unknown (see `send`).
                match self
                    .send(template, key, &to.to_wire(), &from.to_wire(), false)
                    .await?
                {
                    Answer::Success(_) => Ok(Reply::Swapped(true)),
                    Answer::Mismatch => Ok(Reply::Swapped(false)),
                }
            }
            Request::Append(_) => Err(OpError::Failed("the http client has no append".into())),
        }
    }
}

impl KvClient for HttpKvClient {
    fn perform<'a>(&'a self, key: &'a str, request: &'a Request) -> OpFuture<'a> {
        Box::pin(self.run(key, request))
    }
}

/// What a request's status said.
enum Answer {
    /// A success status, with the body.
    Success(String),
    /// A `mismatchStatus`: the CAS's comparison failed, nothing was written.
    Mismatch,
}

/// Takes the value out of a read's response: the JSON pointer's target, or the whole body.
fn extract(body: &str, pointer: Option<&str>, integers: bool) -> Result<Datum, OpError> {
    let Some(pointer) = pointer else {
        return Ok(if body.is_empty() {
            Datum::Nil
        } else {
            Datum::from_wire(body, integers)
        });
    };
    let json: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| OpError::Failed(format!("read answer is not JSON: {e}")))?;
    Ok(match json.pointer(pointer) {
        None | Some(serde_json::Value::Null) => Datum::Nil,
        Some(serde_json::Value::String(s)) => Datum::from_wire(s, integers),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .map(Datum::Int)
            .unwrap_or_else(|| Datum::Str(n.to_string())),
        Some(other) => Datum::Str(other.to_string()),
    })
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_values_by_pointer() {
        assert_eq!(
            extract(r#"{"node":{"value":"7"}}"#, Some("/node/value"), true).unwrap(),
            Datum::Int(7)
        );
        assert_eq!(
            extract(r#"{"node":{}}"#, Some("/node/value"), true).unwrap(),
            Datum::Nil
        );
        assert_eq!(extract("12", None, true).unwrap(), Datum::Int(12));
        assert!(extract("not json", Some("/v"), true).is_err());
    }
}
