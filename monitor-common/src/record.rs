//! Records the kernel programs send through the [`EVENTS`](crate::EVENTS) ring buffer.
//!
//! Every record starts with a [`RecordHeader`]. Records with a variable-length tail (a path)
//! are sent only up to the bytes in use; `header.size` says how many bytes were sent, and the
//! daemon checks it against what it received.

pub const COMM_LEN: usize = 16;
/// Linux PATH_MAX: paths are captured whole up to this length.
pub const PATH_MAX: usize = 4096;
/// Bytes of NUL-separated argv captured for an exec.
pub const ARGS_MAX: usize = 2048;
/// Number of argv entries captured at most.
pub const ARGV_MAX: usize = 32;
/// `sizeof(struct sockaddr_storage)`.
pub const SOCKADDR_MAX: usize = 128;
/// Bytes of the caller's sockaddr a [`ConnectRecord`] keeps in `requested` (a `sockaddr_in6`
/// is 28).
pub const REQUESTED_MAX: usize = 32;

/// `openat`/`openat2` by a tracked process ([`OpenRecord`]).
pub const RECORD_OPEN: u32 = 1;
/// `connect` by a tracked process ([`ConnectRecord`]).
pub const RECORD_CONNECT: u32 = 2;
/// `execve`/`execveat` by a tracked process that failed ([`ExecRecord`], `result < 0`).
pub const RECORD_EXEC_FAILED: u32 = 3;
/// A process (tracked, or running a binary not judged yet) replaced its image ([`ExecRecord`]).
pub const RECORD_IMAGE: u32 = 4;
/// A tracked process created a process or thread ([`ForkRecord`]).
pub const RECORD_FORK: u32 = 5;
/// The last thread of a tracked process exited ([`ExitRecord`]).
pub const RECORD_EXIT: u32 = 6;
/// `sendto`/`sendmsg` with an explicit destination by a tracked process ([`ConnectRecord`]).
pub const RECORD_SEND: u32 = 7;
/// A CPython interpreter reached one of the points premain probes ([`MarkerRecord`]).
pub const RECORD_MARKER: u32 = 8;
/// A tracked process reached into another process: `process_vm_readv`/`writev`, ptrace
/// attach or seize ([`TargetRecord`]).
pub const RECORD_TARGET: u32 = 9;
/// A tracked process created a raw or packet socket ([`SocketRecord`]).
pub const RECORD_SOCKET: u32 = 10;
/// A tracked process gave a file a new name: rename, link or symlink ([`NameRecord`]).
pub const RECORD_NAME: u32 = 11;
/// A tracked process created an io_uring or submitted a request to one ([`UringRecord`]).
pub const RECORD_URING: u32 = 12;
/// The Python stack of a CPython process's thread at the entry of a syscall it is recorded
/// for ([`StackRecord`]); that syscall's own record follows.
pub const RECORD_STACK: u32 = 13;

