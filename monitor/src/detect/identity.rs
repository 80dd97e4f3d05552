//! Who an exec'd program is. A name proves nothing: anyone can call a file `uname` or put a
//! `gcc` first on `PATH`. So a program is known by the file its path leads to and by who could
//! have decided that: only when nobody but root could have, do its paths name it.

use std::{
    ffi::OsString,
    fs::{self, Metadata},
    os::unix::fs::MetadataExt as _,
    path::{Component, Path, PathBuf},
};

use crate::process::procfs;

/// Symlinks followed at most, as the kernel's `ELOOP` limit.
const MAX_LINKS: usize = 40;

/// Where `path` (absolute, as a process saw it under `root`) leads, with every symlink
/// resolved, when nobody but root can have decided what it names: every directory the walk
/// looks a name up in (`root` itself, each directory on the way and those symlinks lead
/// through) and the file at its end are owned by root and writable by no one else. Then no
/// other user can have changed what the path named between the exec and now.
///
/// `None` for anything else: a file or a directory on the way that another user owns or can
/// write (`/tmp`, a home, a venv, a package's source tree), a path through `/proc` (its links
/// lead to whatever another process holds), a path that is not there (any more).
pub(crate) fn system_file(root: &Path, path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() || !root_only(&fs::metadata(root).ok()?) {
        return None;
    }
    let on_disk = |inside: &Path| root.join(inside.strip_prefix("/").unwrap_or(inside));
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
        let meta = fs::symlink_metadata(on_disk(&next)).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = fs::read_link(on_disk(&next)).ok()?;
            if target.is_absolute() {
                here = PathBuf::from("/");
            }
            push(&mut todo, &target);
        } else if meta.is_dir() {
            if !root_only(&meta) {
                return None;
            }
            here = next;
        } else {
            return (todo.is_empty() && meta.is_file() && root_only(&meta)).then_some(next);
        }
    }
    None
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

/// Owned by root and writable by neither its group nor others: only root can change it (a
/// directory: what names it holds).
fn root_only(meta: &Metadata) -> bool {
    owner_only_root(meta.uid(), meta.mode())
}

fn owner_only_root(uid: u32, mode: u32) -> bool {
    uid == 0 && mode & 0o022 == 0
}

/// The root directory process `pid` resolves paths from, as premain can reach it: `/` when it
/// is premain's own (so a path stays valid after the process exits), else
/// `/proc/<pid>/root` (a container's). A process gone already is looked up by its parent
/// `ppid`, which shares its root unless one of them changed it: a program run and waited for
/// (`uname` from `platform`) is often over by the time its exec is judged. `None` when both
/// are gone.
pub(crate) fn root_of(pid: u32, ppid: u32) -> Option<PathBuf> {
    let ours = fs::metadata("/").ok()?;
    [pid, ppid].into_iter().find_map(|pid| {
        let link = procfs::root_link(pid);
        let theirs = fs::metadata(&link).ok()?;
        let same = (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino());
        Some(if same { PathBuf::from("/") } else { link })
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
        assert_eq!(system_file(&root, &real), Some(real));
        assert_eq!(root_of(std::process::id(), 0), Some(PathBuf::from("/")));
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
