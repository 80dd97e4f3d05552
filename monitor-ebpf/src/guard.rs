//! The guard: connects and addressed sends of pre-main code denied (or, under dry-run, noted)
//! inside the kernel, by the cgroup programs of `sock`, before anything leaves; its execs and
//! reads of other processes' memory killed (`SIGKILL`) in the call, before it returns to user
//! space (an exec: before the new program's first instruction).
//!
//! A cgroup program or an exec cannot wait for the daemon, so the decision is made from what
//! the daemon published in advance: after applying a guarded thread's records up to some
//! time, it writes in `JUDGED` whether that thread's connects, sends, memory reads and execs
//! would alert now (the alert engine's own decision: phase, party, allowlists). The kernel
//! notes in `THREAD_PHASE` when the thread's phase last changed (exec, fork, entry and return
//! of a code object, main): a judgment older than that is out of date. Until the daemon
//! catches up, the judgment of each depth is given back at the return to it, a fork or thread
//! takes its creator's, and what is left is decided by the kernel's own, coarser view: before
//! main, in a thread started before main, or inside a module body under a
//! `site-packages`/`dist-packages` directory below main's own code.
//!
//! Allowed destinations (`allow.destinations`, package indexes during installs) and allowed
//! programs (`allow.programs`, the toolchain during installs) are never denied, whoever acts.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, generated::bpf_send_signal};
use monitor_common::{
    AllowedNet, CONTROL_GUARD_DEFAULT, CONTROL_GUARDING, CONTROL_NET_ALLOWED, DEPTHS_KEPT, ExeKey,
    FLAG_GUARD_DENIED, FLAG_GUARD_FALLBACK, FLAG_GUARD_KILLED, FLAG_GUARD_WOULD_DENY, GUARD_CONNECT_DRY_RUN,
    GUARD_CONNECT_ENFORCE, GUARD_EXEC_DRY_RUN, GUARD_EXEC_ENFORCE, GUARD_MEMORY_DRY_RUN,
    GUARD_MEMORY_ENFORCE, GUARD_SEND_DRY_RUN, GUARD_SEND_ENFORCE, JUDGED_CONNECT, JUDGED_EXEC,
    JUDGED_INSTALLING, JUDGED_MEMORY, JUDGED_SEND, Judged, MARK_TEXT_MAX, NET_ALLOW_MAX, PROGRAM_ALLOWED,
    PROGRAM_TOOLCHAIN, ThreadPhase,
};

use crate::maps::{GUARD_DECIDED, JUDGED, MAIN_SEEN, NET_ALLOW, NET_GUARD, PROGRAMS, THREAD_PHASE, control};

/// The guard bits of `tgid`, while some rule is guarded at all.
#[inline(always)]
fn guard_of(tgid: u32) -> Option<u32> {
    if control(CONTROL_GUARDING) == 0 {
        return None;
    }
    // SAFETY: copied out.
    unsafe { NET_GUARD.get(tgid) }.copied()
}

/// The kernel's view of `tid`'s phase, to change in place.
#[inline(always)]
fn phase_mut(tid: u32, ktime_ns: u64) -> Option<&'static mut ThreadPhase> {
    if THREAD_PHASE.get_ptr_mut(tid).is_none() {
        let _ = THREAD_PHASE.insert(tid, ThreadPhase::new(ktime_ns), 0);
    }
    // SAFETY: a valid map value, only touched by this thread's programs.
    THREAD_PHASE.get_ptr_mut(tid).map(|p| unsafe { &mut *p })
}

/// What the daemon judged of `tid`, if it is not older than the thread's last phase change.
#[inline(always)]
fn valid_judgment(tid: u32, changed_ns: u64) -> Option<Judged> {
    // SAFETY: copied out.
    unsafe { JUDGED.get(tid) }.copied().filter(|j| j.as_of_ns >= changed_ns)
}

/// Whether the code object the thread is in now is a third party's module body.
#[inline(always)]
fn in_third_party(p: &ThreadPhase) -> bool {
    p.depth < DEPTHS_KEPT as u32 && p.third_party & (1 << p.depth) != 0
}

