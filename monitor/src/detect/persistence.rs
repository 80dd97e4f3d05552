//! `persistence`: pre-main code writing where code runs again later: shell start-up files,
//! systemd units, cron, XDG autostart, `authorized_keys`, Python's `.pth` and customize
//! hooks, `/etc/ld.so.preload`. A write is an open for writing or creating (the kernel's path
//! of what was opened), or a new name given by rename, link or symlink.

use std::path::Path;

use globset::GlobSet;

use super::glob_set;

/// `(category, glob)`. `**/` matches any home directory.
const TARGETS: &[(&str, &str)] = &[
    ("shell-rc", "**/.bashrc"),
    ("shell-rc", "**/.bash_profile"),
    ("shell-rc", "**/.bash_login"),
    ("shell-rc", "**/.bash_logout"),
    ("shell-rc", "**/.profile"),
    ("shell-rc", "**/.zshrc"),
    ("shell-rc", "**/.zshenv"),
    ("shell-rc", "**/.zprofile"),
    ("shell-rc", "**/.zlogin"),
    ("shell-rc", "**/.kshrc"),
    ("shell-rc", "**/.config/fish/config.fish"),
    ("shell-rc", "**/.config/fish/conf.d/*"),
    ("shell-rc", "/etc/profile"),
    ("shell-rc", "/etc/profile.d/*"),
    ("shell-rc", "/etc/bash.bashrc"),
    ("shell-rc", "/etc/bashrc"),
    ("shell-rc", "/etc/zsh/*"),
    ("shell-rc", "/etc/environment"),
    ("ssh-authorized-keys", "**/.ssh/authorized_keys"),
    ("ssh-authorized-keys", "**/.ssh/authorized_keys2"),
    ("ssh-authorized-keys", "**/.ssh/rc"),
    ("ssh-authorized-keys", "/etc/ssh/sshrc"),
    ("systemd-unit", "**/.config/systemd/user/**"),
    ("systemd-unit", "**/.local/share/systemd/user/**"),
    ("systemd-unit", "/etc/systemd/system/**"),
    ("systemd-unit", "/etc/systemd/user/**"),
    ("systemd-unit", "/run/systemd/system/**"),
    ("systemd-unit", "/usr/lib/systemd/system/**"),
    ("systemd-unit", "/usr/lib/systemd/user/**"),
    ("systemd-unit", "/lib/systemd/system/**"),
    ("cron", "/var/spool/cron/**"),
    ("cron", "/etc/crontab"),
    ("cron", "/etc/anacrontab"),
    ("cron", "/etc/cron.d/*"),
    ("cron", "/etc/cron.hourly/*"),
    ("cron", "/etc/cron.daily/*"),
    ("cron", "/etc/cron.weekly/*"),
    ("cron", "/etc/cron.monthly/*"),
    ("xdg-autostart", "**/.config/autostart/*"),
    ("xdg-autostart", "/etc/xdg/autostart/*"),
    // Where `site` reads `.pth` files: build trees (build/lib/x.pth) are not.
    ("python-pth", "**/site-packages/*.pth"),
    ("python-pth", "**/dist-packages/*.pth"),
    // Not the bytecode cache: the interpreter writes `__pycache__/*.pyc` itself on import, and
    // only loads one next to its source.
    ("python-customize", "**/sitecustomize.py"),
    ("python-customize", "**/usercustomize.py"),
    ("ld-preload", "/etc/ld.so.preload"),
];

