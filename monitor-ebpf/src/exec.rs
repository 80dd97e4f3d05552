//! `execve`/`execveat` by tracked processes, and `sched_process_exec`, where every process that
//! starts a new image is classified: known CPython, known not to be, or not judged yet.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str, bpf_send_signal},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    ARGS_MAX, ARGV_MAX, CONTROL_HOLD, COUNT_LOST_TRACKED, COUNT_READ_FAILED, ExeKey, ExecRecord,
    FLAG_ARGS_TRUNCATED, FLAG_EXEC_BY_TRACKED, FLAG_HELD, FLAG_PATH_TRUNCATED, FLAG_READ_FAILED, HOOK_EXEC,
    InFlight, PATH_MAX, RECORD_EXEC_FAILED, RECORD_IMAGE, SYSCALL_EXECVE, SYSCALL_EXECVEAT, TRACK_DESCENDANT,
    TRACK_PENDING, TRACK_PYTHON, VERDICT_PYTHON,
};

use crate::{
    emit::{count, fill_header, scratch, send},
    maps::{PY_PROCESSES, TRACKED, VERDICTS, control, self_tgid},
    process::{save_if_tracked, take_saved},
    stack, task,
};

const AT_FDCWD: i32 = -100;
const SIGSTOP: u32 = 19;
/// Longest argv entry captured for a failed exec (a successful one copies the argv area whole).
const ARG_CHUNK: usize = 256;

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn exec_enter_execve(ctx: TracePointContext) -> u32 {
    // filename, argv
    if save_if_tracked(&ctx, HOOK_EXEC, SYSCALL_EXECVE, [16, 24]) {
        // The last moment the caller's Python memory exists.
        stack::capture(&ctx, SYSCALL_EXECVE);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn exec_enter_execveat(ctx: TracePointContext) -> u32 {
    // filename, argv, dirfd, flags: same first two slots as execve
    if save_if_tracked(&ctx, HOOK_EXEC, SYSCALL_EXECVEAT, [24, 32, 16, 48]) {
        stack::capture(&ctx, SYSCALL_EXECVEAT);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execve")]
pub fn exec_exit_execve(ctx: TracePointContext) -> u32 {
    exit_exec(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execveat")]
pub fn exec_exit_execveat(ctx: TracePointContext) -> u32 {
    exit_exec(&ctx);
    0
}

/// A successful exec is reported by `sched_process_exec` (the caller's memory is gone by
/// now); a failed one is reported here, where the caller's memory is still intact.
#[inline(always)]
fn exit_exec(ctx: &TracePointContext) {
    let Some(InFlight { syscall, args: [filename, argv, dirfd, flags, _], .. }) =
        take_saved([SYSCALL_EXECVE, SYSCALL_EXECVEAT])
    else {
        return;
    };
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    // SAFETY: reading the tracepoint's own record.
    let result = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
    if result == 0 {
        return;
    }
    let Some(rec) = scratch::<ExecRecord>() else {
        return;
    };
    fill_header(&mut rec.header, RECORD_EXEC_FAILED);
    rec.result = result;
    rec.exe = ExeKey::default();
    rec.old_pid = tid;
    rec.tracking = 0;
    rec.syscall = syscall;
    (rec.dirfd, rec.exec_flags) =
        if syscall == SYSCALL_EXECVEAT { (dirfd as i32, flags as u32) } else { (AT_FDCWD, 0) };
    read_argv(rec, argv);
    // SAFETY: destination is the record's buffer; the helper validates the user pointer.
    let n = unsafe {
        bpf_probe_read_user_str(rec.filename.as_mut_ptr().cast(), PATH_MAX as u32, filename as *const _)
    };
    finish_filename(rec, n);
}

#[inline(always)]
fn read_argv(rec: &mut ExecRecord, argv: u64) {
    rec.argc = 0;
    let mut used: usize = 0;
    let mut i: usize = 0;
    while i < ARGV_MAX {
        // SAFETY: the helper validates the user pointer.
        let Ok(arg) = (unsafe { bpf_probe_read_user((argv as *const u64).wrapping_add(i)) }) else {
            rec.header.flags |= FLAG_READ_FAILED;
            break;
        };
        if arg == 0 {
            break;
        }
        let off = used & (ARGS_MAX - 1);
        if off > ARGS_MAX - ARG_CHUNK {
            rec.header.flags |= FLAG_ARGS_TRUNCATED;
            break;
        }
        // SAFETY: `off + ARG_CHUNK <= ARGS_MAX`, so the write stays inside `args`.
        let n = unsafe {
            bpf_probe_read_user_str(rec.args.as_mut_ptr().add(off).cast(), ARG_CHUNK as u32, arg as *const _)
        };
        if n <= 0 {
            rec.header.flags |= FLAG_READ_FAILED;
            break;
        }
        if n as usize == ARG_CHUNK {
            rec.header.flags |= FLAG_ARGS_TRUNCATED;
        }
        used = off + n as usize;
        rec.argc += 1;
        i += 1;
    }
    if i == ARGV_MAX {
        rec.header.flags |= FLAG_ARGS_TRUNCATED;
    }
    rec.args_len = used as u32;
}

/// After exec, `comm` is the basename of the file run (`python3.12`, a venv's `python`).
#[inline(always)]
fn comm_is_python() -> bool {
    let comm = aya_ebpf::helpers::bpf_get_current_comm().unwrap_or_default();
    comm[0] == b'p'
        && comm[1] == b'y'
        && comm[2] == b't'
        && comm[3] == b'h'
        && comm[4] == b'o'
        && comm[5] == b'n'
}

/// `n` is a `*_read_*_str` result: bytes copied including the NUL, or a negative error.
/// Returns whether the record was sent.
#[inline(always)]
fn finish_filename(rec: &mut ExecRecord, n: i64) -> bool {
    let len = if n > 0 {
        (n as usize - 1) & (PATH_MAX - 1)
    } else {
        rec.header.flags |= FLAG_READ_FAILED;
        0
    };
    if n as usize == PATH_MAX {
        rec.header.flags |= FLAG_PATH_TRUNCATED;
    }
    if rec.header.flags & FLAG_READ_FAILED != 0 {
        count(HOOK_EXEC, COUNT_READ_FAILED);
    }
    rec.filename_len = len as u32;
    let size = core::mem::offset_of!(ExecRecord, filename) + len;
    rec.header.size = size as u32;
    send(HOOK_EXEC, rec, size)
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn exec_image(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tgid == self_tgid() {
        return 0;
    }
    // SAFETY: copied out.
    let before = (unsafe { TRACKED.get(tgid) }).copied().unwrap_or(0);
    // SAFETY: reading the tracepoint's own record (`old_pid`).
    let old_pid = unsafe { ctx.read_at::<i32>(16) }.unwrap_or(tid as i32) as u32;
    if old_pid != tid {
        // A non-leader thread exec'd and took the leader's tid: its saved args are orphaned.
        crate::process::forget_saved(old_pid);
    }
    let exe = task::current_exe();
    // SAFETY: copied out.
    let verdict = exe.and_then(|key| unsafe { VERDICTS.get(key) }.copied());
    let mut after = match verdict {
        Some(VERDICT_PYTHON) => TRACK_PYTHON,
        Some(_) => 0,
        None => TRACK_PENDING,
    };
    let by_tracked = before & (TRACK_PYTHON | TRACK_DESCENDANT) != 0;
    if by_tracked {
        after |= TRACK_DESCENDANT;
    }
    // The verdict on the previous image may still be coming: keep recording until it does.
    after |= before & TRACK_PENDING;
    if after == 0 {
        return 0;
    }
    if after != before && TRACKED.insert(tgid, after, 0).is_err() {
        count(HOOK_EXEC, COUNT_LOST_TRACKED);
    }
    // A new image: where its interpreter lies (if it has one) is learnt again.
    let _ = PY_PROCESSES.remove(tgid);
    let Some(rec) = scratch::<ExecRecord>() else {
        return 0;
    };
    fill_header(&mut rec.header, RECORD_IMAGE);
    // Decided with the phase of the code that exec'd, before the new image starts its own.
    rec.header.flags |= crate::guard::on_exec_of(exe.as_ref());
    crate::process::renew_generation(tgid, rec.header.ktime_ns);
    crate::guard::on_exec(tgid, tid, after & TRACK_PYTHON != 0, rec.header.ktime_ns);
    if by_tracked {
        rec.header.flags |= FLAG_EXEC_BY_TRACKED;
    }
    // An unseen executable may be a CPython whose probes are not attached yet: stop the process
    // before its first instruction, so that no start-up marker is missed. The daemon resumes
    // it once judged; only a record that reached the ring can promise that. A stop is visible
    // to a job-control shell ("Stopped"), so only likely interpreters are held: files run as
    // `python*`, and anything run by a tracked process (a renamed copy run by pre-main code).
    // With the daemon's exec watch, execve waits until the verdict is stored, so `verdict` is
    // known here and CONTROL_HOLD is off: this is the fallback.
    let hold = verdict.is_none() && control(CONTROL_HOLD) != 0 && (by_tracked || comm_is_python());
    if hold {
        rec.header.flags |= FLAG_HELD;
    }
    rec.result = 0;
    rec.old_pid = old_pid;
    rec.tracking = after;
    rec.dirfd = AT_FDCWD;
    rec.exec_flags = 0;
    rec.syscall = 0;
    rec.argc = 0;
    rec.exe = match exe {
        Some(key) => key,
        None => {
            // Rare (an exec racing with the mm's teardown); worth a line in the daemon's log.
            aya_log_ebpf::warn!(&ctx, "pid {}: cannot read the identity of the new executable", tgid);
            rec.header.flags |= FLAG_READ_FAILED;
            ExeKey::default()
        }
    };
    rec.args_len = match task::current_args(&mut rec.args) {
        Some((len, truncated)) => {
            if truncated {
                rec.header.flags |= FLAG_ARGS_TRUNCATED;
            }
            len
        }
        None => {
            rec.header.flags |= FLAG_READ_FAILED;
            0
        }
    };
    // `filename` is a `__data_loc char[]`: offset in the low 16 bits, length in the high ones.
    // SAFETY: reading the tracepoint's own record.
    let loc = unsafe { ctx.read_at::<u32>(8) }.unwrap_or(0);
    let src = ctx.as_ptr() as usize + (loc & 0xffff) as usize;
    // SAFETY: `src` lies inside the tracepoint's record; the destination is ours.
    let n = unsafe {
        bpf_probe_read_kernel_str(rec.filename.as_mut_ptr().cast(), PATH_MAX as u32, src as *const _)
    };
    if finish_filename(rec, n) && hold {
        // SAFETY: helper without preconditions; it signals the current process.
        unsafe { bpf_send_signal(SIGSTOP) };
    }
    0
}
