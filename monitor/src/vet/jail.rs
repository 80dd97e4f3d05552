//! Where package code runs: a process no package code can get out of, watched by premain as
//! one group.
//!
//! Every sandboxed command starts (between fork and exec, while still root) by:
//! - joining a cgroup of its own step ([`Cell`]), so that premain's alerts (`process.cgroup_id`)
//!   tell which step raised them, and so that `cgroup.kill` ends whatever a step left behind
//!   (a daemonized payload included);
//! - a private mount namespace in which the real home directories (`/root`, `/home`, `$HOME`)
//!   are covered by empty tmpfs mounts, with only what the run needs (the interpreter's prefix,
//!   find-links directories) bound back at the same path: the machine's real credentials are
//!   out of sight;
//! - the network namespace with the sink ([`super::netns`]): nothing reaches the host's network;
//! - then it drops root for the sandbox user, with no supplementary groups and `no_new_privs`,
//!   so it can neither undo any of the above (`setns`, `umount` need capabilities) nor regain
//!   privileges through a set-uid program.

use std::{
    ffi::{CString, OsStr},
    fs::{self, File, OpenOptions},
    io,
    os::{
        fd::AsRawFd as _,
        unix::{
            ffi::OsStrExt as _,
            fs::{MetadataExt as _, OpenOptionsExt as _},
            process::CommandExt as _,
        },
    },
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::netns::NetNs;
use crate::process::procfs;

/// The user package code runs as (`nobody`).
pub const SANDBOX_UID: u32 = 65534;
pub const SANDBOX_GID: u32 = 65534;

#[derive(Debug)]
pub struct Jail {
    netns: NetNs,
    /// `<cgroup2>/premain-vet-<token>`: the steps' cgroups are its children.
    cgroup: PathBuf,
    hidden: Vec<CString>,
    binds: Vec<Bind>,
    workdir: CString,
    cells: usize,
}

/// A directory bound back inside a hidden one, at its own path. It is bound to `stage` (in the
/// run's directory) before the homes are hidden, then moved to its place: a bind's source must
/// be reachable, and be in the mount namespace, when it is made.
#[derive(Debug, Clone)]
struct Bind {
    source: CString,
    stage: CString,
    /// The directories to create on the tmpfs, outermost first, the target last.
    make: Vec<CString>,
}

impl Jail {
    /// `reveal`: directories under a hidden home that sandboxed processes need (read-only use
    /// is expected; they are bound read-write, as they are).
    pub fn new(token: &str, workdir: &Path, netns: NetNs, reveal: &[PathBuf]) -> Result<Self> {
        let mount = procfs::cgroup2_mount().ok_or_else(|| {
            anyhow!("premain vet needs a cgroup v2 hierarchy, and this machine mounts none")
        })?;
        let cgroup = mount.join(format!("premain-vet-{token}"));
        fs::create_dir(&cgroup).with_context(|| format!("creating the cgroup {}", cgroup.display()))?;
        let hidden = hidden_homes();
        let workdir = fs::canonicalize(workdir)?;
        if let Some(home) = hidden.iter().find(|h| workdir.starts_with(h)) {
            bail!(
                "the run's directory {} is inside {}, which premain vet hides: set TMPDIR to a directory outside the home directories",
                workdir.display(),
                home.display()
            );
        }
        let mut binds = Vec::new();
        for dir in reveal {
            let dir = fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
            let Some(home) = hidden.iter().find(|h| dir.starts_with(h)) else { continue };
            let stage = workdir.join(format!(".reveal-{}", binds.len()));
            fs::create_dir(&stage).with_context(|| format!("creating {}", stage.display()))?;
            let mut make = Vec::new();
            let mut at = home.clone();
            for part in dir.strip_prefix(home).unwrap_or(Path::new("")).components() {
                at.push(part);
                make.push(c(at.as_os_str()));
            }
            if make.is_empty() {
                bail!("{} is a home directory premain vet hides; use a directory inside it", dir.display());
            }
            binds.push(Bind { source: c(dir.as_os_str()), stage: c(stage.as_os_str()), make });
        }
        let hidden = hidden.iter().map(|h| c(h.as_os_str())).collect();
        Ok(Self { netns, cgroup, hidden, binds, workdir: c(workdir.as_os_str()), cells: 0 })
    }

    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// A new cgroup for one step, named after it.
    pub fn cell(&mut self, name: &str) -> Result<Cell> {
        self.cells += 1;
        let safe: String =
            name.chars().map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' }).take(40).collect();
        let dir = self.cgroup.join(format!("{:03}-{safe}", self.cells));
        fs::create_dir(&dir).with_context(|| format!("creating the cgroup {}", dir.display()))?;
        let id = fs::metadata(&dir)?.ino();
        let procs = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join("cgroup.procs"))
            .with_context(|| format!("opening {}/cgroup.procs", dir.display()))?;
        Ok(Cell { dir, id, procs })
    }

    /// `program` to run as the sandbox user inside `cell`, with an empty environment and the
    /// run's directory as its working directory.
    pub fn command(&self, cell: &Cell, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env_clear();
        let procs = cell.procs.as_raw_fd();
        let netns = self.netns.fd().as_raw_fd();
        let hidden = self.hidden.clone();
        let binds = self.binds.clone();
        let workdir = self.workdir.clone();
        // SAFETY: the closure runs in the forked child before exec and makes only system calls
        // on memory allocated before the fork (async-signal-safe); the descriptors it uses are
        // held open by `self` and `cell`, which outlive the spawn.
        unsafe {
            command.pre_exec(move || enter(procs, netns, &hidden, &binds, &workdir));
        }
        command
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.cgroup);
    }
}

