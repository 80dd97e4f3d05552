//! Where the probes and the stack walk find things in a CPython build, on x86-64: the
//! [`PyImage`] each probed image gets in the kernel, and how the daemon turns a walked frame's
//! instruction into a line.
//!
//! The string and code object offsets were measured on live objects (`tests/scripts/layout.py`,
//! compared by a unit test with every CPython here); the runtime, interpreter, thread and frame
//! offsets of 3.8-3.12 come from CPython's headers and were checked against the debug
//! information of pyenv's builds (`pahole`), and a unit test walks a live interpreter with
//! them. 3.13 publishes its own (`_Py_DebugOffsets`, the first member of `_PyRuntime`), read
//! from the image's file.

use monitor_common::{FRAMES_CFRAME, FRAMES_DIRECT, FRAMES_NONE, FRAMES_OBJECTS, NO_OFFSET, PyImage};

use crate::python::interpreter::Interpreter;

/// How a frame's `instr` (see `StackFrame`) becomes a byte offset into its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Instr {
    /// 3.8-3.9: `f_lasti`, a byte offset.
    Bytes,
    /// 3.10: `f_lasti`, in 2-byte code units.
    Units,
    /// 3.11+: the address of the instruction; the code starts `code_offset` bytes into the
    /// code object.
    Pointer { code_offset: u64 },
}

/// The format of a code object's line table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineTable {
    /// 3.8-3.9 `co_lnotab`: (byte delta, signed line delta) pairs.
    Lnotab,
    /// 3.10 `co_linetable`: (byte delta, signed line delta or -128) pairs.
    Pairs,
    /// 3.11+ location table: variable-length entries with columns.
    Locations,
}

/// What the daemon needs to turn a walked frame into a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lines {
    pub instr: Instr,
    pub table: LineTable,
}

/// The layout of one image: for its probes (strings, `co_filename`) and, when known, the
/// stack walk (`frames` is `FRAMES_NONE` otherwise, with the reason in `no_stacks`).
pub(crate) struct Layout {
    pub image: PyImage,
    pub lines: Option<Lines>,
    pub no_stacks: Option<String>,
}

/// The layout of `interp`'s image, `None` for versions the probes do not understand.
pub(crate) fn layout(interp: &Interpreter) -> Option<Layout> {
    let mut image = strings(interp.version, interp.free_threaded)?;
    let frames = match (interp.version, interp.free_threaded, interp.runtime.vaddr) {
        (_, true, _) => Err("free-threaded builds".to_owned()),
        (_, _, None) => Err("no exported _PyRuntime".to_owned()),
        (Some((3, 13)), _, Some(_)) => debug_offsets(&interp.runtime.head),
        (Some((3, minor @ 8..=12)), _, Some(_)) => Ok(headers(minor)),
        (Some((major, minor)), _, Some(_)) => Err(format!("CPython {major}.{minor}")),
        (None, _, Some(_)) => Err("an unknown version".to_owned()),
    };
    Some(match frames {
        Ok((frames, lines)) => {
            image =
                PyImage { runtime_vaddr: interp.runtime.vaddr.unwrap_or(0), ..with_strings(frames, image) };
            Layout { image, lines: Some(lines), no_stacks: None }
        }
        Err(why) => Layout { image, lines: None, no_stacks: Some(why) },
    })
}

/// How frames of `interp` give lines; `None` when there is no stack walk for it.
pub(crate) fn lines(interp: &Interpreter) -> Option<Lines> {
    layout(interp)?.lines
}

/// The frame layout `frames` with the string layout of `strings`.
fn with_strings(frames: PyImage, strings: PyImage) -> PyImage {
    PyImage {
        co_filename: strings.co_filename,
        str_length: strings.str_length,
        str_data: strings.str_data,
        str_wide_data: strings.str_wide_data,
        str_state: strings.str_state,
        str_kind_shift: strings.str_kind_shift,
        str_compact_bit: strings.str_compact_bit,
        str_ascii_bit: strings.str_ascii_bit,
        ..frames
    }
}

/// Where the probes find `co_filename` and a `str`'s length, state and characters. `None` for
/// versions the probes do not understand. 3.14 and the free-threaded builds follow CPython's
/// headers.
pub(crate) fn strings(version: Option<(u8, u8)>, free_threaded: bool) -> Option<PyImage> {
    let (3, minor @ 8..) = version? else { return None };
    // PyCodeObject gained fields in 3.11; the free-threaded PyObject header is 16 bytes longer.
    let header_extra: u16 = if free_threaded { 16 } else { 0 };
    let co_filename = if minor <= 10 { 104 } else { 112 } + header_extra;
    // `wstr` (and, in PyCompactUnicodeObject, `wstr_length`) went away in 3.12.
    let (str_data, str_wide_data) = if minor <= 11 { (48, 72) } else { (40, 56) };
    // `state` follows `length` and `hash`: `interned:2, kind:3, compact:1, ascii:1`, except
    // in 3.14t, where `interned` became a whole byte ahead of the other bits.
    let (state_extra, str_kind_shift) = if free_threaded && minor >= 14 { (1, 0) } else { (0, 2) };
    Some(PyImage {
        co_filename,
        str_length: 16 + header_extra,
        str_data: str_data + header_extra,
        str_wide_data: str_wide_data + header_extra,
        str_state: 32 + header_extra + state_extra,
        str_kind_shift,
        str_compact_bit: str_kind_shift + 3,
        str_ascii_bit: str_kind_shift + 4,
        ..no_frames()
    })
}

