//! Applied faults: identity, deadline, revert and the watchdog that enforces the deadline.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::guard::Guard;
use super::{DataPlaneError, LatencyBackend, RULE_COMMENT_PREFIX, TABLE_PREFIX};

/// The identity of a fault, used in the names of everything it installs so several faults can
/// coexist in one namespace and the reaper can recognise them.
///
/// Only ASCII letters, digits and `_` are allowed (nftables identifiers), at most 48 of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(String);

impl FaultId {
    /// Validates an identifier.
    pub fn new(id: impl Into<String>) -> Result<Self, DataPlaneError> {
        let id = id.into();
        let valid_chars = id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if id.is_empty() || id.len() > 48 || !valid_chars {
            return Err(DataPlaneError::Invalid {
                what: "fault id",
                reason: format!("{id:?}: use 1 to 48 ASCII letters, digits or '_'"),
            });
        }
        Ok(Self(id))
    }

    /// Builds a valid identifier from any text by replacing other characters with `_` and
    /// truncating to 48 characters.
    pub fn sanitized(text: &str) -> Self {
        let mut id: String = text
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(48)
            .collect();
        if id.is_empty() {
            id.push('_');
        }
        Self(id)
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nftables table (family `inet`) this fault owns.
    pub fn table_name(&self) -> String {
        format!("{TABLE_PREFIX}{}", self.0)
    }

    /// The comment on iptables rules this fault installs.
    pub fn rule_comment(&self) -> String {
        format!("{RULE_COMMENT_PREFIX}{}", self.0)
    }
}

impl std::fmt::Display for FaultId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of fault an [`AppliedFault`] is, with the latency backend actually used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// nftables drop rules both ways.
    Partition,
    /// nftables random drop on ingress.
    Loss,
    /// Added delay, with the backend that implements it.
    Latency(LatencyBackend),
    /// tbf rate limit.
    Bandwidth,
    /// SIGSTOP'd process, resumed with SIGCONT.
    Pause,
    /// Frozen cgroup (every task in it, forks included), thawed by its freezer.
    Freeze,
}

impl FaultKind {
    /// The mechanism that makes the fault, as reported to users: `nftables`, `netem`,
    /// `nfqueue`, `tbf`, `SIGSTOP` or `freezer`.
    pub fn mechanism(self) -> &'static str {
        match self {
            FaultKind::Partition | FaultKind::Loss => "nftables",
            FaultKind::Latency(LatencyBackend::Netem) => "netem",
            FaultKind::Latency(LatencyBackend::NfQueue) => "nfqueue",
            FaultKind::Bandwidth => "tbf",
            FaultKind::Pause => "SIGSTOP",
            FaultKind::Freeze => "freezer",
        }
    }
}

/// Undoes a fault. It may run again after a failure: a revert that failed is put back, so
/// the watchdog still enforces the deadline.
pub(crate) type Revert = Box<dyn FnMut() -> Result<(), DataPlaneError> + Send>;

/// State shared between a fault's owner and its watchdog: whoever takes the revert runs it.
struct RevertSlot {
    revert: Mutex<Option<Revert>>,
    watchdog_failure: Mutex<Option<String>>,
    /// The fault's dead-man process, disarmed once the fault is reverted here. While a revert
    /// keeps failing it stays armed: at the deadline it tries once more itself.
    guard: Mutex<Option<Guard>>,
}

impl RevertSlot {
    fn disarm_guard(&self) {
        let guard = self
            .guard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(guard) = guard {
            guard.disarm();
        }
    }

