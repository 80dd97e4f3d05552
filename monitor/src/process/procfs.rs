//! Every read of `/proc`: other processes' executables, working directories, fds, command
//! lines, states and cgroups, and this process's own status.
//!
//! A read of another process's command line takes that process's memory lock, which a
//! process can hold for as long as it likes (a page fault on a file of a FUSE mount it
//! serves, say). Such reads run on a helper thread and are given up after
//! [`STALL_DEADLINE`], so no process can stall the event loop by making itself unreadable.

use std::{
    fs,
    io::Read as _,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use monitor_common::ARGS_MAX;

/// How long the event loop waits for a read that can block on another process.
pub(crate) const STALL_DEADLINE: Duration = Duration::from_millis(50);
/// Helper threads still blocked in a read at most; beyond this such reads fail at once.
const STALLED_MAX: usize = 16;

fn dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// `/proc/<pid>/exe`: a path that opens the exact file the process runs, even deleted or in
/// another mount namespace.
pub(crate) fn exe_link(pid: u32) -> PathBuf {
    dir(pid).join("exe")
}

/// `/proc/<pid>/root`: the process's root directory, for paths as it sees them.
pub(crate) fn root_link(pid: u32) -> PathBuf {
    dir(pid).join("root")
}

/// What `/proc/<pid>/exe` points to.
pub(crate) fn exe(pid: u32) -> Option<PathBuf> {
    fs::read_link(exe_link(pid)).ok()
}

pub(crate) fn cwd(pid: u32) -> Option<PathBuf> {
    fs::read_link(dir(pid).join("cwd")).ok()
}

/// What fd `fd` of `pid` is open on.
pub(crate) fn fd(pid: u32, fd: i32) -> Option<PathBuf> {
    fs::read_link(dir(pid).join("fd").join(fd.to_string())).ok()
}

pub(crate) fn exists(pid: u32) -> bool {
    dir(pid).exists()
}

/// Every pid in `/proc`.
pub(crate) fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect()
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub ppid: u32,
    /// `R`, `S`, `T` (stopped), ...
    pub state: char,
    /// Start time since boot, in clock ticks.
    pub start_ticks: u64,
}

pub(crate) fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(dir(pid).join("stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The fields follow the parenthesised command, which may itself contain ") ".
    let mut fields = text.rsplit_once(") ")?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // `starttime` is field 22; `state` was field 3.
    let start_ticks = fields.nth(22 - 4 - 1)?.parse().ok()?;
    Some(Stat { ppid, state, start_ticks })
}

/// Whether the process is stopped, or a `SIGSTOP` sent to it has not been acted on yet (it is
/// still on its way back to user space).
pub(crate) fn stopped_or_stopping(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(dir(pid).join("status")) else { return false };
    const SIGSTOP_BIT: u64 = 1 << (libc::SIGSTOP - 1);
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let pending = |name: &str| field(name).and_then(|hex| u64::from_str_radix(hex, 16).ok()).unwrap_or(0);
    field("State:").is_some_and(|s| s.starts_with('T'))
        || (pending("ShdPnd:") | pending("SigPnd:")) & SIGSTOP_BIT != 0
}

/// The number of the syscall the process is blocked in (first field of `/proc/<pid>/syscall`).
pub(crate) fn syscall(pid: u32) -> Option<String> {
    let text = fs::read_to_string(dir(pid).join("syscall")).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

pub(crate) fn cgroup(pid: u32) -> Option<String> {
    fs::read_to_string(dir(pid).join("cgroup")).ok()
}

/// This process's capability set in effect (`CapEff` of `/proc/self/status`).
pub(crate) fn own_effective_caps() -> std::io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    Ok(status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0))
}

pub(crate) fn hostname() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_owned()).filter(|name| !name.is_empty())
}

/// `/proc/<pid>/cmdline` within the bounds the kernel side captures at exec, so a process
/// table entry or an alert's ancestry stays small whatever a command line holds (CI runners
/// and shells pass whole scripts as one argument). Empty when the process is gone or did not
/// let itself be read within [`STALL_DEADLINE`].
///
/// Remembered per process (pid and start time) for a minute: the ancestors of alerting
/// processes are mostly the same few shells and runners, and a read on a helper thread can
/// wait for that thread to be scheduled when the CPUs are busy.
pub(crate) fn cmdline(pid: u32) -> (Vec<Vec<u8>>, bool) {
    let Some(start) = stat(pid).map(|s| s.start_ticks) else { return (Vec::new(), false) };
    if let Some(known) = COMMAND_LINES.lookup(pid, start) {
        return known;
    }
    let read = bounded(move || {
        let mut bytes = Vec::new();
        fs::File::open(dir(pid).join("cmdline"))
            .and_then(|f| f.take(ARGS_MAX as u64 + 2).read_to_end(&mut bytes))?;
        Ok(bytes)
    });
    let Some(bytes) = read else { return (Vec::new(), false) };
    let argv = cap_argv(&bytes);
    COMMAND_LINES.keep(pid, start, &argv);
    argv
}

