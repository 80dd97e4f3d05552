//! The daemon's view of tracked processes: identity, lineage, working directory and the
//! directory fds needed to turn relative paths absolute.

use std::{
    collections::HashMap,
    os::unix::ffi::OsStrExt as _,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use monitor_common::{ExeKey, TRACK_DESCENDANT, TRACK_PENDING, TRACK_PYTHON};

use super::procfs;
use crate::{
    k8s::Container,
    phase::ProcessPhase,
    python::{interpreter::Interpreter, stack::PyStack},
};

const AT_FDCWD: i32 = -100;
/// Directory fds remembered per process; beyond this the oldest knowledge is dropped and
/// `/proc/<pid>/fd` is asked instead.
const FDS_PER_PROCESS: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct Process {
    pub pid: u32,
    /// When the process started (`start_boottime`, ns; 0 when unknown): with the pid, which
    /// process this is, since pids are reused.
    pub start_ns: u64,
    pub ppid: u32,
    /// `TRACK_*` bits.
    pub tracking: u32,
    pub exe_key: ExeKey,
    pub exe: Option<PathBuf>,
    pub argv: Vec<Vec<u8>>,
    /// `argv` was cut at `ARGS_MAX` bytes or `ARGV_MAX` entries.
    pub argv_truncated: bool,
    pub python: Option<Arc<Interpreter>>,
    /// Was running before premain started.
    pub preexisting: bool,
    /// `CLOCK_MONOTONIC` time of the exec that started the current image (0 when unknown).
    pub started_ns: u64,
    /// Ran before its interpreter's probes were attached (a hold that did not hold).
    pub late: bool,
    pub cwd: Option<PathBuf>,
    /// The container it runs in, from its cgroup (read once, when first tracked).
    pub container: Option<Container>,
    /// Its cgroup v2 path, read with `container` (enforcement scopes match it).
    pub cgroup: Option<String>,
    pub(crate) fds: HashMap<i32, PathBuf>,
    /// What the phase engine knows of it.
    pub phase: ProcessPhase,
    /// For a process that is not Python: the Python stack its lineage left Python with (its
    /// Python ancestor's at the exec that started the lineage), which its actions carry.
    pub origin_stack: Option<Arc<PyStack>>,
}

impl Process {
    pub fn is_pending(&self) -> bool {
        self.tracking & TRACK_PENDING != 0
    }

    pub fn is_python(&self) -> bool {
        self.tracking & TRACK_PYTHON != 0
    }

    pub fn is_descendant(&self) -> bool {
        self.tracking & TRACK_DESCENDANT != 0
    }

    /// A child created by `fork`: same image, same cwd and fds, tracked as a descendant unless
    /// the parent itself is only pending. Its phase is the engine's to set.
    pub fn child(&self, pid: u32, start_ns: u64, tracking: u32) -> Self {
        Self {
            pid,
            start_ns,
            ppid: self.pid,
            tracking,
            preexisting: false,
            phase: ProcessPhase::default(),
            ..self.clone()
        }
    }

    /// Whether this entry is the process that started at `start_ns` (a record's), rather than
    /// an earlier one with the same pid whose exit was not seen. Start times read from `/proc`
    /// have clock-tick resolution, so they are compared at that.
    pub fn is(&self, start_ns: u64) -> bool {
        self.start_ns == 0 || start_ns == 0 || self.start_ns / tick_ns() == start_ns / tick_ns()
    }

    pub fn remember_fd(&mut self, fd: i32, path: PathBuf) {
        if self.fds.len() >= FDS_PER_PROCESS && !self.fds.contains_key(&fd) {
            // Cheap bound: forget everything rather than track ages; /proc is the fallback.
            self.fds.clear();
        }
        self.fds.insert(fd, path);
    }

    pub fn fd_path(&self, fd: i32) -> Option<&Path> {
        self.fds.get(&fd).map(PathBuf::as_path)
    }
}

/// Nanoseconds per clock tick (`/proc/<pid>/stat` times are in ticks).
pub fn tick_ns() -> u64 {
    static TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        // SAFETY: no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        1_000_000_000 / u64::try_from(hz).ok().filter(|hz| *hz > 0).unwrap_or(100)
    })
}

