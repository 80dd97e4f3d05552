//! Every way to open a file by name or handle: `open`, `creat`, `openat`, `openat2`,
//! `open_by_handle_at`. The record carries the kernel's path of what was opened (walked from
//! the new descriptor at exit) and its identity, besides the string the caller passed.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user_str, macros::tracepoint, programs::TracePointContext,
};
use monitor_common::{
    FLAG_COMPAT, FLAG_PATH_TRUNCATED, FLAG_READ_FAILED, HOOK_OPEN, InFlight, OpenRecord, PATH_MAX,
    RECORD_OPEN, SYSCALL_CREAT, SYSCALL_OPEN, SYSCALL_OPEN_BY_HANDLE_AT, SYSCALL_OPENAT, SYSCALL_OPENAT2,
};

use crate::{
    emit::{fill_header, scratch, send},
    path,
    process::{current_quiet, current_quiet_unless, current_tracked, save, save_unless_quiet, take_saved},
    stack,
};

const ENAMETOOLONG: i64 = 36;
const AT_FDCWD: u64 = -100i64 as u64;
const O_CREAT_WRONLY_TRUNC: u64 = 0o1 | 0o100 | 0o1000;

// Offsets in the syscall tracepoint records (tracefs `events/syscalls/*/format`).
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const ARG3: usize = 40;
const RET: usize = 16;

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn file_enter_openat(ctx: TracePointContext) -> u32 {
    let anyway = || names_code(&ctx, ARG1);
    if save_unless_quiet(&ctx, HOOK_OPEN, SYSCALL_OPENAT, [ARG0, ARG1, ARG2, ARG3], anyway)
        && may_alert(&ctx, ARG1, ARG2)
    {
        stack::capture(&ctx, SYSCALL_OPENAT);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn file_enter_openat2(ctx: TracePointContext) -> u32 {
    let anyway = || names_code(&ctx, ARG1);
    // Its flags are in user memory (`struct open_how`): rare enough to take the stack anyway.
    if save_unless_quiet(&ctx, HOOK_OPEN, SYSCALL_OPENAT2, [ARG0, ARG1, ARG2, ARG3], anyway) {
        stack::capture(&ctx, SYSCALL_OPENAT2);
    }
    0
}

/// Legacy `open(path, flags, mode)`: what musl (static binaries, Alpine's Python) calls.
#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn file_enter_open(ctx: TracePointContext) -> u32 {
    if current_tracked() && !current_quiet_unless(HOOK_OPEN, || names_code(&ctx, ARG0)) {
        // SAFETY: offsets from the tracepoint's format.
        let (name, flags, mode) = unsafe {
            (
                ctx.read_at::<u64>(ARG0).unwrap_or(0),
                ctx.read_at::<u64>(ARG1).unwrap_or(0),
                ctx.read_at::<u64>(ARG2).unwrap_or(0),
            )
        };
        let call = InFlight { syscall: SYSCALL_OPEN, compat: 0, args: [AT_FDCWD, name, flags, mode, 0] };
        if save(HOOK_OPEN, call) && may_alert(&ctx, ARG0, ARG1) {
            stack::capture(&ctx, SYSCALL_OPEN);
        }
    }
    0
}

/// `creat(path, mode)`: an open for writing that creates and truncates.
#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub fn file_enter_creat(ctx: TracePointContext) -> u32 {
    if current_tracked() && !current_quiet(HOOK_OPEN) {
        // SAFETY: offsets from the tracepoint's format.
        let (name, mode) =
            unsafe { (ctx.read_at::<u64>(ARG0).unwrap_or(0), ctx.read_at::<u64>(ARG1).unwrap_or(0)) };
        let args = [AT_FDCWD, name, O_CREAT_WRONLY_TRUNC, mode, 0];
        if save(HOOK_OPEN, InFlight { syscall: SYSCALL_CREAT, compat: 0, args }) {
            stack::capture(&ctx, SYSCALL_CREAT);
        }
    }
    0
}

