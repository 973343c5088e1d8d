//! The time the schedule controller plans with. A trait, so tests can hold the clock still
//! and move it by a cron interval at will instead of waiting for the wall clock.

use futures::stream::BoxStream;
use jiff::Timestamp;

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
    /// Yields whenever the clock jumps, so every schedule is looked at again; the wall clock
    /// never jumps (its schedules wake at their own times).
    fn jumps(&self) -> BoxStream<'static, ()>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn jumps(&self) -> BoxStream<'static, ()> {
        Box::pin(futures::stream::pending())
    }
}
