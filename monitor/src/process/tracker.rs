//! Applies decoded records to the process table, settles which processes are Python (the
//! kernel marks unknown executables *pending* and keeps recording them until this decides), and
//! turns the records of tracked processes into events.

use std::{
    collections::{HashMap, VecDeque},
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use monitor_common::{
    ExeKey, FLAG_ARGS_TRUNCATED, FLAG_EXEC_BY_TRACKED, FLAG_HELD, HOOK_CONNECT, HOOK_COUNT, HOOK_EXEC,
    HOOK_EXIT, HOOK_FORK, HOOK_NAME, HOOK_OPEN, HOOK_PYTHON, HOOK_SEND, HOOK_SOCKET, HOOK_TARGET, HOOK_URING,
    SYSCALL_UNSEEN, TRACK_DESCENDANT, TRACK_PENDING, TRACK_PYTHON,
};

pub(crate) use crate::kernel::control::KernelState;
use crate::{
    kernel::decode::{Exec, Header, Record, Stack},
    process::{
        event::{Action, Event, ProcessInfo},
        files,
        judge::{Judged, Pool, Request},
        procfs,
        table::{IdMap, Lineage, Process, ProcessTable, resolve},
    },
    python::{
        interpreter::{self, Interpreter, Verdict},
        layout,
        stack::{self, PyStack},
    },
};

/// Judges the executable of process `pid` whose kernel identity is `key`.
pub(crate) type Judge = Box<dyn FnMut(u32, &ExeKey, &[u8]) -> Option<Verdict>>;

#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    pub records: u64,
    /// Records of processes found not to be Python while pending (expected, not a loss).
    pub dropped_not_python: u64,
    pub table_full: u64,
    /// Pending processes whose executable could not be examined (gone before we looked).
    pub unjudged: u64,
    /// Records of processes the kernel tracked but we had no record of (judged on the spot).
    pub unknown_processes: u64,
    /// Records dropped per hook because their process was gone before it could be identified
    /// (its exec record was lost): lost, not judged.
    pub unattributed: [u64; HOOK_COUNT as usize],
    /// Processes the kernel stopped until judged, and resumed.
    pub held: u64,
    /// How long each held process waited (exec to resume), drained by the metrics.
    pub hold_waits_ns: Vec<u64>,
    /// Interpreter runs that started before their probes could be attached.
    pub late: u64,
}

const VERDICT_CACHE_MAX: usize = 8_192;

/// Why a process is no longer tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Untracked {
    /// It runs something other than Python: its queued records are dropped.
    NotPython,
    /// It was gone before it could be identified (its exec record was lost): its queued
    /// records count as lost.
    Unidentified,
}

/// Processes premain tracks, and what the kernel is told about them. Every method that can
/// change what the kernel tracks takes the kernel's [`KernelState`].
pub(crate) struct Tracker {
    pub table: ProcessTable,
    judge: Judge,
    /// Where requests go when executables are judged in the background; `None`: `judge` runs
    /// at once.
    background: Option<Pool>,
    verdicts: HashMap<ExeKey, Option<Arc<Interpreter>>>,
    /// Processes (pid, start time) no longer tracked whose records may still be queued, and why.
    untracked: IdMap<(u64, Untracked)>,
    /// Executables being judged in the background, with the records that wait for them.
    judging: HashMap<ExeKey, Parked>,
    /// `judging`'s executables in the order they were asked for: records are released in that
    /// order, so what waited longer is never overtaken by what came after it.
    order: VecDeque<ExeKey>,
    /// Processes whose records wait, and for which executable.
    parked: IdMap<ExeKey>,
    /// Records waiting in `judging`.
    parked_records: usize,
    /// While the records of an executable that could not be judged are applied: that one.
    unjudgeable: Option<ExeKey>,
    pub stats: Stats,
    links: files::Links,
    /// Persistence targets the file watch marks, by inode.
    watched_persistence: std::collections::HashSet<(u64, u64)>,
    /// By thread: the Python stack walked at the entry of its syscall in progress, until that
    /// syscall's record comes (the next record of the thread).
    walked: HashMap<u32, Stack>,
    /// Interpreter images and the stack errors already logged for them.
    stack_errors: std::collections::HashSet<(PathBuf, &'static str)>,
}

/// Threads whose walked stacks wait for their syscall's record at most (a record lost to a
/// full ring leaves its stack waiting until the thread's next record).
const WALKED_MAX: usize = 16_384;

/// Records that wait for a verdict.
struct Parked {
    records: Vec<Record>,
    since: Instant,
    /// The verdict, once it came (`Some(None)`: the file could not be examined).
    verdict: Option<Option<Verdict>>,
}

/// Records waiting for verdicts at most; beyond, records of waiting processes are lost (and
/// counted as unattributed).
const PARKED_MAX: usize = 65_536;
/// A verdict that takes longer is given up: the records that waited for it are applied as for
/// an executable that could not be examined (and held processes resumed).
pub(crate) const JUDGE_DEADLINE: Duration = Duration::from_secs(10);

impl Tracker {
    pub(crate) fn new(judge: Judge, max_processes: usize) -> Self {
        Self {
            table: ProcessTable::new(max_processes),
            judge,
            background: None,
            verdicts: HashMap::new(),
            untracked: IdMap::default(),
            judging: HashMap::new(),
            order: VecDeque::new(),
            parked: IdMap::default(),
            parked_records: 0,
            unjudgeable: None,
            stats: Stats::default(),
            links: files::Links::default(),
            watched_persistence: std::collections::HashSet::new(),
            walked: HashMap::new(),
            stack_errors: std::collections::HashSet::new(),
        }
    }

