//! `openat` and `openat2`.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user_str, macros::tracepoint, programs::TracePointContext,
};
use monitor_common::{
    FLAG_PATH_TRUNCATED, FLAG_READ_FAILED, HOOK_OPEN, InFlight, OpenRecord, PATH_MAX, RECORD_OPEN,
    SYSCALL_OPENAT, SYSCALL_OPENAT2,
};

use crate::{
    emit::{fill_header, scratch, send},
    process::{save_if_recorded, take_saved},
};

const ENAMETOOLONG: i64 = 36;

// Offsets in the syscall tracepoint records (tracefs `events/syscalls/*/format`).
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const ARG3: usize = 40;
const RET: usize = 16;

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn file_enter_openat(ctx: TracePointContext) -> u32 {
    save_if_recorded(&ctx, HOOK_OPEN, SYSCALL_OPENAT, [ARG0, ARG1, ARG2, ARG3]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn file_enter_openat2(ctx: TracePointContext) -> u32 {
    save_if_recorded(&ctx, HOOK_OPEN, SYSCALL_OPENAT2, [ARG0, ARG1, ARG2, ARG3]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn file_exit_openat(ctx: TracePointContext) -> u32 {
    exit_open(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat2")]
pub fn file_exit_openat2(ctx: TracePointContext) -> u32 {
    exit_open(&ctx);
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
fn exit_open(ctx: &TracePointContext) {
    let Some(InFlight { syscall, args: [dirfd, path, flags_or_how, mode, _], .. }) =
        take_saved([SYSCALL_OPENAT, SYSCALL_OPENAT2])
    else {
        return;
    };
    let Some(rec) = scratch::<OpenRecord>() else {
        return;
    };
    fill_header(&mut rec.header, RECORD_OPEN);
    // SAFETY: reading the tracepoint's own record.
    rec.result = unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(0);
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
    // Read at exit rather than entry: the kernel has just copied the string, so its page is
    // present (a BPF probe read cannot fault pages in).
    // SAFETY: destination is the record's own buffer; the helper validates the user pointer.
    let n =
        unsafe { bpf_probe_read_user_str(rec.path.as_mut_ptr().cast(), PATH_MAX as u32, path as *const _) };
    let path_len = if n > 0 {
        (n as usize - 1) & (PATH_MAX - 1)
    } else {
        rec.header.flags |= FLAG_READ_FAILED;
        0
    };
    if n as usize == PATH_MAX && rec.result == -ENAMETOOLONG {
        rec.header.flags |= FLAG_PATH_TRUNCATED;
    }
    rec.path_len = path_len as u32;
    let len = core::mem::offset_of!(OpenRecord, path) + path_len;
    rec.header.size = len as u32;
    send(HOOK_OPEN, rec, len);
}
