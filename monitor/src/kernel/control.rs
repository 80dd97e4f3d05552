//! The one owner of the loaded programs and the maps the daemon writes: which processes are
//! tracked, which executables are judged, holding, the reader's wake-ups, quiet declarations,
//! and the CPython uprobes. Dropping it (or [`KernelControl::unload`]) detaches everything.

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use monitor_common::{
    AllowedNet, CONTROL_GUARDING, CONTROL_HOLD, CONTROL_READER_BUSY, CONTROL_STOPPED, ExeKey,
    VERDICT_NOT_PYTHON, VERDICT_PYTHON,
};

use super::{guard::GuardMaps, hold, loader::CgroupLinks, probes::Probes};
use crate::python::interpreter::Interpreter;

/// What the process layer changes in the kernel; a fake stands in for unit tests.
pub(crate) trait KernelState {
    fn track(&mut self, pid: u32, flags: u32);
    fn untrack(&mut self, pid: u32);
    fn set_verdict(&mut self, key: ExeKey, python: bool);
    /// Attaches the start-up probes to the interpreter's image (once per image); returns
    /// whether its processes can be phased by them.
    fn attach_probes(&mut self, interpreter: &Interpreter) -> bool;
    /// Resumes a process the kernel stopped until its executable was judged; returns whether
    /// it was still stopped (else something else let it run before its probes were ready).
    fn resume(&mut self, pid: u32) -> bool;
    /// Declares `pid` quiet as of `generation`, or withdraws the declaration. A failure only
    /// means the process keeps being recorded.
    fn set_quiet(&mut self, pid: u32, generation: Option<u64>);
}

pub(crate) struct KernelControl {
    /// `None` once unloaded.
    ebpf: Option<Ebpf>,
    tracked: HashMap<MapData, u32, u32>,
    /// The same map, duplicated for [`Self::tracked_view`].
    tracked_fd: Option<std::os::fd::OwnedFd>,
    verdicts: HashMap<MapData, ExeKey, u32>,
    control: Array<MapData, u32>,
    /// `pid -> generation` declared quiet (see `monitor_common::QUIET`).
    quiet: HashMap<MapData, u32, u64>,
    guard: GuardMaps,
    probes: Probes,
    cgroup_links: CgroupLinks,
    /// Set by [`Self::quiesce`]: no probe is attached from then on.
    quiesced: bool,
}

impl KernelControl {
    pub(super) fn new(
        ebpf: Ebpf,
        tracked: HashMap<MapData, u32, u32>,
        tracked_fd: Option<std::os::fd::OwnedFd>,
        verdicts: HashMap<MapData, ExeKey, u32>,
        control: Array<MapData, u32>,
        quiet: HashMap<MapData, u32, u64>,
        guard: GuardMaps,
    ) -> Self {
        Self {
            ebpf: Some(ebpf),
            tracked,
            tracked_fd,
            verdicts,
            control,
            quiet,
            guard,
            probes: Probes::default(),
            cgroup_links: CgroupLinks::default(),
            quiesced: false,
        }
    }

    /// A read-only view of the kernel's tracked processes (Python processes and their
    /// descendants, marked by the kernel programs themselves at exec and fork), for a thread
    /// that must tell a tracked process from any other without the event loop.
    pub(crate) fn tracked_view(&self) -> Option<TrackedView> {
        let fd = self.tracked_fd.as_ref()?.try_clone().ok()?;
        let data = MapData::from_fd(fd).ok()?;
        HashMap::try_from(aya::maps::Map::HashMap(data)).ok().map(TrackedView)
    }

    /// Switches the guard on or off (see [`GuardMaps::configure`]).
    pub(crate) fn configure_guard(
        &mut self,
        on: bool,
        default: u32,
        allowed: &[AllowedNet],
        programs: &[(ExeKey, u32)],
    ) -> Result<(), String> {
        self.guard.configure(&mut self.control, on, default, allowed, programs)
    }

    /// The `GUARD_*` bits of `pid` (0: not guarded).
    pub(crate) fn set_guard(&mut self, pid: u32, bits: u32) {
        self.guard.set_guard(pid, bits);
    }

    /// What the daemon judged of thread `tid`'s network actions, having applied its records up
    /// to `as_of_ns` (`JUDGED_*` bits).
    pub(crate) fn judge_thread(&mut self, tid: u32, as_of_ns: u64, bits: u32) {
        self.guard.judge(tid, as_of_ns, bits);
    }

