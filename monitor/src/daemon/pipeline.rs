//! The one path every record takes: the tracker makes it an event of a tracked process, the
//! phase engine says in which phase it happened, the rules whether it is an alert, and the
//! alerts whether it is a new one or a repeat.

use std::time::{Duration, Instant};

use monitor_common::HOOK_COUNT;

use crate::{
    alert::{Alert, Alerts},
    detect::{Hit, RuleId, Rules},
    kernel::{control::KernelControl, decode::Record},
    output::redact::Redactor,
    phase::{Context, Phase, PhaseEngine},
    process::{
        event::{Action, Event},
        judge::Judged,
        tracker::Tracker,
    },
};

pub(super) struct Pipeline {
    pub(super) tracker: Tracker,
    pub(super) engine: PhaseEngine,
    pub(super) rules: Rules,
    /// Hides secrets in the command lines of alerts and event lines.
    pub(super) redactor: Redactor,
    pub(super) alerts: Alerts,
    /// Alerting opens the credential file watch saw, until a kernel program's record of the
    /// same open arrives (then that record alerts) or they are due (then they alert).
    pub(super) unseen: Vec<Unseen>,
}

/// An open the file watch saw that would alert, not yet recorded by a kernel program.
pub(super) struct Unseen {
    file: (u64, u64),
    due: Instant,
    event: Event,
    context: Context,
    hit: Hit,
}

/// What the rules make of an event of a tracked process.
enum Verdict {
    None,
    Alert(Hit),
    /// The application's own module-level code broke this rule, and `alerts.application_code`
    /// says not to report it.
    Quiet(RuleId),
}

/// What one record came to.
pub(super) struct Handled {
    pub(super) event: Event,
    pub(super) context: Context,
    /// A new alert to send.
    pub(super) alert: Option<Alert>,
    /// It repeated an open alert.
    pub(super) folded: bool,
    /// The rule it broke, when it went unreported as the application's own module-level code.
    pub(super) quieted: Option<RuleId>,
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

    /// An open the credential file watch saw (`record`, made from its request): kept when it
    /// would alert, until `due` (see [`Self::unseen_due`]).
    pub(super) fn watched(&mut self, kernel: &mut KernelControl, record: Record, due: Instant) {
        let file = match &record {
            Record::Open(open) => (open.dev, open.ino),
            _ => return,
        };
        let Some(event) = self.tracker.handle(kernel, record) else { return };
        let mut context = self.engine.observe(&mut self.tracker.table, &event);
        if let Verdict::Alert(hit) = self.verdict(&event, &mut context) {
            self.unseen.push(Unseen { file, due, event, context, hit });
        }
    }

    /// The watch's opens that no kernel program recorded by now: their alerts.
    pub(super) fn unseen_due(&mut self, now: Instant) -> Vec<Handled> {
        let (due, waiting) = std::mem::take(&mut self.unseen).into_iter().partition(|u| u.due <= now);
        self.unseen = waiting;
        due.into_iter()
            .map(|u: Unseen| {
                let mut handled =
                    Handled { event: u.event, context: u.context, alert: None, folded: false, quieted: None };
                self.raise(&mut handled, u.hit);
                handled
            })
            .collect()
    }

    /// The rule `event` breaks, unless an allowlist exempts it (the phase is not `runtime`),
    /// and what to do of it; names the party of the culprit in `context` when it breaks one.
    fn verdict(&mut self, event: &Event, context: &mut Context) -> Verdict {
        if context.phase == Phase::Runtime {
            return Verdict::None;
        }
        let Some(mut hit) = self.rules.evaluate(event, context.phase == Phase::Install, &self.tracker.table)
        else {
            return Verdict::None;
        };
        if self.alerts.exempt(&self.rules, event, context) {
            return Verdict::None;
        }
        let party = self.engine.party(&self.tracker.table, event, context);
        context.culprit.party = Some(party);
        if context.phase == Phase::Import && party.is_own() {
            match self.alerts.application_code.severity() {
                Some(severity) => hit.severity = severity,
                None => return Verdict::Quiet(hit.rule),
            }
        }
        Verdict::Alert(hit)
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
        if matches!(event.action, Action::Exit { .. }) {
            self.tracker.retire(kernel, event.header.pid);
        }
        if !self.unseen.is_empty()
            && let Action::Open { file: Some(file), .. } = &event.action
        {
            // The watch saw this open first: this record tells it better.
            let (pid, key) = (event.header.pid, (file.dev, file.ino));
            self.unseen.retain(|u| u.event.header.pid != pid || u.file != key);
        }
        let mut handled = Handled { event, context, alert: None, folded: false, quieted: None };
        match self.verdict(&handled.event, &mut handled.context) {
            Verdict::None => {}
            Verdict::Quiet(rule) => handled.quieted = Some(rule),
            Verdict::Alert(hit) => self.raise(&mut handled, hit),
        }
        handled
    }

    /// The alert of `handled`, or the repeat it folds into.
    fn raise(&mut self, handled: &mut Handled, hit: Hit) {
        let folded = self.alerts.folded;
        handled.alert =
            self.alerts.raise(&handled.event, &handled.context, hit, &self.tracker.table, &self.redactor);
        handled.folded = self.alerts.folded > folded;
    }

    /// Records dropped per hook because their process was gone before it was identified.
    pub(super) fn unattributed(&self) -> &[u64; HOOK_COUNT as usize] {
        &self.tracker.stats.unattributed
    }
}
