//! The records sinks receive: alerts (`premain.alert/v1`) and loss records. Every sink, the
//! Falco envelope and the metrics read these types; their JSON form is the schema documented
//! in the README.

use serde::{Serialize, Serializer};

use crate::{
    detect::{RuleId, Severity},
    enforce::Enforcement,
    output::json::{Argv, Capture, Outcome, Text},
    phase::{Basis, CulpritKind, Party, Phase},
};

pub(crate) const SCHEMA: &str = "premain.alert/v1";

/// What a sink is given.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Record {
    Alert(Box<Alert>),
    Loss(Loss),
}

/// A constant `kind` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Kind<const LOSS: bool>;

impl<const LOSS: bool> Serialize for Kind<LOSS> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if LOSS { "loss" } else { "alert" })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Alert {
    pub kind: Kind<false>,
    pub schema: &'static str,
    /// Unique per alert; a folded alert is sent again with the same id.
    pub id: String,
    pub time: String,
    pub node: String,
    pub rule: RuleId,
    pub severity: Severity,
    pub phase: Phase,
    pub phase_basis: Basis,
    /// Present (`true`) when code a start-up hook planted acted after main started (see
    /// `CulpritView::planted_frame`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<bool>,
    pub culprit: CulpritView,
    pub process: ProcessView,
    pub action: ActionView,
    /// The Python stack of the thread that acted, innermost frame first (empty with
    /// `stack_error` when none could be read).
    pub stack: Vec<FrameView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_error: Option<&'static str>,
    /// The process the stack was read from, when not the one that acted: a non-Python
    /// descendant carries its Python ancestor's stack at the exec that started its lineage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_inherited_from: Option<u32>,
    pub inherited_from: Option<OriginView>,
    pub container: Option<ContainerView>,
    pub kubernetes: Option<KubernetesView>,
    /// What was done with the action, under dry-run or enforce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
}

/// One frame of an alert's `stack`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FrameView {
    pub function: String,
    pub file: String,
    pub line: Option<u32>,
    pub distribution: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CulpritView {
    pub kind: CulpritKind,
    pub party: Party,
    #[serde(flatten)]
    pub path: Text,
    pub module: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub module_path: Option<Text>,
    /// Present when the outermost module body differs from the innermost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outermost_module: Option<Option<String>>,
    pub distribution: Option<String>,
    pub version: Option<String>,
    /// Present (`true`) when the innermost module's code object names no readable file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename_unreadable: Option<bool>,
    /// Present (`true`) when a module body's code was not loaded from the file its
    /// `co_filename` names; the names it claimed follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename_mismatch: Option<bool>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub claimed_filename: Option<Text>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub outermost_claimed_filename: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installer: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub source_dir: Option<Text>,
    /// The frame of the code a start-up hook planted that acted after main, nearest the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planted_frame: Option<PlantedFrameView>,
}

/// A frame of code a start-up hook planted: its function, file (`co_filename`: `<string>` for
/// a `.pth` line's own code) and line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlantedFrameView {
    pub function: String,
    pub file: String,
    pub line: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProcessView {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    #[serde(flatten)]
    pub exe: Text,
    #[serde(flatten)]
    pub cmdline: Argv,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline_truncated: Option<bool>,
    pub uid: u32,
    pub gid: u32,
    #[serde(flatten)]
    pub comm: Text,
    pub python: Option<String>,
    pub cgroup_id: u64,
    pub start_time: Option<String>,
    pub ancestry: Vec<AncestorView>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AncestorView {
    pub pid: u32,
    #[serde(flatten)]
    pub exe: Text,
    /// Left out with `alerts.ancestry_argv = false`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Argv>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline_truncated: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OriginView {
    pub pid: u32,
    pub tid: u32,
    #[serde(flatten)]
    pub exe: Text,
    #[serde(flatten)]
    pub cmdline: Argv,
    pub phase: Phase,
    pub culprit: CulpritView,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActionView {
    #[serde(rename = "type")]
    pub kind: ActionKind,
    #[serde(flatten)]
    pub target: Target,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(flatten)]
    pub capture: Capture,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ActionKind {
    Open,
    Connect,
    Send,
    Exec,
    ProcessMemory,
    Socket,
    Rename,
    Link,
    Symlink,
    IoUring,
}

/// What the action touched.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Target {
    File {
        #[serde(flatten)]
        path: Text,
        /// The caller's string, when it differs from `path` (the kernel's).
        #[serde(flatten)]
        requested: Option<Text>,
        path_resolution: &'static str,
        syscall: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        dev: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ino: Option<u64>,
        /// The catalogued name of a hard link's inode.
        #[serde(flatten)]
        alias_of: Option<Text>,
        flags: u32,
        category: Option<String>,
    },
    Process {
        target_pid: u32,
        via: &'static str,
        #[serde(flatten)]
        path: Option<Text>,
    },
    Uring {
        opcode: &'static str,
    },
    Socket {
        family: &'static str,
        socket_type: &'static str,
        protocol: u32,
    },
    Name {
        #[serde(flatten)]
        path: Text,
        #[serde(flatten)]
        old: Text,
        syscall: &'static str,
        category: Option<String>,
    },
    Address {
        /// The destination the kernel checked (when a cgroup program saw it), else the
        /// caller's sockaddr.
        addr: String,
        family: &'static str,
        port: Option<u16>,
        /// The caller's sockaddr at the call's return, when it named another destination than
        /// the kernel's (`destination_rewritten`); absent when it could not be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        requested: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        destination_rewritten: Option<bool>,
    },
    Program {
        #[serde(flatten)]
        path: Text,
        #[serde(flatten)]
        argv: Argv,
    },
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ContainerView {
    pub id: String,
    pub runtime: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct KubernetesView {
    pub pod_uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// Records lost somewhere on the way, in the stream itself (`{"kind":"loss",...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Loss {
    pub kind: Kind<true>,
    pub time: String,
    /// The hook whose records were lost, or `alert` for records lost on the way to a sink.
    pub hook: &'static str,
    pub stage: &'static str,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    pub count: u64,
    /// Lost so far for this hook and reason, where the counter is cumulative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}
