//! The Python stack of a CPython thread at the entry of a syscall premain records for it,
//! walked here while the frames are still there (a module body's code object is freed once
//! the body ends; the process may exit before the daemon reads anything).
//!
//! The thread state is found by the thread's identity: CPython keeps `pthread_self()` in each
//! thread state (`thread_id`), and glibc and musl make that the thread's TLS base (`fsbase`).
//! That works whoever holds the GIL (an `open()` releases it). From the thread state the walk
//! follows the frame chain, copying for each frame its code object's address, its globals
//! dict's, the instruction it is at, its name, file name and line table (the daemon works out
//! the line from these). Layouts differ per CPython version: they come per image in
//! [`PY_IMAGES`], the image's runtime address per process in [`PY_PROCESSES`].
//!
//! The walk is two programs the syscall entries reach by tail calls, so a process that is not
//! CPython never runs them: `python_stack` finds the thread's state and first frame,
//! `python_frame` copies one frame and tail-calls itself for the next. One frame per program
//! keeps each verification small (the kernel's limit is on instructions verified, and a loop
//! over frames multiplies every path through one frame); the kernel allows 33 tail calls in
//! a chain, which covers the entry, the start and [`STACK_FRAMES_MAX`] frames.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    FRAME_CODE_UNREADABLE, FRAME_FILE_CUT, FRAME_FILE_UNREADABLE, FRAME_NAME_CUT, FRAME_NAME_UNREADABLE,
    FRAME_TABLE_CUT, FRAME_TABLE_UNREADABLE, FRAMES_CFRAME, FRAMES_NONE, FRAMES_OBJECTS, HOOK_STACK,
    NO_OFFSET, PyImage, RECORD_STACK, STACK_FILE_MAX, STACK_FRAMES_MAX, STACK_NAME_MAX, STACK_NO_RUNTIME,
    STACK_NO_THREAD, STACK_OK, STACK_TABLE_MAX, STACK_TAIL_MAX, STACK_UNREADABLE, STACK_UNSUPPORTED,
    StackFrame, StackRecord, TRACK_PYTHON,
};

use crate::{
    emit::{fill_header, scratch, send},
    maps::{PY_IMAGES, PY_PROCESSES, STACK_PROGRAMS, TRACKED},
    task,
};

/// Thread states looked at to find the current thread's (all interpreters together).
const THREADS_MAX: usize = 64;
/// Frames looked at per step: C-stack shim frames (3.12+) are skipped without taking a slot,
/// and never come two in a row.
const SHIMS_SKIPPED: usize = 2;

/// [`STACK_PROGRAMS`] slots.
const START: u32 = 0;
const FRAME: u32 = 1;

/// At the entry of a syscall whose arguments were saved for its record: if the caller runs
/// CPython, the walk (`python_stack`) sends its stack just before the syscall's record.
#[inline(always)]
pub(crate) fn capture(ctx: &TracePointContext, syscall: u32) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: copied out.
    let python = unsafe { TRACKED.get(tgid) }.is_some_and(|flags| flags & TRACK_PYTHON != 0);
    if !python {
        return;
    }
    let Some(rec) = scratch::<StackRecord>() else { return };
    rec.syscall = syscall;
    // SAFETY: on success this does not return, and the caller has nothing left to do. On
    // failure (the walk was not loaded) nothing is sent.
    unsafe { STACK_PROGRAMS.tail_call(ctx, START) };
}

/// Tail-called by the syscall entries (see [`capture`]); the scratch record holds the syscall.
#[tracepoint]
pub fn python_stack(ctx: TracePointContext) -> u32 {
    let Some(rec) = scratch::<StackRecord>() else { return 0 };
    let syscall = rec.syscall;
    fill_header(&mut rec.header, RECORD_STACK);
    rec.syscall = syscall;
    rec.frame_count = 0;
    rec.tail_len = 0;
    rec.truncated = 0;
    rec.next = 0;
    rec.last_file = 0;
    rec.status = start(rec);
    if rec.status == STACK_OK && rec.next != 0 {
        // SAFETY: as in `capture`; on failure the stack goes as it is.
        unsafe { STACK_PROGRAMS.tail_call(&ctx, FRAME) };
    }
    finish(rec);
    0
}