/// Who a process is, for lineage: from the table, or from `/proc` for processes premain does
/// not track (an installer that is not Python, an ancestor of a tracked process).
#[derive(Clone, Debug, Default)]
pub struct Lineage {
    pub ppid: u32,
    pub exe: Option<PathBuf>,
    pub argv: Vec<Vec<u8>>,
    pub argv_truncated: bool,
}

impl Lineage {
    /// Reads `/proc/<pid>`; `None` once the process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = procfs::stat(pid)?;
        let (argv, argv_truncated) = procfs::cmdline(pid);
        Some(Self { ppid: stat.ppid, exe: procfs::exe(pid), argv, argv_truncated })
    }
}

/// How a reported path was made absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The kernel's path of the opened file, walked at the syscall.
    Kernel,
    /// The kernel's path of the opened file, from the credential file watch (no kernel
    /// program recorded the open).
    Watch,
    /// The program passed an absolute path.
    Absolute,
    /// Joined to the working directory.
    Cwd,
    /// Joined to the directory fd.
    Dirfd,
    /// The base directory could not be found (the process had exited); the path is as passed.
    Unresolved,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Watch => "file-watch",
            Self::Absolute => "absolute",
            Self::Cwd => "cwd",
            Self::Dirfd => "dirfd",
            Self::Unresolved => "unresolved",
        }
    }
}

