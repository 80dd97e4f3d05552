//! Processes the kernel stops (`SIGSTOP`) at exec of an executable never judged, until the
//! daemon has judged it and attached its probes: resuming them, and recovering the ones a
//! previous premain left stopped when it was killed. This is the fallback for when the exec
//! watch (`daemon::exec_watch`, which makes `execve` itself wait, unseen by job control) cannot
//! run or is turned off; orphans are recovered whatever the mode.

use crate::process::procfs;

const SYS_EXECVE: &str = "59";
const SYS_EXECVEAT: &str = "322";

/// Resumes `pid`; returns whether the hold kept it from running until now: it is stopped, or
/// the kernel's `SIGSTOP` is still pending (a verdict can come before the process has left
/// `execve`; `SIGCONT` then cancels the stop). Otherwise something else continued it (a
/// job-control shell, a debugger) and it may have run before its probes were attached.
pub(crate) fn resume(pid: u32) -> bool {
    if procfs::stopped_or_stopping(pid) {
        cont(pid);
        return true;
    }
    // The kernel program sends the stop right after the record that says so: a verdict can be
    // that fast. A stop that comes after this SIGCONT would keep the process stopped for good,
    // so watch for it a little while.
    cont(pid);
    let until = std::time::Instant::now() + std::time::Duration::from_micros(500);
    while std::time::Instant::now() < until {
        if procfs::stopped_or_stopping(pid) {
            cont(pid);
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

fn cont(pid: u32) {
    // SAFETY: kill(2) has no memory preconditions.
    if unsafe { libc::kill(pid as i32, libc::SIGCONT) } != 0 {
        tracing::debug!(pid, error = %std::io::Error::last_os_error(), "cannot resume held process");
    }
}

fn state(pid: u32) -> Option<char> {
    procfs::stat(pid).map(|s| s.state)
}

/// Whether a process is stopped exactly where the hold stops one: on the way out of a
/// successful exec, before its first instruction. A process stopped by a user or a job-control
/// shell is somewhere else (`/proc/<pid>/syscall` names another syscall or `running`).
fn stopped_at_exec(pid: u32) -> bool {
    if state(pid) != Some('T') {
        return false;
    }
    matches!(procfs::syscall(pid).as_deref(), Some(SYS_EXECVE | SYS_EXECVEAT))
}

/// Resumes processes a previous premain stopped and never resumed (it was killed). Returns
/// how many.
pub(crate) fn release_orphans() -> usize {
    let mut released = 0;
    for pid in procfs::pids() {
        if stopped_at_exec(pid) {
            resume(pid);
            released += 1;
        }
    }
    if released > 0 {
        tracing::warn!(released, "resumed processes a previous premain left stopped at exec");
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_not_an_orphan() {
        assert!(!stopped_at_exec(std::process::id()));
        assert!(matches!(state(std::process::id()), Some('R' | 'S')));
        assert_eq!(state(u32::MAX), None);
    }
}
