//! Prometheus assertions: PromQL instant queries whose every series must meet a threshold —
//! before the experiment (steady state), sampled through the chaos window, or once after
//! recovery. Deciding is pure ([`evaluate`], [`judge`]); asking is one GET of Prometheus's
//! `/api/v1/query`. An error, an unreachable server or a query without series decides
//! nothing: it is never a pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::guards::AbortSignal;

use crate::api::{
    AssertionRecord, AssertionResult, Expectation, PrometheusAssertion, PrometheusWhen,
};

/// One evaluation of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When it was taken, from the opening of the chaos window (zero for `before`).
    pub at: Duration,
    /// The worst series value, or why there is none.
    pub value: Result<f64, String>,
    /// How many series the query returned.
    pub series: usize,
    /// Whether every series met the expectation (`false` when there is no value).
    pub held: bool,
}

/// Reads the values of a `/api/v1/query` answer: a scalar, or every series of an instant
/// vector. An error answer, a range result or unparsable values are errors.
pub fn values_of(answer: &Value) -> Result<Vec<f64>, String> {
    if answer["status"] != "success" {
        let kind = answer["errorType"].as_str().unwrap_or("error");
        let why = answer["error"].as_str().unwrap_or("no reason given");
        return Err(format!("Prometheus answered {kind}: {why}"));
    }
    let data = &answer["data"];
    let number = |v: &Value| -> Result<f64, String> {
        let text = v[1]
            .as_str()
            .ok_or_else(|| "a sample without a value".to_string())?;
        // Prometheus writes NaN and infinities as text too.
        text.parse::<f64>()
            .map_err(|_| format!("the sample value {text:?} is not a number"))
    };
    match data["resultType"].as_str() {
        Some("scalar") => Ok(vec![number(&data["result"])?]),
        Some("vector") => data["result"]
            .as_array()
            .ok_or_else(|| "a vector result that is not a list".to_string())?
            .iter()
            .map(|series| number(&series["value"]))
            .collect(),
        Some(other) => Err(format!(
            "the query returns a {other}; an assertion needs an instant vector or a scalar"
        )),
        None => Err("the answer has no resultType".into()),
    }
}

/// Evaluates one answer (or the error of asking) against `expect`, as a sample at `at`.
pub fn evaluate(at: Duration, answer: Result<Value, String>, expect: &Expectation) -> Sample {
    let values = answer.and_then(|a| values_of(&a));
    match values {
        Err(e) => Sample {
            at,
            value: Err(e),
            series: 0,
            held: false,
        },
        Ok(values) if values.is_empty() => Sample {
            at,
            value: Err("the query returned no series".into()),
            series: 0,
            held: false,
        },
        Ok(values) => {
            let held = values.iter().all(|v| expect.holds(*v));
            let worst = values
                .iter()
                .copied()
                .reduce(|a, b| expect.worse(a, b))
                .expect("not empty");
            Sample {
                at,
                value: Ok(worst),
                series: values.len(),
                held,
            }
        }
    }
}

/// The record of an assertion from its samples: Failed when any sample breached, else
/// Undecided when any could not be taken (or none was), else Held.
pub fn judge(
    assertion: &PrometheusAssertion,
    expect: &Expectation,
    samples: &[Sample],
) -> AssertionRecord {
    let when = assertion.when;
    let worst = samples
        .iter()
        .filter_map(|s| s.value.as_ref().ok().copied())
        .reduce(|a, b| expect.worse(a, b));
    let breach = samples.iter().find(|s| s.value.is_ok() && !s.held);
    let missing = samples.iter().find(|s| s.value.is_err());
    let at = |s: &Sample| match when {
        PrometheusWhen::Before => "before the experiment".to_string(),
        _ => format!("at {:.1}s", s.at.as_secs_f64()),
    };
    let (result, reason) = if let Some(s) = breach {
        let value = s.value.as_ref().copied().unwrap_or(f64::NAN);
        (
            AssertionResult::Failed,
            Some(format!(
                "prometheus {}: {} = {value} {at}, expected {expect}",
                assertion.name,
                assertion.query,
                at = at(s)
            )),
        )
    } else if let Some(s) = missing {
        let why = s.value.as_ref().err().cloned().unwrap_or_default();
        (
            AssertionResult::Undecided,
            Some(format!(
                "prometheus {} undecided {}: {why}",
                assertion.name,
                at(s)
            )),
        )
    } else if samples.is_empty() {
        (
            AssertionResult::Undecided,
            Some(format!(
                "prometheus {}: no sample was taken",
                assertion.name
            )),
        )
    } else {
        (AssertionResult::Held, None)
    };
    AssertionRecord {
        name: assertion.name.clone(),
        when,
        query: assertion.query.clone(),
        expect: assertion.expect.clone(),
        samples: samples.len() as i64,
        worst,
        result,
        reason,
    }
}

/// Asks Prometheus at `url` for the instant value of `query`.
pub async fn query(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    timeout: Duration,
) -> Result<Value, String> {
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let answer = http
        .get(&endpoint)
        .query(&[("query", query)])
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("cannot reach Prometheus at {url}: {}", without_url(e)))?;
    let status = answer.status();
    let body: Value = answer.json().await.map_err(|e| {
        format!(
            "Prometheus at {url} answered {status} without JSON: {}",
            without_url(e)
        )
    })?;
    Ok(body)
}

// reqwest's messages repeat the URL with the query; the assertion's name already says which.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

