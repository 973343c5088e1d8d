//! The node agent's metrics: faults applied and reverted, what failed, and what it holds now.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::operator::metrics::{Endpoints, render_registry};

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `apply`, `revert` or `api`.
    pub action: String,
}

/// What the agent counts.
pub struct AgentMetrics {
    registry: Registry,
    /// Faults applied.
    pub applied: Counter,
    /// Faults reverted (on deletion, at the deadline, at shutdown).
    pub reverted: Counter,
    failures: Family<FailureLabels, Counter>,
    /// Faults held right now.
    pub held: Gauge,
    ready: AtomicBool,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("schism_agent");
        let applied = Counter::default();
        let reverted = Counter::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let held = Gauge::default();
        registry.register(
            "faults_applied",
            "Faults applied by this agent",
            applied.clone(),
        );
        registry.register(
            "faults_reverted",
            "Faults reverted by this agent",
            reverted.clone(),
        );
        registry.register(
            "failures",
            "Applies, reverts and API calls that failed",
            failures.clone(),
        );
        registry.register(
            "faults_held",
            "Faults this agent holds right now",
            held.clone(),
        );
        Self {
            registry,
            applied,
            reverted,
            failures,
            held,
            ready: AtomicBool::new(false),
        }
    }
}

impl AgentMetrics {
    /// Counts a failure of `action` (`apply`, `revert`, `api`).
    pub fn failed(&self, action: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                action: action.to_owned(),
            })
            .inc();
    }

    /// Marks the agent ready: its start-up reap is done and it watches its node's leases.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

impl Endpoints for AgentMetrics {
    fn metrics(&self) -> String {
        render_registry(&self.registry)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        let metrics = AgentMetrics::default();
        metrics.applied.inc();
        metrics.failed("revert");
        metrics.held.set(2);
        let text = metrics.metrics();
        assert!(
            text.contains("schism_agent_faults_applied_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"schism_agent_failures_total{action="revert"} 1"#),
            "{text}"
        );
        assert!(text.contains("schism_agent_faults_held 2"), "{text}");
        assert!(!metrics.ready());
    }
}
