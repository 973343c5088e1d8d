//! `spec.suspend` inside a run: every open fault healed at once, the chaos window's clock
//! held while the run is suspended, and the faults still inside their windows given back on
//! resume, with new deadlines that count the pause.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::experiment::Backend;
use super::timeline::FaultInstance;

/// How a suspension went.
pub struct Held {
    /// How long the run was suspended.
    pub pause: Duration,
    /// The run was stopped while suspended (its faults are healed already).
    pub stopped: bool,
    /// What to add to each fault's timeline entry, by instance index.
    pub notes: Vec<(usize, String)>,
}

/// Resolves when `stop` turns true; never when there is none.
async fn stop_requested(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(stop) => {
            let _ = stop.wait_for(|s| *s).await;
        }
        None => std::future::pending().await,
    }
}

/// Heals `open` (instance index and the instance as injected), waits until the run is
/// resumed or stopped, and injects them again. `paused` is the time the window's clock was
/// held before; the new deadlines add this pause to it.
pub async fn hold<B: Backend>(
    backend: &mut B,
    open: &[(usize, FaultInstance)],
    suspend: &mut watch::Receiver<bool>,
    stop: &mut Option<watch::Receiver<bool>>,
    epoch: Instant,
    paused: Duration,
) -> Held {
    let began = epoch.elapsed();
    let mut notes = Vec::new();
    for (index, instance) in open {
        if let Err(e) = backend.heal(*index, instance).await {
            notes.push((*index, format!("heal on suspend: {e}")));
        }
    }
    let stopped = tokio::select! {
        resumed = suspend.wait_for(|s| !*s) => {
            // The sender gone means nobody can resume or suspend any more: go on.
            let _ = resumed;
            stop.as_ref().is_some_and(|s| *s.borrow())
        }
        _ = stop_requested(stop) => true,
    };
    let pause = epoch.elapsed().saturating_sub(began);
    let held_for = format!(
        "suspended at {:.1}s for {:.1}s",
        began.as_secs_f64(),
        pause.as_secs_f64()
    );
    for (index, instance) in open {
        notes.push((*index, held_for.clone()));
        if stopped {
            continue;
        }
        let planned_end = instance.heal_at.unwrap_or(instance.inject_at);
        let deadline = epoch + paused + pause + planned_end + Duration::from_secs(2);
        if let Err(e) = backend.inject(*index, instance, deadline).await {
            notes.push((*index, format!("not given back on resume: {e}")));
        }
    }
    Held {
        pause,
        stopped,
        notes,
    }
}
