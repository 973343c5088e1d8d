//! Which pods an experiment may touch (pure): the target's ready pods, inside the operator's
//! blast radius — an experiment that would need more is rejected, never silently trimmed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::Target;

/// The limits the operator was started with.
#[derive(Debug, Clone, Default)]
pub struct BlastRadius {
    /// Namespaces experiments may run in; empty means every namespace.
    pub allowed_namespaces: Vec<String>,
    /// The most pods one experiment may affect.
    pub max_pods: usize,
}

/// A pod an experiment targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPod {
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Node it runs on.
    pub node_name: String,
    /// Pod IP.
    pub ip: String,
}

/// Why targets cannot be had; each is a condition reason and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The namespace is not in the operator's list.
    #[error(
        "namespace {namespace:?} is not among the namespaces this operator may touch ({allowed})"
    )]
    NamespaceNotAllowed {
        /// The Chaos's namespace.
        namespace: String,
        /// The allowed list, joined.
        allowed: String,
    },
    /// More pods than the blast radius allows.
    #[error(
        "the target has {pods} ready pods but this operator may affect at most {max} in one experiment"
    )]
    TooManyPods {
        /// Ready target pods.
        pods: usize,
        /// The limit.
        max: usize,
    },
    /// No ready pod matches.
    #[error("no ready pod matches {0}")]
    NoPods(String),
    /// The target kind does not run in a cluster.
    #[error(
        "spec.target.local runs only with `schism run`; in a cluster use deployment, statefulSet or selector"
    )]
    LocalTarget,
}

/// Checks the namespace against the blast radius.
pub fn check_namespace(namespace: &str, radius: &BlastRadius) -> Result<(), TargetError> {
    if radius.allowed_namespaces.is_empty()
        || radius.allowed_namespaces.iter().any(|n| n == namespace)
    {
        Ok(())
    } else {
        Err(TargetError::NamespaceNotAllowed {
            namespace: namespace.to_owned(),
            allowed: radius.allowed_namespaces.join(", "),
        })
    }
}

/// A pod is a target when it is Ready, running on a node, has an IP and is not terminating.
fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    ready
        && pod.metadata.deletion_timestamp.is_none()
        && status.and_then(|s| s.pod_ip.as_ref()).is_some()
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some()
}

/// Does `selector` match these labels? (matchLabels and matchExpressions.)
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// The pods that `selector` matches and that are ready, in name order.
pub fn ready_pods<'a>(
    selector: &LabelSelector,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Vec<TargetPod> {
    let mut chosen: Vec<TargetPod> = pods
        .into_iter()
        .filter(|p| {
            selector_matches(
                selector,
                p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
            )
        })
        .filter(|p| is_ready(p))
        .map(|p| TargetPod {
            name: p.metadata.name.clone().unwrap_or_default(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            node_name: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            ip: p
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default(),
        })
        .collect();
    chosen.sort_by(|a, b| a.name.cmp(&b.name));
    chosen
}

/// The target's ready pods, sorted by name (so a seed picks the same pods every time), within
/// the blast radius. `selector` is the workload's pod selector (for a Deployment or
/// StatefulSet target) or `spec.target.selector`.
pub fn resolve(
    target: &Target,
    selector: &LabelSelector,
    pods: &[Pod],
    radius: &BlastRadius,
) -> Result<Vec<TargetPod>, TargetError> {
    if target.local.is_some() {
        return Err(TargetError::LocalTarget);
    }
    let chosen = ready_pods(selector, pods);
    if chosen.is_empty() {
        let what = match (&target.deployment, &target.stateful_set) {
            (Some(d), _) => format!("deployment {d}"),
            (_, Some(s)) => format!("statefulSet {s}"),
            _ => "spec.target.selector".to_owned(),
        };
        return Err(TargetError::NoPods(what));
    }
    if radius.max_pods > 0 && chosen.len() > radius.max_pods {
        return Err(TargetError::TooManyPods {
            pods: chosen.len(),
            max: radius.max_pods,
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};

    pub(crate) fn pod(name: &str, app: &str, ready: bool) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod.metadata.labels = Some([("app".to_owned(), app.to_owned())].into());
        pod.spec = Some(PodSpec {
            node_name: Some("node-a".into()),
            ..Default::default()
        });
        pod.status = Some(PodStatus {
            pod_ip: Some(format!("10.0.0.{}", name.len())),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    fn selector(app: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some([("app".to_owned(), app.to_owned())].into()),
            ..Default::default()
        }
    }

    fn target() -> Target {
        Target {
            stateful_set: Some("etcd".into()),
            ..Default::default()
        }
    }

    #[test]
    fn only_ready_matching_pods_in_name_order() {
        let pods = vec![
            pod("etcd-2", "etcd", true),
            pod("etcd-0", "etcd", true),
            pod("etcd-1", "etcd", false),
            pod("web-0", "web", true),
        ];
        let radius = BlastRadius {
            max_pods: 10,
            ..Default::default()
        };
        let chosen = resolve(&target(), &selector("etcd"), &pods, &radius).unwrap();
        let names: Vec<&str> = chosen.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["etcd-0", "etcd-2"]);
    }

    #[test]
    fn more_pods_than_the_blast_radius_is_rejected_not_trimmed() {
        let pods: Vec<Pod> = (0..5)
            .map(|i| pod(&format!("etcd-{i}"), "etcd", true))
            .collect();
        let radius = BlastRadius {
            max_pods: 3,
            ..Default::default()
        };
        assert_eq!(
            resolve(&target(), &selector("etcd"), &pods, &radius),
            Err(TargetError::TooManyPods { pods: 5, max: 3 })
        );
    }

    #[test]
    fn namespaces_outside_the_list_are_refused() {
        let radius = BlastRadius {
            allowed_namespaces: vec!["demo".into()],
            max_pods: 3,
        };
        assert!(check_namespace("demo", &radius).is_ok());
        assert!(matches!(
            check_namespace("prod", &radius),
            Err(TargetError::NamespaceNotAllowed { .. })
        ));
        assert!(check_namespace("anything", &BlastRadius::default()).is_ok());
    }

    #[test]
    fn local_targets_and_empty_targets_are_errors() {
        let local = Target {
            local: Some(
                serde_yaml::from_str("{nodes: 1, command: x, ready: {tcp: {port: 1}}}").unwrap(),
            ),
            ..Default::default()
        };
        assert_eq!(
            resolve(&local, &selector("etcd"), &[], &BlastRadius::default()),
            Err(TargetError::LocalTarget)
        );
        assert!(matches!(
            resolve(&target(), &selector("etcd"), &[], &BlastRadius::default()),
            Err(TargetError::NoPods(_))
        ));
    }

    #[test]
    fn set_based_selectors_match_like_the_api_server() {
        let labels: BTreeMap<String, String> = [
            ("app".to_owned(), "etcd".to_owned()),
            ("tier".to_owned(), "db".to_owned()),
        ]
        .into();
        let expr = |op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: op.into(),
                    values: Some(values.iter().map(|v| v.to_string()).collect()),
                },
            ]),
            ..Default::default()
        };
        assert!(selector_matches(&expr("In", &["db", "cache"]), &labels));
        assert!(!selector_matches(&expr("NotIn", &["db"]), &labels));
        assert!(selector_matches(&expr("Exists", &[]), &labels));
        assert!(!selector_matches(&expr("DoesNotExist", &[]), &labels));
    }
}
