//! `connect`, and `sendto`/`sendmsg` with an explicit destination (a UDP datagram sent without
//! `connect`, as DNS exfiltration does). Sends on connected sockets pass no address and are
//! left alone: their destination was reported by the connect. `sendmmsg` is a batch of
//! `sendmsg`s, each with its own destination. Raw and packet sockets are recorded at creation:
//! they bypass connect and send addresses altogether.
//!
//! The destination is read from the caller's memory only at the call's return, where another
//! thread may have rewritten it after the kernel copied it (the connection went elsewhere).
//! For IPv4 and IPv6, the cgroup programs of [`crate::sock`] keep the kernel's own copy of
//! each destination checked during the call (`SEEN_DESTS`); the exit reports that one, and
//! flags the record (`FLAG_DEST_REWRITTEN`, with the caller's bytes in `requested`) when the
//! caller's memory names another destination by then.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user as read_user, generated::bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    ConnectRecord, DESTS_KEPT, FLAG_COMPAT, FLAG_DEST_REWRITTEN, FLAG_READ_FAILED, HOOK_CONNECT, HOOK_SEND,
    HOOK_SOCKET, InFlight, KernelDest, RECORD_CONNECT, RECORD_SEND, RECORD_SOCKET, REQUESTED_MAX,
    SOCKADDR_MAX, SYSCALL_CONNECT, SYSCALL_SENDMMSG, SYSCALL_SENDMSG, SYSCALL_SENDTO, SYSCALL_SOCKET,
    SocketRecord,
};

use crate::{
    emit::{fill_header, scratch, send},
    guard::{forget_decided, take_decided},
    maps::SEEN_DESTS,
    process::{current_quiet, current_tracked, save, save_if_recorded, take_saved},
    stack,
};

pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;

/// At the entry of a tracked thread's connect or send: the destinations the kernel checked
/// during an earlier call that no exit took are dropped, so they cannot name this one's.
#[inline(always)]
fn forget_seen() {
    let _ = SEEN_DESTS.remove(bpf_get_current_pid_tgid() as u32);
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn net_enter_connect(ctx: TracePointContext) -> u32 {
    if !current_tracked() {
        return 0;
    }
    forget_decided();
    forget_seen();
    if save_if_recorded(&ctx, HOOK_CONNECT, SYSCALL_CONNECT, [16, 24, 32]) {
        stack::capture(&ctx, SYSCALL_CONNECT);
    }
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
    forget_decided();
    forget_seen();
    // fd, buff, len, flags, addr, addr_len
    // SAFETY: offsets from the tracepoint's format.
    let (fd, addr, addr_len) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(48).unwrap_or(0),
            ctx.read_at::<u64>(56).unwrap_or(0),
        )
    };
    if addr != 0
        && !current_quiet(HOOK_SEND)
        && save(HOOK_SEND, InFlight { syscall: SYSCALL_SENDTO, compat: 0, args: [fd, addr, addr_len, 0, 0] })
    {
        stack::capture(&ctx, SYSCALL_SENDTO);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_sendmsg")]
pub fn net_enter_sendmsg(ctx: TracePointContext) -> u32 {
    if !current_tracked() {
        return 0;
    }
    forget_decided();
    forget_seen();
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
    let call = InFlight { syscall: SYSCALL_SENDMSG, compat: 0, args: [fd, name, u64::from(name_len), 0, 0] };
    if save(HOOK_SEND, call) {
        stack::capture(&ctx, SYSCALL_SENDMSG);
    }
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

#[tracepoint(category = "syscalls", name = "sys_enter_sendmmsg")]
pub fn net_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    if !current_tracked() {
        return 0;
    }
    forget_decided();
    forget_seen();
    if current_quiet(HOOK_SEND) {
        return 0;
    }
    // fd, mmsg, vlen, flags
    // SAFETY: offsets from the tracepoint's format.
    let (fd, mmsg, vlen) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
            ctx.read_at::<u64>(32).unwrap_or(0),
        )
    };
    if save(HOOK_SEND, InFlight { syscall: SYSCALL_SENDMMSG, compat: 0, args: [fd, mmsg, vlen, 0, 0] }) {
        stack::capture(&ctx, SYSCALL_SENDMMSG);
    }
    0
}

/// Messages of one `sendmmsg` whose destinations are reported (the first ones: a batch to one
/// address folds into one alert anyway).
const MMSG_REPORTED: u64 = DESTS_KEPT as u64;
/// `sizeof(struct mmsghdr)`: a `msghdr` and the `msg_len` the kernel fills in, padded.
const MMSGHDR_SIZE: u64 = 64;

