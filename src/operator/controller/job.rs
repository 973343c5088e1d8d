//! The runner Job of one generation of a Chaos (pure).
//!
//! Kubernetes' Job machinery, not the controller, runs and isolates an experiment: one Job per
//! generation, named after the Chaos's UID and generation and created only if absent (two
//! controllers that overlap make one Job), never retried (`backoffLimit: 0`,
//! `restartPolicy: Never`), bounded by `activeDeadlineSeconds`, and owned by the Chaos so it
//! goes with it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use crate::api::{Chaos, ResourceAmounts, RunnerResources, RunnerSpec};
use crate::operator::labels::{
    CHAOS_NAME_ANNOTATION, CHAOS_UID_LABEL, COMPONENT_LABEL, GENERATION_LABEL, RUNNER_COMPONENT,
};

/// How the controller makes runner pods: the operator's defaults, which a Chaos's
/// `spec.runner` overrides field by field.
#[derive(Debug, Clone)]
pub struct RunnerTemplate {
    /// The image (the operator's own).
    pub image: String,
    /// `imagePullPolicy`, if set.
    pub image_pull_policy: Option<String>,
    /// The ServiceAccount runner pods run as; it must exist in the Chaos's namespace.
    pub service_account: String,
    /// Defaults for resources, node selector and tolerations.
    pub defaults: RunnerSpec,
    /// The consistency check's time budget.
    pub check_timeout: Duration,
    /// Where Prometheus assertions without a `url` send their queries.
    pub prometheus_url: Option<String>,
    /// The namespace of the emergency stop runners obey (`schism halt`).
    pub halt_namespace: Option<String>,
    /// The most pods one experiment may affect.
    pub max_pods: usize,
    /// `RUST_LOG` of the runner.
    pub log_level: String,
    /// Log JSON lines.
    pub log_json: bool,
    /// How long a finished Job (and its pod, with its logs) is kept.
    pub keep_finished: Duration,
}

/// Time a runner needs beyond the chaos window and its check: start-up, heals, the report.
const RUNNER_MARGIN: Duration = Duration::from_secs(300);
/// How long a runner has to heal its faults when its pod is stopped.
pub const RUNNER_GRACE_SECONDS: i64 = 30;

/// The Job's name, fixed by the Chaos's UID and generation: at most 63 characters (Job names
/// become label values), readable (`etcd-partition-1f2e3d4c-g2`), never ending in `-`.
pub fn job_name(chaos_name: &str, uid: &str, generation: i64) -> String {
    let mut prefix: String = chaos_name.chars().take(30).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    let prefix = prefix.replace('.', "-");
    let short_uid: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("{prefix}-{short_uid}-g{generation}")
}

/// The labels every runner Job and pod of this Chaos carries.
pub fn runner_labels(uid: &str, generation: i64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CHAOS_UID_LABEL.to_owned(), uid.to_owned()),
        (GENERATION_LABEL.to_owned(), generation.to_string()),
        (COMPONENT_LABEL.to_owned(), RUNNER_COMPONENT.to_owned()),
        ("app.kubernetes.io/name".to_owned(), "schism".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "schism-controller".to_owned(),
        ),
    ])
}

/// How long the whole run may take: the window, the recovery tail, the check, a margin.
pub fn active_deadline(chaos: &Chaos, check_timeout: Duration) -> Duration {
    let tail = chaos
        .spec
        .assertions
        .as_ref()
        .and_then(|a| a.max_recovery)
        .map(|r| r.get() + Duration::from_secs(1))
        .unwrap_or(Duration::from_secs(1));
    chaos.spec.duration.get() + tail + check_timeout + RUNNER_MARGIN
}

fn amounts(amounts: &Option<ResourceAmounts>) -> Option<BTreeMap<String, Quantity>> {
    let amounts = amounts.as_ref()?;
    let map: BTreeMap<String, Quantity> = [("cpu", &amounts.cpu), ("memory", &amounts.memory)]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name.to_owned(), Quantity(v))))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// The spec's resources over the defaults, amount by amount.
