//! Watch streams: newline-delimited JSON events, resumable from a resourceVersion.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use super::selectors::{FieldSelector, LabelSelector};
use super::store::{ApiError, Change, ChangeType, ResourceId};

/// Which objects a list or watch selects, and how they are presented.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The resource type.
    pub resource: ResourceId,
    /// One namespace, or all of them.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// The client asked for `PartialObjectMetadata` (kube's metadata watcher does).
    pub metadata_only: bool,
}

impl Selection {
    /// True when the object is in the namespace and satisfies both selectors.
    pub fn matches(&self, object: &Value) -> bool {
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.namespace
            .as_deref()
            .is_none_or(|wanted| wanted == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The object as the client asked to see it: whole, or as `PartialObjectMetadata`.
    pub fn present(&self, object: &Value) -> Value {
        if self.metadata_only {
            partial_object_metadata(object)
        } else {
            object.clone()
        }
    }

    /// The watch event a change produces for this selection, if any. An object modified into
    /// the selection is reported as ADDED and one modified out of it as DELETED, as the API
    /// server's watch cache does.
    fn event_for(&self, change: &Change) -> Option<Bytes> {
        if change.resource != self.resource {
            return None;
        }
        let selected_now = self.matches(&change.object);
        let event_type = match change.change_type {
            ChangeType::Added => selected_now.then_some("ADDED")?,
            ChangeType::Deleted => selected_now.then_some("DELETED")?,
            ChangeType::Modified => {
                let selected_before = change.previous.as_ref().is_some_and(|p| self.matches(p));
                match (selected_before, selected_now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
        };
        Some(encode_event(event_type, &self.present(&change.object)))
    }
}

/// The `PartialObjectMetadata` form of an object, which kube's metadata watchers ask for.
pub fn partial_object_metadata(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// One JSON line of a watch response.
pub fn encode_event(event_type: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": event_type, "object": object}))
        .expect("a JSON value always serializes");
    line.push(b'\n');
    Bytes::from(line)
}

/// The ERROR event that ends a watch, carrying a `Status` (410 Gone makes kube relist).
pub fn error_event(error: &ApiError) -> Bytes {
    encode_event("ERROR", &error.to_status())
}

/// Everything a watch task needs; built under the store lock, then run without it.
pub struct WatchStream {
    /// What the client watches.
    pub selection: Selection,
    /// `kind` and `apiVersion` for BOOKMARK objects.
    pub kind: String,
    /// See `kind`.
    pub api_version: String,
    /// Lines sent before any live change: synthetic ADDED events for the current objects when
    /// the watch started without a resourceVersion, and the initial-events-end bookmark.
    pub initial_lines: Vec<Bytes>,
    /// Retained changes newer than the requested resourceVersion.
    pub backlog: Vec<Arc<Change>>,
    /// Live changes.
    pub changes: broadcast::Receiver<Arc<Change>>,
    /// The resourceVersion the stream is at before the backlog and live changes.
    pub start_version: u64,
    /// `allowWatchBookmarks=true`: send BOOKMARK events at this interval.
    pub bookmark_interval: Option<Duration>,
    /// `timeoutSeconds`: end the stream after this long.
    pub timeout: Duration,
    /// Changes when the server closes all watches (test hook or shutdown).
    pub closed_by_server: watch::Receiver<u64>,
}

impl WatchStream {
    /// Streams events into `lines` until the timeout, the client going away, or the server
    /// closing watches. Waits on channels and timers only, never polls.
    pub async fn run(mut self, lines: mpsc::Sender<Bytes>) {
        for line in std::mem::take(&mut self.initial_lines) {
            if lines.send(line).await.is_err() {
                return;
            }
        }
        let mut processed_version = self.start_version;
        for change in std::mem::take(&mut self.backlog) {
            processed_version = change.resource_version;
            if let Some(line) = self.selection.event_for(&change)
                && lines.send(line).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let bookmark_period = self.bookmark_interval.unwrap_or(Duration::from_secs(3600));
        let mut bookmarks = tokio::time::interval_at(
            tokio::time::Instant::now() + bookmark_period,
            bookmark_period,
        );
        loop {
            let line = tokio::select! {
                // Ending the stream takes priority over sending more.
                biased;
                _ = &mut deadline => return,
                _ = self.closed_by_server.changed() => return,
                _ = lines.closed() => return,
                _ = bookmarks.tick(), if self.bookmark_interval.is_some() => {
                    // Every change up to `processed_version` has been sent or filtered out,
                    // so a client resuming from it misses nothing.
                    Some(self.bookmark(processed_version, false))
                }
                received = self.changes.recv() => match received {
                    Ok(change) => {
                        processed_version = change.resource_version;
                        self.selection.event_for(&change)
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // This watch fell too far behind; like the API server, end it with
                        // 410 Gone so the client relists.
                        let gone = ApiError::gone("the watch fell behind; relist");
                        // The stream ends either way.
                        let _ = lines.send(error_event(&gone)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if let Some(line) = line
                && lines.send(line).await.is_err()
            {
                return;
            }
        }
    }

    /// A BOOKMARK event at `version`; `initial_events_end` marks the end of the initial
    /// events of a `sendInitialEvents=true` watch.
    pub fn bookmark(&self, version: u64, initial_events_end: bool) -> Bytes {
        let mut object = json!({
            "kind": self.kind,
            "apiVersion": self.api_version,
            "metadata": {"resourceVersion": version.to_string()},
        });
        if initial_events_end {
            object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        encode_event("BOOKMARK", &object)
    }
}
