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

/// `/proc/<pid>/ns/mnt`'s link (`mnt:[inode]`): which mount namespace the process is in.
pub(crate) fn mount_namespace(pid: u32) -> Option<PathBuf> {
    fs::read_link(dir(pid).join("ns/mnt")).ok()
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

/// Who a thread belongs to and whom it acts as, from `/proc/<tid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    pub tgid: u32,
    pub ppid: u32,
    /// Effective ids.
    pub uid: u32,
    pub gid: u32,
}

/// `tid` may be any thread's id: `/proc` answers for threads too.
pub(crate) fn status(tid: u32) -> Option<Status> {
    parse_status(&fs::read_to_string(dir(tid).join("status")).ok()?)
}

fn parse_status(text: &str) -> Option<Status> {
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::split_whitespace);
    let first = |name: &str| field(name)?.next()?.parse().ok();
    let effective = |name: &str| field(name)?.nth(1)?.parse().ok();
    Some(Status {
        tgid: first("Tgid:")?,
        ppid: first("PPid:")?,
        uid: effective("Uid:")?,
        gid: effective("Gid:")?,
    })
}

/// The thread's command name, without the newline.
pub(crate) fn comm(tid: u32) -> Vec<u8> {
    let mut name = fs::read(dir(tid).join("comm")).unwrap_or_default();
    if name.last() == Some(&b'\n') {
        name.pop();
    }
    name
}

/// The id the kernel gives the process's cgroup v2 (what `bpf_get_current_cgroup_id` returns:
/// the inode number of its directory); 0 when it cannot be found.
pub(crate) fn cgroup_id(pid: u32) -> u64 {
    let Some(mount) = cgroup2_mount() else { return 0 };
    let Some(text) = cgroup(pid) else { return 0 };
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else { return 0 };
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(mount.join(path.trim_start_matches('/'))).map(|m| m.ino()).unwrap_or(0)
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on a systemd host,
/// `/sys/fs/cgroup/unified` in hybrid mode), from this process's mount table.
pub(crate) fn cgroup2_mount() -> Option<&'static std::path::Path> {
    static MOUNT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    MOUNT
        .get_or_init(|| {
            let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
            info.lines().find_map(|line| {
                let (fields, rest) = line.split_once(" - ")?;
                let mount = fields.split(' ').nth(4)?;
                (rest.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
            })
        })
        .as_deref()
}

/// `HOME` in the process's environment (as it was at exec), read within [`STALL_DEADLINE`].
pub(crate) fn home(pid: u32) -> Option<Vec<u8>> {
    const ENVIRON_MAX: u64 = 256 * 1024;
    let bytes = bounded(move || {
        let mut bytes = Vec::new();
        fs::File::open(dir(pid).join("environ")).and_then(|f| f.take(ENVIRON_MAX).read_to_end(&mut bytes))?;
        Ok(bytes)
    })?;
    bytes.split(|&b| b == 0).find_map(|var| var.strip_prefix(b"HOME=")).map(<[u8]>::to_vec)
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

/// The open a thread blocked in an open permission event is making, read from
/// `/proc/<tid>/syscall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockedOpen {
    /// Its flags, for the opens whose flags are a register (`open`, `creat`, `openat`,
    /// `open_by_handle_at`); `None` for `openat2` (its flags are in memory).
    pub(crate) flags: Option<u32>,
    /// A 32-bit (i386 table, `int 0x80`) syscall of a 64-bit process.
    pub(crate) ia32: bool,
}

/// The open thread `tid` is blocked in. `None` for a thread in no open syscall (io_uring's
/// workers, `execve`, a thread that went on).
pub(crate) fn blocked_open(tid: u32) -> Option<BlockedOpen> {
    parse_blocked_open(&fs::read_to_string(format!("/proc/{tid}/syscall")).ok()?)
}

/// `/proc/<tid>/syscall` is `NR ARG1 .. ARG6 SP PC`, with the number as the syscall's own table
/// gives it and the arguments the registers of that ABI (`ebx, ecx, edx...` for a 32-bit call),
/// and nothing that says which table. The numbers a thread can wait in an open with do not
/// collide: the i386 opens (open 5, creat 8, openat 295, open_by_handle_at 342) are in the
/// x86_64 table fstat, lseek, preadv and no syscall at all, none of which opens a file; the
/// x86_64 opens (open 2, creat 85, openat 257, open_by_handle_at 304) are in the i386 table
/// fork, readlink, remap_file_pages and readlinkat, none of which opens one either. `openat2`
/// is 437 in both (the tables share their numbers from 403 on): its ABI is not told, and its
/// flags are in memory.
fn parse_blocked_open(text: &str) -> Option<BlockedOpen> {
    let mut fields = text.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    let args: Vec<u64> = fields
        .take(6)
        .map(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16))
        .collect::<Result<_, _>>()
        .ok()?;
    const O_CREAT_WRONLY_TRUNC: u32 = 0o1101;
    // (flags argument, or creat's implied flags; ia32)
    let (flags, ia32) = match nr {
        2 => (Some(*args.get(1)? as u32), false),
        85 => (Some(O_CREAT_WRONLY_TRUNC), false),
        257 | 304 => (Some(*args.get(2)? as u32), false),
        5 => (Some(*args.get(1)? as u32), true),
        8 => (Some(O_CREAT_WRONLY_TRUNC), true),
        295 | 342 => (Some(*args.get(2)? as u32), true),
        437 => (None, false),
        _ => return None,
    };
    Some(BlockedOpen { flags, ia32 })
}