fn no_frames() -> PyImage {
    PyImage {
        frames: FRAMES_NONE,
        cframe_current: NO_OFFSET,
        frame_owner: NO_OFFSET,
        owner_cstack: NO_OFFSET,
        ..PyImage::default()
    }
}

/// `PyBytesObject`: `ob_size` after the object header, the characters after `ob_shash`.
const BYTES_SIZE: u16 = 16;
const BYTES_DATA: u16 = 32;

/// The frame layout of default (GIL) builds of 3.`minor`, 8 to 12.
fn headers(minor: u8) -> (PyImage, Lines) {
    let base = PyImage { bytes_size: BYTES_SIZE, bytes_data: BYTES_DATA, tstate_next: 8, ..no_frames() };
    match minor {
        // `_PyRuntime.interpreters.head`, `interp->tstate_head`, `tstate->frame`, and
        // `PyFrameObject`: `f_back`, `f_code`, `f_globals`, `f_lasti`.
        8..=10 => (
            PyImage {
                frames: FRAMES_OBJECTS,
                runtime_interp_head: 32,
                interp_next: 0,
                interp_threads: 8,
                tstate_thread_id: 176,
                tstate_frame: 24,
                frame_back: 24,
                frame_code: 32,
                frame_globals: 48,
                frame_instr: if minor == 10 { 96 } else { 104 },
                co_firstlineno: 40,
                co_name: 112,
                co_linetable: 120,
                ..base
            },
            Lines {
                instr: if minor == 10 { Instr::Units } else { Instr::Bytes },
                table: if minor == 10 { LineTable::Pairs } else { LineTable::Lnotab },
            },
        ),
        // `interp->threads.head`, `tstate->cframe->current_frame`, `_PyInterpreterFrame`.
        11 => (
            PyImage {
                frames: FRAMES_CFRAME,
                runtime_interp_head: 40,
                interp_next: 0,
                interp_threads: 16,
                tstate_thread_id: 152,
                tstate_frame: 56,
                cframe_current: 8,
                frame_back: 48,
                frame_code: 32,
                frame_globals: 8,
                frame_instr: 56,
                co_firstlineno: 72,
                co_name: 128,
                co_linetable: 136,
                ..base
            },
            Lines { instr: Instr::Pointer { code_offset: 184 }, table: LineTable::Locations },
        ),
        // The C stack's entry frames (`FRAME_OWNED_BY_CSTACK`) are shims, not Python code.
        _ => (
            PyImage {
                frames: FRAMES_CFRAME,
                runtime_interp_head: 40,
                interp_next: 0,
                interp_threads: 72,
                tstate_thread_id: 136,
                tstate_frame: 56,
                cframe_current: 0,
                frame_back: 8,
                frame_code: 0,
                frame_globals: 24,
                frame_instr: 56,
                frame_owner: 70,
                owner_cstack: 3,
                co_firstlineno: 68,
                co_name: 128,
                co_linetable: 136,
                ..base
            },
            Lines { instr: Instr::Pointer { code_offset: 192 }, table: LineTable::Locations },
        ),
    }
}

