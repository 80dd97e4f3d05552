//! The exec watch: `execve` of a file premain has not let through before waits, inside the
//! kernel, until premain has judged the file and, for a CPython, attached its probes and told
//! the kernel its verdict. The caller is not stopped (a job-control shell sees nothing), and
//! the interpreter's first instruction already runs under its probes.
//!
//! fanotify `FAN_OPEN_EXEC_PERM` marks on every filesystem that can hold executables make each
//! exec ask; once a file is decided, an ignore mark on it lets its later execs pass without
//! asking, until it is written to. Verdicts are kept on disk ([`VerdictStore`]), so a restarted
//! premain lets files it judged before through without reading them again.
//!
//! Every exec is answered "allow" (premain observes) within [`ANSWER_BOUND`], whatever
//! happens: the file's judgment runs on a thread of its own, the kernel verdict and probes are
//! settled by the event loop (which owns them), and the thread that reads the requests answers
//! the ones still waiting at the bound. If premain dies, the kernel destroys the group and
//! lets every waiting exec through.

use std::{
    collections::{HashMap, HashSet},
    fs::{self, File},
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use monitor_common::ExeKey;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::{
    kernel::fanotify::{Group, Request},
    ops::metrics::Metrics,
    process::{
        mounts, on_disk, procfs,
        tracker::{KernelState, Tracker, kernel_dev},
        verdict_store::{FileId, VerdictStore},
    },
    python::interpreter::{self, Verdict},
};

/// How long an exec waits for premain's decision at most; then it goes on undecided (its
/// process is phased from syscall order if it is a CPython).
pub(super) const ANSWER_BOUND: Duration = Duration::from_secs(2);
/// Decisions in progress at most; an exec beyond goes on at once, undecided.
const WORKERS_MAX: usize = 32;
/// Seconds between two looks for filesystems mounted since.
pub(super) const RESCAN_TICKS: u64 = 10;

/// A verdict the event loop makes known to the kernel (probes first) before the exec goes on.
pub(super) struct Settle {
    pub(super) key: ExeKey,
    pub(super) verdict: Verdict,
    reply: mpsc::SyncSender<()>,
}

impl Settle {
    /// Makes the verdict known (attaching a CPython's probes first), then lets the exec go on.
    pub(super) fn apply(self, tracker: &mut Tracker, kernel: &mut dyn KernelState) {
        let python = match self.verdict {
            Verdict::Python(interp) => Some(interp),
            Verdict::NotPython => None,
        };
        tracker.remember(kernel, self.key, python);
        let _ = self.reply.send(());
    }
}

/// What the request-reading thread and the deciding threads share.
struct Shared {
    group: Group,
    store: Mutex<Option<VerdictStore>>,
    settles: UnboundedSender<Settle>,
    metrics: Metrics,
    workers: AtomicUsize,
    /// CPythons judged on disk before the ready line and not run since (see
    /// [`ExecWatch::judge_on_disk`]).
    on_disk: Mutex<HashMap<FileId, Verdict>>,
}

pub(super) struct ExecWatch {
    shared: Arc<Shared>,
    /// Superblocks marked, by device.
    marked: Arc<Mutex<HashSet<u64>>>,
    /// A rescan runs (on a thread of its own: a mount point that does not answer must not stall
    /// the event loop).
    rescanning: Arc<AtomicBool>,
}

impl ExecWatch {
    /// Marks the filesystems this process sees in `group` ([`Group::for_execs`]), and starts
    /// answering.
    /// Fails when no filesystem can be marked (no `CAP_SYS_ADMIN`, a kernel without
    /// `FAN_OPEN_EXEC_PERM`).
    pub(super) fn start(
        group: Group,
        metrics: &Metrics,
        store: Option<VerdictStore>,
    ) -> io::Result<(Self, UnboundedReceiver<Settle>)> {
        let (settles, settled) = unbounded_channel();
        let shared = Arc::new(Shared {
            group,
            store: Mutex::new(store),
            settles,
            metrics: metrics.clone(),
            workers: AtomicUsize::new(0),
            on_disk: Mutex::default(),
        });
        let watch = Self { shared, marked: Arc::default(), rescanning: Arc::default() };
        let own = fs::read_to_string("/proc/self/mountinfo")?;
        if let Some(err) = mark(&watch.shared, &watch.marked, &own, Path::new("/")) {
            return Err(err);
        }
        let serving = Arc::clone(&watch.shared);
        std::thread::Builder::new().name("exec-watch".into()).spawn(move || serve(&serving))?;
        Ok((watch, settled))
    }

    pub(super) fn filesystems(&self) -> usize {
        self.marked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Marks filesystems mounted since, in this mount namespace and in every other one a
    /// process runs in (containers), unless the previous rescan is still running.
    pub(super) fn rescan(&self) {
        if self.rescanning.swap(true, Ordering::AcqRel) {
            return;
        }
        let (shared, marked, rescanning) =
            (Arc::clone(&self.shared), Arc::clone(&self.marked), Arc::clone(&self.rescanning));
        let spawned = std::thread::Builder::new().name("exec-watch-mounts".into()).spawn(move || {
            rescan(&shared, &marked);
            rescanning.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            self.rescanning.store(false, Ordering::Release);
        }
    }

    /// Judges the interpreters on disk (see [`on_disk`]); returns how many are CPython. A
    /// CPython whose file no running process has (see [`Tracker::knows`]) gets its probes at
    /// its first exec, which asks as any file not let through does and is decided from this
    /// verdict without reading the file again: the probes of an interpreter that never runs
    /// would cost only their detaching, which the kernel does one at a time at the stop.
    pub(super) fn judge_on_disk(&self, tracker: &mut Tracker, kernel: &mut dyn KernelState) -> usize {
        let path_var = std::env::var("PATH").ok();
        let mut judged = HashSet::new();
        let mut pythons = 0;
        for path in on_disk::interpreter_candidates(path_var.as_deref()) {
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            if !judged.insert((meta.dev(), meta.ino())) {
                continue;
            }
            let id = FileId::of(&meta);
            let verdict = match interpreter::recognize(&path, Path::new("/")) {
                Ok(verdict) => verdict,
                Err(err) => {
                    tracing::debug!(path = ?path, error = %err, "cannot judge an interpreter on disk");
                    continue;
                }
            };
            let python = matches!(verdict, Verdict::Python(_));
            pythons += usize::from(python);
            let key = exe_key(&meta);
            if python && !tracker.knows(&key) {
                self.shared.on_disk.lock().unwrap_or_else(|p| p.into_inner()).insert(id, verdict);
                continue;
            }
            let (reply, _) = mpsc::sync_channel(1);
            Settle { key, verdict, reply }.apply(tracker, kernel);
            self.shared.remember(id, python);
            if let Err(err) = self.shared.group.ignore_execs_of(&file) {
                tracing::debug!(path = ?path, error = %err, "cannot let an interpreter's execs through");
            }
        }
        pythons
    }
}

/// Marks the filesystems of `mountinfo` not marked yet, reached under `root`; returns the
/// first error when none could be marked.
fn mark(shared: &Shared, marked: &Mutex<HashSet<u64>>, mountinfo: &str, root: &Path) -> Option<io::Error> {
    let mut first_error = None;
    for mount in mounts::executable_filesystems(mountinfo) {
        let point = root.join(mount.point.strip_prefix("/").unwrap_or(&mount.point));
        let Ok(meta) = fs::metadata(&point) else { continue };
        if marked.lock().unwrap_or_else(|p| p.into_inner()).contains(&meta.dev()) {
            continue;
        }
        match shared.group.watch_execs_on(&point) {
            Ok(()) => _ = marked.lock().unwrap_or_else(|p| p.into_inner()).insert(meta.dev()),
            Err(err) => {
                tracing::debug!(path = %point.display(), error = %err, "cannot watch execs on a filesystem");
                first_error.get_or_insert(err);
            }
        }
    }
    let count = marked.lock().unwrap_or_else(|p| p.into_inner()).len();
    shared.metrics.exec_watch_filesystems.set(count as i64);
    first_error.filter(|_| count == 0)
}

fn rescan(shared: &Shared, marked: &Mutex<HashSet<u64>>) {
    if let Ok(own) = fs::read_to_string("/proc/self/mountinfo") {
        mark(shared, marked, &own, Path::new("/"));
    }
    let own_ns = procfs::mount_namespace(std::process::id());
    let mut seen = HashSet::new();
    for pid in procfs::pids() {
        let Some(ns) = procfs::mount_namespace(pid) else { continue };
        if Some(&ns) == own_ns.as_ref() || !seen.insert(ns) {
            continue;
        }
        // A namespace's mounts change too: looked at on every rescan, but marked once.
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) {
            mark(shared, marked, &text, &procfs::root_link(pid));
        }
    }
}

impl Shared {
    fn remember(&self, id: FileId, python: bool) {
        if let Some(store) = self.store.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            store.put(id, python);
        }
    }

    fn remembered(&self, id: &FileId) -> Option<bool> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).as_ref()?.get(id)
    }
}

