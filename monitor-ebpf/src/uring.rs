//! io_uring: a ring's creation and every request a tracked process submits. io_uring opens,
//! connects and sends make no syscall of their own, so the syscall hooks never see them. At
//! submission the request is already prepared: an open's file name is the kernel's copy (no
//! second read of user memory), a connect's address is still the caller's. An open whose
//! result is a normal fd is walked at its completion like any other open; one into a fixed
//! (direct) slot never gets an fd, so its name is all there is. A rename, link or symlink is
//! a name record like the syscalls' (`names.rs`), made at submission from the kernel's copies
//! of both names, its new name anchored to the submitter's cwd or `new_dfd` as the syscall's.
//!
//! Submissions come from the thread that called `io_uring_enter`, or, for a ring set up with
//! `IORING_SETUP_SQPOLL`, from the ring's kernel thread (`iou-sqp-<pid>`): a thread of the
//! ring creator's process (so tracked as it is) sharing its fd table and `fs_struct`, so a
//! dirfd and the cwd are the process's there too.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    FLAG_READ_FAILED, HOOK_OPEN, HOOK_URING, IORING_OP_CONNECT, IORING_OP_LINKAT, IORING_OP_OPENAT,
    IORING_OP_OPENAT2, IORING_OP_RENAMEAT, IORING_OP_SENDMSG, IORING_OP_SENDMSG_ZC, IORING_OP_SOCKET,
    IORING_OP_SYMLINKAT, NameRecord, OpenRecord, PATH_MAX, RECORD_NAME, RECORD_OPEN, RECORD_URING,
    SOCKADDR_MAX, SYSCALL_IO_URING, URING_SETUP, UringRecord,
};

use crate::{
    emit::{fill_header, scratch, send},
    maps::{URING_OPENS, offsets},
    names::{self, AT_FDCWD},
    path,
    process::{current_quiet, current_tracked},
    task::read,
};

#[inline(always)]
fn start(opcode: u32) -> Option<&'static mut UringRecord> {
    let rec = scratch::<UringRecord>()?;
    fill_header(&mut rec.header, RECORD_URING);
    rec.opcode = opcode;
    rec.user_data = 0;
    rec.file_slot = 0;
    rec.arg0 = 0;
    rec.arg1 = 0;
    rec.arg2 = 0;
    rec.tail_len = 0;
    Some(rec)
}

#[inline(always)]
fn finish(rec: &mut UringRecord) {
    let len = core::mem::offset_of!(UringRecord, tail) + (rec.tail_len as usize & (PATH_MAX - 1));
    rec.header.size = len as u32;
    send(HOOK_URING, rec, len);
}

#[tracepoint(category = "io_uring", name = "io_uring_create")]
pub fn uring_create(ctx: TracePointContext) -> u32 {
    if !current_tracked() {
        return 0;
    }
    let Some(rec) = start(URING_SETUP) else { return 0 };
    // SAFETY: offsets from the tracepoint's format (fd at 8).
    rec.arg0 = unsafe { ctx.read_at::<i32>(8) }.unwrap_or(-1);
    finish(rec);
    0
}

#[tracepoint(category = "io_uring", name = "io_uring_submit_req")]
pub fn uring_submit(ctx: TracePointContext) -> u32 {
    if !current_tracked() || current_quiet(HOOK_URING) {
        return 0;
    }
    // ctx, req, user_data, opcode
    // SAFETY: offsets from the tracepoint's format.
    let (req, user_data, opcode) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
            u32::from(ctx.read_at::<u8>(32).unwrap_or(0)),
        )
    };
    let off = offsets();
    if (opcode == IORING_OP_RENAMEAT || opcode == IORING_OP_LINKAT || opcode == IORING_OP_SYMLINKAT)
        && off.uring_names != 0
    {
        name(req, opcode);
        return 0;
    }
    let Some(rec) = start(opcode) else { return 0 };
    rec.user_data = user_data;
    if off.uring_layout != 0 {
        // The opcode's own struct overlays the start of `io_kiocb` (`io_kiocb.cmd`).
        if opcode == IORING_OP_OPENAT || opcode == IORING_OP_OPENAT2 {
            rec.arg0 = read::<i32>(req, off.io_open_dfd).unwrap_or(0);
            rec.arg1 = read::<u64>(req, off.io_open_flags).unwrap_or(0) as u32;
            rec.file_slot = read::<u32>(req, off.io_open_file_slot).unwrap_or(0);
            let name = read::<u64>(req, off.io_open_filename).and_then(|f| read::<u64>(f, off.filename_name));
            match name {
                Some(name) => {
                    // SAFETY: the destination is the record's tail; the helper validates the address.
                    let n = unsafe {
                        bpf_probe_read_kernel_str(
                            rec.tail.as_mut_ptr().cast(),
                            PATH_MAX as u32,
                            name as *const _,
                        )
                    };
                    rec.tail_len = if n > 0 { (n as u32 - 1) & (PATH_MAX as u32 - 1) } else { 0 };
                    if n <= 0 {
                        rec.header.flags |= FLAG_READ_FAILED;
                    }
                }
                None => rec.header.flags |= FLAG_READ_FAILED,
            }
            if rec.file_slot == 0 {
                let _ = URING_OPENS.insert(req, u64::from(rec.arg1), 0);
            }
        } else if opcode == IORING_OP_CONNECT {
            let addr = read::<u64>(req, off.io_connect_addr).unwrap_or(0);
            let len = read::<u32>(req, off.io_connect_addr_len).unwrap_or(0);
            user_sockaddr(rec, addr, len);
        } else if opcode == IORING_OP_SENDMSG || opcode == IORING_OP_SENDMSG_ZC {
            // struct user_msghdr { void *msg_name; int msg_namelen; ... }
            let msg = read::<u64>(req, off.io_sr_msg_umsg).unwrap_or(0);
            // SAFETY: the helpers validate the user addresses.
            let name = unsafe { aya_ebpf::helpers::bpf_probe_read_user(msg as *const u64) }.unwrap_or(0);
            // SAFETY: as above.
            let len = unsafe { aya_ebpf::helpers::bpf_probe_read_user((msg + 8) as *const u32) }.unwrap_or(0);
            if name != 0 {
                user_sockaddr(rec, name, len);
            }
        } else if opcode == IORING_OP_SOCKET {
            rec.arg0 = read::<i32>(req, off.io_socket_domain).unwrap_or(0);
            rec.arg1 = read::<u32>(req, off.io_socket_type).unwrap_or(0);
            rec.arg2 = read::<u32>(req, off.io_socket_protocol).unwrap_or(0);
            rec.file_slot = read::<u32>(req, off.io_socket_file_slot).unwrap_or(0);
        }
    }
    finish(rec);
    0
}

