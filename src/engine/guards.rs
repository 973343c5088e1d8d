//! Abort guards: rolling windows over the availability probe's samples, and the signal that
//! ends a run early. Deciding is pure ([`RollingGuard::observe`]); the signal is shared by
//! the probe watcher and the Prometheus samplers, and the first trip wins.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::probe::ProbeSample;
use crate::api::{AbortGuard, AbortRecord, duration};

/// What a guard watches over its window.
#[derive(Debug, Clone, PartialEq)]
enum Watch {
    /// Trip when the success ratio falls below this.
    Availability { below: f64 },
    /// Trip when the p99 latency of answered probes exceeds this.
    Latency { p99_above: Duration },
}

/// One probe guard and the samples inside its window.
#[derive(Debug, Clone)]
pub struct RollingGuard {
    watch: Watch,
    over: Duration,
    window: VecDeque<(Duration, bool, Duration)>,
}

impl RollingGuard {
    /// The probe guard of `guard`, if it is one (`prometheus` guards are not).
    pub fn of(guard: &AbortGuard) -> Option<RollingGuard> {
        let (watch, over) = match (&guard.availability, &guard.probe_latency) {
            (Some(a), _) => (Watch::Availability { below: a.below }, a.over.get()),
            (None, Some(l)) => (
                Watch::Latency {
                    p99_above: l.p99_above.get(),
                },
                l.over.get(),
            ),
            _ => return None,
        };
        Some(RollingGuard {
            watch,
            over,
            window: VecDeque::new(),
        })
    }

    /// Takes one sample (samples come roughly in time order); returns why the guard trips,
    /// if it does now. It judges only once a whole window of samples lies behind it.
    pub fn observe(&mut self, sample: &ProbeSample) -> Option<(String, String)> {
        self.window
            .push_back((sample.at, sample.ok, sample.latency));
        let latest = self.window.iter().map(|s| s.0).max().unwrap_or_default();
        while self
            .window
            .front()
            .is_some_and(|s| latest.saturating_sub(s.0) > self.over)
        {
            self.window.pop_front();
        }
        // Not before the window is full: a first failed probe is not a ratio of zero.
        if latest < self.over {
            return None;
        }
        let over = duration::format(self.over);
        match self.watch {
            Watch::Availability { below } => {
                let ok = self.window.iter().filter(|s| s.1).count();
                let ratio = ok as f64 / self.window.len().max(1) as f64;
                (ratio < below).then(|| {
                    (
                        "availability".to_owned(),
                        format!(
                            "availability {ratio:.2} < {below:.2} over {over} ({ok} of {} probes)",
                            self.window.len()
                        ),
                    )
                })
            }
            Watch::Latency { p99_above } => {
                let mut answered: Vec<Duration> =
                    self.window.iter().filter(|s| s.1).map(|s| s.2).collect();
                if answered.is_empty() {
                    return None;
                }
                answered.sort();
                let p99 = answered[((answered.len() as f64 * 0.99).ceil() as usize)
                    .saturating_sub(1)
                    .min(answered.len() - 1)];
                (p99 > p99_above).then(|| {
                    (
                        "probeLatency".to_owned(),
                        format!(
                            "probe latency p99 {:.1} ms > {} over {over} ({} answered probes)",
                            p99.as_secs_f64() * 1e3,
                            duration::format(p99_above),
                            answered.len()
                        ),
                    )
                })
            }
        }
    }
}

/// The early end of a run: set once, by the first guard that trips.
#[derive(Debug)]
pub struct AbortSignal {
    tripped: Mutex<Option<AbortRecord>>,
    halt: Arc<watch::Sender<bool>>,
}

impl AbortSignal {
    /// A signal that turns `halt` true when it trips.
    pub fn new(halt: Arc<watch::Sender<bool>>) -> Self {
        AbortSignal {
            tripped: Mutex::new(None),
            halt,
        }
    }

