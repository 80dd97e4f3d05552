//! Reaching into another process: `process_vm_readv`/`writev` and the ptrace requests that
//! take hold of one (attach, seize). `/proc/<pid>/mem` opens are open records.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use monitor_common::{
    FLAG_COMPAT, HOOK_TARGET, InFlight, PTRACE_ATTACH, PTRACE_SEIZE, RECORD_TARGET, SYSCALL_PROCESS_VM_READV,
    SYSCALL_PROCESS_VM_WRITEV, SYSCALL_PTRACE, TargetRecord,
};

use crate::{
    emit::{fill_header, scratch, send},
    guard,
    process::{current_quiet, current_tracked, save, save_if_recorded, take_saved},
    stack,
};

#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_readv")]
pub fn target_enter_process_vm_readv(ctx: TracePointContext) -> u32 {
    guard::on_memory();
    if save_if_recorded(&ctx, HOOK_TARGET, SYSCALL_PROCESS_VM_READV, [16]) {
        stack::capture(&ctx, SYSCALL_PROCESS_VM_READV);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_writev")]
pub fn target_enter_process_vm_writev(ctx: TracePointContext) -> u32 {
    guard::on_memory();
    if save_if_recorded(&ctx, HOOK_TARGET, SYSCALL_PROCESS_VM_WRITEV, [16]) {
        stack::capture(&ctx, SYSCALL_PROCESS_VM_WRITEV);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub fn target_enter_ptrace(ctx: TracePointContext) -> u32 {
    if !current_tracked() || current_quiet(HOOK_TARGET) {
        return 0;
    }
    // request, pid
    // SAFETY: offsets from the tracepoint's format.
    let (request, pid) =
        unsafe { (ctx.read_at::<u64>(16).unwrap_or(0), ctx.read_at::<u64>(24).unwrap_or(0)) };
    // Only the requests that take hold of a process: the rest need one already held.
    if request as u32 == PTRACE_ATTACH || request as u32 == PTRACE_SEIZE {
        guard::on_memory();
        if save(HOOK_TARGET, InFlight { syscall: SYSCALL_PTRACE, compat: 0, args: [pid, request, 0, 0, 0] }) {
            stack::capture(&ctx, SYSCALL_PTRACE);
        }
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_process_vm_readv")]
pub fn target_exit_process_vm_readv(ctx: TracePointContext) -> u32 {
    exit(&ctx, SYSCALL_PROCESS_VM_READV);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_process_vm_writev")]
pub fn target_exit_process_vm_writev(ctx: TracePointContext) -> u32 {
    exit(&ctx, SYSCALL_PROCESS_VM_WRITEV);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ptrace")]
pub fn target_exit_ptrace(ctx: TracePointContext) -> u32 {
    exit(&ctx, SYSCALL_PTRACE);
    0
}

#[inline(always)]
fn exit(ctx: &TracePointContext, expected: u32) {
    if let Some(call) = take_saved([expected; 2]) {
        // SAFETY: reading the tracepoint's own record.
        report_target(unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0), call);
    }
}

#[inline(always)]
pub(crate) fn report_target(result: i64, call: InFlight) {
    let Some(rec) = scratch::<TargetRecord>() else { return };
    fill_header(&mut rec.header, RECORD_TARGET);
    if call.compat != 0 {
        rec.header.flags |= FLAG_COMPAT;
    }
    rec.header.flags |= guard::take_decided();
    rec.result = result;
    rec.syscall = call.syscall;
    rec.target_pid = call.args[0] as u32;
    rec.request = call.args[1] as u32;
    rec._pad = 0;
    let len = core::mem::size_of::<TargetRecord>();
    rec.header.size = len as u32;
    send(HOOK_TARGET, rec, len);
}
