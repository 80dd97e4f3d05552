//! The one path every record takes: the tracker makes it an event of a tracked process, the
//! phase engine says in which phase it happened, the rules whether it is an alert, and the
//! alerts whether it is a new one or a repeat.

use std::time::{Duration, Instant};

use monitor_common::{
    AllowedNet, ExeKey, FLAG_COMPAT, FLAG_GUARD_DENIED, FLAG_GUARD_FALLBACK, FLAG_GUARD_KILLED,
    FLAG_GUARD_WOULD_DENY, HOOK_COUNT, JUDGED_CONNECT, JUDGED_EXEC, JUDGED_INSTALLING, JUDGED_MEMORY,
    JUDGED_SEND,
};

use crate::{
    alert::{Alert, Alerts},
    detect::{Hit, RuleId, Rules, open_writes},
    enforce::{Enforcement, Mode, Outcome, Policy, Scope, enforceable, guard},
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
    /// The mode of each rule where an action happens.
    pub(super) policy: Policy,
    /// Opens the file watch denied (or meant to, after its bound), until the kernel program's
    /// record of the same open arrives: that open has its alert already.
    pub(super) decided: Vec<Decided>,
    pub(super) guard: GuardState,
}

/// What the daemon last told the kernel's guard.
#[derive(Default)]
pub(super) struct GuardState {
    on: bool,
    default: u32,
    allowed: Vec<AllowedNet>,
    programs: Vec<(ExeKey, u32)>,
    /// When `programs` was last looked for on disk.
    programs_at: Option<Instant>,
    /// `pid -> GUARD_*` bits of the guarded processes.
    guarded: std::collections::HashMap<u32, u32>,
}

impl GuardState {
    /// Brings the kernel's guard in line with the policy and the allowlists: at start, after a
    /// reload (`fresh`), and each second (package index names resolve in the background; the
    /// allowed programs are looked for on disk again each minute).
    pub(super) fn configure(
        &mut self,
        kernel: &mut KernelControl,
        policy: &Policy,
        rules: &Rules,
        fresh: bool,
    ) -> Result<(), String> {
        let on = guard::GUARDED.iter().any(|r| policy.may(*r, Mode::DryRun) || policy.may(*r, Mode::Enforce));
        let default = guard::guard_bits(|rule| policy.node_mode(rule));
        let (destinations, index) = rules.network_allowances();
        let allowed = guard::allowed_nets(destinations, &index);
        let stale = self.programs_at.is_none_or(|at| at.elapsed() >= PROGRAMS_RESCAN);
        let programs = if on && (fresh || stale) {
            self.programs_at = Some(Instant::now());
            let (programs, toolchain) = rules.program_globs();
            let programs: Vec<&str> = programs.iter().map(String::as_str).collect();
            let toolchain: Vec<&str> = toolchain.iter().map(String::as_str).collect();
            guard::allowed_programs(&programs, &toolchain)
        } else {
            self.programs.clone()
        };
        let g = &*self;
        if (on, default, &allowed, &programs) == (g.on, g.default, &g.allowed, &g.programs) {
            return Ok(());
        }
        kernel.configure_guard(on, default, &allowed, &programs)?;
        if !on {
            for (pid, _) in self.guarded.drain() {
                kernel.set_guard(pid, 0);
            }
        }
        (self.on, self.default, self.allowed, self.programs) = (on, default, allowed, programs);
        Ok(())
    }
}

/// How often the files of `allow.programs` and `install.toolchain` are looked for again.
const PROGRAMS_RESCAN: Duration = Duration::from_secs(60);

/// A program no allowlist names (it does not exist): what an exec the guard judges runs.
const UNALLOWED_PROGRAM: &str = "/nonexistent/premain-guard-probe";

/// How long the record of an open the watch decided is waited for.
const DECIDED_WAIT: Duration = Duration::from_secs(2);

/// An open the file watch answered for enforcement.
pub(super) struct Decided {
    pid: u32,
    tid: u32,
    file: (u64, u64),
    /// Denied in time: its record is a failed open (`EPERM`); else it went on.
    denied: bool,
    due: Instant,
}

/// An open the file watch is to deny: enforce mode, and it alerts.
pub(super) struct Denial {
    event: Event,
    context: Context,
    hit: Hit,
    file: (u64, u64),
}

/// An open the file watch saw that would alert, not yet recorded by a kernel program.
pub(super) struct Unseen {
    file: (u64, u64),
    /// What a kernel program's record of the same open says too: a 32-bit call (which only
    /// the raw-syscall programs record), and whether it writes (`None`: flags not known, as
    /// for `openat2`). Another open of the file by the process (the payload reading back what
    /// it wrote through `int 0x80`) is not that record.
    same: (bool, Option<bool>),
    due: Instant,
    event: Event,
    context: Context,
    hit: Hit,
}