/// `(category, directory)`: where a new file is a new persistence target, whatever its name
/// (or, in `~/.ssh`, by the target's name). The file watch marks those that exist for their
/// children's opens (`FAN_EVENT_ON_CHILD`), so that creating a file there is asked about
/// whatever the syscall. Not here, because files in them are opened all the time by programs
/// that are no concern of this rule, and every such open would wait for premain: homes
/// themselves (a new `~/.bashrc`), `/etc` (a new `/etc/ld.so.preload`), `site-packages` and
/// `dist-packages` (every Python start reads them), `~/.config/fish` (fish rewrites its
/// variables there), and the unit directories package managers and systemd write and PID 1
/// reads at every reload (`/usr/lib/systemd`, `/lib/systemd`, `/run/systemd`).
const DIRECTORIES: &[(&str, &str)] = &[
    ("shell-rc", "**/.config/fish/conf.d"),
    ("shell-rc", "/etc/profile.d"),
    ("shell-rc", "/etc/zsh"),
    ("ssh-authorized-keys", "**/.ssh"),
    ("systemd-unit", "**/.config/systemd/user"),
    ("systemd-unit", "**/.local/share/systemd/user"),
    ("systemd-unit", "/etc/systemd/system"),
    ("systemd-unit", "/etc/systemd/user"),
    ("cron", "/var/spool/cron"),
    ("cron", "/var/spool/cron/crontabs"),
    ("cron", "/var/spool/cron/tabs"),
    ("cron", "/etc/cron.d"),
    ("cron", "/etc/cron.hourly"),
    ("cron", "/etc/cron.daily"),
    ("cron", "/etc/cron.weekly"),
    ("cron", "/etc/cron.monthly"),
    ("xdg-autostart", "**/.config/autostart"),
    ("xdg-autostart", "/etc/xdg/autostart"),
];

/// Categories whose files every Python start reads (user-site `.pth` and customize files):
/// marked only while `persistence` is in dry-run or enforce, where denying needs the mark.
const PYTHON_HOOKS: &[&str] = &["python-pth", "python-customize"];

pub(super) struct Targets {
    globs: GlobSet,
}

impl Targets {
    pub(super) fn new() -> Self {
        Self { globs: glob_set(TARGETS.iter().map(|(_, g)| *g)).expect("the built-in globs compile") }
    }

    /// The targets' globs the file watch looks for files of: those under homes (less the
    /// Python hooks unless `python_hooks`) and the system's single files (`/etc/profile`,
    /// `/etc/crontab`, `/etc/ld.so.preload`...); the system's directories are marked as
    /// directories ([`Self::directories`]).
    pub(super) fn marked_patterns(&self, python_hooks: bool) -> impl Iterator<Item = &'static str> {
        TARGETS
            .iter()
            .filter(move |(category, glob)| {
                if glob.starts_with("**/") {
                    python_hooks || !PYTHON_HOOKS.contains(category)
                } else {
                    !glob.contains(['*', '?', '[', '{'])
                }
            })
            .map(|(_, g)| *g)
    }

    /// The directories a new file in is a target, as globs (absolute, or `**/` under a home).
    pub(super) fn directories(&self) -> impl Iterator<Item = &'static str> {
        DIRECTORIES.iter().map(|(_, d)| *d)
    }

    /// The category of a persistence target.
    pub(super) fn category(&self, path: &Path) -> Option<&'static str> {
        let first = *self.globs.matches(path).first()?;
        Some(TARGETS[first].0)
    }
}

/// An open with `flags` can change the file: written, created or truncated.
pub(super) fn writes(flags: u32) -> bool {
    const O_ACCMODE: u32 = 3;
    const O_CREAT: u32 = 0o100;
    const O_TRUNC: u32 = 0o1000;
    flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_new_file_in_a_marked_directory_is_a_target_of_its_category() {
        let targets = Targets::new();
        for (category, dir) in DIRECTORIES {
            let dir = PathBuf::from(dir.replace("**/", "/home/a/"));
            // In ~/.ssh only the targets' names are; elsewhere any name.
            let child = if dir.ends_with(".ssh") { "authorized_keys" } else { "x.conf" };
            assert_eq!(targets.category(&dir.join(child)), Some(*category), "{}", dir.display());
        }
        assert_eq!(targets.category(Path::new("/home/a/.ssh/known_hosts")), None);
    }

    #[test]
    fn marked_files_are_homes_and_the_systems_single_files() {
        let targets = Targets::new();
        let observe: Vec<&str> = targets.marked_patterns(false).collect();
        for glob in
            ["**/.bashrc", "**/.ssh/authorized_keys", "/etc/profile", "/etc/crontab", "/etc/ld.so.preload"]
        {
            assert!(observe.contains(&glob), "{glob}");
        }
        for glob in
            ["**/site-packages/*.pth", "**/sitecustomize.py", "/etc/cron.d/*", "/usr/lib/systemd/system/**"]
        {
            assert!(!observe.contains(&glob), "{glob}");
        }
        let enforce: Vec<&str> = targets.marked_patterns(true).collect();
        assert!(enforce.contains(&"**/site-packages/*.pth") && enforce.contains(&"**/sitecustomize.py"));
    }
}
