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
    maps::{MMSG_PLAN, SEEN_DESTS},
    process::{current_quiet, current_tracked, save, save_if_recorded, take_saved},
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
    if addr != 0 && !current_quiet(HOOK_SEND) {
        save(HOOK_SEND, InFlight { syscall: SYSCALL_SENDTO, compat: 0, args: [fd, addr, addr_len, 0, 0] });
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
    save(
        HOOK_SEND,
        InFlight { syscall: SYSCALL_SENDMSG, compat: 0, args: [fd, name, u64::from(name_len), 0, 0] },
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
    save(HOOK_SEND, InFlight { syscall: SYSCALL_SENDMMSG, compat: 0, args: [fd, mmsg, vlen, 0, 0] });
    0
}

/// Messages of one `sendmmsg` whose destinations are reported (the first ones: a batch to one
/// address folds into one alert anyway).
const MMSG_REPORTED: u64 = DESTS_KEPT as u64;
/// `sizeof(struct mmsghdr)`: a `msghdr` and the `msg_len` the kernel fills in, padded.
const MMSGHDR_SIZE: u64 = 64;

/// Reports one `sendmmsg` makes at most: its first messages, then the kernel destinations
/// left over.
const MMSG_REPORTS_MAX: usize = MMSG_REPORTED as usize + DESTS_KEPT;
/// [`MmsgReport::kernel`] of a message with no kernel destination.
const NO_KERNEL_DEST: u64 = DESTS_KEPT as u64;

/// One record a `sendmmsg` exit makes: the destination the caller's memory names (`name` 0:
/// a kernel destination left over) and the index of the kernel's own in `SEEN_DESTS`.
#[repr(C)]
pub(crate) struct MmsgReport {
    name: u64,
    name_len: u64,
    kernel: u64,
}

/// The records of one `sendmmsg` exit, planned before any is built (see [`net_exit_sendmmsg`]),
/// and the planning's own state.
#[repr(C)]
pub(crate) struct MmsgPlan {
    count: u64,
    reports: [MmsgReport; MMSG_REPORTS_MAX],
    /// Messages in the batch, and of them sent (or attempted).
    vlen: u64,
    sent: u64,
    /// Kernel destinations kept, and of them given to a message so far.
    kept: u64,
    given: u64,
}

/// A value kept in a map, read back. The verifier follows what a register holds down every
/// path, and tells paths apart by it; read back from memory, a value is only a number to it,
/// so the paths that differ by it are walked once from there on.
#[inline(always)]
fn load(slot: &u64) -> u64 {
    // SAFETY: a read of a valid map value.
    unsafe { core::ptr::read_volatile(slot) }
}

#[inline(always)]
fn store(slot: &mut u64, value: u64) {
    // SAFETY: a write to a valid map value.
    unsafe { core::ptr::write_volatile(slot, value) }
}

/// One socket, so either every message with a destination is checked by the cgroup programs
/// (IPv4/IPv6 UDP), in order, or none is (UNIX, TCP). The kernel's destinations are given to
/// the messages whose `msg_name` and `msg_namelen` are set, in order; the message the batch
/// stopped at is reported too when the kernel checked its destination. Kernel destinations
/// left over (the caller's memory names fewer messages than the kernel checked by then) are
/// reported on their own, flagged rewritten: whatever the caller's memory says at the return,
/// every destination the kernel checked is reported.
///
/// The reports are planned first, in a map, and built after: read back from the map, the
/// plan is the same to the verifier whichever way each message went, so it walks the record
/// building once per report instead of once per way the messages before could have gone
/// (close to its million-instruction limit, and most of premain's start-up time).
#[tracepoint(category = "syscalls", name = "sys_exit_sendmmsg")]
pub fn net_exit_sendmmsg(ctx: TracePointContext) -> u32 {
    let Some(InFlight { args: [fd, mmsg, vlen, ..], .. }) = take_saved([SYSCALL_SENDMMSG; 2]) else {
        return 0;
    };
    // SAFETY: reading the tracepoint's own record.
    let result = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
    let reported = if result > 0 { 0 } else { result };
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: read in place; only this thread's programs write it, and not during its exit.
    let seen = unsafe { SEEN_DESTS.get(tid) };
    if let Some(plan) = MMSG_PLAN.get_ptr_mut(0) {
        // SAFETY: a valid map value, used by this program invocation only until it returns.
        let plan = unsafe { &mut *plan };
        plan_mmsg(plan, result, mmsg, vlen, seen.map_or(0, |s| s.count));
        let mut r = 0;
        while r < MMSG_REPORTS_MAX {
            if r as u64 >= load(&plan.count) {
                break;
            }
            let Some(report) = plan.reports.get(r) else { break };
            let (name, name_len, kernel) = (load(&report.name), load(&report.name_len), load(&report.kernel));
            let call = InFlight { syscall: SYSCALL_SENDMMSG, compat: 0, args: [fd, name, name_len, 0, 0] };
            report_result(
                reported,
                RECORD_SEND,
                HOOK_SEND,
                call,
                seen.and_then(|s| s.dests.get(kernel as usize)),
            );
            r += 1;
        }
    }
    if seen.is_some() {
        let _ = SEEN_DESTS.remove(tid);
    }
    0
}

/// Fills `plan` for a `sendmmsg` of `vlen` messages at `mmsg` that returned `result`, the
/// kernel having checked `checked` destinations. Its state lives in the plan (see [`load`]):
/// kept in registers, each way the messages before could have gone would be a path of its own
/// for the verifier to walk through every message after.
#[inline(always)]
fn plan_mmsg(plan: &mut MmsgPlan, result: i64, mmsg: u64, vlen: u64, checked: u32) {
    // A failed batch sent nothing, but its first destination was still attempted.
    let sent = if result > 0 { result as u64 } else { 1 };
    store(&mut plan.vlen, vlen);
    store(&mut plan.sent, sent.min(vlen));
    store(&mut plan.kept, u64::from(checked).min(DESTS_KEPT as u64));
    store(&mut plan.given, 0);
    store(&mut plan.count, 0);
    for i in 0..MMSG_REPORTED {
        if i >= load(&plan.vlen) || (i >= load(&plan.sent) && load(&plan.given) >= load(&plan.kept)) {
            break;
        }
        let hdr = mmsg + i * MMSGHDR_SIZE;
        // SAFETY: the helper validates the user address.
        let name = unsafe { read_user(hdr as *const u64) }.unwrap_or(0);
        if name == 0 {
            continue;
        }
        // SAFETY: as above.
        let name_len = u64::from(unsafe { read_user((hdr + 8) as *const u32) }.unwrap_or(0));
        let given = load(&plan.given);
        let kernel = if name_len != 0 && given < load(&plan.kept) {
            store(&mut plan.given, given + 1);
            given
        } else {
            NO_KERNEL_DEST
        };
        plan.add(name, name_len, kernel);
    }
    // The kernel destinations no message was given.
    for k in 0..DESTS_KEPT as u64 {
        if k < load(&plan.given) {
            continue;
        }
        if k >= load(&plan.kept) {
            break;
        }
        plan.add(0, 0, k);
    }
}

impl MmsgPlan {
    #[inline(always)]
    fn add(&mut self, name: u64, name_len: u64, kernel: u64) {
        let count = load(&self.count);
        if let Some(report) = self.reports.get_mut(count as usize) {
            // Field by field: a whole-struct store becomes a byte-by-byte `memset` call.
            store(&mut report.name, name);
            store(&mut report.name_len, name_len);
            store(&mut report.kernel, kernel);
            store(&mut self.count, count + 1);
        }
    }
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
        save(
            HOOK_SOCKET,
            InFlight { syscall: SYSCALL_SOCKET, compat: 0, args: [family, kind, protocol, 0, 0] },
        );
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