/// The path or filename did not fit and was cut.
pub const FLAG_PATH_TRUNCATED: u32 = 1;
/// argv had more entries or bytes than captured.
pub const FLAG_ARGS_TRUNCATED: u32 = 1 << 1;
/// A user-memory argument could not be read; the corresponding field is empty.
pub const FLAG_READ_FAILED: u32 = 1 << 2;
/// On [`RECORD_IMAGE`]: the process was tracked before the exec, so the exec is its action.
pub const FLAG_EXEC_BY_TRACKED: u32 = 1 << 3;
/// On [`RECORD_IMAGE`]: the executable was unknown and the kernel stopped the process
/// (`SIGSTOP`) until the daemon has judged it and, for CPython, attached its probes.
pub const FLAG_HELD: u32 = 1 << 4;
/// On [`RECORD_OPEN`] and [`RECORD_NAME`]: the kernel path is cut (more components or bytes
/// than the walk takes); it holds the innermost components.
pub const FLAG_KPATH_TRUNCATED: u32 = 1 << 5;
/// On [`RECORD_OPEN`]: the open succeeded but the opened file could not be read from the
/// descriptor table; `kpath`, `dev` and `ino` are empty.
pub const FLAG_NO_FILE: u32 = 1 << 6;
/// The syscall was a 32-bit (ia32, `int 0x80`) one made by a 64-bit process.
pub const FLAG_COMPAT: u32 = 1 << 7;
/// On [`RECORD_CONNECT`] and [`RECORD_SEND`]: the guard denied the call (`EPERM`).
pub const FLAG_GUARD_DENIED: u32 = 1 << 8;
/// On records the guard decides on: under dry-run, it would have denied or killed.
pub const FLAG_GUARD_WOULD_DENY: u32 = 1 << 9;
/// With one of the others: decided by the kernel's own view of the thread's phase, the
/// daemon not having judged its latest change yet.
pub const FLAG_GUARD_FALLBACK: u32 = 1 << 10;
/// On [`RECORD_IMAGE`] and [`RECORD_TARGET`]: the guard killed the process (`SIGKILL`) in the
/// call, before its return to user space (an exec: before the new program's first
/// instruction).
pub const FLAG_GUARD_KILLED: u32 = 1 << 11;
/// On [`RECORD_CONNECT`] and [`RECORD_SEND`]: `addr` is the kernel's own copy of the
/// destination (seen by a cgroup program during the call), and the caller's sockaddr, read
/// from its memory at the call's return, named another one (or could not be read): it was
/// rewritten after the kernel copied it (a TOCTOU race), or a socket load balancer rewrote
/// the destination. `requested` holds the caller's bytes (empty when unreadable).
pub const FLAG_DEST_REWRITTEN: u32 = 1 << 12;

pub const SYSCALL_OPENAT: u32 = 1;
pub const SYSCALL_OPENAT2: u32 = 2;
pub const SYSCALL_CONNECT: u32 = 3;
pub const SYSCALL_EXECVE: u32 = 4;
pub const SYSCALL_EXECVEAT: u32 = 5;
pub const SYSCALL_SENDTO: u32 = 6;
pub const SYSCALL_SENDMSG: u32 = 7;
pub const SYSCALL_OPEN: u32 = 8;
pub const SYSCALL_CREAT: u32 = 9;
pub const SYSCALL_OPEN_BY_HANDLE_AT: u32 = 10;
pub const SYSCALL_SENDMMSG: u32 = 11;
pub const SYSCALL_PROCESS_VM_READV: u32 = 12;
pub const SYSCALL_PROCESS_VM_WRITEV: u32 = 13;
pub const SYSCALL_PTRACE: u32 = 14;
pub const SYSCALL_SOCKET: u32 = 15;
pub const SYSCALL_RENAME: u32 = 16;
pub const SYSCALL_RENAMEAT: u32 = 17;
pub const SYSCALL_RENAMEAT2: u32 = 18;
pub const SYSCALL_LINK: u32 = 19;
pub const SYSCALL_LINKAT: u32 = 20;
pub const SYSCALL_SYMLINK: u32 = 21;
pub const SYSCALL_SYMLINKAT: u32 = 22;
/// An open made by an io_uring request (`IORING_OP_OPENAT`/`OPENAT2`), seen at its completion;
/// a new name given by one (`IORING_OP_RENAMEAT`, `LINKAT`, `SYMLINKAT`), seen at submission.
pub const SYSCALL_IO_URING: u32 = 23;
/// An open no kernel program recorded (a 32-bit syscall, a record lost to a full ring), seen
/// by the daemon's credential file watch; never sent by the kernel.
pub const SYSCALL_UNSEEN: u32 = 24;

/// [`UringRecord::opcode`] of a ring's creation (`io_uring_setup`); other values are the
/// request's `IORING_OP_*`.
pub const URING_SETUP: u32 = 0xffff;
pub const IORING_OP_SENDMSG: u32 = 9;
pub const IORING_OP_CONNECT: u32 = 16;
pub const IORING_OP_OPENAT: u32 = 18;
pub const IORING_OP_OPENAT2: u32 = 28;
pub const IORING_OP_RENAMEAT: u32 = 35;
pub const IORING_OP_SYMLINKAT: u32 = 38;
pub const IORING_OP_LINKAT: u32 = 39;
pub const IORING_OP_SOCKET: u32 = 45;
pub const IORING_OP_SENDMSG_ZC: u32 = 48;

