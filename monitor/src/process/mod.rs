//! Processes: the table of tracked processes, which ones are Python (settled with the kernel),
//! the events their records become.

pub mod event;
pub(crate) mod files;
pub(crate) mod judge;
pub(crate) mod mounts;
pub(crate) mod on_disk;
pub(crate) mod procfs;
pub(crate) mod seed;
pub mod table;
pub(crate) mod tracker;
pub(crate) mod verdict_store;
