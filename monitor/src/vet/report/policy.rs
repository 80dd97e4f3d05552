//! The policy a run is judged under: a level per rule, the level from which a finding fails,
//! and rules allowed per distribution.
//!
//! ```toml
//! # Findings at this level or above fail the run (error, warning or note; default warning).
//! fail_on = "warning"
//!
//! # The level of a rule (error, warning, note), or "off" to not report it.
//! [levels]
//! io-uring = "note"
//!
//! # What a distribution may do (its findings are still reported, as allowed), and its own
//! # levels.
//! [distribution.grpcio]
//! allow = ["program-exec"]
//! levels = { network-connect = "warning" }
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    ops::Range,
    path::Path,
};

use serde::Deserialize;
use toml::Spanned;

use super::{
    model::{Level, PolicySummary},
    paths::canonical_name,
};

/// The rules a finding can have: premain's, then vet's own.
pub const RULES: [&str; 9] = [
    "credential-read",
    "network-connect",
    "network-send",
    "program-exec",
    "process-memory",
    "persistence",
    "raw-socket",
    "io-uring",
    "exfiltration",
];

/// What a rule means, for SARIF and the table.
pub fn describe(rule: &str) -> &'static str {
    match rule {
        "credential-read" => "Pre-main code read a credential file",
        "network-connect" => "Pre-main code connected to an address other than the package index",
        "network-send" => "Pre-main code sent a datagram to an address other than the package index",
        "program-exec" => "Pre-main code ran a program outside the build toolchain",
        "process-memory" => "Pre-main code reached into another process's memory",
        "persistence" => "Pre-main code wrote where code runs again later",
        "raw-socket" => "Pre-main code created a raw or packet socket",
        "io-uring" => "Pre-main code used io_uring for something its request does not tell",
        "exfiltration" => "A planted credential's value was seen leaving in what was sent",
        _ => "A pre-main action premain reports",
    }
}

fn default_level(rule: &str) -> Level {
    match rule {
        "io-uring" => Level::Warning,
        _ => Level::Error,
    }
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub file: Option<String>,
    pub fail_on: Level,
    /// Level per rule; a rule absent is `off` (not reported).
    pub levels: BTreeMap<String, Level>,
    /// Rules allowed, per PEP 503-normalised distribution name.
    pub allow: BTreeMap<String, BTreeSet<String>>,
    /// Levels of one distribution's findings (`None`: off), per normalised name.
    pub distribution_levels: BTreeMap<String, BTreeMap<String, Option<Level>>>,
}

impl Default for Policy {
    /// Every rule fails the run: credential reads, network other than the index, programs
    /// beyond the build toolchain, persistence, process memory, raw sockets, io_uring, leaks.
    fn default() -> Self {
        Self {
            file: None,
            fail_on: Level::Warning,
            levels: RULES.iter().map(|r| ((*r).to_owned(), default_level(r))).collect(),
            allow: BTreeMap::new(),
            distribution_levels: BTreeMap::new(),
        }
    }
}