/// `IORING_OP_RENAMEAT`, `LINKAT`, `SYMLINKAT`: `struct io_rename` or `io_link` holds the
/// directory fds and `struct filename` copies of both names (a symlink's old name is its
/// target, its `old_dfd` unused). The outcome is not known yet: `result` is 0.
#[inline(always)]
fn name(req: u64, opcode: u32) {
    let off = offsets();
    let (old_dfd, new_dfd, oldpath, newpath, flags) = if opcode == IORING_OP_RENAMEAT {
        (
            off.io_rename_old_dfd,
            off.io_rename_new_dfd,
            off.io_rename_oldpath,
            off.io_rename_newpath,
            off.io_rename_flags,
        )
    } else {
        (
            off.io_link_old_dfd,
            off.io_link_new_dfd,
            off.io_link_oldpath,
            off.io_link_newpath,
            off.io_link_flags,
        )
    };
    let Some(rec) = scratch::<NameRecord>() else { return };
    fill_header(&mut rec.header, RECORD_NAME);
    rec.result = 0;
    rec.syscall = SYSCALL_IO_URING;
    rec.opcode = opcode;
    let symlink = opcode == IORING_OP_SYMLINKAT;
    rec.olddirfd =
        if symlink { AT_FDCWD as i32 } else { read::<i32>(req, old_dfd).unwrap_or(AT_FDCWD as i32) };
    let newdirfd = read::<i32>(req, new_dfd).unwrap_or(AT_FDCWD as i32);
    rec.newdirfd = newdirfd;
    rec.flags = if symlink { 0 } else { read::<u32>(req, flags).unwrap_or(0) };
    let string = |at: u32| read::<u64>(req, at).and_then(|f| read::<u64>(f, off.filename_name)).unwrap_or(0);
    let (old, new) = (string(oldpath), string(newpath));
    let first = read::<u8>(new, 0).unwrap_or(b'/');
    names::fill(rec, first, newdirfd as i64 as u64, old, new, true);
    send(HOOK_URING, rec, rec.header.size as usize);
}

#[inline(always)]
fn user_sockaddr(rec: &mut UringRecord, addr: u64, len: u32) {
    let n = if len > SOCKADDR_MAX as u32 { SOCKADDR_MAX as u32 } else { len };
    if addr == 0 || n == 0 {
        return;
    }
    // SAFETY: `n` fits the tail; the helper validates the user pointer.
    let ret = unsafe { bpf_probe_read_user(rec.tail.as_mut_ptr().cast(), n, addr as *const _) };
    if ret == 0 {
        rec.tail_len = n;
    } else {
        rec.header.flags |= FLAG_READ_FAILED;
    }
}

#[tracepoint(category = "io_uring", name = "io_uring_complete")]
pub fn uring_complete(ctx: TracePointContext) -> u32 {
    if !current_tracked() {
        return 0;
    }
    // ctx, req, user_data, res
    // SAFETY: offsets from the tracepoint's format.
    let (req, res) = unsafe { (ctx.read_at::<u64>(16).unwrap_or(0), ctx.read_at::<i32>(32).unwrap_or(-1)) };
    // SAFETY: copied out before the entry is removed.
    let Some(flags) = (unsafe { URING_OPENS.get(req) }).copied() else { return 0 };
    let _ = URING_OPENS.remove(req);
    let Some(rec) = scratch::<OpenRecord>() else { return 0 };
    fill_header(&mut rec.header, RECORD_OPEN);
    rec.result = i64::from(res);
    rec.dirfd = -100;
    rec.open_flags = flags as u32;
    rec.mode = 0;
    rec.syscall = SYSCALL_IO_URING;
    rec.resolve = 0;
    rec.path_len = 0;
    let kpath_len = path::opened(rec);
    let len = core::mem::offset_of!(OpenRecord, tail) + kpath_len;
    rec.header.size = len as u32;
    send(HOOK_OPEN, rec, len);
    0
}
