//! What the daemon tells the kernel's network guard: which network rules a process is guarded
//! for, and the destinations never denied. The guard's decisions themselves are the alert
//! engine's, published per thread (see `monitor_common::JUDGED`).

use std::net::IpAddr;

use ipnet::IpNet;
use monitor_common::{
    AllowedNet, GUARD_CONNECT_DRY_RUN, GUARD_CONNECT_ENFORCE, GUARD_SEND_DRY_RUN, GUARD_SEND_ENFORCE,
};

use super::Mode;
use crate::ops::config::Destination;

/// The `GUARD_*` bits of a process where network-connect is in `connect` and network-send in
/// `send`.
pub(crate) fn guard_bits(connect: Mode, send: Mode) -> u32 {
    let bit = |mode, dry_run, enforce| match mode {
        Mode::Observe => 0,
        Mode::DryRun => dry_run,
        Mode::Enforce => enforce,
    };
    bit(connect, GUARD_CONNECT_DRY_RUN, GUARD_CONNECT_ENFORCE)
        | bit(send, GUARD_SEND_DRY_RUN, GUARD_SEND_ENFORCE)
}

/// The kernel's form of the allowed destinations and of the package index networks (allowed
/// during installs only, on every port).
pub(crate) fn allowed_nets(destinations: &[Destination], index: &[IpNet]) -> Vec<AllowedNet> {
    let any = || AllowedNet { addr: [0; 16], prefix: 0, port: 0, install_only: 0, _pad: 0 };
    let mut nets: Vec<AllowedNet> = destinations
        .iter()
        .map(|d| AllowedNet {
            port: d.port.map_or(0, u32::from),
            ..d.net.map_or_else(any, |net| kernel_net(net, false))
        })
        .collect();
    nets.extend(index.iter().map(|net| kernel_net(*net, true)));
    nets.sort_by_key(|n| (n.addr, n.prefix, n.port, n.install_only));
    nets.dedup();
    nets
}

/// `net` as IPv6, IPv4 mapped into `::ffff:0:0/96` as the kernel programs see it.
fn kernel_net(net: IpNet, install_only: bool) -> AllowedNet {
    let (addr, prefix) = match net.network() {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), u32::from(net.prefix_len()) + 96),
        IpAddr::V6(v6) => (v6.octets(), u32::from(net.prefix_len())),
    };
    AllowedNet { addr, prefix, port: 0, install_only: u32::from(install_only), _pad: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_bits_follow_each_rule_mode() {
        assert_eq!(guard_bits(Mode::Observe, Mode::Observe), 0);
        assert_eq!(guard_bits(Mode::Enforce, Mode::DryRun), GUARD_CONNECT_ENFORCE | GUARD_SEND_DRY_RUN);
        assert_eq!(guard_bits(Mode::DryRun, Mode::Enforce), GUARD_CONNECT_DRY_RUN | GUARD_SEND_ENFORCE);
    }

    #[test]
    fn destinations_become_v6_prefixes_with_ports() {
        let parse = |t: &str| Destination::parse(t).unwrap();
        let nets = allowed_nets(
            &[parse("10.1.0.0/16:443"), parse("*:53"), parse("[2001:db8::/32]:80")],
            &["151.101.0.0/16".parse().unwrap()],
        );
        assert_eq!(nets.len(), 4);
        let v4 = nets.iter().find(|n| n.port == 443).unwrap();
        assert_eq!(v4.prefix, 112);
        assert_eq!(&v4.addr[10..14], &[0xff, 0xff, 10, 1]);
        let any = nets.iter().find(|n| n.port == 53).unwrap();
        assert_eq!((any.prefix, any.install_only), (0, 0));
        let v6 = nets.iter().find(|n| n.port == 80).unwrap();
        assert_eq!((v6.prefix, &v6.addr[..4]), (32, &[0x20, 0x01, 0x0d, 0xb8][..]));
        let index = nets.iter().find(|n| n.install_only == 1).unwrap();
        assert_eq!((index.prefix, index.port, &index.addr[12..14]), (112, 0, &[151, 101][..]));
    }
}
