//! Connects and datagrams with a destination, where the kernel checks them against cgroup
//! programs (`cgroup/connect4|6` and `cgroup/sendmsg4|6`, attached to the cgroup v2 root): for
//! every call whatever its ABI, with the kernel's own copy of the address. They report only
//! 32-bit (`int 0x80`) calls, which no per-syscall tracepoint sees, when the raw-syscall
//! programs are not attached (`limits.ia32_syscalls`): 64-bit calls are reported by the
//! syscall tracepoints with their result, io_uring requests by `uring`. For a 64-bit call the
//! tracepoints record, they keep the kernel's copy of the destination (`SEEN_DESTS`) for the
//! call's exit to report instead of what the caller's memory holds by then (see
//! [`crate::net`]). They cost nothing but their run on connects and addressed sends, never on
//! other syscalls, and an untracked caller only the tracked check.
//!
//! `cgroup/sock_create` does the same for 32-bit creations of raw IPv4 and IPv6 sockets (the
//! kernel runs it from `inet_create`/`inet6_create` only: a 32-bit `AF_PACKET` socket is not
//! seen by it).
//!
//! They are also where the network guard ([`crate::guard`]) denies a call: returning 0 makes
//! it fail with `EPERM` before any packet is built.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use aya_ebpf::{
    macros::{cgroup_sock, cgroup_sock_addr},
    programs::{SockAddrContext, SockContext},
};
use monitor_common::{
    ConnectRecord, FLAG_COMPAT, HOOK_CONNECT, HOOK_SEND, HOOK_SOCKET, InFlight, KernelDest, RECORD_CONNECT,
    RECORD_SEND, REQUESTED_MAX, SOCKADDR_MAX, SYSCALL_CONNECT, SYSCALL_SENDMMSG, SYSCALL_SENDMSG,
    SYSCALL_SENDTO, SYSCALL_SOCKET, SeenDests,
};

use crate::{
    compat::in_compat_syscall,
    emit::{fill_header, scratch, send},
    guard::{decide, take_decided},
    maps::{SEEN_DESTS, SYSCALLS},
    net::{AF_INET, AF_INET6, raw, report_socket},
    process::{current_quiet, current_tracked},
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    check(&ctx, RECORD_CONNECT, HOOK_CONNECT, false, true)
}

