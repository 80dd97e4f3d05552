//! Processes: the table of tracked processes, which ones are Python (settled with the kernel),
//! the events their records become.

pub mod event;
pub mod judge;
pub mod procfs;
pub mod seed;
pub mod table;
pub mod tracker;