/// Command lines read, by pid, with the start time that says which process they belong to.
struct CommandLines(std::sync::Mutex<Option<crate::process::table::IdMap<Remembered>>>);

struct Remembered {
    start_ticks: u64,
    read_at: std::time::Instant,
    argv: (Vec<Vec<u8>>, bool),
}

static COMMAND_LINES: CommandLines = CommandLines(std::sync::Mutex::new(None));
const REMEMBER: Duration = Duration::from_secs(60);
const REMEMBERED_MAX: usize = 4096;

impl CommandLines {
    fn lookup(&self, pid: u32, start_ticks: u64) -> Option<(Vec<Vec<u8>>, bool)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let known = map.as_ref()?.get(&pid)?;
        (known.start_ticks == start_ticks && known.read_at.elapsed() < REMEMBER).then(|| known.argv.clone())
    }

    fn keep(&self, pid: u32, start_ticks: u64, argv: &(Vec<Vec<u8>>, bool)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let map = map.get_or_insert_with(Default::default);
        if map.len() >= REMEMBERED_MAX {
            map.retain(|_, r| r.read_at.elapsed() < REMEMBER);
            if map.len() >= REMEMBERED_MAX {
                map.clear();
            }
        }
        map.insert(pid, Remembered { start_ticks, read_at: std::time::Instant::now(), argv: argv.clone() });
    }
}

/// Splits NUL-separated arguments, keeping at most [`ARGS_MAX`] bytes, as the exec record
/// does; the flag says something was cut. The last argument's terminating NUL does not count,
/// so a command line of exactly `ARGS_MAX` bytes is whole.
pub(crate) fn cap_argv(bytes: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let content = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    (crate::kernel::decode::split_args(&content[..content.len().min(ARGS_MAX)]), content.len() > ARGS_MAX)
}

/// Runs `read` on a helper thread and waits at most [`STALL_DEADLINE`] for it.
fn bounded(read: impl FnOnce() -> std::io::Result<Vec<u8>> + Send + 'static) -> Option<Vec<u8>> {
    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    if RUNNING.load(Ordering::Relaxed) >= STALLED_MAX {
        return None;
    }
    let (tx, rx) = mpsc::sync_channel(1);
    RUNNING.fetch_add(1, Ordering::Relaxed);
    let spawned = std::thread::Builder::new().name("procfs-read".into()).spawn(move || {
        let _ = tx.send(read().ok());
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    });
    if spawned.is_err() {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    match rx.recv_timeout(STALL_DEADLINE) {
        Ok(result) => result,
        Err(_) => {
            tracing::debug!("a /proc read did not finish in time; given up");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_hostile_command_name() {
        let text = "42 (a) b) c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10 18446744073709551615";
        assert_eq!(parse_stat(text), Some(Stat { ppid: 7, state: 'S', start_ticks: 12345 }));
        let me = stat(std::process::id()).expect("own stat");
        assert!(matches!(me.state, 'R' | 'S'));
        assert!(me.start_ticks > 0);
        assert_eq!(stat(u32::MAX), None);
    }

    #[test]
    fn command_lines_read_from_proc_are_cut_like_the_kernel_cuts_them() {
        assert_eq!(
            cap_argv(b"python3\0-c\0pass\0"),
            (vec![b"python3".to_vec(), b"-c".to_vec(), b"pass".to_vec()], false)
        );
        let (argv, cut) = cap_argv(&vec![b'x'; 30_000]);
        assert!(cut);
        assert_eq!(argv, vec![vec![b'x'; ARGS_MAX]]);
        let (argv, cut) = cap_argv("a\0".repeat(ARGS_MAX).as_bytes());
        assert!(cut);
        assert_eq!(argv.len(), ARGS_MAX / 2);
        assert!(!cap_argv("a\0".repeat(ARGS_MAX / 2).as_bytes()).1);
        let mut exact = vec![b'x'; ARGS_MAX];
        exact.push(0);
        assert_eq!(cap_argv(&exact), (vec![vec![b'x'; ARGS_MAX]], false));
        exact.push(b'y');
        assert!(cap_argv(&exact).1, "one byte more after the NUL is cut");
    }

    #[test]
    fn own_command_line_is_read_whole() {
        let (argv, cut) = cmdline(std::process::id());
        assert!(!cut);
        assert_eq!(
            argv.first().map(Vec::as_slice),
            std::env::args_os().next().as_ref().map(|a| a.as_encoded_bytes())
        );
    }

    #[test]
    fn a_read_that_blocks_is_given_up() {
        let (tx, rx) = mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let read = bounded(move || {
            let _ = rx.recv();
            Ok(Vec::new())
        });
        assert_eq!(read, None);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(tx);
    }
}