/// One exec that waits; answered once, by whichever comes first: its decision or the bound.
struct Pending {
    request: Request,
    since: Instant,
    answered: AtomicBool,
}

impl Pending {
    fn answer(&self, shared: &Shared, outcome: &str) {
        if self.answered.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(err) = shared.group.answer(&self.request, true) {
            tracing::warn!(error = %err, "cannot answer the exec watch");
        }
        shared.metrics.exec_decisions.with_label_values(&[outcome]).inc();
        shared.metrics.exec_decision_seconds.observe(self.since.elapsed().as_secs_f64());
    }

    fn deadline(&self) -> Instant {
        self.since + ANSWER_BOUND
    }
}

/// The request-reading thread: hands each exec to a deciding thread, and answers the ones
/// still waiting at [`ANSWER_BOUND`].
fn serve(shared: &Arc<Shared>) {
    let mut pending: Vec<Arc<Pending>> = Vec::new();
    loop {
        let now = Instant::now();
        for late in pending.iter().filter(|p| p.deadline() <= now) {
            late.answer(shared, "late");
        }
        pending.retain(|p| !p.answered.load(Ordering::Acquire));
        let next = pending.iter().map(|p| p.deadline()).min();
        let timeout = next.map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
        match shared.group.wait(timeout.max(Duration::from_millis(1))) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "cannot wait for the exec watch");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let requests = match shared.group.read() {
            Ok(requests) => requests,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the exec watch");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        for request in requests {
            let waiting =
                Arc::new(Pending { request, since: Instant::now(), answered: AtomicBool::new(false) });
            // premain's own execs never wait for its own loop.
            let own = procfs::status(waiting.request.tid).is_some_and(|s| s.tgid == std::process::id());
            if own || !waiting.request.exec {
                waiting.answer(shared, "own");
                continue;
            }
            if shared.workers.fetch_add(1, Ordering::AcqRel) >= WORKERS_MAX {
                shared.workers.fetch_sub(1, Ordering::AcqRel);
                waiting.answer(shared, "busy");
                continue;
            }
            let (deciding, on_thread) = (Arc::clone(shared), Arc::clone(&waiting));
            let spawned = std::thread::Builder::new().name("exec-decide".into()).spawn(move || {
                decide(&deciding, &on_thread);
                deciding.workers.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                shared.workers.fetch_sub(1, Ordering::AcqRel);
                waiting.answer(shared, "busy");
                continue;
            }
            pending.push(waiting);
        }
    }
}

