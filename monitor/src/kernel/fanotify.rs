//! fanotify permission events: the kernel asks premain before a marked file is opened, whatever
//! the syscall (ia32 `int 0x80`, io_uring, `open_by_handle_at`) and whatever name reaches it (a
//! hard link made before premain started, a bind mount), and the opener waits in the kernel
//! until it is answered. Open marks are on inodes, so every name of a file reaches the same
//! mark. Exec marks are on whole filesystems (`execve` itself waits, the caller is not
//! stopped), with an ignore mark on each file once judged.
//!
//! If premain exits, the kernel destroys the group and lets every waiting open through.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

/// One open that waits for an answer.
#[derive(Debug)]
pub(crate) struct Request {
    /// The opening thread (`FAN_REPORT_TID`).
    pub(crate) tid: u32,
    /// The file being opened, opened read-only for premain; the answer names it.
    pub(crate) file: OwnedFd,
    /// An `execve` (or the `ld.so` it loads), not a plain open.
    pub(crate) exec: bool,
}

pub(crate) struct Group {
    fd: OwnedFd,
}

impl Group {
    /// Needs `CAP_SYS_ADMIN` (permission events are a content-class group).
    pub(crate) fn new() -> io::Result<Self> {
        Self::init(libc::FAN_UNLIMITED_MARKS)
    }

    /// A group for exec decisions: one ignore mark per judged executable, and an exec storm
    /// must not overflow the queue (an overflowed permission event would be lost, not allowed).
    pub(crate) fn for_execs() -> io::Result<Self> {
        let group = Self::init(libc::FAN_UNLIMITED_MARKS | libc::FAN_UNLIMITED_QUEUE)?;
        Ok(group.moved_high())
    }

