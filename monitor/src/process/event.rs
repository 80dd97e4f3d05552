//! Events: what a tracked process did, as the tracker makes them from kernel records.

use std::path::PathBuf;

use crate::{
    k8s::Container,
    kernel::decode::{Header, Mark},
    process::table::{Process, Resolution},
};

#[derive(Debug, Clone)]
pub enum Action {
    Open {
        path: PathBuf,
        resolution: Resolution,
        dirfd: i32,
        flags: u32,
        mode: u32,
        result: i64,
    },
    Connect {
        addr: Vec<u8>,
        fd: i32,
        result: i64,
    },
    /// A datagram (or message) sent to an explicit address.
    Send {
        addr: Vec<u8>,
        fd: i32,
        result: i64,
    },
    /// An exec by a tracked process; `image` describes the new program when it succeeded.
    Exec {
        path: PathBuf,
        argv: Vec<Vec<u8>>,
        result: i64,
        image: Option<Box<ProcessInfo>>,
    },
    /// A process starts a tracked image without having been tracked before (not an action
    /// of a tracked process; the phase engine needs it).
    Image {
        path: PathBuf,
        argv: Vec<Vec<u8>>,
    },
    Fork {
        child_pid: u32,
        child_tid: u32,
        thread: bool,
    },
    Exit {
        status: i32,
    },
    Marker(Mark),
}

impl Action {
    pub fn hook(&self) -> &'static str {
        match self {
            Self::Open { .. } => "open",
            Self::Connect { .. } => "connect",
            Self::Send { .. } => "send",
            Self::Exec { .. } => "exec",
            Self::Image { .. } => "image",
            Self::Marker(_) => "python",
            Self::Fork { .. } => "fork",
            Self::Exit { .. } => "exit",
        }
    }
}

/// What is known of the acting process when the event happened.
#[derive(Debug, Clone, Default)]
pub struct ProcessInfo {
    pub ppid: u32,
    pub exe: Option<PathBuf>,
    pub argv: Vec<Vec<u8>>,
    pub argv_truncated: bool,
    /// `major.minor` of the CPython the process runs, when it runs one.
    pub python: Option<String>,
    /// Its interpreter's start-up probes are attached: its phases come from them.
    pub probed: bool,
    pub preexisting: bool,
    pub tracking: &'static str,
    pub cwd: Option<PathBuf>,
    /// `CLOCK_MONOTONIC` time its current image started (0 when unknown).
    pub started_ns: u64,
    pub container: Option<Container>,
}

impl ProcessInfo {
    pub fn of(process: Option<&Process>) -> Self {
        let Some(p) = process else {
            return Self { tracking: "unknown", ..Self::default() };
        };
        Self {
            ppid: p.ppid,
            probed: !p.late && p.python.as_ref().is_some_and(|i| i.probed),
            cwd: p.cwd.clone(),
            started_ns: p.started_ns,
            container: p.container.clone(),
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            argv_truncated: p.argv_truncated,
            python: p.python.as_ref().map(|i| match i.version {
                Some((major, minor)) => format!("{major}.{minor}"),
                None => "unknown".to_owned(),
            }),
            preexisting: p.preexisting,
            tracking: if p.is_python() {
                "python"
            } else if p.is_descendant() {
                "descendant"
            } else {
                "unknown"
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub header: Header,
    pub process: ProcessInfo,
    pub action: Action,
}
