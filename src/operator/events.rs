//! Kubernetes Events about a Chaos, through kube's recorder.
//!
//! The recorder folds events with the same type, reason, action and object into one series
//! (a count on the first event): two different faults injected one after the other would show
//! the first fault's text twice. So every event names its `action` after what it is about (the
//! fault instance, the verdict), and only true repeats fold.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Event notes are limited to 1 KiB by the API server.
const MAX_EVENT_NOTE: usize = 1000;
/// Event actions are limited to 128 characters.
const MAX_EVENT_ACTION: usize = 128;

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max - '…'.len_utf8();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Publishes events about one object as one component.
#[derive(Clone)]
pub struct EventSink {
    recorder: Recorder,
    regarding: ObjectReference,
}

impl EventSink {
    /// Events about `regarding`, reported as `component` (and the pod this process runs in).
    pub fn new(client: Client, component: &str, regarding: ObjectReference) -> Self {
        let reporter = Reporter {
            controller: component.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
            regarding,
        }
    }

    /// Publishes one event; `action` says what it is about, so distinct events stay distinct.
    /// A failure to publish is logged, never an error: events are for people.
    pub async fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(bounded(note, MAX_EVENT_NOTE)),
            action: bounded(action.to_owned(), MAX_EVENT_ACTION),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &self.regarding).await {
            tracing::warn!(%error, reason, "cannot publish an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let cut = bounded("é".repeat(600), MAX_EVENT_NOTE);
        assert!(cut.len() <= MAX_EVENT_NOTE);
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short".into(), 10), "short");
    }
}
