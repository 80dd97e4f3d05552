//! premain's kernel programs.
//!
//! Hot paths (every open, connect and exec on the node) cost one map lookup for processes that
//! are not tracked: entry handlers look the tgid up in `TRACKED`; exit handlers read the
//! `INFLIGHT` count (an inlined array read) and look the tid up in `SYSCALLS` only while some
//! tracked thread is inside a traced syscall.
#![no_std]
#![no_main]
// Atomic adds on map values (BPF `XADD`): core's atomic types are not available for BPF.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod compat;
mod emit;
mod exec;
mod file;
mod guard;
mod maps;
mod names;
mod net;
mod path;
mod process;
mod python;
mod sock;
mod stack;
mod target;
mod task;
mod uring;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: every panic path is removed by the optimiser or rejected by the verifier; a
    // program that reached here could not have been loaded.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
