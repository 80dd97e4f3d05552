//! Turns ring-buffer bytes into [`Record`]s. Every length and kind is checked: a malformed
//! record is an error to count and skip, never a panic or an unchecked reinterpretation.

use std::mem::{offset_of, size_of};

use monitor_common::{
    ARGS_MAX, ConnectRecord, ExeKey, ExecRecord, ExitRecord, FLAG_DEST_REWRITTEN, FLAG_READ_FAILED,
    FRAME_FILE_UNREADABLE, FRAME_NAME_UNREADABLE, ForkRecord, MARK_EVAL_ENTER, MARK_EVAL_EXIT, MARK_MAIN,
    MARK_RUNNING_MAIN, MARK_TEXT_MAX, MarkerRecord, NameRecord, OpenRecord, PATH_MAX, RECORD_CONNECT,
    RECORD_EXEC_FAILED, RECORD_EXIT, RECORD_FORK, RECORD_IMAGE, RECORD_MARKER, RECORD_NAME, RECORD_OPEN,
    RECORD_SEND, RECORD_SOCKET, RECORD_STACK, RECORD_TARGET, RECORD_URING, REQUESTED_MAX, RecordHeader,
    SOCKADDR_MAX, STACK_FRAMES_MAX, STACK_TAIL_MAX, SocketRecord, StackRecord, TargetRecord, UringRecord,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {needed}-byte fixed part")]
    Short { len: usize, needed: usize },
    #[error("record header says {declared} bytes but {len} arrived")]
    SizeMismatch { declared: u32, len: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("{field} length {value} exceeds its {max}-byte buffer or the record")]
    BadLength { field: &'static str, value: u32, max: usize },
    #[error("text of {len} bytes is not a run of characters of kind {kind}")]
    TextKind { kind: u32, len: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    /// When the process started (`start_boottime`): with the pid, who it is.
    pub start_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub comm: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub header: Header,
    pub result: i64,
    pub dirfd: i32,
    pub flags: u32,
    pub mode: u32,
    pub syscall: u32,
    pub resolve: u32,
    /// The string the caller passed (empty for `open_by_handle_at`).
    pub path: Vec<u8>,
    /// The kernel's path of the opened file (empty when the open failed or it was unreadable).
    pub kpath: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u32,
    pub file_mode: u32,
}

/// `process_vm_readv`/`writev`, ptrace attach or seize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub header: Header,
    pub result: i64,
    pub syscall: u32,
    pub target_pid: u32,
    pub request: u32,
}

/// A raw or packet socket created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub header: Header,
    pub result: i64,
    pub family: u32,
    pub sock_type: u32,
    pub protocol: u32,
}

/// An io_uring ring created, or a request submitted to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uring {
    pub header: Header,
    pub opcode: u32,
    pub user_data: u64,
    pub file_slot: u32,
    pub arg0: i32,
    pub arg1: u32,
    pub arg2: u32,
    /// An open's file name, or a connect's or sendmsg's sockaddr.
    pub tail: Vec<u8>,
}

/// rename, link, symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub header: Header,
    pub result: i64,
    pub syscall: u32,
    pub olddirfd: i32,
    pub newdirfd: i32,
    pub flags: u32,
    /// With `syscall` `SYSCALL_IO_URING`: the request's `IORING_OP_*`.
    pub opcode: u32,
    /// The kernel path of the directory a relative new name is relative to (empty otherwise).
    pub base: Vec<u8>,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub header: Header,
    pub result: i64,
    pub fd: i32,
    /// The destination: the kernel's copy when a cgroup program saw it, else the bytes of the
    /// caller's sockaddr that were captured.
    pub addr: Vec<u8>,
    /// With `FLAG_DEST_REWRITTEN`: the caller's sockaddr as read at the call's return, which
    /// named another destination than the kernel's (empty when it could not be read).
    pub requested: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub header: Header,
    pub result: i64,
    pub exe: ExeKey,
    pub old_pid: u32,
    pub tracking: u32,
    pub dirfd: i32,
    pub flags: u32,
    pub syscall: u32,
    pub argv: Vec<Vec<u8>>,
    pub filename: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    pub header: Header,
    pub child_pid: u32,
    pub child_tid: u32,
    pub is_thread: bool,
    /// When the child process started (the creator's start for a thread).
    pub child_start_ns: u64,
    pub tracking: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub header: Header,
    pub exit_code: i32,
}