/// Whether a kernel record of an open (32-bit or not, writing or not) of the file an [`Unseen`]
/// is about, by its process, is the record of that same open: of the same ABI, and writing when
/// the watch read that it writes (or the watch did not know the flags).
fn same_open((compat, writes): (bool, Option<bool>), record_compat: bool, record_writes: bool) -> bool {
    compat == record_compat && writes.is_none_or(|w| w == record_writes)
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
    /// The rule it broke and what was done, under dry-run or enforce (repeats included).
    pub(super) enforced: Option<(RuleId, Outcome)>,
    /// The guard acted on it (or would have), and it raises no alert: its rule and what the
    /// guard did.
    pub(super) overreach: Option<(RuleId, Outcome)>,
}

impl Handled {
    fn of(event: Event, context: Context) -> Self {
        Self { event, context, alert: None, folded: false, quieted: None, enforced: None, overreach: None }
    }
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

    /// An open the credential file watch is asked about (`record`, made from its request),
    /// decided with the phase of this moment: the denial to give when it alerts and its rule
    /// is enforced there; else kept when it would alert, until `due` (see
    /// [`Self::unseen_due`]).
    pub(super) fn watched(
        &mut self,
        kernel: &mut KernelControl,
        record: Record,
        due: Instant,
        flags_known: bool,
    ) -> Option<Denial> {
        let (file, same) = match &record {
            Record::Open(open) => (
                (open.dev, open.ino),
                (open.header.flags & FLAG_COMPAT != 0, flags_known.then(|| open_writes(open.flags))),
            ),
            _ => return None,
        };
        let event = self.tracker.handle(kernel, record)?;
        let mut context = self.engine.observe(&mut self.tracker.table, &event);
        let Verdict::Alert(hit) = self.verdict(&event, &mut context) else { return None };
        if enforceable(hit.rule) && self.mode(hit.rule, &event) == Mode::Enforce {
            return Some(Denial { event, context, hit, file });
        }
        self.unseen.push(Unseen { file, same, due, event, context, hit });
        None
    }

    /// The alert of a denial the watch gave (`in_time`), or meant to give when its answer
    /// came after the bound (then the open went on).
    pub(super) fn denied(&mut self, denial: Denial, in_time: bool) -> Handled {
        let Denial { mut event, context, hit, file } = denial;
        if in_time && let Action::Open { result, .. } = &mut event.action {
            *result = -i64::from(libc::EPERM);
        }
        let (pid, tid) = (event.header.pid, event.header.tid);
        self.decided.push(Decided { pid, tid, file, denied: in_time, due: Instant::now() + DECIDED_WAIT });
        let outcome = if in_time { Outcome::Denied } else { Outcome::TimedOut };
        let mut handled = Handled::of(event, context);
        self.raise(&mut handled, hit, Some(Enforcement { mode: Mode::Enforce, outcome }));
        handled
    }

    /// The mode of `rule` where `event` happened.
    fn mode(&self, rule: RuleId, event: &Event) -> Mode {
        let p = &event.process;
        let pod =
            p.container.as_ref().and_then(|c| c.pod_uid.as_deref()).and_then(|uid| self.alerts.pod(uid));
        let scope = Scope {
            namespace: pod.as_ref().map(|p| p.namespace.as_str()),
            labels: pod.as_ref().map(|p| &p.labels),
            cgroup: p.cgroup.as_deref(),
            exe: p.exe.as_deref(),
        };
        self.policy.mode(rule, &scope)
    }

    /// What was done with the action of an alert raised from its record (it has completed).
    fn after_the_fact(&self, hit: &Hit, event: &Event) -> Option<Enforcement> {
        if guarded_rule(&event.action).is_some() {
            // Decided in the kernel as the call was made: its record says how.
            return match guard_outcome(event.header.flags) {
                Some(outcome) => {
                    let mode = if outcome == Outcome::WouldDeny { Mode::DryRun } else { Mode::Enforce };
                    Some(Enforcement { mode, outcome })
                }
                None => Enforcement::after_the_fact(self.mode(hit.rule, event), false),
            };
        }
        let mode = self.mode(hit.rule, event);
        let asked = match &event.action {
            Action::Open { file: Some(f), .. } => self.tracker.is_watched((f.dev, f.ino)),
            _ => false,
        };
        Enforcement::after_the_fact(mode, enforceable(hit.rule) && asked)
    }

