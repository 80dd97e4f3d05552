//! Process lifecycle (fork, exit) and the tracked-process bookkeeping shared by all hooks.

use core::intrinsics::AtomicOrdering;

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use monitor_common::{
    COUNT_LOST_INFLIGHT, COUNT_LOST_TRACKED, COUNT_QUIET, ExitRecord, ForkRecord, HOOK_EXIT, HOOK_FORK,
    InFlight, RECORD_EXIT, RECORD_FORK, TRACK_DESCENDANT, TRACK_PENDING, TRACK_PYTHON,
};

use crate::{
    emit::{count, fill_header, scratch, send},
    maps::{GENERATIONS, INFLIGHT, PY_PROCESSES, QUIET, SYSCALLS, TRACKED, offsets},
    task,
};

/// At syscall entry: if the caller's process is tracked, saves the arguments found at
/// `arg_offsets` of the tracepoint record until the syscall returns. Returns whether it did.
#[inline(always)]
pub(crate) fn save_if_tracked<const N: usize>(
    ctx: &TracePointContext,
    hook: u32,
    syscall: u32,
    arg_offsets: [usize; N],
) -> bool {
    current_tracked() && save_args(ctx, hook, syscall, arg_offsets)
}

#[inline(always)]
fn save_args<const N: usize>(
    ctx: &TracePointContext,
    hook: u32,
    syscall: u32,
    arg_offsets: [usize; N],
) -> bool {
    let mut call = InFlight { syscall, compat: 0, args: [0; 5] };
    let mut i = 0;
    while i < N && i < call.args.len() {
        // SAFETY: offsets come from the tracepoint's format and lie inside its record.
        call.args[i] = unsafe { ctx.read_at::<u64>(arg_offsets[i]) }.unwrap_or(0);
        i += 1;
    }
    save(hook, call)
}

/// [`save_if_tracked`] for hooks whose records only matter outside runtime code (open,
/// connect): nothing is saved while the process is quiet.
#[inline(always)]
pub(crate) fn save_if_recorded<const N: usize>(
    ctx: &TracePointContext,
    hook: u32,
    syscall: u32,
    arg_offsets: [usize; N],
) -> bool {
    save_unless_quiet(ctx, hook, syscall, arg_offsets, || false)
}

/// [`save_if_recorded`], except that a quiet process's call is saved too when `anyway` says so.
#[inline(always)]
pub(crate) fn save_unless_quiet<const N: usize>(
    ctx: &TracePointContext,
    hook: u32,
    syscall: u32,
    arg_offsets: [usize; N],
    anyway: impl FnOnce() -> bool,
) -> bool {
    current_tracked() && !current_quiet_unless(hook, anyway) && save_args(ctx, hook, syscall, arg_offsets)
}

/// The current process is quiet; the call it skips is counted under `hook`.
#[inline(always)]
pub(crate) fn current_quiet(hook: u32) -> bool {
    current_quiet_unless(hook, || false)
}

/// [`current_quiet`], but a call `recorded` says must be recorded anyway is not skipped.
#[inline(always)]
pub(crate) fn current_quiet_unless(hook: u32, recorded: impl FnOnce() -> bool) -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let quiet = quiet(tgid) && !recorded();
    if quiet {
        count(hook, COUNT_QUIET);
    }
    quiet
}

/// The daemon declared the process quiet at the generation it is still in.
#[inline(always)]
fn quiet(tgid: u32) -> bool {
    // SAFETY: copied out.
    let Some(declared) = (unsafe { QUIET.get(tgid) }).copied() else { return false };
    // SAFETY: copied out.
    (unsafe { GENERATIONS.get(tgid) }).is_some_and(|now| *now == declared)
}

/// Starts a new generation of `tgid`: whatever the daemon declared about it no longer holds.
/// `ktime_ns` is the header time of the record that reports the change.
#[inline(always)]
pub(crate) fn renew_generation(tgid: u32, ktime_ns: u64) {
    if GENERATIONS.insert(tgid, ktime_ns, 0).is_err() {
        // No generation: never quiet, so nothing is lost; the daemon just gets every record.
        let _ = QUIET.remove(tgid);
    }
}

#[inline(always)]
pub(crate) fn current_tracked() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: only presence is checked.
    unsafe { TRACKED.get(tgid) }.is_some()
}