    /// The loaded object, until [`Self::unload`].
    pub(super) fn ebpf_mut(&mut self) -> Option<&mut Ebpf> {
        self.ebpf.as_mut()
    }

    /// Switches holding of processes that run an unseen executable on or off.
    pub(crate) fn set_hold(&mut self, on: bool) -> Result<(), aya::maps::MapError> {
        self.control.set(CONTROL_HOLD, u32::from(on), 0)
    }

    /// Tells the kernel whether records need to wake the reader (see
    /// `monitor_common::CONTROL_READER_BUSY`).
    pub(crate) fn set_reader_busy(&mut self, busy: bool) -> Result<(), aya::maps::MapError> {
        self.control.set(CONTROL_READER_BUSY, u32::from(busy), 0)
    }

    /// A `cpython.run_*` audit marker of a process running `image` was read; `running_main`
    /// says whether `_PyInterpreterState_SetRunningMain` had marked main before it.
    pub(crate) fn main_checked(&mut self, image: &std::path::Path, running_main: bool) {
        if let Some(ebpf) = self.ebpf.as_mut() {
            self.probes.main_checked(ebpf, image, running_main);
        }
    }

    /// Interpreter images with probes attached.
    pub(crate) fn probed_images(&self) -> usize {
        self.probes.images()
    }

    /// Interpreter images whose probes could not be attached.
    pub(crate) fn probe_failures(&self) -> usize {
        self.probes.failures()
    }

    /// Stops the programs' work without detaching them: nothing new is held or denied, then no
    /// record is sent, each once every program run in progress has finished. Returns false if
    /// the kernel cannot tell when that is: then only [`Self::unload`] stops them.
    pub(crate) fn quiesce(&mut self) -> bool {
        self.quiesced = true;
        let _ = self.set_hold(false);
        self.control.set(CONTROL_GUARDING, 0, 0).is_ok()
            && super::barrier::programs_finished()
            && self.control.set(CONTROL_STOPPED, 1, 0).is_ok()
            && super::barrier::programs_finished()
    }

    pub(super) fn keep_cgroup_links(&mut self, links: CgroupLinks) {
        self.cgroup_links = links;
    }

    /// Detaches the programs on the cgroup v2 root (see [`CgroupLinks`]).
    pub(crate) fn detach_cgroup_programs(&mut self) {
        self.cgroup_links = CgroupLinks::default();
    }

    /// Detaches every program and drops the maps' last users in the kernel. The kernel waits
    /// for a grace period after each tracepoint and probe, one at a time: seconds.
    pub(crate) fn unload(&mut self) {
        self.detach_cgroup_programs();
        self.ebpf = None;
    }
}

/// Failures are logged, not fatal: the worst case is a process recorded a little longer or a
/// little less than it should be.
impl KernelState for KernelControl {
    fn track(&mut self, pid: u32, flags: u32) {
        if let Err(err) = self.tracked.insert(pid, flags, 0) {
            tracing::warn!(pid, error = %err, "cannot mark process as tracked");
        }
    }

    fn untrack(&mut self, pid: u32) {
        let _ = self.tracked.remove(&pid);
    }

    fn set_verdict(&mut self, key: ExeKey, python: bool) {
        let value = if python { VERDICT_PYTHON } else { VERDICT_NOT_PYTHON };
        if let Err(err) = self.verdicts.insert(key, value, 0) {
            tracing::debug!(error = %err, "cannot store verdict");
        }
    }

    fn attach_probes(&mut self, interpreter: &Interpreter) -> bool {
        match self.ebpf.as_mut() {
            Some(ebpf) if !self.quiesced => self.probes.attach(ebpf, interpreter),
            _ => false,
        }
    }

    fn resume(&mut self, pid: u32) -> bool {
        hold::resume(pid)
    }

    fn set_quiet(&mut self, pid: u32, generation: Option<u64>) {
        let result = match generation {
            Some(generation) => self.quiet.insert(pid, generation, 0),
            None => self.quiet.remove(&pid),
        };
        if let Err(err) = result
            && generation.is_some()
        {
            tracing::debug!(pid, error = %err, "cannot declare process quiet");
        }
    }
}

/// See [`KernelControl::tracked_view`].
pub(crate) struct TrackedView(HashMap<MapData, u32, u32>);

impl TrackedView {
    /// Whether the kernel tracks the process `tgid`.
    pub(crate) fn contains(&self, tgid: u32) -> bool {
        self.0.get(&tgid, 0).is_ok()
    }
}