#[cgroup_sock_addr(connect6)]
pub fn sock_connect6(ctx: SockAddrContext) -> i32 {
    check(&ctx, RECORD_CONNECT, HOOK_CONNECT, true, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    check(&ctx, RECORD_SEND, HOOK_SEND, false, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    check(&ctx, RECORD_SEND, HOOK_SEND, true, false)
}

/// The guard's decision on the call, which a 32-bit call's record carries.
#[inline(always)]
fn check(ctx: &SockAddrContext, kind: u32, hook: u32, v6: bool, connect: bool) -> i32 {
    // SAFETY: the context the kernel passed; each field is read with the 4-byte loads the
    // verifier allows on it.
    let sa = unsafe { &*ctx.sock_addr };
    let (allow, flags) = decide(connect, || (kernel_ip(sa, v6), u16::from_be(sa.user_port as u16)));
    observe(ctx, kind, hook, v6, flags);
    if allow { ALLOW } else { DENY }
}

#[inline(always)]
fn observe(ctx: &SockAddrContext, kind: u32, hook: u32, v6: bool, decided: u32) {
    if !current_tracked() {
        return;
    }
    if !in_compat_syscall() {
        keep_seen(ctx, v6);
        return;
    }
    if current_quiet(hook) {
        return;
    }
    let Some(rec) = scratch::<ConnectRecord>() else { return };
    fill_header(&mut rec.header, kind);
    rec.header.flags |= FLAG_COMPAT | decided;
    if decided != 0 {
        // Taken here: no per-syscall exit will.
        let _ = take_decided();
    }
    // Seen before the call completes: its outcome is not known here.
    rec.result = 0;
    rec.fd = -1;
    rec.addr = [0; SOCKADDR_MAX];
    rec.requested = [0; REQUESTED_MAX];
    // SAFETY: the context the kernel passed; each field is read with the 4-byte loads the
    // verifier allows on it.
    let sa = unsafe { &*ctx.sock_addr };
    // sockaddr_in / sockaddr_in6: family (host order), port (network order, as `user_port`
    // holds it), then the address (network order, as `user_ip4`/`user_ip6` hold it).
    let port = (sa.user_port as u16).to_ne_bytes();
    if v6 {
        rec.addr[..2].copy_from_slice(&AF_INET6.to_ne_bytes());
        rec.addr[2..4].copy_from_slice(&port);
        for i in 0..4 {
            rec.addr[8 + 4 * i..12 + 4 * i].copy_from_slice(&sa.user_ip6[i].to_ne_bytes());
        }
        rec.addr_len = 28;
    } else {
        rec.addr[..2].copy_from_slice(&AF_INET.to_ne_bytes());
        rec.addr[2..4].copy_from_slice(&port);
        rec.addr[4..8].copy_from_slice(&sa.user_ip4.to_ne_bytes());
        rec.addr_len = 16;
    }
    let len = core::mem::size_of::<ConnectRecord>();
    rec.header.size = len as u32;
    send(hook, rec, len);
}

/// The kernel's copy of the destination address, IPv4 as IPv4-mapped IPv6 (network order).
#[inline(always)]
fn kernel_ip(sa: &aya_ebpf::bindings::bpf_sock_addr, v6: bool) -> [u8; 16] {
    let mut ip = [0u8; 16];
    if v6 {
        for i in 0..4 {
            ip[4 * i..4 * i + 4].copy_from_slice(&sa.user_ip6[i].to_ne_bytes());
        }
    } else {
        ip[10] = 0xff;
        ip[11] = 0xff;
        ip[12..].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    }
    ip
}

/// A 64-bit call of a tracked thread: if the syscall tracepoints are recording it (a connect
/// or addressed send in flight), the destination the kernel checks is kept for its exit.
#[inline(always)]
fn keep_seen(ctx: &SockAddrContext, v6: bool) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: read in place; only this thread's programs write it.
    let recorded = unsafe { SYSCALLS.get(tid) }.is_some_and(|call| {
        call.compat == 0
            && matches!(call.syscall, SYSCALL_CONNECT | SYSCALL_SENDTO | SYSCALL_SENDMSG | SYSCALL_SENDMMSG)
    });
    if !recorded {
        return;
    }
    // SAFETY: the context the kernel passed; each field is read with the 4-byte loads the
    // verifier allows on it.
    let sa = unsafe { &*ctx.sock_addr };
    let family = if v6 { AF_INET6 } else { AF_INET };
    let dest = KernelDest { family, port: sa.user_port as u16, ip: kernel_ip(sa, v6) };
    match SEEN_DESTS.get_ptr_mut(tid) {
        Some(seen) => {
            // SAFETY: a valid map value, only touched by this thread's programs.
            let seen = unsafe { &mut *seen };
            if let Some(slot) = seen.dests.get_mut(seen.count as usize) {
                *slot = dest;
            }
            seen.count = seen.count.saturating_add(1);
        }
        None => {
            let mut seen = SeenDests { count: 1, ..SeenDests::default() };
            seen.dests[0] = dest;
            let _ = SEEN_DESTS.insert(tid, seen, 0);
        }
    }
}

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    if !current_tracked() || !in_compat_syscall() {
        return ALLOW;
    }
    // SAFETY: the context the kernel passed; family, type and protocol are readable at
    // creation.
    let sk = unsafe { &*ctx.sock };
    let (family, kind, protocol) = (u64::from(sk.family), u64::from(sk.type_), u64::from(sk.protocol));
    if raw(family, kind) && !current_quiet(HOOK_SOCKET) {
        // Seen before the call completes: no descriptor yet.
        let call = InFlight { syscall: SYSCALL_SOCKET, compat: 1, args: [family, kind, protocol, 0, 0] };
        report_socket(0, call);
    }
    ALLOW
}
