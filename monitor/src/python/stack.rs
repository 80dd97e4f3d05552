//! The Python stack of the thread that acted, as the kernel walked it at the syscall: what
//! alerts show (`stack`), and what the engine may reason on (each frame's code object and
//! globals dict, by address in the process).

use monitor_common::{
    FRAME_CODE_UNREADABLE, FRAME_FILE_CUT, FRAME_NAME_CUT, FRAME_TABLE_UNREADABLE, STACK_NO_RUNTIME,
    STACK_NO_THREAD, STACK_OK, STACK_UNREADABLE,
};

use crate::{
    kernel::decode::{Stack, WalkedFrame},
    python::layout::{Instr, LineTable, Lines},
};

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
    /// No stack was walked for this action: a 32-bit syscall, an io_uring request, an open
    /// the file watch alone saw, a record lost to a full ring, a kernel that refused the walk,
    /// or a descendant whose lineage left Python before premain saw it.
    Missing,
}

impl StackError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unsupported => "unsupported-interpreter",
            Self::NoRuntime => "interpreter-not-located",
            Self::NoThread => "no-python-thread",
            Self::Unreadable => "unreadable",
            Self::Missing => "not-captured",
        }
    }
}

impl StackError {
    /// The error a kernel `STACK_*` status stands for (`None` for a walked stack).
    pub(crate) fn of_status(status: u32) -> Option<Self> {
        match status {
            STACK_OK => None,
            STACK_NO_RUNTIME => Some(Self::NoRuntime),
            STACK_NO_THREAD => Some(Self::NoThread),
            STACK_UNREADABLE => Some(Self::Unreadable),
            _ => Some(Self::Unsupported),
        }
    }
}

/// The stack a walk found, with each frame's line worked out from its line table (`lines`
/// says how for the interpreter; `None`: the daemon knows no layout, so the kernel had none
/// either).
pub(crate) fn resolve(walked: &Stack, lines: Option<Lines>) -> PyStack {
    let text = |t: &Option<Vec<u8>>| t.as_deref().map(|b| String::from_utf8_lossy(b).into_owned());
    let frames = walked
        .frames
        .iter()
        .map(|f| Frame {
            function: text(&f.name).unwrap_or_else(|| "?".to_owned()),
            file: text(&f.file).unwrap_or_else(|| "?".to_owned()),
            line: lines.and_then(|l| line(f, l)),
            code: f.code,
            globals: f.globals,
        })
        .collect();
    let cut = walked.frames.iter().any(|f| f.flags & (FRAME_NAME_CUT | FRAME_FILE_CUT) != 0);
    let error = match (StackError::of_status(walked.status), lines) {
        (None, None) => Some(StackError::Unsupported),
        (error, _) => error,
    };
    PyStack { frames, truncated: walked.truncated || cut, error, inherited_from: None }
}

/// The line frame `f` is at, as `PyFrame_GetLineNumber` would say; `None` when its code or
/// line table could not be read, or the part of the table that was copied ends before it.
pub(crate) fn line(f: &WalkedFrame, lines: Lines) -> Option<u32> {
    if f.flags & (FRAME_CODE_UNREADABLE | FRAME_TABLE_UNREADABLE) != 0 {
        return None;
    }
    // The byte offset of the instruction the frame is at (negative: not started yet).
    let offset: i64 = match lines.instr {
        Instr::Bytes => f.instr as i64,
        Instr::Units => (f.instr as i64).checked_mul(2)?,
        Instr::Pointer { code_offset } => {
            let start = f.code.checked_add(code_offset)?;
            let delta = f.instr.wrapping_sub(start) as i64;
            // `prev_instr`/`instr_ptr` point at whole code units.
            if delta % 2 != 0 {
                return None;
            }
            delta
        }
    };
    let whole = f.table.len() as u64 >= u64::from(f.table_size);
    let line = if offset < 0 {
        i64::from(f.firstlineno)
    } else {
        match lines.table {
            LineTable::Lnotab => lnotab(&f.table, f.firstlineno, offset, whole),
            LineTable::Pairs => pairs(&f.table, f.firstlineno, offset),
            LineTable::Locations => locations(&f.table, f.firstlineno, offset),
        }?
    };
    u32::try_from(line).ok().filter(|l| *l > 0)
}

/// 3.8-3.9 `PyCode_Addr2Line`: (address delta, signed line delta) pairs; the line of the last
/// pair whose address is not past `offset`. `whole`: the table was copied whole, so running
/// off its end means the last line.
fn lnotab(table: &[u8], first: i32, offset: i64, whole: bool) -> Option<i64> {
    let (mut line, mut addr) = (i64::from(first), 0i64);
    for pair in table.chunks_exact(2) {
        addr += i64::from(pair[0]);
        if addr > offset {
            return Some(line);
        }
        line += i64::from(pair[1] as i8);
    }
    whole.then_some(line)
}

/// 3.10 `co_linetable`: (address delta, line delta) pairs, a line delta of -128 meaning no
/// line; the range holding `offset`.
fn pairs(table: &[u8], first: i32, offset: i64) -> Option<i64> {
    let (mut computed, mut end) = (i64::from(first), 0i64);
    for pair in table.chunks_exact(2) {
        let start = end;
        end += i64::from(pair[0]);
        let line = match pair[1] as i8 {
            -128 => None,
            delta => {
                computed += i64::from(delta);
                Some(computed)
            }
        };
        if start <= offset && offset < end {
            return line;
        }
    }
    None
}

/// 3.11+ location table (`Objects/locations.md`): each entry starts with a byte
/// `1 code:4 length-1:3` covering `length` code units; codes 13 and 14 carry a signed varint
/// line delta next, 10-12 a delta of 0-2, 15 means no location, the rest the same line.
fn locations(table: &[u8], first: i32, offset: i64) -> Option<i64> {
    let (mut computed, mut end, mut i) = (i64::from(first), 0i64, 0usize);
    while let Some(&b) = table.get(i) {
        if b & 0x80 == 0 {
            return None;
        }
        let code = (b >> 3) & 15;
        let delta = match code {
            13 | 14 => signed_varint(table.get(i + 1..)?)?,
            10..=12 => i64::from(code - 10),
            _ => 0,
        };
        computed += delta;
        let start = end;
        end += (i64::from(b & 7) + 1) * 2;
        if start <= offset && offset < end {
            return (code != 15).then_some(computed);
        }
        i += 1;
        while table.get(i).is_some_and(|b| b & 0x80 == 0) {
            i += 1;
        }
    }
    None
}

/// A varint of 6-bit chunks, least significant first, bit 6 set on all but the last; the low
/// bit of the value is the sign.
fn signed_varint(bytes: &[u8]) -> Option<i64> {
    let (mut value, mut shift) = (0u64, 0u32);
    for &b in bytes {
        value |= u64::from(b & 63).checked_shl(shift)?;
        if b & 64 == 0 {
            let magnitude = (value >> 1) as i64;
            return Some(if value & 1 != 0 { -magnitude } else { magnitude });
        }
        shift += 6;
        if shift > 60 {
            return None;
        }
    }
    None
}
