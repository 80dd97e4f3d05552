//! When the reader drains the ring, and whether records must wake it.
//!
//! A wake-up is paid by the process that sent the record: an interrupt, and on a busy node often
//! a preemption in favour of the reader. Python start-up sends a few hundred records in a
//! burst, so only the first record of a burst wakes the reader; from then on the kernel sends
//! without waking (`CONTROL_READER_BUSY`) and the reader drains every [`DRAIN_PAUSE`] until a
//! pause passes without records. Then it goes back to being woken, in an order that leaves no
//! record behind:
//!
//! 1. clear the flag, then drain once more: that takes what was sent between the last drain and
//!    the switch, and leaves the ring empty, so the next record wakes the reader;
//! 2. one more drain after [`SETTLE`]: a program that read the flag just before it was cleared
//!    may send without waking after step 1 (a uprobe program can be preempted in between),
//!    and while that record waits, later ones do not wake the reader either;
//! 3. the once-a-second tick drains too, should even that be missed.

use std::time::{Duration, Instant};

/// How long the reader waits between drains while records keep coming: at most this much
/// alert latency, and at most a few hundred drains per second however many records arrive.
pub(super) const DRAIN_PAUSE: Duration = Duration::from_millis(2);
/// The extra drain after going back to being woken (step 2 above).
pub(super) const SETTLE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Records wake the reader.
    Woken,
    /// Records do not wake the reader; it drains at `poll_at`.
    Polling,
    /// The flag was just cleared: the next drain is step 1.
    Clearing,
    /// Woken again, with the drain of step 2 at `poll_at`.
    Settling,
}

/// What to tell the kernel after a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tell {
    Nothing,
    /// Set the flag: records need not wake the reader.
    Busy,
    /// Clear the flag, then drain once more and report it with [`Pace::drained`] (or
    /// [`Pace::clear_failed`] if the flag could not be cleared).
    Idle,
}

#[derive(Debug)]
pub(super) struct Pace {
    mode: Mode,
    poll_at: Option<Instant>,
}

impl Default for Pace {
    fn default() -> Self {
        Self { mode: Mode::Woken, poll_at: None }
    }
}

impl Pace {
    /// Whether the reader listens for wake-ups.
    pub(super) fn listening(&self) -> bool {
        matches!(self.mode, Mode::Woken | Mode::Settling)
    }

    /// When the reader drains without being woken, if it does.
    pub(super) fn poll_at(&self) -> Option<Instant> {
        self.poll_at
    }

    /// Whether the drain due at [`Pace::poll_at`] is the settle drain (step 2).
    pub(super) fn settling(&self) -> bool {
        self.mode == Mode::Settling
    }

    /// Whether only the tick's drain is due (step 3).
    pub(super) fn idle(&self) -> bool {
        self.mode == Mode::Woken
    }

    /// A record woke the reader: a burst begins. The caller sets the flag, then drains.
    pub(super) fn woken(&mut self) -> Tell {
        self.mode = Mode::Polling;
        self.poll_at = None;
        Tell::Busy
    }

    /// Reports a drain: whether it emptied the ring and how many records it took.
    pub(super) fn drained(&mut self, now: Instant, emptied: bool, records: usize) -> Tell {
        let came = records > 0 || !emptied;
        // Emptied: wait for more to gather. Not emptied (the drain budget ran out): go on at once.
        let next = if emptied { now + DRAIN_PAUSE } else { now };
        match self.mode {
            Mode::Polling if came => {
                self.poll_at = Some(next);
                Tell::Nothing
            }
            Mode::Polling => {
                self.mode = Mode::Clearing;
                self.poll_at = None;
                Tell::Idle
            }
            Mode::Clearing | Mode::Settling | Mode::Woken if came => {
                self.mode = Mode::Polling;
                self.poll_at = Some(next);
                Tell::Busy
            }
            Mode::Clearing => {
                self.mode = Mode::Settling;
                self.poll_at = Some(now + SETTLE);
                Tell::Nothing
            }
            Mode::Settling | Mode::Woken => {
                self.mode = Mode::Woken;
                self.poll_at = None;
                Tell::Nothing
            }
        }
    }

    /// The flag could not be cleared: records still do not wake the reader, so it keeps
    /// polling.
    pub(super) fn clear_failed(&mut self, now: Instant) {
        self.mode = Mode::Polling;
        self.poll_at = Some(now + DRAIN_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pace whose reader was just woken by the first record of a burst.
    fn woken() -> (Instant, Pace) {
        let mut pace = Pace::default();
        assert_eq!(pace.woken(), Tell::Busy);
        (Instant::now(), pace)
    }

    #[test]
    fn a_burst_is_polled_until_a_pause_passes_without_records() {
        let now = Instant::now();
        let mut pace = Pace::default();
        assert!(pace.listening() && pace.idle());
        assert_eq!(pace.woken(), Tell::Busy);
        assert!(!pace.listening(), "no wake-ups while polling");
        assert_eq!(pace.drained(now, true, 5), Tell::Nothing);
        assert_eq!(pace.poll_at(), Some(now + DRAIN_PAUSE));
        assert_eq!(pace.drained(now, false, 8192), Tell::Nothing);
        assert_eq!(pace.poll_at(), Some(now), "a drain cut short by its budget goes on at once");
        assert_eq!(pace.drained(now, true, 0), Tell::Idle);
        assert_eq!(pace.poll_at(), None);
        // The drain right after clearing the flag found nothing: settle.
        assert_eq!(pace.drained(now, true, 0), Tell::Nothing);
        assert!(pace.listening() && !pace.idle() && pace.settling());
        assert_eq!(pace.poll_at(), Some(now + SETTLE));
        assert_eq!(pace.drained(now, true, 0), Tell::Nothing);
        assert!(pace.listening() && pace.idle());
        assert_eq!(pace.poll_at(), None);
    }

    #[test]
    fn records_found_after_clearing_the_flag_set_it_again() {
        let (now, mut pace) = woken();
        assert_eq!(pace.drained(now, true, 0), Tell::Idle);
        assert_eq!(pace.drained(now, true, 1), Tell::Busy, "sent between the last drain and the switch");
        assert!(!pace.listening());
        assert_eq!(pace.poll_at(), Some(now + DRAIN_PAUSE));
    }

    #[test]
    fn a_record_sent_without_waking_is_found_by_the_settle_or_the_tick() {
        let (now, mut pace) = woken();
        pace.drained(now, true, 0);
        pace.drained(now, true, 0);
        assert_eq!(pace.drained(now, true, 1), Tell::Busy, "found by the settle drain");
        assert!(!pace.listening());
        pace.drained(now, true, 0);
        pace.drained(now, true, 0);
        pace.drained(now, true, 0);
        assert!(pace.idle());
        assert_eq!(pace.drained(now, true, 1), Tell::Busy, "found by the tick");
        assert_eq!(pace.poll_at(), Some(now + DRAIN_PAUSE));
    }

    #[test]
    fn a_flag_that_cannot_be_cleared_keeps_the_reader_polling() {
        let (now, mut pace) = woken();
        assert_eq!(pace.drained(now, true, 0), Tell::Idle);
        pace.clear_failed(now);
        assert!(!pace.listening());
        assert_eq!(pace.poll_at(), Some(now + DRAIN_PAUSE));
    }
}
