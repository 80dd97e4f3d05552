//! What the daemon tells the kernel's guard: which rules a process is guarded for, and the
//! destinations and programs never denied. The guard's decisions themselves are the alert
//! engine's, published per thread (see `monitor_common::JUDGED`).

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use monitor_common::{
    AllowedNet, ExeKey, GUARD_CONNECT_DRY_RUN, GUARD_CONNECT_ENFORCE, GUARD_EXEC_DRY_RUN, GUARD_EXEC_ENFORCE,
    GUARD_MEMORY_DRY_RUN, GUARD_MEMORY_ENFORCE, GUARD_SEND_DRY_RUN, GUARD_SEND_ENFORCE, PROGRAM_ALLOWED,
    PROGRAM_TOOLCHAIN,
};

use super::Mode;
use crate::{
    detect::{RuleId, identity},
    ops::config::Destination,
    process::tracker::exe_key,
};

/// The rules the guard decides in the kernel.
pub(crate) const GUARDED: [RuleId; 4] =
    [RuleId::NetworkConnect, RuleId::NetworkSend, RuleId::ProcessMemory, RuleId::ProgramExec];

/// The `GUARD_*` bits of a process where each rule is in the mode `mode_of` says.
pub(crate) fn guard_bits(mut mode_of: impl FnMut(RuleId) -> Mode) -> u32 {
    let mut bits = 0;
    for rule in GUARDED {
        let (dry_run, enforce) = match rule {
            RuleId::NetworkConnect => (GUARD_CONNECT_DRY_RUN, GUARD_CONNECT_ENFORCE),
            RuleId::NetworkSend => (GUARD_SEND_DRY_RUN, GUARD_SEND_ENFORCE),
            RuleId::ProcessMemory => (GUARD_MEMORY_DRY_RUN, GUARD_MEMORY_ENFORCE),
            _ => (GUARD_EXEC_DRY_RUN, GUARD_EXEC_ENFORCE),
        };
        bits |= match mode_of(rule) {
            Mode::Observe => 0,
            Mode::DryRun => dry_run,
            Mode::Enforce => enforce,
        };
    }
    bits
}

/// The kernel's form of the allowed destinations and of the package index networks (allowed
/// during installs only, on every port).
pub(crate) fn allowed_nets(destinations: &[Destination], index: &[IpNet]) -> Vec<AllowedNet> {
    let any = || AllowedNet { addr: [0; 16], mask: [0; 16], prefix: 0, port: 0, install_only: 0, _pad: 0 };
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

/// The files `programs` (globs of `allow.programs`) and `toolchain` (of `install.toolchain`)
/// name on this host, by the kernel's identity, with their `PROGRAM_*` bits: only files no
/// one but root controls (see `identity::system_file`), as the rule allows them.
pub(crate) fn allowed_programs(programs: &[&str], toolchain: &[&str]) -> Vec<(ExeKey, u32)> {
    let mut found: std::collections::BTreeMap<(u64, u64, i64, u32), (ExeKey, u32)> = Default::default();
    for (globs, bit) in [(programs, PROGRAM_ALLOWED), (toolchain, PROGRAM_TOOLCHAIN)] {
        for pattern in globs {
            for path in expand(pattern) {
                let Some(file) = identity::system_file(Path::new("/"), &path) else { continue };
                let Ok(key) = exe_key(&file) else { continue };
                let entry =
                    found.entry((key.dev, key.ino, key.mtime_sec, key.mtime_nsec)).or_insert((key, 0));
                entry.1 |= bit;
            }
        }
    }
    found.into_values().collect()
}

/// The paths on this host an absolute glob names (`*` and `?` within one name, `{a,b}` lists,
/// `[...]` classes), found by listing only the directories on its way.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for text in braces(pattern) {
        let mut here = vec![PathBuf::from("/")];
        for part in text.split('/').filter(|p| !p.is_empty()) {
            let wild = part.contains(['*', '?', '[']);
            let matcher = wild.then(|| globset::Glob::new(part).ok().map(|g| g.compile_matcher())).flatten();
            let mut next = Vec::new();
            for dir in &here {
                match &matcher {
                    None if wild => {}
                    None => next.push(dir.join(part)),
                    Some(m) => {
                        let Ok(entries) = std::fs::read_dir(dir) else { continue };
                        next.extend(
                            entries.flatten().filter(|e| m.is_match(e.file_name())).map(|e| e.path()),
                        );
                    }
                }
            }
            here = next;
            if here.is_empty() || here.len() > 10_000 {
                break;
            }
        }
        paths.extend(here.into_iter().filter(|p| p.exists()));
    }
    paths
}

