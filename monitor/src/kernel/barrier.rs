//! Waiting until every BPF program run in progress has finished, so that a switch flipped in
//! a map before holds for everything the programs do after.
//!
//! Every program premain attaches runs inside an RCU read-side critical section (tracepoint
//! programs with preemption off, the probes and the cgroup programs under `rcu_read_lock`), so
//! an RCU grace period is that wait: `membarrier(MEMBARRIER_CMD_GLOBAL)` is one
//! (`synchronize_rcu`). The kernel skips it with a single CPU online and refuses it under
//! `nohz_full`; then this says no.

/// `MEMBARRIER_CMD_GLOBAL` (`linux/membarrier.h`).
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;

/// Whether every program run that started before this call has finished.
pub(crate) fn programs_finished() -> bool {
    // SAFETY: no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online < 2 {
        return false;
    }
    // SAFETY: a syscall with integer arguments only.
    let done = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) } == 0;
    if !done {
        tracing::debug!(error = %std::io::Error::last_os_error(), "membarrier(MEMBARRIER_CMD_GLOBAL)");
    }
    done
}