/// The path of `pid`'s cgroup in the v2 hierarchy (`/system.slice/app.service`).
pub(crate) fn cgroup_path(pid: u32) -> Option<String> {
    cgroup(pid)?.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_owned)
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
    fn open_of_a_thread_blocked_in_an_open() {
        let open =
            |nr: &str, a: &str, b: &str, c: &str| format!("{nr} {a} {b} {c} 0x0 0x0 0x0 0x7ffc 0x7f00\n");
        let x64 = |flags: u32| Some(BlockedOpen { flags: Some(flags), ia32: false });
        let ia32 = |flags: u32| Some(BlockedOpen { flags: Some(flags), ia32: true });
        let parse = |nr, a, b, c| parse_blocked_open(&open(nr, a, b, c));
        // x86_64: openat, open, creat, open_by_handle_at.
        assert_eq!(parse("257", "0xffffffffffffff9c", "0x55d0", "0x80000"), x64(0x80000));
        assert_eq!(parse("257", "0xffffff9c", "0x55d0", "0x241"), x64(0x241));
        assert_eq!(parse("2", "0x55d0", "0x1", "0x0"), x64(1));
        assert_eq!(parse("85", "0x55d0", "0x1a4", "0x0"), x64(0o1101));
        assert_eq!(parse("304", "0x3", "0x55d0", "0x2"), x64(2));
        // i386 through `int 0x80`, as a 64-bit Python's stub made them (read off this kernel):
        // open(O_WRONLY|O_APPEND), creat, open(O_RDONLY), openat, open_by_handle_at.
        let line = "5 0x4048a000 0x401 0x0 0x0 0x0 0x0 0x7ffdc708d2e8 0x7f6f8312c01e\n";
        assert_eq!(parse_blocked_open(line), ia32(0x401));
        let line = "8 0x41db2000 0x1a4 0x0 0x0 0x0 0x0 0x7ffce9741088 0x7f62a936701e\n";
        assert_eq!(parse_blocked_open(line), ia32(0o1101));
        assert_eq!(parse("5", "0x8000", "0x0", "0x0"), ia32(0), "32-bit open for reading");
        assert_eq!(parse("295", "0xffffff9c", "0x8000", "0x441"), ia32(0x441));
        assert_eq!(parse("342", "0x3", "0x8000", "0x1"), ia32(1));
        // The upper half of a register is not the 32-bit call's.
        assert_eq!(parse("5", "0x8000", "0xdead00000001", "0x0"), ia32(1));
        let openat2 = Some(BlockedOpen { flags: None, ia32: false });
        assert_eq!(parse("437", "0x3", "0x55d0", "0x7ffc"), openat2, "openat2: flags in memory");
        // Not an open: execve, io_uring_enter, fork / readlink (the other tables' numbers).
        for nr in ["59", "11", "426", "57", "89", "0"] {
            assert_eq!(parse(nr, "0x1", "0x2", "0x3"), None, "syscall {nr}");
        }
        assert_eq!(parse_blocked_open("running\n"), None);
        assert_eq!(parse_blocked_open("-1 0x7ffc 0x7f00\n"), None);
        assert_eq!(blocked_open(u32::MAX), None);
    }

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
    fn own_status_comm_cgroup_and_home() {
        let me = status(std::process::id()).expect("own status");
        // SAFETY: no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert_eq!((me.tgid, me.uid, me.gid), (std::process::id(), uid, gid));
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert_eq!(
            parse_status("Name:\tx\nTgid:\t7\nPPid:\t1\nUid:\t0\t1000\t0\t0\nGid:\t5\t6\t5\t5\n"),
            Some(Status { tgid: 7, ppid: 1, uid: 1000, gid: 6 })
        );
        assert_eq!(status(u32::MAX), None);
        assert!(!comm(std::process::id()).is_empty());
        assert!(!comm(std::process::id()).ends_with(b"\n"));
        assert_ne!(cgroup_id(std::process::id()), 0, "a cgroup v2 hierarchy is mounted here");
        assert_eq!(home(std::process::id()), std::env::var_os("HOME").map(|h| h.into_encoded_bytes()));
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