fn merged_resources(
    spec: Option<&RunnerResources>,
    defaults: Option<&RunnerResources>,
) -> RunnerResources {
    let pick = |own: Option<&ResourceAmounts>, default: Option<&ResourceAmounts>| {
        let cpu = own
            .and_then(|a| a.cpu.clone())
            .or_else(|| default.and_then(|a| a.cpu.clone()));
        let memory = own
            .and_then(|a| a.memory.clone())
            .or_else(|| default.and_then(|a| a.memory.clone()));
        (cpu.is_some() || memory.is_some()).then_some(ResourceAmounts { cpu, memory })
    };
    RunnerResources {
        requests: pick(
            spec.and_then(|s| s.requests.as_ref()),
            defaults.and_then(|d| d.requests.as_ref()),
        ),
        limits: pick(
            spec.and_then(|s| s.limits.as_ref()),
            defaults.and_then(|d| d.limits.as_ref()),
        ),
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The runner Job for the Chaos's current generation.
pub fn runner_job(chaos: &Chaos, template: &RunnerTemplate) -> Job {
    let name = chaos.metadata.name.clone().unwrap_or_default();
    let namespace = chaos.metadata.namespace.clone().unwrap_or_default();
    let uid = chaos.metadata.uid.clone().unwrap_or_default();
    let generation = chaos.metadata.generation.unwrap_or(0);
    let labels = runner_labels(&uid, generation);
    let own = chaos.spec.runner.as_ref();
    let defaults = &template.defaults;
    let resources = merged_resources(
        own.and_then(|r| r.resources.as_ref()),
        defaults.resources.as_ref(),
    );
    let node_selector = match own.map(|r| &r.node_selector) {
        Some(selector) if !selector.is_empty() => selector.clone(),
        _ => defaults.node_selector.clone(),
    };
    let tolerations: Vec<Toleration> = match own.map(|r| &r.tolerations) {
        Some(tolerations) if !tolerations.is_empty() => tolerations.clone(),
        _ => defaults.tolerations.clone(),
    };
    let mut args: Vec<String> = vec![
        "runner".into(),
        format!("--namespace={namespace}"),
        format!("--name={name}"),
        format!("--uid={uid}"),
        format!("--generation={generation}"),
        format!("--max-pods={}", template.max_pods),
        format!(
            "--check-timeout={}",
            crate::api::duration::format(template.check_timeout)
        ),
    ];
    if template.log_json {
        args.push("--log-json".into());
    }
    if let Some(url) = &template.prometheus_url {
        args.push(format!("--prometheus-url={url}"));
    }
    if let Some(namespace) = &template.halt_namespace {
        args.push(format!("--halt-namespace={namespace}"));
    }
    let deadline = active_deadline(chaos, template.check_timeout);
    let container = Container {
        name: "runner".into(),
        image: Some(template.image.clone()),
        image_pull_policy: template.image_pull_policy.clone(),
        args: Some(args),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            EnvVar {
                name: "RUST_LOG".into(),
                value: Some(template.log_level.clone()),
                ..Default::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            requests: amounts(&resources.requests),
            limits: amounts(&resources.limits),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // A runner that dies says why in its last log lines.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let owner = OwnerReference {
        api_version: crate::api::API_VERSION.into(),
        kind: "Chaos".into(),
        name: name.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, &uid, generation)),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                CHAOS_NAME_ANNOTATION.to_owned(),
                name.clone(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(deadline.as_secs() as i64),
            ttl_seconds_after_finished: Some(template.keep_finished.as_secs() as i32),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([
                        (CHAOS_NAME_ANNOTATION.to_owned(), name),
                        // Moving a runner ends its run Inconclusive; do not do it to save a node.
                        (
                            "cluster-autoscaler.kubernetes.io/safe-to-evict".to_owned(),
                            "false".to_owned(),
                        ),
                    ])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(template.service_account.clone()),
                    termination_grace_period_seconds: Some(RUNNER_GRACE_SECONDS),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    node_selector: (!node_selector.is_empty()).then_some(node_selector),
                    tolerations: (!tolerations.is_empty()).then_some(tolerations),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(runner: &str) -> Chaos {
        let spec = serde_yaml::from_str(&format!(
            "target: {{statefulSet: etcd}}\nduration: 60s\nassertions: {{maxRecovery: 10s}}\navailability: {{tcp: {{port: 1}}}}\n{runner}"
        ))
        .unwrap();
        let mut chaos = Chaos::new("etcd-partition", spec);
        chaos.metadata.namespace = Some("demo".into());
        chaos.metadata.uid = Some("1F2E3D4C-aaaa-bbbb-cccc-1234567890ab".into());
        chaos.metadata.generation = Some(2);
        chaos
    }

    fn template() -> RunnerTemplate {
        RunnerTemplate {
            image: "schism:0.1.0".into(),
            image_pull_policy: Some("IfNotPresent".into()),
            service_account: "schism-runner".into(),
            defaults: serde_yaml::from_str(
                "resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 512Mi}}\ntolerations: [{operator: Exists}]",
            )
            .unwrap(),
            check_timeout: Duration::from_secs(300),
            prometheus_url: None,
            halt_namespace: Some("schism-system".into()),
            max_pods: 10,
            log_level: "info".into(),
            log_json: false,
            keep_finished: Duration::from_secs(86400),
        }
    }

    #[test]
    fn job_names_are_fixed_by_uid_and_generation_and_fit_a_label() {
        assert_eq!(
            job_name("etcd-partition", "1F2E3D4C-aaaa", 2),
            "etcd-partition-1f2e3d4c-g2"
        );
        let long = job_name(&format!("{}-x", "a".repeat(29)), "12345678", i64::MAX);
        assert!(long.len() <= 63, "{long}");
        assert!(!long.contains("--"), "{long}");
        assert_eq!(job_name("a.b", "1", 1), "a-b-1-g1");
    }

    #[test]
    fn the_job_runs_once_within_a_deadline_and_belongs_to_its_chaos() {
        let job = runner_job(&chaos(""), &template());
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        // 60 s window + 11 s recovery tail + 300 s check + 300 s margin.
        assert_eq!(spec.active_deadline_seconds, Some(671));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some("schism-runner"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Chaos", Some(true))
        );
        let args = pod.containers[0].args.as_ref().unwrap();
        assert!(args.contains(&"--generation=2".to_owned()), "{args:?}");
        let security = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(job.metadata.labels.as_ref().unwrap()[GENERATION_LABEL], "2");
    }

    #[test]
    fn spec_runner_overrides_the_defaults_amount_by_amount() {
        let job = runner_job(
            &chaos("runner: {resources: {limits: {memory: 2Gi}}, nodeSelector: {pool: chaos}}"),
            &template(),
        );
        let pod = job.spec.unwrap().template.spec.unwrap();
        let resources = pod.containers[0].resources.clone().unwrap();
        assert_eq!(resources.limits.unwrap()["memory"], Quantity("2Gi".into()));
        assert_eq!(resources.requests.unwrap()["cpu"], Quantity("100m".into()));
        assert_eq!(pod.node_selector.unwrap()["pool"], "chaos");
        assert_eq!(
            pod.tolerations.unwrap().len(),
            1,
            "defaults where the spec is silent"
        );
    }
}
