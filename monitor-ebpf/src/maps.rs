use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use monitor_common::{
    AllowedNet, CONTROL_SLOTS, COUNTER_SLOTS, ExeKey, GUARDED_THREADS_MAX, InFlight, Judged, KernelOffsets,
    NET_ALLOW_MAX, PROGRAMS_MAX, PY_IMAGES_MAX, PyImage, PyProcess, SEEN_DESTS_MAX, SYSCALLS_MAX, Scratch,
    SeenDests, TRACKED_MAX, ThreadPhase, URING_OPENS_MAX, VERDICTS_MAX,
};

/// Sized by the daemon at load time (`--ring-buffer-size`).
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

#[map]
pub(crate) static TRACKED: HashMap<u32, u32> = HashMap::with_max_entries(TRACKED_MAX, 0);

#[map]
pub(crate) static GENERATIONS: HashMap<u32, u64> = HashMap::with_max_entries(TRACKED_MAX, 0);

#[map]
pub(crate) static QUIET: HashMap<u32, u64> = HashMap::with_max_entries(TRACKED_MAX, 0);

#[map]
pub(crate) static VERDICTS: LruHashMap<ExeKey, u32> = LruHashMap::with_max_entries(VERDICTS_MAX, 0);

#[map]
pub(crate) static URING_OPENS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(URING_OPENS_MAX, 0);

#[map]
pub(crate) static SYSCALLS: HashMap<u32, InFlight> = HashMap::with_max_entries(SYSCALLS_MAX, 0);

#[map]
pub(crate) static SEEN_DESTS: LruHashMap<u32, SeenDests> = LruHashMap::with_max_entries(SEEN_DESTS_MAX, 0);

/// How many `SYSCALLS` entries may exist (never fewer than do), and how many of them are 32-bit
/// calls: while it is 0, a syscall exit needs no hash lookup, which is most of the cost premain
/// adds to untracked processes.
#[map]
pub(crate) static INFLIGHT: Array<u64> = Array::with_max_entries(2, 0);

#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
pub(crate) static CONTROL: Array<u32> = Array::with_max_entries(CONTROL_SLOTS, 0);

#[map]
pub(crate) static NET_GUARD: HashMap<u32, u32> = HashMap::with_max_entries(TRACKED_MAX, 0);

#[map]
pub(crate) static MAIN_SEEN: HashMap<u32, u64> = HashMap::with_max_entries(TRACKED_MAX, 0);

#[map]
pub(crate) static THREAD_PHASE: LruHashMap<u32, ThreadPhase> =
    LruHashMap::with_max_entries(GUARDED_THREADS_MAX, 0);

#[map]
pub(crate) static JUDGED: LruHashMap<u32, Judged> = LruHashMap::with_max_entries(GUARDED_THREADS_MAX, 0);

#[map]
pub(crate) static GUARD_DECIDED: LruHashMap<u32, u32> = LruHashMap::with_max_entries(GUARDED_THREADS_MAX, 0);

#[map]
pub(crate) static PROGRAMS: HashMap<ExeKey, u32> = HashMap::with_max_entries(PROGRAMS_MAX, 0);

#[map]
pub(crate) static NET_ALLOW: Array<AllowedNet> = Array::with_max_entries(NET_ALLOW_MAX, 0);

#[map]
pub(crate) static PY_IMAGES: Array<PyImage> = Array::with_max_entries(PY_IMAGES_MAX, 0);

#[map]
pub(crate) static PY_PROCESSES: HashMap<u32, PyProcess> = HashMap::with_max_entries(TRACKED_MAX, 0);

#[map]
pub(crate) static STACK_PROGRAMS: ProgramArray = ProgramArray::with_max_entries(2, 0);

/// Records are built here: they are far larger than the 512-byte BPF stack.
#[map]
pub(crate) static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static SELF_TGID: u32 = 0;

#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    task_tgid: 0,
    task_pid: 0,
    task_real_parent: 0,
    task_mm: 0,
    task_exit_code: 0,
    mm_exe_file: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    file_inode: 0,
    inode_ino: 0,
    inode_sb: 0,
    inode_mtime_sec: 0,
    inode_mtime_nsec: 0,
    sb_dev: 0,
    tp_exit_group_dead: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    task_files: 0,
    task_fs: 0,
    files_fdt: 0,
    fdtable_fd: 0,
    fdtable_max_fds: 0,
    file_path: 0,
    fs_pwd: 0,
    path_mnt: 0,
    path_dentry: 0,
    dentry_parent: 0,
    dentry_name_len: 0,
    dentry_name: 0,
    mount_mnt: 0,
    mount_parent: 0,
    mount_mountpoint: 0,
    vfsmount_root: 0,
    inode_nlink: 0,
    inode_mode: 0,
    uring_layout: 0,
    io_open_dfd: 0,
    io_open_file_slot: 0,
    io_open_filename: 0,
    io_open_flags: 0,
    filename_name: 0,
    io_connect_addr: 0,
    io_connect_addr_len: 0,
    io_sr_msg_umsg: 0,
    io_socket_domain: 0,
    io_socket_type: 0,
    io_socket_protocol: 0,
    io_socket_file_slot: 0,
    task_ti_status: 0,
    uring_names: 0,
    io_rename_old_dfd: 0,
    io_rename_new_dfd: 0,
    io_rename_oldpath: 0,
    io_rename_newpath: 0,
    io_rename_flags: 0,
    io_link_old_dfd: 0,
    io_link_new_dfd: 0,
    io_link_oldpath: 0,
    io_link_newpath: 0,
    io_link_flags: 0,
    task_thread_fsbase: 0,
};

// Globals are rewritten by the loader; volatile reads stop the compiler folding the defaults.
#[inline(always)]
pub(crate) fn self_tgid() -> u32 {
    // SAFETY: reading a static we never write.
    unsafe { core::ptr::read_volatile(&raw const SELF_TGID) }
}

#[inline(always)]
pub(crate) fn offsets() -> KernelOffsets {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const OFFSETS) }
}

#[inline(always)]
pub(crate) fn control(slot: u32) -> u32 {
    CONTROL.get(slot).copied().unwrap_or(0)
}
