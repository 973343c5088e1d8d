//! The `Chaos` custom resource: what to break, for how long, what to measure, and what counts
//! as a pass. Every doc comment here becomes the description `kubectl explain` shows.
//!
//! Rules that admission can check are CEL rules on the types (`x_kube(validation = …)`); the
//! rest live in `super::semantic`, which also repeats every CEL rule with a precise field path
//! so `schism validate` and the controller can say exactly where a manifest is wrong.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::KubeDuration;
use super::status::ChaosStatus;

/// A chaos experiment: a seeded schedule of faults against a replicated workload, a client
/// workload whose history is checked for consistency, an availability probe, and the
/// assertions that decide the verdict.
// The printer columns repeat `type_ = "string"`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "schism.dev",
    version = "v1alpha1",
    kind = "Chaos",
    plural = "chaoses",
    singular = "chaos",
    shortname = "cx",
    category = "schism",
    namespaced,
    status = "ChaosStatus",
    doc = "A chaos experiment: faults against a replicated workload, a checked client history, an availability probe, and a Pass/Fail verdict.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the experiment is"
    ),
    printcolumn(
        name = "Verdict",
        type_ = "string",
        json_path = ".status.verdict",
        description = "Pass, Fail or Inconclusive"
    ),
    printcolumn(
        name = "Availability",
        type_ = "number",
        json_path = ".status.availability.ratio",
        description = "Share of successful probes inside the chaos window"
    ),
    printcolumn(
        name = "Consistency",
        type_ = "string",
        json_path = ".status.consistency.result",
        description = "Result of the consistency check"
    ),
    printcolumn(
        name = "Aborted",
        type_ = "string",
        json_path = ".status.abort.reason",
        description = "The abort guard that ended the run early, and why",
        priority = "1"
    ),
    printcolumn(
        name = "Seed",
        type_ = "integer",
        json_path = ".status.seed",
        description = "The seed that replays the run",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("duration(self.duration) > duration('0s') && duration(self.duration) <= duration('24h')").message("duration must be greater than 0 and at most 24h"),
    validation = Rule::new("!has(self.faults) || self.faults.all(f, !has(f.duration) || duration(has(f.start) ? f.start : '0s') + duration(f.duration) <= duration(self.duration))").message("every fault must end inside the chaos window: start + duration <= spec.duration"),
    validation = Rule::new("!has(self.faults) || self.faults.all(f, !has(f.start) || duration(f.start) < duration(self.duration))").message("every fault must start inside the chaos window: start < spec.duration"),
    validation = Rule::new("!has(self.assertions) || !has(self.assertions.consistency) || self.assertions.consistency == 'none' || has(self.workload)").message("assertions.consistency needs a workload"),
    validation = Rule::new("!has(self.assertions) || !has(self.assertions.consistency) || self.assertions.consistency == 'none' || !has(self.workload) || ((self.assertions.consistency == 'linearizable') == !(has(self.workload.model) ? self.workload.model in ['list-append', 'rw-register'] : self.workload.client == 'postgres'))").message("assertions.consistency must fit workload.model: linearizable for register, cas-register and kv; a transactional model (read-committed … strict-serializable) for list-append and rw-register"),
    validation = Rule::new("!has(self.assertions) || (!has(self.assertions.minAvailability) && !has(self.assertions.maxRecovery)) || has(self.availability)").message("assertions.minAvailability and assertions.maxRecovery need an availability probe")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChaosSpec {
    /// The workload to break: exactly one of a Deployment, a StatefulSet, a label selector, or
    /// (for `schism run` only) a local cluster of processes.
    pub target: Target,

    /// The chaos window, e.g. `60s`. Every fault is healed before it ends; the verdict covers it.
    /// Greater than 0 and at most `24h`.
    pub duration: KubeDuration,

    /// Seed for every random choice (which pod, which side of a partition). Omit it and one is
    /// chosen and recorded in status, so any run can be replayed exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,

    /// The fault schedule: each entry is one fault with its timing inside the chaos window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub faults: Vec<FaultEntry>,

    /// The client workload whose history is checked for consistency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,

    /// The availability probe, run against every target pod or node at an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,

    /// What makes the verdict Pass. Without assertions nothing is checked and the verdict is Pass
    /// once every fault ran and was healed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertions: Option<Assertions>,

    /// Guards that end the experiment early when the system is hurt too much: the first
    /// breach heals every fault at once, ends the chaos window, checks what was recorded so
    /// far and concludes Fail, saying which guard tripped and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub abort: Vec<AbortGuard>,

    /// How to tell the leader (or primary) from its followers, for faults aimed at it
    /// (`targets.mode: leader|followers`, partition shapes `isolate-leader` and
    /// `leader-in-minority`). Default: ask each node through the workload's client (etcd
    /// `/v3/maintenance/status`, Redis `INFO replication`, PostgreSQL `pg_is_in_recovery()`).
    /// The role is resolved when each such fault starts, and recorded in the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_probe: Option<RoleProbe>,

    /// Pause a running experiment: `true` heals its faults at once and stops its chaos window's
    /// clock (the workload and probes go on, so the history and availability cover the
    /// pause); `false` gives the faults still in their windows back and the clock runs on.
    /// Changing only `suspend` never starts a new run: the running one follows it. Every
    /// other change to the spec is a new run. On a Chaos that has not started, its run starts
    /// suspended; on a finished one it changes nothing (the outcome stands). Ignored by
    /// `schism run`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// The runner pod that carries out the experiment in a cluster (one Job per run):
    /// its resources, and where it may be scheduled. Unset fields take the operator's defaults
    /// (the Helm chart's `runner` values). Ignored by `schism run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerSpec>,
}

/// How each node's role is read, for faults aimed at the leader or its followers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("!has(self.client) || (self.client == 'http') == has(self.http)").message("http is required for and only allowed with client http"),
    validation = Rule::new("!has(self.client) || self.client != 'postgres'").message("client postgres reads roles with the workload's connection settings: leave roleProbe.client unset and use workload.client postgres")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleProbe {
    /// How to ask: `etcd` (the member whose ID is the leader it reports), `redis`
    /// (`role:master` in `INFO replication`) or `http` (a request whose answer says leader).
    /// Default: the workload's client (which may also be `postgres`: the node not in
    /// recovery is the primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientKind>,
    /// Port to ask on; default the workload's port, else 2379 for etcd and 6379 for redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The request that tells a leader, for `client: http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRoleProbe>,
    /// How long one node may take to answer, default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<KubeDuration>,
}

/// An HTTP GET whose answer tells whether the node leads.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoleProbe {
    /// Path of the request, e.g. `/role`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub path: String,
    /// The status a leader answers with, default 200; any other status means follower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub leader_status: Option<i32>,
    /// Text a leader's answer body contains; without it the status alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub leader_body_contains: Option<String>,
}

