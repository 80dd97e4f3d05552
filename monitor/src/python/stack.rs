//! The Python stack of the thread that acted, as the kernel walked it at the syscall: what
//! alerts show (`stack`), and what the engine may reason on (each frame's code object and
//! globals dict, by address in the process).

// Until the capture that fills these lands (same branch).
#![allow(dead_code)]

/// One Python frame. `code` and `globals` are addresses in the process that acted (its
/// memory, or the memory it shared with its Python parent for a descendant's exec): the same
/// code object or module is the same address for as long as it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// `co_qualname` (3.11+) or `co_name` of the code object.
    pub function: String,
    /// `co_filename`, as the bytes of the file name made text (invalid UTF-8 replaced).
    pub file: String,
    /// The line the frame is at, from the code object's line table; `None` when it could not
    /// be worked out.
    pub line: Option<u32>,
    /// Address of the frame's code object.
    pub code: u64,
    /// Address of the frame's globals dict (`f_globals`): its module's namespace.
    pub globals: u64,
}

/// A thread's Python stack, innermost frame first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PyStack {
    pub frames: Vec<Frame>,
    /// More frames were on the stack than were walked, or a name was cut.
    pub truncated: bool,
    /// Why no stack (or only part of one) could be read.
    pub error: Option<StackError>,
    /// Set when the acting process is not the Python process the stack was read from: a
    /// non-Python descendant carries the stack its Python ancestor (this pid) had at the exec
    /// that started the non-Python lineage.
    pub inherited_from: Option<u32>,
}

/// Why a thread's Python stack could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackError {
    /// premain does not know this interpreter's frame layout (its version or build).
    Unsupported,
    /// The process's interpreter state is not located yet: none of its probes has fired.
    NoRuntime,
    /// No Python thread state belongs to the acting thread (a thread that never ran Python).
    NoThread,
    /// The interpreter's memory could not be read where the walk needed it.
    Unreadable,
    /// The kernel's stack record was lost (a full ring).
    Lost,
}

impl StackError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unsupported => "unsupported-interpreter",
            Self::NoRuntime => "interpreter-not-located",
            Self::NoThread => "no-python-thread",
            Self::Unreadable => "unreadable",
            Self::Lost => "lost",
        }
    }
}
