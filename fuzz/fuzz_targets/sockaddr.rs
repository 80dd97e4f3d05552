//! `struct sockaddr` bytes as a process passed them to `connect`/`sendto`: parsing and every
//! accessor the rules use must not panic, and an address renders as text that reads back.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use monitor::kernel::sockaddr::SockAddr;

fuzz_target!(|data: &[u8]| {
    let addr = SockAddr::parse(data);
    let (text, family, ip, port) = (addr.render(), addr.family(), addr.ip(), addr.port());
    assert!(!text.is_empty());
    let inet = matches!(family, "inet" | "inet6");
    assert_eq!(inet, ip.is_some(), "{addr:?}");
    assert_eq!(inet, port.is_some(), "{addr:?}");
    if let (Some(ip), Some(port)) = (ip, port) {
        let back: SocketAddr = text.parse().unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        assert_eq!(back.port(), port, "{text}");
        // `ip()` shows an IPv4-mapped IPv6 address as IPv4 so that allowlists match both.
        let shown = match back.ip() {
            IpAddr::V6(v6) => v6.to_canonical(),
            v4 => v4,
        };
        assert_eq!(shown, ip, "{text}");
    }
    if let SockAddr::Other { len, .. } = addr {
        assert_eq!(len, data.len());
    }
});
