//! What the report layer is given (filled by the orchestration) and what it makes: the
//! `premain.vet/v1` report. The JSON form of [`Report`] is the schema (see README, "premain vet").

use std::{path::PathBuf, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::vet::capture::Capture;

/// The schema id of a report.
pub const SCHEMA: &str = "premain.vet/v1";

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

/// Everything one `premain vet` run saw; the orchestration fills it.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub run: RunFacts,
    pub steps: Vec<Step>,
    /// Installed distributions, `(name, version)`.
    pub installed: Vec<(String, String)>,
    /// `(index into steps, premain.alert/v1 object)` as premain printed them (folded re-prints
    /// included: they are merged by `id`).
    pub alerts: Vec<(usize, serde_json::Value)>,
    pub baits: Vec<Bait>,
    pub capture: Capture,
}

/// The run's facts.
#[derive(Clone, Debug)]
pub struct RunFacts {
    pub python_version: String,
    pub python_path: PathBuf,
    /// `pip` or `uv`.
    pub installer: String,
    /// What was vetted, as given on the command line (specs, requirements file, paths).
    pub inputs: Vec<String>,
    /// Hosts the package index may be reached at (`pypi.org`, `files.pythonhosted.org`,
    /// `127.0.0.1:3141`): a host name or address, with `:port` to allow one port only.
    pub index_hosts: Vec<String>,
    /// The bait home (shown as `~`).
    pub home: PathBuf,
    /// The venv packages were installed into (its site-packages shown as `<site-packages>`).
    pub venv: PathBuf,
    pub started: SystemTime,
}

impl Default for RunFacts {
    fn default() -> Self {
        Self {
            python_version: String::new(),
            python_path: PathBuf::new(),
            installer: "pip".into(),
            inputs: Vec::new(),
            index_hosts: Vec::new(),
            home: PathBuf::new(),
            venv: PathBuf::new(),
            started: SystemTime::UNIX_EPOCH,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Installing the inputs (build hooks run).
    Install,
    /// Starting the interpreter in the venv (`.pth`, sitecustomize).
    Startup,
    /// Importing one module.
    Import,
    /// Running a script (a console script or a file).
    Script,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Startup => "startup",
            Self::Import => "import",
            Self::Script => "script",
        }
    }
}

/// One step vet ran under the monitor.
#[derive(Clone, Debug)]
pub struct Step {
    pub kind: StepKind,
    /// The module imported or the script run; for install, what was installed (optional).
    pub target: Option<String>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub seconds: f64,
    pub started: SystemTime,
    pub ended: SystemTime,
}

/// A fake credential planted for the run.
#[derive(Clone, Debug)]
pub struct Bait {
    pub kind: BaitKind,
    /// The fake value (never written into the report).
    pub value: String,
}

#[derive(Clone, Debug)]
pub enum BaitKind {
    /// A credential file in the bait home; `category` as the credential catalogue names it.
    File { category: String, path: PathBuf },
    /// An environment variable set for every step.
    Env { name: String },
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// How much a finding matters, SARIF's levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Note,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Note => "note",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
        }
    }
}

/// The report (`premain.vet/v1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub run: RunSummary,
    pub verdict: Verdict,
    pub steps: Vec<StepSummary>,
    /// One entry per installed distribution (clean ones too), then one per input whose
    /// findings name no distribution.
    pub distributions: Vec<DistributionReport>,
    pub baits: Vec<BaitReport>,
    pub destinations: Vec<Destination>,
    pub dns: Vec<DnsName>,
    pub programs: Vec<ProgramRun>,
    pub policy: PolicySummary,
    /// Present when only what is new against an earlier report is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Comparison>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub python: PythonSummary,
    pub installer: String,
    pub inputs: Vec<String>,
    pub index_hosts: Vec<String>,
    /// RFC 3339.
    pub started: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PythonSummary {
    pub version: String,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub index: usize,
    pub kind: StepKind,
    pub target: Option<String>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub seconds: f64,
}

