//! The per-process and per-thread state the phase engine keeps.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    Culprit, Origin,
    loaded::{Loads, Source},
    planted::Planted,
};
use crate::process::table::IdMap;

#[derive(Clone, Debug)]
pub(crate) struct Main {
    pub(crate) how: String,
    pub(crate) target: Vec<u8>,
    pub(crate) tid: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Frame {
    /// `co_filename`; `None` when it could not be read (not a compact `str`).
    pub(crate) claim: Option<PathBuf>,
    /// Where its code was loaded from (checked for module bodies).
    pub(crate) source: Source,
    /// The user's main code (script, `-c` command, `-m` module).
    pub(crate) main: bool,
    /// A module body (not an `exec` of a string); see `engine::is_module_body`.
    pub(crate) module: bool,
    /// The address of the globals dict it runs with (0 when not known).
    pub(crate) globals: u64,
}

impl Frame {
    /// The file its code came from: what `co_filename` says unless the interpreter was seen
    /// loading it from another file or from none.
    pub(crate) fn file(&self) -> Option<&Path> {
        match &self.source {
            Source::Claimed => self.claim.as_deref(),
            Source::Loaded(file) => Some(file),
            Source::Unseen => None,
        }
    }

    /// `co_filename`, when it is not the file the code came from.
    pub(crate) fn false_claim(&self) -> Option<&Path> {
        (self.source != Source::Claimed).then_some(self.claim.as_deref()).flatten()
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Thread {
    pub(crate) frames: Vec<Frame>,
    /// Frames entered beyond the engine's depth bound, whose returns must not pop recorded ones.
    pub(crate) unrecorded: usize,
    pub(crate) taint: Option<Arc<Origin>>,
    /// Files it opened that the module bodies it enters may have been loaded from.
    pub(crate) loads: Loads,
}

impl Thread {
    /// Code-object frames running.
    pub(crate) fn depth(&self) -> usize {
        self.frames.len() + self.unrecorded
    }
}

/// What the phase engine knows of one process; it lives in the process table.
#[derive(Clone, Debug, Default)]
pub struct ProcessPhase {
    /// Set up by the engine (at exec, fork, or the first record of a process found running).
    pub(crate) started: bool,
    /// Runs a CPython image.
    pub(crate) interpreter: bool,
    /// Its phases come from probes (else from syscall order).
    pub(crate) probed: bool,
    /// Was running before premain (or forked from such a process without exec).
    pub(crate) runtime_only: bool,
    pub(crate) main: Option<Main>,
    /// `main` is the syscall-order fallback's guess, which a main marker replaces.
    pub(crate) main_by_fallback: bool,
    /// The main marker came from `_PyInterpreterState_SetRunningMain`.
    pub(crate) running_main_seen: bool,
    pub(crate) main_frame_seen: bool,
    pub(crate) last_pth: Option<PathBuf>,
    /// The script of `python script.py`, for the syscall-order fallback.
    pub(crate) script: Option<PathBuf>,
    /// The script with symlinks resolved: opens carry the kernel's path of the file.
    pub(crate) script_real: Option<PathBuf>,
    pub(crate) install: Option<Culprit>,
    pub(crate) taint: Option<Arc<Origin>>,
    pub(crate) threads: IdMap<Thread>,
    /// The kernel's generation of the process as of the last record read (see
    /// `monitor_common::GENERATIONS`); `None` until a record that renews it.
    pub(crate) generation: Option<u64>,
    /// The generation it was last declared quiet at.
    pub(crate) declared_quiet: Option<u64>,
    /// What its start-up hooks ran, which may run again after main.
    pub(crate) planted: Planted,
}

impl ProcessPhase {
    /// The generation the process was last declared quiet at, if the declaration stands.
    pub fn declared_quiet(&self) -> Option<u64> {
        self.declared_quiet
    }
}