/// Samples `assertion` every `interval` from now until `until`, or until `stop` turns true;
/// `epoch` is the opening of the chaos window.
#[allow(clippy::too_many_arguments)]
pub async fn sample_during(
    http: reqwest::Client,
    url: String,
    assertion: PrometheusAssertion,
    expect: Expectation,
    epoch: Instant,
    until: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
    abort: Option<Arc<AbortSignal>>,
) -> Vec<Sample> {
    let interval = assertion.interval.get().max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
        }
        if Instant::now() >= until || *stop.borrow() {
            break;
        }
        let at = epoch.elapsed();
        let answer = query(
            &http,
            &url,
            &assertion.query,
            interval.min(Duration::from_secs(5)),
        )
        .await;
        let sample = evaluate(at, answer, &expect);
        if let (Some(abort), Ok(value)) = (&abort, &sample.value)
            && !sample.held
        {
            abort.trip(
                format!("prometheus {}", assertion.name),
                epoch.elapsed(),
                format!(
                    "prometheus {}: {} = {value}, expected {expect}",
                    assertion.name, assertion.query
                ),
            );
        }
        samples.push(sample);
    }
    samples
}

/// An assertion and every sample taken of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The assertion.
    pub assertion: PrometheusAssertion,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

impl Sampled {
    /// How it came out.
    pub fn record(&self) -> AssertionRecord {
        match Expectation::parse(&self.assertion.expect) {
            Ok(expect) => judge(&self.assertion, &expect, &self.samples),
            Err(e) => AssertionRecord {
                name: self.assertion.name.clone(),
                when: self.assertion.when,
                query: self.assertion.query.clone(),
                expect: self.assertion.expect.clone(),
                samples: 0,
                worst: None,
                result: AssertionResult::Undecided,
                reason: Some(format!("prometheus {}: expect {e}", self.assertion.name)),
            },
        }
    }
}

/// Where an assertion's queries go: its own URL, else the default.
fn url_of(assertion: &PrometheusAssertion, default: Option<&str>) -> Result<String, String> {
    assertion
        .url
        .clone()
        .or(default.map(str::to_owned))
        .ok_or_else(|| "no Prometheus URL: give the assertion a url, or the operator (schism run) --prometheus-url".into())
}

/// The client every query uses: no redirects followed, a short connect timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds")
}

/// Evaluates each assertion once, now, as a sample at `at`.
pub async fn evaluate_once(
    http: &reqwest::Client,
    default_url: Option<&str>,
    assertions: Vec<PrometheusAssertion>,
    at: Duration,
) -> Vec<Sampled> {
    let mut out = Vec::with_capacity(assertions.len());
    for assertion in assertions {
        let samples = match Expectation::parse(&assertion.expect) {
            Err(_) => Vec::new(),
            Ok(expect) => {
                let answer = match url_of(&assertion, default_url) {
                    Ok(url) => query(http, &url, &assertion.query, Duration::from_secs(5)).await,
                    Err(e) => Err(e),
                };
                vec![evaluate(at, answer, &expect)]
            }
        };
        out.push(Sampled { assertion, samples });
    }
    out
}

/// Samples every `during` assertion at its interval until the window closes (`until`) or
/// `stop` turns true; one task each.
/// A breach of an assertion named in `guarded` trips `abort`.
#[allow(clippy::too_many_arguments)]
pub fn spawn_during(
    http: &reqwest::Client,
    default_url: Option<&str>,
    assertions: Vec<PrometheusAssertion>,
    epoch: Instant,
    until: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
    guarded: &[String],
    abort: &Arc<AbortSignal>,
) -> Vec<tokio::task::JoinHandle<Sampled>> {
    assertions
        .into_iter()
        .map(|assertion| {
            let http = http.clone();
            let url = url_of(&assertion, default_url);
            let stop = stop.clone();
            let abort = guarded.contains(&assertion.name).then(|| Arc::clone(abort));
            tokio::spawn(async move {
                let samples = match (url, Expectation::parse(&assertion.expect)) {
                    (Ok(url), Ok(expect)) => {
                        sample_during(
                            http,
                            url,
                            assertion.clone(),
                            expect,
                            epoch,
                            until,
                            stop,
                            abort,
                        )
                        .await
                    }
                    (Err(e), Ok(expect)) => {
                        vec![evaluate(epoch.elapsed(), Err(e), &expect)]
                    }
                    (_, Err(_)) => Vec::new(),
                };
                Sampled { assertion, samples }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector(values: &[&str]) -> Value {
        json!({"status": "success", "data": {"resultType": "vector", "result":
            values.iter().map(|v| json!({"metric": {}, "value": [1.0, v]})).collect::<Vec<_>>()}})
    }

    #[test]
    fn every_series_must_hold_and_the_worst_is_kept() {
        let expect = Expectation::parse("< 0.5").unwrap();
        let s = evaluate(Duration::ZERO, Ok(vector(&["0.1", "0.7", "0.2"])), &expect);
        assert!(!s.held);
        assert_eq!(s.value, Ok(0.7));
        assert_eq!(s.series, 3);
        let s = evaluate(Duration::ZERO, Ok(vector(&["0.1", "0.2"])), &expect);
        assert!(s.held);
        assert_eq!(s.value, Ok(0.2));
    }

    #[test]
    fn no_series_an_error_or_nan_decides_nothing() {
        let expect = Expectation::parse("< 0.5").unwrap();
        let empty = evaluate(Duration::ZERO, Ok(vector(&[])), &expect);
        assert_eq!(empty.value, Err("the query returned no series".into()));
        let error =
            json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"});
        let bad = evaluate(Duration::ZERO, Ok(error), &expect);
        assert!(bad.value.unwrap_err().contains("bad_data: parse error"));
        let nan = evaluate(Duration::ZERO, Ok(vector(&["NaN"])), &expect);
        assert!(!nan.held, "NaN meets no threshold");
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.3"]}});
        assert!(evaluate(Duration::ZERO, Ok(scalar), &expect).held);
    }
}
