//! Reads what an experiment targets from the API: the workload's pod selector, its governing
//! Service, and its pods, resolved by [`targets::resolve`](super::targets::resolve).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::targets::{self, BlastRadius, TargetError, TargetPod};
use crate::api::Chaos;

/// The target of a Chaos as the API shows it now.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// The pods, in name order.
    pub pods: Vec<TargetPod>,
    /// The selector their workload selects pods by.
    pub selector: LabelSelector,
    /// For a StatefulSet: its governing Service, which gives pods stable DNS names.
    pub service: Option<String>,
}

impl ResolvedTarget {
    /// How clients reach each pod: a StatefulSet pod by its stable DNS name (its IP changes
    /// when it is recreated), any other pod by its IP.
    pub fn hosts(&self, namespace: &str) -> Vec<String> {
        self.pods
            .iter()
            .map(|p| match &self.service {
                Some(service) => format!("{}.{service}.{namespace}.svc", p.name),
                None => p.ip.clone(),
            })
            .collect()
    }
}

/// Why a target could not be resolved: a condition reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError {
    /// CamelCase condition reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl From<TargetError> for LookupError {
    fn from(error: TargetError) -> Self {
        let reason = match error {
            TargetError::TooManyPods { .. } => "BlastRadiusExceeded",
            TargetError::NamespaceNotAllowed { .. } => "NamespaceNotAllowed",
            TargetError::NoPods(_) => "NoTargetPods",
            TargetError::LocalTarget => "LocalTarget",
        };
        LookupError {
            reason,
            message: error.to_string(),
        }
    }
}

/// The pod selector of the Chaos's target, and for a StatefulSet its governing Service.
pub async fn target_selector(
    client: &Client,
    chaos: &Chaos,
) -> Result<(LabelSelector, Option<String>), LookupError> {
    let namespace = chaos.namespace().unwrap_or_default();
    let target = &chaos.spec.target;
    let not_found = |message: String| LookupError {
        reason: "TargetNotFound",
        message,
    };
    if let Some(name) = &target.deployment {
        let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace)
            .get_opt(name)
            .await
            .map_err(|e| not_found(format!("reading deployment {name}: {e}")))?
            .ok_or_else(|| {
                not_found(format!(
                    "deployment {name} not found in namespace {namespace}"
                ))
            })?;
        return Ok((
            deployment.spec.map(|s| s.selector).unwrap_or_default(),
            None,
        ));
    }
    if let Some(name) = &target.stateful_set {
        let set = Api::<StatefulSet>::namespaced(client.clone(), &namespace)
            .get_opt(name)
            .await
            .map_err(|e| not_found(format!("reading statefulSet {name}: {e}")))?
            .ok_or_else(|| {
                not_found(format!(
                    "statefulSet {name} not found in namespace {namespace}"
                ))
            })?;
        let spec = set.spec.unwrap_or_default();
        return Ok((spec.selector, spec.service_name.filter(|s| !s.is_empty())));
    }
    Ok((target.selector.clone().unwrap_or_default(), None))
}

/// The Chaos's target pods now, within the blast radius.
pub async fn resolve_target(
    client: &Client,
    chaos: &Chaos,
    radius: &BlastRadius,
) -> Result<ResolvedTarget, LookupError> {
    let namespace = chaos.namespace().unwrap_or_default();
    targets::check_namespace(&namespace, radius)?;
    let (selector, service) = target_selector(client, chaos).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector_string(&selector)))
        .await
        .map_err(|e| LookupError {
            reason: "TargetNotFound",
            message: format!("listing the target's pods: {e}"),
        })?;
    let pods = targets::resolve(&chaos.spec.target, &selector, &pods.items, radius)?;
    Ok(ResolvedTarget {
        pods,
        selector,
        service,
    })
}

/// A label selector as the API's `labelSelector` query parameter writes it. Only
/// `matchLabels` narrow the list on the server; `targets::resolve` applies the whole selector.
pub fn selector_string(selector: &LabelSelector) -> String {
    selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
