//! The kernel side seen from the daemon: start-up checks, BTF offsets, loading and attaching
//! the programs, the CPython uprobes, the records they send and the counters they keep.

pub(crate) mod barrier;
pub(crate) mod btf;
pub(crate) mod control;
pub(crate) mod counters;
pub mod decode;
pub mod error;
pub(crate) mod fanotify;
pub(crate) mod guard;
pub(crate) mod hold;
pub(crate) mod loader;
pub(crate) mod offsets;
pub(crate) mod preflight;
pub(crate) mod probes;
pub(crate) mod ring_fill;
pub mod sockaddr;
