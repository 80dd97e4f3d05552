//! premain's kernel programs.
//!
//! Hot paths (every open, connect and exec on the node) cost one map lookup for processes that
//! are not tracked: entry handlers look the tgid up in `TRACKED`, exit handlers look the tid up
//! in `SYSCALLS`, which only holds entries that a tracked entry handler saved.
#![no_std]
#![no_main]

mod emit;
mod exec;
mod file;
mod maps;
mod net;
mod process;
mod python;
mod task;

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