/// Copies the frame at `rec.next` and moves on to its caller.
#[tracepoint]
pub fn python_frame(ctx: TracePointContext) -> u32 {
    let Some(rec) = scratch::<StackRecord>() else { return 0 };
    if !step(rec) {
        rec.status = STACK_UNREADABLE;
    } else if rec.next != 0 {
        if rec.frame_count as usize >= STACK_FRAMES_MAX {
            rec.truncated = 1;
        } else {
            // SAFETY: as in `capture`; on failure (the chain's limit) the stack goes as it is.
            unsafe { STACK_PROGRAMS.tail_call(&ctx, FRAME) };
            rec.truncated = 1;
        }
    }
    finish(rec);
    0
}

#[inline(always)]
fn finish(rec: &mut StackRecord) {
    let tail = (tail_len(rec) as usize).min(STACK_TAIL_MAX);
    let size = core::mem::offset_of!(StackRecord, tail) + tail;
    rec.header.size = size as u32;
    send(HOOK_STACK, rec, size);
}

/// Loop-carried counts live in the record and are read back each time, so that the verifier
/// sees the same unknown value on every path into the next frame and prunes them.
#[inline(always)]
fn tail_len(rec: &StackRecord) -> u32 {
    // SAFETY: a field of a live record.
    unsafe { core::ptr::read_volatile(&raw const rec.tail_len) }
}

#[inline(always)]
fn set_tail_len(rec: &mut StackRecord, len: u32) {
    // SAFETY: a field of a live record.
    unsafe { core::ptr::write_volatile(&raw mut rec.tail_len, len) }
}

/// `value`, which the compiler can no longer reason about.
#[inline(always)]
fn opaque(value: u64) -> u64 {
    let slot = value;
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&raw const slot) }
}

#[inline(always)]
fn user<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: the helper validates the user address.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

/// The word at `base + offset`, for an offset the image has (else `None`).
#[inline(always)]
fn field(base: u64, offset: u16) -> Option<u64> {
    if offset == NO_OFFSET {
        return None;
    }
    user(base + u64::from(offset))
}

/// Finds the thread's state and its innermost frame (`rec.next`).
fn start(rec: &mut StackRecord) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: copied out.
    let Some(process) = (unsafe { PY_PROCESSES.get(tgid) }).copied() else { return STACK_NO_RUNTIME };
    let Some(image) = PY_IMAGES.get(process.image).copied() else { return STACK_UNSUPPORTED };
    if process.runtime == 0 || image.frames == FRAMES_NONE {
        return STACK_UNSUPPORTED;
    }
    rec.image = process.image;
    let Some(id) = task::current_fsbase() else { return STACK_NO_THREAD };
    let tstate = match thread_state(process.runtime, &image, id) {
        Ok(Some(t)) => t,
        Ok(None) => return STACK_NO_THREAD,
        Err(()) => return STACK_UNREADABLE,
    };
    let Some(mut frame) = field(tstate, image.tstate_frame) else { return STACK_UNREADABLE };
    if image.frames == FRAMES_CFRAME && frame != 0 {
        let Some(current) = field(frame, image.cframe_current) else { return STACK_UNREADABLE };
        frame = current;
    }
    rec.next = frame;
    STACK_OK
}

