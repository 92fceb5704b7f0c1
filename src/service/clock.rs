//! The time the service acts at. The service is given its clock — the system's in `serve`, a
//! [`ManualClock`] in tests — so that what waits for time (a grace period's end, an expiry)
//! is tested by moving the clock, not by waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Notify;

/// A source of the current time, and a way to wait for a moment of it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// Completes once [`Clock::now`] has reached `at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to: a test sets the moment and every sleeper whose
/// moment has come wakes at once.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    moved: Notify,
}

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock { now: Mutex::new(at), moved: Notify::new() }
    }

    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) += by;
        self.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                // Registered before the time is read, so an advance in between is not missed.
                let moved = self.moved.notified();
                if self.now() >= at {
                    return;
                }
                moved.await;
            }
        })
    }
}
