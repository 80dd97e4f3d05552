//! Map names, map value types and load-time globals shared by both sides.
//!
//! Names stay within 15 bytes so `bpftool map` shows them whole.

/// Ring buffer carrying every record to the daemon.
pub const EVENTS: &str = "EVENTS";
/// `tgid -> u32` (`TRACK_*` bits) of the processes whose file and network activity is recorded.
pub const TRACKED: &str = "TRACKED";
/// `ExeKey -> u32` (`VERDICT_*`): the daemon's decision on each executable it has examined.
pub const VERDICTS: &str = "VERDICTS";
/// `tid -> InFlight`: arguments saved at syscall entry until the matching exit.
pub const SYSCALLS: &str = "SYSCALLS";
/// Per-CPU `u64` counters, indexed by [`counter_index`].
pub const COUNTERS: &str = "COUNTERS";
/// `tgid -> u64`: the process's *generation*, a `CLOCK_MONOTONIC` time the kernel renews
/// whenever the phase of the process may change (exec, fork, entry of a code object). Records
/// that set it carry the same time in their header.
pub const GENERATIONS: &str = "GENERATIONS";
/// `tgid -> u64`: written by the daemon when everything the process does is runtime (nothing
/// it does can alert) as of generation N. While the process is still at generation N, its
/// open, connect and send records are not made at all.
pub const QUIET: &str = "QUIET";
/// `u32` switches the daemon flips at run time (`CONTROL_*` indexes).
pub const CONTROL: &str = "CONTROL";
/// Global holding the daemon's own tgid: its processes are never tracked.
pub const SELF_TGID: &str = "SELF_TGID";
/// Global holding the [`KernelOffsets`] resolved from the running kernel's BTF.
pub const OFFSETS: &str = "OFFSETS";

/// The process runs a CPython interpreter image.
pub const TRACK_PYTHON: u32 = 1;
/// The process descends from a tracked process; it stays tracked whatever it executes.
pub const TRACK_DESCENDANT: u32 = 1 << 1;
/// The process executed a binary the daemon has not judged yet: recorded until the verdict.
pub const TRACK_PENDING: u32 = 1 << 2;

/// `CONTROL` index: when non-zero, a process that executes a file not judged yet is stopped
/// until the daemon has judged it (and attached its probes). Cleared before the daemon exits.
pub const CONTROL_HOLD: u32 = 0;
/// `CONTROL` index: when non-zero, the reader is already draining or about to, so records are
/// sent without waking it (`BPF_RB_NO_WAKEUP`). A wake-up is an interrupt and often a
/// preemption of the traced process; the daemon sets this from the first record of a burst
/// until a drain finds the ring empty, and then drains once more after clearing it.
pub const CONTROL_READER_BUSY: u32 = 1;
/// `CONTROL` index: the `GUARD_*` bits a CPython process gets at exec, until the daemon has
/// placed it in its scope (0: no network rule is dry-run or enforced anywhere).
pub const CONTROL_GUARD_DEFAULT: u32 = 2;
/// `CONTROL` index: how many entries of [`NET_ALLOW`] are in use.
pub const CONTROL_NET_ALLOWED: u32 = 3;
/// `CONTROL` index: non-zero while some network rule is dry-run or enforced somewhere; while
/// it is 0 the network guard costs a connect or send one array read.
pub const CONTROL_GUARDING: u32 = 4;
/// `CONTROL` index: non-zero once the daemon stops: no record is sent. The programs stay
/// attached while the daemon delivers what it read (the kernel takes seconds to detach them).
pub const CONTROL_STOPPED: u32 = 5;
pub const CONTROL_SLOTS: u32 = 8;

