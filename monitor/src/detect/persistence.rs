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

pub(super) struct Targets {
    globs: GlobSet,
}

impl Targets {
    pub(super) fn new() -> Self {
        Self { globs: glob_set(TARGETS.iter().map(|(_, g)| *g)).expect("the built-in globs compile") }
    }

    /// The targets' globs.
    pub(super) fn patterns(&self) -> impl Iterator<Item = &'static str> {
        TARGETS.iter().map(|(_, g)| *g)
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