/// `PTRACE_ATTACH` and `PTRACE_SEIZE`: the requests that take hold of another process.
pub const PTRACE_ATTACH: u32 = 16;
pub const PTRACE_SEIZE: u32 = 0x4206;

/// Bytes of a marker's text (a code object's file name, a `-m` module name...): a `str`'s
/// characters as CPython stores them, so a path of PATH_MAX Latin-1 characters, or of a
/// quarter of that in UCS-4.
pub const MARK_TEXT_MAX: usize = PATH_MAX;
/// Bytes of an audit event name kept in a marker.
pub const MARK_NAME_MAX: usize = 32;

/// `PySys_Audit("cpython.run_*")`: the user's code starts now. `name` holds the event name,
/// `text` its first argument (see [`MarkerRecord::format`]).
pub const MARK_MAIN: u32 = 1;
/// `PyEval_EvalCode` entered: a module body, a script, an `exec()` of a string. `text` holds
/// the characters of the code object's `co_filename` (see [`MarkerRecord::text_kind`]; empty
/// with `FLAG_READ_FAILED` when it is not a compact `str` or could not be read).
pub const MARK_EVAL_ENTER: u32 = 2;
/// `PyEval_EvalCode` returned.
pub const MARK_EVAL_EXIT: u32 = 3;
/// `_PyInterpreterState_SetRunningMain` (3.12+), called once right before the user's code is
/// dispatched: the same moment as [`MARK_MAIN`], without its name or argument.
pub const MARK_RUNNING_MAIN: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// `RECORD_*`.
    pub kind: u32,
    /// Bytes of the record as sent, header included.
    pub size: u32,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    /// `start_boottime` of the process (its thread group leader): with `pid`, who it is.
    pub start_ns: u64,
    /// Thread group id (what userspace calls the pid).
    pub pid: u32,
    pub tid: u32,
    /// Thread group id of the real parent.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `FLAG_*`.
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
}

/// Identity of an executable as the kernel sees it. `dev` is the kernel's internal encoding
/// (`MAJOR << 20 | MINOR`), not the userspace `st_dev` one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExeKey {
    pub dev: u64,
    pub ino: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub _pad: u32,
}

/// An open. `tail` holds the kernel's path of the opened file (`kpath_len` bytes, walked from
/// the new descriptor at syscall exit, so symlinks, `..`, cwd, dirfd and strings changed by
/// another thread are already resolved), then the string the caller passed (`path_len`
/// bytes; none for `open_by_handle_at`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenRecord {
    pub header: RecordHeader,
    /// The new fd, or `-errno`.
    pub result: i64,
    /// The opened file's device (kernel encoding, see [`ExeKey`]) and inode.
    pub dev: u64,
    pub ino: u64,
    pub dirfd: i32,
    pub open_flags: u32,
    pub mode: u32,
    /// `SYSCALL_*`.
    pub syscall: u32,
    /// `openat2`'s `how.resolve`.
    pub resolve: u32,
    /// Bytes of the caller's string in `tail`, after the kernel path (no NUL).
    pub path_len: u32,
    /// Bytes of the kernel path at the start of `tail` (no NUL).
    pub kpath_len: u32,
    /// The opened inode's link count and `i_mode`.
    pub nlink: u32,
    pub file_mode: u32,
    pub _pad: u32,
    pub tail: [u8; 2 * PATH_MAX],
}

/// A process acting on another one: `process_vm_readv`/`writev` or a ptrace request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetRecord {
    pub header: RecordHeader,
    pub result: i64,
    /// `SYSCALL_*`.
    pub syscall: u32,
    /// The pid the caller named.
    pub target_pid: u32,
    /// The ptrace request (0 otherwise).
    pub request: u32,
    pub _pad: u32,
}

/// `socket()` of a raw or packet socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketRecord {
    pub header: RecordHeader,
    /// The new fd, or `-errno`.
    pub result: i64,
    pub family: u32,
    /// The type without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`.
    pub sock_type: u32,
    pub protocol: u32,
    pub _pad: u32,
}