    /// From now on executables are judged by `pool`; the verdicts are to be handed to
    /// [`Self::judged`].
    pub(crate) fn judge_in_background(&mut self, pool: Pool) {
        self.background = Some(pool);
    }

    /// Whether records wait for a verdict.
    pub(crate) fn judging(&self) -> bool {
        !self.judging.is_empty()
    }

    /// A verdict from the background. Once every executable asked for before it has its
    /// verdict too, remembers them and applies the records that waited, in order; returns
    /// their events.
    pub(crate) fn judged(&mut self, kernel: &mut dyn KernelState, judged: Judged) -> Vec<Event> {
        let Judged { key, verdict } = judged;
        match self.judging.get_mut(&key) {
            Some(parked) => parked.verdict = Some(verdict),
            // Nothing waits for it (given up already): still worth knowing.
            None => match verdict {
                Some(Verdict::Python(interp)) => _ = self.remember(kernel, key, Some(interp)),
                Some(Verdict::NotPython) => _ = self.remember(kernel, key, None),
                None => {}
            },
        }
        let mut events = Vec::new();
        while let Some(&first) = self.order.front() {
            let Some(verdict) = self.judging.get_mut(&first).and_then(|p| p.verdict.take()) else { break };
            self.order.pop_front();
            match verdict {
                Some(Verdict::Python(interp)) => _ = self.remember(kernel, first, Some(interp)),
                Some(Verdict::NotPython) => _ = self.remember(kernel, first, None),
                None => self.unjudgeable = Some(first),
            }
            events.extend(self.release(kernel, first));
            self.unjudgeable = None;
        }
        events
    }

    /// Gives up the verdicts asked for more than `deadline` ago (see [`JUDGE_DEADLINE`]).
    pub(crate) fn give_up_judging(&mut self, kernel: &mut dyn KernelState, deadline: Duration) -> Vec<Event> {
        let late: Vec<ExeKey> = self
            .judging
            .iter()
            .filter(|(_, p)| p.verdict.is_none() && p.since.elapsed() >= deadline)
            .map(|(k, _)| *k)
            .collect();
        let mut events = Vec::new();
        for key in late {
            tracing::warn!(?key, "an executable could not be judged in time; its processes are not tracked");
            events.extend(self.judged(kernel, Judged { key, verdict: None }));
        }
        events
    }

    fn release(&mut self, kernel: &mut dyn KernelState, key: ExeKey) -> Vec<Event> {
        let Some(parked) = self.judging.remove(&key) else { return Vec::new() };
        self.parked.retain(|_, waiting_for| *waiting_for != key);
        self.parked_records -= parked.records.len();
        parked.records.into_iter().filter_map(|record| self.apply(kernel, record)).collect()
    }

    /// The executable `record` must be judged before it can be applied, when that happens in
    /// the background and the verdict is not known yet.
    fn waits_for(&self, record: &Record) -> Option<Request> {
        self.background.as_ref()?;
        let pid = record.header().pid;
        let (key, filename) = match record {
            Record::Image(exec) if exec.tracking & (TRACK_PENDING | TRACK_PYTHON) != 0 => {
                (exec.exe, exec.filename.clone())
            }
            Record::Image(_) => return None,
            // A process the kernel tracks and we never heard of: see `known`.
            _ if self.table.get(pid).is_none() && !self.untracked.contains_key(&pid) => {
                (exe_key(&procfs::exe_link(pid)).ok()?, Vec::new())
            }
            _ => return None,
        };
        (!self.verdicts.contains_key(&key) && self.unjudgeable != Some(key)).then_some(Request {
            pid,
            key,
            filename,
        })
    }

    /// Keeps `record` until `key` is judged, with every later record of its process (and of
    /// the processes it forks meanwhile).
    fn park(&mut self, key: ExeKey, record: Record) {
        let header = record.header();
        if self.parked_records >= PARKED_MAX {
            self.stats.unattributed[hook_of(&record) as usize] += 1;
            return;
        }
        self.parked.insert(header.pid, key);
        if let Record::Fork(fork) = &record
            && !fork.is_thread
        {
            self.parked.insert(fork.child_pid, key);
        }
        let order = &mut self.order;
        let parked = self.judging.entry(key).or_insert_with(|| {
            order.push_back(key);
            Parked { records: Vec::new(), since: Instant::now(), verdict: None }
        });
        parked.records.push(record);
        self.parked_records += 1;
    }

    /// Adds a process found running at start-up (already marked in the kernel by the caller).
    pub(crate) fn adopt(&mut self, process: Process) {
        if !self.table.insert(process) {
            self.stats.table_full += 1;
        }
    }

    /// Remembers a verdict, in the kernel too so later execs of the same file are settled
    /// there. A CPython gets its probes first: the kernel verdict lets its processes run
    /// unstopped, so the probes must already be in place.
    pub(crate) fn remember(
        &mut self,
        kernel: &mut dyn KernelState,
        key: ExeKey,
        python: Option<Interpreter>,
    ) -> Option<Arc<Interpreter>> {
        if self.verdicts.len() >= VERDICT_CACHE_MAX {
            self.verdicts.clear();
        }
        let python = python.map(|mut interp| {
            interp.probed = kernel.attach_probes(&interp);
            Arc::new(interp)
        });
        kernel.set_verdict(key, python.is_some());
        self.verdicts.insert(key, python.clone());
        python
    }

    fn verdict(
        &mut self,
        kernel: &mut dyn KernelState,
        pid: u32,
        exec: &Exec,
    ) -> Option<Option<Arc<Interpreter>>> {
        if let Some(known) = self.verdicts.get(&exec.exe) {
            return Some(known.clone());
        }
        if self.unjudgeable == Some(exec.exe) {
            return None;
        }
        match (self.judge)(pid, &exec.exe, &exec.filename)? {
            Verdict::Python(interp) => Some(self.remember(kernel, exec.exe, Some(interp))),
            Verdict::NotPython => Some(self.remember(kernel, exec.exe, None)),
        }
    }