impl ChaosSpec {
    /// What makes a run: the spec without `suspend`, as a short digest. Two generations with
    /// the same identity are one run (a suspend and a resume do not start another).
    pub fn run_identity(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a spec serializes");
        if let Some(object) = value.as_object_mut() {
            object.remove("suspend");
        }
        // FNV-1a over the canonical JSON: stable across processes and versions of Schism
        // that serialize the spec alike, which is all a run's identity needs.
        let digest = value
            .to_string()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        format!("{digest:016x}")
    }
}

/// Requests and limits of the runner's container, as in a pod spec.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunnerResources {
    /// What the scheduler reserves for the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// The most the runner may use; past `memory` the kernel kills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// CPU and memory amounts, as Kubernetes quantities.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceAmounts {
    /// CPU, e.g. `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory, e.g. `512Mi` or `2Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub memory: Option<String>,
}

/// Where and with what the runner pod of an experiment runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunnerSpec {
    /// CPU and memory of the runner's container. The consistency check's memory budget is a
    /// share of `limits.memory`: a history too big for it ends Inconclusive, never in an OOM
    /// kill of anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<RunnerResources>,

    /// Node labels the runner pod must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the runner pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
}

/// The workload under test. Exactly one field must be set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("[has(self.deployment), has(self.statefulSet), has(self.selector), has(self.local)].filter(x, x).size() == 1").message("exactly one of deployment, statefulSet, selector, local must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Name of a Deployment in the Chaos's namespace; its ready pods are the targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub deployment: Option<String>,

    /// Name of a StatefulSet in the Chaos's namespace; its ready pods are the targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub stateful_set: Option<String>,

    /// Ready pods in the Chaos's namespace matching this label selector. Must not be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)").message("selector must not be empty: give matchLabels or matchExpressions"))]
    pub selector: Option<LabelSelector>,

    /// A local cluster of processes in network namespaces, for `schism run` (no Kubernetes).
    /// The controller rejects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalTarget>,
}