/// 3.13's `_Py_DebugOffsets` (`Include/internal/pycore_runtime.h`), at the start of
/// `_PyRuntime`: its cookie, version and the offsets the walk needs. `f_globals` is not
/// among them; it is the fourth word of `_PyInterpreterFrame` in 3.13.
fn debug_offsets(head: &[u8]) -> Result<(PyImage, Lines), String> {
    let word = |at: usize| head.get(at..at + 8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")));
    let offset = |at: usize| -> Result<u16, String> {
        let value = word(at).ok_or("_Py_DebugOffsets is not in the file")?;
        u16::try_from(value).map_err(|_| format!("_Py_DebugOffsets: offset {value} out of range"))
    };
    if head.get(..8) != Some(b"xdebugpy") {
        return Err("no _Py_DebugOffsets at _PyRuntime".to_owned());
    }
    let version = word(8).unwrap_or(0);
    if (version >> 24, (version >> 16) & 0xff) != (3, 13) {
        return Err(format!("_Py_DebugOffsets of version {version:#x}"));
    }
    if word(16) != Some(0) {
        return Err("free-threaded builds".to_owned());
    }
    let image = PyImage {
        frames: FRAMES_DIRECT,
        runtime_interp_head: offset(40)?,
        interp_next: offset(64)?,
        interp_threads: offset(72)?,
        tstate_next: offset(168)?,
        tstate_frame: offset(184)?,
        tstate_thread_id: offset(192)?,
        frame_back: offset(232)?,
        frame_code: offset(240)?,
        frame_instr: offset(248)?,
        frame_owner: offset(264)?,
        frame_globals: 24,
        owner_cstack: 3,
        co_filename: offset(280)?,
        co_name: offset(296)?,
        co_linetable: offset(304)?,
        co_firstlineno: offset(312)?,
        bytes_size: offset(520)?,
        bytes_data: offset(528)?,
        ..no_frames()
    };
    let code_offset = u64::from(offset(344)?);
    Ok((image, Lines { instr: Instr::Pointer { code_offset }, table: LineTable::Locations }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_layouts_match_what_live_interpreters_showed() {
        // Values read with ctypes from pyenv 3.8-3.13 and Debian's 3.11.
        for (minor, co, data, wide) in
            [(8, 104, 48, 72), (10, 104, 48, 72), (11, 112, 48, 72), (12, 112, 40, 56), (13, 112, 40, 56)]
        {
            let l = strings(Some((3, minor)), false).unwrap();
            assert_eq!((l.co_filename, l.str_data, l.str_wide_data), (co, data, wide), "3.{minor}");
            assert_eq!(
                (l.str_length, l.str_state, l.str_kind_shift, l.str_compact_bit, l.str_ascii_bit),
                (16, 32, 2, 5, 6),
                "3.{minor}"
            );
        }
        // From the headers: the free-threaded PyObject header is 32 bytes, and 3.14t's state
        // starts with a whole `interned` byte.
        let ft = strings(Some((3, 13)), true).unwrap();
        assert_eq!((ft.co_filename, ft.str_length, ft.str_data, ft.str_wide_data), (128, 32, 56, 72));
        assert_eq!((ft.str_state, ft.str_kind_shift, ft.str_compact_bit, ft.str_ascii_bit), (48, 2, 5, 6));
        let ft = strings(Some((3, 14)), true).unwrap();
        assert_eq!((ft.co_filename, ft.str_length, ft.str_data, ft.str_wide_data), (128, 32, 56, 72));
        assert_eq!((ft.str_state, ft.str_kind_shift, ft.str_compact_bit, ft.str_ascii_bit), (49, 0, 3, 4));
        assert!(strings(Some((3, 7)), false).is_none());
        assert!(strings(Some((2, 7)), false).is_none());
        assert!(strings(None, false).is_none());
    }

    /// What `tests/scripts/layout.py` measures with ctypes on every CPython 3.8+ here.
    #[test]
    fn string_layouts_match_live_objects_on_every_cpython_here() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/layout.py");
        let pythons = crate::testing::every_cpython();
        if pythons.is_empty() {
            return crate::testing::cannot_run("no CPython 3.8+ on this machine");
        }
        for (python, version) in pythons {
            let out = std::process::Command::new(&python).arg(script).output().expect("run layout.py");
            assert!(out.status.success(), "{python:?}: {out:?}");
            let live: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            let l = strings(Some(version), false).expect("a layout");
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
    fn debug_offsets_are_read_and_checked() {
        let mut head = vec![0u8; 584];
        head[..8].copy_from_slice(b"xdebugpy");
        head[8..16].copy_from_slice(&0x030d_00f0u64.to_ne_bytes());
        for (at, value) in [(40, 632u64), (64, 7264), (72, 7344), (168, 8), (184, 72), (192, 152)]
            .into_iter()
            .chain([(232, 8), (240, 0), (248, 56), (264, 70), (280, 112), (296, 128), (304, 136)])
            .chain([(312, 68), (344, 200), (520, 16), (528, 32)])
        {
            head[at..at + 8].copy_from_slice(&value.to_ne_bytes());
        }
        let (image, lines) = debug_offsets(&head).unwrap();
        assert_eq!(
            (image.frames, image.runtime_interp_head, image.interp_threads),
            (FRAMES_DIRECT, 632, 7344)
        );
        assert_eq!((image.tstate_frame, image.tstate_thread_id, image.frame_instr), (72, 152, 56));
        assert_eq!(lines.instr, Instr::Pointer { code_offset: 200 });
        let mut other = head.clone();
        other[8..16].copy_from_slice(&0x030e_00f0u64.to_ne_bytes());
        assert!(debug_offsets(&other).unwrap_err().contains("version"));
        let mut ft = head.clone();
        ft[16] = 1;
        assert!(debug_offsets(&ft).is_err());
        assert!(debug_offsets(&head[..300]).is_err(), "cut short");
        assert!(debug_offsets(b"not them").is_err());
        let mut huge = head;
        huge[40..48].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert!(debug_offsets(&huge).unwrap_err().contains("out of range"));
    }
}