    /// The catalogued credential files by inode (see [`files::Links`]).
    pub(crate) fn set_credential_files(&mut self, files: HashMap<(u64, u64), files::Catalogued>) {
        self.links.set_credentials(files);
    }

    /// Whether the file watch is asked before every open of the inode `key`.
    pub(crate) fn is_watched(&self, key: (u64, u64)) -> bool {
        self.links.is_credential(key) || self.watched_persistence.contains(&key)
    }

    /// The persistence targets the file watch marks, by inode.
    pub(crate) fn set_persistence_files(&mut self, files: std::collections::HashSet<(u64, u64)>) {
        self.watched_persistence = files;
    }

    /// A file the watch was asked about through the mark of its directory (a new file there),
    /// until the next look for marked files.
    pub(crate) fn watched_in_directory(&mut self, key: (u64, u64)) {
        self.watched_persistence.insert(key);
    }

    /// Applies one record; returns the event it is, if its process is tracked. An exit event's
    /// process stays in the table until [`Self::retire`], so that what observes the event still
    /// finds it. A record that must wait for a verdict is kept, and its event comes out of
    /// [`Self::judged`].
    pub(crate) fn handle(&mut self, kernel: &mut dyn KernelState, record: Record) -> Option<Event> {
        self.stats.records += 1;
        self.apply(kernel, record)
    }

    fn apply(&mut self, kernel: &mut dyn KernelState, record: Record) -> Option<Event> {
        let header = record.header();
        let pid = header.pid;
        if let Some(&key) = self.parked.get(&pid) {
            self.park(key, record);
            return None;
        }
        self.forget_if_reused(kernel, pid, header.start_ns);
        if let Some(request) = self.waits_for(&record) {
            let key = request.key;
            if !self.judging.contains_key(&key)
                && let Some(pool) = &self.background
            {
                pool.submit(request);
            }
            self.park(key, record);
            return None;
        }
        if let Record::Stack(stack) = record {
            if self.walked.len() >= WALKED_MAX {
                self.walked.clear();
            }
            self.walked.insert(stack.header.tid, stack);
            return None;
        }
        // The stack walked at this syscall's entry, read with the interpreter that ran then.
        let tid = match &record {
            Record::Image(exec) => exec.old_pid,
            other => other.header().tid,
        };
        // The file watch's record of an open (made while the open waits) is not the kernel's:
        // the stack waits for the kernel's.
        let watched = matches!(&record, Record::Open(o) if o.syscall == SYSCALL_UNSEEN);
        let pending = if watched { None } else { self.walked.remove(&tid) };
        let walked = pending.filter(|w| w.syscall_made(&record)).map(|w| {
            let interp = self.table.get(pid).and_then(|p| p.python.clone());
            let resolved = stack::resolve(&w, interp.as_deref().and_then(layout::lines));
            if let (Some(error), Some(interp)) = (resolved.error, interp) {
                self.stack_error(&interp, error);
            }
            Arc::new(resolved)
        });
        let mut event = self.apply_record(kernel, record)?;
        if let Some(own) = walked {
            if let Action::Exec { image: Some(image), .. } = &event.action
                && image.python.is_none()
                && let Some(p) = self.table.get_mut(pid)
            {
                // Its lineage leaves Python here: what it does next carries this stack.
                p.origin_stack = Some(Arc::new(PyStack { inherited_from: Some(pid), ..(*own).clone() }));
            }
            event.stack = Some(own);
        } else if event.process.python.is_none() {
            event.stack = self.table.get(pid).and_then(|p| p.origin_stack.clone());
        }
        Some(event)
    }

    /// Says once per interpreter image and kind of error that its stacks cannot be read.
    fn stack_error(&mut self, interp: &Interpreter, error: stack::StackError) {
        if self.stack_errors.len() < 1024 && self.stack_errors.insert((interp.image.clone(), error.as_str()))
        {
            tracing::warn!(
                image = ?interp.image,
                version = ?interp.version,
                error = error.as_str(),
                "a Python stack could not be read; alerts say stack_error"
            );
        }
    }