/// `tgid -> u32` (`GUARD_*` bits): the network rules dry-run or enforced on the process's
/// pre-main code. Set by the kernel at a CPython exec (from [`CONTROL_GUARD_DEFAULT`]) and
/// at fork, corrected by the daemon once it has placed the process in its scope.
pub const NET_GUARD: &str = "NET_GUARD";
pub const GUARD_CONNECT_DRY_RUN: u32 = 1;
pub const GUARD_CONNECT_ENFORCE: u32 = 1 << 1;
pub const GUARD_SEND_DRY_RUN: u32 = 1 << 2;
pub const GUARD_SEND_ENFORCE: u32 = 1 << 3;
pub const GUARD_MEMORY_DRY_RUN: u32 = 1 << 4;
pub const GUARD_MEMORY_ENFORCE: u32 = 1 << 5;
pub const GUARD_EXEC_DRY_RUN: u32 = 1 << 6;
pub const GUARD_EXEC_ENFORCE: u32 = 1 << 7;
/// `tgid -> u64`: the time a guarded process's main code started (the kernel's own view of
/// the phase, used until the daemon has judged a thread's latest change).
pub const MAIN_SEEN: &str = "MAIN_SEEN";
/// `tid -> ThreadPhase`: what the kernel knows of a guarded thread's phase.
pub const THREAD_PHASE: &str = "THREAD_PHASE";
/// `tid -> Judged`: the daemon's decision for a guarded thread's network actions, written
/// after it has applied the thread's records up to `as_of_ns`.
pub const JUDGED: &str = "JUDGED";
/// Network actions of the thread would alert: denied (or noted, under dry-run).
pub const JUDGED_CONNECT: u32 = 1;
pub const JUDGED_SEND: u32 = 1 << 1;
/// The thread is in an install: the package indexes of [`NET_ALLOW`] and the toolchain of
/// [`PROGRAMS`] are allowed.
pub const JUDGED_INSTALLING: u32 = 1 << 2;
/// Process-memory reads and writes of the thread would alert: its process is killed.
pub const JUDGED_MEMORY: u32 = 1 << 3;
/// Execs of programs no allowlist covers would alert: the new program is killed before its
/// first instruction.
pub const JUDGED_EXEC: u32 = 1 << 4;
/// `ExeKey -> u32` (`PROGRAM_*`): the files `allow.programs` (and, during installs,
/// `install.toolchain`) let pre-main code run, as found on disk by the daemon.
pub const PROGRAMS: &str = "PROGRAMS";
pub const PROGRAMS_MAX: u32 = 8192;
pub const PROGRAM_ALLOWED: u32 = 1;
pub const PROGRAM_TOOLCHAIN: u32 = 1 << 1;
/// `tid -> u32` (`FLAG_GUARD_*`): what the guard decided on the thread's syscall in
/// progress, taken by the syscall's exit into its record.
pub const GUARD_DECIDED: &str = "GUARD_DECIDED";
/// `Array<AllowedNet>`: destinations never denied (`allow.destinations`, and package indexes
/// during installs); the first [`CONTROL_NET_ALLOWED`] entries are in use.
pub const NET_ALLOW: &str = "NET_ALLOW";
pub const NET_ALLOW_MAX: u32 = 64;
/// Guarded threads the kernel and the daemon keep state for.
pub const GUARDED_THREADS_MAX: u32 = 16_384;

/// The kernel's view of a guarded thread's phase.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadPhase {
    /// Header time of the last record that changed the thread's phase (exec, fork, entry or
    /// return of a code object): a [`Judged`] older than this is out of date.
    pub changed_ns: u64,
    /// Code objects (`PyEval_EvalCode`) the thread is inside.
    pub depth: u32,
    /// Bit `d` (of the first [`DEPTHS_KEPT`]): the code object at depth `d` is a module body
    /// under a `site-packages` or `dist-packages` directory.
    pub third_party: u32,
    /// Bit `d`: `judged[d]` holds the daemon's judgment of the thread as it was at depth `d`
    /// (kept at each entry, given back at the return to that depth).
    pub judged_valid: u32,
    /// 1: a thread started before its process's main: its code is start-up code's.
    pub born_before_main: u32,
    pub judged: [u32; DEPTHS_KEPT],
}

/// Depths of code objects whose judgment and party a thread's [`ThreadPhase`] keeps.
pub const DEPTHS_KEPT: usize = 32;

impl ThreadPhase {
    /// A thread at depth 0 whose phase changed at `changed_ns`.
    pub const fn new(changed_ns: u64) -> Self {
        Self {
            changed_ns,
            depth: 0,
            third_party: 0,
            judged_valid: 0,
            born_before_main: 0,
            judged: [0; DEPTHS_KEPT],
        }
    }
}