    /// The group on a descriptor numbered above any other premain opens. A killed process's
    /// files are released last-closed-first, and descriptors are closed in ascending order:
    /// the highest one goes first, before the seconds the kernel takes to take down the probes
    /// and programs, so execs waiting for a killed premain go on at once.
    fn moved_high(self) -> Self {
        const HIGH: libc::c_int = 4096;
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor (owned below) or -1.
        let moved = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH) };
        if moved < 0 {
            // RLIMIT_NOFILE at or below it: the group still works, it is only released later.
            return self;
        }
        // SAFETY: `moved` was just returned by the kernel and nothing else owns it.
        Self { fd: unsafe { OwnedFd::from_raw_fd(moved) } }
    }

    fn init(extra: libc::c_uint) -> io::Result<Self> {
        let flags = libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_REPORT_TID | extra;
        let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
        // SAFETY: plain syscall; the fd it returns is owned below.
        let fd = unsafe { libc::fanotify_init(flags, event_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Asks to be asked before every open of the file `path` names (symlinks followed).
    pub(crate) fn watch_opens(&self, path: &Path) -> io::Result<()> {
        let path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN_PERM,
                libc::AT_FDCWD,
                path.as_ptr(),
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Asks to be asked before every open of a file directly in the directory `path` names
    /// (symlinks followed), a file the open itself creates included: an `O_CREAT` open, or
    /// `creat`, of a new name asks once the file exists, whatever the syscall (checked on
    /// Linux 6.18 with `openat`, and with i386 `creat` and `open` through `int 0x80`).
    /// Opens of the directory itself and of subdirectories do not ask (no `FAN_ONDIR`), nor
    /// do names made without an open (rename, link, symlink, mknod).
    pub(crate) fn watch_opens_in(&self, path: &Path) -> io::Result<()> {
        let path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_ONLYDIR,
                libc::FAN_OPEN_PERM | libc::FAN_EVENT_ON_CHILD,
                libc::AT_FDCWD,
                path.as_ptr(),
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Asks to be asked before every `execve` of any file of the filesystem that holds `path`.
    pub(crate) fn watch_execs_on(&self, path: &Path) -> io::Result<()> {
        let path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                libc::FAN_OPEN_EXEC_PERM,
                libc::AT_FDCWD,
                path.as_ptr(),
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Lets later execs of `file` pass without asking. Not surviving a modification (no
    /// `FAN_MARK_IGNORED_SURV_MODIFY`): a file written to is asked about, and judged, again.
    pub(crate) fn ignore_execs_of(&self, file: &impl AsRawFd) -> io::Result<()> {
        // SAFETY: no pointer is passed (a NULL path marks the fd's file itself).
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORE,
                libc::FAN_OPEN_EXEC_PERM,
                file.as_raw_fd(),
                std::ptr::null(),
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Waits up to `timeout` for requests; returns whether there are some.
    pub(crate) fn wait(&self, timeout: std::time::Duration) -> io::Result<bool> {
        let mut pollfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&raw mut pollfd, 1, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(err) };
        }
        Ok(n > 0)
    }

    /// Blocks until the kernel has requests, and returns them.
    pub(crate) fn read(&self) -> io::Result<Vec<Request>> {
        let mut buf = [0u8; 4096];
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        parse(&buf[..n as usize])
    }

    /// Lets the open go on (`allow`) or makes it fail with `EPERM`.
    pub(crate) fn answer(&self, request: &Request, allow: bool) -> io::Result<()> {
        let response = libc::fanotify_response {
            fd: request.file.as_raw_fd(),
            response: if allow { libc::FAN_ALLOW } else { libc::FAN_DENY },
        };
        let size = size_of::<libc::fanotify_response>();
        // SAFETY: `response` is a plain struct of `size` bytes that outlives the call.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const response).cast(), size) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

/// The events in what one `read` returned; every fd in them is owned (closed) by the result.
fn parse(mut bytes: &[u8]) -> io::Result<Vec<Request>> {
    const META: usize = size_of::<libc::fanotify_event_metadata>();
    let mut requests = Vec::new();
    let mut bad = None;
    while bytes.len() >= META {
        // SAFETY: at least `META` bytes remain; the struct is plain data, read unaligned.
        let meta: libc::fanotify_event_metadata = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let len = meta.event_len as usize;
        // The fd is closed whatever else is wrong with the event.
        // SAFETY: the kernel opened this fd for premain in this read; nothing else owns it.
        let file = (meta.fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(meta.fd) });
        if meta.vers != libc::FANOTIFY_METADATA_VERSION || len < META || len > bytes.len() {
            bad.get_or_insert(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("fanotify event of version {} and length {len}", meta.vers),
            ));
            break;
        }
        if let Some(file) = file
            && meta.mask & (libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM) != 0
        {
            let exec = meta.mask & libc::FAN_OPEN_EXEC_PERM != 0;
            requests.push(Request { tid: meta.pid as u32, file, exec });
        }
        bytes = &bytes[len..];
    }
    match (bad, requests.is_empty()) {
        (Some(err), true) => Err(err),
        _ => Ok(requests),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fd: i32, mask: u64, vers: u8) -> Vec<u8> {
        let meta = libc::fanotify_event_metadata {
            event_len: size_of::<libc::fanotify_event_metadata>() as u32,
            vers,
            reserved: 0,
            metadata_len: size_of::<libc::fanotify_event_metadata>() as u16,
            mask,
            fd,
            pid: 4242,
        };
        // SAFETY: a plain struct viewed as its bytes.
        unsafe { std::slice::from_raw_parts((&raw const meta).cast::<u8>(), size_of_val(&meta)) }.to_vec()
    }

    fn open_fd() -> i32 {
        use std::os::fd::IntoRawFd as _;
        std::fs::File::open("/dev/null").unwrap().into_raw_fd()
    }

    #[test]
    fn open_permission_requests_are_parsed() {
        let (a, b, c) = (open_fd(), open_fd(), open_fd());
        let mut bytes = event(a, libc::FAN_OPEN_PERM, libc::FANOTIFY_METADATA_VERSION);
        // Not an open permission event: no request (its fd is closed).
        bytes.extend(event(b, libc::FAN_CLOSE_WRITE, libc::FANOTIFY_METADATA_VERSION));
        bytes.extend(event(c, libc::FAN_OPEN_EXEC_PERM, libc::FANOTIFY_METADATA_VERSION));
        let requests = parse(&bytes).expect("parses");
        assert_eq!(requests.len(), 2);
        assert_eq!((requests[0].tid, requests[0].file.as_raw_fd(), requests[0].exec), (4242, a, false));
        assert_eq!((requests[1].file.as_raw_fd(), requests[1].exec), (c, true));
        assert!(parse(&event(open_fd(), libc::FAN_OPEN_PERM, 1)).is_err(), "an unknown layout is an error");
    }
}
