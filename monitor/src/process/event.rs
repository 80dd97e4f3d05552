//! Events: what a tracked process did, as the tracker makes them from kernel records.

use std::path::PathBuf;

use monitor_common::ExeKey;

use crate::{
    k8s::Container,
    kernel::decode::{Header, Mark},
    process::table::{Process, Resolution},
};

/// Who an opened file is, as the kernel knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileId {
    /// Kernel encoding (`MAJOR << 20 | MINOR`).
    pub dev: u64,
    pub ino: u64,
    pub nlink: u32,
}

impl FileId {
    /// `major:minor`, as `/proc/<pid>/mountinfo` writes it.
    pub fn dev_text(&self) -> String {
        format!("{}:{}", self.dev >> 20, self.dev & 0xf_ffff)
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Open {
        /// The file opened: the kernel's path when it was walked (`resolution` kernel), else the
        /// caller's string made absolute.
        path: PathBuf,
        /// The caller's string, when it differs from `path`.
        requested: Option<PathBuf>,
        resolution: Resolution,
        dirfd: i32,
        flags: u32,
        mode: u32,
        result: i64,
        /// `SYSCALL_*` of the open.
        syscall: u32,
        file: Option<FileId>,
        /// Another name of the same inode the process linked earlier (a hard link made to
        /// reach a file under a name no rule knows).
        alias_of: Option<PathBuf>,
    },
    /// Reaching into another process: `/proc/<pid>/mem`, `process_vm_readv`/`writev`, ptrace.
    Memory {
        target_pid: u32,
        /// `proc-mem`, `process_vm_readv`, `process_vm_writev`, `ptrace-attach`, `ptrace-seize`.
        via: &'static str,
        /// The `/proc/<pid>/mem` path for `proc-mem`.
        path: Option<PathBuf>,
        result: i64,
    },
    /// A raw or packet socket.
    Socket {
        family: u32,
        sock_type: u32,
        protocol: u32,
        result: i64,
    },
    /// An io_uring ring created (`opcode` [`monitor_common::URING_SETUP`]) or a request whose
    /// target is not known from the request itself.
    Uring {
        opcode: u32,
    },
    /// A new name for a file: `op` is `rename`, `link` or `symlink`; `path` the new name made
    /// absolute, `old` the old name (or a symlink's target) as passed.
    Name {
        op: &'static str,
        path: PathBuf,
        old: PathBuf,
        /// The syscall's name (`renameat2`, `linkat`, ...), or `io_uring` for a request.
        syscall: &'static str,
        result: i64,
    },
    /// `addr` is the destination the kernel checked when a cgroup program saw it (IPv4 and
    /// IPv6), else the caller's sockaddr read at the call's return; `requested` the caller's
    /// sockaddr when it named another destination than the kernel's by then (empty when it
    /// could not be read): rewritten after the kernel copied it.
    Connect {
        addr: Vec<u8>,
        requested: Option<Vec<u8>>,
        fd: i32,
        result: i64,
    },
    /// A datagram (or message) sent to an explicit address; fields as for `Connect`.
    Send {
        addr: Vec<u8>,
        requested: Option<Vec<u8>>,
        fd: i32,
        result: i64,
    },
    /// An exec by a tracked process; `image` describes the new program when it succeeded.
    Exec {
        path: PathBuf,
        /// How `path` was made absolute: only a path passed absolute names what ran for sure
        /// (a relative one was joined to a directory read later).
        resolution: Resolution,
        argv: Vec<Vec<u8>>,
        result: i64,
        /// The kernel's identity of the file the exec ran (a `#!` script's interpreter);
        /// `None` for a refused exec.
        file: Option<ExeKey>,
        image: Option<Box<ProcessInfo>>,
    },
    /// A process starts a tracked image without having been tracked before (not an action
    /// of a tracked process; the phase engine needs it).
    Image {
        path: PathBuf,
        argv: Vec<Vec<u8>>,
    },
    Fork {
        child_pid: u32,
        child_tid: u32,
        thread: bool,
    },
    Exit {
        status: i32,
    },
    Marker(Mark),
}

/// The name of an open syscall (`SYSCALL_*`).
pub fn open_syscall(syscall: u32) -> &'static str {
    use monitor_common::{
        SYSCALL_CREAT, SYSCALL_OPEN, SYSCALL_OPEN_BY_HANDLE_AT, SYSCALL_OPENAT, SYSCALL_OPENAT2,
    };
    match syscall {
        SYSCALL_OPEN => "open",
        SYSCALL_CREAT => "creat",
        SYSCALL_OPENAT => "openat",
        SYSCALL_OPENAT2 => "openat2",
        SYSCALL_OPEN_BY_HANDLE_AT => "open_by_handle_at",
        monitor_common::SYSCALL_IO_URING => "io_uring",
        monitor_common::SYSCALL_UNSEEN => "unseen",
        _ => "unknown",
    }
}

