//! What an experiment reports: written by the controller into `.status`, and by `schism run`
//! as `result.json` in the same shape.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most timeline entries kept in status; later ones are counted in `faultsOmitted`.
pub const MAX_TIMELINE_ENTRIES: usize = 256;
/// Most characters of a counterexample kept in status; the full one is in the report.
pub const MAX_COUNTEREXAMPLE_CHARS: usize = 8192;

/// The observed state and outcome of a chaos experiment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChaosStatus {
    /// Where the experiment is: Pending, Running, Checking, Completed or Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The outcome once Completed: Pass, Fail or Inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The seed used for every random choice; set it in spec to replay this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// When the chaos window started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the verdict was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Conditions `FaultsActive`, `Completed` and `Passed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The fault timeline: what was injected where, and when it was healed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultRecord>,
    /// Timeline entries left out because the list is bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults_omitted: Option<i64>,
    /// Summary of the availability probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<AvailabilitySummary>,
    /// Summary of the consistency check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencySummary>,
    /// The abort guard that ended the experiment early, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortRecord>,
    /// How every Prometheus assertion came out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<AssertionRecord>,
    /// Why the verdict is what it is, one reason a line, e.g. `availability 0.82 < 0.90`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Where the full report (history, HTML) is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportRef>,
    /// The Job and pod running this generation's experiment (in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerRef>,
}

/// The runner of an experiment in a cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunnerRef {
    /// The Job, in the Chaos's namespace (`kubectl logs job/NAME`). Written by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The pod that claimed the run. Written by the runner when it starts the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The run's identity (a digest of its spec without `suspend`): a later generation with
    /// the same identity is this run, suspended or resumed. Written by the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// The phase of an experiment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Accepted, not started yet.
    Pending,
    /// The chaos window is open.
    Running,
    /// Faults are healed; the history is being checked.
    Checking,
    /// A verdict was reached.
    Completed,
    /// The experiment could not run; see conditions and reasons.
    Error,
}

/// The outcome of an experiment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Every assertion held.
    Pass,
    /// At least one assertion failed.
    Fail,
    /// Nothing failed, but at least one assertion could not be decided (e.g. the checker ran
    /// out of time).
    Inconclusive,
}

/// One injection of one fault.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FaultRecord {
    /// The fault's name from spec.
    pub name: String,
    /// The fault kind: partition, latency, loss, bandwidth, podKill or pause.
    pub kind: String,
    /// Pods or nodes affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// How it was made and its shape, e.g. `nftables; cuts n1-n2 n1-n3` or `nfqueue`
    /// (latency without netem in the node's kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it was injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<Time>,
    /// When it was healed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healed_at: Option<Time>,
    /// What went wrong injecting or healing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Summary of the availability probe.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilitySummary {
    /// Probes sent inside the chaos window.
    pub probes: i64,
    /// Probes that succeeded inside the chaos window.
    pub successes: i64,
    /// successes / probes.
    pub ratio: f64,
    /// Median latency of successful probes, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 99th percentile latency of successful probes, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Longest run of failed probes on any one target, in milliseconds.
    pub longest_outage_ms: i64,
    /// After the last heal, time until every target answered again, in milliseconds; absent
    /// when some target never recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_ms: Option<i64>,
}

/// Most anomalies kept in status; every one found is counted in the report.
pub const MAX_STATUS_ANOMALIES: usize = 8;
/// Most transactions (and edges) of one anomaly's cycle kept in status.
pub const MAX_CYCLE_STEPS: usize = 12;
/// Most characters of one transaction's or edge's text kept in status.
pub const MAX_STEP_CHARS: usize = 400;

/// An abort: which guard tripped, and when.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AbortRecord {
    /// The guard, as in spec: `availability`, `probeLatency` or `prometheus NAME`.
    pub guard: String,
    /// When it tripped, in milliseconds after the chaos window opened.
    pub at_millis: i64,
    /// What it saw, e.g. `availability 0.31 < 0.50 over 10s`.
    pub reason: String,
    /// How long after the trip every fault was healed, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healed_millis: Option<i64>,
}

/// How one Prometheus assertion came out.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AssertionRecord {
    /// The assertion's name.
    pub name: String,
    /// When it was evaluated: before, during or after.
    pub when: crate::api::PrometheusWhen,
    /// Its query.
    pub query: String,
    /// What every series had to meet.
    pub expect: String,
    /// Samples taken.
    pub samples: i64,
    /// The value furthest on the wrong side of the threshold, over every sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst: Option<f64>,
    /// Held, Failed or Undecided (an error, no series, no sample).
    pub result: AssertionResult,
    /// Why it failed or could not be decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How an assertion came out.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssertionResult {
    /// Every sample met it.
    Held,
    /// A sample did not.
    Failed,
    /// It could not be told: a query error, an unreachable server, no series.
    Undecided,
}

/// Summary of the consistency check.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencySummary {
    /// The data model of the history: `cas-register`, `list-append`, …
    pub model: String,
    /// The consistency model checked against: `linearizable`, `serializable`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<String>,
    /// Operations (transactions, for a transactional model) in the history.
    pub operations: i64,
    /// Operations with an unknown outcome (timed out).
    pub indeterminate: i64,
    /// Linearizable or NotLinearizable (single-object models), Satisfied or Violated
    /// (transactional models), Unknown (out of time) or Skipped.
    pub result: ConsistencyResult,
    /// Time the check took, in milliseconds.
    pub check_millis: i64,
    /// A one-line description of the anomaly found, e.g. `G2-item: write skew between T17
    /// and T40`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<String>,
    /// The operations that cannot be linearized, or the anomalies the checked model forbids,
    /// rendered as text (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<String>,
    /// Transactional models: examples of the anomalies found, at most
    /// `MAX_STATUS_ANOMALIES`, those the checked model forbids first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<AnomalyRecord>,
    /// Transactional models: every consistency model the anomalies rule out, weakest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ruled_out: Vec<String>,
}

/// One anomaly of a transactional history.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnomalyRecord {
    /// Its type: `G0`, `G1c`, `G-single`, `G2-item`, their `-process` and `-realtime`
    /// variants, `G1a`, `G1b`, `incompatible-order`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// One line, e.g. `G2-item: write skew between T17 and T40`.
    pub summary: String,
    /// Whether the checked consistency model forbids it.
    pub forbidden: bool,
    /// The transactions involved (cycle order for cycles), each as `T17 ok p3 [r x [1 2]]
    /// [append y 5]`; bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<String>,
    /// For cycles: each edge with its reason in words, closing back on the first
    /// transaction; bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cycle: Vec<CycleStep>,
    /// Steps of the cycle left out of `transactions` and `cycle` because they are bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted: Option<i64>,
}

/// One edge of a dependency cycle.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CycleStep {
    /// The transaction that must come first (its `T` number).
    pub from: i64,
    /// The transaction that must come after it.
    pub to: i64,
    /// `ww`, `wr`, `rw`, `process` or `realtime`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Why, in words: `T2 read key 9 without T1's append of 2, which T4 saw`.
    pub reason: String,
}

/// Result of the consistency check.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConsistencyResult {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists; see the counterexample.
    NotLinearizable,
    /// The transactional history satisfies the checked consistency model.
    Satisfied,
    /// The transactional history has an anomaly the checked model forbids; see `anomalies`.
    Violated,
    /// The checker ran out of time.
    Unknown,
    /// No consistency assertion was made.
    #[default]
    Skipped,
}

/// Where the full report is stored.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReportRef {
    /// In a cluster: the ConfigMap holding the history and the HTML report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Locally: the output directory of `schism run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}
