//! The credential file watch: fanotify marks on every catalogued credential file found on disk,
//! so that an open no kernel program records (a 32-bit `int 0x80` syscall, a record lost to a
//! full ring) or through a name no rule knows (a hard link made before premain started or by a
//! process it does not track) still reaches the rules.
//!
//! The opener waits in the kernel while premain decides, so the ring is drained first and the
//! phase is the one of that moment, exactly as for a recorded open. The answer is "allow",
//! unless the open alerts and `credential-read` is enforced where it happens: then the open
//! fails with `EPERM` and the file gives the opener no byte. It is given by a thread of its own
//! within [`ANSWER_BOUND`] whatever the event loop is doing: a stalled loop delays credential
//! opens on the node by at most that much, and a decision that comes later is an alert that
//! says `timed-out` (the open went on). If premain dies, the kernel lets every waiting open
//! through.
//!
//! An alerting open the watch saw waits [`UNSEEN_WAIT`] for a kernel program's record of the
//! same open (same process and inode), which alerts with more detail; only opens without one
//! alert from the watch (`syscall: "unseen"`, `path_resolution: "file-watch"`).
//!
//! Files are looked for under the home directory of every user in `/etc/passwd`, the `HOME`
//! of every process that starts a Python tree, and from every root such processes run in
//! (containers); again every [`RESCAN_TICKS`] seconds for files created since.
//!
//! Persistence targets (`limits.persistence_file_watch`) are watched the same way: inode marks
//! on the target files found, and directory marks (`FAN_EVENT_ON_CHILD`) on the directories
//! where a new file is a target (`~/.ssh`, `~/.config/systemd/user`, `/etc/cron.d`...), so a
//! file created there asks too. An open of one alerts only if the opener's flags (read from
//! `/proc/<tid>/syscall` while it waits) write, create, truncate or append.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use monitor_common::{FLAG_COMPAT, SYSCALL_UNSEEN};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::pipeline::{Handled, Pipeline};
use crate::{
    detect::{Rules, locate::Place},
    kernel::{
        control::{KernelControl, TrackedView},
        decode::{Header, Open, Record},
        fanotify::{Group, Request},
    },
    ops::metrics::Metrics,
    process::{
        files::Catalogued,
        procfs,
        tracker::{kernel_dev, monotonic_ns},
    },
};

/// How long an opener waits for the event loop's answer at most.
pub(super) const ANSWER_BOUND: Duration = Duration::from_millis(100);
/// How long an alerting open the watch saw waits for a kernel program's record of it.
const UNSEEN_WAIT: Duration = Duration::from_secs(1);
/// Seconds between two looks for catalogued files.
pub(super) const RESCAN_TICKS: u64 = 10;
/// Places remembered at most (temporary homes come and go).
const PLACES_MAX: usize = 1024;

/// A request handed to the event loop; dropping it without [`Ask::reply`] lets the open go on.
pub(super) struct Ask {
    tid: u32,
    file: OwnedFd,
    reply: mpsc::SyncSender<bool>,
    /// [`PENDING`], then [`REPLIED`] or [`GAVE_UP`], whichever side comes first.
    state: Arc<AtomicU8>,
}

const PENDING: u8 = 0;
const REPLIED: u8 = 1;
const GAVE_UP: u8 = 2;

impl Ask {
    /// Answers; `false` when the answering thread had given up waiting (the open went on).
    fn reply(self, allow: bool) -> bool {
        if self.state.compare_exchange(PENDING, REPLIED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return false;
        }
        // The thread waits for this value once the state says it comes.
        let _ = self.reply.send(allow);
        true
    }
}

pub(super) struct FileWatch {
    group: Arc<Group>,
    places: BTreeSet<Place>,
    /// Catalogued credential files by inode.
    files: HashMap<(u64, u64), Catalogued>,
    /// Whether persistence targets are marked (`limits.persistence_file_watch`).
    persistence_watch: bool,
    /// Whether `persistence` is in dry-run or enforce somewhere: its targets are marked
    /// whatever the limit says (a write can only be denied before it is made), user-site
    /// Python hooks included.
    persistence_policy: bool,
    /// The persistence targets marked, by inode.
    persistence_files: HashSet<(u64, u64)>,
    /// The directories marked for their children's opens, by inode.
    persistence_dirs: HashSet<(u64, u64)>,
    own_root: Option<(u64, u64)>,
    metrics: Metrics,
}

