//! Exponential backoff between delivery attempts.

use std::{hash::BuildHasher as _, time::Duration};

pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self { initial, max, next: initial }
    }

    /// The wait before the next attempt: doubling from `initial` up to `max`, each spread by
    /// up to ±20% so that many daemons cut off by the same outage do not retry in step.
    pub(super) fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(self.max);
        // Every `RandomState` gets fresh keys: a cheap random number without a dependency.
        let random = std::hash::RandomState::new().hash_one(0u8);
        let factor = 0.8 + (random % 4001) as f64 / 10_000.0;
        base.mul_f64(factor).min(self.max)
    }

    pub(super) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next_wait()).collect();
        let ms = |d: &Duration| d.as_millis();
        assert!((80..=120).contains(&ms(&waits[0])), "{waits:?}");
        assert!((160..=240).contains(&ms(&waits[1])), "{waits:?}");
        assert!(waits[4..].iter().all(|w| (800..=1000).contains(&ms(w))), "{waits:?}");
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(120));
    }
}
