//! Checks made before touching the kernel, so that a missing privilege or kernel feature is
//! reported as one clear line instead of an opaque load failure.

use std::{
    ffi::CString,
    io,
    path::{Path, PathBuf},
};

use crate::kernel::error::StartError;

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS_CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Effective capability set of this process, from `/proc/self/status`.
fn effective_caps() -> Result<u64, StartError> {
    crate::process::procfs::own_effective_caps()
        .map_err(|source| StartError::Io { path: "/proc/self/status".into(), source })
}

/// Names of the capabilities premain needs that `caps` lacks.
pub(crate) fn missing_caps(caps: u64) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1 << cap) != 0;
    let mut missing = Vec::new();
    // Before 5.8 everything BPF needed CAP_SYS_ADMIN; it still implies both.
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    // Reading other users' /proc/<pid>/exe, cwd and fds.
    if !has(CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    missing
}

pub(crate) fn check_privileges() -> Result<(), StartError> {
    let missing = missing_caps(effective_caps()?);
    if missing.is_empty() { Ok(()) } else { Err(StartError::NotPrivileged { missing: missing.join(", ") }) }
}

pub(crate) fn check_btf() -> Result<(), StartError> {
    if Path::new(VMLINUX_BTF).exists() { Ok(()) } else { Err(StartError::NoBtf) }
}

/// Where tracefs is mounted, mounting it at `/sys/kernel/tracing` when it is nowhere.
pub(crate) fn tracefs() -> Result<PathBuf, StartError> {
    if let Some(found) = TRACEFS_CANDIDATES.iter().map(PathBuf::from).find(|dir| dir.join("events").is_dir())
    {
        return Ok(found);
    }
    let target = PathBuf::from(TRACEFS_CANDIDATES[0]);
    let c_target = CString::new(TRACEFS_CANDIDATES[0]).expect("no NUL in a constant");
    let c_fs = CString::new("tracefs").expect("no NUL in a constant");
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe { libc::mount(c_fs.as_ptr(), c_target.as_ptr(), c_fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(StartError::NoTracefs(io::Error::last_os_error()));
    }
    if target.join("events").is_dir() {
        tracing::info!(path = %target.display(), "mounted tracefs");
        Ok(target)
    } else {
        Err(StartError::NoTracefs(io::Error::new(io::ErrorKind::NotFound, "mounted, but it has no events/")))
    }
}

/// Each tracepoint the programs attach to must exist: a kernel without syscall tracepoints
/// (CONFIG_FTRACE_SYSCALLS=n) is told apart from other load failures.
pub(crate) fn check_tracepoints(tracefs: &Path, wanted: &[(&str, &str)]) -> Result<(), StartError> {
    for (category, name) in wanted {
        if !tracefs.join("events").join(category).join(name).is_dir() {
            return Err(StartError::NoTracepoint(format!("{category}/{name}")));
        }
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
pub(crate) fn raise_memlock() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: passing a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "could not raise RLIMIT_MEMLOCK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities() {
        assert!(missing_caps(u64::MAX).is_empty());
        assert_eq!(missing_caps(0), vec!["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"]);
        assert!(missing_caps((1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_PTRACE)).is_empty());
        assert!(missing_caps((1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_SYS_PTRACE)).is_empty());
    }
}