/// A cluster of local processes, one per network namespace, started by `schism run`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.readyTimeout) || duration(self.readyTimeout) > duration('0s')").message("readyTimeout must be greater than 0"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalTarget {
    /// Number of nodes, 1 to 32.
    #[schemars(range(min = 1, max = 32))]
    pub nodes: i32,

    /// Command that starts one node, run through `sh -c` inside the node's namespace.
    /// Placeholders: `{name}` (`n1`…), `{index}` (1…), `{ip}`, `{dataDir}`, `{peers}` (every
    /// node rendered with `peerFormat`, joined by `peerSeparator`), `{clusterState}` (`new` at
    /// first start, `existing` on restarts).
    #[schemars(length(min = 1, max = 8192))]
    pub command: String,

    /// How one peer is rendered inside `{peers}`; placeholders as in `command`.
    #[serde(default = "default_peer_format")]
    #[schemars(length(min = 1, max = 1024))]
    pub peer_format: String,

    /// Separator between peers inside `{peers}`.
    #[serde(default = "default_peer_separator")]
    #[schemars(length(max = 16))]
    pub peer_separator: String,

    /// Command run instead of `command` when a node is started again after a kill. Defaults to
    /// `command` (with `{clusterState}` = `existing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub restart_command: Option<String>,

    /// How to tell that a node is ready: exactly one of `tcp` or `http`.
    pub ready: ReadyCheck,

    /// How long every node may take to become ready, default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<KubeDuration>,

    /// How long a killed node stays down before it is started again, default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay: Option<KubeDuration>,

    /// IPv4 subnet for the nodes, e.g. `10.231.7.0/24`, prefix length at most 26. By default
    /// one is chosen per run so that concurrent runs do not collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 18))]
    pub subnet: Option<String>,

    /// Extra environment variables for every node's command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,

    /// Run every node's processes (the init step too) as this user, who is given the node's
    /// `{dataDir}`; by default they run as the runner. Databases such as PostgreSQL refuse to
    /// run as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z_][a-z0-9_.-]*\$?$"))]
    pub user: Option<String>,

    /// Command run once per node, to its end, before the node first starts (`initdb -D
    /// {dataDir}/pg`, say); placeholders as in `command`. A failure stops the run and shows
    /// the node's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub init: Option<String>,

    /// Nodes that play another part (a replica beside its primary): each role names its
    /// nodes and replaces `command`, `restartCommand` and `init` for them. Nodes start in
    /// stages: those without a role first, each ready before the next stage, then every
    /// role's nodes in the order listed — so a replica's `init` can copy its primary
    /// (`pg_basebackup -h {n1.ip}`). Templates may name any node's address as `{nK.ip}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub roles: Vec<LocalRole>,
}

/// A part some local nodes play, with commands of their own.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRole {
    /// The role's name, e.g. `replica`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The nodes that take it, by index (1 is `n1`); a node takes at most one role.
    #[schemars(length(min = 1, max = 32), inner(range(min = 1, max = 32)))]
    pub nodes: Vec<i32>,
    /// Starts these nodes instead of the target's `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub command: Option<String>,
    /// Restarts them after a kill; default this role's `command`, else the target's
    /// `restartCommand`, else its `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub restart_command: Option<String>,
    /// Their init step instead of the target's `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub init: Option<String>,
}

fn default_peer_format() -> String {
    "{name}={ip}".into()
}

fn default_peer_separator() -> String {
    ",".into()
}

/// A readiness check: exactly one of `tcp` or `http`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.tcp) != has(self.http)").message("exactly one of tcp, http must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadyCheck {
    /// Ready once a TCP connection to this port succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// Ready once an HTTP GET answers with the expected status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
}

/// A TCP connect check.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpCheck {
    /// Port to connect to, 1 to 65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// An HTTP GET check.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    /// Port to send the request to, 1 to 65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Request path, starting with `/`.
    #[serde(default = "default_http_path")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/"))]
    pub path: String,
    /// Status code that counts as success, default 200.
    #[serde(default = "default_expect_status")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: i32,
}

fn default_http_path() -> String {
    "/".into()
}

fn default_expect_status() -> i32 {
    200
}

/// One fault and its timing. Exactly one fault kind must be set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("[has(self.partition), has(self.latency), has(self.loss), has(self.bandwidth), has(self.podKill), has(self.pause)].filter(x, x).size() == 1").message("exactly one of partition, latency, loss, bandwidth, podKill, pause must be set"),
    validation = Rule::new("!has(self.podKill) || !has(self.duration)").message("podKill is instantaneous: duration is not allowed"),
    validation = Rule::new("has(self.podKill) || has(self.duration)").message("duration is required for every fault except podKill"),
    validation = Rule::new("!has(self.duration) || duration(self.duration) > duration('0s')").message("duration must be greater than 0"),
    validation = Rule::new("!has(self.every) || duration(self.every) > duration('0s')").message("every must be greater than 0"),
    validation = Rule::new("!has(self.every) || !has(self.duration) || duration(self.every) >= duration(self.duration)").message("every must be at least duration, so repeats never overlap")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultEntry {
    /// Name used in the timeline and events, default `fault-N` (N = position in the list).
    /// Unique within the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,

    /// Cut the network between groups of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,

    /// Delay packets arriving at the selected pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,

    /// Drop a share of the packets arriving at the selected pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,

    /// Limit the selected pods' outgoing bandwidth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,

    /// Kill the selected pods (instantaneous; give no duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_kill: Option<PodKill>,

    /// Freeze the selected pods' processes (SIGSTOP), then resume them (SIGCONT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,

    /// Offset of the first injection from the start of the chaos window, default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<KubeDuration>,

    /// How long the fault lasts; required for every kind except `podKill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<KubeDuration>,

    /// Repeat the fault every this long until the window ends; at least `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<KubeDuration>,
}