impl FileWatch {
    /// Creates the fanotify group and the thread that answers it.
    pub(super) fn start(
        metrics: &Metrics,
        persistence_watch: bool,
        persistence_policy: bool,
        tracked: Option<TrackedView>,
    ) -> std::io::Result<(Self, UnboundedReceiver<Ask>)> {
        let group = Arc::new(Group::new()?);
        let (asks, asked) = unbounded_channel();
        let answering = Arc::clone(&group);
        let (late, seconds) = (metrics.file_watch_late.clone(), metrics.open_decision_seconds.clone());
        std::thread::Builder::new()
            .name("file-watch".into())
            .spawn(move || answer(&answering, &asks, tracked.as_ref(), &late, &seconds))?;
        let mut places = BTreeSet::new();
        places.insert(Place { root: PathBuf::from("/"), home: None });
        places.extend(
            passwd_homes().into_iter().map(|home| Place { root: PathBuf::from("/"), home: Some(home) }),
        );
        let own_root = fs::metadata("/").ok().map(|m| (m.dev(), m.ino()));
        let watch = Self {
            group,
            places,
            files: HashMap::new(),
            persistence_watch,
            persistence_policy,
            persistence_files: HashSet::new(),
            persistence_dirs: HashSet::new(),
            own_root,
            metrics: metrics.clone(),
        };
        Ok((watch, asked))
    }

    /// Looks for catalogued files in every known place and marks them; returns the
    /// catalogued files by inode.
    pub(super) fn rescan(&mut self, rules: &Rules) -> HashMap<(u64, u64), Catalogued> {
        self.places.retain(|p| p.root.exists() && p.home.as_ref().is_none_or(|h| reach(&p.root, h).is_dir()));
        self.files.clear();
        let found = rules.locate_credentials(self.places.iter());
        self.mark(found);
        self.persistence_files.clear();
        self.persistence_dirs.clear();
        let places: Vec<Place> = self.places.iter().cloned().collect();
        self.mark_persistence(rules, &places);
        self.files.clone()
    }

    /// Whether `persistence` is in dry-run or enforce somewhere, from the next look on (a
    /// reload's policy).
    pub(super) fn set_persistence_policy(&mut self, on: bool) {
        self.persistence_policy = on;
    }

    /// The persistence targets marked, by inode.
    pub(super) fn persistence_files(&self) -> HashSet<(u64, u64)> {
        self.persistence_files.clone()
    }

    /// Marks the persistence targets and directories under `places`. A mark makes every open
    /// of the file (of every file in the directory) wait for premain, reads by shells
    /// included; user-site `.pth` and customize files, which every Python start of their user
    /// reads, only when persistence writes are to be denied or counted as would-deny.
    fn mark_persistence(&mut self, rules: &Rules, places: &[Place]) {
        if !self.persistence_watch && !self.persistence_policy {
            return;
        }
        for file in rules.locate_persistence(places.iter(), self.persistence_policy) {
            if let Some(key) = self.mark_one(&file.reach) {
                self.persistence_files.insert(key);
            }
        }
        for dir in rules.locate_persistence_dirs(places.iter()) {
            let Ok(meta) = fs::metadata(&dir.reach) else { continue };
            match self.group.watch_opens_in(&dir.reach) {
                Ok(()) => {
                    self.persistence_dirs.insert((kernel_dev(meta.dev()), meta.ino()));
                }
                Err(err) => {
                    tracing::debug!(path = %dir.reach.display(), error = %err, "cannot watch a directory");
                }
            }
        }
        self.metrics.file_watch_persistence_files.set(self.persistence_files.len() as i64);
        self.metrics.file_watch_persistence_dirs.set(self.persistence_dirs.len() as i64);
    }

    /// Marks the file at `reach`; its inode, or `None` when it cannot be marked. Marked again
    /// on every look: adding a mark an inode has is a no-op, and an inode number seen before
    /// may be a new file's (marks go with the file).
    fn mark_one(&self, reach: &Path) -> Option<(u64, u64)> {
        let meta = fs::metadata(reach).ok()?;
        if let Err(err) = self.group.watch_opens(reach) {
            tracing::debug!(path = %reach.display(), error = %err, "cannot watch a file");
            return None;
        }
        Some((kernel_dev(meta.dev()), meta.ino()))
    }

