//! Processes: the table of tracked processes, which ones are Python (settled with the kernel),
//! the events their records become, and the processes the kernel holds until judged.

pub mod event;
pub mod hold;
pub mod seed;
pub mod table;
pub mod tracker;