/// Joins `rel` to `base`, dropping `.` components. `..` is kept: collapsing it lexically is
/// wrong when the base contains symlinks.
pub fn join(base: &Path, rel: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    for part in rel.components() {
        match part {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Makes `path` (as passed to `openat(dirfd, path)`) absolute for process `pid`.
///
/// The working directory is read from `/proc` when the record is handled, which is right
/// unless the process changed directory in the meantime; when the process is gone, the last
/// directory seen for it is used.
pub fn resolve(raw: &[u8], dirfd: i32, pid: u32, process: Option<&mut Process>) -> (PathBuf, Resolution) {
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    if path.is_absolute() {
        return (path.to_path_buf(), Resolution::Absolute);
    }
    if dirfd == AT_FDCWD {
        let live = procfs::cwd(pid);
        let base = match (live, process) {
            (Some(cwd), Some(p)) => {
                p.cwd = Some(cwd.clone());
                Some(cwd)
            }
            (Some(cwd), None) => Some(cwd),
            (None, Some(p)) => p.cwd.clone(),
            (None, None) => None,
        };
        return match base {
            Some(base) => (join(&base, path), Resolution::Cwd),
            None => (path.to_path_buf(), Resolution::Unresolved),
        };
    }
    let known = process.and_then(|p| p.fd_path(dirfd).map(Path::to_path_buf));
    let base = known.or_else(|| procfs::fd(pid, dirfd));
    match base {
        Some(base) if raw.is_empty() => (base, Resolution::Dirfd),
        Some(base) => (join(&base, path), Resolution::Dirfd),
        None => (path.to_path_buf(), Resolution::Unresolved),
    }
}

/// Hashes pids and tids (small integers, not chosen by an adversary who could make them collide:
/// the kernel hands them out) with one multiplication; std's SipHash costs more than the rest
/// of a table lookup, and the reader looks processes up several times per record.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u32(&mut self, n: u32) {
        // Fibonacci hashing: the high bits (which hashbrown uses) depend on every input bit.
        self.0 = (u64::from(n) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by pid or tid.
pub(crate) type IdMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Tracked processes by pid, bounded: beyond `max` new processes are refused (and counted by
/// the caller) rather than evicting live ones.
pub struct ProcessTable {
    procs: IdMap<Process>,
    max: usize,
}

impl ProcessTable {
    pub fn new(max: usize) -> Self {
        Self { procs: IdMap::default(), max }
    }

    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.procs.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Process> {
        self.procs.get_mut(&pid)
    }

    /// Returns false when the table is full.
    pub fn insert(&mut self, process: Process) -> bool {
        if self.procs.len() >= self.max && !self.procs.contains_key(&process.pid) {
            return false;
        }
        self.procs.insert(process.pid, process);
        true
    }

    pub fn remove(&mut self, pid: u32) -> Option<Process> {
        self.procs.remove(&pid)
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn pids_with_pending_exe(&self, key: &ExeKey) -> Vec<u32> {
        self.procs.values().filter(|p| p.is_pending() && p.exe_key == *key).map(|p| p.pid).collect()
    }

    /// Drops entries whose process is gone (its exit record was lost), so the table returns to
    /// its idle size whatever happens to the ring buffer. Returns them.
    pub fn sweep(&mut self, alive: impl Fn(u32) -> bool) -> Vec<Process> {
        let gone: Vec<u32> = self.procs.keys().copied().filter(|pid| !alive(*pid)).collect();
        let gone = gone.into_iter().filter_map(|pid| self.procs.remove(&pid)).collect();
        self.procs.shrink_to(self.procs.len() * 2);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_pass_through() {
        let (path, how) = resolve(b"/etc/hosts", AT_FDCWD, u32::MAX, None);
        assert_eq!((path.as_path(), how), (Path::new("/etc/hosts"), Resolution::Absolute));
    }

    #[test]
    fn relative_to_cached_cwd_when_process_is_gone() {
        let mut p = Process { pid: u32::MAX, cwd: Some(PathBuf::from("/srv/app")), ..Process::default() };
        let (path, how) = resolve(b"./conf/../x", AT_FDCWD, u32::MAX, Some(&mut p));
        assert_eq!(path, Path::new("/srv/app/conf/../x"));
        assert_eq!(how, Resolution::Cwd);
    }

    #[test]
    fn relative_to_live_cwd() {
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        let (path, how) = resolve(b"marker", AT_FDCWD, me, None);
        assert_eq!((path, how), (cwd.join("marker"), Resolution::Cwd));
    }

    #[test]
    fn dirfd_from_table_then_from_proc() {
        let mut p = Process { pid: u32::MAX, ..Process::default() };
        p.remember_fd(7, PathBuf::from("/var/lib"));
        assert_eq!(resolve(b"db", 7, u32::MAX, Some(&mut p)).0, Path::new("/var/lib/db"));
        assert_eq!(resolve(b"", 7, u32::MAX, Some(&mut p)).0, Path::new("/var/lib"));
        assert_eq!(resolve(b"db", 8, u32::MAX, Some(&mut p)).1, Resolution::Unresolved);

        let dir = std::fs::File::open("/usr").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
        let (path, how) = resolve(b"bin", fd, std::process::id(), None);
        assert_eq!((path.as_path(), how), (Path::new("/usr/bin"), Resolution::Dirfd));
    }

    #[test]
    fn table_is_bounded_and_sweeps() {
        let mut table = ProcessTable::new(2);
        assert!(table.insert(Process { pid: 1, ..Process::default() }));
        assert!(table.insert(Process { pid: 2, ..Process::default() }));
        assert!(!table.insert(Process { pid: 3, ..Process::default() }));
        assert!(table.insert(Process { pid: 2, ppid: 9, ..Process::default() }));
        assert_eq!(table.sweep(|pid| pid == 1).len(), 1);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn fd_memory_is_bounded() {
        let mut p = Process::default();
        for fd in 0..1000 {
            p.remember_fd(fd, PathBuf::from("/x"));
        }
        assert!(p.fds.len() <= FDS_PER_PROCESS);
    }
}