/// Judges the file `waiting` is about, has the event loop settle the verdict, lets later execs
/// of the file through without asking, and answers.
fn decide(shared: &Shared, waiting: &Pending) {
    let Ok(file) = waiting.request.file.try_clone().map(File::from) else {
        return waiting.answer(shared, "unjudged");
    };
    let Ok(meta) = file.metadata() else { return waiting.answer(shared, "unjudged") };
    let id = FileId::of(&meta);
    let on_disk = shared.on_disk.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    let (verdict, outcome) = match (on_disk, shared.remembered(&id)) {
        (Some(verdict), _) => (verdict, "python"),
        // A CPython is judged again all the same: its probes need its symbols.
        (None, Some(false)) => (Verdict::NotPython, "remembered"),
        (None, _) => match judge(waiting.request.tid, &file) {
            Some(verdict @ Verdict::Python(_)) => (verdict, "python"),
            Some(verdict) => (verdict, "other"),
            None => return waiting.answer(shared, "unjudged"),
        },
    };
    let python = matches!(verdict, Verdict::Python(_));
    let (reply, replied) = mpsc::sync_channel(1);
    if shared.settles.send(Settle { key: exe_key(&meta), verdict, reply }).is_err() {
        return waiting.answer(shared, "unjudged");
    }
    // Past the bound, the reading thread has answered: the verdict still counts for later execs.
    let left = waiting.deadline().saturating_duration_since(Instant::now());
    match replied.recv_timeout(left) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => return,
        // The loop is gone (premain stops).
        Err(mpsc::RecvTimeoutError::Disconnected) => return waiting.answer(shared, "unjudged"),
    }
    shared.remember(id, python);
    if let Err(err) = shared.group.ignore_execs_of(&file) {
        tracing::debug!(error = %err, "cannot let a judged executable's execs through");
    }
    waiting.answer(shared, outcome);
}

/// The verdict on `file`, exec'd by thread `tid`. Judged by a path that names it as the
/// process sees it when there is one, so that `$ORIGIN` and its libraries resolve as they will
/// for the process; else through the descriptor itself.
fn judge(tid: u32, file: &File) -> Option<Verdict> {
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let proc_root = procfs::root_link(tid);
    let root = if same_file(&proc_root, Path::new("/")) { PathBuf::from("/") } else { proc_root };
    let named = fs::read_link(&by_fd)
        .ok()
        .map(|name| root.join(name.strip_prefix("/").unwrap_or(&name)))
        .filter(|path| same_file(path, &by_fd));
    let path = named.unwrap_or(by_fd);
    match interpreter::recognize(&path, &root) {
        Ok(verdict) => Some(verdict),
        Err(interpreter::RecognizeError::Io { .. }) => None,
        Err(err) => {
            tracing::debug!(path = ?path, error = %err, "cannot parse executable; treating it as not Python");
            Some(Verdict::NotPython)
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// The file's identity as the kernel programs read it from the new image.
fn exe_key(meta: &fs::Metadata) -> ExeKey {
    ExeKey {
        dev: kernel_dev(meta.dev()),
        ino: meta.ino(),
        mtime_sec: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        _pad: 0,
    }
}