    /// Trips the signal, unless it already tripped; `at` is since the window opened.
    pub fn trip(&self, guard: String, at: Duration, reason: String) {
        let mut tripped = self.tripped.lock().unwrap_or_else(|p| p.into_inner());
        if tripped.is_none() {
            tracing::warn!(%guard, %reason, "abort guard tripped: ending the experiment");
            *tripped = Some(AbortRecord {
                guard,
                at_millis: at.as_millis() as i64,
                reason,
                healed_millis: None,
            });
            let _ = self.halt.send(true);
        }
    }

    /// What tripped it, if anything did.
    pub fn tripped(&self) -> Option<AbortRecord> {
        self.tripped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Watches the probe samples as they come, until their sender is gone; trips `abort` at
/// the first breach of any of `guards`, at the moment it is seen (a failed probe is known
/// only once its timeout has passed), counted from `epoch`.
pub async fn watch_probes(
    guards: Vec<RollingGuard>,
    mut samples: tokio::sync::mpsc::UnboundedReceiver<ProbeSample>,
    abort: Arc<AbortSignal>,
    epoch: std::time::Instant,
) {
    let mut guards = guards;
    while let Some(sample) = samples.recv().await {
        for guard in &mut guards {
            if let Some((kind, why)) = guard.observe(&sample) {
                abort.trip(kind, epoch.elapsed(), why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(yaml: &str) -> RollingGuard {
        RollingGuard::of(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn sample(at_ms: u64, ok: bool, latency_ms: u64) -> ProbeSample {
        ProbeSample {
            node: 0,
            at: Duration::from_millis(at_ms),
            ok,
            latency: Duration::from_millis(latency_ms),
            error: None,
        }
    }

    #[test]
    fn availability_looks_only_at_the_last_window_and_only_once_it_is_full() {
        let mut g = guard("{availability: {below: 0.5, over: 1s}}");
        // A failure before a full window has passed does not trip it.
        assert_eq!(g.observe(&sample(100, false, 1)), None);
        // A long good stretch, then failures: the old successes fall out of the window.
        for t in (200..5000).step_by(100) {
            assert_eq!(g.observe(&sample(t, true, 1)), None, "at {t}");
        }
        let mut tripped = None;
        for t in (5000..7000).step_by(100) {
            if let Some(why) = g.observe(&sample(t, false, 1)) {
                tripped = Some((t, why));
                break;
            }
        }
        let (at, (kind, why)) = tripped.expect("it trips");
        assert_eq!(kind, "availability");
        // Half the window failing is the first breach: about half a second in.
        assert!((5400..=5600).contains(&at), "tripped at {at}: {why}");
        assert!(
            why.starts_with("availability 0.4") && why.contains("< 0.50 over 1s"),
            "{why}"
        );
    }

    #[test]
    fn latency_trips_on_the_answered_probes_p99_only() {
        let mut g = guard("{probeLatency: {p99Above: 100ms, over: 1s}}");
        for t in (0..1200).step_by(50) {
            // Failed probes (timeouts) are the availability guard's business.
            assert_eq!(g.observe(&sample(t, t % 100 != 0, 20)), None);
        }
        let why = g
            .observe(&sample(1250, true, 400))
            .expect("a slow answer trips it");
        assert_eq!(why.0, "probeLatency");
        assert!(
            why.1
                .starts_with("probe latency p99 400.0 ms > 100ms over 1s"),
            "{}",
            why.1
        );
    }

    #[test]
    fn the_first_trip_wins_and_halts() {
        let (halt, halted) = watch::channel(false);
        let signal = AbortSignal::new(Arc::new(halt));
        signal.trip(
            "availability".into(),
            Duration::from_millis(2300),
            "first".into(),
        );
        signal.trip(
            "probeLatency".into(),
            Duration::from_millis(2400),
            "second".into(),
        );
        let record = signal.tripped().unwrap();
        assert_eq!(
            (record.guard.as_str(), record.at_millis),
            ("availability", 2300)
        );
        assert!(*halted.borrow());
    }
}
