//! premain: an eBPF monitor that catches Python code touching secrets, the network or other
//! programs before the application's main code runs.
//!
//! The layers, from the kernel up (each folder's `mod.rs` says what it holds):
//! - [`kernel`]: loading and controlling the eBPF programs, decoding their records;
//! - [`process`]: the process table, which processes are tracked, events of tracked processes;
//! - [`python`]: recognising CPython, its build hooks and the distributions code belongs to;
//! - [`phase`]: the phase engine (install, startup, import, runtime) and culprits;
//! - [`detect`]: the rules: which pre-main actions are alerts;
//! - [`alert`]: the alert model and folding;
//! - [`enforce`]: what is done with the actions alerts report (observe, dry-run, enforce);
//! - [`output`]: event lines and the sinks alerts go to;
//! - [`ops`]: configuration, metrics, health endpoints, the node-wide lock;
//! - [`k8s`]: container and pod identity;
//! - [`daemon`]: `premain run`, the event loop that ties them together.
//! - [`vet`]: the sandbox of `premain vet` (its network namespace and sink).

pub(crate) mod alert;
pub mod daemon;
pub mod detect;
pub mod enforce;
pub(crate) mod k8s;
pub mod kernel;
pub mod ops;
pub(crate) mod output;
pub(crate) mod phase;
pub mod process;
pub mod python;
#[cfg(test)]
mod testing;
pub mod vet;
