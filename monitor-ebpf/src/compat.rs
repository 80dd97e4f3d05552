//! 32-bit syscalls of 64-bit processes (`int 0x80` with IA32 emulation on): the per-syscall
//! tracepoints never fire for them, only the raw-syscall ones do, with the i386 table's
//! numbers. These programs run on every syscall of the node, so they are raw tracepoints (no
//! trace record is built: the program gets the registers and the syscall number), the entry
//! starts with the syscall number (register compares that reject nearly every call), then the
//! caller's compat bit and the tracked-process check, and the exit with the in-flight count
//! of 32-bit calls (an array read). The calls are decoded
//! into the same saved arguments as their 64-bit twins and reported by the same code.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_get_current_task},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::{
    HOOK_COMPAT, HOOK_CONNECT, HOOK_SEND, InFlight, PTRACE_ATTACH, PTRACE_SEIZE, RECORD_CONNECT, RECORD_SEND,
    SYSCALL_CONNECT, SYSCALL_CREAT, SYSCALL_OPEN, SYSCALL_OPEN_BY_HANDLE_AT, SYSCALL_OPENAT, SYSCALL_OPENAT2,
    SYSCALL_PROCESS_VM_READV, SYSCALL_PROCESS_VM_WRITEV, SYSCALL_PTRACE, SYSCALL_SENDMSG, SYSCALL_SENDTO,
    SYSCALL_SOCKET,
};

use crate::{
    file,
    maps::offsets,
    net,
    process::{current_quiet, current_tracked, save, take_compat},
    target,
};

/// `TS_COMPAT` in `thread_info.status` (arch/x86/include/asm/thread_info.h).
const TS_COMPAT: u32 = 0x0002;
const AT_FDCWD: u64 = -100i32 as u32 as u64;
const O_CREAT_WRONLY_TRUNC: u64 = 0o1 | 0o100 | 0o1000;

// The i386 syscall table (arch/x86/entry/syscalls/syscall_32.tbl).
const NR_OPEN: u64 = 5;
const NR_CREAT: u64 = 8;
const NR_PTRACE: u64 = 26;
const NR_SOCKETCALL: u64 = 102;
const NR_OPENAT: u64 = 295;
const NR_OPEN_BY_HANDLE_AT: u64 = 342;
const NR_PROCESS_VM_READV: u64 = 347;
const NR_PROCESS_VM_WRITEV: u64 = 348;
const NR_SOCKET: u64 = 359;
const NR_CONNECT: u64 = 362;
const NR_SENDTO: u64 = 369;
const NR_SENDMSG: u64 = 370;
const NR_OPENAT2: u64 = 437;

// socketcall's calls (include/uapi/linux/net.h).
const SYS_SOCKET: u64 = 1;
const SYS_CONNECT: u64 = 3;
const SYS_SEND: u64 = 9;
const SYS_SENDTO: u64 = 11;
const SYS_SENDMSG: u64 = 16;

/// Whether the current syscall is a 32-bit one.
#[inline(always)]
pub(crate) fn in_compat_syscall() -> bool {
    // SAFETY: helper without preconditions; the read tolerates any address.
    let status = unsafe {
        let task = bpf_get_current_task();
        aya_ebpf::helpers::bpf_probe_read_kernel((task + u64::from(offsets().task_ti_status)) as *const u32)
    };
    status.is_ok_and(|s| s & TS_COMPAT != 0)
}

/// The `i`th 32-bit word of a user array (socketcall's arguments, a compat msghdr).
#[inline(always)]
fn word(base: u64, i: u64) -> u64 {
    // SAFETY: the helper validates the user address.
    u64::from(unsafe { bpf_probe_read_user((base + 4 * i) as *const u32) }.unwrap_or(0))
}

#[inline(always)]
fn keep(hook_syscall: u32, args: [u64; 5]) {
    // 32-bit calls get no Python stack: the walk is a program of another type.
    let _ = save(HOOK_COMPAT, InFlight { syscall: hook_syscall, compat: 1, args });
}

/// A compat `sendmsg`: the destination of its `compat_msghdr` (`msg_name`, `msg_namelen`).
#[inline(always)]
fn keep_sendmsg(fd: u64, msg: u64) {
    let name = word(msg, 0);
    if name != 0 {
        keep(SYSCALL_SENDMSG, [fd, name, word(msg, 1), 0, 0]);
    }
}

/// Where `struct pt_regs` keeps an i386 syscall's arguments: ebx, ecx, edx, esi, edi, ebp.
const REGS_ARGS: [u64; 6] = [40, 88, 96, 104, 112, 32];