    fn apply_record(&mut self, kernel: &mut dyn KernelState, record: Record) -> Option<Event> {
        let pid = record.header().pid;
        match record {
            Record::Stack(_) => None,
            Record::Image(exec) => self.on_image(kernel, exec),
            Record::Marker(marker) => {
                if self.drop_untracked(kernel, &marker.header, HOOK_PYTHON) {
                    return None;
                }
                self.event(&marker.header, Action::Marker(marker.mark))
            }
            Record::Send(send) => {
                if self.drop_untracked(kernel, &send.header, HOOK_SEND) {
                    return None;
                }
                self.event(
                    &send.header,
                    Action::Send {
                        addr: send.addr,
                        requested: send.requested,
                        fd: send.fd,
                        result: send.result,
                    },
                )
            }
            Record::Fork(fork) => {
                if !self.known(kernel, &fork.header) {
                    if !fork.is_thread {
                        kernel.untrack(fork.child_pid);
                        self.untracked.insert(fork.child_pid, (fork.child_start_ns, Untracked::NotPython));
                    }
                    return None;
                }
                let parent = self.table.get(pid)?;
                if !fork.is_thread {
                    // The kernel copied the parent's state at fork time; the parent may have been
                    // settled since, and the child must follow.
                    let tracking = if parent.is_pending() {
                        fork.tracking
                    } else {
                        (parent.tracking & TRACK_PYTHON) | TRACK_DESCENDANT
                    };
                    let child = parent.child(fork.child_pid, fork.child_start_ns, tracking);
                    if tracking != fork.tracking {
                        kernel.track(fork.child_pid, tracking);
                    }
                    self.untracked.remove(&fork.child_pid);
                    if !self.table.insert(child) {
                        self.stats.table_full += 1;
                    }
                }
                self.event(
                    &fork.header,
                    Action::Fork {
                        child_pid: fork.child_pid,
                        child_tid: fork.child_tid,
                        thread: fork.is_thread,
                    },
                )
            }
            Record::Exit(exit) => {
                let event = self.event(&exit.header, Action::Exit { status: exit.exit_code });
                if event.is_none() {
                    self.retire(kernel, pid);
                }
                event
            }
            Record::Open(open) => {
                if self.drop_untracked(kernel, &open.header, HOOK_OPEN) {
                    return None;
                }
                let header = open.header.clone();
                let action = files::open(open, pid, self.table.get_mut(pid), &self.links);
                self.event(&header, action)
            }
            Record::Target(target) => {
                if self.drop_untracked(kernel, &target.header, HOOK_TARGET) {
                    return None;
                }
                let header = target.header.clone();
                let action = files::target(target, pid)?;
                self.event(&header, action)
            }
            Record::Socket(socket) => {
                if self.drop_untracked(kernel, &socket.header, HOOK_SOCKET) {
                    return None;
                }
                let header = socket.header.clone();
                self.event(&header, files::socket(socket))
            }
            Record::Uring(uring) => {
                if self.drop_untracked(kernel, &uring.header, HOOK_URING) {
                    return None;
                }
                let header = uring.header.clone();
                let action = files::uring(uring, pid, self.table.get_mut(pid));
                self.event(&header, action)
            }
            Record::Name(name) => {
                if self.drop_untracked(kernel, &name.header, HOOK_NAME) {
                    return None;
                }
                let header = name.header.clone();
                let action = files::name(name, pid, self.table.get_mut(pid), &mut self.links);
                self.event(&header, action)
            }
            Record::Connect(connect) => {
                if self.drop_untracked(kernel, &connect.header, HOOK_CONNECT) {
                    return None;
                }
                self.event(
                    &connect.header,
                    Action::Connect {
                        addr: connect.addr,
                        requested: connect.requested,
                        fd: connect.fd,
                        result: connect.result,
                    },
                )
            }
            Record::ExecFailed(exec) => {
                if self.drop_untracked(kernel, &exec.header, HOOK_EXEC) {
                    return None;
                }
                let (path, resolution) = resolve(&exec.filename, exec.dirfd, pid, self.table.get_mut(pid));
                self.event(
                    &exec.header,
                    Action::Exec {
                        path,
                        resolution,
                        argv: exec.argv,
                        result: exec.result,
                        file: None,
                        image: None,
                    },
                )
            }
        }
    }

    /// Forgets `pid` and what the kernel was told of it: after its exit event, or when it is
    /// found gone.
    pub(crate) fn retire(&mut self, kernel: &mut dyn KernelState, pid: u32) {
        self.untracked.remove(&pid);
        if let Some(gone) = self.table.remove(pid) {
            withdraw(kernel, &gone);
        }
    }

    /// A record of a process that started at `start_ns` while the table holds an older one with
    /// the same pid (its exit was lost): the old entry goes, the new process is judged afresh.
    fn forget_if_reused(&mut self, kernel: &mut dyn KernelState, pid: u32, start_ns: u64) {
        if self.table.get(pid).is_some_and(|p| !p.is(start_ns))
            && let Some(stale) = self.table.remove(pid)
        {
            withdraw(kernel, &stale);
        }
        if self.untracked.get(&pid).is_some_and(|(start, _)| !same_start(*start, start_ns)) {
            self.untracked.remove(&pid);
        }
    }

    fn drop_untracked(&mut self, kernel: &mut dyn KernelState, header: &Header, hook: u32) -> bool {
        let pid = header.pid;
        let drop = !self.known(kernel, header) || self.table.get(pid).is_some_and(Process::is_pending);
        if drop {
            if self.untracked.get(&pid).is_some_and(|(_, why)| *why == Untracked::Unidentified) {
                self.stats.unattributed[hook as usize] += 1;
            } else {
                self.stats.dropped_not_python += 1;
            }
        }
        drop
    }

    /// Whether `pid` is in the table, adopting it if the kernel tracks a process we never heard
    /// of (its image or fork record was lost): it is judged from `/proc` now.
    fn known(&mut self, kernel: &mut dyn KernelState, header: &Header) -> bool {
        let pid = header.pid;
        if self.table.get(pid).is_some() {
            return true;
        }
        if self.untracked.contains_key(&pid) {
            return false;
        }
        self.stats.unknown_processes += 1;
        let Ok(key) = exe_key(&procfs::exe_link(pid)) else {
            // Gone before any record told us what it ran (its exec record was lost): whether
            // it was Python cannot be known any more, so its records count as lost.
            kernel.untrack(pid);
            self.untracked.insert(pid, (header.start_ns, Untracked::Unidentified));
            return false;
        };
        let python = match self.verdicts.get(&key) {
            Some(known) => known.clone(),
            None if self.unjudgeable == Some(key) => None,
            None => match (self.judge)(pid, &key, b"") {
                Some(Verdict::Python(interp)) => self.remember(kernel, key, Some(interp)),
                _ => None,
            },
        };
        let Some(python) = python else {
            kernel.untrack(pid);
            self.untracked.insert(pid, (header.start_ns, Untracked::NotPython));
            return false;
        };
        let Lineage { ppid, exe, argv, argv_truncated } = Lineage::read(pid).unwrap_or_default();
        kernel.track(pid, TRACK_PYTHON);
        self.table.insert(Process {
            pid,
            start_ns: header.start_ns,
            ppid,
            tracking: TRACK_PYTHON,
            exe,
            argv,
            argv_truncated,
            python: Some(python),
            cwd: procfs::cwd(pid),
            container: crate::k8s::cgroup::of_pid(pid),
            cgroup: procfs::cgroup_path(pid),
            // Its start was not seen: like a process running before premain, it is phased
            // `runtime` rather than guessed.
            preexisting: true,
            ..Process::default()
        })
    }

