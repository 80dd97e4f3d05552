//! Opens, new names and reaches into other processes, as actions: the kernel's path of what
//! was opened wins over the caller's string, `/proc/<pid>/mem` of another process is a memory
//! access, and hard links a process made are remembered so an open through one is known as
//! the file it names.

use std::{
    ffi::OsStr,
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

use monitor_common::{
    FLAG_NO_FILE, IORING_OP_LINKAT, IORING_OP_SYMLINKAT, PTRACE_SEIZE, SYSCALL_IO_URING, SYSCALL_LINK,
    SYSCALL_LINKAT, SYSCALL_PROCESS_VM_READV, SYSCALL_PROCESS_VM_WRITEV, SYSCALL_PTRACE, SYSCALL_SYMLINK,
    SYSCALL_SYMLINKAT,
};

use crate::{
    kernel::decode::{Name, Open, Socket, Target, Uring},
    process::{
        event::{Action, FileId, name_syscall},
        procfs,
        table::{Process, Resolution, join, resolve},
        tracker::kernel_dev,
    },
};

/// Hard links remembered at most (the oldest half is forgotten beyond).
const LINKS_MAX: usize = 4096;

/// Other names of inodes: those tracked processes gave a new name with `link` (`(dev, ino)` to
/// the old name), and the catalogued credential files the file watch found on disk (to their
/// catalogued name), so an open through a hard link made before premain started, or by a
/// process it does not track, is known too.
///
/// An inode number is reused as soon as its file is gone, so a name is only believed while it
/// still leads to the same inode (checked on each hit, which only opens of regular files with
/// several names make).
#[derive(Default)]
pub(crate) struct Links {
    names: std::collections::HashMap<(u64, u64), PathBuf>,
    order: std::collections::VecDeque<(u64, u64)>,
    credentials: std::collections::HashMap<(u64, u64), Catalogued>,
}

/// A catalogued credential file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Catalogued {
    /// Its catalogued name, as its owner sees it.
    pub(crate) path: PathBuf,
    /// Where premain reaches it (through `/proc/<pid>/root` for another mount namespace).
    pub(crate) reach: PathBuf,
}

impl Links {
    fn remember(&mut self, key: (u64, u64), old: PathBuf) {
        if self.names.len() >= LINKS_MAX {
            for gone in self.order.drain(..LINKS_MAX / 2) {
                self.names.remove(&gone);
            }
        }
        if self.names.insert(key, old).is_none() {
            self.order.push_back(key);
        }
    }

    /// Another name of `file`, a regular file with several names.
    fn of(&self, file: &FileId) -> Option<&Path> {
        let key = (file.dev, file.ino);
        if file.nlink < 2 {
            return None;
        }
        let named = self.names.get(&key).map(|p| (p, p));
        let catalogued = || self.credentials.get(&key).map(|c| (&c.path, &c.reach));
        let (name, reach) = named.or_else(catalogued)?;
        let still = fs::metadata(reach).is_ok_and(|m| (kernel_dev(m.dev()), m.ino()) == key);
        still.then_some(name.as_path())
    }

    /// Replaces the catalogued files known by inode with the file watch's latest look.
    /// Whether the inode `key` is a catalogued credential file premain watches.
    pub(crate) fn is_credential(&self, key: (u64, u64)) -> bool {
        self.credentials.contains_key(&key)
    }

    pub(crate) fn set_credentials(&mut self, files: std::collections::HashMap<(u64, u64), Catalogued>) {
        self.credentials = files;
    }
}

/// `/proc/<pid>/mem` or `/proc/<pid>/task/<tid>/mem`: the pid.
fn proc_mem_pid(path: &Path) -> Option<u32> {
    let rest = path.strip_prefix("/proc").ok()?;
    let mut parts = rest.components().map(|c| c.as_os_str().to_str());
    let pid = parts.next()??.parse().ok()?;
    match (parts.next()?, parts.next(), parts.next(), parts.next()) {
        (Some("mem"), None, ..) => Some(pid),
        (Some("task"), Some(Some(_)), Some(Some("mem")), None) => Some(pid),
        _ => None,
    }
}