/// The verdict of the run, or of one distribution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Status,
    /// Findings that fail the policy.
    pub failing: usize,
    /// Findings reported but allowed (per distribution) or below the failing level.
    pub passing: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistributionReport {
    /// The distribution's name as installed; `null` for findings no distribution owns.
    pub name: Option<String>,
    pub version: Option<String>,
    /// For findings no distribution owns: the input they came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

impl DistributionReport {
    /// `name version`, or the input, for display.
    pub fn label(&self) -> String {
        match (&self.name, &self.version, &self.input) {
            (Some(n), Some(v), _) => format!("{n} {v}"),
            (Some(n), None, _) => n.clone(),
            (None, _, Some(i)) => format!("input {i}"),
            (None, _, None) => "(unknown)".into(),
        }
    }
}

/// One thing pre-main code did that a rule names (or a bait value seen leaving).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// A premain rule (`credential-read`, `network-connect`, ...) or `exfiltration`.
    pub rule: String,
    pub level: Level,
    /// Whether this finding fails the policy.
    pub fails: bool,
    /// Why it does not fail when it does not (`allowed for grpcio`, `below fail_on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
    /// `install`, `startup`, `import` or `runtime` (premain's phase).
    pub phase: String,
    /// Indices of the vet steps it was seen in.
    pub steps: Vec<usize>,
    pub culprit: CulpritRef,
    pub target: TargetRef,
    /// Alerts merged into this finding (folded repeats counted).
    pub count: u64,
    /// Stable across runs: distribution name, rule, phase, culprit path, target.
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CulpritRef {
    /// `pth`, `sitecustomize`, `usercustomize`, `module`, `setup`, `build-backend`, `unknown`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<String>,
    /// The culprit file, normalised (`<site-packages>/...`, `<source>/setup.py`, `~/...`).
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// For install: the build hooks it was seen in (`get_requires_for_build_wheel`,
    /// `build_wheel`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    File,
    Destination,
    DnsName,
    Program,
    Process,
    Socket,
    IoUring,
}

/// What the action reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    pub kind: TargetKind,
    /// The file (normalised), `host:port` or address, program path, ...
    pub text: String,
    /// The host name the destination was reached as (TLS SNI, HTTP Host, DNS question), when
    /// the capture tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The credential or persistence category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// For `exfiltration`: which bait and how it was encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// A bait, what touched it and where its value went. The value itself is never written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaitReport {
    /// `file` or `env`.
    pub kind: String,
    /// The file (normalised, `~/...`) or the variable's name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Credential reads of the file (env baits cannot be touched by a rule, only leaked).
    pub touched: Vec<Touch>,
    /// Where the value was found in what was sent.
    pub leaked: Vec<Leak>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    pub distribution: Option<String>,
    pub version: Option<String>,
    pub phase: String,
    pub culprit: Option<String>,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leak {
    /// `flow` or `dns`.
    pub channel: String,
    /// `tcp`/`udp` `address:port` of the flow, or the resolver asked.
    pub destination: String,
    /// The host name of the flow (SNI, Host), or the DNS name that held the value.
    pub host: Option<String>,
    /// `raw`, `hex`, `percent`, `base64`, `base64_url`, `base32`.
    pub encoding: String,
    /// The step running when it was seen, and the distributions it is put down to.
    pub step: Option<usize>,
    pub distributions: Vec<String>,
}

/// A destination contacted (from the capture and from network alerts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// `tcp`, `udp`, or `unix`/`unknown` for one only an alert names.
    pub transport: String,
    pub address: String,
    /// Host names seen in its flows (TLS SNI, HTTP Host) or asked for just before.
    pub hosts: Vec<String>,
    pub flows: usize,
    pub bytes: u64,
    /// Whether it is the package index.
    pub index: bool,
    /// Whether the sink relayed its connections to the real index (rather than taking them).
    #[serde(default)]
    pub relayed: bool,
    /// Whether a bait value was found in what was sent to it.
    pub leaked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsName {
    pub name: String,
    pub queries: usize,
    pub index: bool,
    pub leaked: bool,
}

/// A program run by pre-main code (exec alerts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramRun {
    pub path: String,
    /// The first command line seen (premain redacts secrets), normalised.
    pub argv: Vec<String>,
    pub distributions: Vec<String>,
    pub phases: Vec<String>,
    pub count: u64,
}

/// The policy a report was judged under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySummary {
    /// The policy file, or `null` for the default.
    pub file: Option<String>,
    pub fail_on: Level,
    /// Level per rule (rules set `off` are not listed and not reported).
    pub levels: std::collections::BTreeMap<String, Level>,
    /// Rules allowed per distribution (normalised names).
    pub allow: std::collections::BTreeMap<String, Vec<String>>,
    /// Levels set for one distribution (`error`, `warning`, `note`, `off`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub distribution_levels: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// What the report was compared with (`--baseline`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline file, as given.
    pub file: Option<String>,
    pub started: String,
    pub inputs: Vec<String>,
    /// `name version` of the distributions in the baseline.
    pub distributions: Vec<String>,
    /// Findings left out because the baseline has them.
    pub known: usize,
}