/// One step's cgroup; its processes are killed and the cgroup removed when dropped.
#[derive(Debug)]
pub struct Cell {
    dir: PathBuf,
    /// The cgroup's id, as premain's alerts give it in `process.cgroup_id`.
    pub id: u64,
    procs: File,
}

impl Cell {
    /// Kills every process in the cgroup and waits (up to 5 s) until it is empty.
    pub fn kill(&self) {
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
        self.wait_empty(Duration::from_secs(5));
    }

    /// Waits until no process is left in the cgroup, at most `limit`.
    pub fn wait_empty(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match fs::read_to_string(self.dir.join("cgroup.procs")) {
                Ok(text) if !text.trim().is_empty() => std::thread::sleep(Duration::from_millis(20)),
                _ => return,
            }
        }
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir(&self.dir);
    }
}

/// In the child, before exec: see the module comment for the order and why.
fn enter(procs: i32, netns: i32, hidden: &[CString], binds: &[Bind], workdir: &CString) -> io::Result<()> {
    let check = |ret: libc::c_int| if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
    // SAFETY: every call takes descriptors and NUL-terminated strings allocated before the fork.
    unsafe {
        if libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
            return Err(io::Error::last_os_error());
        }
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        for bind in binds {
            check(libc::mount(
                bind.source.as_ptr(),
                bind.stage.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
        }
        for dir in hidden {
            check(libc::mount(
                c"tmpfs".as_ptr(),
                dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=755".as_ptr().cast(),
            ))?;
        }
        for bind in binds {
            for dir in &bind.make {
                if libc::mkdir(dir.as_ptr(), 0o755) != 0 && *libc::__errno_location() != libc::EEXIST {
                    return Err(io::Error::last_os_error());
                }
            }
            let target = bind.make.last().expect("a bind has a target");
            check(libc::mount(
                bind.stage.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            ))?;
        }
        check(libc::setns(netns, libc::CLONE_NEWNET))?;
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setgid(SANDBOX_GID))?;
        check(libc::setuid(SANDBOX_UID))?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        check(libc::chdir(workdir.as_ptr()))?;
    }
    Ok(())
}

/// The home directories to hide: `/root`, `/home` and this process's `HOME`, those that exist.
fn hidden_homes() -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = ["/root", "/home"].into_iter().map(PathBuf::from).collect();
    homes.extend(std::env::var_os("HOME").map(PathBuf::from));
    let mut found: Vec<PathBuf> = homes
        .into_iter()
        .filter_map(|h| fs::canonicalize(h).ok())
        .filter(|h| h.is_dir() && h.parent().is_some())
        .collect();
    found.sort();
    found.dedup();
    // A home inside another hidden one is covered already.
    let all = found.clone();
    found.retain(|h| !all.iter().any(|o| o != h && h.starts_with(o)));
    found
}

fn c(s: &OsStr) -> CString {
    CString::new(s.as_bytes()).unwrap_or_else(|_| c"/nonexistent".to_owned())
}
