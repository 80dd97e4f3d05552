//! New names for files: rename, link and symlink in all their forms. The new name is what a
//! persistence rule judges; a relative one is anchored to the kernel's path of the directory
//! it is relative to, taken at the syscall (the cwd or `newdirfd`), not read later from /proc.
//! io_uring's `IORING_OP_RENAMEAT`, `LINKAT` and `SYMLINKAT` make the same records at
//! submission (`uring.rs`), from the kernel's copies of the names.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    FLAG_KPATH_TRUNCATED, FLAG_READ_FAILED, HOOK_NAME, InFlight, NameRecord, PATH_MAX, RECORD_NAME,
    SYSCALL_LINK, SYSCALL_LINKAT, SYSCALL_RENAME, SYSCALL_RENAMEAT, SYSCALL_RENAMEAT2, SYSCALL_SYMLINK,
    SYSCALL_SYMLINKAT,
};

use crate::{
    emit::{fill_header, scratch, send},
    maps::offsets,
    path,
    process::{current_quiet, current_tracked, save, take_saved},
    stack,
};

pub(crate) const AT_FDCWD: u64 = -100i64 as u64;

/// Saves `[olddirfd, old, newdirfd, new, flags]` read from the tracepoint record; a `None`
/// offset stands for `AT_FDCWD` (dirfds) or 0 (flags).
#[inline(always)]
fn enter(ctx: &TracePointContext, syscall: u32, offsets: [Option<usize>; 5]) {
    if !current_tracked() || current_quiet(HOOK_NAME) {
        return;
    }
    let defaults = [AT_FDCWD, 0, AT_FDCWD, 0, 0];
    let mut args = [0u64; 5];
    let mut i = 0;
    while i < 5 {
        args[i] = match offsets[i] {
            // SAFETY: offsets from the tracepoint's format.
            Some(at) => unsafe { ctx.read_at::<u64>(at) }.unwrap_or(0),
            None => defaults[i],
        };
        i += 1;
    }
    if save(HOOK_NAME, InFlight { syscall, compat: 0, args }) {
        stack::capture(ctx, syscall);
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_rename")]
pub fn names_enter_rename(ctx: TracePointContext) -> u32 {
    enter(&ctx, SYSCALL_RENAME, [None, Some(16), None, Some(24), None]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_renameat")]
pub fn names_enter_renameat(ctx: TracePointContext) -> u32 {
    enter(&ctx, SYSCALL_RENAMEAT, [Some(16), Some(24), Some(32), Some(40), None]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_renameat2")]
pub fn names_enter_renameat2(ctx: TracePointContext) -> u32 {
    enter(&ctx, SYSCALL_RENAMEAT2, [Some(16), Some(24), Some(32), Some(40), Some(48)]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_link")]
pub fn names_enter_link(ctx: TracePointContext) -> u32 {
    enter(&ctx, SYSCALL_LINK, [None, Some(16), None, Some(24), None]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_linkat")]
pub fn names_enter_linkat(ctx: TracePointContext) -> u32 {
    enter(&ctx, SYSCALL_LINKAT, [Some(16), Some(24), Some(32), Some(40), Some(48)]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_symlink")]
pub fn names_enter_symlink(ctx: TracePointContext) -> u32 {
    enter(&ctx, SYSCALL_SYMLINK, [None, Some(16), None, Some(24), None]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_symlinkat")]
pub fn names_enter_symlinkat(ctx: TracePointContext) -> u32 {
    enter(&ctx, SYSCALL_SYMLINKAT, [None, Some(16), Some(24), Some(32), None]);
    0
}

macro_rules! exits {
    ($($name:ident, $tp:literal, $syscall:expr;)*) => {$(
        #[tracepoint(category = "syscalls", name = $tp)]
        pub fn $name(ctx: TracePointContext) -> u32 {
            exit(&ctx, $syscall);
            0
        }
    )*};
}

exits! {
    names_exit_rename, "sys_exit_rename", SYSCALL_RENAME;
    names_exit_renameat, "sys_exit_renameat", SYSCALL_RENAMEAT;
    names_exit_renameat2, "sys_exit_renameat2", SYSCALL_RENAMEAT2;
    names_exit_link, "sys_exit_link", SYSCALL_LINK;
    names_exit_linkat, "sys_exit_linkat", SYSCALL_LINKAT;
    names_exit_symlink, "sys_exit_symlink", SYSCALL_SYMLINK;
    names_exit_symlinkat, "sys_exit_symlinkat", SYSCALL_SYMLINKAT;
}

/// Reads a user string (a kernel one when `kernel`) into `dst` (room for `PATH_MAX` bytes);
/// its length, without the NUL.
#[inline(always)]
fn string(dst: *mut u8, src: u64, kernel: bool, flags: &mut u32) -> usize {
    // SAFETY: the caller gives PATH_MAX bytes of room; the helpers validate the pointer.
    let n = unsafe {
        if kernel {
            bpf_probe_read_kernel_str(dst.cast(), PATH_MAX as u32, src as *const _)
        } else {
            bpf_probe_read_user_str(dst.cast(), PATH_MAX as u32, src as *const _)
        }
    };
    if n > 0 {
        (n as usize - 1) & (PATH_MAX - 1)
    } else {
        *flags |= FLAG_READ_FAILED;
        0
    }
}

#[inline(always)]
fn exit(ctx: &TracePointContext, expected: u32) {
    let Some(InFlight { syscall, args: [olddirfd, old, newdirfd, new, flags], .. }) =
        take_saved([expected; 2])
    else {
        return;
    };
    let Some(rec) = scratch::<NameRecord>() else { return };
    fill_header(&mut rec.header, RECORD_NAME);
    // SAFETY: reading the tracepoint's own record.
    rec.result = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
    rec.syscall = syscall;
    rec.olddirfd = olddirfd as i32;
    rec.newdirfd = newdirfd as i32;
    rec.flags = flags as u32;
    rec.opcode = 0;
    // SAFETY: the helper validates the user pointer; one byte is enough to tell absolute.
    let first: u8 = unsafe { aya_ebpf::helpers::bpf_probe_read_user(new as *const u8) }.unwrap_or(b'/');
    fill(rec, first, newdirfd, old, new, false);
    send(HOOK_NAME, rec, rec.header.size as usize);
}

/// Fills the tail of `rec` (whose header, dirfds and flags are set) and its size: the kernel
/// path of the directory the new name is relative to unless it starts with `/` (`first` is
/// its first byte), then the old and new names (user strings, or kernel ones when `kernel`).
#[inline(always)]
pub(crate) fn fill(rec: &mut NameRecord, first: u8, newdirfd: u64, old: u64, new: u64, kernel: bool) {
    let mut base_len = 0;
    if first != b'/' {
        // The kernel takes a dirfd as an `int`.
        let base = if newdirfd as i32 == AT_FDCWD as i32 {
            path::current_pwd()
        } else {
            path::current_file(newdirfd as i32 as i64).map(|f| f + u64::from(offsets().file_path))
        };
        if let Some(walked) = base.and_then(path::walk) {
            if walked.truncated {
                rec.header.flags |= FLAG_KPATH_TRUNCATED;
            }
            base_len = path::copy(&walked, rec.tail.as_mut_ptr());
        }
    }
    let base_len = base_len & (PATH_MAX - 1);
    let mut hflags = rec.header.flags;
    // SAFETY: each offset is below PATH_MAX * k with k strings before it, so PATH_MAX bytes fit.
    let old_len = string(unsafe { rec.tail.as_mut_ptr().add(base_len) }, old, kernel, &mut hflags);
    let at = (base_len + old_len) & (2 * PATH_MAX - 1);
    // SAFETY: as above: `at < 2 * PATH_MAX` and the tail holds 3 * PATH_MAX bytes.
    let new_len = string(unsafe { rec.tail.as_mut_ptr().add(at) }, new, kernel, &mut hflags);
    rec.header.flags = hflags;
    rec.base_len = base_len as u32;
    rec.old_len = old_len as u32;
    rec.new_len = new_len as u32;
    let len = core::mem::offset_of!(NameRecord, tail) + at + new_len;
    rec.header.size = len as u32;
}
