//! A clock for the schedule controller that moves only when the test says, so cron ticks
//! come at once instead of after minutes of wall-clock time.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use jiff::{SignedDuration, Timestamp};
use schism::operator::clock::Clock;

/// A clock held still, moved by [`ManualClock::advance`].
pub struct ManualClock {
    now: Mutex<Timestamp>,
    jumped: tokio::sync::watch::Sender<u64>,
}

impl ManualClock {
    pub fn new(now: Timestamp) -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(now),
            jumped: tokio::sync::watch::channel(0).0,
        })
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.now.lock().unwrap();
        *now = now.checked_add(by).unwrap();
        self.jumped.send_modify(|n| *n += 1);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap()
    }

    fn jumps(&self) -> BoxStream<'static, ()> {
        let changes = self.jumped.subscribe();
        Box::pin(futures::stream::unfold(changes, |mut changes| async move {
            changes.changed().await.ok()?;
            Some(((), changes))
        }))
    }
}