/// A network partition of the target's pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.shape != 'groups' || has(self.groups)").message("groups is required when shape is groups"),
    validation = Rule::new("self.shape == 'groups' || !has(self.groups)").message("groups is only allowed when shape is groups")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Partition {
    /// How the pods are split: `isolate-one` (one pod alone), `majority-minority`, `halves`,
    /// `bridge` (two halves and one pod that sees both), `ring` (each pod sees only its
    /// neighbours), `groups` (explicit), `isolate-leader` (the leader alone) or
    /// `leader-in-minority` (the leader on the minority side); the leader is resolved when
    /// the fault starts (see `spec.roleProbe`).
    pub shape: PartitionShape,

    /// For `shape: groups` only: the groups of pod (or local node) names that can still talk
    /// among themselves. At least two non-empty groups; no name twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), inner(length(max = 32)))]
    pub groups: Option<Vec<Vec<String>>>,
}

/// The shape of a partition.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    /// One randomly chosen pod is cut off from all others.
    IsolateOne,
    /// A bare majority on one side, the rest on the other.
    MajorityMinority,
    /// Two halves (the first larger by one when the count is odd).
    Halves,
    /// Two halves that cannot reach each other, and one pod that reaches both.
    Bridge,
    /// Each pod reaches only its two neighbours in a ring.
    Ring,
    /// Explicit groups from `groups`.
    Groups,
    /// The leader (resolved when the fault starts) is cut off from all others.
    IsolateLeader,
    /// A bare majority without the leader, and the minority with it: the leader must step
    /// down and the majority elect another.
    LeaderInMinority,
}

/// Added latency on packets arriving at the selected pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("duration(self.delay) > duration('0s') && duration(self.delay) <= duration('60s')").message("delay must be greater than 0 and at most 60s"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Latency {
    /// Added delay, greater than 0 and at most `60s`.
    pub delay: KubeDuration,
    /// Random variation around the delay, default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<KubeDuration>,
    /// Which pods are slowed; default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Selection>,
}

/// Random loss of packets arriving at the selected pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.percent > 0.0 && self.percent <= 100.0").message("percent must be greater than 0 and at most 100"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Loss {
    /// Share of packets dropped, greater than 0 and at most 100.
    pub percent: f64,
    /// Which pods lose packets; default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Selection>,
}

/// A bandwidth limit on the selected pods' outgoing traffic.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bandwidth {
    /// Rate such as `10mbit`, `512kbit`, `1gbit` (units: bit, kbit, mbit, gbit); greater than 0.
    #[schemars(
        length(max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit)$")
    )]
    pub rate: String,
    /// Which pods are limited; default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Selection>,
}

/// Killing pods (in a cluster: deletion with a grace period; locally: SIGKILL and restart).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodKill {
    /// Grace period of the deletion, default `0s` (an immediate kill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<KubeDuration>,
    /// Which pods are killed; default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Selection>,
}

/// Freezing pods' processes for the fault's duration.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pause {
    /// Which pods are paused; default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Selection>,
}

/// Which of the target's pods a fault affects, chosen with the experiment's seed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("!(self.mode in ['fixed', 'fixed-percent', 'random-max-percent']) || has(self.value)").message("value is required for modes fixed, fixed-percent and random-max-percent"),
    validation = Rule::new("self.mode in ['fixed', 'fixed-percent', 'random-max-percent'] || !has(self.value)").message("value is only allowed with modes fixed, fixed-percent and random-max-percent"),
    validation = Rule::new("!has(self.value) || self.mode == 'fixed' || self.value <= 100").message("value is a percentage for this mode: at most 100")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selection {
    /// `one`, `all`, `fixed` (a count), `fixed-percent`, `random-max-percent` (a random
    /// share up to the percentage), `leader` or `followers` (by role when the fault starts,
    /// see `spec.roleProbe`). Default `one`.
    #[serde(default)]
    pub mode: SelectionMode,
    /// The count for `fixed` (at least 1), the percentage (1–100) for the percent modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub value: Option<i32>,
}

/// How pods are selected for a fault.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionMode {
    /// One pod, chosen at random.
    #[default]
    One,
    /// Every target pod.
    All,
    /// `value` pods, chosen at random.
    Fixed,
    /// `value` percent of the pods (rounded down, at least one), chosen at random.
    FixedPercent,
    /// A random number of pods between one and `value` percent, chosen at random.
    RandomMaxPercent,
    /// The leader or primary, resolved when the fault starts (see `spec.roleProbe`).
    Leader,
    /// Every pod but the leader, resolved when the fault starts.
    Followers,
}