/// `open_by_handle_at(mountfd, handle, flags)`: no path string at all; only the kernel's.
#[tracepoint(category = "syscalls", name = "sys_enter_open_by_handle_at")]
pub fn file_enter_open_by_handle_at(ctx: TracePointContext) -> u32 {
    if current_tracked() && !current_quiet(HOOK_OPEN) {
        // SAFETY: offsets from the tracepoint's format.
        let (mount_fd, flags) =
            unsafe { (ctx.read_at::<u64>(ARG0).unwrap_or(0), ctx.read_at::<u64>(ARG2).unwrap_or(0)) };
        let args = [mount_fd, 0, flags, 0, 0];
        if save(HOOK_OPEN, InFlight { syscall: SYSCALL_OPEN_BY_HANDLE_AT, compat: 0, args }) {
            stack::capture(&ctx, SYSCALL_OPEN_BY_HANDLE_AT);
        }
    }
    0
}

/// Whether the file name at `arg` of the tracepoint's record ends like a file CPython loads
/// code from: `.py`, `.pyc`, or an archive zipimport reads (`.zip`, `.egg`, `.whl`, `.pyz`,
/// `.pex`). A quiet process's opens of those are recorded still: the daemon names the module
/// body that runs next by the file it was loaded from. A name that cannot be read whole counts
/// as code.
#[inline(always)]
fn names_code(ctx: &TracePointContext, arg: usize) -> bool {
    const MASK: usize = PATH_MAX - 1;
    // SAFETY: offsets from the tracepoint's format.
    let name = unsafe { ctx.read_at::<u64>(arg) }.unwrap_or(0);
    // Nothing else uses the scratch area at a syscall's entry.
    let Some(buf) = scratch::<[u8; PATH_MAX]>() else { return true };
    // SAFETY: the destination is `buf`; the helper validates the user address.
    let n = unsafe { bpf_probe_read_user_str(buf.as_mut_ptr().cast(), PATH_MAX as u32, name as *const _) };
    if n <= 0 || n as usize >= PATH_MAX {
        return true;
    }
    // `n` counts the NUL.
    let len = n as usize - 1;
    let at = |back: usize| if len >= back { buf[(len - back) & MASK] } else { 0 };
    let last4 = [at(4), at(3), at(2), at(1)];
    [*b".pyc", *b".zip", *b".egg", *b".whl", *b".pyz", *b".pex"].contains(&last4) || last4[1..] == *b".py"
}