/// Copies the frame at `rec.next` (skipping C-stack shims) into the next slot and sets
/// `rec.next` to its caller; `false` when the frame chain could not be read.
fn step(rec: &mut StackRecord) -> bool {
    let Some(image) = PY_IMAGES.get(rec.image).copied() else { return false };
    let mut frame = rec.next;
    let mut skipped = 0;
    loop {
        if frame == 0 {
            rec.next = 0;
            return true;
        }
        let is_shim = image.frame_owner != NO_OFFSET
            && user::<u8>(frame + u64::from(image.frame_owner))
                .is_some_and(|o| u16::from(o) == image.owner_cstack);
        if !is_shim {
            break;
        }
        if skipped >= SHIMS_SKIPPED {
            return false;
        }
        skipped += 1;
        let Some(back) = field(frame, image.frame_back) else { return false };
        frame = back;
    }
    let Some(back) = field(frame, image.frame_back) else { return false };
    let kept = rec.frame_count as usize;
    let Some(slot) = rec.frames.get_mut(kept) else { return false };
    *slot = StackFrame::default();
    slot.code = field(frame, image.frame_code).unwrap_or(0);
    slot.globals = field(frame, image.frame_globals).unwrap_or(0);
    slot.instr = if image.frames == FRAMES_OBJECTS {
        user::<i32>(frame + u64::from(image.frame_instr)).map_or(u64::MAX, |lasti| lasti as i64 as u64)
    } else {
        field(frame, image.frame_instr).unwrap_or(0)
    };
    let code = slot.code;
    rec.last_file = describe(rec, kept, code, &image, rec.last_file);
    rec.frame_count = kept as u32 + 1;
    rec.next = back;
    true
}

/// The thread state whose `thread_id` is `id`, in any interpreter; `Err` when the lists could
/// not be read.
#[inline(always)]
fn thread_state(runtime: u64, image: &PyImage, id: u64) -> Result<Option<u64>, ()> {
    let mut interp = field(runtime, image.runtime_interp_head).ok_or(())?;
    if interp == 0 {
        return Ok(None);
    }
    let mut t = field(interp, image.interp_threads).ok_or(())?;
    let mut n = 0;
    while n < THREADS_MAX {
        n += 1;
        if t == 0 {
            interp = field(interp, image.interp_next).ok_or(())?;
            if interp == 0 {
                return Ok(None);
            }
            t = field(interp, image.interp_threads).ok_or(())?;
            continue;
        }
        if field(t, image.tstate_thread_id) == Some(id) {
            return Ok(Some(t));
        }
        t = field(t, image.tstate_next).ok_or(())?;
    }
    Ok(None)
}

/// Fills in frame `n`'s code object details: first line, name, file name (shared with the
/// frame before when it is the same `str`), line table. Returns the file name object.
#[inline(always)]
fn describe(rec: &mut StackRecord, n: usize, code: u64, image: &PyImage, last_file: u64) -> u64 {
    let firstlineno = user::<i32>(code + u64::from(image.co_firstlineno));
    let name = field(code, image.co_name);
    let file = field(code, image.co_filename);
    let table = field(code, image.co_linetable);
    let (Some(firstlineno), Some(name), Some(file), Some(table)) = (firstlineno, name, file, table) else {
        if let Some(f) = rec.frames.get_mut(n) {
            f.flags |= FRAME_CODE_UNREADABLE;
        }
        return 0;
    };
    if let Some(f) = rec.frames.get_mut(n) {
        f.firstlineno = firstlineno;
    }
    let copied = copy_str(rec, name, image, STACK_NAME_MAX as u64, false);
    if let Some(f) = rec.frames.get_mut(n) {
        match copied {
            Some((off, len, kind, cut)) => {
                (f.name_off, f.name_len, f.name_kind) = (off, len, kind);
                if cut {
                    f.flags |= FRAME_NAME_CUT;
                }
            }
            None => f.flags |= FRAME_NAME_UNREADABLE,
        }
    }
    if file == last_file && n > 0 {
        let prev = rec.frames.get(n - 1).map(|p| (p.file_off, p.file_len, p.file_kind, p.flags));
        if let (Some((off, len, kind, flags)), Some(f)) = (prev, rec.frames.get_mut(n)) {
            (f.file_off, f.file_len, f.file_kind) = (off, len, kind);
            f.flags |= flags & (FRAME_FILE_CUT | FRAME_FILE_UNREADABLE);
        }
    } else {
        let copied = copy_str(rec, file, image, STACK_FILE_MAX as u64, true);
        if let Some(f) = rec.frames.get_mut(n) {
            match copied {
                Some((off, len, kind, cut)) => {
                    (f.file_off, f.file_len, f.file_kind) = (off, len, kind);
                    if cut {
                        f.flags |= FRAME_FILE_CUT;
                    }
                }
                None => f.flags |= FRAME_FILE_UNREADABLE,
            }
        }
    }
    let copied = copy_bytes(rec, table, image);
    if let Some(f) = rec.frames.get_mut(n) {
        match copied {
            Some((off, len, size)) => {
                (f.table_off, f.table_len, f.table_size) = (off, len, size);
                if u32::from(len) < size {
                    f.flags |= FRAME_TABLE_CUT;
                }
            }
            None => f.flags |= FRAME_TABLE_UNREADABLE,
        }
    }
    file
}

