//! A fresh network namespace with only loopback, in which every address is local.
//!
//! Nothing in it reaches the host's interfaces: it has no device but `lo`. Besides bringing `lo`
//! up, it adds `local 0.0.0.0/0` and `local ::/0` routes on `lo` (the "AnyIP" setup), so a
//! connect to any address (the index, an attacker's IP, the host's own address) is delivered
//! locally, where the [sink](super::sink) takes it, instead of failing with "network unreachable"
//! before anything was sent. The IPv4 route's preferred source is 127.0.0.1 so every client
//! socket's own address is loopback: the sink's answers to it are never taken for new traffic.
//!
//! Namespaces belong to threads: creating one unshares a short-lived thread, and code enters it
//! on a thread of its own ([`NetNs::run_in`]) or in a child before exec ([`NetNs::enter_on_exec`]).
//! Sockets keep the namespace they were created in, so the sink creates its sockets in
//! [`NetNs::run_in`] and serves them from any thread.

use std::{
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd},
    os::unix::process::CommandExt as _,
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

/// A network namespace, alive as long as this value (it holds the only reference to it).
#[derive(Debug)]
pub struct NetNs {
    /// `/proc/thread-self/ns/net` of the thread that created it.
    file: File,
}

impl NetNs {
    /// Creates the namespace: `lo` up, every IPv4 and IPv6 address routed locally to it.
    pub fn new() -> Result<Self> {
        std::thread::spawn(|| -> Result<Self> {
            // SAFETY: unshare takes no pointers; it moves only this (short-lived) thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(needs_admin(io::Error::last_os_error(), "creating a network namespace"));
            }
            let file = File::open("/proc/thread-self/ns/net")
                .context("opening the new network namespace (/proc/thread-self/ns/net)")?;
            loopback_up().context("bringing lo up in the new network namespace")?;
            let lo = loopback_index()?;
            route_everything_to(lo).context("routing every address to lo in the new network namespace")?;
            Ok(Self { file })
        })
        .join()
        .map_err(|_| anyhow!("the thread creating the network namespace panicked"))?
    }

    /// Runs `f` on a new thread that has joined the namespace, and returns what it returned.
    /// Sockets `f` creates stay in the namespace after the thread ends.
    pub fn run_in<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        let fd = self.file.as_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    enter(fd).map_err(|e| needs_admin(e, "joining the network namespace"))?;
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow!("a thread inside the network namespace panicked"))?
        })
    }

    /// Makes `command` start inside the namespace: its child joins it between fork and exec.
    /// `self` must be alive when the command is spawned (its descriptor is what the child joins).
    pub fn enter_on_exec(&self, command: &mut Command) {
        let fd = self.file.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and calls only setns, which is
        // async-signal-safe; the descriptor is inherited by the child (CLOEXEC closes it at exec,
        // after setns), and `self` keeps it open in the parent until spawn returns.
        unsafe {
            command.pre_exec(move || enter(BorrowedFd::borrow_raw(fd)));
        }
    }

    /// The namespace's descriptor (what `setns` and the sink's sk_lookup attachment take).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Joins the calling thread to the namespace `fd` refers to.
fn enter(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes a descriptor we borrow and a flag; no memory is passed.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Says which capability is missing when the kernel refused for want of it.
fn needs_admin(error: io::Error, what: &str) -> anyhow::Error {
    if error.raw_os_error() == Some(libc::EPERM) {
        anyhow!("{what} needs CAP_SYS_ADMIN (run as root): {error}")
    } else {
        anyhow!("{what}: {error}")
    }
}

/// Sets IFF_UP on `lo` with SIOCSIFFLAGS (no `ip` binary needed).
fn loopback_up() -> io::Result<()> {
    let sock = super::route::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass, which outlives the calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn loopback_index() -> Result<u32> {
    // SAFETY: a NUL-terminated name; no other memory is passed.
    let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if index == 0 {
        bail!("the new network namespace has no lo: {}", io::Error::last_os_error());
    }
    Ok(index)
}

/// `ip route add local 0.0.0.0/0 dev lo src 127.0.0.1 table local` and
/// `ip -6 route add local ::/0 dev lo table local`, over rtnetlink.
fn route_everything_to(lo: u32) -> io::Result<()> {
    let netlink = super::route::Netlink::open()?;
    netlink.add_local_default_route(libc::AF_INET as u8, lo, Some([127, 0, 0, 1]))?;
    netlink.add_local_default_route(libc::AF_INET6 as u8, lo, None)
}
