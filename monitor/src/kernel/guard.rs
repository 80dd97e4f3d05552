//! The maps of the guard the daemon writes (see `monitor_common::NET_GUARD`): which processes
//! are guarded, what it judged of each guarded thread, and the destinations and programs never
//! denied.

use aya::maps::{Array, HashMap, MapData, MapError};
use monitor_common::{
    AllowedNet, CONTROL_GUARD_DEFAULT, CONTROL_GUARDING, CONTROL_NET_ALLOWED, ExeKey, Judged, NET_ALLOW_MAX,
    PROGRAMS_MAX,
};

pub(crate) struct GuardMaps {
    pub(super) guard: HashMap<MapData, u32, u32>,
    pub(super) judged: HashMap<MapData, u32, Judged>,
    pub(super) allow: Array<MapData, AllowedNet>,
    pub(super) programs: HashMap<MapData, ExeKey, u32>,
    /// What `programs` holds.
    pub(super) listed: Vec<ExeKey>,
}

impl GuardMaps {
    /// Switches the guard on (`default`: the `GUARD_*` bits of a CPython the daemon has not
    /// placed yet) or off, with the destinations and programs never denied. More than
    /// `NET_ALLOW_MAX` destinations or `PROGRAMS_MAX` programs is refused: the kernel would
    /// deny actions the configuration allows.
    pub(super) fn configure(
        &mut self,
        control: &mut Array<MapData, u32>,
        on: bool,
        default: u32,
        allowed: &[AllowedNet],
        programs: &[(ExeKey, u32)],
    ) -> Result<(), String> {
        if allowed.len() > NET_ALLOW_MAX as usize {
            return Err(format!(
                "{} allowed destinations and package index addresses: the guard takes at most {NET_ALLOW_MAX}",
                allowed.len()
            ));
        }
        if programs.len() > PROGRAMS_MAX as usize {
            return Err(format!(
                "{} files allowed by allow.programs and install.toolchain: the guard takes at most {PROGRAMS_MAX}",
                programs.len()
            ));
        }
        let failed = |e: MapError| format!("cannot configure the guard: {e}");
        for (key, bits) in programs {
            self.programs.insert(*key, *bits, 0).map_err(failed)?;
        }
        for gone in self.listed.iter().filter(|k| !programs.iter().any(|(p, _)| p == *k)) {
            let _ = self.programs.remove(gone);
        }
        self.listed = programs.iter().map(|(k, _)| *k).collect();
        // Entries before the count that covers them, and the count before the switch.
        for (i, net) in allowed.iter().enumerate() {
            self.allow.set(i as u32, *net, 0).map_err(failed)?;
        }
        control.set(CONTROL_NET_ALLOWED, allowed.len() as u32, 0).map_err(failed)?;
        control.set(CONTROL_GUARD_DEFAULT, if on { default } else { 0 }, 0).map_err(failed)?;
        control.set(CONTROL_GUARDING, u32::from(on), 0).map_err(failed)
    }

    pub(super) fn set_guard(&mut self, pid: u32, bits: u32) {
        let result = if bits == 0 { self.guard.remove(&pid) } else { self.guard.insert(pid, bits, 0) };
        if let Err(err) = result
            && bits != 0
        {
            tracing::warn!(pid, error = %err, "cannot guard process");
        }
    }

    pub(super) fn judge(&mut self, tid: u32, as_of_ns: u64, bits: u32) {
        if let Err(err) = self.judged.insert(tid, Judged { as_of_ns, bits, _pad: 0 }, 0) {
            tracing::debug!(tid, error = %err, "cannot store judgment");
        }
    }
}