    /// Whether `event` is the kernel program's record of an open the watch decided.
    fn was_decided(&mut self, event: &Event) -> bool {
        let Action::Open { result, file, .. } = &event.action else { return false };
        let (pid, tid) = (event.header.pid, event.header.tid);
        let Some(i) = self.decided.iter().position(|d| {
            d.pid == pid
                && d.tid == tid
                && if d.denied {
                    *result == -i64::from(libc::EPERM)
                } else {
                    file.as_ref().is_some_and(|f| (f.dev, f.ino) == d.file)
                }
        }) else {
            return false;
        };
        self.decided.swap_remove(i);
        true
    }

    /// The watch's opens that no kernel program recorded by now: their alerts.
    pub(super) fn unseen_due(&mut self, now: Instant) -> Vec<Handled> {
        self.decided.retain(|d| d.due > now);
        let (due, waiting) = std::mem::take(&mut self.unseen).into_iter().partition(|u| u.due <= now);
        self.unseen = waiting;
        due.into_iter()
            .map(|u: Unseen| {
                let enforcement = self.after_the_fact(&u.hit, &u.event);
                let mut handled = Handled::of(u.event, u.context);
                self.raise(&mut handled, u.hit, enforcement);
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
            && let Action::Open { file: Some(file), flags, .. } = &event.action
        {
            // The watch saw this open first: this record tells it better.
            let (pid, key) = (event.header.pid, (file.dev, file.ino));
            let compat = event.header.flags & FLAG_COMPAT != 0;
            let writes = open_writes(*flags);
            self.unseen
                .retain(|u| u.event.header.pid != pid || u.file != key || !same_open(u.same, compat, writes));
        }
        if !self.decided.is_empty() && self.was_decided(&event) {
            // Alerted when the watch answered, with what came of it.
            return Handled::of(event, context);
        }
        let mut handled = Handled::of(event, context);
        match self.verdict(&handled.event, &mut handled.context) {
            Verdict::None => handled.overreach = overreach(&handled.event),
            Verdict::Quiet(rule) => {
                handled.quieted = Some(rule);
                handled.overreach = overreach(&handled.event);
            }
            Verdict::Alert(hit) => {
                let enforcement = self.after_the_fact(&hit, &handled.event);
                self.raise(&mut handled, hit, enforcement);
            }
        }
        if let Some((rule, outcome)) = handled.overreach {
            let e = &handled.event;
            let fallback = e.header.flags & FLAG_GUARD_FALLBACK != 0;
            tracing::warn!(
                pid = e.header.pid,
                tid = e.header.tid,
                rule = rule.as_str(),
                outcome = outcome.as_str(),
                phase = handled.context.phase.as_str(),
                fallback,
                "the guard decided on an action that raises no alert"
            );
        }
        self.guard_thread(kernel, &handled.event);
        handled
    }

    /// Brings the kernel's guard in line with the policy and the allowlists (see
    /// [`GuardState::configure`]).
    pub(super) fn configure_guard(&mut self, kernel: &mut KernelControl, fresh: bool) -> Result<(), String> {
        self.guard.configure(kernel, &self.policy, &self.rules, fresh)
    }

    /// After `event` (applied): the guard bits of its process and, when it may have changed a
    /// thread's phase, the judgment of that thread's network actions, as of the event's time.
    fn guard_thread(&mut self, kernel: &mut KernelControl, event: &Event) {
        if !self.guard.on {
            return;
        }
        let (pid, tid, at) = (event.header.pid, event.header.tid, event.header.ktime_ns);
        let child = match &event.action {
            Action::Exit { .. } => {
                self.guard.guarded.remove(&pid);
                return;
            }
            Action::Fork { child_pid, child_tid, thread } => Some((*child_pid, *child_tid, *thread)),
            Action::Image { .. } | Action::Exec { image: Some(_), .. } | Action::Marker(_) => None,
            _ => return,
        };
        let new_image = matches!(event.action, Action::Image { .. } | Action::Exec { .. });
        let guardable = self
            .tracker
            .table
            .get(pid)
            .is_some_and(|p| p.phase.interpreter && p.phase.probed && !p.phase.runtime_only);
        let bits = if guardable { guard::guard_bits(|rule| self.mode(rule, event)) } else { 0 };
        let before = self.guard.guarded.get(&pid).copied().unwrap_or(0);
        if new_image || bits != before {
            kernel.set_guard(pid, bits);
        }
        if bits == 0 {
            self.guard.guarded.remove(&pid);
            return;
        }
        self.guard.guarded.insert(pid, bits);
        let judged = self.judgment(event, pid, tid);
        kernel.judge_thread(tid, at, judged);
        if let Some((child_pid, child_tid, thread)) = child {
            if !thread {
                self.guard.guarded.insert(child_pid, bits);
            }
            let judged = self.judgment(event, child_pid, child_tid);
            kernel.judge_thread(child_tid, at, judged);
        }
    }

    /// The `JUDGED_*` bits of thread `tid` of `pid` now: whether a connect or a send to a
    /// destination no allowlist covers, a read of another process's memory, an exec of a
    /// program no allowlist covers would alert, by the one [`Self::verdict`].
    fn judgment(&mut self, event: &Event, pid: u32, tid: u32) -> u32 {
        let context = self.engine.context_of(&self.tracker.table, pid, tid);
        if context.phase == Phase::Runtime {
            return 0;
        }
        let installing = context.phase == Phase::Install;
        let mut bits = if installing { JUDGED_INSTALLING } else { 0 };
        let addr = self.rules.unallowed_destination(installing);
        let probes = [
            (
                JUDGED_CONNECT,
                addr.clone().map(|addr| Action::Connect { addr, requested: None, fd: -1, result: 0 }),
            ),
            (JUDGED_SEND, addr.map(|addr| Action::Send { addr, requested: None, fd: -1, result: 0 })),
            (
                JUDGED_MEMORY,
                Some(Action::Memory { target_pid: 1, via: "process_vm_readv", path: None, result: 0 }),
            ),
            (
                JUDGED_EXEC,
                Some(Action::Exec {
                    path: std::path::PathBuf::from(UNALLOWED_PROGRAM),
                    resolution: crate::process::table::Resolution::Absolute,
                    argv: Vec::new(),
                    result: 0,
                    file: None,
                    image: None,
                }),
            ),
        ];
        for (bit, action) in probes {
            let Some(action) = action else { continue };
            let mut header = event.header.clone();
            (header.pid, header.tid) = (pid, tid);
            let probe = Event { header, process: event.process.clone(), action, stack: event.stack.clone() };
            if matches!(self.verdict(&probe, &mut context.clone()), Verdict::Alert(_)) {
                bits |= bit;
            }
        }
        bits
    }

    /// The alert of `handled`, or the repeat it folds into.
    fn raise(&mut self, handled: &mut Handled, hit: Hit, enforcement: Option<Enforcement>) {
        let folded = self.alerts.folded;
        handled.enforced = enforcement.map(|e| (hit.rule, e.outcome));
        handled.alert = self.alerts.raise(
            &handled.event,
            &handled.context,
            hit,
            enforcement,
            &self.tracker.table,
            &self.redactor,
        );
        handled.folded = self.alerts.folded > folded;
    }

    /// Records dropped per hook because their process was gone before it was identified.
    pub(super) fn unattributed(&self) -> &[u64; HOOK_COUNT as usize] {
        &self.tracker.stats.unattributed
    }
}

/// The rule under which the guard decides `action` in the kernel (its record says what it
/// decided).
fn guarded_rule(action: &Action) -> Option<RuleId> {
    match action {
        Action::Connect { .. } => Some(RuleId::NetworkConnect),
        Action::Send { .. } => Some(RuleId::NetworkSend),
        Action::Exec { image: Some(_), .. } => Some(RuleId::ProgramExec),
        Action::Memory { via, .. } if *via != "proc-mem" => Some(RuleId::ProcessMemory),
        _ => None,
    }
}

/// What the guard did to a call, by its record's flags (`None`: nothing).
fn guard_outcome(flags: u32) -> Option<Outcome> {
    if flags & FLAG_GUARD_DENIED != 0 {
        Some(Outcome::Denied)
    } else if flags & FLAG_GUARD_KILLED != 0 {
        Some(Outcome::Killed)
    } else if flags & FLAG_GUARD_WOULD_DENY != 0 {
        Some(Outcome::WouldDeny)
    } else {
        None
    }
}

/// The rule and outcome of a call the guard acted on, for one that raises no alert.
fn overreach(event: &Event) -> Option<(RuleId, Outcome)> {
    guarded_rule(&event.action).zip(guard_outcome(event.header.flags))
}

#[cfg(test)]
mod tests {
    use super::same_open;

    #[test]
    fn a_kernel_record_replaces_the_watch_alert_of_the_same_open_only() {
        // A native append the watch saw: its record (64-bit, writing) is that open.
        assert!(same_open((false, Some(true)), false, true));
        // A 32-bit append the watch saw, then the payload reads the file back natively: not it.
        assert!(!same_open((true, Some(true)), false, false));
        assert!(!same_open((true, Some(true)), false, true), "another ABI is another open");
        // A native write the watch saw, then a native read of the file: not the write.
        assert!(!same_open((false, Some(true)), false, false));
        // openat2 and io_uring: flags not known to the watch, any record of the ABI is it.
        assert!(same_open((false, None), false, false));
        assert!(same_open((false, None), false, true));
        // With the raw-syscall programs, a 32-bit open's own record comes too.
        assert!(same_open((true, Some(false)), true, false));
    }
}
