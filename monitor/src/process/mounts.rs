//! The filesystems executables can be run from, read from a `mountinfo` file: one mount point
//! per superblock, leaving out the kernel's own filesystems (nothing is ever exec'd from
//! `/proc` or `/sys`, and marking them would only cost).

use std::{ffi::OsString, os::unix::ffi::OsStringExt, path::PathBuf};

/// One mount point of a filesystem that can hold executables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The superblock's device, `major:minor` as `mountinfo` writes it.
    pub(crate) dev: String,
    /// Where it is mounted, as seen by the process whose `mountinfo` was read.
    pub(crate) point: PathBuf,
}

/// Filesystems of the kernel's own objects: no executable lives there.
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "bpf",
    "tracefs",
    "debugfs",
    "devpts",
    "mqueue",
    "securityfs",
    "pstore",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "nsfs",
    "rpc_pipefs",
    "selinuxfs",
    "nfsd",
];

/// The mounts of `mountinfo` that can hold executables, the first mount point of each
/// superblock only; lines that do not parse are skipped (the kernel writes this file).
pub(crate) fn executable_filesystems(mountinfo: &str) -> Vec<Mount> {
    let mut seen = std::collections::HashSet::new();
    mountinfo
        .lines()
        .filter_map(parse_line)
        .filter(|(_, fstype)| !PSEUDO.contains(&fstype.as_str()))
        .filter(|(mount, _)| seen.insert(mount.dev.clone()))
        .map(|(mount, _)| mount)
        .collect()
}

/// `36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw`: the mount and its type.
fn parse_line(line: &str) -> Option<(Mount, String)> {
    let (left, right) = line.split_once(" - ")?;
    let mut fields = left.split(' ');
    let dev = fields.nth(2)?.to_owned();
    let point = unescape(fields.nth(1)?);
    let fstype = right.split(' ').next()?.to_owned();
    if !dev.contains(':') || point.is_empty() {
        return None;
    }
    Some((Mount { dev, point: PathBuf::from(OsString::from_vec(point)) }, fstype))
}

/// `mountinfo` writes space, tab, newline and backslash in a path as `\ooo` octal escapes.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8).wrapping_add(b - b'0')));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw
24 22 0:22 / /sys rw shared:2 - sysfs sysfs rw
25 22 0:5 / /dev rw shared:3 - devtmpfs udev rw
26 22 0:24 / /tmp rw shared:4 - tmpfs tmpfs rw
27 22 254:1 /srv /srv/bind rw shared:1 - ext4 /dev/vda1 rw
28 24 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
29 22 0:40 / /var/lib/with\\040space rw - overlay overlay rw,lowerdir=/a
garbage line
";

    #[test]
    fn one_mount_point_per_filesystem_that_can_hold_executables() {
        let mounts = executable_filesystems(MOUNTINFO);
        let points: Vec<_> = mounts.iter().map(|m| (m.dev.as_str(), m.point.to_str().unwrap())).collect();
        assert_eq!(
            points,
            [("254:1", "/"), ("0:5", "/dev"), ("0:24", "/tmp"), ("0:40", "/var/lib/with space")]
        );
    }

    #[test]
    fn escapes_are_decoded_and_lone_backslashes_kept() {
        assert_eq!(unescape("a\\134b\\011c"), b"a\\b\tc");
        assert_eq!(unescape("a\\9"), b"a\\9");
        assert_eq!(unescape("end\\"), b"end\\");
    }
}