    /// A process that starts a Python tree: its `HOME` (and its root, for a container) become
    /// places to look; returns the catalogued files by inode when that found new places.
    pub(super) fn discover(&mut self, pid: u32, rules: &Rules) -> Option<HashMap<(u64, u64), Catalogued>> {
        let home = PathBuf::from(std::ffi::OsStr::from_bytes(&procfs::home(pid)?));
        if !home.is_absolute() || home == Path::new("/") {
            return None;
        }
        let root_link = procfs::root_link(pid);
        let root = match fs::metadata(&root_link) {
            Ok(m) if Some((m.dev(), m.ino())) != self.own_root => root_link,
            Ok(_) => PathBuf::from("/"),
            Err(_) => return None,
        };
        let place = Place { root: root.clone(), home: Some(home) };
        if self.places.contains(&place) || self.places.len() >= PLACES_MAX {
            return None;
        }
        let mut new = vec![place.clone()];
        let bare = Place { root, home: None };
        if self.places.insert(bare.clone()) {
            new.push(bare);
        }
        self.places.insert(place);
        let found = rules.locate_credentials(new.iter());
        self.mark(found);
        self.mark_persistence(rules, &new);
        Some(self.files.clone())
    }

    fn mark(&mut self, found: Vec<crate::detect::locate::Found>) {
        for file in found {
            if let Some(key) = self.mark_one(&file.reach) {
                self.files.insert(key, Catalogued { path: file.path, reach: file.reach });
            }
        }
        self.metrics.file_watch_files.set(self.files.len() as i64);
    }

    /// Decides `ask` with the ring already drained: the open as a record, handed to the
    /// pipeline, which says whether to deny it (then its alert is returned) and else keeps it
    /// if it would alert.
    pub(super) fn decide(
        &self,
        ask: Ask,
        pipeline: &mut Pipeline,
        kernel: &mut KernelControl,
    ) -> Option<Handled> {
        let Some(Seen { record, in_dir, flags_known }) = self.record(&ask, pipeline) else {
            ask.reply(true);
            return None;
        };
        if let (Some(key), Record::Open(open)) = (in_dir, &record) {
            // Asked about like a marked file: its kernel record's alert says so.
            debug_assert_eq!(key, (open.dev, open.ino));
            pipeline.tracker.watched_in_directory(key);
        }
        match pipeline.watched(kernel, record, Instant::now() + UNSEEN_WAIT, flags_known) {
            Some(denial) => {
                let in_time = ask.reply(false);
                Some(pipeline.denied(denial, in_time))
            }
            None => {
                ask.reply(true);
                None
            }
        }
    }

    /// The open `ask` is about, as a record of the process that made it, when that process is
    /// tracked and the file catalogued, a marked persistence target, or a persistence target
    /// in a marked directory.
    fn record(&self, ask: &Ask, pipeline: &Pipeline) -> Option<Seen> {
        let meta = fs::File::from(ask.file.try_clone().ok()?).metadata().ok()?;
        let (dev, ino) = (kernel_dev(meta.dev()), meta.ino());
        let marked = self.files.contains_key(&(dev, ino)) || self.persistence_files.contains(&(dev, ino));
        if !marked && self.persistence_dirs.is_empty() {
            return None;
        }
        // Untracked openers (nearly all of them) are answered from here.
        let status = procfs::status(ask.tid)?;
        let process = pipeline.tracker.table.get(status.tgid).filter(|p| !p.is_pending())?;
        let path = fs::read_link(format!("/proc/self/fd/{}", ask.file.as_raw_fd())).ok()?;
        if !marked {
            // Through a directory mark: a file in one, new or not, that is a target.
            let parent = fs::metadata(path.parent()?).ok()?;
            if !self.persistence_dirs.contains(&(kernel_dev(parent.dev()), parent.ino())) {
                return None;
            }
            pipeline.rules.persistence_target(&path)?;
        }
        // The opener waits in its syscall, whose flags are in its registers; where they are
        // not (openat2, io_uring), as a read, which is what the rules ask.
        let open = procfs::blocked_open(ask.tid);
        let header = Header {
            ktime_ns: monotonic_ns(),
            cgroup_id: procfs::cgroup_id(status.tgid),
            start_ns: process.start_ns,
            pid: status.tgid,
            tid: ask.tid,
            ppid: status.ppid,
            uid: status.uid,
            gid: status.gid,
            flags: if open.is_some_and(|o| o.ia32) { FLAG_COMPAT } else { 0 },
            comm: procfs::comm(ask.tid),
        };
        let record = Record::Open(Open {
            header,
            result: 0,
            dirfd: libc::AT_FDCWD,
            flags: open.and_then(|o| o.flags).unwrap_or(libc::O_RDONLY as u32),
            mode: 0,
            syscall: SYSCALL_UNSEEN,
            resolve: 0,
            path: Vec::new(),
            kpath: path.into_os_string().into_encoded_bytes(),
            dev,
            ino,
            nlink: meta.nlink() as u32,
            file_mode: meta.mode(),
        });
        let flags_known = open.is_some_and(|o| o.flags.is_some());
        Some(Seen { record, in_dir: (!marked).then_some((dev, ino)), flags_known })
    }
}

