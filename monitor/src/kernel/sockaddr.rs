//! Parses the raw `struct sockaddr` bytes a `connect` was given.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const AF_UNSPEC: u16 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    Inet(SocketAddrV4),
    Inet6(SocketAddrV6),
    /// A filesystem socket path.
    Unix(Vec<u8>),
    /// A Linux abstract socket name (leading NUL removed).
    UnixAbstract(Vec<u8>),
    /// `AF_UNIX` with no path (autobind).
    UnixUnnamed,
    /// `AF_UNSPEC`: dissolves a UDP association.
    Unspec,
    /// Another family, or too short for its family.
    Other {
        family: u16,
        len: usize,
    },
}

impl SockAddr {
    pub fn parse(bytes: &[u8]) -> Self {
        let Some(family) = bytes.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]])) else {
            return Self::Other { family: 0, len: bytes.len() };
        };
        let other = Self::Other { family, len: bytes.len() };
        match family {
            AF_INET => match bytes.get(2..8) {
                Some(b) => Self::Inet(SocketAddrV4::new(
                    Ipv4Addr::new(b[2], b[3], b[4], b[5]),
                    u16::from_be_bytes([b[0], b[1]]),
                )),
                None => other,
            },
            AF_INET6 => match bytes.get(2..28) {
                Some(b) => {
                    let port = u16::from_be_bytes([b[0], b[1]]);
                    let flowinfo = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
                    let mut ip = [0u8; 16];
                    ip.copy_from_slice(&b[6..22]);
                    let scope = u32::from_ne_bytes([b[22], b[23], b[24], b[25]]);
                    Self::Inet6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope))
                }
                None => other,
            },
            AF_UNIX => {
                let path = &bytes[2..];
                match path.first() {
                    None => Self::UnixUnnamed,
                    Some(0) => Self::UnixAbstract(path[1..].to_vec()),
                    Some(_) => {
                        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                        Self::Unix(path[..end].to_vec())
                    }
                }
            }
            AF_UNSPEC => Self::Unspec,
            _ => other,
        }
    }

    pub fn family(&self) -> &'static str {
        match self {
            Self::Inet(_) => "inet",
            Self::Inet6(_) => "inet6",
            Self::Unix(_) | Self::UnixAbstract(_) | Self::UnixUnnamed => "unix",
            Self::Unspec => "unspec",
            Self::Other { .. } => "other",
        }
    }

    /// A one-string rendering: `127.0.0.1:80`, `[::1]:80`, `/run/x.sock`, `@abstract`.
    pub fn render(&self) -> String {
        match self {
            Self::Inet(a) => a.to_string(),
            Self::Inet6(a) => format!("[{}]:{}", a.ip(), a.port()),
            Self::Unix(p) => String::from_utf8_lossy(p).into_owned(),
            Self::UnixAbstract(p) => format!("@{}", String::from_utf8_lossy(p)),
            Self::UnixUnnamed => "unix:unnamed".to_owned(),
            Self::Unspec => "unspec".to_owned(),
            Self::Other { family, .. } => format!("family:{family}"),
        }
    }

    /// The IP address; an IPv4-mapped IPv6 address as the IPv4 one, so allowlists match both.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Self::Inet(a) => Some((*a.ip()).into()),
            Self::Inet6(a) => Some(a.ip().to_canonical()),
            _ => None,
        }
    }

    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Inet(a) => Some(a.port()),
            Self::Inet6(a) => Some(a.port()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut v = AF_INET.to_ne_bytes().to_vec();
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&ip);
        v.extend_from_slice(&[0; 8]);
        v
    }

    #[test]
    fn ipv4_and_ipv6() {
        assert_eq!(SockAddr::parse(&inet([127, 0, 0, 1], 8080)).render(), "127.0.0.1:8080");
        let mut v6 = AF_INET6.to_ne_bytes().to_vec();
        v6.extend_from_slice(&443u16.to_be_bytes());
        v6.extend_from_slice(&[0; 4]);
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0; 4]);
        let parsed = SockAddr::parse(&v6);
        assert_eq!(parsed.render(), "[::1]:443");
        assert_eq!(parsed.port(), Some(443));
    }

    #[test]
    fn unix_variants() {
        let mut path = AF_UNIX.to_ne_bytes().to_vec();
        path.extend_from_slice(b"/run/a.sock\0garbage");
        assert_eq!(SockAddr::parse(&path), SockAddr::Unix(b"/run/a.sock".to_vec()));
        let mut abs = AF_UNIX.to_ne_bytes().to_vec();
        abs.extend_from_slice(b"\0name");
        assert_eq!(SockAddr::parse(&abs).render(), "@name");
        assert_eq!(SockAddr::parse(&AF_UNIX.to_ne_bytes()), SockAddr::UnixUnnamed);
    }

    #[test]
    fn short_or_odd_input_never_panics() {
        let full = inet([10, 0, 0, 1], 1);
        for len in 0..full.len() {
            let _ = SockAddr::parse(&full[..len]);
        }
        assert_eq!(SockAddr::parse(&full[..5]), SockAddr::Other { family: AF_INET, len: 5 });
        assert_eq!(SockAddr::parse(&[0x11, 0]).family(), "other");
    }
}
