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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use monitor_common::{FRAME_FILE_UNREADABLE, FRAME_TABLE_CUT, STACK_UNSUPPORTED};

    use super::*;
    use crate::{
        kernel::decode::Header,
        python::interpreter::{Verdict, recognize},
    };

    /// Where a frame at byte `offset` of its code says it is, as the kernel copies it.
    fn frame_at(offset: i64, first: i32, table: Vec<u8>, lines: Lines) -> WalkedFrame {
        let code = 0x7f00_0000_1000u64;
        let instr = match lines.instr {
            Instr::Bytes => offset as u64,
            Instr::Units => (offset / 2) as u64,
            Instr::Pointer { code_offset } => (code + code_offset).wrapping_add(offset as u64),
        };
        let table_size = table.len() as u32;
        WalkedFrame {
            code,
            globals: 0,
            instr,
            firstlineno: first,
            flags: 0,
            name: Some(b"f".to_vec()),
            file: Some(b"sample.py".to_vec()),
            table,
            table_size,
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    /// Every instruction of every code object of `tests/scripts/linetables.py`'s sample, on
    /// every CPython here: the line worked out from the table is the line CPython gives.
    #[test]
    fn lines_match_what_every_cpython_here_says() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/linetables.py");
        let pythons = crate::testing::every_cpython();
        if pythons.is_empty() {
            return crate::testing::cannot_run("no CPython 3.8+ on this machine");
        }
        for (python, version) in pythons {
            let Ok(Verdict::Python(interp)) = recognize(&python, Path::new("/")) else {
                panic!("{python:?}")
            };
            let lines =
                crate::python::layout::lines(&interp).unwrap_or_else(|| panic!("{python:?}: no stacks"));
            // Without column information (`-X no_debug_ranges`, PYTHONNODEBUGRANGES) 3.11+
            // writes other entries. Older versions ignore the option.
            let runs = [&[][..], &["-X", "no_debug_ranges"][..]].map(|options| {
                let out =
                    std::process::Command::new(&python).args(options).arg(script).output().expect("run");
                assert!(out.status.success(), "{python:?}: {out:?}");
                serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
            });
            let mut checked = 0;
            for code in runs.iter().flat_map(|codes| codes.as_array().unwrap()) {
                let first = code["first"].as_i64().unwrap() as i32;
                let table = hex(code["table"].as_str().unwrap());
                for pair in code["lines"].as_array().unwrap() {
                    let offset = pair[0].as_i64().unwrap();
                    // Line 0 (3.11+ gives it to the RESUME before a module's first line) is none.
                    let want = pair[1].as_u64().map(|l| l as u32).filter(|l| *l > 0);
                    let got = line(&frame_at(offset, first, table.clone(), lines), lines);
                    assert_eq!(
                        got, want,
                        "{python:?} {version:?}: offset {offset} of the code at line {first}"
                    );
                    checked += 1;
                }
            }
            assert!(checked > 1000, "{python:?}: only {checked} instructions");
            eprintln!("{} {version:?}: {checked} instructions", python.display());
        }
    }

    #[test]
    fn a_frame_not_started_is_at_its_first_line() {
        let lines = Lines { instr: Instr::Pointer { code_offset: 192 }, table: LineTable::Locations };
        // `prev_instr` one code unit before the code: nothing ran yet.
        assert_eq!(line(&frame_at(-2, 7, vec![0xf8, 0x01], lines), lines), Some(7));
        let lines = Lines { instr: Instr::Bytes, table: LineTable::Lnotab };
        assert_eq!(line(&frame_at(-1, 7, vec![2, 1], lines), lines), Some(7));
    }

    #[test]
    fn a_table_cut_before_the_instruction_gives_no_line() {
        for lines in [
            Lines { instr: Instr::Bytes, table: LineTable::Lnotab },
            Lines { instr: Instr::Units, table: LineTable::Pairs },
            Lines { instr: Instr::Pointer { code_offset: 184 }, table: LineTable::Locations },
        ] {
            // Two entries of 2 bytes (one code unit) each, one line further each.
            let table = match lines.table {
                LineTable::Locations => vec![0xd8, 0xd8],
                _ => vec![2, 1, 2, 1],
            };
            let mut f = frame_at(2, 10, table, lines);
            // Before 3.10 a pair's line applies from its address on; after, to its range.
            assert_eq!(line(&f, lines), Some(if lines.table == LineTable::Lnotab { 11 } else { 12 }));
            // Copied in part: an instruction past what was copied has no line.
            f.table_size = 100;
            f.flags |= FRAME_TABLE_CUT;
            f.instr = frame_at(40, 10, Vec::new(), lines).instr;
            assert_eq!(line(&f, lines), None, "{lines:?}");
            f.flags = FRAME_TABLE_UNREADABLE;
            f.instr = frame_at(0, 10, Vec::new(), lines).instr;
            assert_eq!(line(&f, lines), None, "{lines:?}");
        }
    }

    #[test]
    fn a_misaligned_instruction_pointer_gives_no_line() {
        let lines = Lines { instr: Instr::Pointer { code_offset: 184 }, table: LineTable::Locations };
        let mut f = frame_at(2, 10, vec![0xd8, 0xd8], lines);
        f.instr += 1;
        assert_eq!(line(&f, lines), None);
    }

    #[test]
    fn varints_are_read_as_cpython_writes_them() {
        assert_eq!(signed_varint(&[4]), Some(2));
        assert_eq!(signed_varint(&[5]), Some(-2));
        // 0x41 has its continuation bit: 1 + (2 << 6) = 129 -> +64, odd -> negative.
        assert_eq!(signed_varint(&[0x41, 2]), Some(-64));
        assert_eq!(signed_varint(&[0x40]), None, "runs off the end");
        assert_eq!(signed_varint(&[0x7f; 20]), None, "too long");
    }

    fn walked(status: u32, frames: Vec<WalkedFrame>) -> Stack {
        let header = Header {
            ktime_ns: 0,
            cgroup_id: 0,
            start_ns: 0,
            pid: 1,
            tid: 1,
            ppid: 0,
            uid: 0,
            gid: 0,
            flags: 0,
            comm: Vec::new(),
        };
        Stack { header, syscall: 1, status, truncated: false, frames }
    }

    #[test]
    fn a_walk_becomes_frames_and_its_failure_an_error() {
        let lines = Lines { instr: Instr::Units, table: LineTable::Pairs };
        let mut f = frame_at(0, 3, vec![2, 0], lines);
        f.name = Some("fonction_é".as_bytes().to_vec());
        f.file = None;
        f.flags = FRAME_FILE_UNREADABLE | FRAME_NAME_CUT;
        let stack = resolve(&walked(STACK_OK, vec![f]), Some(lines));
        assert_eq!(stack.error, None);
        assert!(stack.truncated, "a cut name");
        let frame = &stack.frames[0];
        assert_eq!((frame.function.as_str(), frame.file.as_str(), frame.line), ("fonction_é", "?", Some(3)));
        assert_eq!(frame.code, 0x7f00_0000_1000);
        let failed = resolve(&walked(STACK_NO_THREAD, Vec::new()), Some(lines));
        assert_eq!((failed.error, failed.frames.len()), (Some(StackError::NoThread), 0));
        let unknown = resolve(&walked(STACK_UNSUPPORTED, Vec::new()), None);
        assert_eq!(unknown.error, Some(StackError::Unsupported));
        assert_eq!(StackError::of_status(99), Some(StackError::Unsupported));
    }

    /// pyenv's 3.13 publishes `_Py_DebugOffsets`; what premain reads from the file matches the
    /// offsets its debug information gives (`pahole`, noted in `layout.rs`).
    #[test]
    fn the_debug_offsets_of_3_13_are_read_from_the_file() {
        let Some((python, _)) = crate::testing::pyenv_pythons().into_iter().find(|(_, v)| *v == (3, 13))
        else {
            return crate::testing::cannot_run("no pyenv CPython 3.13");
        };
        let Ok(Verdict::Python(interp)) = recognize(&python, Path::new("/")) else { panic!("{python:?}") };
        let layout = crate::python::layout::layout(&interp).unwrap();
        assert_eq!(layout.no_stacks, None);
        let i = layout.image;
        assert_eq!((i.runtime_interp_head, i.interp_next, i.interp_threads), (632, 7264, 7344));
        assert_eq!((i.tstate_next, i.tstate_frame, i.tstate_thread_id), (8, 72, 152));
        assert_eq!(
            (i.frame_back, i.frame_code, i.frame_globals, i.frame_instr, i.frame_owner),
            (8, 0, 24, 56, 70)
        );
        assert_eq!((i.co_firstlineno, i.co_name, i.co_linetable, i.co_filename), (68, 128, 136, 112));
        assert_eq!(layout.lines.unwrap().instr, Instr::Pointer { code_offset: 200 });
        assert_ne!(i.runtime_vaddr, 0);
    }
}