/// An open the watch was asked about, as a record.
struct Seen {
    record: Record,
    /// The file's inode, when it was asked about through its directory's mark.
    in_dir: Option<(u64, u64)>,
    /// Whether the opener's flags were read (not `openat2`, io_uring or a thread gone on).
    flags_known: bool,
}

/// The answering thread: an open by a process the kernel does not track (a shell reading
/// `/etc/bash.bashrc`, sshd an `authorized_keys`) is let through at once, as the kernel
/// programs themselves ignore it; every other request goes to the event loop, which has
/// [`ANSWER_BOUND`] to reply; then the kernel is answered.
fn answer(
    group: &Group,
    asks: &UnboundedSender<Ask>,
    tracked: Option<&TrackedView>,
    late: &prometheus::IntCounter,
    seconds: &prometheus::Histogram,
) {
    loop {
        let requests = match group.read() {
            Ok(requests) => requests,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the credential file watch");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        for request in requests {
            let asked_at = Instant::now();
            // premain's own opens (a pod's service-account token) never wait for its loop.
            let status = procfs::status(request.tid);
            let own = status.as_ref().is_some_and(|s| s.tgid == std::process::id());
            // Tracking starts in the kernel at the exec or fork, before the process runs: a
            // process not in the map has no pre-main code.
            let untracked = match (tracked, &status) {
                (Some(view), Some(s)) => !view.contains(s.tgid),
                _ => false,
            };
            let asked = if own || untracked { Some(true) } else { ask_loop(&request, asks) };
            let allow = asked.unwrap_or_else(|| {
                late.inc();
                true
            });
            if let Err(err) = group.answer(&request, allow) {
                tracing::warn!(error = %err, "cannot answer the credential file watch");
            }
            seconds.observe(asked_at.elapsed().as_secs_f64());
        }
    }
}

/// The event loop's answer, or `None` when it did not come in time (the loop then learns
/// that its answer was not the kernel's).
fn ask_loop(request: &Request, asks: &UnboundedSender<Ask>) -> Option<bool> {
    let (reply, replied) = mpsc::sync_channel(1);
    let file = request.file.try_clone().ok()?;
    let state = Arc::new(AtomicU8::new(PENDING));
    asks.send(Ask { tid: request.tid, file, reply, state: Arc::clone(&state) }).ok()?;
    if let Ok(allow) = replied.recv_timeout(ANSWER_BOUND) {
        return Some(allow);
    }
    match state.compare_exchange(PENDING, GAVE_UP, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => None,
        // The loop answered just now: its value is on its way.
        Err(_) => replied.recv().ok(),
    }
}

/// Home directories of the users in `/etc/passwd` that exist, less the system directories
/// daemons' accounts point at (`/bin`, `/usr/sbin`, `/run/...`: listing them would find
/// nothing and cost every rescan).
fn passwd_homes() -> Vec<PathBuf> {
    const SYSTEM: [&str; 7] = ["/bin", "/sbin", "/usr", "/dev", "/proc", "/sys", "/run"];
    let Ok(text) = fs::read_to_string("/etc/passwd") else { return Vec::new() };
    let mut homes: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(':').nth(5))
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && h != Path::new("/") && !SYSTEM.iter().any(|s| h.starts_with(s)))
        .filter(|h| h.is_dir())
        .collect();
    homes.sort();
    homes.dedup();
    homes
}

fn reach(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}
