//! Uprobes on CPython images: where the user's code starts (`PySys_Audit("cpython.run_*")`,
//! and `_PyInterpreterState_SetRunningMain` on 3.12+) and which code object runs (`PyEval_EvalCode` entry and return). Together with the syscall
//! records they let the daemon tell start-up, import and runtime apart.
//!
//! A uprobe fires for every process mapping the image; only processes the kernel tracks as
//! Python are reported, and `PySys_Audit` (called for every audit event) is filtered here to
//! the four `cpython.run_*` events.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::{bpf_get_attach_cookie, bpf_probe_read_user_str},
    },
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use monitor_common::{
    FLAG_PATH_TRUNCATED, FLAG_READ_FAILED, HOOK_PYTHON, MARK_EVAL_ENTER, MARK_EVAL_EXIT, MARK_MAIN,
    MARK_NAME_MAX, MARK_RUNNING_MAIN, MARK_TEXT_MAX, MarkerRecord, PyImage, PyProcess, RECORD_MARKER,
    TRACK_PYTHON, probe_cookie_parts,
};

use crate::{
    emit::{fill_header, scratch, send},
    guard,
    maps::{PY_IMAGES, PY_PROCESSES, TRACKED},
    process::renew_generation,
};

const RUN_PREFIX: [u8; 12] = *b"cpython.run_";

#[inline(always)]
fn python_process() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: copied out.
    unsafe { TRACKED.get(tgid) }.is_some_and(|flags| flags & TRACK_PYTHON != 0)
}

/// The layout of the probed image, from the slot the probe's cookie names; and, the first
/// time a process of that image is seen (or after an exec), where its `_PyRuntime` lies: the
/// probe's address minus the probed function's address in the file is where the image is
/// loaded (the kernel sets the instruction pointer to the probe's address for its handlers).
#[inline(always)]
fn image(ctx: &ProbeContext) -> PyImage {
    // SAFETY: the context is the probe's own.
    let (slot, function) = probe_cookie_parts(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) });
    let Some(image) = PY_IMAGES.get(slot).copied() else { return PyImage::default() };
    // SAFETY: a uprobe's context is the registers of the probed thread.
    let ip = unsafe { (*ctx.regs).rip };
    let runtime = match image.runtime_vaddr {
        0 => 0,
        at => ip.wrapping_sub(function).wrapping_add(at),
    };
    let located = PyProcess { runtime, image: slot, _pad: 0 };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: copied out.
    if unsafe { PY_PROCESSES.get(tgid) }.copied() != Some(located) {
        let _ = PY_PROCESSES.insert(tgid, located, 0);
    }
    image
}

/// A marker record in the scratch area with an empty text.
#[inline(always)]
fn marker(kind: u32) -> Option<&'static mut MarkerRecord> {
    let rec = scratch::<MarkerRecord>()?;
    fill_header(&mut rec.header, RECORD_MARKER);
    rec.marker = kind;
    rec.format = 0;
    rec.text_len = 0;
    rec.text_kind = 0;
    rec.globals = 0;
    rec.name = [0; MARK_NAME_MAX];
    Some(rec)
}

#[inline(always)]
fn finish(rec: &mut MarkerRecord) {
    let len = (rec.text_len as usize).min(MARK_TEXT_MAX);
    let size = core::mem::offset_of!(MarkerRecord, text) + len;
    rec.header.size = size as u32;
    send(HOOK_PYTHON, rec, size);
}

/// Copies the characters of the compact `str` at `obj` into the record's text, as CPython
/// stores them (1, 2 or 4 bytes each, said in `text_kind`): the daemon decodes them. A `str`
/// that is not compact (an instance of a subclass, a legacy string) keeps its characters
/// elsewhere and is flagged unreadable.
#[inline(always)]
fn read_str(rec: &mut MarkerRecord, obj: u64, layout: PyImage) {
    if obj == 0 || layout.str_data == 0 {
        rec.header.flags |= FLAG_READ_FAILED;
        return;
    }
    // SAFETY: the helper validates the user address.
    let state = unsafe { bpf_probe_read_user((obj + u64::from(layout.str_state)) as *const u8) };
    // SAFETY: as above.
    let length = unsafe { bpf_probe_read_user((obj + u64::from(layout.str_length)) as *const i64) };
    let (Ok(state), Ok(length)) = (state, length) else {
        rec.header.flags |= FLAG_READ_FAILED;
        return;
    };
    let state = u32::from(state);
    let bit = |n: u16| (state >> (n & 7)) & 1 != 0;
    let kind = (state >> (layout.str_kind_shift & 7)) & 7;
    if !bit(layout.str_compact_bit) || !matches!(kind, 1 | 2 | 4) || length < 0 {
        rec.header.flags |= FLAG_READ_FAILED;
        return;
    }
    let data = if bit(layout.str_ascii_bit) { layout.str_data } else { layout.str_wide_data };
    // Compared before multiplying: `length` is the object's word, whatever it holds.
    let mut bytes = MARK_TEXT_MAX as u64;
    if length as u64 > (MARK_TEXT_MAX as u64) / u64::from(kind) {
        rec.header.flags |= FLAG_PATH_TRUNCATED;
    } else {
        bytes = length as u64 * u64::from(kind);
    }
    rec.text_kind = kind;
    if bytes == 0 {
        return;
    }
    // In 1..=MARK_TEXT_MAX (a power of two), in a form the verifier can bound.
    let n = ((bytes - 1) & (MARK_TEXT_MAX as u64 - 1)) + 1;
    // SAFETY: `n` fits the destination; the helper validates the user address.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            rec.text.as_mut_ptr().cast(),
            n as u32,
            (obj + u64::from(data)) as *const _,
        )
    };
    if ret != 0 {
        rec.header.flags |= FLAG_READ_FAILED;
        rec.text_kind = 0;
        return;
    }
    rec.text_len = n as u32;
}