/// What a CPython probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The user's code starts: `how` is the audit event's suffix (`file`, `module`,
    /// `command`, `stdin`), `target` its argument (script path, module name, command).
    Main {
        how: String,
        target: Vec<u8>,
    },
    /// The user's code starts (3.12+): what it is comes from the command line.
    RunningMain,
    /// A code object starts running; its `co_filename` as the bytes of a file name, `None`
    /// when the kernel could not read it (not a compact `str`); and the address of the globals
    /// dict it runs with (0 when not known).
    EvalEnter {
        filename: Option<Vec<u8>>,
        globals: u64,
    },
    EvalExit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub header: Header,
    pub mark: Mark,
}

/// One Python frame as the kernel walked it (see `StackFrame`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedFrame {
    pub code: u64,
    pub globals: u64,
    pub instr: u64,
    pub firstlineno: i32,
    /// `FRAME_*`.
    pub flags: u32,
    /// The name's and file name's characters as the bytes they stand for; `None` when the
    /// kernel could not read them.
    pub name: Option<Vec<u8>>,
    pub file: Option<Vec<u8>>,
    /// The start of the line table (all of it unless `table_size` is larger).
    pub table: Vec<u8>,
    pub table_size: u32,
}

/// A thread's Python stack at the entry of a syscall (its record follows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub header: Header,
    /// `SYSCALL_*` of that syscall.
    pub syscall: u32,
    /// `STACK_*`.
    pub status: u32,
    pub truncated: bool,
    /// Innermost first.
    pub frames: Vec<WalkedFrame>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Open(Open),
    Connect(Connect),
    /// `sendto`/`sendmsg` to an explicit address.
    Send(Connect),
    Marker(Marker),
    /// An exec by a tracked process that failed.
    ExecFailed(Exec),
    /// A new program image (successful exec).
    Image(Exec),
    Fork(Fork),
    Exit(Exit),
    Target(Target),
    Socket(Socket),
    Name(Name),
    Uring(Uring),
    Stack(Stack),
}

impl Record {
    pub fn header(&self) -> &Header {
        match self {
            Self::Open(r) => &r.header,
            Self::Connect(r) | Self::Send(r) => &r.header,
            Self::Marker(r) => &r.header,
            Self::ExecFailed(r) | Self::Image(r) => &r.header,
            Self::Fork(r) => &r.header,
            Self::Exit(r) => &r.header,
            Self::Target(r) => &r.header,
            Self::Socket(r) => &r.header,
            Self::Name(r) => &r.header,
            Self::Uring(r) => &r.header,
            Self::Stack(r) => &r.header,
        }
    }
}

impl Stack {
    /// Whether `record` is the record of the syscall this stack was walked at.
    pub fn syscall_made(&self, record: &Record) -> bool {
        use monitor_common::{
            SYSCALL_CONNECT, SYSCALL_EXECVE, SYSCALL_EXECVEAT, SYSCALL_SENDMMSG, SYSCALL_SENDMSG,
            SYSCALL_SENDTO, SYSCALL_SOCKET,
        };
        match record {
            Record::Open(r) => r.syscall == self.syscall,
            Record::Connect(_) => self.syscall == SYSCALL_CONNECT,
            Record::Send(_) => [SYSCALL_SENDTO, SYSCALL_SENDMSG, SYSCALL_SENDMMSG].contains(&self.syscall),
            Record::ExecFailed(r) => r.syscall == self.syscall,
            Record::Image(_) => [SYSCALL_EXECVE, SYSCALL_EXECVEAT].contains(&self.syscall),
            Record::Target(r) => r.syscall == self.syscall,
            Record::Socket(_) => self.syscall == SYSCALL_SOCKET,
            Record::Name(r) => r.syscall == self.syscall,
            _ => false,
        }
    }
}

/// Copies the first `min(bytes.len(), size_of::<T>())` bytes into a zeroed `T`.
fn read_prefix<T: aya::Pod>(bytes: &[u8]) -> T {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let n = bytes.len().min(size_of::<T>());
    // SAFETY: `T: Pod` means every byte pattern (including all zeros) is a valid `T`; the copy
    // writes at most `size_of::<T>()` bytes from a slice at least `n` long.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.as_mut_ptr().cast::<u8>(), n);
        value.assume_init()
    }
}

fn need(bytes: &[u8], needed: usize) -> Result<(), DecodeError> {
    if bytes.len() < needed { Err(DecodeError::Short { len: bytes.len(), needed }) } else { Ok(()) }
}

