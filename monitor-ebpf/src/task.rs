//! Reads of kernel task state through BTF-resolved offsets (see `KernelOffsets`).

use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_task, bpf_probe_read_user},
};
use monitor_common::{ARGS_MAX, ExeKey};

use crate::maps::offsets;

#[inline(always)]
pub(crate) fn read<T>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address and fails cleanly.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.ok()
}

#[inline(always)]
fn current() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_current_task() }
}

/// Thread group id of the current task's real parent (0 when unreadable).
#[inline(always)]
pub(crate) fn current_ppid() -> u32 {
    let off = offsets();
    read::<u64>(current(), off.task_real_parent)
        .and_then(|parent| read::<u32>(parent, off.task_tgid))
        .unwrap_or(0)
}

/// `(tgid, tid)` of a task.
#[inline(always)]
pub(crate) fn ids(task: u64) -> Option<(u32, u32)> {
    let off = offsets();
    Some((read(task, off.task_tgid)?, read(task, off.task_pid)?))
}

/// `start_boottime` of the process `task` belongs to (0 when unreadable).
#[inline(always)]
pub(crate) fn process_start(task: u64) -> u64 {
    let off = offsets();
    read::<u64>(task, off.task_group_leader)
        .and_then(|leader| read(leader, off.task_start_boottime))
        .unwrap_or(0)
}

#[inline(always)]
pub(crate) fn current_process_start() -> u64 {
    process_start(current())
}

/// The current thread's TLS base (`pthread_self()` under glibc and musl); `None` when the
/// kernel's layout is not known.
#[inline(always)]
pub(crate) fn current_fsbase() -> Option<u64> {
    let at = offsets().task_thread_fsbase;
    if at == 0 {
        return None;
    }
    read(current(), at)
}

#[inline(always)]
pub(crate) fn current_exit_code() -> i32 {
    read(current(), offsets().task_exit_code).unwrap_or(0)
}

/// Identity of the current process's executable (`mm->exe_file`), which for a `#!` script is
/// the interpreter, as wanted.
#[inline(always)]
pub(crate) fn current_exe() -> Option<ExeKey> {
    let off = offsets();
    let mm: u64 = read(current(), off.task_mm)?;
    let file: u64 = read(mm, off.mm_exe_file)?;
    let inode: u64 = read(file, off.file_inode)?;
    let sb: u64 = read(inode, off.inode_sb)?;
    Some(ExeKey {
        dev: u64::from(read::<u32>(sb, off.sb_dev)?),
        ino: read(inode, off.inode_ino)?,
        mtime_sec: read(inode, off.inode_mtime_sec)?,
        mtime_nsec: read(inode, off.inode_mtime_nsec)?,
        _pad: 0,
    })
}

/// Copies the current process's argv area (NUL-separated) into `dst`.
/// Returns the bytes copied and whether the area was larger than `dst`.
#[inline(always)]
pub(crate) fn current_args(dst: &mut [u8; ARGS_MAX]) -> Option<(u32, bool)> {
    let off = offsets();
    let mm: u64 = read(current(), off.task_mm)?;
    let start: u64 = read(mm, off.mm_arg_start)?;
    let end: u64 = read(mm, off.mm_arg_end)?;
    let total = end.checked_sub(start)?;
    let len = if total > ARGS_MAX as u64 { ARGS_MAX as u64 } else { total };
    if len == 0 {
        return Some((0, false));
    }
    // SAFETY: `len` is bounded by `dst`'s size; the helper validates the user address.
    let ret = unsafe { bpf_probe_read_user(dst.as_mut_ptr().cast(), len as u32, start as *const _) };
    (ret == 0).then_some((len as u32, total > len))
}