/// rename, link or symlink, by syscall or io_uring request. `tail` holds the kernel path of
/// the directory the new name is relative to (`base_len` bytes: the cwd or `newdirfd`, at the
/// syscall or the submission; empty when the new name is absolute), then the old name
/// (`old_len`) and the new name (`new_len`): as passed, or the kernel's copies for io_uring.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameRecord {
    pub header: RecordHeader,
    pub result: i64,
    /// `SYSCALL_*`.
    pub syscall: u32,
    pub olddirfd: i32,
    pub newdirfd: i32,
    pub flags: u32,
    pub base_len: u32,
    pub old_len: u32,
    pub new_len: u32,
    /// With `syscall` [`SYSCALL_IO_URING`]: the request's `IORING_OP_RENAMEAT`, `LINKAT` or
    /// `SYMLINKAT` (its `result` is 0: the outcome is not known at submission); else 0.
    pub opcode: u32,
    pub tail: [u8; 3 * PATH_MAX],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRecord {
    pub header: RecordHeader,
    /// 0, or `-errno` (`-EINPROGRESS` for a non-blocking connect still under way).
    pub result: i64,
    pub fd: i32,
    /// The caller's `addrlen`.
    pub addr_len: u32,
    /// The destination: the kernel's copy (an IPv4 or IPv6 connect or addressed send seen by
    /// the cgroup programs), else the first `min(addr_len, SOCKADDR_MAX)` bytes of the
    /// caller's sockaddr as read at the call's return.
    pub addr: [u8; SOCKADDR_MAX],
    /// With [`FLAG_DEST_REWRITTEN`]: the first `min(addr_len, REQUESTED_MAX)` bytes of the
    /// caller's sockaddr as read at the call's return (zero when unreadable); else zero.
    pub requested: [u8; REQUESTED_MAX],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    pub header: RecordHeader,
    /// 0 for [`RECORD_IMAGE`], `-errno` for [`RECORD_EXEC_FAILED`].
    pub result: i64,
    /// The new executable (zero for a failed exec).
    pub exe: ExeKey,
    /// Thread id that called exec, when a non-leader thread did (else the pid).
    pub old_pid: u32,
    /// `TRACK_*` bits the kernel gave the process after this exec.
    pub tracking: u32,
    pub dirfd: i32,
    pub exec_flags: u32,
    /// argv entries captured in `args`.
    pub argc: u32,
    /// Bytes used in `args`: NUL-terminated strings back to back.
    pub args_len: u32,
    /// Bytes used in `filename` (no NUL).
    pub filename_len: u32,
    pub syscall: u32,
    pub args: [u8; ARGS_MAX],
    pub filename: [u8; PATH_MAX],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkRecord {
    pub header: RecordHeader,
    pub child_pid: u32,
    pub child_tid: u32,
    /// 1 when the new task is a thread of the creator's process, else 0.
    pub is_thread: u32,
    /// `TRACK_*` bits given to the child.
    pub tracking: u32,
    /// `start_boottime` of the new process (of the creator for a thread).
    pub child_start_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    pub header: RecordHeader,
    /// The wait status (`exit_code` of the task: code << 8 | signal).
    pub exit_code: i32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerRecord {
    pub header: RecordHeader,
    /// `MARK_*`.
    pub marker: u32,
    /// For [`MARK_MAIN`]: the audit argument format, `b'u'` (`text` is a `wchar_t` string,
    /// UTF-32) or `b'O'` (`text` is a `str`'s characters); else 0.
    pub format: u32,
    /// Bytes used in `text`.
    pub text_len: u32,
    /// When `text` holds a `str`'s characters: bytes per character, 1 (Latin-1, ASCII
    /// included), 2 (UCS-2) or 4 (UCS-4), in the machine's byte order; else 0.
    pub text_kind: u32,
    /// For [`MARK_EVAL_ENTER`]: the address of the globals dict the code runs with
    /// (`PyEval_EvalCode`'s second argument: a module's `__dict__`, or `site`'s for a `.pth`
    /// line); else 0. Functions that code defines keep it as their globals, so a later frame
    /// is known by it.
    pub globals: u64,
    /// NUL-padded.
    pub name: [u8; MARK_NAME_MAX],
    pub text: [u8; MARK_TEXT_MAX],
}

/// An io_uring creation or submission. `tail` holds, for an open, the file name as the kernel
/// copied it; for a connect or a `sendmsg` with a destination, the caller's sockaddr.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UringRecord {
    pub header: RecordHeader,
    pub user_data: u64,
    /// `IORING_OP_*`, or [`URING_SETUP`].
    pub opcode: u32,
    /// For an open or a socket: the fixed-file slot + 1 when the result is a direct
    /// descriptor (it never gets a normal fd), else 0.
    pub file_slot: u32,
    /// Open: the directory fd; socket: the domain; setup: the ring's fd.
    pub arg0: i32,
    /// Open: the flags; socket: the type.
    pub arg1: u32,
    /// Socket: the protocol.
    pub arg2: u32,
    pub tail_len: u32,
    pub tail: [u8; PATH_MAX],
}

/// Frames a [`StackRecord`] keeps, innermost first.
pub const STACK_FRAMES_MAX: usize = 32;
/// Bytes of names and line tables a [`StackRecord`] carries at most.
pub const STACK_TAIL_MAX: usize = 8192;
/// Bytes of a function name kept (a `str`'s characters as stored).
pub const STACK_NAME_MAX: usize = 128;
/// Bytes of a file name kept: its end, when longer.
pub const STACK_FILE_MAX: usize = 512;
/// Bytes of a code object's line table kept: its start, when longer.
pub const STACK_TABLE_MAX: usize = 1024;

/// [`StackRecord::status`]: the stack was walked.
pub const STACK_OK: u32 = 0;
/// The process's image has no stack layout (a version or build premain does not know).
pub const STACK_UNSUPPORTED: u32 = 1;
/// The process's `_PyRuntime` is not located: no probe of its image has fired in it yet.
pub const STACK_NO_RUNTIME: u32 = 2;
/// No thread state of the interpreter belongs to the thread.
pub const STACK_NO_THREAD: u32 = 3;
/// Interpreter memory the walk needed could not be read.
pub const STACK_UNREADABLE: u32 = 4;

/// [`StackFrame::flags`]: the name is cut to its first [`STACK_NAME_MAX`] bytes.
pub const FRAME_NAME_CUT: u32 = 1;
/// The file name is cut to its last [`STACK_FILE_MAX`] bytes.
pub const FRAME_FILE_CUT: u32 = 1 << 1;
/// The line table is cut to its first [`STACK_TABLE_MAX`] bytes (or to the room left).
pub const FRAME_TABLE_CUT: u32 = 1 << 2;
/// The name could not be read (not a compact `str`, memory unreadable, no room left).
pub const FRAME_NAME_UNREADABLE: u32 = 1 << 3;
/// The file name could not be read.
pub const FRAME_FILE_UNREADABLE: u32 = 1 << 4;
/// The line table could not be read.
pub const FRAME_TABLE_UNREADABLE: u32 = 1 << 5;
/// The code object could not be read: only `code`, `globals` and `instr` hold.
pub const FRAME_CODE_UNREADABLE: u32 = 1 << 6;

/// One Python frame as the kernel walked it. Its texts are in the record's `tail`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackFrame {
    /// Address of the code object.
    pub code: u64,
    /// Address of the frame's globals dict.
    pub globals: u64,
    /// Where the frame is: `f_lasti` (3.8-3.10, sign-extended) or the address of the
    /// instruction (3.11+: `prev_instr`, `instr_ptr`).
    pub instr: u64,
    /// The code object's `co_firstlineno`.
    pub firstlineno: i32,
    /// `FRAME_*`.
    pub flags: u32,
    /// Offsets and lengths in the tail of the name, the file name and the line table.
    pub name_off: u16,
    pub name_len: u16,
    pub file_off: u16,
    pub file_len: u16,
    pub table_off: u16,
    pub table_len: u16,
    /// Bytes per character (1, 2, 4) of the name and file name, as [`MarkerRecord::text_kind`].
    pub name_kind: u8,
    pub file_kind: u8,
    pub _pad: u16,
    /// The whole line table's length in bytes (`table_len` is less when cut).
    pub table_size: u32,
    pub _pad2: u32,
}

