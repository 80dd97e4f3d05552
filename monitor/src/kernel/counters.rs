//! Kernel-side counters: what each hook sent and lost, turned into in-band loss records.

use aya::maps::{MapData, PerCpuArray};
use monitor_common::{
    COUNT_KINDS, COUNT_LOST_INFLIGHT, COUNT_LOST_RINGBUF, COUNT_LOST_TRACKED, COUNT_QUIET, COUNT_READ_FAILED,
    COUNT_SENT, HOOK_COMPAT, HOOK_CONNECT, HOOK_COUNT, HOOK_EXEC, HOOK_EXIT, HOOK_FORK, HOOK_NAME, HOOK_OPEN,
    HOOK_PYTHON, HOOK_SEND, HOOK_SOCKET, HOOK_TARGET, HOOK_URING, counter_index,
};

use crate::alert::{Kind, Loss};

/// Every hook's name, in `HOOK_*` order.
pub(crate) const HOOKS: [&str; HOOK_COUNT as usize] = [
    "open", "connect", "exec", "fork", "exit", "send", "python", "target", "socket", "name", "uring",
    "compat", "stack",
];

pub(crate) fn hook_name(hook: u32) -> &'static str {
    HOOKS.get(hook as usize).copied().unwrap_or("unknown")
}

const _: () = {
    assert!(HOOK_OPEN == 0 && HOOK_CONNECT == 1 && HOOK_EXEC == 2 && HOOK_FORK == 3);
    assert!(HOOK_EXIT == 4 && HOOK_SEND == 5 && HOOK_PYTHON == 6);
    assert!(HOOK_TARGET == 7 && HOOK_SOCKET == 8 && HOOK_NAME == 9 && HOOK_URING == 10 && HOOK_COMPAT == 11);
    assert!(monitor_common::HOOK_STACK == 12);
};

/// Loss kinds as `(counter, stage, reason)`.
const LOSSES: [(u32, &str, &str); 3] = [
    (COUNT_LOST_RINGBUF, "kernel", "ring_buffer_full"),
    (COUNT_LOST_INFLIGHT, "kernel", "syscall_table_full"),
    (COUNT_LOST_TRACKED, "kernel", "tracked_table_full"),
];

/// Totals per `[hook][kind]`, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot(pub Vec<[u64; COUNT_KINDS as usize]>);

impl Default for Snapshot {
    fn default() -> Self {
        Self(vec![[0; COUNT_KINDS as usize]; HOOK_COUNT as usize])
    }
}

impl Snapshot {
    pub(crate) fn read(map: &PerCpuArray<MapData, u64>) -> Self {
        let mut out = vec![[0u64; COUNT_KINDS as usize]; HOOK_COUNT as usize];
        for hook in 0..HOOK_COUNT {
            for kind in 0..COUNT_KINDS {
                if let Ok(values) = map.get(&counter_index(hook, kind), 0) {
                    out[hook as usize][kind as usize] = values.iter().sum();
                }
            }
        }
        Self(out)
    }

    pub(crate) fn sent(&self, hook: u32) -> u64 {
        self.0.get(hook as usize).map_or(0, |c| c[COUNT_SENT as usize])
    }

    /// Calls of quiet processes not recorded.
    pub(crate) fn quiet(&self, hook: u32) -> u64 {
        self.0.get(hook as usize).map_or(0, |c| c[COUNT_QUIET as usize])
    }

    pub(crate) fn lost(&self, hook: u32) -> u64 {
        LOSSES.iter().map(|(kind, ..)| self.0.get(hook as usize).map_or(0, |c| c[*kind as usize])).sum()
    }

    pub(crate) fn read_failed(&self, hook: u32) -> u64 {
        self.0.get(hook as usize).map_or(0, |c| c[COUNT_READ_FAILED as usize])
    }

    /// One `{"kind":"loss",...}` record per hook and reason that grew since `before`.
    pub(crate) fn loss_records(&self, before: &Self, time: &str) -> Vec<Loss> {
        let mut records = Vec::new();
        for hook in 0..HOOK_COUNT {
            for (kind, stage, reason) in LOSSES {
                let now = self.0.get(hook as usize).map_or(0, |c| c[kind as usize]);
                let then = before.0.get(hook as usize).map_or(0, |c| c[kind as usize]);
                if now > then {
                    records.push(Loss {
                        kind: Kind,
                        time: time.to_owned(),
                        hook: hook_name(hook),
                        stage,
                        reason,
                        sink: None,
                        count: now - then,
                        total: Some(now),
                    });
                }
            }
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_records_report_deltas() {
        let before = Snapshot(vec![[0; COUNT_KINDS as usize]; HOOK_COUNT as usize]);
        let mut after = before.clone();
        after.0[HOOK_OPEN as usize][COUNT_LOST_RINGBUF as usize] = 5;
        after.0[HOOK_OPEN as usize][COUNT_SENT as usize] = 100;
        let records = after.loss_records(&before, "t");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].hook, "open");
        assert_eq!(records[0].count, 5);
        assert_eq!(after.lost(HOOK_OPEN), 5);
        assert!(after.loss_records(&after, "t").is_empty());
    }
}