    fn on_image(&mut self, kernel: &mut dyn KernelState, exec: Exec) -> Option<Event> {
        let pid = exec.header.pid;
        self.untracked.remove(&pid);
        let mut tracking = exec.tracking;
        let python = if tracking & TRACK_PENDING != 0 || tracking & TRACK_PYTHON != 0 {
            match self.verdict(kernel, pid, &exec) {
                Some(verdict) => verdict,
                None => {
                    self.stats.unjudged += 1;
                    None
                }
            }
        } else {
            None
        };
        // Resume a held process now that its probes (if any) are attached, whatever the verdict.
        // An unseen file had no probes at exec: unless the hold kept the process stopped until
        // now, its first markers may be missing.
        let late = if exec.header.flags & FLAG_HELD != 0 {
            let was_stopped = kernel.resume(pid);
            self.stats.held += 1;
            if self.stats.hold_waits_ns.len() < 4096 {
                self.stats.hold_waits_ns.push(monotonic_ns().saturating_sub(exec.header.ktime_ns));
            }
            !was_stopped
        } else {
            exec.tracking & TRACK_PENDING != 0
        };
        if late && python.is_some() {
            self.stats.late += 1;
        }
        let previous = self.table.get(pid).cloned();
        if tracking & TRACK_PENDING != 0 {
            // The kernel kept recording while it waited for us; settle it now.
            let keeps = previous.as_ref().is_some_and(|p| p.is_python() || p.is_descendant());
            tracking = if python.is_some() { TRACK_PYTHON } else { 0 };
            if keeps || exec.tracking & TRACK_DESCENDANT != 0 {
                tracking |= TRACK_DESCENDANT;
            }
            if tracking == 0 {
                kernel.untrack(pid);
                if let Some(gone) = self.table.remove(pid) {
                    withdraw(kernel, &gone);
                }
                self.untracked.insert(pid, (exec.header.start_ns, Untracked::NotPython));
                self.settle_children(kernel, &exec.exe, false);
                return None;
            }
            kernel.track(pid, tracking);
            self.settle_children(kernel, &exec.exe, python.is_some());
        }
        let mut process = Process {
            pid,
            start_ns: exec.header.start_ns,
            ppid: exec.header.ppid,
            tracking,
            started_ns: exec.header.ktime_ns,
            exe_key: exec.exe,
            exe: procfs::exe(pid).or_else(|| path_of(&exec.filename)),
            argv: exec.argv.clone(),
            argv_truncated: exec.header.flags & FLAG_ARGS_TRUNCATED != 0,
            // Ran before its probes were attached: its first markers may be missing.
            late,
            python,
            preexisting: false,
            cwd: previous.as_ref().and_then(|p| p.cwd.clone()),
            // Read at every exec: runtimes move a process into the container's cgroup between
            // fork and exec. The forked copy's value serves when the process is already gone.
            container: crate::k8s::cgroup::of_pid(pid)
                .or_else(|| previous.as_ref().and_then(|p| p.container.clone())),
            cgroup: procfs::cgroup_path(pid).or_else(|| previous.as_ref().and_then(|p| p.cgroup.clone())),
            // What it ran before: the phase engine reads it to carry taint over the exec.
            phase: previous.as_ref().map(|p| p.phase.clone()).unwrap_or_default(),
            origin_stack: previous.as_ref().and_then(|p| p.origin_stack.clone()),
            ..Process::default()
        };
        process.cwd = procfs::cwd(pid).or(process.cwd);
        if !self.table.insert(process) {
            self.stats.table_full += 1;
        }
        let (path, resolution) = resolve(&exec.filename, exec.dirfd, pid, self.table.get_mut(pid));
        if exec.header.flags & FLAG_EXEC_BY_TRACKED == 0 {
            return self.event(&exec.header, Action::Image { path, argv: exec.argv });
        }
        let image = ProcessInfo::of(self.table.get(pid));
        let mut event = self.event(
            &exec.header,
            Action::Exec {
                path,
                resolution,
                argv: exec.argv,
                result: 0,
                file: Some(exec.exe),
                image: Some(Box::new(image)),
            },
        )?;
        // The image's own identity is reported by the exec's action; the actor is who exec'd.
        if let Some(before) = previous {
            event.process = ProcessInfo::of(Some(&before));
        }
        Some(event)
    }

    /// Forked children of a pending process inherited its pending state and its image.
    fn settle_children(&mut self, kernel: &mut dyn KernelState, key: &ExeKey, python: bool) {
        for child in self.table.pids_with_pending_exe(key) {
            let Some(p) = self.table.get_mut(child) else { continue };
            let tracking = (p.tracking & TRACK_DESCENDANT) | if python { TRACK_PYTHON } else { 0 };
            if tracking == 0 {
                kernel.untrack(child);
                let start = p.start_ns;
                self.table.remove(child);
                self.untracked.insert(child, (start, Untracked::NotPython));
            } else {
                p.tracking = tracking;
                kernel.track(child, tracking);
            }
        }
    }

