//! Finds the Python processes (and their descendants) already running when premain starts.

use std::{collections::HashMap, sync::Arc};

use monitor_common::{TRACK_DESCENDANT, TRACK_PYTHON};

use crate::{
    process::{
        procfs,
        table::{Process, tick_ns},
        tracker::{KernelState, Tracker, exe_key, judge_from_proc},
    },
    python::interpreter::{Interpreter, Verdict},
};

struct Seen {
    ppid: u32,
    start_ns: u64,
    python: Option<Arc<Interpreter>>,
    exe_key: Option<monitor_common::ExeKey>,
}

/// Marks running CPython processes and their descendants as tracked, in the kernel and in the
/// table. Runs after the programs are attached, so a process forked meanwhile is either seen
/// here or by the fork hook. Returns how many processes were adopted.
pub(crate) fn seed(tracker: &mut Tracker, kernel: &mut dyn KernelState) -> usize {
    let me = std::process::id();
    let all = procfs::pids();
    if all.is_empty() {
        tracing::warn!("cannot list /proc; processes already running are not tracked");
        return 0;
    }
    let mut seen: HashMap<u32, Seen> = HashMap::new();
    let mut judged: HashMap<monitor_common::ExeKey, Option<Arc<Interpreter>>> = HashMap::new();
    // Judging attaches probes, so each executable is judged once.
    for pid in all {
        if pid == me {
            continue;
        }
        let Some(stat) = procfs::stat(pid) else { continue };
        // Kernel threads have no exe.
        let key = exe_key(&procfs::exe_link(pid)).ok();
        let python = key.and_then(|key| {
            judged
                .entry(key)
                .or_insert_with(|| match judge_from_proc(pid, &key, b"") {
                    Some(Verdict::Python(interp)) => tracker.remember(kernel, key, Some(interp)),
                    Some(Verdict::NotPython) => tracker.remember(kernel, key, None),
                    None => None,
                })
                .clone()
        });
        let start_ns = stat.start_ticks * tick_ns();
        seen.insert(pid, Seen { ppid: stat.ppid, start_ns, python, exe_key: key });
    }
    let mut adopted = 0;
    let pids: Vec<u32> = seen.keys().copied().collect();
    for pid in pids {
        let mut tracking = 0;
        if seen[&pid].python.is_some() {
            tracking |= TRACK_PYTHON;
        }
        // Walk up: any Python ancestor makes this a descendant. Bounded against cycles.
        let mut cursor = seen[&pid].ppid;
        for _ in 0..64 {
            let Some(parent) = seen.get(&cursor) else { break };
            if parent.python.is_some() {
                tracking |= TRACK_DESCENDANT;
                break;
            }
            cursor = parent.ppid;
        }
        if tracking == 0 {
            continue;
        }
        let info = &seen[&pid];
        let (argv, argv_truncated) = procfs::cmdline(pid);
        kernel.track(pid, tracking);
        tracker.adopt(Process {
            pid,
            start_ns: info.start_ns,
            ppid: info.ppid,
            tracking,
            exe_key: info.exe_key.unwrap_or_default(),
            exe: procfs::exe(pid),
            argv,
            argv_truncated,
            python: info.python.clone(),
            preexisting: true,
            cwd: procfs::cwd(pid),
            container: crate::k8s::cgroup::of_pid(pid),
            cgroup: crate::process::procfs::cgroup_path(pid),
            ..Process::default()
        });
        adopted += 1;
    }
    adopted
}