/// Whether `nr` is, in the i386 table, a call this module decodes. Most of these numbers are
/// cold calls in the x86_64 table; the hot ones (`openat`, `read`, `close`, `newfstatat`,
/// `futex`, `epoll_wait`, ...) are not among them.
#[inline(always)]
fn decoded(nr: u64) -> bool {
    matches!(
        nr,
        NR_OPEN
            | NR_CREAT
            | NR_PTRACE
            | NR_SOCKETCALL
            | NR_OPENAT
            | NR_OPEN_BY_HANDLE_AT
            | NR_PROCESS_VM_READV
            | NR_PROCESS_VM_WRITEV
            | NR_SOCKET
            | NR_CONNECT
            | NR_SENDTO
            | NR_SENDMSG
            | NR_OPENAT2
    )
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn compat_enter(ctx: RawTracePointContext) -> u32 {
    // sys_enter(struct pt_regs *regs, long id)
    let nr: u64 = ctx.arg(1);
    // The number first (a few compares on a register, false for nearly every syscall of the
    // node), then the compat bit (two helper calls), then the tracked check like any hook.
    if !decoded(nr) || !in_compat_syscall() || !current_tracked() || current_quiet(HOOK_COMPAT) {
        return 0;
    }
    let regs: u64 = ctx.arg(0);
    let arg = |i: usize| {
        // SAFETY: the helper tolerates any address.
        let value = unsafe { bpf_probe_read_kernel((regs + REGS_ARGS[i]) as *const u64) }.unwrap_or(0);
        value & 0xffff_ffff
    };
    match nr {
        NR_OPEN => keep(SYSCALL_OPEN, [AT_FDCWD, arg(0), arg(1), arg(2), 0]),
        NR_CREAT => keep(SYSCALL_CREAT, [AT_FDCWD, arg(0), O_CREAT_WRONLY_TRUNC, arg(1), 0]),
        NR_OPENAT => keep(SYSCALL_OPENAT, [arg(0), arg(1), arg(2), arg(3), 0]),
        NR_OPENAT2 => keep(SYSCALL_OPENAT2, [arg(0), arg(1), arg(2), arg(3), 0]),
        NR_OPEN_BY_HANDLE_AT => keep(SYSCALL_OPEN_BY_HANDLE_AT, [arg(0), 0, arg(2), 0, 0]),
        NR_CONNECT => keep(SYSCALL_CONNECT, [arg(0), arg(1), arg(2), 0, 0]),
        NR_SENDTO if arg(4) != 0 => keep(SYSCALL_SENDTO, [arg(0), arg(4), arg(5), 0, 0]),
        NR_SENDMSG => keep_sendmsg(arg(0), arg(1)),
        NR_SOCKET if net::raw(arg(0), arg(1)) => keep(SYSCALL_SOCKET, [arg(0), arg(1) & 0xf, arg(2), 0, 0]),
        NR_PROCESS_VM_READV => keep(SYSCALL_PROCESS_VM_READV, [arg(0), 0, 0, 0, 0]),
        NR_PROCESS_VM_WRITEV => keep(SYSCALL_PROCESS_VM_WRITEV, [arg(0), 0, 0, 0, 0]),
        NR_PTRACE if arg(0) as u32 == PTRACE_ATTACH || arg(0) as u32 == PTRACE_SEIZE => {
            keep(SYSCALL_PTRACE, [arg(1), arg(0), 0, 0, 0])
        }
        NR_SOCKETCALL => {
            let (call, args) = (arg(0), arg(1));
            match call {
                SYS_SOCKET if net::raw(word(args, 0), word(args, 1)) => {
                    keep(SYSCALL_SOCKET, [word(args, 0), word(args, 1) & 0xf, word(args, 2), 0, 0])
                }
                SYS_CONNECT => keep(SYSCALL_CONNECT, [word(args, 0), word(args, 1), word(args, 2), 0, 0]),
                // `send` on a connected socket has no address: its connect was reported.
                SYS_SEND => {}
                SYS_SENDTO if word(args, 4) != 0 => {
                    keep(SYSCALL_SENDTO, [word(args, 0), word(args, 4), word(args, 5), 0, 0])
                }
                SYS_SENDMSG => keep_sendmsg(word(args, 0), word(args, 1)),
                _ => {}
            }
        }
        _ => {}
    }
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn compat_exit(ctx: RawTracePointContext) -> u32 {
    // `take_compat` first reads the in-flight count of 32-bit calls: no hash lookup while no
    // tracked thread is inside one.
    let Some(call) = take_compat() else { return 0 };
    // sys_exit(struct pt_regs *regs, long ret); an i386 result is 32 bits, sign-extended.
    let ret: i64 = ctx.arg(1);
    let ret = i64::from(ret as i32);
    match call.syscall {
        SYSCALL_OPEN | SYSCALL_CREAT | SYSCALL_OPENAT | SYSCALL_OPENAT2 | SYSCALL_OPEN_BY_HANDLE_AT => {
            file::report_open(ret, call)
        }
        SYSCALL_CONNECT => net::report_result(ret, RECORD_CONNECT, HOOK_CONNECT, call, None),
        SYSCALL_SENDTO | SYSCALL_SENDMSG => net::report_result(ret, RECORD_SEND, HOOK_SEND, call, None),
        SYSCALL_SOCKET => net::report_socket(ret, call),
        SYSCALL_PROCESS_VM_READV | SYSCALL_PROCESS_VM_WRITEV | SYSCALL_PTRACE => {
            target::report_target(ret, call)
        }
        _ => {}
    }
    0
}
