//! Process lifecycle (fork, exit) and the tracked-process bookkeeping shared by all hooks.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use monitor_common::{
    COUNT_LOST_INFLIGHT, COUNT_LOST_TRACKED, ExitRecord, ForkRecord, HOOK_EXIT, HOOK_FORK, InFlight,
    RECORD_EXIT, RECORD_FORK, TRACK_DESCENDANT, TRACK_PENDING, TRACK_PYTHON,
};

use crate::{
    emit::{count, fill_header, scratch, send},
    maps::{SYSCALLS, TRACKED, offsets},
    task,
};

/// At syscall entry: if the caller's process is tracked, saves the arguments found at
/// `arg_offsets` of the tracepoint record until the syscall returns.
#[inline(always)]
pub(crate) fn save_if_tracked<const N: usize>(
    ctx: &TracePointContext,
    hook: u32,
    syscall: u32,
    arg_offsets: [usize; N],
) {
    if !current_tracked() {
        return;
    }
    let mut call = InFlight { syscall, _pad: 0, args: [0; 5] };
    let mut i = 0;
    while i < N && i < call.args.len() {
        // SAFETY: offsets come from the tracepoint's format and lie inside its record.
        call.args[i] = unsafe { ctx.read_at::<u64>(arg_offsets[i]) }.unwrap_or(0);
        i += 1;
    }
    save(hook, call);
}

#[inline(always)]
pub(crate) fn current_tracked() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: only presence is checked.
    unsafe { TRACKED.get(tgid) }.is_some()
}

/// Keeps `call` until the current thread's syscall returns.
#[inline(always)]
pub(crate) fn save(hook: u32, call: InFlight) {
    let tid = bpf_get_current_pid_tgid() as u32;
    if SYSCALLS.insert(tid, call, 0).is_err() {
        count(hook, COUNT_LOST_INFLIGHT);
    }
}

/// At syscall exit: takes the arguments saved at entry, if they belong to one of `syscalls`.
/// For an untracked process this is the only map operation.
#[inline(always)]
pub(crate) fn take_saved(syscalls: [u32; 2]) -> Option<InFlight> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out before the entry is removed.
    let call = (unsafe { SYSCALLS.get(tid) }).copied()?;
    let _ = SYSCALLS.remove(tid);
    syscalls.contains(&call.syscall).then_some(call)
}

/// Raw tracepoint: its arguments are the parent and child `task_struct`s, which tell a new
/// thread from a new process (the plain tracepoint only gives the child's tid).
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn process_fork(ctx: RawTracePointContext) -> u32 {
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: copied out.
    let Some(flags) = (unsafe { TRACKED.get(parent_tgid) }).copied() else {
        return 0;
    };
    let child: u64 = ctx.arg(1);
    let Some((child_pid, child_tid)) = task::ids(child) else {
        return 0;
    };
    let is_thread = child_pid == parent_tgid;
    // A forked child runs the same image until it execs. It descends from Python only if the
    // parent is (or descends from) Python; a parent still pending passes on just that.
    let child_flags = if flags & (TRACK_PYTHON | TRACK_DESCENDANT) != 0 {
        (flags & (TRACK_PYTHON | TRACK_PENDING)) | TRACK_DESCENDANT
    } else {
        TRACK_PENDING
    };
    if !is_thread && TRACKED.insert(child_pid, child_flags, 0).is_err() {
        count(HOOK_FORK, COUNT_LOST_TRACKED);
    }
    let Some(rec) = scratch::<ForkRecord>() else {
        return 0;
    };
    fill_header(&mut rec.header, RECORD_FORK);
    rec.child_pid = child_pid;
    rec.child_tid = child_tid;
    rec.is_thread = u32::from(is_thread);
    rec.tracking = if is_thread { flags } else { child_flags };
    let len = core::mem::size_of::<ForkRecord>();
    rec.header.size = len as u32;
    send(HOOK_FORK, rec, len);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // SAFETY: only presence is checked.
    if unsafe { TRACKED.get(tgid) }.is_none() {
        return 0;
    }
    // A thread killed inside a traced syscall never reaches the exit handler.
    let _ = SYSCALLS.remove(tid);
    let group_dead_at = offsets().tp_exit_group_dead;
    let process_ends = if group_dead_at == 0 {
        tid == tgid
    } else {
        // SAFETY: offset taken from this tracepoint's format by the loader.
        unsafe { ctx.read_at::<u8>(group_dead_at as usize) }.unwrap_or(0) != 0
    };
    if !process_ends {
        return 0;
    }
    let _ = TRACKED.remove(tgid);
    let Some(rec) = scratch::<ExitRecord>() else {
        return 0;
    };
    fill_header(&mut rec.header, RECORD_EXIT);
    rec.exit_code = task::current_exit_code();
    rec._pad = 0;
    let len = core::mem::size_of::<ExitRecord>();
    rec.header.size = len as u32;
    send(HOOK_EXIT, rec, len);
    0
}