pub(crate) fn open(open: Open, pid: u32, process: Option<&mut Process>, links: &Links) -> Action {
    let raw = Path::new(OsStr::from_bytes(&open.path));
    let file = (!open.kpath.is_empty() && open.header.flags & FLAG_NO_FILE == 0).then_some(FileId {
        dev: open.dev,
        ino: open.ino,
        nlink: open.nlink,
    });
    let (path, resolution, requested) = if open.kpath.is_empty() {
        let (path, resolution) = resolve(&open.path, open.dirfd, pid, process);
        let requested = (path.as_path() != raw && !open.path.is_empty()).then(|| raw.to_path_buf());
        (path, resolution, requested)
    } else {
        let path = PathBuf::from(OsStr::from_bytes(&open.kpath));
        // The watch does not know the descriptor the open gave.
        if let Some(p) = process
            && open.result >= 0
            && open.syscall != monitor_common::SYSCALL_UNSEEN
        {
            p.remember_fd(open.result as i32, path.clone());
        }
        let requested = (path.as_path() != raw && !open.path.is_empty()).then(|| raw.to_path_buf());
        let resolution = if open.syscall == monitor_common::SYSCALL_UNSEEN {
            Resolution::Watch
        } else {
            Resolution::Kernel
        };
        (path, resolution, requested)
    };
    if open.result >= 0
        && let Some(target) = proc_mem_pid(&path).filter(|&target| another_process(target, pid))
    {
        return Action::Memory { target_pid: target, via: "proc-mem", path: Some(path), result: open.result };
    }
    const S_IFMT: u32 = 0o170000;
    const S_IFREG: u32 = 0o100000;
    let regular = open.file_mode & S_IFMT == S_IFREG;
    let alias_of = file.as_ref().filter(|_| regular).and_then(|f| links.of(f)).map(Path::to_path_buf);
    Action::Open {
        path,
        requested,
        resolution,
        dirfd: open.dirfd,
        flags: open.flags,
        mode: open.mode,
        result: open.result,
        syscall: open.syscall,
        file,
        alias_of,
    }
}

/// An io_uring record: an open into a fixed slot is an open of the name it was given (it
/// never gets an fd to walk); one into a normal fd is reported at its completion, as an open
/// record. Connects and sendmsgs with a destination, and raw sockets, are what they would be
/// as syscalls; anything else is io_uring use whose target the request does not tell.
pub(crate) fn uring(uring: Uring, pid: u32, process: Option<&mut Process>) -> Action {
    use monitor_common::{
        IORING_OP_CONNECT, IORING_OP_OPENAT, IORING_OP_OPENAT2, IORING_OP_SENDMSG, IORING_OP_SENDMSG_ZC,
        IORING_OP_SOCKET, SYSCALL_IO_URING,
    };
    match uring.opcode {
        IORING_OP_OPENAT | IORING_OP_OPENAT2 if uring.file_slot != 0 && !uring.tail.is_empty() => {
            let raw = Path::new(OsStr::from_bytes(&uring.tail));
            let (path, resolution) = resolve(&uring.tail, uring.arg0, pid, process);
            let requested = (path.as_path() != raw).then(|| raw.to_path_buf());
            Action::Open {
                path,
                requested,
                resolution,
                dirfd: uring.arg0,
                flags: uring.arg1,
                mode: 0,
                result: 0,
                syscall: SYSCALL_IO_URING,
                file: None,
                alias_of: None,
            }
        }
        IORING_OP_CONNECT if !uring.tail.is_empty() => {
            Action::Connect { addr: uring.tail, requested: None, fd: -1, result: 0 }
        }
        IORING_OP_SENDMSG | IORING_OP_SENDMSG_ZC if !uring.tail.is_empty() => {
            Action::Send { addr: uring.tail, requested: None, fd: -1, result: 0 }
        }
        IORING_OP_SOCKET if raw_socket(uring.arg0 as u32, uring.arg1) => Action::Socket {
            family: uring.arg0 as u32,
            sock_type: uring.arg1 & 0xf,
            protocol: uring.arg2,
            result: 0,
        },
        opcode => Action::Uring { opcode },
    }
}

/// What the kernel programs report as raw sockets (see `net.rs`).
fn raw_socket(family: u32, sock_type: u32) -> bool {
    family == 17 || matches!(sock_type & 0xf, 3 | 10)
}

/// `None` for a process acting on itself (its own memory is not another process's).
/// Whether `target` (a pid, or any thread's id: `/proc/<tid>/mem` and `process_vm_readv`
/// take either) is not one of `pid`'s own threads. A target already gone counts as another.
fn another_process(target: u32, pid: u32) -> bool {
    target != pid && procfs::status(target).is_none_or(|s| s.tgid != pid)
}

