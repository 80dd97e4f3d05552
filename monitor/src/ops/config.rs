//! The configuration file (TOML). Every key is optional; [`Config::default`] is what premain
//! runs with when no file is given, and `deploy/premain.toml` documents each key.
//!
//! Parsing is strict: unknown keys, wrong types, bad globs, regexes, CIDRs, addresses or URLs are
//! rejected with the file, line and column, so `premain check-config` and a SIGHUP reload both
//! refuse a file before anything of it is used.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use globset::Glob;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{
    detect::{
        RuleId, Severity,
        catalogue::{BENIGN_PROGRAMS, SYSTEM_SOCKETS, TOOLCHAIN},
        program_glob,
    },
    enforce::{Mode, Policy},
    output::redact,
};

/// Why a configuration file was refused: one line naming the file, line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub limits: Limits,
    pub alerts: AlertOptions,
    pub credentials: Credentials,
    pub rules: RuleOptions,
    pub allow: Allow,
    pub install: Install,
    pub metrics: Metrics,
    pub kubernetes: Kubernetes,
    pub enforcement: EnforcementOptions,
    pub sinks: Vec<Spanned<Sink>>,
    pub shutdown: Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Kernel ring buffer size in bytes (a power of two, at least 4096).
    pub ring_buffer_size: Spanned<u32>,
    /// Tracked processes remembered at most.
    pub max_processes: usize,
    /// Alerts and loss records queued in memory per sink before they count as lost.
    pub queue_capacity: usize,
    /// Keep recording opens, connects and sends of processes whose code is all runtime.
    pub record_runtime: bool,
    /// Follow 32-bit (`int 0x80`) syscalls of 64-bit processes: the raw-syscall programs run
    /// on every syscall of the node (see the README for the cost).
    pub ia32_syscalls: bool,
    /// Ask the kernel (fanotify) to be told of every open of the catalogued credential files
    /// found on disk, whatever the syscall or the name used.
    pub credential_file_watch: bool,
    /// With the credential file watch: mark the persistence targets found on disk (files and
    /// the directories where a new file is one) too, so a write by any syscall is seen.
    pub persistence_file_watch: bool,
    /// Make `execve` of a file never judged wait in the kernel (fanotify) until premain has
    /// judged it; off, such a CPython's process is stopped (`SIGSTOP`) until then instead.
    pub exec_watch: bool,
    /// Where premain keeps what outlives a run (the verdicts on executables).
    pub state_dir: PathBuf,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ring_buffer_size: Spanned::new(0..0, 8 << 20),
            max_processes: 65_536,
            queue_capacity: 4096,
            record_runtime: false,
            ia32_syscalls: false,
            credential_file_watch: true,
            persistence_file_watch: true,
            exec_watch: true,
            state_dir: PathBuf::from("/var/lib/premain"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertOptions {
    /// Repeats of an alert (same process, rule and target) within this many seconds fold.
    pub fold_window_secs: u64,
    /// List the command lines of ancestors, not only their executables.
    pub ancestry_argv: bool,
    /// The node name put in alerts; empty means `$NODE_NAME`, else the kernel's hostname.
    pub node_name: String,
    /// Regular expressions of secrets in command lines, besides the built-in detectors: the
    /// group `secret` of a match, else the whole match, is replaced.
    pub redact_patterns: Vec<Spanned<String>>,
    /// What module-level code of the application itself (not of a distribution, a hook or the
    /// standard library) raises: nothing (`quiet`), or alerts of this severity.
    pub application_code: ApplicationCode,
}

impl Default for AlertOptions {
    fn default() -> Self {
        Self {
            fold_window_secs: 30,
            ancestry_argv: true,
            node_name: String::new(),
            redact_patterns: Vec::new(),
            application_code: ApplicationCode::Quiet,
        }
    }
}

/// `alerts.application_code`: `quiet`, or the severity its alerts get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplicationCode {
    Quiet,
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl ApplicationCode {
    /// The severity its alerts get; `None` when it raises none.
    pub fn severity(self) -> Option<Severity> {
        match self {
            Self::Quiet => None,
            Self::Info => Some(Severity::Info),
            Self::Low => Some(Severity::Low),
            Self::Medium => Some(Severity::Medium),
            Self::High => Some(Severity::High),
            Self::Critical => Some(Severity::Critical),
        }
    }
}

/// `[enforcement]`: what is done with the actions alerts report (see [`crate::enforce`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforcementOptions {
    /// Every rule's mode on the whole node (`premain run --mode` replaces it).
    pub mode: Mode,
    /// Modes of single rules on the whole node.
    pub rules: BTreeMap<RuleId, Mode>,
    /// Parts of the node with modes of their own, in order: a later scope wins.
    pub scopes: Vec<Spanned<EnforcementScope>>,
}

