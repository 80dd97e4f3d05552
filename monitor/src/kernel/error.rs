//! Why the daemon could not start. Each message is one line an operator can act on.

use std::{io, path::PathBuf};

use crate::kernel::btf::BtfError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "premain needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE (missing: {missing}); run it with sudo"
    )]
    NotPrivileged { missing: String },
    #[error(
        "this kernel exposes no BTF at /sys/kernel/btf/vmlinux; premain needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error("kernel BTF does not describe what premain reads: {0}")]
    Btf(#[from] BtfError),
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing or /sys/kernel/debug/tracing, and mounting it failed: {0}"
    )]
    NoTracefs(#[source] io::Error),
    #[error("this kernel has no tracepoint {0} (needs CONFIG_FTRACE_SYSCALLS and the sched tracepoints)")]
    NoTracepoint(String),
    #[error(
        "this premain binary was built without its kernel programs (empty eBPF object); rebuild with `cargo build --release`"
    )]
    EmptyObject,
    #[error("loading the kernel programs failed: {0}")]
    Load(String),
    #[error("the kernel refused program {program}: {reason}")]
    Program { program: String, reason: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
