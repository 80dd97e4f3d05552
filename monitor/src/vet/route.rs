//! The two rtnetlink requests the namespace needs (adding a route), written by hand: the
//! namespace must not depend on an `ip` binary, and two fixed messages do not justify a crate.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// `socket(2)` with CLOEXEC, owned.
pub(super) fn socket(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; no memory is passed.
    let raw = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A NETLINK_ROUTE socket of the calling thread's network namespace.
pub(super) struct Netlink {
    sock: OwnedFd,
}

impl Netlink {
    pub(super) fn open() -> io::Result<Self> {
        Ok(Self { sock: socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)? })
    }

    /// Adds `local <any>/0 dev <ifindex> [src <prefsrc>] table local` for `family`.
    pub(super) fn add_local_default_route(
        &self,
        family: u8,
        ifindex: u32,
        prefsrc: Option<[u8; 4]>,
    ) -> io::Result<()> {
        let mut msg = Vec::with_capacity(48);
        // nlmsghdr: length (patched below), type, flags, sequence, port id.
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&libc::RTM_NEWROUTE.to_ne_bytes());
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
        msg.extend_from_slice(&(flags as u16).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        // rtmsg: family, dst_len 0 (everything), src_len, tos, table, protocol, scope, type, flags.
        msg.extend_from_slice(&[
            family,
            0,
            0,
            0,
            libc::RT_TABLE_LOCAL,
            libc::RTPROT_BOOT,
            libc::RT_SCOPE_HOST,
            libc::RTN_LOCAL,
        ]);
        msg.extend_from_slice(&0u32.to_ne_bytes());
        attribute(&mut msg, libc::RTA_OIF, &ifindex.to_ne_bytes());
        if let Some(src) = prefsrc {
            attribute(&mut msg, libc::RTA_PREFSRC, &src);
        }
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());

        // SAFETY: sends `msg`, which outlives the call, to the kernel (a zeroed sockaddr_nl).
        let sent = unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.sock.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        self.ack()
    }

    /// Reads the kernel's NLMSG_ERROR answer: error 0 is the acknowledgement.
    fn ack(&self) -> io::Result<()> {
        let mut buf = [0u8; 1024];
        // SAFETY: receives into `buf`, which outlives the call.
        let n = unsafe { libc::recv(self.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let kind = (n >= 20).then(|| u16::from_ne_bytes([buf[4], buf[5]]));
        if kind != Some(libc::NLMSG_ERROR as u16) {
            return Err(io::Error::other("rtnetlink answered with something other than an acknowledgement"));
        }
        match i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) {
            0 => Ok(()),
            error => Err(io::Error::from_raw_os_error(-error)),
        }
    }
}

/// Appends an rtattr (length, type, value, padding to 4 bytes).
fn attribute(msg: &mut Vec<u8>, kind: u16, value: &[u8]) {
    msg.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(value);
    msg.resize(msg.len().next_multiple_of(4), 0);
}