/// One socket, so either every message with a destination is checked by the cgroup programs
/// (IPv4/IPv6 UDP), in order, or none is (UNIX, TCP). The kernel's destinations are given to
/// the messages whose `msg_name` and `msg_namelen` are set, in order; the message the batch
/// stopped at is reported too when the kernel checked its destination. Kernel destinations
/// left over (the caller's memory names fewer messages than the kernel checked by then) are
/// reported on their own, flagged rewritten: whatever the caller's memory says at the return,
/// every destination the kernel checked is reported.
#[tracepoint(category = "syscalls", name = "sys_exit_sendmmsg")]
pub fn net_exit_sendmmsg(ctx: TracePointContext) -> u32 {
    let Some(InFlight { args: [fd, mmsg, vlen, ..], .. }) = take_saved([SYSCALL_SENDMMSG; 2]) else {
        return 0;
    };
    // SAFETY: reading the tracepoint's own record.
    let result = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
    // A failed batch sent nothing, but its first destination was still attempted.
    let sent = if result > 0 { result as u64 } else { 1 };
    let n = if sent < vlen { sent } else { vlen };
    let reported = if result > 0 { 0 } else { result };
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: read in place; only this thread's programs write it, and not during its exit.
    let seen = unsafe { SEEN_DESTS.get(tid) };
    let kept = u64::from(seen.map_or(0, |s| s.count)).min(DESTS_KEPT as u64);
    // Kernel destinations given out so far.
    let mut j = 0;
    for i in 0..MMSG_REPORTED {
        if i >= vlen || (i >= n && j >= kept) {
            break;
        }
        let hdr = mmsg + i * MMSGHDR_SIZE;
        // SAFETY: the helper validates the user address.
        let name = unsafe { read_user(hdr as *const u64) }.unwrap_or(0);
        if name == 0 {
            continue;
        }
        // SAFETY: as above.
        let name_len = unsafe { read_user((hdr + 8) as *const u32) }.unwrap_or(0);
        let kernel = if name_len != 0 && j < kept {
            j += 1;
            seen.and_then(|s| s.dests.get((j - 1) as usize))
        } else {
            None
        };
        let call =
            InFlight { syscall: SYSCALL_SENDMMSG, compat: 0, args: [fd, name, u64::from(name_len), 0, 0] };
        report_result(reported, RECORD_SEND, HOOK_SEND, call, kernel);
    }
    for k in 0..DESTS_KEPT as u64 {
        if k < j {
            continue;
        }
        if k >= kept {
            break;
        }
        let call = InFlight { syscall: SYSCALL_SENDMMSG, compat: 0, args: [fd, 0, 0, 0, 0] };
        report_result(reported, RECORD_SEND, HOOK_SEND, call, seen.and_then(|s| s.dests.get(k as usize)));
    }
    if seen.is_some() {
        let _ = SEEN_DESTS.remove(tid);
    }
    0
}

/// Socket types the kernel hands raw packets to (`SOCK_RAW`, the obsolete `SOCK_PACKET`) and
/// the packet family.
const SOCK_RAW: u64 = 3;
const SOCK_PACKET: u64 = 10;
const AF_PACKET: u64 = 17;
const SOCK_TYPE_MASK: u64 = 0xf;

#[tracepoint(category = "syscalls", name = "sys_enter_socket")]
pub fn net_enter_socket(ctx: TracePointContext) -> u32 {
    if !current_tracked() {
        return 0;
    }
    // family, type, protocol
    // SAFETY: offsets from the tracepoint's format.
    let (family, kind, protocol) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
            ctx.read_at::<u64>(32).unwrap_or(0),
        )
    };
    let kind = kind & SOCK_TYPE_MASK;
    if raw(family, kind) && !current_quiet(HOOK_SOCKET) {
        let call = InFlight { syscall: SYSCALL_SOCKET, compat: 0, args: [family, kind, protocol, 0, 0] };
        if save(HOOK_SOCKET, call) {
            stack::capture(&ctx, SYSCALL_SOCKET);
        }
    }
    0
}

/// A socket that sends and receives raw packets.
#[inline(always)]
pub(crate) fn raw(family: u64, kind: u64) -> bool {
    let kind = kind & SOCK_TYPE_MASK;
    family == AF_PACKET || kind == SOCK_RAW || kind == SOCK_PACKET
}

#[tracepoint(category = "syscalls", name = "sys_exit_socket")]
pub fn net_exit_socket(ctx: TracePointContext) -> u32 {
    if let Some(call) = take_saved([SYSCALL_SOCKET; 2]) {
        // SAFETY: reading the tracepoint's own record.
        report_socket(unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0), call);
    }
    0
}