/// The client workload: clients bound to pods, each issuing operations whose history is
/// recorded and checked.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("(self.client == 'http') == has(self.http)").message("http is required for and only allowed with client http"),
    validation = Rule::new("self.client != 'http' || has(self.port)").message("port is required for client http"),
    validation = Rule::new("!has(self.readConsistency) || self.client == 'etcd'").message("readConsistency is only allowed with client etcd"),
    validation = Rule::new("(self.client == 'postgres') == has(self.postgres)").message("postgres is required for and only allowed with client postgres"),
    validation = Rule::new("self.client != 'postgres' || !has(self.model) || self.model in ['list-append', 'rw-register']").message("client postgres runs transactions: model must be list-append or rw-register"),
    validation = Rule::new("!has(self.model) || !(self.model in ['list-append', 'rw-register']) || self.client in ['etcd', 'postgres']").message("transactional models (list-append, rw-register) need client etcd or postgres"),
    validation = Rule::new("(!has(self.writesPerKey) && !has(self.maxOpsPerTxn) && !has(self.readers)) || (has(self.model) ? self.model in ['list-append', 'rw-register'] : self.client == 'postgres')").message("writesPerKey, maxOpsPerTxn and readers are only allowed with a transactional model"),
    validation = Rule::new("!has(self.readers) || self.readers.clients < (has(self.concurrency) ? self.concurrency : 5)").message("readers.clients must leave at least one of the workload's concurrency clients to write"),
    validation = Rule::new("duration(self.timeout) > duration('0s')").message("timeout must be greater than 0")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// The client: `etcd` (v3 JSON gateway), `redis` (RESP), `http` (templated requests) or
    /// `postgres` (transactions over the PostgreSQL protocol).
    pub client: ClientKind,
    /// The data model the history is checked against: single-object `register`,
    /// `cas-register` or `kv` (checked for linearizability), or transactional `list-append`
    /// or `rw-register` (checked for an isolation level; clients etcd and postgres). Default
    /// by client: `register` for http without a `cas` template, `list-append` for postgres,
    /// `cas-register` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelKind>,
    /// Port of the service on each pod; default 2379 for etcd, 6379 for redis, 5432 for
    /// postgres; required for http.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Number of distinct keys, 1 to 10000; each is checked independently. With a
    /// transactional model: the keys being written at any time; a key that took
    /// `writesPerKey` writes is replaced by a fresh one.
    #[serde(default = "default_keys")]
    #[schemars(range(min = 1, max = 10000))]
    pub keys: i32,
    /// Transactional models only: writes a key takes before a fresh key replaces it, so
    /// list-append reads return at most this many elements; default 32, 1 to 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub writes_per_key: Option<i32>,
    /// Transactional models only: most micro-operations in one transaction (each a read or a
    /// write, about half writes); default 4, 1 to 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub max_ops_per_txn: Option<i32>,
    /// Number of concurrent clients, 1 to 1000.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: i32,
    /// Operations per second, all clients together, 1 to 100000.
    #[serde(default = "default_rate")]
    #[schemars(range(min = 1, max = 100000))]
    pub rate: i32,
    /// Per-operation timeout; an operation with no answer in time has an unknown outcome.
    #[serde(default = "default_op_timeout")]
    pub timeout: KubeDuration,
    /// etcd only: `linearizable` (default) or `serializable` (local, possibly stale) reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_consistency: Option<ReadConsistency>,
    /// Request templates, for and only for `client: http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpWorkload>,
    /// Connection and isolation settings, for and only for `client: postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresWorkload>,
    /// Transactional models only: clients that run read-only transactions against chosen
    /// nodes (a replica, say); the other clients run the usual mix against the other nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readers: Option<Readers>,
}

/// Clients that only read, and the nodes they read from.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Readers {
    /// The nodes they read from: pod names in a cluster, `n1`… locally. Writers use the
    /// other nodes, so at least one must be left out.
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 253)))]
    pub nodes: Vec<String>,
    /// How many of the workload's `concurrency` clients read; at least one must be left to
    /// write.
    #[schemars(range(min = 1, max = 999))]
    pub clients: i32,
}

impl Workload {
    /// The data model: the one given, else the client's default.
    pub fn model(&self) -> ModelKind {
        self.model.unwrap_or(match self.client {
            ClientKind::Http if self.http.as_ref().is_none_or(|h| h.cas.is_none()) => {
                ModelKind::Register
            }
            ClientKind::Postgres => ModelKind::ListAppend,
            ClientKind::Etcd | ClientKind::Redis | ClientKind::Http => ModelKind::CasRegister,
        })
    }

