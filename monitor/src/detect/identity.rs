//! Who an exec'd program is. A name proves nothing: anyone can call a file `uname` or put a
//! `gcc` first on `PATH`. So a program is known by the file its path leads to and by who could
//! have decided that: only when nobody but root could have, do its paths name it.
//!
//! The walk runs on the event loop, so it must not wait for a file server: it looks names up
//! only in directories only root can write to, and reads attributes with `AT_STATX_DONT_SYNC`
//! (network and FUSE file systems answer from what they know). Another user's FUSE mount,
//! which can only be on a directory of theirs, is where the walk stops, and the kernel refuses
//! root's requests to it without asking its server (unless `user_allow_other` in
//! `/etc/fuse.conf` lets users mount with `allow_other`).

use std::{
    ffi::{CString, OsString},
    fs, iter,
    mem::MaybeUninit,
    os::unix::ffi::OsStrExt as _,
    path::{Component, Path, PathBuf},
};

use monitor_common::ExeKey;

use crate::process::{procfs, table::ProcessTable};

/// Symlinks followed at most, as the kernel's `ELOOP` limit.
const MAX_LINKS: usize = 40;
/// Ancestors looked at for a root to resolve from, at most.
const MAX_ANCESTORS: usize = 16;

/// The [`system_file`] `path` leads to, as process `pid` (child of `ppid`) ran it. The path is
/// resolved from the root of the first of the process and its ancestors (`table`'s, else
/// `/proc`'s) still running: a program run and waited for (`as` under `gcc`) is often over by
/// the time its exec is judged, and so is its parent. An ancestor shares the process's root
/// unless one of them changed root or mount namespace since, so from an ancestor's root the
/// file found must also be the one the kernel ran (`ran`, known when the exec succeeded).
pub(crate) fn system_program(
    table: &ProcessTable,
    pid: u32,
    ppid: u32,
    path: &Path,
    ran: Option<&ExeKey>,
) -> Option<PathBuf> {
    let up = iter::successors(Some(ppid), |&p| {
        let parent = table.get(p).map(|p| p.ppid).or_else(|| procfs::stat(p).map(|s| s.ppid))?;
        (parent != 0 && parent != p).then_some(parent)
    });
    let mut roots = iter::once(pid).chain(up).take(MAX_ANCESTORS).map(root_of);
    let (root, own) = match roots.next().flatten() {
        Some(root) => (root, true),
        None => (roots.flatten().next()?, false),
    };
    let file = system_file(&root, path)?;
    if !own && let Some(ran) = ran {
        let found = stat(&on_disk(&root, &file), true)?;
        if found.key() != *ran {
            return None;
        }
    }
    Some(file)
}

/// Where `path` (absolute, as a process saw it under `root`) leads, with every symlink
/// resolved, when nobody but root can have decided what it names: every directory the walk
/// looks a name up in (`root` itself, each directory on the way and those symlinks lead
/// through) and the file at its end are owned by root and writable by no one else. Then no
/// other user can have changed what the path named between the exec and now.
///
/// `None` for anything else: a file or a directory on the way that another user owns or can
/// write (`/tmp`, a home, a venv, a package's source tree), a file mounted over the one at
/// its path (anyone can bind-mount a file in a mount namespace of their own), a path through
/// `/proc` (its links lead to whatever another process holds), a path that is not there (any
/// more).
pub(crate) fn system_file(root: &Path, path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() || !stat(root, true)?.root_only() {
        return None;
    }
    // The components still to walk, the next one last.
    let mut todo: Vec<OsString> = Vec::new();
    push(&mut todo, path);
    // Always a directory already checked, as are all of its ancestors.
    let mut here = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            here.pop();
            continue;
        }
        let next = here.join(&name);
        if next == Path::new("/proc") {
            return None;
        }
        let found = stat(&on_disk(root, &next), false)?;
        match found.kind() {
            libc::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = fs::read_link(on_disk(root, &next)).ok()?;
                if target.is_absolute() {
                    here = PathBuf::from("/");
                }
                push(&mut todo, &target);
            }
            libc::S_IFDIR if found.root_only() => here = next,
            libc::S_IFREG if todo.is_empty() && found.root_only() && found.mount_root == Some(false) => {
                return Some(next);
            }
            _ => return None,
        }
    }
    None
}

/// `inside`, a path under `root`, as premain reaches it.
fn on_disk(root: &Path, inside: &Path) -> PathBuf {
    root.join(inside.strip_prefix("/").unwrap_or(inside))
}