/// Copies a `wchar_t` string (UTF-32) as raw bytes; the daemon finds its end.
#[inline(always)]
fn read_wide_str(rec: &mut MarkerRecord, ptr: u64) {
    // A string near the end of its mapping makes a long read fail: try shorter ones. Its end
    // is not known, so what follows it is copied too: not more than a command's worth.
    for len in [512, 128, 32] {
        // SAFETY: `len` fits the destination; the helper validates the user address.
        let ret = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_user(
                rec.text.as_mut_ptr().cast(),
                len as u32,
                ptr as *const _,
            )
        };
        if ret == 0 {
            rec.text_len = len as u32;
            return;
        }
    }
    rec.header.flags |= FLAG_READ_FAILED;
}

/// `int PySys_Audit(const char *event, const char *format, ...)`.
#[uprobe]
pub fn python_audit(ctx: ProbeContext) -> u32 {
    if !python_process() {
        return 0;
    }
    // Audit events come from the start of the interpreter's initialisation on (imports):
    // the earliest point the stack walk can learn where the interpreter is.
    let layout = image(&ctx);
    let Some(event) = ctx.arg::<u64>(0) else { return 0 };
    let mut name = [0u8; MARK_NAME_MAX];
    // SAFETY: the destination is `name`; the helper validates the user address.
    let n =
        unsafe { bpf_probe_read_user_str(name.as_mut_ptr().cast(), MARK_NAME_MAX as u32, event as *const _) };
    if n <= RUN_PREFIX.len() as i64 {
        return 0;
    }
    let mut i = 0;
    while i < RUN_PREFIX.len() {
        if name[i] != RUN_PREFIX[i] {
            return 0;
        }
        i += 1;
    }
    let Some(rec) = marker(MARK_MAIN) else { return 0 };
    guard::on_main(rec.header.pid, rec.header.tid, rec.header.ktime_ns);
    rec.name = name;
    let format = ctx.arg::<u64>(1).unwrap_or(0);
    let arg = ctx.arg::<u64>(2).unwrap_or(0);
    // SAFETY: the helper validates the user address.
    let first = unsafe { bpf_probe_read_user(format as *const u8) }.unwrap_or(0);
    rec.format = u32::from(first);
    match first {
        b'u' => read_wide_str(rec, arg),
        b'O' => read_str(rec, arg, layout),
        _ => {}
    }
    finish(rec);
    0
}

/// `int _PyInterpreterState_SetRunningMain(PyInterpreterState *interp)` (3.12+). Unlike
/// `PySys_Audit`, it runs once per process, so once the daemon has seen it precede the audit
/// event on an image, it detaches the `PySys_Audit` probe from that image.
#[uprobe]
pub fn python_running_main(ctx: ProbeContext) -> u32 {
    if !python_process() {
        return 0;
    }
    image(&ctx);
    let Some(rec) = marker(MARK_RUNNING_MAIN) else { return 0 };
    guard::on_main(rec.header.pid, rec.header.tid, rec.header.ktime_ns);
    finish(rec);
    0
}

/// `PyObject *PyEval_EvalCode(PyObject *co, PyObject *globals, PyObject *locals)`.
#[uprobe]
pub fn python_eval_enter(ctx: ProbeContext) -> u32 {
    if !python_process() {
        return 0;
    }
    let layout = image(&ctx);
    let code = ctx.arg::<u64>(0).unwrap_or(0);
    let globals = ctx.arg::<u64>(1).unwrap_or(0);
    let Some(rec) = marker(MARK_EVAL_ENTER) else { return 0 };
    rec.globals = globals;
    // Module-level code may start here: the daemon must see this process's records again
    // until it has read this marker.
    renew_generation(rec.header.pid, rec.header.ktime_ns);
    // SAFETY: the helper validates the user address.
    let filename = match unsafe { bpf_probe_read_user((code + u64::from(layout.co_filename)) as *const u64) }
    {
        Ok(ptr) if code != 0 && layout.co_filename != 0 => ptr,
        _ => 0,
    };
    read_str(rec, filename, layout);
    let len = if rec.text_kind == 1 { rec.text_len } else { 0 };
    guard::on_eval_enter(rec.header.pid, rec.header.tid, rec.header.ktime_ns, &rec.text, len);
    finish(rec);
    0
}

#[uretprobe]
pub fn python_eval_exit(_ctx: RetProbeContext) -> u32 {
    if !python_process() {
        return 0;
    }
    let Some(rec) = marker(MARK_EVAL_EXIT) else { return 0 };
    guard::on_eval_exit(rec.header.pid, rec.header.tid, rec.header.ktime_ns);
    finish(rec);
    0
}