pub(crate) fn target(target: Target, pid: u32) -> Option<Action> {
    if target.target_pid == 0 || !another_process(target.target_pid, pid) {
        return None;
    }
    let via = match target.syscall {
        SYSCALL_PROCESS_VM_READV => "process_vm_readv",
        SYSCALL_PROCESS_VM_WRITEV => "process_vm_writev",
        SYSCALL_PTRACE if target.request == PTRACE_SEIZE => "ptrace-seize",
        _ => "ptrace-attach",
    };
    Some(Action::Memory { target_pid: target.target_pid, via, path: None, result: target.result })
}

pub(crate) fn socket(socket: Socket) -> Action {
    Action::Socket {
        family: socket.family,
        sock_type: socket.sock_type,
        protocol: socket.protocol,
        result: socket.result,
    }
}

/// A new name: made absolute against the directory the kernel walked at the syscall (or the
/// io_uring submission); a link that succeeded (or was submitted) is remembered.
pub(crate) fn name(name: Name, pid: u32, process: Option<&mut Process>, links: &mut Links) -> Action {
    let op = match (name.syscall, name.opcode) {
        (SYSCALL_LINK | SYSCALL_LINKAT, _) | (SYSCALL_IO_URING, IORING_OP_LINKAT) => "link",
        (SYSCALL_SYMLINK | SYSCALL_SYMLINKAT, _) | (SYSCALL_IO_URING, IORING_OP_SYMLINKAT) => "symlink",
        // SYSCALL_RENAME, RENAMEAT, RENAMEAT2, io_uring's RENAMEAT.
        _ => "rename",
    };
    let new = Path::new(OsStr::from_bytes(&name.new));
    let path = if new.is_absolute() || name.base.is_empty() {
        if new.is_absolute() { new.to_path_buf() } else { resolve(&name.new, name.newdirfd, pid, None).0 }
    } else {
        join(Path::new(OsStr::from_bytes(&name.base)), new)
    };
    let old = PathBuf::from(OsStr::from_bytes(&name.old));
    if op == "link" && name.result == 0 {
        // The inode is the same under both names; the old one is likelier to still exist when
        // the record is handled (a link made to read a file once is removed at once).
        let (old_abs, _) = resolve(&name.old, name.olddirfd, pid, process);
        if let Ok(meta) = std::fs::metadata(&old_abs).or_else(|_| std::fs::symlink_metadata(&path)) {
            links.remember((kernel_dev(meta.dev()), meta.ino()), old_abs);
        }
    }
    Action::Name { op, path, old, syscall: name_syscall(name.syscall), result: name.result }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_mem_paths() {
        assert_eq!(proc_mem_pid(Path::new("/proc/42/mem")), Some(42));
        assert_eq!(proc_mem_pid(Path::new("/proc/42/task/43/mem")), Some(42));
        assert_eq!(proc_mem_pid(Path::new("/proc/42/maps")), None);
        assert_eq!(proc_mem_pid(Path::new("/proc/self/mem")), None);
        assert_eq!(proc_mem_pid(Path::new("/proc/42/mem/x")), None);
        assert_eq!(proc_mem_pid(Path::new("/tmp/proc/42/mem")), None);
    }

    fn uring(opcode: u32, file_slot: u32, arg0: i32, arg1: u32, tail: &[u8]) -> Uring {
        let header = crate::kernel::decode::Header {
            ktime_ns: 0,
            cgroup_id: 0,
            start_ns: 0,
            pid: 5,
            tid: 5,
            ppid: 1,
            uid: 0,
            gid: 0,
            flags: 0,
            comm: Vec::new(),
        };
        Uring { header, opcode, user_data: 0, file_slot, arg0, arg1, arg2: 0, tail: tail.to_vec() }
    }

    #[test]
    fn io_uring_requests_become_the_actions_they_perform() {
        use monitor_common::{IORING_OP_CONNECT, IORING_OP_OPENAT, IORING_OP_SOCKET, URING_SETUP};
        let direct = files_uring(uring(IORING_OP_OPENAT, 1, -100, 0, b"/h/.aws/credentials"));
        assert!(matches!(direct, Action::Open { ref path, .. } if path == Path::new("/h/.aws/credentials")));
        // Into a normal fd: its completion is the open.
        let normal = files_uring(uring(IORING_OP_OPENAT, 0, -100, 0, b"/h/.aws/credentials"));
        assert!(matches!(normal, Action::Uring { opcode: IORING_OP_OPENAT }));
        let v4 = [2u8, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(files_uring(uring(IORING_OP_CONNECT, 0, 0, 0, &v4)), Action::Connect { .. }));
        assert!(matches!(
            files_uring(uring(IORING_OP_SOCKET, 0, 17, 3, b"")),
            Action::Socket { family: 17, .. }
        ));
        assert!(matches!(files_uring(uring(IORING_OP_SOCKET, 0, 2, 1, b"")), Action::Uring { .. }));
        assert!(matches!(
            files_uring(uring(URING_SETUP, 0, 3, 0, b"")),
            Action::Uring { opcode: URING_SETUP }
        ));
    }

    #[test]
    fn io_uring_names_are_the_renames_links_and_symlinks_they_perform() {
        use monitor_common::{IORING_OP_LINKAT, IORING_OP_RENAMEAT, IORING_OP_SYMLINKAT, SYSCALL_RENAMEAT2};
        let name = |syscall: u32, opcode: u32, base: &[u8], new: &[u8]| Name {
            header: uring(0, 0, 0, 0, b"").header,
            result: 0,
            syscall,
            olddirfd: -100,
            newdirfd: 3,
            flags: 0,
            opcode,
            base: base.to_vec(),
            old: b"/h/.tmp".to_vec(),
            new: new.to_vec(),
        };
        let mut links = Links::default();
        let cases = [
            (SYSCALL_IO_URING, IORING_OP_RENAMEAT, "rename", "io_uring"),
            (SYSCALL_IO_URING, IORING_OP_LINKAT, "link", "io_uring"),
            (SYSCALL_IO_URING, IORING_OP_SYMLINKAT, "symlink", "io_uring"),
            (SYSCALL_RENAMEAT2, 0, "rename", "renameat2"),
            (SYSCALL_SYMLINKAT, 0, "symlink", "symlinkat"),
        ];
        for (syscall, opcode, want_op, want_syscall) in cases {
            let action =
                super::name(name(syscall, opcode, b"/v/site-packages", b"x.pth"), 5, None, &mut links);
            let Action::Name { op, path, syscall, .. } = action else { panic!("{action:?}") };
            assert_eq!((op, syscall), (want_op, want_syscall));
            assert_eq!(path, Path::new("/v/site-packages/x.pth"), "anchored to the walked directory");
        }
        let absolute = name(SYSCALL_IO_URING, IORING_OP_RENAMEAT, b"", b"/h/.bashrc");
        let Action::Name { path, .. } = super::name(absolute, 5, None, &mut links) else { panic!() };
        assert_eq!(path, Path::new("/h/.bashrc"));
    }

    fn files_uring(u: Uring) -> Action {
        super::uring(u, 5, None)
    }

    #[test]
    fn a_thread_of_the_same_process_is_not_another_process() {
        let pid = std::process::id();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // SAFETY: no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            std::thread::park();
        });
        let tid = rx.recv().unwrap();
        assert!(!another_process(pid, pid));
        assert!(!another_process(tid, pid), "a thread's id is its own process");
        assert!(another_process(1, pid));
        thread.thread().unpark();
        thread.join().unwrap();
    }

    #[test]
    fn links_are_known_only_while_the_inode_has_several_names_and_the_name_still_leads_to_it() {
        let dir = std::env::temp_dir().join(format!("premain-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (cred, other) = (dir.join("credentials"), dir.join("other"));
        fs::write(&cred, b"fake").unwrap();
        fs::write(&other, b"x").unwrap();
        let id = |p: &Path| {
            let m = fs::metadata(p).unwrap();
            FileId { dev: kernel_dev(m.dev()), ino: m.ino(), nlink: 2 }
        };
        let (c, o) = (id(&cred), id(&other));
        let mut links = Links::default();
        links.remember((c.dev, c.ino), cred.clone());
        assert_eq!(links.of(&c), Some(cred.as_path()));
        assert_eq!(links.of(&FileId { nlink: 1, ..c }), None);
        assert_eq!(links.of(&o), None);
        let catalogued = Catalogued { path: PathBuf::from("/home/x/.pypirc"), reach: other.clone() };
        links.set_credentials([((o.dev, o.ino), catalogued)].into());
        assert_eq!(links.of(&o), Some(Path::new("/home/x/.pypirc")));
        // Gone, and its inode number free for another file: the old names are not believed.
        fs::remove_file(&cred).unwrap();
        fs::remove_file(&other).unwrap();
        assert_eq!(links.of(&c), None);
        assert_eq!(links.of(&o), None);
        fs::remove_dir_all(&dir).unwrap();
        for i in 0..LINKS_MAX as u64 + 10 {
            links.remember((9, i), PathBuf::from("/x"));
        }
        assert!(links.names.len() <= LINKS_MAX);
    }
}
