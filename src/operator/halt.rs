//! The emergency stop: one ConfigMap, `schism-halt` in the operator's namespace, that every
//! runner and the controller watch. `schism halt` sets it: every running experiment heals its
//! faults at once and concludes Inconclusive, and new ones wait (a `Halted` condition and
//! Event say why) until `schism halt --lift` clears it.
//!
//! A ConfigMap rather than the leader-election Lease (which does not exist without leader
//! election) or a new resource type: `kubectl get configmap schism-halt` shows it, and the
//! chart grants reading it, by name, to the controller and the runners.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;

/// Name of the halt ConfigMap.
pub const HALT_CONFIGMAP: &str = "schism-halt";
/// Field manager of `schism halt`.
const HALT_MANAGER: &str = "schism-halt";

/// An emergency stop in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    /// Why, as given to `schism halt --reason`.
    pub reason: String,
    /// Since when (RFC 3339).
    pub since: String,
}

impl Halt {
    /// One line for conditions, Events and reasons.
    pub fn describe(&self) -> String {
        format!(
            "the emergency stop is set (since {}): {}; `schism halt --lift` clears it",
            self.since, self.reason
        )
    }
}

/// Whether the ConfigMap says halt (`data.halted: "true"`).
pub fn halt_of(config: &ConfigMap) -> Option<Halt> {
    let data = config.data.as_ref()?;
    (data.get("halted").map(String::as_str) == Some("true")).then(|| Halt {
        reason: data
            .get("reason")
            .cloned()
            .unwrap_or_else(|| "no reason given".into()),
        since: data.get("since").cloned().unwrap_or_default(),
    })
}

/// The ConfigMap's data for a halt (`Some(reason)`) or its lifting (`None`).
pub fn halt_data(reason: Option<&str>, now: Timestamp) -> BTreeMap<String, String> {
    match reason {
        Some(reason) => BTreeMap::from([
            ("halted".to_owned(), "true".to_owned()),
            ("reason".to_owned(), reason.to_owned()),
            ("since".to_owned(), now.to_string()),
        ]),
        None => BTreeMap::from([
            ("halted".to_owned(), "false".to_owned()),
            ("liftedAt".to_owned(), now.to_string()),
        ]),
    }
}

/// Sets (`Some(reason)`) or lifts (`None`) the emergency stop in `namespace`.
pub async fn set(client: Client, namespace: &str, reason: Option<&str>) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let config = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": HALT_CONFIGMAP,
            "labels": {"app.kubernetes.io/part-of": "schism"},
        },
        "data": halt_data(reason, Timestamp::now()),
    });
    api.patch(
        HALT_CONFIGMAP,
        &PatchParams::apply(HALT_MANAGER).force(),
        &Patch::Apply(&config),
    )
    .await
    .map(drop)
}

/// What a watcher of the emergency stop knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaltState {
    /// No answer from the API yet.
    Unknown,
    /// No stop in force.
    Clear,
    /// This stop is in force.
    Halted(Halt),
}

impl HaltState {
    fn of(halt: Option<Halt>) -> Self {
        halt.map_or(HaltState::Clear, HaltState::Halted)
    }

    /// The stop in force, if any.
    pub fn halt(&self) -> Option<&Halt> {
        match self {
            HaltState::Halted(halt) => Some(halt),
            _ => None,
        }
    }
}

/// Waits until the stop is known and not in force.
pub async fn wait_clear(state: &mut watch::Receiver<HaltState>) {
    let _ = state.wait_for(|s| *s == HaltState::Clear).await;
}

/// Waits until a stop is in force, and returns it.
pub async fn wait_halted(state: &mut watch::Receiver<HaltState>) -> Halt {
    match state.wait_for(|s| s.halt().is_some()).await {
        Ok(s) => s
            .halt()
            .cloned()
            .expect("wait_for returns a state that holds a stop"),
        // The watcher is gone: no stop will ever come.
        Err(_) => std::future::pending().await,
    }
}

/// Watches the emergency stop in `namespace`. A watch error keeps the last state (a stop
/// that was seen stays in force) and the watch resumes.
pub fn watch_halt(client: Client, namespace: &str) -> watch::Receiver<HaltState> {
    let (state, receiver) = watch::channel(HaltState::Unknown);
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={HALT_CONFIGMAP}"));
    tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut seen_in_relist = false;
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => {
                    seen_in_relist = true;
                    state.send_replace(HaltState::of(halt_of(&c)));
                }
                Ok(watcher::Event::Delete(_)) => {
                    state.send_replace(HaltState::Clear);
                }
                Ok(watcher::Event::Init) => seen_in_relist = false,
                Ok(watcher::Event::InitDone) => {
                    if !seen_in_relist {
                        state.send_replace(HaltState::Clear);
                    }
                }
                Err(error) => tracing::warn!(%error, "watching the emergency stop"),
            }
            if state.is_closed() {
                break;
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_halted_true_halts_and_the_reason_is_kept() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut config = ConfigMap {
            data: Some(halt_data(Some("prod incident 42"), now)),
            ..Default::default()
        };
        let halt = halt_of(&config).unwrap();
        assert_eq!(halt.reason, "prod incident 42");
        assert!(halt.describe().contains("--lift"));
        config.data = Some(halt_data(None, now));
        assert_eq!(halt_of(&config), None);
        assert_eq!(halt_of(&ConfigMap::default()), None);
    }
}