    fn event(&self, header: &Header, action: Action) -> Option<Event> {
        let process = self.table.get(header.pid).filter(|p| !p.is_pending())?;
        Some(Event { header: header.clone(), process: ProcessInfo::of(Some(process)), action, stack: None })
    }

    /// Forgets processes that ended without an exit record reaching us.
    pub(crate) fn sweep(&mut self, kernel: &mut dyn KernelState) -> usize {
        self.untracked.retain(|pid, _| procfs::exists(*pid));
        let gone = self.table.sweep(procfs::exists);
        for process in &gone {
            withdraw(kernel, process);
        }
        gone.len()
    }
}

/// A process leaves the table: a quiet declaration made for it must not outlive it (the pid
/// will be reused).
fn withdraw(kernel: &mut dyn KernelState, process: &Process) {
    if process.phase.declared_quiet().is_some() {
        kernel.set_quiet(process.pid, None);
    }
}

fn hook_of(record: &Record) -> u32 {
    match record {
        Record::Open(_) => HOOK_OPEN,
        Record::Connect(_) => HOOK_CONNECT,
        Record::Send(_) => HOOK_SEND,
        Record::Marker(_) => HOOK_PYTHON,
        Record::ExecFailed(_) | Record::Image(_) => HOOK_EXEC,
        Record::Fork(_) => HOOK_FORK,
        Record::Exit(_) => HOOK_EXIT,
        Record::Target(_) => HOOK_TARGET,
        Record::Socket(_) => HOOK_SOCKET,
        Record::Name(_) => HOOK_NAME,
        Record::Uring(_) => HOOK_URING,
        Record::Stack(_) => monitor_common::HOOK_STACK,
    }
}

fn same_start(a: u64, b: u64) -> bool {
    Process { start_ns: a, ..Process::default() }.is(b)
}

fn path_of(bytes: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = Path::new(std::ffi::OsStr::from_bytes(bytes));
    path.is_absolute().then(|| path.to_path_buf())
}

/// Converts a userspace `st_dev` into the kernel's internal `dev_t` (`MAJOR << 20 | MINOR`),
/// the encoding the programs read from `super_block.s_dev`.
/// `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

pub(crate) fn kernel_dev(st_dev: u64) -> u64 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    (major << 20) | minor
}

/// The kernel identity of a file, from `stat`.
pub(crate) fn exe_key(path: &Path) -> std::io::Result<ExeKey> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::metadata(path)?;
    Ok(ExeKey {
        dev: kernel_dev(meta.dev()),
        ino: meta.ino(),
        mtime_sec: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        _pad: 0,
    })
}