/// Copies `len` bytes (1..=[`STACK_TABLE_MAX`]) from `src` to the end of the tail; returns
/// where they went, or `None` when there is no room or the read failed.
#[inline(always)]
fn append(rec: &mut StackRecord, src: u64, len: u64) -> Option<u16> {
    let at = u64::from(tail_len(rec));
    if len == 0 || len > STACK_TABLE_MAX as u64 || at + len > STACK_TAIL_MAX as u64 {
        return None;
    }
    // In forms the verifier can bound: `at` below the maximum, `n` in 1..=STACK_TABLE_MAX,
    // and the tail has room for both. The compiler knows these masks change nothing and would
    // drop them; the verifier does not know it.
    let at = (opaque(at) & (STACK_TAIL_MAX as u64 - 1)) as usize;
    let n = ((opaque(len) - 1) & (STACK_TABLE_MAX as u64 - 1)) + 1;
    let dst = rec.tail.as_mut_ptr().wrapping_add(at);
    // SAFETY: `at + n` is within the tail (sized for it); the helper validates `src`.
    let ret = unsafe { generated::bpf_probe_read_user(dst.cast(), n as u32, src as *const _) };
    if ret != 0 {
        return None;
    }
    set_tail_len(rec, (at as u64 + n) as u32);
    Some(at as u16)
}

/// Copies the characters of the compact `str` at `obj` (as CPython stores them) to the tail,
/// at most `max` bytes: the first ones, or the last (`keep_end`, for file names). Returns
/// `(offset, length, kind, cut)`.
#[inline(always)]
fn copy_str(
    rec: &mut StackRecord,
    obj: u64,
    image: &PyImage,
    max: u64,
    keep_end: bool,
) -> Option<(u16, u16, u8, bool)> {
    if image.str_data == 0 {
        return None;
    }
    let state = u32::from(user::<u8>(obj + u64::from(image.str_state))?);
    let length = user::<i64>(obj + u64::from(image.str_length))?;
    let bit = |n: u16| (state >> (n & 7)) & 1 != 0;
    let kind = (state >> (image.str_kind_shift & 7)) & 7;
    if !bit(image.str_compact_bit) || !matches!(kind, 1 | 2 | 4) || length < 0 {
        return None;
    }
    let data = obj + u64::from(if bit(image.str_ascii_bit) { image.str_data } else { image.str_wide_data });
    let kind = u64::from(kind);
    // Compared before multiplying: `length` is the object's word, whatever it holds.
    let cut = length as u64 > max / kind;
    let bytes = if cut { max - max % kind } else { length as u64 * kind };
    if bytes == 0 {
        return Some((0, 0, kind as u8, false));
    }
    let skip = if cut && keep_end { length as u64 * kind - bytes } else { 0 };
    let off = append(rec, data + skip, bytes)?;
    Some((off, bytes as u16, kind as u8, cut))
}

/// Copies the start of the `bytes` object at `obj` (a line table) to the tail, as much as
/// [`STACK_TABLE_MAX`] and the room left allow. Returns `(offset, length, whole size)`.
#[inline(always)]
fn copy_bytes(rec: &mut StackRecord, obj: u64, image: &PyImage) -> Option<(u16, u16, u32)> {
    let size = user::<i64>(obj + u64::from(image.bytes_size))?;
    if !(0..=u32::MAX as i64).contains(&size) {
        return None;
    }
    let room = (STACK_TAIL_MAX as u64).saturating_sub(u64::from(tail_len(rec)));
    let len = (size as u64).min(STACK_TABLE_MAX as u64).min(room);
    if len == 0 {
        return Some((0, 0, size as u32));
    }
    let off = append(rec, obj + u64::from(image.bytes_data), len)?;
    Some((off, len as u16, size as u32))
}
