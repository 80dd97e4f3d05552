//! `connect`.

use aya_ebpf::{helpers::generated::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use monitor_common::{
    ConnectRecord, FLAG_READ_FAILED, HOOK_CONNECT, InFlight, RECORD_CONNECT, SOCKADDR_MAX, SYSCALL_CONNECT,
};

use crate::{
    emit::{fill_header, scratch, send},
    process::{save_if_tracked, take_saved},
};

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn net_enter_connect(ctx: TracePointContext) -> u32 {
    save_if_tracked(&ctx, HOOK_CONNECT, SYSCALL_CONNECT, [16, 24, 32]);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn net_exit_connect(ctx: TracePointContext) -> u32 {
    let Some(InFlight { args: [fd, addr, addr_len, ..], .. }) = take_saved([SYSCALL_CONNECT; 2]) else {
        return 0;
    };
    let Some(rec) = scratch::<ConnectRecord>() else {
        return 0;
    };
    fill_header(&mut rec.header, RECORD_CONNECT);
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
    send(HOOK_CONNECT, rec, len);
    0
}
