//! Attaches the CPython probes (`python_*` programs) to interpreter images, once per image.
//!
//! Uprobes live on a file, not a process: one attachment to a libpython covers every
//! interpreter that maps it, including ones started later.

use std::collections::HashMap;

use aya::{
    Ebpf,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use monitor_common::{PY_IMAGES, PY_IMAGES_MAX, probe_cookie};

use crate::python::{
    interpreter::{FileKey, Interpreter},
    layout,
};

/// `(program, CPython function)`; all are needed to phase a process.
pub(crate) const SITES: &[(&str, &str)] = &[
    (AUDIT, "PySys_Audit"),
    ("python_eval_enter", "PyEval_EvalCode"),
    ("python_eval_exit", "PyEval_EvalCode"),
];

/// Attached too where the image exports it (3.12+). `PySys_Audit` runs for every audit event
/// (each `open()` in Python code, for example); this runs once per process. Once a process
/// of the image has shown it marking the same moment as the audit event, the `PySys_Audit`
/// probe is detached from that image.
pub(crate) const RUNNING_MAIN: (&str, &str) = ("python_running_main", "_PyInterpreterState_SetRunningMain");

const AUDIT: &str = "python_audit";

/// Every CPython probe program, for loading.
pub(crate) fn programs() -> impl Iterator<Item = &'static str> {
    SITES.iter().chain([&RUNNING_MAIN]).map(|(program, _)| *program)
}

