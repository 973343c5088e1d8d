//! `schism controller`: the operator's controller, run in the cluster (Deployment).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::RunnerSpec;
use crate::operator::clock::SystemClock;
use crate::operator::controller::{self, Context, job::RunnerTemplate};
use crate::operator::targets::BlastRadius;
use crate::operator::{halt, leader, metrics, schedule};

/// Arguments of `schism controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Watch Chaos objects only in this namespace (default: all namespaces).
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// Namespaces experiments may touch, comma-separated (default: any). A Chaos elsewhere is
    /// rejected with a condition and an Event.
    #[arg(long, value_delimiter = ',')]
    pub allowed_namespaces: Vec<String>,
    /// The most pods one experiment may affect; more is rejected, never trimmed.
    #[arg(long, default_value_t = 10)]
    pub max_pods: usize,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
    /// Time budget of each consistency check (in the runner).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// Prometheus for assertions that name no `url` (passed on to every runner).
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Where the emergency stop (`schism halt`) lives: the namespace Schism runs in.
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE")]
    pub halt_namespace: Option<String>,
    /// Lead only while holding this coordination Lease (safe with several replicas).
    #[arg(long, default_value = "schism-controller")]
    pub leader_lease: String,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    pub leader_lease_namespace: Option<String>,
    /// Skip leader election. Safe with several replicas too: runner Jobs are made once per
    /// generation whoever makes them; election only saves duplicate API calls.
    #[arg(long)]
    pub no_leader_election: bool,
    /// The image of runner pods (the operator's own image).
    #[arg(long, env = "SCHISM_RUNNER_IMAGE")]
    pub runner_image: String,
    /// `imagePullPolicy` of runner pods.
    #[arg(long)]
    pub runner_image_pull_policy: Option<String>,
    /// The ServiceAccount runner pods run as, in each namespace experiments may run in.
    #[arg(long, default_value = "schism-runner")]
    pub runner_service_account: String,
    /// Defaults of `spec.runner` (resources, nodeSelector, tolerations), as JSON.
    #[arg(long, default_value = "{}", value_parser = parse_runner_defaults)]
    pub runner_defaults: RunnerSpec,
    /// How long finished runner Jobs (and their logs) are kept.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub runner_keep_finished: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::api::duration::parse(text).map_err(|e| e.to_string())
}

fn parse_runner_defaults(text: &str) -> Result<RunnerSpec, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| format!("--runner-defaults: {}: {}", e.path(), e.inner()))
}

/// Runs the controller until a shutdown signal; returns the exit code.
pub fn run(args: &ControllerArgs, log_json: bool) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    runtime.block_on(async {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(e) => {
                eprintln!("schism controller: cannot reach the Kubernetes API: {e}");
                return 1;
            }
        };
        let metrics = Arc::new(metrics::Metrics::default());
        match metrics::serve(args.metrics_address, Arc::clone(&metrics)).await {
            Ok(address) => tracing::info!(%address, "serving /metrics, /healthz, /readyz"),
            Err(e) => {
                eprintln!(
                    "schism controller: cannot listen on {}: {e}",
                    args.metrics_address
                );
                return 1;
            }
        }
        if let Err(e) = client.apiserver_version().await {
            eprintln!("schism controller: the Kubernetes API does not answer: {e}");
            return 1;
        }
        // Ready whether or not this replica leads: a standby that is not Ready would keep a
        // rolling upgrade from ever replacing the old leader.
        metrics.set_ready(true);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::operator::termination_signal().await;
            let _ = stop.send(true);
        });
        let shutdown = {
            let stopped = stopped.clone();
            move || {
                let mut stopped = stopped.clone();
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }
            }
        };
        let lease = (!args.no_leader_election).then(|| {
            let namespace = args
                .leader_lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".into());
            (namespace, args.leader_lease.clone(), leader::identity())
        });
        let leadership = match &lease {
            None => None,
            Some((namespace, name, identity)) => tokio::select! {
                held = leader::lead(client.clone(), namespace, name, identity) => Some(held),
                _ = shutdown() => return 0,
            },
        };
        let radius = BlastRadius {
            allowed_namespaces: args.allowed_namespaces.clone(),
            max_pods: args.max_pods,
        };
        let runner = RunnerTemplate {
            image: args.runner_image.clone(),
            image_pull_policy: args.runner_image_pull_policy.clone(),
            service_account: args.runner_service_account.clone(),
            defaults: args.runner_defaults.clone(),
            check_timeout: args.check_timeout,
            prometheus_url: args.prometheus_url.clone(),
            halt_namespace: args.halt_namespace.clone(),
            max_pods: args.max_pods,
            log_level: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            log_json,
            keep_finished: args.runner_keep_finished,
        };
        let schedules = Arc::new(schedule::Context {
            client: client.clone(),
            metrics: Arc::clone(&metrics),
            clock: Arc::new(SystemClock),
        });
        let mut ctx = Context::new(client.clone(), radius, runner, metrics);
        ctx.halt = args
            .halt_namespace
            .as_deref()
            .map(|namespace| halt::watch_halt(client.clone(), namespace));
        let ctx = Arc::new(ctx);
        // Experiments and schedules under one leadership: both run, both stop on shutdown.
        let namespace = args.watch_namespace.as_deref();
        let controller = async {
            tokio::join!(
                controller::run(ctx, namespace, shutdown()),
                schedule::run(schedules, namespace, shutdown()),
            );
        };
        let code = match leadership {
            None => {
                controller.await;
                0
            }
            Some(lost) => {
                tokio::select! {
                    _ = controller => 0,
                    _ = lost => {
                        // Another replica may lead now; step down at once.
                        eprintln!("schism controller: lost the leader lease; exiting");
                        return 1;
                    }
                }
            }
        };
        if let Some((namespace, name, identity)) = &lease {
            leader::release(client, namespace, name, identity).await;
        }
        code
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_defaults_read_as_the_chart_renders_them() {
        let defaults = parse_runner_defaults(
            r#"{"nodeSelector":{"workload":"chaos"},"resources":{"limits":{"memory":"2Gi"},"requests":{"cpu":"200m","memory":"256Mi"}},"tolerations":[{"effect":"NoSchedule","key":"dedicated","operator":"Equal","value":"chaos"}]}"#,
        )
        .unwrap();
        assert_eq!(defaults.node_selector["workload"], "chaos");
        let limits = defaults.resources.unwrap().limits.unwrap();
        assert_eq!(limits.memory.as_deref(), Some("2Gi"));
        assert_eq!(defaults.tolerations.len(), 1);
    }

    #[test]
    fn a_wrong_runner_default_names_its_field() {
        let error = parse_runner_defaults(r#"{"resources":{"limits":{"memory":2}}}"#).unwrap_err();
        assert!(error.contains("resources.limits.memory"), "{error}");
        let error = parse_runner_defaults(r#"{"nodeSelectr":{}}"#).unwrap_err();
        assert!(error.contains("nodeSelectr"), "{error}");
    }
}