#[inline(always)]
pub(crate) fn report_socket(result: i64, call: InFlight) {
    let InFlight { compat, args: [family, kind, protocol, ..], .. } = call;
    let Some(rec) = scratch::<SocketRecord>() else { return };
    fill_header(&mut rec.header, RECORD_SOCKET);
    if compat != 0 {
        rec.header.flags |= FLAG_COMPAT;
    }
    rec.result = result;
    rec.family = family as u32;
    rec.sock_type = kind as u32;
    rec.protocol = protocol as u32;
    rec._pad = 0;
    let len = core::mem::size_of::<SocketRecord>();
    rec.header.size = len as u32;
    send(HOOK_SOCKET, rec, len);
}

/// `call.args` holds `fd, sockaddr pointer, sockaddr length`. The destination the kernel
/// checked during the call, if any, is taken.
#[inline(always)]
fn report(ctx: &TracePointContext, kind: u32, hook: u32, call: InFlight) {
    // SAFETY: reading the tracepoint's own record.
    let result = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: read in place; only this thread's programs write it, and not during its exit.
    let seen = unsafe { SEEN_DESTS.get(tid) };
    // A connect or send checks one destination.
    let kernel = seen.filter(|s| s.count != 0).map(|s| &s.dests[0]);
    report_result(result, kind, hook, call, kernel);
    if seen.is_some() {
        let _ = SEEN_DESTS.remove(tid);
    }
}

/// Reports the call; `kernel` is the destination the kernel checked during it, when one was
/// seen: the record names it, and says whether the caller's memory now names another one.
#[inline(always)]
pub(crate) fn report_result(result: i64, kind: u32, hook: u32, call: InFlight, kernel: Option<&KernelDest>) {
    let [fd, addr, addr_len, ..] = call.args;
    let Some(rec) = scratch::<ConnectRecord>() else {
        return;
    };
    fill_header(&mut rec.header, kind);
    if call.compat != 0 {
        rec.header.flags |= FLAG_COMPAT;
    }
    rec.header.flags |= take_decided();
    rec.result = result;
    rec.fd = fd as i32;
    rec.addr_len = addr_len as u32;
    rec.addr = [0; SOCKADDR_MAX];
    rec.requested = [0; REQUESTED_MAX];
    // Read exactly what the caller passed: a sockaddr_in at the end of a mapping would make a
    // full-size read fail.
    let n = (addr_len as u32).min(SOCKADDR_MAX as u32);
    let mut read_failed = false;
    if n > 0 {
        // SAFETY: `n` fits the destination; the helper validates the user pointer (and zeroes
        // the destination when it fails).
        let ret = unsafe { bpf_probe_read_user(rec.addr.as_mut_ptr().cast(), n, addr as *const _) };
        read_failed = ret != 0;
    }
    match kernel {
        None => {
            if read_failed {
                rec.header.flags |= FLAG_READ_FAILED;
            }
        }
        Some(dest) => {
            if read_failed || !names(&rec.addr, n, dest) {
                rec.header.flags |= FLAG_DEST_REWRITTEN;
                // Bytes past the caller's length are zero.
                rec.requested.copy_from_slice(&rec.addr[..REQUESTED_MAX]);
            }
            rec.addr = [0; SOCKADDR_MAX];
            write_sockaddr(&mut rec.addr, dest);
        }
    }
    let len = core::mem::size_of::<ConnectRecord>();
    rec.header.size = len as u32;
    send(hook, rec, len);
}

/// Whether the first `n` bytes of `addr` (a caller's sockaddr) name `dest`: the same port and
/// address, an IPv4-mapped IPv6 one being the IPv4 one (the kernel checks a mapped UDP
/// destination as IPv4).
#[inline(always)]
fn names(addr: &[u8; SOCKADDR_MAX], n: u32, dest: &KernelDest) -> bool {
    let family = u16::from_ne_bytes([addr[0], addr[1]]);
    let mut ip = [0u8; 16];
    if family == AF_INET && n >= 8 {
        ip[10] = 0xff;
        ip[11] = 0xff;
        ip[12..].copy_from_slice(&addr[4..8]);
    } else if family == AF_INET6 && n >= 24 {
        ip.copy_from_slice(&addr[8..24]);
    } else {
        return false;
    }
    u16::from_ne_bytes([addr[2], addr[3]]) == dest.port && ip == dest.ip
}

/// `dest` as a `sockaddr_in` or `sockaddr_in6` (no flow label, no scope).
#[inline(always)]
fn write_sockaddr(addr: &mut [u8; SOCKADDR_MAX], dest: &KernelDest) {
    addr[..2].copy_from_slice(&dest.family.to_ne_bytes());
    addr[2..4].copy_from_slice(&dest.port.to_ne_bytes());
    if dest.family == AF_INET6 {
        addr[8..24].copy_from_slice(&dest.ip);
    } else {
        addr[4..8].copy_from_slice(&dest.ip[12..]);
    }
}