/// The daemon's decision for a guarded thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Judged {
    pub as_of_ns: u64,
    /// `JUDGED_*` bits.
    pub bits: u32,
    pub _pad: u32,
}

/// One allowed destination: `addr` is IPv6 (IPv4 as `::ffff:a.b.c.d`), `prefix` of 128 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowedNet {
    pub addr: [u8; 16],
    /// The first `prefix` bits set: the kernel compares an address under the mask with no
    /// branch per byte, which the verifier would otherwise walk for each of the
    /// [`NET_ALLOW_MAX`] entries in every cgroup program.
    pub mask: [u8; 16],
    pub prefix: u32,
    /// 0: every port.
    pub port: u32,
    /// 1: only during installs (a package index).
    pub install_only: u32,
    pub _pad: u32,
}

pub const VERDICT_PYTHON: u32 = 1;
pub const VERDICT_NOT_PYTHON: u32 = 2;

/// Maximum number of tracked processes (and thread ids of tracked processes in flight).
pub const TRACKED_MAX: u32 = 65_536;
/// Executables whose verdict the kernel remembers (LRU: a forgotten one is simply re-judged).
pub const VERDICTS_MAX: u32 = 8_192;
/// Threads of tracked processes that can be inside a traced syscall at the same time.
pub const SYSCALLS_MAX: u32 = 16_384;

/// `tid -> SeenDests`: the destinations the kernel checked (the cgroup `connect4|6` and
/// `sendmsg4|6` programs, from its own copy of the caller's sockaddr) during a tracked
/// thread's 64-bit connect or addressed send in progress. Cleared at the call's entry, taken
/// at its exit, which reports them instead of what the caller's memory holds by then.
pub const SEEN_DESTS: &str = "SEEN_DESTS";
/// Threads with a connect or send in progress whose destinations are kept (LRU).
pub const SEEN_DESTS_MAX: u32 = 4096;
/// Destinations kept per call: the first messages of a `sendmmsg` (a batch to one address
/// folds into one alert anyway).
pub const DESTS_KEPT: usize = 8;

/// A destination as the kernel checked it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelDest {
    /// `AF_INET` or `AF_INET6`: the family of the sockaddr the kernel checked.
    pub family: u16,
    /// Network order, as in the sockaddr.
    pub port: u16,
    /// IPv6, or IPv4 mapped (`::ffff:a.b.c.d`).
    pub ip: [u8; 16],
}

/// The destinations the kernel checked during one call, in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeenDests {
    /// How many checks ran (those past [`DESTS_KEPT`] are counted, not kept).
    pub count: u32,
    pub dests: [KernelDest; DESTS_KEPT],
}

/// `io_uring` opens whose result is a normal fd, by request address, until their completion
/// (where the opened file is walked).
pub const URING_OPENS: &str = "URING_OPENS";
pub const URING_OPENS_MAX: u32 = 4096;

/// Syscall arguments saved at entry. `args` meaning depends on `syscall` (`SYSCALL_*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    pub syscall: u32,
    /// 1 when saved from a 32-bit (ia32) syscall of a 64-bit process: only the raw-syscall
    /// exit takes it (the per-syscall exits never fire for those).
    pub compat: u32,
    pub args: [u64; 5],
}

