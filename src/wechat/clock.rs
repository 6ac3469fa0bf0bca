//! The clock the token cache reads, injectable so tests can jump over a two-hour token lifetime.
//!
//! `tokio::time::pause` would do for pure code, but it does not mix with real sockets: a paused
//! runtime auto-advances whenever it is idle, which fires the HTTP client's timeouts while the
//! test waits for the loopback mock. Time here only decides when a cached token is stale; the
//! request timeouts keep using real time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// `Instant::now()`.
    #[default]
    System,
    /// A clock that moves only when told; for tests.
    Manual(ManualClock),
}

impl Clock {
    /// The current instant of this clock.
    pub fn now(&self) -> Instant {
        match self {
            Self::System => Instant::now(),
            Self::Manual(clock) => clock.now(),
        }
    }
}

/// A clock that stands still until [`ManualClock::advance`]; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// The real instant this clock started at; its time is `start + offset`.
    start: Instant,
    /// How far it has been advanced.
    offset: Arc<Mutex<Duration>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            offset: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    /// Moves this clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(PoisonError::into_inner);
        *offset += by;
    }

    /// The current instant of this clock.
    pub fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = ManualClock::new();
        let shared = Clock::Manual(clock.clone());
        let t0 = shared.now();
        assert_eq!(shared.now(), t0);
        clock.advance(Duration::from_secs(7200));
        assert_eq!(shared.now() - t0, Duration::from_secs(7200));
    }
}