/// `[[enforcement.scopes]]`: the processes every given selector matches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforcementScope {
    /// Kubernetes namespaces (any of them).
    pub namespaces: Vec<String>,
    /// Pod labels (all of them).
    pub pod_labels: BTreeMap<String, String>,
    /// Globs on the cgroup v2 path (`/system.slice/app.service`, `/kubepods.slice/**`).
    pub cgroups: Vec<String>,
    /// Globs on the acting executable's path.
    pub executables: Vec<String>,
    /// Every rule's mode in the scope.
    pub mode: Option<Mode>,
    /// Single rules' modes in the scope (they win over `mode`).
    pub rules: BTreeMap<RuleId, Mode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Credentials {
    /// Drop the built-in catalogue and use only `paths`.
    pub replace_defaults: bool,
    /// Extra catalogue entries.
    pub paths: Vec<CredentialPath>,
    /// Globs that are never credentials, added to the built-in exclusions.
    pub exclude: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialPath {
    /// The catalogue entry reported as `action.category`.
    pub category: String,
    pub glob: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleOption {
    pub enabled: bool,
    pub severity: Severity,
}

impl Default for RuleOption {
    fn default() -> Self {
        Self { enabled: true, severity: Severity::High }
    }
}

/// One table per rule; a rule left out keeps its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleOptions {
    #[serde(rename = "credential-read")]
    pub credential_read: RuleOption,
    #[serde(rename = "network-connect")]
    pub network_connect: RuleOption,
    #[serde(rename = "network-send")]
    pub network_send: RuleOption,
    #[serde(rename = "program-exec")]
    pub program_exec: RuleOption,
    #[serde(rename = "process-memory")]
    pub process_memory: RuleOption,
    pub persistence: RuleOption,
    #[serde(rename = "raw-socket")]
    pub raw_socket: RuleOption,
    #[serde(rename = "io-uring")]
    pub io_uring: RuleOption,
}

impl Default for RuleOptions {
    fn default() -> Self {
        Self {
            credential_read: RuleOption { enabled: true, severity: Severity::Critical },
            network_connect: RuleOption::default(),
            network_send: RuleOption::default(),
            program_exec: RuleOption::default(),
            process_memory: RuleOption { enabled: true, severity: Severity::Critical },
            persistence: RuleOption::default(),
            raw_socket: RuleOption::default(),
            io_uring: RuleOption { enabled: true, severity: Severity::Medium },
        }
    }
}

impl RuleOptions {
    pub fn get(&self, rule: RuleId) -> RuleOption {
        match rule {
            RuleId::CredentialRead => self.credential_read,
            RuleId::NetworkConnect => self.network_connect,
            RuleId::NetworkSend => self.network_send,
            RuleId::ProgramExec => self.program_exec,
            RuleId::ProcessMemory => self.process_memory,
            RuleId::Persistence => self.persistence,
            RuleId::RawSocket => self.raw_socket,
            RuleId::IoUring => self.io_uring,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Allow {
    /// Globs on the culprit's file (`.pth`, customize file, module or setup source dir) or
    /// on its module name: matching actions are not alerts.
    pub culprits: Vec<Spanned<String>>,
    /// Distribution names (as on PyPI, compared normalized) whose actions are not alerts.
    pub distributions: Vec<String>,
    /// Destinations never alerted: `CIDR`, `CIDR:port`, `[v6-CIDR]:port` or `*:port`.
    pub destinations: Vec<Spanned<String>>,
    /// Globs on the acting process's executable.
    pub exes: Vec<Spanned<String>>,
    /// Programs pre-main code may run (the standard library runs these itself): absolute
    /// paths or globs, matched against the path run and the file it leads to, which only
    /// root may have put there.
    pub programs: Vec<Spanned<String>>,
    /// UNIX sockets the C library and logging use on behalf of any program.
    pub unix_sockets: Vec<String>,
}

impl Default for Allow {
    fn default() -> Self {
        Self {
            culprits: Vec::new(),
            distributions: Vec::new(),
            destinations: Vec::new(),
            exes: Vec::new(),
            programs: spanned(BENIGN_PROGRAMS),
            unix_sockets: SYSTEM_SOCKETS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Install {
    /// Package index hosts (names or CIDRs): connections to them from install-time code
    /// (setup.py, build backends) are not alerts. Names are resolved at load and reload.
    pub index_hosts: Vec<String>,
    /// The build toolchain install-time code may run, as `allow.programs` lists programs.
    pub toolchain: Vec<Spanned<String>>,
}

impl Default for Install {
    fn default() -> Self {
        Self {
            index_hosts: vec!["pypi.org".into(), "files.pythonhosted.org".into()],
            toolchain: spanned(TOOLCHAIN),
        }
    }
}

/// Built-in list entries, which no error can point at.
fn spanned(entries: &[&str]) -> Vec<Spanned<String>> {
    entries.iter().map(|e| Spanned::new(0..0, (*e).to_owned())).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLabel {
    Namespace,
    Distribution,
    CulpritKind,
    /// Whose code the culprit is (`culprit.party`).
    Party,
    Pod,
}

impl AlertLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Distribution => "distribution",
            Self::CulpritKind => "culprit_kind",
            Self::Party => "party",
            Self::Pod => "pod",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Where `/metrics`, `/healthz` and `/readyz` listen; empty turns the endpoint off.
    pub address: Spanned<String>,
    /// Labels added to `premain_alerts_total` beyond rule, phase and severity.
    pub alert_labels: Vec<AlertLabel>,
    /// Distinct values one optional label may take; later values are reported as `other`.
    pub max_label_values: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            address: Spanned::new(0..0, "127.0.0.1:9464".into()),
            alert_labels: Vec::new(),
            max_label_values: 200,
        }
    }
}

impl Metrics {
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let text = self.address.get_ref();
        if text.is_empty() { None } else { text.parse().ok() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kubernetes {
    /// `auto` watches pods when running in a cluster (`KUBERNETES_SERVICE_HOST` set).
    pub enabled: Switch,
    /// This node's name; empty means `$NODE_NAME`, else the hostname.
    pub node_name: String,
    /// API server URL; empty means the in-cluster service address.
    pub api_server: Spanned<String>,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    /// Copy pod labels into alerts.
    pub pod_labels: bool,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Self {
            enabled: Switch::Auto,
            node_name: String::new(),
            api_server: Spanned::new(0..0, String::new()),
            token_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            ca_file: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into(),
            pod_labels: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `premain.alert/v1` lines.
    #[default]
    Premain,
    /// Falco's output envelope (`time, rule, priority, source, hostname, output, output_fields`).
    Falco,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// After every write.
    Always,
    /// At most once per `fsync_interval_ms`.
    #[default]
    Interval,
    /// Left to the kernel.
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Sink {
    Stdout {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        format: Format,
    },
    File {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        format: Format,
        path: PathBuf,
        /// Rotate when the file would grow past this size.
        #[serde(default = "defaults::file_max_bytes")]
        max_bytes: u64,
        /// Rotated files kept (`path.1` .. `path.N`).
        #[serde(default = "defaults::file_keep")]
        keep: u32,
        #[serde(default)]
        fsync: Fsync,
        #[serde(default = "defaults::fsync_interval_ms")]
        fsync_interval_ms: u64,
    },
    Webhook {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        format: Format,
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Alerts per POST at most.
        #[serde(default = "defaults::batch_max")]
        batch_max: usize,
        /// How long a partial batch waits for more.
        #[serde(default = "defaults::batch_wait_ms")]
        batch_wait_ms: u64,
        #[serde(default = "defaults::timeout_ms")]
        timeout_ms: u64,
        #[serde(default = "defaults::backoff_initial_ms")]
        backoff_initial_ms: u64,
        #[serde(default = "defaults::backoff_max_ms")]
        backoff_max_ms: u64,
        /// Where undelivered alerts wait (survives restarts).
        #[serde(default = "defaults::spool_dir")]
        spool_dir: PathBuf,
        /// Spool size at most; beyond it the oldest undelivered alerts are dropped and counted.
        #[serde(default = "defaults::spool_max_bytes")]
        spool_max_bytes: u64,
    },
}

impl Sink {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdout { .. } => "stdout",
            Self::File { .. } => "file",
            Self::Webhook { .. } => "webhook",
        }
    }

    /// The name used in metrics and loss records: the configured one, else the type.
    pub fn name(&self) -> &str {
        let named = match self {
            Self::Stdout { name, .. } | Self::File { name, .. } | Self::Webhook { name, .. } => name,
        };
        named.as_deref().unwrap_or(self.kind())
    }

    pub fn format(&self) -> Format {
        match self {
            Self::Stdout { format, .. } | Self::File { format, .. } | Self::Webhook { format, .. } => *format,
        }
    }
}

pub mod defaults {
    use std::path::PathBuf;

    pub(crate) fn file_max_bytes() -> u64 {
        100 << 20
    }
    pub(crate) fn file_keep() -> u32 {
        5
    }
    pub(crate) fn fsync_interval_ms() -> u64 {
        1000
    }
    pub(crate) fn batch_max() -> usize {
        100
    }
    pub(crate) fn batch_wait_ms() -> u64 {
        500
    }
    pub(crate) fn timeout_ms() -> u64 {
        5000
    }
    pub(crate) fn backoff_initial_ms() -> u64 {
        250
    }
    pub(crate) fn backoff_max_ms() -> u64 {
        30_000
    }
    pub(crate) fn spool_dir() -> PathBuf {
        "/var/lib/premain/spool".into()
    }
    pub(crate) fn spool_max_bytes() -> u64 {
        256 << 20
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    /// On SIGTERM, how long queued alerts may take to be delivered before premain exits
    /// (what a webhook has not taken stays in its spool for the next start).
    pub drain_deadline_secs: u64,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self { drain_deadline_secs: 10 }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = span.map_or((1, 1), |s| line_column(text, s.start));
            ConfigError { file: file.to_owned(), line, column, message }
        };
        let config: Self = toml::from_str(text).map_err(|e| at(e.span(), one_line(e.message())))?;
        config.validate().map_err(|(span, message)| at(Some(span), message))?;
        Ok(config)
    }

    /// The configuration as premain runs it, as TOML: every default written out, and the
    /// stdout sink a file without sinks gets.
    pub fn effective_toml(&self) -> Result<String, String> {
        let mut effective = self.clone();
        effective.sinks = self.sinks().into_iter().map(|s| Spanned::new(0..0, s)).collect();
        toml::to_string(&effective).map_err(|e| e.to_string())
    }

    /// The sinks in force: the configured ones, or stdout.
    pub fn sinks(&self) -> Vec<Sink> {
        if self.sinks.is_empty() {
            vec![Sink::Stdout { name: None, format: Format::Premain }]
        } else {
            self.sinks.iter().map(|s| s.get_ref().clone()).collect()
        }
    }

    fn validate(&self) -> Result<(), (Range<usize>, String)> {
        let ring = &self.limits.ring_buffer_size;
        if !ring.get_ref().is_power_of_two() || *ring.get_ref() < 4096 {
            return Err((
                ring.span(),
                format!(
                    "limits.ring_buffer_size must be a power of two of at least 4096, not {}",
                    ring.get_ref()
                ),
            ));
        }
        let globs = self
            .credentials
            .paths
            .iter()
            .map(|p| &p.glob)
            .chain(&self.credentials.exclude)
            .chain(&self.allow.culprits)
            .chain(&self.allow.exes);
        for glob in globs {
            Glob::new(glob.get_ref())
                .map_err(|e| (glob.span(), format!("bad glob {:?}: {}", glob.get_ref(), e.kind())))?;
        }
        for (key, programs) in
            [("allow.programs", &self.allow.programs), ("install.toolchain", &self.install.toolchain)]
        {
            for program in programs {
                check_program(key, program.get_ref()).map_err(|m| (program.span(), m))?;
            }
        }
        for pattern in &self.alerts.redact_patterns {
            redact::pattern(pattern.get_ref()).map_err(|e| {
                (pattern.span(), format!("bad regex {:?} in alerts.redact_patterns: {e}", pattern.get_ref()))
            })?;
        }
        for dest in &self.allow.destinations {
            Destination::parse(dest.get_ref()).map_err(|m| (dest.span(), m))?;
        }
        for scope in &self.enforcement.scopes {
            let one = EnforcementOptions { scopes: vec![scope.clone()], ..EnforcementOptions::default() };
            Policy::compile(&one, None).map_err(|e| (scope.span(), e.0))?;
        }
        let address = &self.metrics.address;
        if !address.get_ref().is_empty() && self.metrics.socket_addr().is_none() {
            return Err((
                address.span(),
                format!(
                    "metrics.address {:?} is not an IP:port address (empty turns it off)",
                    address.get_ref()
                ),
            ));
        }
        let api = &self.kubernetes.api_server;
        if !api.get_ref().is_empty() {
            check_url(api.get_ref()).map_err(|m| (api.span(), format!("kubernetes.api_server: {m}")))?;
        }
        let mut names = std::collections::HashSet::new();
        for sink in &self.sinks {
            if !names.insert(sink.get_ref().name().to_owned()) {
                return Err((
                    sink.span(),
                    format!("two sinks are named {:?}; give each a distinct `name`", sink.get_ref().name()),
                ));
            }
            match sink.get_ref() {
                Sink::Webhook { url, batch_max, backoff_initial_ms, backoff_max_ms, .. } => {
                    check_url(url).map_err(|m| (sink.span(), format!("webhook sink url: {m}")))?;
                    if *batch_max == 0 || *backoff_initial_ms == 0 || backoff_initial_ms > backoff_max_ms {
                        return Err((
                            sink.span(),
                            "webhook needs batch_max >= 1 and 0 < backoff_initial_ms <= backoff_max_ms"
                                .into(),
                        ));
                    }
                }
                Sink::File { max_bytes, .. } if *max_bytes < 4096 => {
                    return Err((
                        sink.span(),
                        format!("file sink max_bytes must be at least 4096, not {max_bytes}"),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A program is known by where it is, never by its name alone (anyone can name a file `gcc`).
fn check_program(key: &str, program: &str) -> Result<(), String> {
    if !program.contains('/') {
        return Err(format!(
            "{key}: {program:?} is a bare name; give the absolute path, e.g. /usr/bin/{program}"
        ));
    }
    if !program.starts_with('/') {
        return Err(format!("{key}: {program:?} is not an absolute path"));
    }
    program_glob(program).map(drop).map_err(|e| format!("{key}: bad glob {program:?}: {}", e.kind()))
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// An allowed destination: a network and, optionally, one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub net: Option<IpNet>,
    pub port: Option<u16>,
}

impl Destination {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("bad destination {text:?}: {why} (want CIDR, CIDR:port, [v6-CIDR]:port or *:port)")
        };
        let (net, port) = if let Some(rest) = text.strip_prefix('[') {
            let (net, tail) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = tail.strip_prefix(':').ok_or_else(|| bad("expected :port after ]"))?;
            (net, Some(port))
        } else if text.matches(':').count() == 1 {
            let (net, port) = text.split_once(':').unwrap_or_default();
            (net, Some(port))
        } else {
            (text, None)
        };
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| bad("port is not a number from 0 to 65535")))
            .transpose()?;
        let net = if net == "*" {
            None
        } else {
            let parsed = net
                .parse::<IpNet>()
                .or_else(|_| net.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| bad("not an IP network"))?;
            Some(parsed)
        };
        if net.is_none() && port.is_none() {
            return Err(bad("`*` needs a port"));
        }
        Ok(Self { net, port })
    }

    pub fn matches(&self, ip: std::net::IpAddr, port: u16) -> bool {
        self.net.is_none_or(|n| n.contains(&ip)) && self.port.is_none_or(|p| p == port)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.net, self.port) {
            (Some(n), Some(p)) => write!(f, "{n}:{p}"),
            (Some(n), None) => write!(f, "{n}"),
            (None, Some(p)) => write!(f, "*:{p}"),
            (None, None) => f.write_str("*"),
        }
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> ConfigError {
        Config::parse("t.toml", text).expect_err("refused")
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let config = Config::parse("t.toml", "").unwrap();
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.sinks().len(), 1);
        assert_eq!(config.rules.get(RuleId::CredentialRead).severity, Severity::Critical);
        assert!(config.allow.programs.iter().any(|p| p.get_ref() == "/usr/bin/uname"));
        assert!(config.install.toolchain.iter().any(|p| p.get_ref().starts_with("/usr/bin/{cc,")));
    }

    #[test]
    fn application_code_is_quiet_or_a_severity() {
        assert_eq!(Config::parse("t.toml", "").unwrap().alerts.application_code.severity(), None);
        let config = Config::parse("t.toml", "[alerts]\napplication_code = \"low\"\n").unwrap();
        assert_eq!(config.alerts.application_code.severity(), Some(Severity::Low));
        let e = error("[alerts]\napplication_code = \"loud\"\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("unknown variant `loud`"), "{e}");
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = error("[alerts]\nfold_window_secs = 3\nbogus = 1\n");
        assert_eq!((e.line, e.column), (3, 1), "{e}");
        assert!(e.message.contains("unknown field `bogus`"), "{e}");
        let e = error("[limits]\nmax_processes = \"many\"\n");
        assert_eq!((e.line, e.column), (2, 17), "{e}");
        assert!(e.message.contains("invalid type"), "{e}");
        let e = error("[credentials]\nexclude = [\"ok\", \"a[\"]\n");
        assert_eq!((e.line, e.column), (2, 18), "{e}");
        assert!(e.message.starts_with("bad glob"), "{e}");
        let e = error("[allow]\ndestinations = [\"10.0.0.0/33\"]\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("bad destination"), "{e}");
        let e = error("[alerts]\nredact_patterns = [\"ok\",\n  \"tok(en\"]\n");
        assert_eq!((e.line, e.column), (3, 3), "{e}");
        assert!(e.message.starts_with("bad regex \"tok(en\" in alerts.redact_patterns: "), "{e}");
        let e = error("[[sinks]]\ntype = \"carrier-pigeon\"\n");
        assert!(e.message.contains("unknown variant"), "{e}");
        let e = error("[limits]\nring_buffer_size = 5000\n");
        assert_eq!((e.line, e.column), (2, 20), "{e}");
        let e = error("[metrics]\naddress = \"localhost\"\n");
        assert!(e.message.contains("metrics.address"), "{e}");
        let e = error("[alerts]\n[[sinks]]\ntype = \"webhook\"\nurl = \"ftp://x\"\n");
        assert_eq!(e.line, 2, "the sink's table: {e}");
        assert!(e.message.contains("webhook sink url"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }

    #[test]
    fn programs_are_absolute_paths() {
        let e = error("[allow]\nprograms = [\"/usr/bin/uname\",\n  \"gcc\"]\n");
        assert_eq!((e.line, e.column), (3, 3), "{e}");
        assert_eq!(
            e.message,
            "allow.programs: \"gcc\" is a bare name; give the absolute path, e.g. /usr/bin/gcc"
        );
        let e = error("[install]\ntoolchain = [\"bin/make\"]\n");
        assert_eq!((e.line, e.column), (2, 14), "{e}");
        assert_eq!(e.message, "install.toolchain: \"bin/make\" is not an absolute path");
        let e = error("[install]\ntoolchain = [\"/usr/bin/{make\"]\n");
        assert!(e.message.starts_with("install.toolchain: bad glob \"/usr/bin/{make\""), "{e}");
        let ok = "[allow]\nprograms = [\"/usr/bin/{gcc,g++}{,-[0-9]*}\"]\n[install]\ntoolchain = []\n";
        let config = Config::parse("t", ok).unwrap();
        assert_eq!(config.allow.programs.len(), 1);
        assert!(config.install.toolchain.is_empty());
    }

    #[test]
    fn sinks_need_distinct_names() {
        let e = error("[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"stdout\"\n");
        assert_eq!(e.line, 3, "{e}");
        let ok = "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"stdout\"\nname = \"falco\"\nformat = \"falco\"\n";
        assert_eq!(Config::parse("t", ok).unwrap().sinks().len(), 2);
    }

    #[test]
    fn destinations() {
        let d = Destination::parse("10.0.0.0/8:443").unwrap();
        assert!(d.matches("10.1.2.3".parse().unwrap(), 443));
        assert!(!d.matches("10.1.2.3".parse().unwrap(), 80));
        let d = Destination::parse("[fd00::/8]:53").unwrap();
        assert!(d.matches("fd00::1".parse().unwrap(), 53));
        let d = Destination::parse("*:9000").unwrap();
        assert!(d.matches("1.2.3.4".parse().unwrap(), 9000));
        let d = Destination::parse("::1").unwrap();
        assert!(d.matches("::1".parse().unwrap(), 1));
        assert!(Destination::parse("*").is_err());
        assert!(Destination::parse("1.2.3.4:99999").is_err());
    }
}
