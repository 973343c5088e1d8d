//! The `FaultLease`: one network or process fault on one pod, created by the controller and
//! owned by its `Chaos`, applied and reverted by the node agent on the pod's node. Its
//! deadline is enforced by the agent, so a fault ends on time even when the controller is gone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::KubeDuration;

/// One fault on one pod until a deadline.
// The printer columns repeat `type_ = "string"`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "schism.dev",
    version = "v1alpha1",
    kind = "FaultLease",
    plural = "faultleases",
    singular = "faultlease",
    shortname = "fl",
    category = "schism",
    namespaced,
    status = "FaultLeaseStatus",
    doc = "One fault on one pod until a deadline, applied and reverted by the Schism node agent on the pod's node.",
    printcolumn(
        name = "Pod",
        type_ = "string",
        json_path = ".spec.pod.name",
        description = "The pod the fault is applied to"
    ),
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".spec.pod.nodeName",
        description = "The node whose agent applies it"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Applied, Reverted or Failed"
    ),
    printcolumn(
        name = "Deadline",
        type_ = "date",
        json_path = ".spec.deadline",
        description = "When the agent reverts the fault at the latest"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// A lease is a promise to one agent: changing it in place would leave the agent applying
// the old fault, so the controller replaces leases instead of editing them.
#[x_kube(validation = Rule::new("self == oldSelf").message("a FaultLease's spec is immutable; delete it and create a new one"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultLeaseSpec {
    /// Name of the Chaos this lease belongs to (it is also the owner reference).
    pub chaos: String,
    /// The identifier of the fault in the data plane (nftables table names, rule comments);
    /// 1 to 48 letters, digits or '_'.
    #[schemars(length(min = 1, max = 48), regex(pattern = r"^[A-Za-z0-9_]+$"))]
    pub fault_id: String,
    /// The pod the fault is applied to.
    pub pod: LeasePod,
    /// The fault.
    pub fault: LeaseFault,
    /// When the agent reverts the fault at the latest, whatever else happens.
    pub deadline: Time,
}

/// The pod a lease applies to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeasePod {
    /// Pod name.
    pub name: String,
    /// Pod UID: how the agent finds the pod's processes and network namespace.
    pub uid: String,
    /// The node the pod runs on; only that node's agent acts on the lease.
    pub node_name: String,
    /// The pod's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// The fault of a lease: exactly one field is set.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseFault {
    /// Drop all traffic to and from these peer addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<LeasePartition>,
    /// Delay packets arriving at the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LeaseLatency>,
    /// Drop a share of the packets arriving at the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LeaseLoss>,
    /// Limit the pod's outgoing bandwidth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<LeaseBandwidth>,
    /// Freeze the pod's processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<LeasePause>,
}

/// Traffic to and from these peers is dropped.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeasePartition {
    /// IPv4 addresses of the peers cut off.
    #[schemars(length(max = 1024))]
    pub drop_peers: Vec<String>,
}

/// Added latency on arriving packets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseLatency {
    /// Added delay.
    pub delay: KubeDuration,
    /// Random variation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<KubeDuration>,
    /// Only packets from these peers; empty means from everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_peers: Vec<String>,
}

/// Random loss of arriving packets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseLoss {
    /// Share dropped, greater than 0 and at most 100.
    pub percent: f64,
    /// Only packets from these peers; empty means from everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_peers: Vec<String>,
}

/// A bandwidth limit.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseBandwidth {
    /// Rate such as `10mbit`.
    pub rate: String,
}

/// Freezing the pod's processes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeasePause {}

/// What the agent did with a lease.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FaultLeaseStatus {
    /// Pending, Applied, Reverted or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LeasePhase>,
    /// The agent (node name) that acted on the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// How the fault was made, e.g. `nftables`, `netem`, `nfqueue`, `tbf`, `SIGSTOP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// When the fault became active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// When it was reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<Time>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The phase of a lease.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeasePhase {
    /// Not applied yet.
    Pending,
    /// Active on the pod.
    Applied,
    /// Reverted (deleted lease, or deadline passed).
    Reverted,
    /// Could not be applied; see `error`.
    Failed,
}

/// Label on every `FaultLease` naming the node of its pod, so each node agent watches only the
/// leases it must act on (a label selector, where a field selector on a custom resource is not
/// available).
pub const LEASE_NODE_LABEL: &str = "schism.dev/node";

/// The value of [`LEASE_NODE_LABEL`] for a node: its name when it fits a label value (63
/// characters), otherwise a readable head and a hash of the whole name, so every node still
/// selects exactly its own leases.
pub fn node_label_value(node_name: &str) -> String {
    if node_name.len() <= 63 {
        return node_name.to_owned();
    }
    // FNV-1a: stable across versions and platforms, unlike the standard library's hasher.
    let hash = node_name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = node_name.chars().take(46).collect();
    let head = head.trim_end_matches(['-', '.', '_']);
    format!("{head}-{hash:016x}")
}

/// Finalizer on every `FaultLease`: the node agent removes it once the fault is reverted, so a
/// lease cannot disappear while its fault is still active on the pod.
pub const LEASE_FINALIZER: &str = "schism.dev/agent-revert";

#[cfg(test)]
mod tests {
    use super::node_label_value;

    #[test]
    fn long_node_names_become_distinct_valid_label_values() {
        assert_eq!(node_label_value("node-a"), "node-a");
        let long_a = format!(
            "{}-a",
            "ip-10-0-0-1.eu-west-1.compute.internal.example".repeat(2)
        );
        let long_b = format!(
            "{}-b",
            "ip-10-0-0-1.eu-west-1.compute.internal.example".repeat(2)
        );
        let (a, b) = (node_label_value(&long_a), node_label_value(&long_b));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()));
    }
}