/// Whether an open may be one a rule alerts on, and so is worth a Python stack: not a
/// read-only open of a directory, of a file CPython loads code from or of a shared library
/// (every import makes those; no rule reads code). A name that cannot be read may be anything.
#[inline(always)]
fn may_alert(ctx: &TracePointContext, name_at: usize, flags_at: usize) -> bool {
    const MASK: usize = PATH_MAX - 1;
    const O_ACCMODE: u64 = 0o3;
    const O_DIRECTORY: u64 = 0o200000;
    const O_CREAT_TRUNC: u64 = 0o100 | 0o1000;
    // SAFETY: offsets from the tracepoint's format.
    let flags = unsafe { ctx.read_at::<u64>(flags_at) }.unwrap_or(0);
    if flags & (O_ACCMODE | O_CREAT_TRUNC) != 0 {
        return true;
    }
    if flags & O_DIRECTORY != 0 {
        return false;
    }
    // SAFETY: offsets from the tracepoint's format.
    let name = unsafe { ctx.read_at::<u64>(name_at) }.unwrap_or(0);
    // Nothing else uses the scratch area at a syscall's entry before the stack walk.
    let Some(buf) = scratch::<[u8; PATH_MAX]>() else { return true };
    // SAFETY: the destination is `buf`; the helper validates the user address.
    let n = unsafe { bpf_probe_read_user_str(buf.as_mut_ptr().cast(), PATH_MAX as u32, name as *const _) };
    if n <= 0 || n as usize >= PATH_MAX {
        return true;
    }
    let len = n as usize - 1;
    let at = |back: usize| if len >= back { buf[(len - back) & MASK] } else { 0 };
    let last4 = [at(4), at(3), at(2), at(1)];
    let code = [*b".pyc", *b".zip", *b".egg", *b".whl", *b".pyz", *b".pex"].contains(&last4)
        || last4[1..] == *b".py"
        || last4[1..] == *b".so";
    !code
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn file_exit_openat(ctx: TracePointContext) -> u32 {
    exit_open(&ctx, SYSCALL_OPENAT);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat2")]
pub fn file_exit_openat2(ctx: TracePointContext) -> u32 {
    exit_open(&ctx, SYSCALL_OPENAT2);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_open")]
pub fn file_exit_open(ctx: TracePointContext) -> u32 {
    exit_open(&ctx, SYSCALL_OPEN);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_creat")]
pub fn file_exit_creat(ctx: TracePointContext) -> u32 {
    exit_open(&ctx, SYSCALL_CREAT);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_open_by_handle_at")]
pub fn file_exit_open_by_handle_at(ctx: TracePointContext) -> u32 {
    exit_open(&ctx, SYSCALL_OPEN_BY_HANDLE_AT);
    0
}

/// `struct open_how` of openat2.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[inline(always)]
fn exit_open(ctx: &TracePointContext, expected: u32) {
    if let Some(call) = take_saved([expected; 2]) {
        // SAFETY: reading the tracepoint's own record.
        report_open(unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(0), call);
    }
}

/// The open record of `call`, at its exit, which returned `result`.
#[inline(always)]
pub(crate) fn report_open(result: i64, call: InFlight) {
    let InFlight { syscall, compat, args: [dirfd, path, flags_or_how, mode, _] } = call;
    let Some(rec) = scratch::<OpenRecord>() else {
        return;
    };
    fill_header(&mut rec.header, RECORD_OPEN);
    if compat != 0 {
        rec.header.flags |= FLAG_COMPAT;
    }
    rec.result = result;
    rec.dirfd = dirfd as i32;
    rec.syscall = syscall;
    rec.resolve = 0;
    if syscall == SYSCALL_OPENAT2 {
        // SAFETY: the helper validates the user pointer.
        match unsafe { aya_ebpf::helpers::bpf_probe_read_user(flags_or_how as *const OpenHow) } {
            Ok(how) => {
                rec.open_flags = how.flags as u32;
                rec.mode = how.mode as u32;
                rec.resolve = how.resolve as u32;
            }
            Err(_) => {
                rec.open_flags = 0;
                rec.mode = 0;
                rec.header.flags |= FLAG_READ_FAILED;
            }
        }
    } else {
        rec.open_flags = flags_or_how as u32;
        rec.mode = mode as u32;
    }
    let kpath_len = path::opened(rec);
    let mut path_len = 0;
    if path != 0 {
        // Read at exit rather than entry: the kernel has just copied the string, so its page
        // is present (a BPF probe read cannot fault pages in).
        // SAFETY: `kpath_len < PATH_MAX`, so PATH_MAX bytes from there fit `tail`; the helper
        // validates the user pointer.
        let n = unsafe {
            bpf_probe_read_user_str(
                rec.tail.as_mut_ptr().add(kpath_len).cast(),
                PATH_MAX as u32,
                path as *const _,
            )
        };
        path_len = if n > 0 {
            (n as usize - 1) & (PATH_MAX - 1)
        } else {
            rec.header.flags |= FLAG_READ_FAILED;
            0
        };
        if n as usize == PATH_MAX && rec.result == -ENAMETOOLONG {
            rec.header.flags |= FLAG_PATH_TRUNCATED;
        }
    }
    rec.path_len = path_len as u32;
    let len = core::mem::offset_of!(OpenRecord, tail) + kpath_len + path_len;
    rec.header.size = len as u32;
    send(HOOK_OPEN, rec, len);
}
