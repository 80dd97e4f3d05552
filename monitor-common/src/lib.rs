//! Types shared by premain's kernel programs and its daemon.
//!
//! Every type that crosses the kernel/user boundary is `#[repr(C)]`, built from fixed-width
//! integers, and has no implicit padding (checked at compile time below), so that the daemon can
//! decode records with plain bounds-checked reads. Kinds and flags are `u32` constants rather
//! than Rust enums: a corrupt value must be a decode error, never undefined behaviour.
#![no_std]

pub mod maps;
pub mod record;

pub use maps::*;
pub use record::*;
