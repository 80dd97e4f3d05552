//! The one path every record takes: the tracker makes it an event of a tracked process, the
//! phase engine says in which phase it happened, the rules whether it is an alert, and the
//! alerts whether it is a new one or a repeat.

use std::time::Duration;

use monitor_common::HOOK_COUNT;

use crate::{
    alert::{Alert, Alerts},
    detect::Rules,
    kernel::{control::KernelControl, decode::Record},
    output::redact::Redactor,
    phase::{Context, Phase, PhaseEngine},
    process::{event::Event, judge::Judged, tracker::Tracker},
};

pub(super) struct Pipeline {
    pub(super) tracker: Tracker,
    pub(super) engine: PhaseEngine,
    pub(super) rules: Rules,
    /// Hides secrets in the command lines of alerts and event lines.
    pub(super) redactor: Redactor,
    pub(super) alerts: Alerts,
}

/// What one record came to.
pub(super) struct Handled {
    pub(super) event: Event,
    pub(super) context: Context,
    /// A new alert to send.
    pub(super) alert: Option<Alert>,
    /// It repeated an open alert.
    pub(super) folded: bool,
}

impl Pipeline {
    /// Applies `record`; `None` when it is not an event of a tracked process (or waits for its
    /// executable to be judged: see [`Self::judged`]).
    pub(super) fn handle(&mut self, kernel: &mut KernelControl, record: Record) -> Option<Handled> {
        let event = self.tracker.handle(kernel, record)?;
        Some(self.follow(kernel, event))
    }

    /// A verdict from the judging threads: the records that waited for it, applied in order.
    pub(super) fn judged(&mut self, kernel: &mut KernelControl, judged: Judged) -> Vec<Handled> {
        let events = self.tracker.judged(kernel, judged);
        events.into_iter().map(|event| self.follow(kernel, event)).collect()
    }

    /// Verdicts that did not come in time, given up (see `tracker::JUDGE_DEADLINE`).
    pub(super) fn give_up_judging(&mut self, kernel: &mut KernelControl, deadline: Duration) -> Vec<Handled> {
        let events = self.tracker.give_up_judging(kernel, deadline);
        events.into_iter().map(|event| self.follow(kernel, event)).collect()
    }

    fn follow(&mut self, kernel: &mut KernelControl, event: Event) -> Handled {
        let table = &mut self.tracker.table;
        let context = self.engine.observe(table, &event);
        self.engine.quiet_updates(table, &event, |pid, generation| {
            crate::kernel::control::KernelState::set_quiet(kernel, pid, Some(generation))
        });
        for (pid, running_main) in self.engine.take_main_checks() {
            let image = table.get(pid).and_then(|p| p.python.as_ref()).map(|i| i.image.clone());
            if let Some(image) = image {
                kernel.main_checked(&image, running_main);
            }
        }
        if matches!(event.action, crate::process::event::Action::Exit { .. }) {
            self.tracker.retire(kernel, event.header.pid);
        }
        let mut handled = Handled { event, context, alert: None, folded: false };
        if handled.context.phase == Phase::Runtime {
            return handled;
        }
        let Some(hit) = self.rules.evaluate(&handled.event.action, handled.context.phase == Phase::Install)
        else {
            return handled;
        };
        if self.alerts.exempt(&self.rules, &handled.event, &handled.context) {
            return handled;
        }
        let folded = self.alerts.folded;
        handled.alert =
            self.alerts.raise(&handled.event, &handled.context, hit, &self.tracker.table, &self.redactor);
        handled.folded = self.alerts.folded > folded;
        handled
    }

    /// Records dropped per hook because their process was gone before it was identified.
    pub(super) fn unattributed(&self) -> &[u64; HOOK_COUNT as usize] {
        &self.tracker.stats.unattributed
    }
}