/// The syscall (or `io_uring`) of a name record's `SYSCALL_*`.
pub fn name_syscall(syscall: u32) -> &'static str {
    use monitor_common::{
        SYSCALL_IO_URING, SYSCALL_LINK, SYSCALL_LINKAT, SYSCALL_RENAME, SYSCALL_RENAMEAT, SYSCALL_RENAMEAT2,
        SYSCALL_SYMLINK, SYSCALL_SYMLINKAT,
    };
    match syscall {
        SYSCALL_RENAME => "rename",
        SYSCALL_RENAMEAT => "renameat",
        SYSCALL_RENAMEAT2 => "renameat2",
        SYSCALL_LINK => "link",
        SYSCALL_LINKAT => "linkat",
        SYSCALL_SYMLINK => "symlink",
        SYSCALL_SYMLINKAT => "symlinkat",
        SYSCALL_IO_URING => "io_uring",
        _ => "unknown",
    }
}

/// `IORING_OP_*` names (as liburing spells them, lower case), for the opcodes up to 6.x.
pub fn uring_opcode(opcode: u32) -> &'static str {
    const NAMES: [&str; 59] = [
        "nop",
        "readv",
        "writev",
        "fsync",
        "read_fixed",
        "write_fixed",
        "poll_add",
        "poll_remove",
        "sync_file_range",
        "sendmsg",
        "recvmsg",
        "timeout",
        "timeout_remove",
        "accept",
        "async_cancel",
        "link_timeout",
        "connect",
        "fallocate",
        "openat",
        "close",
        "files_update",
        "statx",
        "read",
        "write",
        "fadvise",
        "madvise",
        "send",
        "recv",
        "openat2",
        "epoll_ctl",
        "splice",
        "provide_buffers",
        "remove_buffers",
        "tee",
        "shutdown",
        "renameat",
        "unlinkat",
        "mkdirat",
        "symlinkat",
        "linkat",
        "msg_ring",
        "fsetxattr",
        "setxattr",
        "fgetxattr",
        "getxattr",
        "socket",
        "uring_cmd",
        "send_zc",
        "sendmsg_zc",
        "read_multishot",
        "waitid",
        "futex_wait",
        "futex_wake",
        "futex_waitv",
        "fixed_fd_install",
        "ftruncate",
        "bind",
        "listen",
        "recv_zc",
    ];
    if opcode == monitor_common::URING_SETUP {
        return "setup";
    }
    NAMES.get(opcode as usize).copied().unwrap_or("unknown")
}

impl Action {
    pub fn hook(&self) -> &'static str {
        match self {
            Self::Open { .. } => "open",
            Self::Memory { via: "proc-mem", .. } => "open",
            Self::Memory { .. } => "target",
            Self::Socket { .. } => "socket",
            Self::Name { .. } => "name",
            Self::Uring { .. } => "uring",
            Self::Connect { .. } => "connect",
            Self::Send { .. } => "send",
            Self::Exec { .. } => "exec",
            Self::Image { .. } => "image",
            Self::Marker(_) => "python",
            Self::Fork { .. } => "fork",
            Self::Exit { .. } => "exit",
        }
    }
}

/// What is known of the acting process when the event happened.
#[derive(Debug, Clone, Default)]
pub struct ProcessInfo {
    pub ppid: u32,
    pub exe: Option<PathBuf>,
    pub argv: Vec<Vec<u8>>,
    pub argv_truncated: bool,
    /// `major.minor` of the CPython the process runs, when it runs one.
    pub python: Option<String>,
    /// Its interpreter's start-up probes are attached: its phases come from them.
    pub probed: bool,
    pub preexisting: bool,
    pub tracking: &'static str,
    pub cwd: Option<PathBuf>,
    /// `CLOCK_MONOTONIC` time its current image started (0 when unknown).
    pub started_ns: u64,
    pub container: Option<Container>,
    pub cgroup: Option<String>,
}

impl ProcessInfo {
    pub fn of(process: Option<&Process>) -> Self {
        let Some(p) = process else {
            return Self { tracking: "unknown", ..Self::default() };
        };
        Self {
            ppid: p.ppid,
            probed: !p.late && p.python.as_ref().is_some_and(|i| i.probed),
            cwd: p.cwd.clone(),
            started_ns: p.started_ns,
            container: p.container.clone(),
            cgroup: p.cgroup.clone(),
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            argv_truncated: p.argv_truncated,
            python: p.python.as_ref().map(|i| match i.version {
                Some((major, minor)) => format!("{major}.{minor}"),
                None => "unknown".to_owned(),
            }),
            preexisting: p.preexisting,
            tracking: if p.is_python() {
                "python"
            } else if p.is_descendant() {
                "descendant"
            } else {
                "unknown"
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub header: Header,
    pub process: ProcessInfo,
    pub action: Action,
    /// The Python stack of the thread that acted (for a non-Python descendant, its Python
    /// ancestor's at the exec that started its lineage); `None` when none was captured.
    pub stack: Option<std::sync::Arc<crate::python::stack::PyStack>>,
}