fn tail<'a>(
    bytes: &'a [u8],
    start: usize,
    len: u32,
    max: usize,
    field: &'static str,
) -> Result<&'a [u8], DecodeError> {
    let len_usize = len as usize;
    if len_usize > max {
        return Err(DecodeError::BadLength { field, value: len, max });
    }
    bytes.get(start..start + len_usize).ok_or(DecodeError::BadLength {
        field,
        value: len,
        max: bytes.len().saturating_sub(start),
    })
}

fn header(raw: &RecordHeader) -> Header {
    let comm_len = raw.comm.iter().position(|&b| b == 0).unwrap_or(raw.comm.len());
    Header {
        ktime_ns: raw.ktime_ns,
        cgroup_id: raw.cgroup_id,
        start_ns: raw.start_ns,
        pid: raw.pid,
        tid: raw.tid,
        ppid: raw.ppid,
        uid: raw.uid,
        gid: raw.gid,
        flags: raw.flags,
        comm: raw.comm[..comm_len].to_vec(),
    }
}

/// A `wchar_t` string as the kernel copied it (raw UTF-32, maybe past its end), as UTF-8.
fn utf32_until_nul(raw: &[u8]) -> Vec<u8> {
    let text: String = raw
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .take_while(|&c| c != 0)
        .map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    text.into_bytes()
}

