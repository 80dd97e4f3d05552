//! `connect`, and `sendto`/`sendmsg` with an explicit destination (a UDP datagram sent without
//! `connect`, as DNS exfiltration does). Sends on connected sockets pass no address and are
//! left alone: their destination was reported by the connect.

use aya_ebpf::{
    helpers::{bpf_probe_read_user as read_user, generated::bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    ConnectRecord, FLAG_READ_FAILED, HOOK_CONNECT, HOOK_SEND, InFlight, RECORD_CONNECT, RECORD_SEND,
    SOCKADDR_MAX, SYSCALL_CONNECT, SYSCALL_SENDMSG, SYSCALL_SENDTO,
};

use crate::{
    emit::{fill_header, scratch, send},
    process::{current_quiet, current_tracked, save, save_if_recorded, take_saved},
};

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn net_enter_connect(ctx: TracePointContext) -> u32 {
    save_if_recorded(&ctx, HOOK_CONNECT, SYSCALL_CONNECT, [16, 24, 32]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn net_exit_connect(ctx: TracePointContext) -> u32 {
    if let Some(call) = take_saved([SYSCALL_CONNECT; 2]) {
        report(&ctx, RECORD_CONNECT, HOOK_CONNECT, call);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_sendto")]
pub fn net_enter_sendto(ctx: TracePointContext) -> u32 {
    if !current_tracked() {
        return 0;
    }
    // fd, buff, len, flags, addr, addr_len
    // SAFETY: offsets from the tracepoint's format.
    let (fd, addr, addr_len) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(48).unwrap_or(0),
            ctx.read_at::<u64>(56).unwrap_or(0),
        )
    };
    if addr != 0 && !current_quiet(HOOK_SEND) {
        save(HOOK_SEND, InFlight { syscall: SYSCALL_SENDTO, _pad: 0, args: [fd, addr, addr_len, 0, 0] });
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_sendmsg")]
pub fn net_enter_sendmsg(ctx: TracePointContext) -> u32 {
    if !current_tracked() {
        return 0;
    }
    // fd, msg, flags
    // SAFETY: offsets from the tracepoint's format.
    let (fd, msg) = unsafe { (ctx.read_at::<u64>(16).unwrap_or(0), ctx.read_at::<u64>(24).unwrap_or(0)) };
    // struct msghdr { void *msg_name; int msg_namelen; ... }
    // SAFETY: the helper validates the user address.
    let name = unsafe { read_user(msg as *const u64) }.unwrap_or(0);
    if name == 0 || current_quiet(HOOK_SEND) {
        return 0;
    }
    // SAFETY: as above.
    let name_len = unsafe { read_user((msg + 8) as *const u32) }.unwrap_or(0);
    save(
        HOOK_SEND,
        InFlight { syscall: SYSCALL_SENDMSG, _pad: 0, args: [fd, name, u64::from(name_len), 0, 0] },
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_sendto")]
pub fn net_exit_sendto(ctx: TracePointContext) -> u32 {
    if let Some(call) = take_saved([SYSCALL_SENDTO; 2]) {
        report(&ctx, RECORD_SEND, HOOK_SEND, call);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_sendmsg")]
pub fn net_exit_sendmsg(ctx: TracePointContext) -> u32 {
    if let Some(call) = take_saved([SYSCALL_SENDMSG; 2]) {
        report(&ctx, RECORD_SEND, HOOK_SEND, call);
    }
    0
}

/// `call.args` holds `fd, sockaddr pointer, sockaddr length`.
#[inline(always)]
fn report(ctx: &TracePointContext, kind: u32, hook: u32, call: InFlight) {
    let [fd, addr, addr_len, ..] = call.args;
    let Some(rec) = scratch::<ConnectRecord>() else {
        return;
    };
    fill_header(&mut rec.header, kind);
    // SAFETY: reading the tracepoint's own record.
    rec.result = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
    rec.fd = fd as i32;
    rec.addr_len = addr_len as u32;
    rec.addr = [0; SOCKADDR_MAX];
    // Read exactly what the caller passed: a sockaddr_in at the end of a mapping would make a
    // full-size read fail.
    let n = (addr_len as u32).min(SOCKADDR_MAX as u32);
    if n > 0 {
        // SAFETY: `n` fits the destination; the helper validates the user pointer.
        let ret = unsafe { bpf_probe_read_user(rec.addr.as_mut_ptr().cast(), n, addr as *const _) };
        if ret != 0 {
            rec.header.flags |= FLAG_READ_FAILED;
        }
    }
    let len = core::mem::size_of::<ConnectRecord>();
    rec.header.size = len as u32;
    send(hook, rec, len);
}