    /// Writes a transactional key takes before it is replaced.
    pub fn writes_per_key(&self) -> usize {
        self.writes_per_key.unwrap_or(32).max(1) as usize
    }

    /// Most micro-operations in one transaction.
    pub fn max_ops_per_txn(&self) -> usize {
        self.max_ops_per_txn.unwrap_or(4).max(1) as usize
    }
}

/// How the postgres client connects, and the isolation level its transactions ask for.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresWorkload {
    /// The database to connect to; default `postgres`. The client creates its tables there.
    #[serde(default = "default_postgres_database")]
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// The role to connect as.
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
    /// The role's password; without it the client connects without one (trust or peer
    /// authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
    /// The isolation level every transaction runs at: `read-committed`, `repeatable-read` or
    /// `serializable` (default).
    #[serde(default)]
    pub isolation: IsolationLevel,
    /// The isolation level of the `readers`' read-only transactions, default `isolation`. A
    /// hot standby refuses `serializable`; `repeatable-read` reads one snapshot of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_isolation: Option<IsolationLevel>,
}

fn default_postgres_database() -> String {
    "postgres".to_owned()
}

/// Where a password comes from: exactly one of `secretKeyRef` (in a cluster: a key of a
/// Secret in the Chaos's namespace, read by the runner), `env` or `value` (`schism run`).
/// The password itself is never logged, and never written to status or reports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.secretKeyRef) ? 1 : 0) + (has(self.env) ? 1 : 0) + (has(self.value) ? 1 : 0) == 1").message("exactly one of secretKeyRef, env, value must be set")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordSource {
    /// A key of a Secret in the Chaos's namespace (clusters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// An environment variable of `schism run` holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub env: Option<String>,
    /// The password itself, written in the manifest (`schism run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub value: Option<String>,
}