/// The characters of a `str` as CPython stores them (`kind` bytes each, see
/// [`MarkerRecord::text_kind`]) as the bytes of the file name they stand for: encoded as
/// CPython encodes file names on Linux, UTF-8 with `surrogateescape` (a lone surrogate
/// U+DC80..U+DCFF is the byte that was not UTF-8). Other lone surrogates, which no file name
/// decodes to, become U+FFFD.
pub(crate) fn str_bytes(raw: &[u8], kind: u32) -> Result<Vec<u8>, DecodeError> {
    let units: Vec<u32> = match kind {
        0 => return Ok(raw.to_vec()),
        1 => raw.iter().map(|&b| u32::from(b)).collect(),
        2 if raw.len().is_multiple_of(2) => {
            raw.chunks_exact(2).map(|c| u32::from(u16::from_ne_bytes([c[0], c[1]]))).collect()
        }
        4 if raw.len().is_multiple_of(4) => {
            raw.chunks_exact(4).map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        _ => return Err(DecodeError::TextKind { kind, len: raw.len() }),
    };
    let mut out = Vec::with_capacity(raw.len());
    for unit in units {
        match unit {
            0xdc80..=0xdcff => out.push((unit - 0xdc00) as u8),
            _ => {
                let c = char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER);
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
    }
    Ok(out)
}

/// Splits NUL-terminated strings laid back to back; a final unterminated piece is kept.
pub fn split_args(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut args: Vec<Vec<u8>> = bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    if bytes.last() == Some(&0) || bytes.is_empty() {
        args.pop();
    }
    args
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    need(bytes, size_of::<RecordHeader>())?;
    let raw: RecordHeader = read_prefix(bytes);
    if raw.size as usize != bytes.len() {
        return Err(DecodeError::SizeMismatch { declared: raw.size, len: bytes.len() });
    }
    let head = header(&raw);
    match raw.kind {
        RECORD_OPEN => {
            let start = offset_of!(OpenRecord, tail);
            need(bytes, start)?;
            let r: OpenRecord = read_prefix(bytes);
            let kpath = tail(bytes, start, r.kpath_len, PATH_MAX - 1, "kpath")?.to_vec();
            let path = tail(bytes, start + kpath.len(), r.path_len, PATH_MAX - 1, "path")?.to_vec();
            Ok(Record::Open(Open {
                kpath,
                dev: r.dev,
                ino: r.ino,
                nlink: r.nlink,
                file_mode: r.file_mode,
                header: head,
                result: r.result,
                dirfd: r.dirfd,
                flags: r.open_flags,
                mode: r.mode,
                syscall: r.syscall,
                resolve: r.resolve,
                path,
            }))
        }
        RECORD_CONNECT | RECORD_SEND => {
            need(bytes, size_of::<ConnectRecord>())?;
            let r: ConnectRecord = read_prefix(bytes);
            let captured = (r.addr_len as usize).min(SOCKADDR_MAX);
            let requested = (r.header.flags & FLAG_DEST_REWRITTEN != 0).then(|| {
                let bytes = &r.requested[..(r.addr_len as usize).min(REQUESTED_MAX)];
                // All zero: the caller's memory could not be read.
                if bytes.iter().all(|&b| b == 0) { Vec::new() } else { bytes.to_vec() }
            });
            let connect = Connect {
                header: head,
                result: r.result,
                fd: r.fd,
                addr: r.addr[..captured].to_vec(),
                requested,
            };
            Ok(if raw.kind == RECORD_SEND { Record::Send(connect) } else { Record::Connect(connect) })
        }
        RECORD_MARKER => {
            let start = offset_of!(MarkerRecord, text);
            need(bytes, start)?;
            let r: MarkerRecord = read_prefix(bytes);
            let text = tail(bytes, start, r.text_len, MARK_TEXT_MAX, "text")?;
            let mark = match r.marker {
                MARK_MAIN => {
                    let name_len = r.name.iter().position(|&b| b == 0).unwrap_or(r.name.len());
                    let name = String::from_utf8_lossy(&r.name[..name_len]);
                    let how = name.strip_prefix("cpython.run_").unwrap_or(&name).to_owned();
                    let target = match r.format {
                        0x75 => utf32_until_nul(text),
                        _ => str_bytes(text, r.text_kind)?,
                    };
                    Mark::Main { how, target }
                }
                MARK_EVAL_ENTER => Mark::EvalEnter {
                    filename: (raw.flags & FLAG_READ_FAILED == 0)
                        .then(|| str_bytes(text, r.text_kind))
                        .transpose()?,
                    globals: r.globals,
                },
                MARK_EVAL_EXIT => Mark::EvalExit,
                MARK_RUNNING_MAIN => Mark::RunningMain,
                other => return Err(DecodeError::UnknownKind(other << 16 | RECORD_MARKER)),
            };
            Ok(Record::Marker(Marker { header: head, mark }))
        }
        RECORD_EXEC_FAILED | RECORD_IMAGE => {
            let start = offset_of!(ExecRecord, filename);
            need(bytes, start)?;
            let r: ExecRecord = read_prefix(bytes);
            let args = tail(bytes, offset_of!(ExecRecord, args), r.args_len, ARGS_MAX, "args")?;
            let filename = tail(bytes, start, r.filename_len, PATH_MAX - 1, "filename")?.to_vec();
            let exec = Exec {
                header: head,
                result: r.result,
                exe: r.exe,
                old_pid: r.old_pid,
                tracking: r.tracking,
                dirfd: r.dirfd,
                flags: r.exec_flags,
                syscall: r.syscall,
                argv: split_args(args),
                filename,
            };
            Ok(if raw.kind == RECORD_IMAGE { Record::Image(exec) } else { Record::ExecFailed(exec) })
        }
        RECORD_FORK => {
            need(bytes, size_of::<ForkRecord>())?;
            let r: ForkRecord = read_prefix(bytes);
            Ok(Record::Fork(Fork {
                header: head,
                child_pid: r.child_pid,
                child_tid: r.child_tid,
                is_thread: r.is_thread != 0,
                child_start_ns: r.child_start_ns,
                tracking: r.tracking,
            }))
        }
        RECORD_EXIT => {
            need(bytes, size_of::<ExitRecord>())?;
            let r: ExitRecord = read_prefix(bytes);
            Ok(Record::Exit(Exit { header: head, exit_code: r.exit_code }))
        }
        RECORD_TARGET => {
            need(bytes, size_of::<TargetRecord>())?;
            let r: TargetRecord = read_prefix(bytes);
            Ok(Record::Target(Target {
                header: head,
                result: r.result,
                syscall: r.syscall,
                target_pid: r.target_pid,
                request: r.request,
            }))
        }
        RECORD_SOCKET => {
            need(bytes, size_of::<SocketRecord>())?;
            let r: SocketRecord = read_prefix(bytes);
            Ok(Record::Socket(Socket {
                header: head,
                result: r.result,
                family: r.family,
                sock_type: r.sock_type,
                protocol: r.protocol,
            }))
        }
        RECORD_URING => {
            let start = offset_of!(UringRecord, tail);
            need(bytes, start)?;
            let r: UringRecord = read_prefix(bytes);
            let tail = tail(bytes, start, r.tail_len, PATH_MAX - 1, "tail")?.to_vec();
            Ok(Record::Uring(Uring {
                header: head,
                opcode: r.opcode,
                user_data: r.user_data,
                file_slot: r.file_slot,
                arg0: r.arg0,
                arg1: r.arg1,
                arg2: r.arg2,
                tail,
            }))
        }
        RECORD_NAME => {
            let start = offset_of!(NameRecord, tail);
            need(bytes, start)?;
            let r: NameRecord = read_prefix(bytes);
            let base = tail(bytes, start, r.base_len, PATH_MAX - 1, "base")?.to_vec();
            let old = tail(bytes, start + base.len(), r.old_len, PATH_MAX - 1, "old")?.to_vec();
            let new = tail(bytes, start + base.len() + old.len(), r.new_len, PATH_MAX - 1, "new")?.to_vec();
            Ok(Record::Name(Name {
                header: head,
                result: r.result,
                syscall: r.syscall,
                olddirfd: r.olddirfd,
                newdirfd: r.newdirfd,
                flags: r.flags,
                opcode: r.opcode,
                base,
                old,
                new,
            }))
        }
        RECORD_STACK => {
            let start = offset_of!(StackRecord, tail);
            need(bytes, start)?;
            let r: StackRecord = read_prefix(bytes);
            let used = tail(bytes, start, r.tail_len, STACK_TAIL_MAX, "tail")?;
            let count = r.frame_count as usize;
            let frames = r.frames.get(..count).ok_or(DecodeError::BadLength {
                field: "frame_count",
                value: r.frame_count,
                max: STACK_FRAMES_MAX,
            })?;
            let text = |field, off: u16, len: u16, kind: u8, unreadable: bool| {
                if unreadable {
                    return Ok(None);
                }
                let bytes = used.get(usize::from(off)..usize::from(off) + usize::from(len)).ok_or(
                    DecodeError::BadLength { field, value: u32::from(off) + u32::from(len), max: used.len() },
                )?;
                // An empty text has no kind worth checking.
                if bytes.is_empty() {
                    Ok(Some(Vec::new()))
                } else {
                    str_bytes(bytes, u32::from(kind)).map(Some)
                }
            };
            let frames = frames
                .iter()
                .map(|f| {
                    let name = text(
                        "name",
                        f.name_off,
                        f.name_len,
                        f.name_kind,
                        f.flags & FRAME_NAME_UNREADABLE != 0,
                    )?;
                    let file = text(
                        "file",
                        f.file_off,
                        f.file_len,
                        f.file_kind,
                        f.flags & FRAME_FILE_UNREADABLE != 0,
                    )?;
                    let table = used
                        .get(usize::from(f.table_off)..usize::from(f.table_off) + usize::from(f.table_len))
                        .ok_or(DecodeError::BadLength {
                            field: "table",
                            value: u32::from(f.table_off) + u32::from(f.table_len),
                            max: used.len(),
                        })?
                        .to_vec();
                    Ok(WalkedFrame {
                        code: f.code,
                        globals: f.globals,
                        instr: f.instr,
                        firstlineno: f.firstlineno,
                        flags: f.flags,
                        name,
                        file,
                        table,
                        table_size: f.table_size,
                    })
                })
                .collect::<Result<_, DecodeError>>()?;
            Ok(Record::Stack(Stack {
                header: head,
                syscall: r.syscall,
                status: r.status,
                truncated: r.truncated != 0,
                frames,
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// Encoding for tests: the bytes the kernel would send for a record.
#[cfg(test)]
pub(crate) mod encode {
    use super::*;

    pub(crate) fn bytes_of<T: aya::Pod>(value: &T, len: usize) -> Vec<u8> {
        // SAFETY: `T: Pod` has no padding or invalid bytes; we read within its size.
        let all = unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) };
        all[..len].to_vec()
    }

    pub(crate) fn header(kind: u32, pid: u32) -> RecordHeader {
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"python3");
        RecordHeader {
            kind,
            size: 0,
            ktime_ns: 1,
            cgroup_id: 2,
            start_ns: 3,
            pid,
            tid: pid + 1,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            flags: 0,
            comm,
        }
    }

    pub(crate) fn open(pid: u32, path: &[u8], result: i64) -> Vec<u8> {
        opened(pid, b"", path, result)
    }

    /// An open whose file the kernel walked to `kpath`.
    pub(crate) fn opened(pid: u32, kpath: &[u8], path: &[u8], result: i64) -> Vec<u8> {
        let mut r = Box::new(OpenRecord {
            header: header(RECORD_OPEN, pid),
            result,
            dev: if kpath.is_empty() { 0 } else { 8 << 20 | 1 },
            ino: if kpath.is_empty() { 0 } else { 4242 },
            dirfd: -100,
            open_flags: 0,
            mode: 0,
            syscall: monitor_common::SYSCALL_OPENAT,
            resolve: 0,
            path_len: path.len() as u32,
            kpath_len: kpath.len() as u32,
            nlink: 1,
            file_mode: 0o100644,
            _pad: 0,
            tail: [0; 2 * PATH_MAX],
        });
        r.tail[..kpath.len()].copy_from_slice(kpath);
        r.tail[kpath.len()..kpath.len() + path.len()].copy_from_slice(path);
        let len = offset_of!(OpenRecord, tail) + kpath.len() + path.len();
        r.header.size = len as u32;
        bytes_of(&*r, len)
    }

    /// A marker whose text, when it is a `str`'s (`co_filename`, an `O` audit argument), is
    /// Latin-1 (ASCII included).
    pub(crate) fn marker(pid: u32, tid: u32, kind: u32, name: &[u8], format: u32, text: &[u8]) -> Vec<u8> {
        let text_kind = u32::from(kind == MARK_EVAL_ENTER || format == u32::from(b'O'));
        marker_of(pid, tid, kind, name, format, text_kind, text)
    }

    /// An `eval_enter` marker whose `co_filename` has characters of `text_kind` bytes.
    pub(crate) fn eval_enter(pid: u32, tid: u32, text_kind: u32, text: &[u8]) -> Vec<u8> {
        marker_of(pid, tid, MARK_EVAL_ENTER, b"", 0, text_kind, text)
    }

    pub(crate) fn marker_of(
        pid: u32,
        tid: u32,
        kind: u32,
        name: &[u8],
        format: u32,
        text_kind: u32,
        text: &[u8],
    ) -> Vec<u8> {
        let mut r = MarkerRecord {
            header: header(RECORD_MARKER, pid),
            marker: kind,
            format,
            text_len: text.len() as u32,
            text_kind,
            globals: if kind == MARK_EVAL_ENTER { 0x7f00_0000_1000 } else { 0 },
            name: [0; monitor_common::MARK_NAME_MAX],
            text: [0; MARK_TEXT_MAX],
        };
        r.header.tid = tid;
        r.name[..name.len()].copy_from_slice(name);
        r.text[..text.len()].copy_from_slice(text);
        let len = offset_of!(MarkerRecord, text) + text.len();
        r.header.size = len as u32;
        bytes_of(&r, len)
    }

    pub(crate) fn image(pid: u32, filename: &[u8], args: &[u8]) -> Vec<u8> {
        let mut r = ExecRecord {
            header: header(RECORD_IMAGE, pid),
            result: 0,
            exe: ExeKey { dev: 8, ino: 99, mtime_sec: 5, mtime_nsec: 6, _pad: 0 },
            old_pid: pid,
            tracking: 0,
            dirfd: -100,
            exec_flags: 0,
            argc: 0,
            args_len: args.len() as u32,
            filename_len: filename.len() as u32,
            syscall: 0,
            args: [0; ARGS_MAX],
            filename: [0; PATH_MAX],
        };
        r.args[..args.len()].copy_from_slice(args);
        r.filename[..filename.len()].copy_from_slice(filename);
        let len = offset_of!(ExecRecord, filename) + filename.len();
        r.header.size = len as u32;
        bytes_of(&r, len)
    }
}

#[cfg(test)]
mod tests {
    use super::{encode::*, *};

    #[test]
    fn open_roundtrip() {
        let bytes = open(42, b"/etc/passwd", 3);
        let Record::Open(open) = decode(&bytes).unwrap() else { panic!("not an open") };
        assert_eq!(open.path, b"/etc/passwd");
        assert_eq!(open.result, 3);
        assert_eq!(open.header.pid, 42);
        assert_eq!(open.header.comm, b"python3");
    }

    #[test]
    fn open_carries_the_kernel_path_before_the_callers_string() {
        let bytes = opened(42, b"/home/a/.aws/credentials", b"/proc/self/cwd/credentials", 3);
        let Record::Open(open) = decode(&bytes).unwrap() else { panic!("not an open") };
        assert_eq!(open.kpath, b"/home/a/.aws/credentials");
        assert_eq!(open.path, b"/proc/self/cwd/credentials");
        assert_eq!((open.dev, open.ino, open.nlink), (8 << 20 | 1, 4242, 1));
        let mut lying = bytes.clone();
        let at = offset_of!(OpenRecord, kpath_len);
        lying[at..at + 4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(decode(&lying).is_err());
    }

    fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut v = 2u16.to_ne_bytes().to_vec();
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&ip);
        v.extend_from_slice(&[0; 8]);
        v
    }

    fn connect_of(flags: u32, addr: &[u8], requested: &[u8]) -> Vec<u8> {
        let mut r = ConnectRecord {
            header: encode::header(RECORD_CONNECT, 9),
            result: 0,
            fd: 3,
            addr_len: 16,
            addr: [0; SOCKADDR_MAX],
            requested: [0; REQUESTED_MAX],
        };
        r.header.flags = flags;
        r.header.size = size_of::<ConnectRecord>() as u32;
        r.addr[..addr.len()].copy_from_slice(addr);
        r.requested[..requested.len()].copy_from_slice(requested);
        bytes_of(&r, size_of::<ConnectRecord>())
    }

    #[test]
    fn a_rewritten_destination_carries_the_callers_sockaddr() {
        let real = sockaddr_in([127, 0, 0, 1], 4444);
        let decoy = sockaddr_in([192, 0, 2, 1], 9);
        let Record::Connect(c) = decode(&connect_of(0, &real, &decoy)).unwrap() else {
            panic!("not a connect")
        };
        assert_eq!((c.addr, c.requested), (real.clone(), None), "not flagged: nothing requested");
        let bytes = connect_of(FLAG_DEST_REWRITTEN, &real, &decoy);
        let Record::Connect(c) = decode(&bytes).unwrap() else { panic!("not a connect") };
        assert_eq!((c.addr, c.requested), (real.clone(), Some(decoy)));
        let Record::Connect(c) = decode(&connect_of(FLAG_DEST_REWRITTEN, &real, &[])).unwrap() else {
            panic!("not a connect")
        };
        assert_eq!(c.requested, Some(Vec::new()), "unreadable");
    }

    #[test]
    fn image_roundtrip_splits_argv() {
        let bytes = image(7, b"/usr/bin/python3", b"python3\0-c\0pass\0");
        let Record::Image(exec) = decode(&bytes).unwrap() else { panic!("not an image") };
        assert_eq!(exec.argv, vec![b"python3".to_vec(), b"-c".to_vec(), b"pass".to_vec()]);
        assert_eq!(exec.filename, b"/usr/bin/python3");
        assert_eq!(exec.exe.ino, 99);
    }

    #[test]
    fn markers_decode_wide_and_ascii_arguments() {
        let wide: Vec<u8> = "pkg.mod\0junk".chars().flat_map(|c| (c as u32).to_ne_bytes()).collect();
        let bytes = marker(5, 6, MARK_MAIN, b"cpython.run_module", u32::from(b'u'), &wide);
        let Record::Marker(m) = decode(&bytes).unwrap() else { panic!("not a marker") };
        assert_eq!(m.mark, Mark::Main { how: "module".into(), target: b"pkg.mod".to_vec() });
        assert_eq!(m.header.tid, 6);
        let bytes = marker(5, 6, MARK_MAIN, b"cpython.run_file", u32::from(b'O'), b"x.py");
        let Record::Marker(m) = decode(&bytes).unwrap() else { panic!("not a marker") };
        assert_eq!(m.mark, Mark::Main { how: "file".into(), target: b"x.py".to_vec() });
        let bytes = marker(5, 6, MARK_EVAL_ENTER, b"", 0, b"/site/a.py");
        let Record::Marker(m) = decode(&bytes).unwrap() else { panic!("not a marker") };
        assert_eq!(
            m.mark,
            Mark::EvalEnter { filename: Some(b"/site/a.py".to_vec()), globals: 0x7f00_0000_1000 }
        );
        let mut bad = marker(5, 6, 99, b"", 0, b"");
        assert!(decode(&bad).is_err());
        bad = marker(5, 6, MARK_EVAL_EXIT, b"", 0, b"");
        assert_eq!(decode(&bad).unwrap().header().pid, 5);
        let Record::Marker(m) = decode(&marker(5, 6, MARK_RUNNING_MAIN, b"", 0, b"")).unwrap() else {
            panic!("not a marker")
        };
        assert_eq!(m.mark, Mark::RunningMain);
    }

    /// The characters of each kind of compact `str`, as the kernel copies them.
    fn chars(text: &str, kind: u32) -> Vec<u8> {
        match kind {
            1 => text.chars().map(|c| c as u8).collect(),
            2 => text.encode_utf16().flat_map(u16::to_ne_bytes).collect(),
            _ => text.chars().flat_map(|c| (c as u32).to_ne_bytes()).collect(),
        }
    }

    #[test]
    fn every_kind_of_str_decodes_to_the_file_name_bytes() {
        for (text, kind) in [
            ("/site/evil/__init__.py", 1),
            ("/site/évil/données.py", 1),
            ("/site/злой/悪意.py", 2),
            ("/site/🐍/悪.py", 4),
        ] {
            let Record::Marker(m) = decode(&eval_enter(5, 6, kind, &chars(text, kind))).unwrap() else {
                panic!("not a marker")
            };
            assert_eq!(
                m.mark,
                Mark::EvalEnter { filename: Some(text.as_bytes().to_vec()), globals: 0x7f00_0000_1000 },
                "kind {kind}"
            );
        }
        // A directory whose name is not UTF-8 (`mod\xffule`): CPython's `surrogateescape` made
        // the byte U+DCFF, which gives the byte back.
        let escaped: Vec<u8> =
            [u16::from(b'm'), 0xdcff, u16::from(b'x')].iter().flat_map(|u| u.to_ne_bytes()).collect();
        assert_eq!(str_bytes(&escaped, 2).unwrap(), b"m\xffx");
        let lone: Vec<u8> = [0xd800u32, 0x11_0000].iter().flat_map(|u| u.to_ne_bytes()).collect();
        assert_eq!(str_bytes(&lone, 4).unwrap(), "\u{fffd}\u{fffd}".as_bytes());
        // An `O` audit argument (`cpython.run_file`'s script) is a `str` too.
        let main =
            marker_of(5, 6, MARK_MAIN, b"cpython.run_file", u32::from(b'O'), 2, &chars("/app/悪.py", 2));
        let Record::Marker(m) = decode(&main).unwrap() else { panic!("not a marker") };
        assert_eq!(m.mark, Mark::Main { how: "file".into(), target: "/app/悪.py".as_bytes().to_vec() });
        for (kind, len) in [(3, 6), (2, 3), (4, 6)] {
            let bytes = eval_enter(5, 6, kind, &vec![b'a'; len]);
            assert_eq!(decode(&bytes), Err(DecodeError::TextKind { kind, len }), "kind {kind}, {len} bytes");
        }
    }

    #[test]
    fn an_unreadable_file_name_is_not_an_empty_one() {
        let mut bytes = eval_enter(5, 6, 0, b"");
        let Record::Marker(m) = decode(&bytes).unwrap() else { panic!("not a marker") };
        assert_eq!(m.mark, Mark::EvalEnter { filename: Some(Vec::new()), globals: 0x7f00_0000_1000 });
        let at = offset_of!(RecordHeader, flags);
        bytes[at..at + 4].copy_from_slice(&FLAG_READ_FAILED.to_ne_bytes());
        let Record::Marker(m) = decode(&bytes).unwrap() else { panic!("not a marker") };
        assert_eq!(m.mark, Mark::EvalEnter { filename: None, globals: 0x7f00_0000_1000 });
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for bytes in [
            open(1, b"/tmp/x", 0),
            image(1, b"/bin/true", b"true\0"),
            marker(1, 1, MARK_EVAL_ENTER, b"", 0, b"/a.py"),
        ] {
            for len in 0..bytes.len() {
                assert!(decode(&bytes[..len]).is_err(), "prefix of {len} bytes decoded");
            }
        }
    }

    #[test]
    fn lying_lengths_are_rejected() {
        let mut bytes = open(1, b"/tmp/x", 0);
        let at = offset_of!(OpenRecord, path_len);
        bytes[at..at + 4].copy_from_slice(&5000u32.to_ne_bytes());
        assert!(matches!(decode(&bytes), Err(DecodeError::BadLength { field: "path", .. })));
        bytes[at..at + 4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(matches!(decode(&bytes), Err(DecodeError::BadLength { .. })));
    }

    #[test]
    fn unknown_kind_and_size_mismatch() {
        let mut bytes = open(1, b"/x", 0);
        bytes[0..4].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(77)));
        let mut bytes = open(1, b"/x", 0);
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(DecodeError::SizeMismatch { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed xorshift keeps the test deterministic without a dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000usize {
            let len = round % 400;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            if len >= 8 {
                // Make some inputs pass the first checks so the deeper ones run too.
                bytes[0..4].copy_from_slice(&((round % 10) as u32).to_ne_bytes());
                bytes[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
            }
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn split_args_keeps_unterminated_tail() {
        assert_eq!(split_args(b"a\0b"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(split_args(b""), Vec::<Vec<u8>>::new());
        assert_eq!(split_args(b"a\0\0"), vec![b"a".to_vec(), b"".to_vec()]);
    }
}
