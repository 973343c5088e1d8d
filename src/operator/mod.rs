//! The Kubernetes backend: the controller that turns `Chaos` objects into runner Jobs, the
//! runner that carries out one experiment, the node agent that applies `FaultLease`s on its
//! node, leader election and the operational endpoints.

pub mod agent;
pub mod clock;
pub mod conditions;
pub mod controller;
pub mod events;
pub mod halt;
pub mod labels;
pub mod leader;
pub mod lookup;
pub mod metrics;
pub mod runner;
pub mod schedule;
pub mod targets;

/// Resolves on SIGTERM (what the kubelet sends) or Ctrl-C.
pub async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
