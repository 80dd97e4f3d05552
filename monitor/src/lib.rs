//! premain: an eBPF monitor that catches Python code touching secrets, the network or other
//! programs before the application's main code runs.
//!
//! This library holds the daemon; `main.rs` only parses the command line.

pub mod alert;
pub mod btf;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod decode;
pub mod dist;
pub mod endpoints;
pub mod error;
pub mod event;
pub mod hold;
pub mod install;
pub mod instance;
pub mod interpreter;
pub mod k8s;
pub mod loader;
pub mod metrics;
pub mod offsets;
pub mod pace;
pub mod phase;
pub mod preflight;
pub mod probes;
pub mod process;
pub mod ring_fill;
pub mod rules;
pub mod seed;
pub mod sink;
pub mod sockaddr;
pub mod tracker;