// The password must not reach logs through a `{:?}` of the spec.
impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordSource")
            .field("secret_key_ref", &self.secret_key_ref)
            .field("env", &self.env)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A key of a Secret in the Chaos's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in its data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A SQL isolation level.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationLevel {
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ` (snapshot isolation in PostgreSQL).
    RepeatableRead,
    /// `SERIALIZABLE`.
    #[default]
    Serializable,
}

fn default_keys() -> i32 {
    1
}
fn default_concurrency() -> i32 {
    5
}
fn default_rate() -> i32 {
    100
}
fn default_op_timeout() -> KubeDuration {
    KubeDuration::from_secs(1)
}

/// Which client drives the workload.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// etcd through its v3 JSON gateway.
    Etcd,
    /// Redis over RESP.
    Redis,
    /// Any HTTP key-value service, through request templates.
    Http,
    /// PostgreSQL, through its wire protocol (transactional models only).
    Postgres,
}

/// The data model a history is checked against.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Reads and writes of one value per key.
    Register,
    /// Reads, writes and compare-and-set of one value per key.
    CasRegister,
    /// Get, put and append of a string per key.
    Kv,
    /// Transactions of appends to and reads of integer lists, one per key (Elle's
    /// list-append): the strongest inference of which transaction saw which.
    ListAppend,
    /// Transactions of writes and reads of integer registers, one per key.
    RwRegister,
}

impl ModelKind {
    /// The name as written in a manifest.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
            ModelKind::ListAppend => "list-append",
            ModelKind::RwRegister => "rw-register",
        }
    }

    /// Whether operations are transactions of several keys, checked for an isolation level
    /// rather than linearizability.
    pub fn is_transactional(self) -> bool {
        matches!(self, ModelKind::ListAppend | ModelKind::RwRegister)
    }
}

/// Read consistency of the etcd client.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ReadConsistency {
    /// Reads go through the leader's quorum.
    #[default]
    Linearizable,
    /// Reads are answered locally by any member and may be stale.
    Serializable,
}

/// Request templates of an HTTP key-value service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpWorkload {
    /// Reads one key; `valuePointer` locates the value in the response.
    pub read: HttpRequestTemplate,
    /// Writes one key.
    pub write: HttpRequestTemplate,
    /// Compare-and-set of one key; without it the workload issues no CAS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<HttpRequestTemplate>,
}

/// One templated HTTP request. Placeholders in `path` and `body`: `{key}`, `{value}`,
/// `{expected}`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRequestTemplate {
    /// HTTP method.
    pub method: HttpMethod,
    /// Request path, starting with `/`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/"))]
    pub path: String,
    /// Request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
    /// JSON pointer (RFC 6901) to the value in a read's response, e.g. `/node/value`; without
    /// it the whole body is the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^(/.*)?$"))]
    pub value_pointer: Option<String>,
    /// Status codes that count as success; default 200–299.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(range(min = 100, max = 599)))]
    pub success_status: Option<Vec<i32>>,
    /// For the `cas` request only: status codes that mean the comparison failed and nothing
    /// was written (e.g. `409` or `412`). Such a CAS is recorded as a definite "not swapped",
    /// which the checker holds the history to; without this list it is recorded as an
    /// unknown outcome, since another status cannot be told apart from an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(range(min = 100, max = 599)))]
    pub mismatch_status: Option<Vec<i32>>,
}

/// HTTP methods a request template may use.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET
    Get,
    /// PUT
    Put,
    /// POST
    Post,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
}

/// The availability probe: exactly one of `tcp` or `http`, sent to every pod at an interval.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.tcp) != has(self.http)").message("exactly one of tcp, http must be set"),
    validation = Rule::new("duration(self.interval) >= duration('10ms')").message("interval must be at least 10ms"),
    validation = Rule::new("duration(self.timeout) > duration('0s')").message("timeout must be greater than 0")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Availability {
    /// Probe with a TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// Probe with an HTTP GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Time between probes of one pod, default `1s`, at least `10ms`.
    #[serde(default = "default_probe_interval")]
    pub interval: KubeDuration,
    /// A probe with no answer in this time failed, default `500ms`.
    #[serde(default = "default_probe_timeout")]
    pub timeout: KubeDuration,
}

fn default_probe_interval() -> KubeDuration {
    KubeDuration::from_secs(1)
}
fn default_probe_timeout() -> KubeDuration {
    KubeDuration::from_millis(500)
}

/// What makes the verdict Pass.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.maxRecovery) || duration(self.maxRecovery) > duration('0s')").message("maxRecovery must be greater than 0"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Assertions {
    /// What the workload's history must satisfy: `linearizable` (models register,
    /// cas-register, kv); an isolation level `read-uncommitted`, `read-committed`,
    /// `repeatable-read`, `snapshot-isolation`, `serializable`, `strict-serializable` or a
    /// `strong-session-…`/`strong-snapshot-isolation` variant (models list-append,
    /// rw-register); `none` (default): not checked.
    #[serde(default)]
    pub consistency: ConsistencyAssertion,
    /// Least share (0–1) of successful probes inside the chaos window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_availability: Option<f64>,
    /// Longest time after the last heal until probes succeed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recovery: Option<KubeDuration>,
    /// PromQL queries that must hold: before the experiment (the steady state; if one does
    /// not, no fault is injected and the verdict is Inconclusive), sampled through the chaos
    /// window, or once after recovery. A query that fails, an unreachable server or an
    /// answer without series decides nothing: Inconclusive, never a pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub prometheus: Vec<PrometheusAssertion>,
}

/// One abort guard: exactly one of `availability`, `probeLatency`, `prometheus`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.availability) ? 1 : 0) + (has(self.probeLatency) ? 1 : 0) + (has(self.prometheus) ? 1 : 0) == 1").message("exactly one of availability, probeLatency, prometheus must be set")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortGuard {
    /// Trips when the probes' success ratio over the last `over` falls below `below` (a
    /// rolling window, not the ratio since the start, which hardly moves late in a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<AvailabilityGuard>,
    /// Trips when the 99th percentile latency of the probes answered in the last `over`
    /// exceeds `p99Above`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_latency: Option<LatencyGuard>,
    /// Trips at the first failed sample of the `during` Prometheus assertion of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub prometheus: Option<String>,
}

/// A floor on the probes' success ratio over a rolling window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("duration(self.over) > duration('0s')").message("over must be greater than 0"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailabilityGuard {
    /// The least share (0–1) of probes that must succeed.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub below: f64,
    /// The window, e.g. `10s`; the guard looks only once a full window has passed.
    pub over: KubeDuration,
}

/// A ceiling on the probes' 99th percentile latency over a rolling window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("duration(self.over) > duration('0s')").message("over must be greater than 0"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyGuard {
    /// The highest 99th percentile latency allowed, e.g. `500ms`.
    pub p99_above: KubeDuration,
    /// The window, e.g. `10s`.
    pub over: KubeDuration,
}

/// One Prometheus assertion: every series its query returns must meet `expect`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("duration(self.interval) >= duration('1s')").message("interval must be at least 1s")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusAssertion {
    /// Its name, unique among the assertions: a JUnit test case and a status entry.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Prometheus's base URL, e.g. `http://prometheus.monitoring:9090`; default the
    /// operator's (the chart's `prometheus.url`), or `schism run --prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub url: Option<String>,
    /// A PromQL instant query, e.g. `sum(rate(http_requests_total{code=~"5.."}[30s]))`.
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,
    /// What every series must meet: an operator `<`, `<=`, `>`, `>=`, `==` or `!=` and a
    /// number, e.g. `< 0.05`.
    #[schemars(
        length(min = 2, max = 64),
        regex(pattern = r"^\s*(<=|>=|==|!=|<|>)\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?\s*$")
    )]
    pub expect: String,
    /// `before` the experiment, `during` its window (default), or `after` recovery (past
    /// `maxRecovery`, or a second after the window).
    #[serde(default)]
    pub when: PrometheusWhen,
    /// `during` only: time between samples, default `5s`, at least `1s`.
    #[serde(default = "default_prometheus_interval")]
    pub interval: KubeDuration,
}