/// A thread's Python stack at a syscall's entry, innermost frame first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackRecord {
    pub header: RecordHeader,
    /// `SYSCALL_*` of the syscall the stack was walked at.
    pub syscall: u32,
    /// `STACK_*`.
    pub status: u32,
    /// Frames used in `frames`.
    pub frame_count: u32,
    /// Bytes used in `tail`.
    pub tail_len: u32,
    /// 1 when the stack had more frames than `frames` holds.
    pub truncated: u32,
    /// The walk's own state between its steps (one program per frame): the image's
    /// `PY_IMAGES` slot, the next frame's address, the file name object of the last frame.
    pub image: u32,
    pub next: u64,
    pub last_file: u64,
    pub frames: [StackFrame; STACK_FRAMES_MAX],
    /// Texts and line tables; past [`STACK_TAIL_MAX`], room for one more copy of the largest
    /// (never used, but a bounded write at any offset below the maximum then fits).
    pub tail: [u8; STACK_TAIL_MAX + STACK_TABLE_MAX],
}

/// The largest record: the size of the per-CPU scratch area records are built in.
pub const RECORD_MAX: usize = core::mem::size_of::<NameRecord>();

/// The per-CPU area records are built in (far larger than the 512-byte BPF stack).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Scratch(pub [u8; RECORD_MAX]);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::ExeKey {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::RecordHeader {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::OpenRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::ConnectRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::ExecRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::ForkRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::ExitRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::MarkerRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::TargetRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::SocketRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::NameRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::UringRecord {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::StackFrame {}
    // SAFETY: repr(C), integer fields only, no padding (asserted in `layout`).
    unsafe impl aya::Pod for super::StackRecord {}
}