/// A policy that cannot be used: `file:line:column: message`, on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "policy {}: {}", self.file, self.message)
        } else {
            write!(f, "policy {}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    fail_on: Option<Spanned<String>>,
    #[serde(default)]
    levels: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    distribution: BTreeMap<String, DistributionFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistributionFile {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    levels: BTreeMap<Spanned<String>, Spanned<String>>,
}

fn level(text: &str) -> Option<Option<Level>> {
    Some(match text {
        "error" => Some(Level::Error),
        "warning" => Some(Level::Warning),
        "note" => Some(Level::Note),
        "off" => None,
        _ => return None,
    })
}

fn check_rule(rule: &Spanned<String>) -> Result<(), (Range<usize>, String)> {
    if RULES.contains(&rule.get_ref().as_str()) {
        Ok(())
    } else {
        Err((rule.span(), format!("unknown rule {:?} (rules: {})", rule.get_ref(), RULES.join(", "))))
    }
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&file, &text)
    }

    /// Parses `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = span.map_or((1, 1), |s| line_column(text, s.start));
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            PolicyError { file: file.to_owned(), line, column, message }
        };
        let parsed: File = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_owned()))?;
        let mut policy = Self { file: Some(file.to_owned()), ..Self::default() };
        let bad_level = |l: &Spanned<String>| {
            (l.span(), format!("unknown level {:?} (error, warning, note, off)", l.get_ref()))
        };
        if let Some(fail_on) = &parsed.fail_on {
            policy.fail_on = level(fail_on.get_ref())
                .flatten()
                .ok_or_else(|| {
                    (
                        fail_on.span(),
                        format!("fail_on must be error, warning or note, not {:?}", fail_on.get_ref()),
                    )
                })
                .map_err(|(s, m)| at(Some(s), m))?;
        }
        for (rule, value) in &parsed.levels {
            check_rule(rule).map_err(|(s, m)| at(Some(s), m))?;
            match level(value.get_ref()).ok_or_else(|| bad_level(value)).map_err(|(s, m)| at(Some(s), m))? {
                Some(l) => policy.levels.insert(rule.get_ref().clone(), l),
                None => policy.levels.remove(rule.get_ref()),
            };
        }
        for (name, dist) in &parsed.distribution {
            let name = canonical_name(name);
            for rule in &dist.allow {
                check_rule(rule).map_err(|(s, m)| at(Some(s), m))?;
                policy.allow.entry(name.clone()).or_default().insert(rule.get_ref().clone());
            }
            for (rule, value) in &dist.levels {
                check_rule(rule).map_err(|(s, m)| at(Some(s), m))?;
                let l = level(value.get_ref())
                    .ok_or_else(|| bad_level(value))
                    .map_err(|(s, m)| at(Some(s), m))?;
                policy.distribution_levels.entry(name.clone()).or_default().insert(rule.get_ref().clone(), l);
            }
        }
        Ok(policy)
    }

    /// The level of `rule`, or `None` when it is off.
    pub fn level(&self, rule: &str) -> Option<Level> {
        self.levels.get(rule).copied()
    }

    /// The level of `rule` for a finding of `distribution` (its own level when the policy sets
    /// one), or `None` when it is off.
    pub fn level_for(&self, distribution: Option<&str>, rule: &str) -> Option<Level> {
        distribution
            .and_then(|d| self.distribution_levels.get(&canonical_name(d)))
            .and_then(|levels| levels.get(rule))
            .map_or_else(|| self.level(rule), |l| *l)
    }

    /// Why a finding of `rule` by `distribution` at `level` does not fail, or `None` if it fails.
    pub fn excuse(&self, distribution: Option<&str>, rule: &str, level: Level) -> Option<String> {
        if let Some(name) = distribution
            && self.allow.get(&canonical_name(name)).is_some_and(|rules| rules.contains(rule))
        {
            return Some(format!("allowed for {}", canonical_name(name)));
        }
        (level < self.fail_on).then(|| format!("below fail_on ({})", self.fail_on.as_str()))
    }

    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            file: self.file.clone(),
            fail_on: self.fail_on,
            levels: self.levels.clone(),
            allow: self.allow.iter().map(|(k, v)| (k.clone(), v.iter().cloned().collect())).collect(),
            distribution_levels: self
                .distribution_levels
                .iter()
                .map(|(d, levels)| {
                    let levels =
                        levels.iter().map(|(r, l)| (r.clone(), l.map_or("off", Level::as_str).to_owned()));
                    (d.clone(), levels.collect())
                })
                .collect(),
        }
    }
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

    #[test]
    fn default_fails_on_every_rule() {
        let p = Policy::default();
        for rule in RULES {
            let level = p.level(rule).unwrap();
            assert_eq!(p.excuse(Some("x"), rule, level), None, "{rule}");
        }
    }

    #[test]
    fn parses_allow_and_levels() {
        let p = Policy::parse(
            "p.toml",
            "fail_on = \"error\"\n[levels]\nio-uring = \"off\"\nraw-socket = \"warning\"\n\
             [distribution.GRPCio]\nallow = [\"program-exec\"]\n",
        )
        .unwrap();
        assert_eq!(p.level("io-uring"), None);
        assert_eq!(p.excuse(None, "raw-socket", Level::Warning).as_deref(), Some("below fail_on (error)"));
        assert_eq!(
            p.excuse(Some("grpcio"), "program-exec", Level::Error).as_deref(),
            Some("allowed for grpcio")
        );
        assert_eq!(p.excuse(Some("grpcio"), "credential-read", Level::Error), None);
        assert_eq!(p.summary().allow["grpcio"], ["program-exec"]);
        let p = Policy::parse(
            "p.toml",
            "[levels]\nraw-socket = \"off\"\n[distribution.sniffer]\nlevels = { raw-socket = \"note\", io-uring = \"off\" }\n",
        )
        .unwrap();
        assert_eq!(p.level_for(Some("Sniffer"), "raw-socket"), Some(Level::Note));
        assert_eq!(p.level_for(Some("sniffer"), "io-uring"), None);
        assert_eq!(p.level_for(Some("other"), "raw-socket"), None);
        assert_eq!(p.level_for(None, "io-uring"), Some(Level::Warning));
        assert_eq!(p.summary().distribution_levels["sniffer"]["io-uring"], "off");
    }

    #[test]
    fn bad_policies_are_one_line_errors() {
        let cases = [
            (
                "[distribution.x]\nallow = [\"program-exec\", \"rm-rf\"]\n",
                "p.toml:2:26: unknown rule \"rm-rf\"",
            ),
            ("[levels]\nio-uring = \"loud\"\n", "p.toml:2:12: unknown level \"loud\""),
            ("[distribution.y]\nlevels = { nope = \"note\" }\n", "p.toml:2:12: unknown rule \"nope\""),
            ("fail_on = \"off\"\n", "p.toml:1:11: fail_on must be"),
            ("[distribution.x]\nallw = []\n", "p.toml:2:1: unknown field `allw`"),
            ("fail_on = \n", "p.toml:1:"),
        ];
        for (text, expected) in cases {
            let e = Policy::parse("p.toml", text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("policy {expected}")), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let missing = Policy::load(Path::new("/nonexistent/p.toml")).unwrap_err().to_string();
        assert!(missing.starts_with("policy /nonexistent/p.toml: cannot read"), "{missing}");
    }
}
