//! Record headers, the scratch area and accounting of what was sent or lost.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
};
use monitor_common::{
    CONTROL_READER_BUSY, CONTROL_STOPPED, COUNT_LOST_RINGBUF, COUNT_SENT, RECORD_MAX, RecordHeader, Scratch,
    counter_index,
};

use crate::{
    maps::{COUNTERS, EVENTS, SCRATCH, control},
    task,
};

/// `BPF_RB_NO_WAKEUP` from the kernel's uapi.
const RB_NO_WAKEUP: u64 = 1;

#[inline(always)]
pub(crate) fn count(hook: u32, what: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter_index(hook, what)) {
        // SAFETY: per-CPU slot; programs do not nest on one CPU (bpf_prog_active).
        unsafe { *slot += 1 };
    }
}

/// The per-CPU scratch record, viewed as record type `T` (every record type is smaller than
/// the scratch area and 8-byte aligned).
#[inline(always)]
pub(crate) fn scratch<T>() -> Option<&'static mut T> {
    const { assert!(core::mem::size_of::<T>() <= RECORD_MAX) };
    const { assert!(core::mem::align_of::<T>() <= core::mem::align_of::<Scratch>()) };
    let ptr = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the slot is valid, large and aligned enough (asserted above), and only this
    // program invocation uses it until it returns.
    Some(unsafe { &mut *ptr.cast::<T>() })
}

#[inline(always)]
pub(crate) fn fill_header(header: &mut RecordHeader, kind: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    header.kind = kind;
    header.size = 0;
    header.flags = 0;
    // SAFETY: helpers without preconditions.
    header.ktime_ns = unsafe { bpf_ktime_get_ns() };
    // SAFETY: as above.
    header.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    header.pid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.ppid = task::current_ppid();
    header.start_ns = task::current_process_start();
    header.uid = uid_gid as u32;
    header.gid = (uid_gid >> 32) as u32;
    header.comm = bpf_get_current_comm().unwrap_or_default();
}

/// Sends the first `len` bytes of `record` and counts the outcome. The caller has stored
/// `len` in the record's header. Returns whether the record went out.
#[inline(always)]
pub(crate) fn send<T>(hook: u32, record: &T, len: usize) -> bool {
    if control(CONTROL_STOPPED) != 0 {
        return false;
    }
    // Also proves the bound to the verifier.
    let len = if len > core::mem::size_of::<T>() { core::mem::size_of::<T>() } else { len };
    // SAFETY: `len` is at most the size of `record`, which is valid for reads.
    let bytes = unsafe { core::slice::from_raw_parts((record as *const T).cast::<u8>(), len) };
    // Without the flag the kernel wakes the reader only when this record lands in a ring it
    // had emptied; with the reader busy no record needs to wake it.
    let flags = if control(CONTROL_READER_BUSY) != 0 { RB_NO_WAKEUP } else { 0 };
    match EVENTS.output::<[u8]>(bytes, flags) {
        Ok(()) => {
            count(hook, COUNT_SENT);
            true
        }
        Err(_) => {
            count(hook, COUNT_LOST_RINGBUF);
            false
        }
    }
}