/// Keeps `call` until the current thread's syscall returns. Returns whether it did.
#[inline(always)]
pub(crate) fn save(hook: u32, call: InFlight) -> bool {
    let tid = bpf_get_current_pid_tgid() as u32;
    // Counted before the entry exists, so an exit never sees an entry with a count of 0.
    add_inflight(ALL, 1);
    if call.compat != 0 {
        add_inflight(COMPAT, 1);
    }
    if SYSCALLS.insert(tid, call, 0).is_err() {
        add_inflight(ALL, u64::MAX);
        if call.compat != 0 {
            add_inflight(COMPAT, u64::MAX);
        }
        count(hook, COUNT_LOST_INFLIGHT);
        return false;
    }
    true
}

/// At syscall exit: takes the arguments saved at entry, if they belong to one of `syscalls`.
/// For an untracked process this is at most an array read, or one hash lookup while some
/// tracked thread is inside a syscall.
#[inline(always)]
pub(crate) fn take_saved(syscalls: [u32; 2]) -> Option<InFlight> {
    if INFLIGHT.get(ALL).copied().unwrap_or(1) == 0 {
        return None;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out before the entry is removed.
    let call = (unsafe { SYSCALLS.get(tid) }).copied()?;
    forget_saved(tid);
    syscalls.contains(&call.syscall).then_some(call)
}

/// At a raw-syscall exit: the arguments a 32-bit syscall saved at its entry, if the current
/// thread's saved call is one (native calls are taken by their own per-syscall exits). This
/// runs at every syscall exit of the node: it costs an array read unless a tracked thread is
/// inside a 32-bit syscall.
#[inline(always)]
pub(crate) fn take_compat() -> Option<InFlight> {
    if INFLIGHT.get(COMPAT).copied().unwrap_or(1) == 0 {
        return None;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out before the entry is removed.
    let call = (unsafe { SYSCALLS.get(tid) }).copied()?;
    if call.compat == 0 {
        return None;
    }
    forget_saved(tid);
    Some(call)
}

/// Drops the arguments `tid` saved, if any.
#[inline(always)]
pub(crate) fn forget_saved(tid: u32) {
    // SAFETY: copied out before the entry is removed.
    let compat = (unsafe { SYSCALLS.get(tid) }).is_some_and(|c| c.compat != 0);
    if SYSCALLS.remove(tid).is_ok() {
        add_inflight(ALL, u64::MAX);
        if compat {
            add_inflight(COMPAT, u64::MAX);
        }
    }
}

/// `INFLIGHT` slots: every saved call, and the 32-bit ones among them.
const ALL: u32 = 0;
const COMPAT: u32 = 1;

/// Adds `delta` (`u64::MAX` subtracts one) to an in-flight count, atomically.
#[inline(always)]
fn add_inflight(which: u32, delta: u64) {
    if let Some(slot) = INFLIGHT.get_ptr_mut(which) {
        // SAFETY: a valid, aligned map value shared by all CPUs: only touched atomically
        // (the result is unused, which the BPF `XADD` instruction needs).
        unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, delta) };
    }
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
    // The child's memory is a copy of the parent's: its interpreter is where the parent's is.
    // SAFETY: copied out.
    if !is_thread && let Some(located) = unsafe { PY_PROCESSES.get(parent_tgid) }.copied() {
        let _ = PY_PROCESSES.insert(child_pid, located, 0);
    }
    let Some(rec) = scratch::<ForkRecord>() else {
        return 0;
    };
    fill_header(&mut rec.header, RECORD_FORK);
    rec.child_pid = child_pid;
    rec.child_tid = child_tid;
    rec.is_thread = u32::from(is_thread);
    rec.tracking = if is_thread { flags } else { child_flags };
    rec.child_start_ns = task::process_start(child);
    if !is_thread {
        renew_generation(child_pid, rec.header.ktime_ns);
    }
    crate::guard::on_fork(parent_tgid, child_pid, child_tid, is_thread, rec.header.ktime_ns);
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
    // A safety net: a thread killed inside a traced syscall normally still passes the exit
    // tracepoint (the signal is acted on after the syscall returns).
    forget_saved(tid);
    crate::guard::on_thread_exit(tid);
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
    let _ = GENERATIONS.remove(tgid);
    let _ = QUIET.remove(tgid);
    let _ = PY_PROCESSES.remove(tgid);
    crate::guard::on_process_exit(tgid);
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
