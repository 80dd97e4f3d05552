//! The kernel side seen from the daemon: start-up checks, BTF offsets, loading and attaching
//! the programs, the CPython uprobes, the records they send and the counters they keep.

pub mod btf;
pub mod control;
pub mod counters;
pub mod decode;
pub mod error;
pub mod hold;
pub mod loader;
pub mod offsets;
pub mod preflight;
pub mod probes;
pub mod ring_fill;
pub mod sockaddr;