/// Compile-time proof that no type has implicit padding: each size equals the sum of its
/// fields, and variable tails sit where the daemon expects them.
mod layout {
    use core::mem::{offset_of, size_of};

    use super::*;

    const _: () = {
        assert!(size_of::<RecordHeader>() == 72);
        assert!(size_of::<ExeKey>() == 32);
        assert!(offset_of!(OpenRecord, tail) == 136);
        assert!(size_of::<OpenRecord>() == 136 + 2 * PATH_MAX);
        assert!(size_of::<TargetRecord>() == 96);
        assert!(size_of::<SocketRecord>() == 96);
        assert!(offset_of!(NameRecord, tail) == 112);
        assert!(size_of::<NameRecord>() == 112 + 3 * PATH_MAX);
        assert!(offset_of!(UringRecord, tail) == 104);
        assert!(size_of::<UringRecord>() == 104 + PATH_MAX);
        assert!(size_of::<ConnectRecord>() == 88 + SOCKADDR_MAX + REQUESTED_MAX);
        assert!(offset_of!(ExecRecord, args) == 144);
        assert!(offset_of!(ExecRecord, filename) == 144 + ARGS_MAX);
        assert!(size_of::<ExecRecord>() == 144 + ARGS_MAX + PATH_MAX);
        assert!(size_of::<ForkRecord>() == 96);
        assert!(size_of::<ExitRecord>() == 80);
        assert!(offset_of!(MarkerRecord, text) == 96 + MARK_NAME_MAX);
        assert!(size_of::<MarkerRecord>() == 96 + MARK_NAME_MAX + MARK_TEXT_MAX);
        assert!(RECORD_MAX >= size_of::<MarkerRecord>());
        assert!(RECORD_MAX >= size_of::<OpenRecord>());
        assert!(RECORD_MAX >= size_of::<ExecRecord>());
        assert!(size_of::<StackFrame>() == 56);
        assert!(offset_of!(StackRecord, frames) == 112);
        assert!(offset_of!(StackRecord, tail) == 112 + 56 * STACK_FRAMES_MAX);
        assert!(size_of::<StackRecord>() == 112 + 56 * STACK_FRAMES_MAX + STACK_TAIL_MAX + STACK_TABLE_MAX);
        assert!(RECORD_MAX >= size_of::<StackRecord>());
        assert!(STACK_TAIL_MAX < 1 << 16, "tail offsets are u16");
    };
}