/// The real judge: examines `/proc/<pid>/exe` (the exact file the process runs, even if it was
/// deleted or lives in another mount namespace), or the exec's filename when the process is
/// already gone and the file there is still the same one.
pub(crate) fn judge_from_proc(pid: u32, key: &ExeKey, filename: &[u8]) -> Option<Verdict> {
    let proc_exe = procfs::exe_link(pid);
    let proc_root = procfs::root_link(pid);
    // A process that shares premain's root sees the same paths: judge its file by that path, so
    // that what is found (the image to probe) does not vanish with the process. Under
    // /proc/<pid>/root, a run that exits before its probes are attached left its interpreter
    // unprobed for good.
    let root = if same_file(&proc_root, Path::new("/")) { PathBuf::from("/") } else { proc_root };
    let candidates = [
        fs::read_link(&proc_exe).ok().map(|target| root.join(target.strip_prefix("/").unwrap_or(&target))),
        Some(proc_exe),
        path_of(filename),
    ];
    let path = candidates.into_iter().flatten().find(|path| exe_key(path).is_ok_and(|k| k == *key))?;
    let root = if path.starts_with(&root) { root } else { PathBuf::from("/") };
    match interpreter::recognize(&path, &root) {
        Ok(verdict) => Some(verdict),
        Err(err) => {
            // Escaped (Debug): the file name may hold line breaks or terminal escapes.
            tracing::warn!(pid, path = ?path, error = ?err, "cannot parse executable; treating it as not Python");
            Some(Verdict::NotPython)
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::decode::{Fork, Open};

    #[derive(Default)]
    struct FakeKernel {
        tracked: HashMap<u32, u32>,
        verdicts: HashMap<ExeKey, bool>,
        resumed: Vec<u32>,
    }

    impl KernelState for FakeKernel {
        fn track(&mut self, pid: u32, flags: u32) {
            self.tracked.insert(pid, flags);
        }
        fn untrack(&mut self, pid: u32) {
            self.tracked.remove(&pid);
        }
        fn set_verdict(&mut self, key: ExeKey, python: bool) {
            self.verdicts.insert(key, python);
        }
        fn attach_probes(&mut self, _: &Interpreter) -> bool {
            true
        }
        fn resume(&mut self, pid: u32) -> bool {
            self.resumed.push(pid);
            pid != 41
        }
        fn set_quiet(&mut self, _: u32, _: Option<u64>) {}
    }

    /// A tracker and the fake kernel it talks to.
    struct Harness {
        tracker: Tracker,
        kernel: FakeKernel,
    }

    impl Harness {
        fn handle(&mut self, record: Record) -> Option<Event> {
            let event = self.tracker.handle(&mut self.kernel, record)?;
            if matches!(event.action, Action::Exit { .. }) {
                self.tracker.retire(&mut self.kernel, event.header.pid);
            }
            Some(event)
        }
    }

    impl std::ops::Deref for Harness {
        type Target = Tracker;
        fn deref(&self) -> &Tracker {
            &self.tracker
        }
    }

    impl std::ops::DerefMut for Harness {
        fn deref_mut(&mut self) -> &mut Tracker {
            &mut self.tracker
        }
    }

    const PY: ExeKey = ExeKey { dev: 1, ino: 100, mtime_sec: 0, mtime_nsec: 0, _pad: 0 };
    const SH: ExeKey = ExeKey { dev: 1, ino: 200, mtime_sec: 0, mtime_nsec: 0, _pad: 0 };

    fn python() -> Interpreter {
        Interpreter {
            exe: "/usr/bin/python3".into(),
            image: "/usr/bin/python3".into(),
            version: Some((3, 11)),
            free_threaded: false,
            symbols: Default::default(),
            runtime: Default::default(),
            probed: false,
        }
    }

    fn tracker() -> Harness {
        let judge: Judge = Box::new(|_, key, _| {
            Some(if *key == PY { Verdict::Python(python()) } else { Verdict::NotPython })
        });
        Harness { tracker: Tracker::new(judge, 100), kernel: FakeKernel::default() }
    }

    fn header(pid: u32, flags: u32) -> Header {
        Header {
            ktime_ns: 0,
            cgroup_id: 0,
            start_ns: 0,
            pid,
            tid: pid,
            ppid: 1,
            uid: 0,
            gid: 0,
            flags,
            comm: b"x".to_vec(),
        }
    }

    fn image(pid: u32, exe: ExeKey, tracking: u32, flags: u32) -> Record {
        Record::Image(Exec {
            header: header(pid, flags),
            result: 0,
            exe,
            old_pid: pid,
            tracking,
            dirfd: -100,
            flags: 0,
            syscall: 0,
            argv: vec![b"prog".to_vec()],
            filename: b"/nonexistent/prog".to_vec(),
        })
    }

    fn open(pid: u32) -> Record {
        Record::Open(Open {
            header: header(pid, 0),
            result: 3,
            dirfd: -100,
            flags: 0,
            mode: 0,
            syscall: 1,
            resolve: 0,
            path: b"/etc/hosts".to_vec(),
            kpath: Vec::new(),
            dev: 0,
            ino: 0,
            nlink: 0,
            file_mode: 0,
        })
    }

    #[test]
    fn pending_python_becomes_tracked_and_reports() {
        let mut t = tracker();
        let started = t.handle(image(10, PY, TRACK_PENDING, 0)).expect("image event");
        assert!(matches!(started.action, Action::Image { .. }));
        // Not held: it ran before its probes existed.
        assert!(!started.process.probed);
        assert_eq!(t.kernel.tracked.get(&10), Some(&TRACK_PYTHON));
        assert_eq!(t.kernel.verdicts.get(&PY), Some(&true));
        let event = t.handle(open(10)).expect("event for a python process");
        assert_eq!(event.process.python.as_deref(), Some("3.11"));
    }

    #[test]
    fn held_processes_are_resumed_once_judged_whatever_the_verdict() {
        let mut t = tracker();
        t.handle(image(40, SH, TRACK_PENDING, FLAG_HELD));
        t.handle(image(41, PY, TRACK_PENDING, FLAG_HELD));
        t.handle(image(42, PY, TRACK_PYTHON, 0));
        assert_eq!(t.kernel.resumed, vec![40, 41]);
        // 41 was running again before it was judged: its start-up may have been missed.
        assert!(t.table.get(41).unwrap().late);
        assert!(!ProcessInfo::of(t.table.get(41)).probed);
        assert!(!t.table.get(42).unwrap().late);
    }

    #[test]
    fn records_of_a_process_gone_unidentified_count_as_lost_not_as_not_python() {
        let mut t = tracker();
        // No image record was read for it, and no such process exists any more.
        let gone = u32::MAX - 7;
        t.kernel.tracked.insert(gone, TRACK_PYTHON);
        assert!(t.handle(open(gone)).is_none());
        assert!(t.handle(open(gone)).is_none());
        assert_eq!(t.stats.unattributed[HOOK_OPEN as usize], 2);
        assert_eq!(t.stats.dropped_not_python, 0);
        assert!(!t.kernel.tracked.contains_key(&gone));
    }

    #[test]
    fn pending_non_python_is_untracked_and_its_queued_records_dropped() {
        let mut t = tracker();
        t.kernel.tracked.insert(11, TRACK_PENDING);
        assert!(t.handle(image(11, SH, TRACK_PENDING, 0)).is_none());
        assert!(!t.kernel.tracked.contains_key(&11));
        assert_eq!(t.kernel.verdicts.get(&SH), Some(&false));
        assert!(t.handle(open(11)).is_none());
        assert_eq!(t.stats.dropped_not_python, 1);
    }

    #[test]
    fn descendants_stay_tracked_through_exec_of_other_programs() {
        let mut t = tracker();
        t.handle(image(10, PY, TRACK_PYTHON, 0));
        let fork = Record::Fork(Fork {
            header: header(10, 0),
            child_pid: 12,
            child_tid: 12,
            is_thread: false,
            tracking: TRACK_PYTHON | TRACK_DESCENDANT,
            child_start_ns: 0,
        });
        assert!(t.handle(fork).is_some());
        let exec = t
            .handle(image(12, SH, TRACK_DESCENDANT | TRACK_PENDING, FLAG_EXEC_BY_TRACKED))
            .expect("exec event");
        assert!(matches!(exec.action, Action::Exec { .. }));
        assert_eq!(t.kernel.tracked.get(&12), Some(&TRACK_DESCENDANT));
        assert!(t.handle(open(12)).is_some());
    }

    fn judge_by_key(_: u32, key: &ExeKey, _: &[u8]) -> Option<Verdict> {
        Some(if *key == PY { Verdict::Python(python()) } else { Verdict::NotPython })
    }

    #[test]
    fn records_wait_for_a_verdict_judged_in_the_background_and_keep_their_order() {
        let mut t = tracker();
        t.handle(image(60, PY, TRACK_PENDING, 0));
        let (pool, mut verdicts) = Pool::new(judge_by_key);
        t.judge_in_background(pool);
        let new_exe = ExeKey { ino: 300, ..PY };
        assert!(t.handle(image(50, new_exe, TRACK_PENDING, FLAG_HELD)).is_none(), "waits for its verdict");
        assert!(t.handle(open(50)).is_none());
        let fork = Record::Fork(Fork {
            header: header(50, 0),
            child_pid: 51,
            child_tid: 51,
            is_thread: false,
            tracking: TRACK_PENDING,
            child_start_ns: 0,
        });
        assert!(t.handle(fork).is_none());
        assert!(t.handle(open(51)).is_none(), "the child's records wait too");
        assert!(t.handle(open(60)).is_some(), "other processes' records do not wait");
        assert!(t.kernel.resumed.is_empty(), "held until judged");
        assert!(t.judging());
        let judged = verdicts.blocking_recv().expect("a verdict");
        let events = t.tracker.judged(&mut t.kernel, judged);
        // Not Python: the held process is resumed and untracked, its records and its child's
        // dropped, in the order they came.
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(t.kernel.resumed, vec![50]);
        assert!(!t.kernel.tracked.contains_key(&50));
        assert!(t.table.get(51).is_none());
        assert_eq!(t.kernel.verdicts.get(&new_exe), Some(&false));
        assert!(!t.judging());

        // Python judged in the background: the image event, then the open, in order.
        assert!(t.handle(image(70, ExeKey { ino: 301, ..PY }, TRACK_PENDING, 0)).is_none());
        assert!(t.handle(open(70)).is_none());
        let events = t.tracker.judged(
            &mut t.kernel,
            Judged { key: ExeKey { ino: 301, ..PY }, verdict: Some(Verdict::Python(python())) },
        );
        let hooks: Vec<&str> = events.iter().map(|e| e.action.hook()).collect();
        assert_eq!(hooks, ["image", "open"]);

        // Verdicts arriving out of order: what was asked for first is released first.
        let (first, second) = (ExeKey { ino: 302, ..PY }, ExeKey { ino: 303, ..PY });
        assert!(t.handle(image(90, first, TRACK_PENDING, 0)).is_none());
        assert!(t.handle(image(91, second, TRACK_PENDING, 0)).is_none());
        let python_verdict = || Some(Verdict::Python(python()));
        assert!(
            t.tracker.judged(&mut t.kernel, Judged { key: second, verdict: python_verdict() }).is_empty()
        );
        let events = t.tracker.judged(&mut t.kernel, Judged { key: first, verdict: python_verdict() });
        let pids: Vec<u32> = events.iter().map(|e| e.header.pid).collect();
        assert_eq!(pids, [90, 91]);
    }

    #[test]
    fn a_verdict_that_does_not_come_is_given_up_and_held_processes_resumed() {
        let mut t = tracker();
        let (pool, _verdicts) = Pool::new(judge_by_key);
        t.judge_in_background(pool);
        assert!(t.handle(image(80, PY, TRACK_PENDING, FLAG_HELD)).is_none());
        assert!(t.tracker.give_up_judging(&mut t.kernel, Duration::from_secs(3600)).is_empty());
        assert!(t.kernel.resumed.is_empty());
        assert!(t.tracker.give_up_judging(&mut t.kernel, Duration::ZERO).is_empty());
        assert_eq!(t.kernel.resumed, vec![80]);
        assert_eq!(t.stats.unjudged, 1);
        assert!(!t.judging());
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let mut t = tracker();
        let with_start = |mut record: Record, start_ns| {
            if let Record::Image(exec) = &mut record {
                exec.header.start_ns = start_ns;
            }
            record
        };
        t.handle(with_start(image(10, PY, TRACK_PYTHON, 0), 1_000_000_000));
        assert!(t.table.get(10).is_some_and(Process::is_python));
        // Its exit was lost. A process started 5 s later with the same pid runs a shell: it
        // does not descend from the old Python and is not tracked.
        assert!(t.handle(with_start(image(10, SH, TRACK_PENDING, 0), 6_000_000_000)).is_none());
        assert!(t.table.get(10).is_none());
        assert!(!t.kernel.tracked.contains_key(&10));
    }

    #[test]
    fn children_of_a_pending_process_are_settled_with_it() {
        let mut t = tracker();
        t.table.insert(Process { pid: 20, tracking: TRACK_PENDING, exe_key: SH, ..Process::default() });
        t.table.insert(Process { pid: 21, tracking: TRACK_PENDING, exe_key: SH, ..Process::default() });
        t.handle(image(20, SH, TRACK_PENDING, 0));
        assert!(t.table.get(21).is_none());
        assert!(t.handle(open(21)).is_none());
    }

    #[test]
    fn unknown_verdicts_are_not_cached() {
        let judge: Judge = Box::new(|_, _, _| None);
        let mut t = Harness { tracker: Tracker::new(judge, 100), kernel: FakeKernel::default() };
        t.handle(image(30, PY, TRACK_PENDING, 0));
        assert!(t.kernel.verdicts.is_empty());
        assert_eq!(t.stats.unjudged, 1);
    }

    #[test]
    fn kernel_dev_encoding() {
        // makedev(8, 1) in glibc's encoding is 0x801; the kernel's is 8 << 20 | 1.
        assert_eq!(kernel_dev(0x801), (8 << 20) | 1);
        // minor above 255 uses the high bits in userspace.
        assert_eq!(kernel_dev(0x0010_0803), (8 << 20) | 0x103);
    }
}