/// `pattern` with its `{a,b}` lists spelled out (the empty alternative included).
fn braces(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else { return vec![pattern.to_owned()] };
    let Some(len) = pattern[open..].find('}') else { return vec![pattern.to_owned()] };
    let (head, body, tail) = (&pattern[..open], &pattern[open + 1..open + len], &pattern[open + len + 1..]);
    body.split(',').flat_map(|alt| braces(&format!("{head}{alt}{tail}"))).collect()
}

/// `net` as IPv6, IPv4 mapped into `::ffff:0:0/96` as the kernel programs see it.
fn kernel_net(net: IpNet, install_only: bool) -> AllowedNet {
    let (addr, prefix) = match net.network() {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), u32::from(net.prefix_len()) + 96),
        IpAddr::V6(v6) => (v6.octets(), u32::from(net.prefix_len())),
    };
    let mask = (u128::MAX.checked_shl(128 - prefix).unwrap_or(0)).to_be_bytes();
    AllowedNet { addr, mask, prefix, port: 0, install_only: u32::from(install_only), _pad: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_bits_follow_each_rule_mode() {
        assert_eq!(guard_bits(|_| Mode::Observe), 0);
        let some = |rule| match rule {
            RuleId::NetworkConnect | RuleId::ProgramExec => Mode::Enforce,
            RuleId::NetworkSend => Mode::DryRun,
            _ => Mode::Observe,
        };
        assert_eq!(guard_bits(some), GUARD_CONNECT_ENFORCE | GUARD_SEND_DRY_RUN | GUARD_EXEC_ENFORCE);
        assert_eq!(
            guard_bits(|_| Mode::DryRun),
            GUARD_CONNECT_DRY_RUN | GUARD_SEND_DRY_RUN | GUARD_MEMORY_DRY_RUN | GUARD_EXEC_DRY_RUN
        );
    }

    #[test]
    fn program_globs_name_the_files_on_this_host() {
        assert_eq!(braces("/usr/{lib,libexec}/x{,-[0-9]*}").len(), 4);
        let found = expand("/usr/bin/{en,pri}v");
        assert!(found.contains(&PathBuf::from("/usr/bin/env")), "{found:?}");
        assert!(expand("/usr/bin/no-such-program-*").is_empty());
        let env = exe_key(Path::new("/usr/bin/env")).unwrap();
        let allowed = allowed_programs(&["/usr/bin/en[v]"], &["/usr/*/env"]);
        let bits = allowed.iter().find(|(k, _)| *k == env).map(|(_, b)| *b);
        assert_eq!(bits, Some(PROGRAM_ALLOWED | PROGRAM_TOOLCHAIN));
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
        assert_eq!((&v4.mask[..14], &v4.mask[14..]), (&[0xff; 14][..], &[0, 0][..]));
        assert_eq!(&v4.addr[10..14], &[0xff, 0xff, 10, 1]);
        let any = nets.iter().find(|n| n.port == 53).unwrap();
        assert_eq!((any.prefix, any.mask, any.install_only), (0, [0; 16], 0));
        let v6 = nets.iter().find(|n| n.port == 80).unwrap();
        assert_eq!((v6.prefix, &v6.addr[..4]), (32, &[0x20, 0x01, 0x0d, 0xb8][..]));
        assert_eq!((&v6.mask[..4], &v6.mask[4..]), (&[0xff; 4][..], &[0; 12][..]));
        let index = nets.iter().find(|n| n.install_only == 1).unwrap();
        assert_eq!((index.prefix, index.port, &index.addr[12..14]), (112, 0, &[151, 101][..]));
    }
}
