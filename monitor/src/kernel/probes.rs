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
use monitor_common::ProbeCookie;

use crate::python::interpreter::{FileKey, Interpreter};

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

/// Where the probes find `co_filename` and a `str`'s length, state and characters in this
/// CPython build, on x86-64. Measured on live objects with `tests/scripts/layout.py` (a unit
/// test compares it with every CPython on the machine); 3.14 and the free-threaded builds follow
/// CPython's headers. `None` for versions the probes do not understand.
pub(crate) fn layout(version: Option<(u8, u8)>, free_threaded: bool) -> Option<ProbeCookie> {
    let (3, minor @ 8..) = version? else { return None };
    // PyCodeObject gained fields in 3.11; the free-threaded PyObject header is 16 bytes longer.
    let header_extra: u8 = if free_threaded { 16 } else { 0 };
    let co_filename = if minor <= 10 { 104 } else { 112 } + u16::from(header_extra);
    // `wstr` (and, in PyCompactUnicodeObject, `wstr_length`) went away in 3.12.
    let (str_data, str_wide_data) = if minor <= 11 { (48, 72) } else { (40, 56) };
    // `state` follows `length` and `hash`: `interned:2, kind:3, compact:1, ascii:1`, except
    // in 3.14t, where `interned` became a whole byte ahead of the other bits.
    let (state_extra, str_kind_shift) = if free_threaded && minor >= 14 { (1, 0) } else { (0, 2) };
    Some(ProbeCookie {
        co_filename,
        str_length: 16 + header_extra,
        str_data: str_data + header_extra,
        str_wide_data: str_wide_data + header_extra,
        str_state: 32 + header_extra + state_extra,
        str_kind_shift,
        str_compact_bit: str_kind_shift + 3,
        str_ascii_bit: str_kind_shift + 4,
    })
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("CPython {0} is not a version the probes understand")]
    Version(String),
    #[error("{0} does not export {1}")]
    MissingSymbol(String, &'static str),
    #[error("attaching {program} to {image}: {reason}")]
    Attach { program: &'static str, image: String, reason: String },
}

/// Which images have probes, and how each image's processes get their main marker. The
/// programs themselves are in the object [`super::control::KernelControl`] owns.
#[derive(Default)]
pub(crate) struct Probes {
    attached: HashMap<FileKey, bool>,
    main_probes: HashMap<FileKey, MainProbe>,
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
            Ok(()) => {
                tracing::info!(image = ?interp.image, version = ?interp.version, "CPython probes attached");
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

    fn try_attach(&mut self, ebpf: &mut Ebpf, interp: &Interpreter, key: &FileKey) -> Result<(), ProbeError> {
        let image = interp.image.display().to_string();
        let version = interp.version.map_or_else(|| "unknown".to_owned(), |(a, b)| format!("{a}.{b}"));
        let cookie = layout(interp.version, interp.free_threaded).ok_or(ProbeError::Version(version))?;
        let mut offsets = Vec::new();
        for &(program, symbol) in SITES {
            let offset = *interp
                .symbols
                .get(symbol)
                .ok_or_else(|| ProbeError::MissingSymbol(image.clone(), symbol))?;
            offsets.push((program, offset));
        }
        let (running_main, symbol) = RUNNING_MAIN;
        if let Some(&offset) = interp.symbols.get(symbol) {
            offsets.push((running_main, offset));
        }
        let mut new_links: Vec<(&str, UProbeLinkId)> = Vec::new();
        for (program, offset) in offsets {
            let result = uprobe(ebpf, program).and_then(|p| {
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(offset),
                    cookie: Some(cookie.encode()),
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
        Ok(())
    }
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &str) -> Result<&'a mut UProbe, String> {
    let prog =
        ebpf.program_mut(program).ok_or_else(|| format!("program {program} missing from the object"))?;
    prog.try_into().map_err(|e: aya::programs::ProgramError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_what_live_interpreters_showed() {
        // Values read with ctypes from pyenv 3.8-3.13 and Debian's 3.11.
        for (minor, co, data, wide) in
            [(8, 104, 48, 72), (10, 104, 48, 72), (11, 112, 48, 72), (12, 112, 40, 56), (13, 112, 40, 56)]
        {
            let l = layout(Some((3, minor)), false).unwrap();
            assert_eq!((l.co_filename, l.str_data, l.str_wide_data), (co, data, wide), "3.{minor}");
            assert_eq!(
                (l.str_length, l.str_state, l.str_kind_shift, l.str_compact_bit, l.str_ascii_bit),
                (16, 32, 2, 5, 6),
                "3.{minor}"
            );
        }
        // From the headers: the free-threaded PyObject header is 32 bytes, and 3.14t's state
        // starts with a whole `interned` byte.
        let ft = layout(Some((3, 13)), true).unwrap();
        assert_eq!((ft.co_filename, ft.str_length, ft.str_data, ft.str_wide_data), (128, 32, 56, 72));
        assert_eq!((ft.str_state, ft.str_kind_shift, ft.str_compact_bit, ft.str_ascii_bit), (48, 2, 5, 6));
        let ft = layout(Some((3, 14)), true).unwrap();
        assert_eq!((ft.co_filename, ft.str_length, ft.str_data, ft.str_wide_data), (128, 32, 56, 72));
        assert_eq!((ft.str_state, ft.str_kind_shift, ft.str_compact_bit, ft.str_ascii_bit), (49, 0, 3, 4));
        assert!(layout(Some((3, 7)), false).is_none());
        assert!(layout(Some((2, 7)), false).is_none());
        assert!(layout(None, false).is_none());
    }

    /// What `tests/scripts/layout.py` measures with ctypes on every CPython 3.8+ here.
    #[test]
    fn layouts_match_live_objects_on_every_cpython_here() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/layout.py");
        let mut pythons: Vec<_> =
            crate::testing::pyenv_pythons().into_iter().filter(|(_, v)| *v >= (3, 8)).collect();
        pythons.extend(
            std::path::Path::new("/usr/bin/python3.11")
                .exists()
                .then(|| ("/usr/bin/python3.11".into(), (3, 11))),
        );
        if pythons.is_empty() {
            return crate::testing::cannot_run("no CPython 3.8+ on this machine");
        }
        for (python, version) in pythons {
            let out = std::process::Command::new(&python).arg(script).output().expect("run layout.py");
            assert!(out.status.success(), "{python:?}: {out:?}");
            let live: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            let l = layout(Some(version), false).expect("a layout");
            assert_eq!(live["co_filename"], l.co_filename, "{python:?}");
            assert_eq!(live["str_length"], l.str_length, "{python:?}");
            assert_eq!(live["str_data"], l.str_data, "{python:?}");
            assert_eq!(live["str_wide_data"], l.str_wide_data, "{python:?}");
            assert_eq!(live["str_state"], l.str_state, "{python:?}");
            assert_eq!(live["kind_shift"], l.str_kind_shift, "{python:?}");
            assert_eq!(live["compact_bit"], 1 << l.str_compact_bit, "{python:?}");
            assert_eq!(live["ascii_bit"], 1 << l.str_ascii_bit, "{python:?}");
            eprintln!("{} {live}", python.display());
        }
    }

    #[test]
    fn cookies_roundtrip() {
        for (minor, free_threaded) in [(8, false), (12, false), (13, true), (14, true)] {
            let l = layout(Some((3, minor)), free_threaded).unwrap();
            assert_eq!(ProbeCookie::decode(l.encode()), l, "3.{minor}");
        }
    }
}
