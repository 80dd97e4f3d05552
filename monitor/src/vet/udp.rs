//! recvmsg/sendmsg with the ancillary data the sink needs: the address and port a datagram was
//! sent to (the sink's sockets receive for every address), and answering from that address (a
//! resolver drops a DNS answer that comes from another address than the one it asked).

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd as _, BorrowedFd},
};

/// Asks the kernel for each datagram's destination: IP(V6)_RECVORIGDSTADDR (address and port)
/// on the catch-all socket, IPV6_RECVPKTINFO (the address, also of IPv4 datagrams) on the DNS one.
pub(super) fn want_destination(fd: BorrowedFd<'_>, with_port: bool) -> io::Result<()> {
    let opts: &[(i32, i32)] = if with_port {
        &[(libc::SOL_IP, libc::IP_RECVORIGDSTADDR), (libc::SOL_IPV6, libc::IPV6_RECVORIGDSTADDR)]
    } else {
        &[(libc::SOL_IPV6, libc::IPV6_RECVPKTINFO)]
    };
    for &(level, name) in opts {
        let one: libc::c_int = 1;
        // SAFETY: an int option, passed by pointer with its size; it outlives the call.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A received datagram: its whole length (even beyond the buffer), source and destination (port 0 when only the address is
/// known).
pub(super) struct Received {
    pub(super) len: usize,
    pub(super) source: SocketAddr,
    pub(super) destination: Option<SocketAddr>,
}

pub(super) fn receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: sockaddr_in6 is plain data, all zeroes valid.
    let mut from: libc::sockaddr_in6 = unsafe { zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data, all zeroes valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>();
    // SAFETY: every buffer msg points at lives until the call returns; MSG_TRUNC keeps an
    // oversized datagram's real length.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let source = v6(&from);
    let mut destination = None;
    // SAFETY: CMSG_* walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            destination = match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_IP, libc::IP_ORIGDSTADDR) => {
                    let a = data.cast::<libc::sockaddr_in>().read_unaligned();
                    let ip = u32::from_be(a.sin_addr.s_addr).into();
                    Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
                }
                (libc::SOL_IPV6, libc::IPV6_ORIGDSTADDR) => {
                    Some(v6(&data.cast::<libc::sockaddr_in6>().read_unaligned()))
                }
                (libc::SOL_IPV6, libc::IPV6_PKTINFO) => {
                    let info = data.cast::<libc::in6_pktinfo>().read_unaligned();
                    Some(SocketAddr::new(Ipv6Addr::from(info.ipi6_addr.s6_addr).to_canonical(), 0))
                }
                _ => destination,
            };
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok(Received { len: n as usize, source, destination })
}

/// Sends `data` to `to` from the address `from` (the address the question was sent to).
pub(super) fn send_from(fd: BorrowedFd<'_>, data: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<()> {
    let to = match to {
        SocketAddr::V4(a) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
        SocketAddr::V6(a) => a,
    };
    let from = match from {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    // SAFETY: plain data, all zeroes valid.
    let mut name: libc::sockaddr_in6 = unsafe { zeroed() };
    name.sin6_family = libc::AF_INET6 as u16;
    name.sin6_port = to.port().to_be();
    name.sin6_addr.s6_addr = to.ip().octets();
    let mut iov = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data, all zeroes valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size; the control buffer (64 bytes) holds one pktinfo.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) } as usize;
    // SAFETY: writes one cmsg into `control`, which is large enough (see above); sendmsg reads
    // buffers that live until it returns. For an IPv4 client the kernel takes the mapped source.
    let n = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_IPV6;
        (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
        let mut info: libc::in6_pktinfo = zeroed();
        info.ipi6_addr.s6_addr = from.octets();
        libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>().write_unaligned(info);
        libc::sendmsg(fd.as_raw_fd(), &raw const msg, libc::MSG_DONTWAIT)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An IPv6 socket address, IPv4-mapped ones given back as IPv4.
fn v6(a: &libc::sockaddr_in6) -> SocketAddr {
    let ip = Ipv6Addr::from(a.sin6_addr.s6_addr).to_canonical();
    SocketAddr::new(ip, u16::from_be(a.sin6_port))
}