/// A new image: a CPython is guarded as the daemon's default says until the daemon has placed
/// it in its scope; anything else is not guarded. Either way its main has not started.
#[inline(always)]
pub(crate) fn on_exec(tgid: u32, tid: u32, python: bool, ktime_ns: u64) {
    if control(CONTROL_GUARDING) == 0 {
        return;
    }
    let _ = MAIN_SEEN.remove(tgid);
    let default = control(CONTROL_GUARD_DEFAULT);
    if python && default != 0 {
        let _ = NET_GUARD.insert(tgid, default, 0);
    } else {
        let _ = NET_GUARD.remove(tgid);
    }
    if python {
        // Whatever the daemon judged of the previous image is out of date.
        let _ = THREAD_PHASE.insert(tid, ThreadPhase::new(ktime_ns), 0);
    }
}

/// A forked child runs its parent's code (its thread's stack included) until it execs; a new
/// thread starts with no code object of its own, but on behalf of start-up code or a third
/// party's module body if its creator was in one (what they start runs for them). Either
/// takes what the daemon judged of its creator, while that holds: an exec right after a fork
/// is decided by it.
#[inline(always)]
pub(crate) fn on_fork(parent_tgid: u32, child_tgid: u32, child_tid: u32, thread: bool, ktime_ns: u64) {
    let Some(guard) = guard_of(parent_tgid) else { return };
    let creator_tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: read in place (a copy would not fit the BPF stack twice); only this thread's
    // programs write it.
    let creator = unsafe { THREAD_PHASE.get(creator_tid) };
    if let Some(judged) = valid_judgment(creator_tid, creator.map_or(0, |c| c.changed_ns)) {
        let _ = JUDGED.insert(child_tid, Judged { as_of_ns: ktime_ns, ..judged }, 0);
    }
    if thread {
        let mut phase = ThreadPhase::new(ktime_ns);
        phase.third_party = u32::from(creator.is_some_and(in_third_party));
        // SAFETY: only presence is checked.
        let before_main = unsafe { MAIN_SEEN.get(parent_tgid) }.is_none();
        phase.born_before_main = u32::from(before_main || creator.is_some_and(|c| c.born_before_main != 0));
        let _ = THREAD_PHASE.insert(child_tid, phase, 0);
        return;
    }
    let _ = NET_GUARD.insert(child_tgid, guard, 0);
    // SAFETY: copied out.
    if let Some(main) = unsafe { MAIN_SEEN.get(parent_tgid) }.copied() {
        let _ = MAIN_SEEN.insert(child_tgid, main, 0);
    }
    if let Some(creator) = creator {
        let _ = THREAD_PHASE.insert(child_tid, creator, 0);
    }
    if let Some(child) = phase_mut(child_tid, ktime_ns) {
        child.changed_ns = ktime_ns;
    }
}

#[inline(always)]
pub(crate) fn on_thread_exit(tid: u32) {
    let _ = THREAD_PHASE.remove(tid);
    let _ = JUDGED.remove(tid);
    let _ = GUARD_DECIDED.remove(tid);
}

#[inline(always)]
pub(crate) fn on_process_exit(tgid: u32) {
    let _ = NET_GUARD.remove(tgid);
    let _ = MAIN_SEEN.remove(tgid);
}

/// The main code starts (`cpython.run_*`, or `_PyInterpreterState_SetRunningMain`). Noted
/// for every CPython: the daemon may guard a process only once it has placed it in its scope.
#[inline(always)]
pub(crate) fn on_main(tgid: u32, tid: u32, ktime_ns: u64) {
    if control(CONTROL_GUARDING) == 0 {
        return;
    }
    let _ = MAIN_SEEN.insert(tgid, ktime_ns, 0);
    if guard_of(tgid).is_some()
        && let Some(p) = phase_mut(tid, ktime_ns)
    {
        p.changed_ns = ktime_ns;
    }
}