/// Byte offsets of the kernel struct members the programs read, resolved from BTF at load
/// time because Rust eBPF has no CO-RE relocations.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_real_parent: u32,
    pub task_mm: u32,
    pub task_exit_code: u32,
    pub mm_exe_file: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub inode_mtime_sec: u32,
    pub inode_mtime_nsec: u32,
    pub sb_dev: u32,
    /// Offset of `group_dead` in the `sched_process_exit` record, or 0 where the kernel's
    /// tracepoint has no such field (then the leader's exit ends the process).
    pub tp_exit_group_dead: u32,
    pub task_group_leader: u32,
    /// `task_struct.start_boottime`: with the pid, a process's identity (pids are reused).
    pub task_start_boottime: u32,
    // The path walk (`file.f_path`, `dentry.d_parent`/`d_name`, mounts) and the opened file.
    pub task_files: u32,
    pub task_fs: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub file_path: u32,
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_name_len: u32,
    pub dentry_name: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub vfsmount_root: u32,
    pub inode_nlink: u32,
    pub inode_mode: u32,
    /// 1 when every io_uring offset below was found (io_uring's request structs are internal
    /// and change between kernels); 0: submissions are reported by opcode alone.
    pub uring_layout: u32,
    pub io_open_dfd: u32,
    pub io_open_file_slot: u32,
    pub io_open_filename: u32,
    pub io_open_flags: u32,
    pub filename_name: u32,
    pub io_connect_addr: u32,
    pub io_connect_addr_len: u32,
    pub io_sr_msg_umsg: u32,
    pub io_socket_domain: u32,
    pub io_socket_type: u32,
    pub io_socket_protocol: u32,
    pub io_socket_file_slot: u32,
    /// `task_struct.thread_info.status`, whose `TS_COMPAT` bit marks a 32-bit syscall.
    pub task_ti_status: u32,
    /// 1 when every offset below (and `filename_name`) was found: io_uring renames, links and
    /// symlinks are read from the prepared request; 0: they are reported by opcode alone.
    pub uring_names: u32,
    /// `struct io_rename` (`IORING_OP_RENAMEAT`).
    pub io_rename_old_dfd: u32,
    pub io_rename_new_dfd: u32,
    pub io_rename_oldpath: u32,
    pub io_rename_newpath: u32,
    pub io_rename_flags: u32,
    /// `struct io_link` (`IORING_OP_LINKAT`, and `IORING_OP_SYMLINKAT`, whose `oldpath` is the
    /// link's target and `old_dfd` unused).
    pub io_link_old_dfd: u32,
    pub io_link_new_dfd: u32,
    pub io_link_oldpath: u32,
    pub io_link_newpath: u32,
    pub io_link_flags: u32,
}

/// Hooks, as indexes into [`COUNTERS`] and as the `hook` of a loss.
pub const HOOK_OPEN: u32 = 0;
pub const HOOK_CONNECT: u32 = 1;
pub const HOOK_EXEC: u32 = 2;
pub const HOOK_FORK: u32 = 3;
pub const HOOK_EXIT: u32 = 4;
pub const HOOK_SEND: u32 = 5;
/// The interpreter probes (uprobes on CPython).
pub const HOOK_PYTHON: u32 = 6;
/// `process_vm_readv`/`writev`, ptrace.
pub const HOOK_TARGET: u32 = 7;
/// Raw and packet sockets.
pub const HOOK_SOCKET: u32 = 8;
/// rename, link, symlink.
pub const HOOK_NAME: u32 = 9;
/// io_uring rings and submissions.
pub const HOOK_URING: u32 = 10;
/// 32-bit syscalls of 64-bit processes (`int 0x80`), seen by the raw-syscall tracepoints.
pub const HOOK_COMPAT: u32 = 11;
pub const HOOK_COUNT: u32 = 12;

/// Record handed to the ring buffer.
pub const COUNT_SENT: u32 = 0;
/// Record dropped: the ring buffer was full.
pub const COUNT_LOST_RINGBUF: u32 = 1;
/// Syscall not recorded: no room to remember its arguments until it returned.
pub const COUNT_LOST_INFLIGHT: u32 = 2;
/// Process not tracked: the tracked-process table was full.
pub const COUNT_LOST_TRACKED: u32 = 3;
/// Record sent with a field the kernel could not read (user memory not paged in, ...).
pub const COUNT_READ_FAILED: u32 = 4;
/// Record not made: the process was quiet (runtime code, see [`QUIET`]).
pub const COUNT_QUIET: u32 = 5;
pub const COUNT_KINDS: u32 = 6;
pub const COUNTER_SLOTS: u32 = HOOK_COUNT * COUNT_KINDS;

#[inline(always)]
pub const fn counter_index(hook: u32, kind: u32) -> u32 {
    hook * COUNT_KINDS + kind
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::InFlight {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ThreadPhase {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Judged {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AllowedNet {}
}

const _: () = {
    assert!(core::mem::size_of::<InFlight>() == 48);
    assert!(core::mem::size_of::<KernelOffsets>() == 60 * 4);
    assert!(core::mem::size_of::<ThreadPhase>() == 24 + 4 * DEPTHS_KEPT);
    assert!(core::mem::size_of::<Judged>() == 16);
    assert!(core::mem::size_of::<AllowedNet>() == 48);
};