/// Puts the components of `path` on `todo`, the first one last.
fn push(todo: &mut Vec<OsString>, path: &Path) {
    for part in path.components().rev() {
        match part {
            Component::Normal(name) => todo.push(name.to_owned()),
            Component::ParentDir => todo.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// The root directory process `pid` resolves paths from, as premain can reach it while the
/// process runs: `/` when it is premain's own root in premain's mount namespace (so a path
/// stays valid after the process exits), else `/proc/<pid>/root`, which looks names up in the
/// process's own mounts (a container's, or a bind mount over `/usr/bin/uname` in a namespace
/// an unprivileged user made). `None` once the process is gone.
fn root_of(pid: u32) -> Option<PathBuf> {
    let link = procfs::root_link(pid);
    let theirs = stat(&link, true)?;
    let ours = stat(Path::new("/"), true)?;
    let same = (theirs.dev, theirs.ino) == (ours.dev, ours.ino)
        && procfs::mount_namespace(pid)? == procfs::mount_namespace(std::process::id())?;
    Some(if same { PathBuf::from("/") } else { link })
}

/// What the walk reads of a file.
struct Stat {
    mode: u32,
    uid: u32,
    /// Kernel encoding (`MAJOR << 20 | MINOR`), as [`ExeKey`] has it.
    dev: u64,
    ino: u64,
    mtime: (i64, u32),
    /// The root of a mount (for a file: one bind-mounted over whatever its directory holds);
    /// `None` when the kernel cannot tell (before 5.8).
    mount_root: Option<bool>,
}

impl Stat {
    fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// Owned by root and writable by neither its group nor others: only root can change it (a
    /// directory: what names it holds).
    fn root_only(&self) -> bool {
        owner_only_root(self.uid, self.mode)
    }

    fn key(&self) -> ExeKey {
        ExeKey { dev: self.dev, ino: self.ino, mtime_sec: self.mtime.0, mtime_nsec: self.mtime.1, _pad: 0 }
    }
}

fn owner_only_root(uid: u32, mode: u32) -> bool {
    uid == 0 && mode & 0o022 == 0
}

/// `statx` of `path` (the link itself unless `follow`), from what the file system knows
/// already (`AT_STATX_DONT_SYNC`).
fn stat(path: &Path, follow: bool) -> Option<Stat> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let flags = libc::AT_STATX_DONT_SYNC | if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    let mask = libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_UID | libc::STATX_INO | libc::STATX_MTIME;
    let mut stx = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `path` is NUL-terminated and outlives the call; `stx` is a writable statx buffer.
    if unsafe { libc::statx(libc::AT_FDCWD, path.as_ptr(), flags, mask, stx.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statx succeeded, so it filled the buffer (which was zeroed before anyway).
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & mask != mask {
        return None;
    }
    let mount_root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Some(Stat {
        mode: u32::from(stx.stx_mode),
        uid: stx.stx_uid,
        dev: u64::from(stx.stx_dev_major) << 20 | u64::from(stx.stx_dev_minor),
        ino: stx.stx_ino,
        mtime: (stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec),
        mount_root: (stx.stx_attributes_mask & mount_root != 0)
            .then_some(stx.stx_attributes & mount_root != 0),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    /// A directory under `/tmp` (writable by anyone, as temporary directories are) removed on
    /// drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let path = Path::new("/tmp").join(format!("premain-identity-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A system binary every machine of this kind has.
    fn system_binary() -> PathBuf {
        fs::canonicalize("/usr/bin/uname").expect("/usr/bin/uname (coreutils)")
    }

    #[test]
    fn only_root_may_write() {
        assert!(owner_only_root(0, 0o100755));
        assert!(owner_only_root(0, 0o40555));
        assert!(!owner_only_root(1000, 0o100755), "another user's file");
        assert!(!owner_only_root(0, 0o100775), "group-writable");
        assert!(!owner_only_root(0, 0o100757), "world-writable");
        assert!(!owner_only_root(0, 0o41777), "a sticky /tmp is still everyone's to fill");
    }

    #[test]
    fn a_system_binary_is_itself_through_every_spelling() {
        let real = system_binary();
        assert_eq!(system_file(Path::new("/"), &real), Some(real.clone()));
        // /bin is a symlink to usr/bin on merged-/usr systems (Debian 12).
        let via_bin = Path::new("/bin/uname");
        assert_eq!(system_file(Path::new("/"), via_bin), Some(fs::canonicalize(via_bin).unwrap()));
        assert_eq!(system_file(Path::new("/"), Path::new("/usr/lib/../bin/./uname")), Some(real.clone()));
        // The process's root reached through /proc: the same file, named as the process names it.
        let root = procfs::root_link(std::process::id());
        assert_eq!(system_file(&root, &real), Some(real.clone()));
        assert_eq!(root_of(std::process::id()), Some(PathBuf::from("/")));
        assert_eq!(root_of(u32::MAX), None);
    }

    #[test]
    fn a_program_is_looked_up_from_its_own_root_else_from_a_running_ancestors() {
        let (table, me, gone) = (ProcessTable::new(8), std::process::id(), u32::MAX);
        let (real, via_bin) = (system_binary(), Path::new("/bin/uname"));
        let ran = stat(&real, true).unwrap().key();
        assert_eq!(ran, crate::process::tracker::exe_key(&real).unwrap(), "the kernel's encoding");
        let other = ExeKey { ino: ran.ino + 1, ..ran };
        assert_eq!(system_program(&table, me, 0, via_bin, None), Some(real.clone()));
        // Its own root is the process's: what the path leads to there is what it ran.
        assert_eq!(system_program(&table, me, 0, via_bin, Some(&other)), Some(real.clone()));
        // Gone, its parent's root: the file must be the one the kernel ran.
        assert_eq!(system_program(&table, gone, me, via_bin, Some(&ran)), Some(real.clone()));
        assert_eq!(system_program(&table, gone, me, via_bin, Some(&other)), None);
        assert_eq!(system_program(&table, gone, me, via_bin, None), Some(real), "a refused exec ran nothing");
        assert_eq!(system_program(&table, gone, gone - 1, via_bin, None), None, "no one left");
    }

    #[test]
    fn mount_roots_are_told() {
        assert_eq!(stat(Path::new("/"), false).unwrap().mount_root, Some(true));
        assert_eq!(stat(&system_binary(), false).unwrap().mount_root, Some(false));
        assert!(stat(Path::new("/no/such/file"), false).is_none());
    }

    #[test]
    fn a_copy_in_a_temporary_directory_is_nobody_in_particular() {
        let dir = Scratch::new("copy");
        let fake = dir.0.join("uname");
        fs::copy(system_binary(), &fake).unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        // Even owned by root and not writable, a file in a directory others can write to
        // may have been put or swapped there by anyone.
        assert_eq!(system_file(Path::new("/"), &fake), None);
        // A symlink there to the real binary: whoever owns the directory decides where it
        // leads, so it leads nowhere trusted.
        let link = dir.0.join("uname-link");
        symlink(system_binary(), &link).unwrap();
        assert_eq!(system_file(Path::new("/"), &link), None);
        assert_eq!(system_file(Path::new("/"), Path::new("uname")), None, "relative");
        assert_eq!(system_file(Path::new("/"), Path::new("/usr/bin/no-such-program")), None);
        assert_eq!(system_file(Path::new("/"), Path::new("/proc/self/exe")), None);
        assert_eq!(system_file(Path::new("/"), Path::new("/usr/bin")), None, "a directory");
    }

    #[test]
    fn a_writable_file_or_directory_is_refused() {
        let dir = Scratch::new("modes");
        // Walked from a directory of its own as root (as a container's root would be), so
        // that /tmp above it plays no part: the modes below it decide.
        let root = dir.0.join("root");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let file = root.join("tool");
        fs::write(&file, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o757)).unwrap();
        assert_eq!(system_file(&root, Path::new("/tool")), None, "a world-writable file");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        assert_eq!(
            system_file(&root, Path::new("/tool")).is_some(),
            as_root,
            "root's file only when made by root"
        );
        fs::set_permissions(&root, fs::Permissions::from_mode(0o775)).unwrap();
        assert_eq!(system_file(&root, Path::new("/tool")), None, "a group-writable directory");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = Scratch::new("root");
        let root = dir.0.join("root");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        for d in [&root, &root.join("usr"), &root.join("usr/bin")] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(root.join("usr/bin/tool"), "").unwrap();
        fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        // An absolute link means the root's /usr, not premain's.
        symlink("/usr/bin", root.join("bin")).unwrap();
        symlink("../../../../../usr/bin/tool", root.join("usr/bin/up")).unwrap();
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let tool = Some(PathBuf::from("/usr/bin/tool"));
            assert_eq!(system_file(&root, Path::new("/bin/tool")), tool);
            assert_eq!(system_file(&root, Path::new("/usr/bin/up")), tool, ".. stops at the root");
        }
        symlink("loop", root.join("usr/bin/loop")).unwrap();
        assert_eq!(system_file(&root, Path::new("/usr/bin/loop")), None);
    }
}