/// A code object starts; `text`/`len` hold its `co_filename` when one byte per character. The
/// judgment of the code it is called from is kept for its return.
#[inline(always)]
pub(crate) fn on_eval_enter(tgid: u32, tid: u32, ktime_ns: u64, text: &[u8; MARK_TEXT_MAX], len: u32) {
    if guard_of(tgid).is_none() {
        return;
    }
    let third_party = under_site_packages(text, len);
    let Some(p) = phase_mut(tid, ktime_ns) else { return };
    let judged = valid_judgment(tid, p.changed_ns);
    let depth = p.depth;
    if let Some(slot) = p.judged.get_mut(depth as usize) {
        match judged {
            Some(j) => {
                *slot = j.bits;
                p.judged_valid |= 1 << depth;
            }
            None => p.judged_valid &= !(1 << depth),
        }
    }
    let depth = depth.saturating_add(1);
    p.depth = depth;
    if depth < DEPTHS_KEPT as u32 {
        // The outermost code object is main's (a script, or a `-m` module that may live in a
        // site-packages) or start-up code, which is denied before main anyway.
        if third_party && depth >= 2 {
            p.third_party |= 1 << depth;
        } else {
            p.third_party &= !(1 << depth);
        }
    }
    p.changed_ns = ktime_ns;
}

/// A code object returns: the judgment kept at its entry holds again.
#[inline(always)]
pub(crate) fn on_eval_exit(tgid: u32, tid: u32, ktime_ns: u64) {
    if guard_of(tgid).is_none() {
        return;
    }
    let Some(p) = phase_mut(tid, ktime_ns) else { return };
    p.changed_ns = ktime_ns;
    if p.depth == 0 {
        return;
    }
    p.depth -= 1;
    let depth = p.depth;
    if depth < DEPTHS_KEPT as u32
        && p.judged_valid & (1 << depth) != 0
        && let Some(bits) = p.judged.get(depth as usize).copied()
    {
        let _ = JUDGED.insert(tid, Judged { as_of_ns: ktime_ns, bits, _pad: 0 }, 0);
    }
}

/// Bytes of `co_filename` searched: site directories sit near the start of real paths.
const SCANNED: usize = 256;
const NEEDLE: &[u8; 10] = b"-packages/";

#[inline(always)]
fn under_site_packages(text: &[u8; MARK_TEXT_MAX], len: u32) -> bool {
    let end = (len as usize).min(SCANNED);
    let mut i = 0;
    while i < SCANNED - NEEDLE.len() {
        if i + NEEDLE.len() > end {
            return false;
        }
        if text[i] == b'-' && text[i + 1..i + NEEDLE.len()] == NEEDLE[1..] {
            return true;
        }
        i += 1;
    }
    false
}

/// Clears what the guard decided on the current thread's previous syscall (one that made no
/// record to take it: an io_uring request, a call not recorded).
#[inline(always)]
pub(crate) fn forget_decided() {
    if control(CONTROL_GUARDING) != 0 && crate::process::current_tracked() {
        let _ = GUARD_DECIDED.remove(bpf_get_current_pid_tgid() as u32);
    }
}

/// Takes the `FLAG_GUARD_*` bits decided on the current thread's syscall.
#[inline(always)]
pub(crate) fn take_decided() -> u32 {
    if control(CONTROL_GUARDING) == 0 {
        return 0;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: copied out before removal.
    let Some(flags) = unsafe { GUARD_DECIDED.get(tid) }.copied() else { return 0 };
    let _ = GUARD_DECIDED.remove(tid);
    flags
}

/// What the guard does with an action of the current thread, before its allowlists: nothing
/// (`None`), or deny it under enforce (`Some(true)`) or dry-run (`Some(false)`), with
/// whether the thread was judged installing and the `FLAG_GUARD_FALLBACK` bit.
#[inline(always)]
fn guarded_action(dry_run: u32, enforce: u32, judged_bit: u32) -> Option<(bool, bool, u32)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let guard = guard_of(tgid)?;
    if guard & (dry_run | enforce) == 0 {
        return None;
    }
    // SAFETY: read in place; only this thread's programs write it.
    let phase = unsafe { THREAD_PHASE.get(tid) };
    let (deny, installing, fallback) = match valid_judgment(tid, phase.map_or(0, |p| p.changed_ns)) {
        Some(j) => (j.bits & judged_bit != 0, j.bits & JUDGED_INSTALLING != 0, 0),
        None => {
            // SAFETY: only presence is checked.
            let before_main = unsafe { MAIN_SEEN.get(tgid) }.is_none();
            let inherited = phase.is_some_and(|p| in_third_party(p) || p.born_before_main != 0);
            (before_main || inherited, false, FLAG_GUARD_FALLBACK)
        }
    };
    deny.then_some((guard & enforce != 0, installing, fallback))
}

