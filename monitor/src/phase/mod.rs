//! Phases: for every action of a tracked process, which phase of the interpreter's
//! life the code that did it belongs to, and which file is responsible.
//!
//! - `startup`: from exec until the user's code starts (`PySys_Audit("cpython.run_*")`).
//! - `import`: module-level code (a `PyEval_EvalCode` frame other than the main one) once the
//!   user's code has started.
//! - `install`: anything a package installer's build hook runs (see [`crate::python::install`]).
//! - `runtime`: everything else.
//!
//! A thread or child process created while its creator is in a pre-main phase keeps that phase
//! and culprit for life ("inherited taint"), whatever it executes later.

mod engine;
mod loaded;
pub(crate) mod party;
mod planted;
mod state;

use std::{path::PathBuf, sync::Arc};

pub(crate) use engine::{InstallDetector, PhaseEngine};
pub(crate) use party::Party;
pub(crate) use state::ProcessPhase;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    Install,
    Startup,
    Import,
    Runtime,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Startup => "startup",
            Self::Import => "import",
            Self::Runtime => "runtime",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CulpritKind {
    Pth,
    Sitecustomize,
    Usercustomize,
    Module,
    Setup,
    BuildBackend,
    #[default]
    Unknown,
}

impl CulpritKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pth => "pth",
            Self::Sitecustomize => "sitecustomize",
            Self::Usercustomize => "usercustomize",
            Self::Module => "module",
            Self::Setup => "setup",
            Self::BuildBackend => "build-backend",
            Self::Unknown => "unknown",
        }
    }
}

/// How a phase was established (`phase_basis` in alerts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Basis {
    /// From the CPython probes.
    Probes,
    /// From the installer among the ancestors (install).
    Lineage,
    /// From the order of syscalls, for an interpreter whose probes were not in place.
    SyscallOrder,
}

/// Who is responsible, as files; names and distributions are looked up when an alert is made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Culprit {
    pub kind: CulpritKind,
    /// The `.pth`, `sitecustomize.py`/`usercustomize.py`, module, `setup.py` or backend file.
    pub path: Option<PathBuf>,
    /// Innermost module whose body was running (for a `.pth`, what its line imported).
    pub module_file: Option<PathBuf>,
    /// Outermost module whose body was running.
    pub outer_module_file: Option<PathBuf>,
    /// Install: the build hook (`build_wheel`, `egg_info`...).
    pub hook: Option<String>,
    /// Install: the source tree being built.
    pub source_dir: Option<PathBuf>,
    /// Install: the backend named by the project (`setuptools.build_meta`...).
    pub backend: Option<String>,
    /// Install: the installer found among the ancestors (`pip`, `uv`...).
    pub installer: Option<String>,
    /// The innermost module body's code object names no file premain could read (its
    /// `co_filename` is not a compact `str`).
    pub filename_unreadable: bool,
    /// The innermost module body's `co_filename`, when its code was not loaded from that file
    /// (`module_file` is the file it was loaded from, `None` when none was).
    pub claimed_file: Option<PathBuf>,
    /// The same for the outermost module body, when it is another one.
    pub outer_claimed_file: Option<PathBuf>,
    /// Whose code it is, when known from more than these files (every module body that was
    /// running, for a phase passed on); else it is told from the files.
    pub party: Option<Party>,
    /// Code a start-up hook planted acted after main started (`deferred: true`): the frame
    /// of that code nearest the action.
    pub planted: Option<PlantedFrame>,
}

/// A frame of code a start-up hook planted, as alerts name it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PlantedFrame {
    pub function: String,
    pub file: String,
    pub line: Option<u32>,
}

/// The thread or process whose pre-main phase was passed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub pid: u32,
    pub tid: u32,
    pub exe: Option<PathBuf>,
    pub argv: Vec<Vec<u8>>,
    pub phase: Phase,
    pub culprit: Culprit,
}

/// Phase and culprit of one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Context {
    pub phase: Phase,
    pub culprit: Culprit,
    /// Set when the phase was inherited from a creator.
    pub inherited_from: Option<Arc<Origin>>,
    pub basis: Basis,
}

impl Context {
    pub(crate) fn runtime() -> Self {
        Self {
            phase: Phase::Runtime,
            culprit: Culprit::default(),
            inherited_from: None,
            basis: Basis::Probes,
        }
    }
}