    fn take(&self) -> Option<Revert> {
        self.revert
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Puts back a revert that failed, so a later heal or the watchdog can try again.
    fn put_back(&self, revert: Revert) {
        *self
            .revert
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(revert);
    }
}

/// A fault that is active in the kernel or a process. Reverted by [`AppliedFault::heal`], by
/// its watchdog at the deadline, or (best effort) when dropped.
pub struct AppliedFault {
    id: FaultId,
    kind: FaultKind,
    target: String,
    deadline: Instant,
    slot: Arc<RevertSlot>,
    watchdog: Option<(Sender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for AppliedFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppliedFault")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl AppliedFault {
    /// Wraps an applied fault and starts its watchdog. `guard` is the fault's dead-man
    /// process (see `guard`), started before the fault was applied so that no moment exists
    /// where the fault is in place and nothing outside this process would undo it.
    pub(crate) fn new(
        id: FaultId,
        kind: FaultKind,
        target: String,
        deadline: Instant,
        revert: Revert,
        guard: Option<Guard>,
    ) -> Self {
        let slot = Arc::new(RevertSlot {
            revert: Mutex::new(Some(revert)),
            watchdog_failure: Mutex::new(None),
            guard: Mutex::new(guard),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let watched = Arc::clone(&slot);
        let label = format!("{id} on {target}");
        let watchdog = std::thread::Builder::new()
            .name("schism-watchdog".into())
            .spawn(move || {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let deadline_reached = match stopped.recv_timeout(remaining) {
                    Err(RecvTimeoutError::Timeout) => true,
                    // The owner went away. If it left the fault in place (its own revert
                    // failed), the deadline still holds: wait for it and try once more.
                    Err(RecvTimeoutError::Disconnected) => {
                        let unreverted = watched
                            .revert
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_some();
                        if unreverted {
                            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                        }
                        unreverted
                    }
                    Ok(()) => false,
                };
                if deadline_reached && let Some(mut revert) = watched.take() {
                    tracing::info!(fault = %label, "deadline reached, reverting");
                    let result = revert();
                    if result.is_ok() {
                        watched.disarm_guard();
                    }
                    if let Err(error) = result {
                        tracing::warn!(fault = %label, %error, "watchdog revert failed");
                        *watched
                            .watchdog_failure
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
                        // Left in place so that a later heal (or the reaper) can still try.
                        watched.put_back(revert);
                    }
                }
            });
        let watchdog = match watchdog {
            Ok(handle) => Some((stop, handle)),
            Err(error) => {
                // Without a watchdog the kernel-side expiry and the reaper still apply.
                tracing::warn!(%error, "cannot start watchdog thread");
                None
            }
        };
        Self {
            id,
            kind,
            target,
            deadline,
            slot,
            watchdog,
        }
    }

    /// The fault's identity.
    pub fn id(&self) -> &FaultId {
        &self.id
    }

    /// The kind of fault, including the latency backend in use.
    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// Where the fault lives (namespace path or process).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// When the fault reverts itself.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the fault has already been reverted (by its watchdog at the deadline).
    pub fn is_reverted(&self) -> bool {
        self.slot
            .revert
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Reverts the fault now. Succeeds if the watchdog already reverted it at the deadline;
    /// fails if that revert failed.
    pub fn heal(mut self) -> Result<(), DataPlaneError> {
        self.heal_in_place()
    }

    fn heal_in_place(&mut self) -> Result<(), DataPlaneError> {
        match self.slot.take() {
            Some(mut revert) => match revert() {
                Ok(()) => {
                    self.slot.disarm_guard();
                    self.stop_watchdog();
                    Ok(())
                }
                Err(error) => {
                    // Still active: the watchdog keeps the deadline and may retry there.
                    self.slot.put_back(revert);
                    Err(error)
                }
            },
            None => {
                // The watchdog took the revert; wait for it to finish before reading how it went.
                self.stop_watchdog();
                match self
                    .slot
                    .watchdog_failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    Some(reason) => Err(DataPlaneError::Invalid {
                        what: "revert at deadline",
                        reason,
                    }),
                    None => Ok(()),
                }
            }
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some((stop, handle)) = self.watchdog.take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl Drop for AppliedFault {
    fn drop(&mut self) {
        if self.watchdog.is_none() && self.is_reverted() {
            return;
        }
        if let Err(error) = self.heal_in_place() {
            tracing::warn!(fault = %self.id, target = %self.target, %error, "revert on drop failed");
        }
    }
}

/// Heals every fault in parallel (one thread each), so healing a partition across N nodes
/// takes about as long as healing one. Results are in the input order.
pub fn heal_all(faults: Vec<AppliedFault>) -> Vec<Result<(), DataPlaneError>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = faults
            .into_iter()
            .map(|fault| scope.spawn(move || fault.heal()))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or(Err(DataPlaneError::ThreadPanicked("heal")))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revert_that_keeps_failing_is_still_retried_by_the_watchdog_at_the_deadline() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&attempts);
        let deadline = Instant::now() + std::time::Duration::from_millis(300);
        let fault = AppliedFault::new(
            FaultId::new("retry").unwrap(),
            FaultKind::Pause,
            "test".into(),
            deadline,
            Box::new(move || {
                // The heal and the drop both fail; the third try, at the deadline, works.
                if seen.fetch_add(1, SeqCst) < 2 {
                    Err(DataPlaneError::Invalid {
                        what: "revert",
                        reason: "not yet".into(),
                    })
                } else {
                    Ok(())
                }
            }),
            None,
        );
        assert!(fault.heal().is_err(), "the failure is reported");
        assert_eq!(attempts.load(SeqCst), 2, "heal and drop each tried once");
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(
            attempts.load(SeqCst),
            3,
            "the watchdog tried again at the deadline"
        );
    }
}