/// A connect (`connect`) or addressed send to the destination `to` gives (IPv6, IPv4 mapped,
/// and the port; read only for a guarded thread): whether to let it through, and the
/// `FLAG_GUARD_*` bits of the decision (0 when nothing was decided).
#[inline(always)]
pub(crate) fn decide(connect: bool, to: impl FnOnce() -> ([u8; 16], u16)) -> (bool, u32) {
    let (dry_run, enforce, judged_bit) = if connect {
        (GUARD_CONNECT_DRY_RUN, GUARD_CONNECT_ENFORCE, JUDGED_CONNECT)
    } else {
        (GUARD_SEND_DRY_RUN, GUARD_SEND_ENFORCE, JUDGED_SEND)
    };
    let Some((enforced, installing, fallback)) = guarded_action(dry_run, enforce, judged_bit) else {
        return (true, 0);
    };
    let (ip, port) = to();
    if allowed(&ip, port, installing) {
        return (true, 0);
    }
    let flags = fallback | if enforced { FLAG_GUARD_DENIED } else { FLAG_GUARD_WOULD_DENY };
    let _ = GUARD_DECIDED.insert(bpf_get_current_pid_tgid() as u32, flags, 0);
    (!enforced, flags)
}

const SIGKILL: u32 = 9;

/// Kills the current process when the guard denies its call (under enforce): the call
/// itself goes on, but the process never runs another instruction of its own. Returns the
/// `FLAG_GUARD_*` bits.
#[inline(always)]
fn kill_if_denied(dry_run: u32, enforce: u32, judged_bit: u32, program: Option<&ExeKey>) -> u32 {
    let Some((enforced, installing, fallback)) = guarded_action(dry_run, enforce, judged_bit) else {
        return 0;
    };
    if let Some(key) = program {
        // SAFETY: copied out.
        let allowed = unsafe { PROGRAMS.get(key) }.copied().unwrap_or(0);
        if allowed & PROGRAM_ALLOWED != 0 || (installing && allowed & PROGRAM_TOOLCHAIN != 0) {
            return 0;
        }
    }
    fallback
        | if enforced {
            // SAFETY: helper without preconditions; it signals the current process.
            unsafe { bpf_send_signal(SIGKILL) };
            FLAG_GUARD_KILLED
        } else {
            FLAG_GUARD_WOULD_DENY
        }
}

/// A read or write of another process's memory, or a ptrace attach, by the current thread:
/// what was decided is kept for the call's exit to take.
#[inline(always)]
pub(crate) fn on_memory() {
    let flags = kill_if_denied(GUARD_MEMORY_DRY_RUN, GUARD_MEMORY_ENFORCE, JUDGED_MEMORY, None);
    if flags != 0 {
        let _ = GUARD_DECIDED.insert(bpf_get_current_pid_tgid() as u32, flags, 0);
    }
}

/// The current thread's exec of `program` succeeded (the new image is in place; the old
/// image's phase still holds): the `FLAG_GUARD_*` bits for its record.
#[inline(always)]
pub(crate) fn on_exec_of(program: Option<&ExeKey>) -> u32 {
    let Some(key) = program else { return 0 };
    kill_if_denied(GUARD_EXEC_DRY_RUN, GUARD_EXEC_ENFORCE, JUDGED_EXEC, Some(key))
}

#[inline(always)]
fn allowed(ip: &[u8; 16], port: u16, installing: bool) -> bool {
    let count = control(CONTROL_NET_ALLOWED).min(NET_ALLOW_MAX);
    let mut i = 0;
    while i < NET_ALLOW_MAX {
        if i >= count {
            return false;
        }
        if let Some(net) = NET_ALLOW.get(i)
            && matches(net, ip, port, installing)
        {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn matches(net: &AllowedNet, ip: &[u8; 16], port: u16, installing: bool) -> bool {
    if (net.install_only != 0 && !installing) || (net.port != 0 && net.port != u32::from(port)) {
        return false;
    }
    // Under the mask, without a branch per byte: the verifier walks this for every entry.
    let mut differ = 0u8;
    let mut k = 0;
    while k < 16 {
        differ |= (ip[k] ^ net.addr[k]) & net.mask[k];
        k += 1;
    }
    differ == 0
}