fn default_prometheus_interval() -> KubeDuration {
    KubeDuration::from_secs(5)
}

/// When a Prometheus assertion is evaluated.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PrometheusWhen {
    /// Once, before anything is injected: the steady state.
    Before,
    /// At every `interval` through the chaos window.
    #[default]
    During,
    /// Once, after recovery.
    After,
}

impl PrometheusWhen {
    /// `before`, `during` or `after`.
    pub fn name(self) -> &'static str {
        match self {
            PrometheusWhen::Before => "before",
            PrometheusWhen::During => "during",
            PrometheusWhen::After => "after",
        }
    }
}

/// The consistency property asserted of the history.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConsistencyAssertion {
    /// Every operation appears to take effect atomically between its call and its return.
    Linearizable,
    /// No write cycles (G0).
    ReadUncommitted,
    /// No G0, no aborted, intermediate or circular reads (G1a, G1b, G1c).
    ReadCommitted,
    /// Read committed, and no item anti-dependency cycles (G2-item).
    RepeatableRead,
    /// Read committed, no G-single and no G-nonadjacent; write skew is allowed.
    SnapshotIsolation,
    /// Snapshot isolation that also respects each client's order.
    StrongSessionSnapshotIsolation,
    /// Snapshot isolation that also respects real time.
    StrongSnapshotIsolation,
    /// No dependency cycles: some serial order explains every transaction.
    Serializable,
    /// Serializable, respecting each client's order.
    StrongSessionSerializable,
    /// Serializable, respecting real time.
    StrictSerializable,
    /// Not checked.
    #[default]
    None,
}

impl ConsistencyAssertion {
    /// Whether this asserts an isolation level of transactions.
    pub fn is_transactional(self) -> bool {
        !matches!(
            self,
            ConsistencyAssertion::Linearizable | ConsistencyAssertion::None
        )
    }

    /// The name as written in a manifest.
    pub fn name(self) -> &'static str {
        use ConsistencyAssertion as C;
        match self {
            C::Linearizable => "linearizable",
            C::ReadUncommitted => "read-uncommitted",
            C::ReadCommitted => "read-committed",
            C::RepeatableRead => "repeatable-read",
            C::SnapshotIsolation => "snapshot-isolation",
            C::StrongSessionSnapshotIsolation => "strong-session-snapshot-isolation",
            C::StrongSnapshotIsolation => "strong-snapshot-isolation",
            C::Serializable => "serializable",
            C::StrongSessionSerializable => "strong-session-serializable",
            C::StrictSerializable => "strict-serializable",
            C::None => "none",
        }
    }
}

#[cfg(test)]
mod workload_tests {
    use super::*;

    fn workload(yaml: &str) -> Workload {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_runs_identity_ignores_suspend_and_nothing_else() {
        let spec = |yaml: &str| -> ChaosSpec { serde_yaml::from_str(yaml).unwrap() };
        let running = spec("target: {statefulSet: etcd}\nduration: 10s");
        let suspended = spec("target: {statefulSet: etcd}\nduration: 10s\nsuspend: true");
        let longer = spec("target: {statefulSet: etcd}\nduration: 20s\nsuspend: true");
        assert_eq!(running.run_identity(), suspended.run_identity());
        assert_ne!(running.run_identity(), longer.run_identity());
        assert_eq!(running.run_identity().len(), 16);
    }

    #[test]
    fn the_model_defaults_by_client() {
        let http = "{client: http, port: 80, http: {read: {method: GET, path: /r}, write: {method: PUT, path: /w}}}";
        assert_eq!(workload(http).model(), ModelKind::Register);
        let with_cas = "{client: http, port: 80, http: {read: {method: GET, path: /r}, write: {method: PUT, path: /w}, cas: {method: POST, path: /c}}}";
        assert_eq!(workload(with_cas).model(), ModelKind::CasRegister);
        assert_eq!(workload("{client: etcd}").model(), ModelKind::CasRegister);
        assert_eq!(workload("{client: redis}").model(), ModelKind::CasRegister);
        assert_eq!(
            workload("{client: postgres, postgres: {user: u}}").model(),
            ModelKind::ListAppend
        );
        assert_eq!(
            workload("{client: etcd, model: kv}").model(),
            ModelKind::Kv,
            "a model given is kept"
        );
    }
}