/// How an image's processes get their main marker.
#[derive(Debug)]
enum MainProbe {
    /// `PySys_Audit` only (before 3.12, or `_PyInterpreterState_SetRunningMain` did not mark
    /// a run the audit event marked).
    Audit,
    /// Both, until a process shows that `_PyInterpreterState_SetRunningMain` marks main.
    Confirming(UProbeLinkId),
    /// `_PyInterpreterState_SetRunningMain` only.
    RunningMain,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("CPython {0} is not a version the probes understand")]
    Version(String),
    #[error("{0} does not export {1}")]
    MissingSymbol(String, &'static str),
    #[error("attaching {program} to {image}: {reason}")]
    Attach { program: &'static str, image: String, reason: String },
    #[error("no room for another interpreter image ({PY_IMAGES_MAX} are probed)")]
    Slots,
    #[error("storing the layout of {0}: {1}")]
    Layout(String, String),
}

/// Which images have probes, and how each image's processes get their main marker. The
/// programs themselves are in the object [`super::control::KernelControl`] owns.
#[derive(Default)]
pub(crate) struct Probes {
    attached: HashMap<FileKey, bool>,
    main_probes: HashMap<FileKey, MainProbe>,
    /// Slots of `PY_IMAGES` given to images, in order (slots are not reused: an image's
    /// probes stay attached until premain stops).
    slots: u32,
}

impl Probes {
    /// A `cpython.run_*` audit marker of a process running `image` was read; `running_main`
    /// says whether `_PyInterpreterState_SetRunningMain` had marked main before it.
    pub(crate) fn main_checked(&mut self, ebpf: &mut Ebpf, image: &std::path::Path, running_main: bool) {
        let Ok(key) = FileKey::of(image) else { return };
        if !matches!(self.main_probes.get(&key), Some(MainProbe::Confirming(_))) {
            return;
        }
        let Some(MainProbe::Confirming(audit)) = self.main_probes.remove(&key) else { return };
        if !running_main {
            tracing::info!(
                ?image,
                "_PyInterpreterState_SetRunningMain did not mark main; keeping PySys_Audit"
            );
            self.main_probes.insert(key, MainProbe::Audit);
            return;
        }
        match uprobe(ebpf, AUDIT).and_then(|p| p.take_link(audit).map_err(|e| e.to_string())) {
            Ok(link) => {
                // Unregistering a uprobe waits for RCU grace periods (tens of milliseconds):
                // not on the reader, which would fall behind the ring meanwhile.
                std::thread::spawn(move || drop(link));
                tracing::info!(
                    ?image,
                    "main marked by _PyInterpreterState_SetRunningMain: PySys_Audit probe detached"
                );
                self.main_probes.insert(key, MainProbe::RunningMain);
            }
            Err(reason) => {
                tracing::warn!(?image, %reason, "cannot detach the PySys_Audit probe");
                self.main_probes.insert(key, MainProbe::Audit);
            }
        }
    }

    /// Images with probes attached.
    pub(crate) fn images(&self) -> usize {
        self.attached.values().filter(|ok| **ok).count()
    }

    /// Images whose probes could not be attached.
    pub(crate) fn failures(&self) -> usize {
        self.attached.values().filter(|ok| !**ok).count()
    }

    /// Attaches every probe to `interp.image`, or none. A failure is logged once per image:
    /// its processes are then phased from syscall order. Paths are logged in their escaped
    /// (Debug) form: a file name is chosen by whoever created it and may hold line breaks or
    /// terminal escapes.
    pub(crate) fn attach(&mut self, ebpf: &mut Ebpf, interp: &Interpreter) -> bool {
        let key = match FileKey::of(&interp.image) {
            Ok(key) => key,
            Err(err) => {
                tracing::warn!(image = ?interp.image, error = %err, "cannot attach CPython probes");
                return false;
            }
        };
        if let Some(&done) = self.attached.get(&key) {
            return done;
        }
        let done = match self.try_attach(ebpf, interp, &key) {
            Ok(None) => {
                tracing::info!(image = ?interp.image, version = ?interp.version, "CPython probes attached");
                true
            }
            Ok(Some(why)) => {
                // Once per image: its alerts say `stack_error` each time.
                tracing::warn!(
                    image = ?interp.image,
                    version = ?interp.version,
                    reason = %why,
                    "CPython probes attached; no Python stacks for this interpreter"
                );
                true
            }
            Err(err) => {
                tracing::warn!(
                    image = ?interp.image,
                    error = ?err,
                    "no CPython probes: its processes are phased from syscall order only"
                );
                false
            }
        };
        self.attached.insert(key, done);
        done
    }

    /// Attaches the probes; `Ok(Some(why))` when there is no stack walk for the image.
    fn try_attach(
        &mut self,
        ebpf: &mut Ebpf,
        interp: &Interpreter,
        key: &FileKey,
    ) -> Result<Option<String>, ProbeError> {
        let image = interp.image.display().to_string();
        let version = interp.version.map_or_else(|| "unknown".to_owned(), |(a, b)| format!("{a}.{b}"));
        let layout = layout::layout(interp).ok_or(ProbeError::Version(version))?;
        let mut offsets = Vec::new();
        for &(program, symbol) in SITES {
            let offset = *interp
                .symbols
                .get(symbol)
                .ok_or_else(|| ProbeError::MissingSymbol(image.clone(), symbol))?;
            offsets.push((program, symbol, offset));
        }
        let (running_main, symbol) = RUNNING_MAIN;
        if let Some(&offset) = interp.symbols.get(symbol) {
            offsets.push((running_main, symbol, offset));
        }
        if self.slots >= PY_IMAGES_MAX {
            return Err(ProbeError::Slots);
        }
        let slot = self.slots;
        let mut images: aya::maps::Array<_, monitor_common::PyImage> = ebpf
            .map_mut(PY_IMAGES)
            .ok_or_else(|| ProbeError::Layout(image.clone(), format!("map {PY_IMAGES} missing")))
            .and_then(|map| {
                aya::maps::Array::try_from(map).map_err(|e| ProbeError::Layout(image.clone(), e.to_string()))
            })?;
        images.set(slot, layout.image, 0).map_err(|e| ProbeError::Layout(image.clone(), e.to_string()))?;
        self.slots += 1;
        let mut new_links: Vec<(&str, UProbeLinkId)> = Vec::new();
        for (program, symbol, offset) in offsets {
            let vaddr = interp.runtime.functions.get(symbol).copied().unwrap_or(0);
            let result = uprobe(ebpf, program).and_then(|p| {
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(offset),
                    cookie: Some(probe_cookie(slot as u16, vaddr)),
                };
                p.attach(point, &interp.image, UProbeScope::AllProcesses).map_err(|e| e.to_string())
            });
            match result {
                Ok(link) => new_links.push((program, link)),
                Err(reason) => {
                    // All or nothing: half the probes would phase processes wrongly.
                    for (program, link) in new_links {
                        if let Ok(p) = uprobe(ebpf, program) {
                            let _ = p.detach(link);
                        }
                    }
                    return Err(ProbeError::Attach { program, image, reason });
                }
            }
        }
        // The links stay owned by the programs until `unload`.
        let with_running_main = new_links.iter().any(|(program, _)| *program == running_main);
        let audit = new_links.iter().position(|(program, _)| *program == AUDIT);
        let main_probe = match audit {
            Some(i) if with_running_main => MainProbe::Confirming(new_links.swap_remove(i).1),
            _ => MainProbe::Audit,
        };
        self.main_probes.insert(*key, main_probe);
        Ok(layout.no_stacks)
    }
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &str) -> Result<&'a mut UProbe, String> {
    let prog =
        ebpf.program_mut(program).ok_or_else(|| format!("program {program} missing from the object"))?;
    prog.try_into().map_err(|e: aya::programs::ProgramError| e.to_string())
}
