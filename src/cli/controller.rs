//! `schism controller`: the operator's controller, run in the cluster (Deployment).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::operator::controller::{self, Context, targets::BlastRadius};
use crate::operator::{leader, metrics};

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
    /// Time budget of each linearizability check.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// Run only while holding this coordination Lease (safe with several replicas).
    #[arg(long, default_value = "schism-controller")]
    pub leader_lease: String,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    pub leader_lease_namespace: Option<String>,
    /// Skip leader election (one replica only).
    #[arg(long)]
    pub no_leader_election: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::api::duration::parse(text).map_err(|e| e.to_string())
}

/// Runs the controller until a shutdown signal; returns the exit code.
pub fn run(args: &ControllerArgs) -> i32 {
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
        let leadership = if args.no_leader_election {
            None
        } else {
            let namespace = args
                .leader_lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".into());
            let identity = leader::identity();
            Some(leader::lead(client.clone(), &namespace, &args.leader_lease, &identity).await)
        };
        let radius = BlastRadius {
            allowed_namespaces: args.allowed_namespaces.clone(),
            max_pods: args.max_pods,
        };
        let ctx = Arc::new(Context::new(client, radius, args.check_timeout, metrics));
        let controller = controller::run(ctx, args.watch_namespace.as_deref());
        match leadership {
            None => controller.await,
            Some(lost) => {
                tokio::select! {
                    _ = controller => {}
                    _ = lost => {
                        // Another replica may lead now; stop before two run the same experiment.
                        eprintln!("schism controller: lost the leader lease; exiting");
                        return 1;
                    }
                }
            }
        }
        0
    })
}
