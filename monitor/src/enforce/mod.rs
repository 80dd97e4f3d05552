//! Enforcement: what premain does, besides alerting, to the action an alert is about.
//!
//! The decision is the alert's: an action is acted on exactly when it raises an alert (same
//! rules, allowlists, phase of the thread at the moment of the syscall and party), and the
//! [`Policy`] says what to do with it there: observe (alert only), dry-run (alert "would have
//! denied") or enforce. Only where premain is asked before the action completes can it deny
//! it: [`enforceable`] says for which rules that is the case today. The other rules alert
//! under every mode, with the outcome `not-enforced`, so a dry run reports exactly the set an
//! enforcing run denies.

pub(crate) mod guard;
mod policy;

pub(crate) use policy::Scope;
pub use policy::{Policy, PolicyError};
use serde::{Deserialize, Serialize};

use crate::detect::RuleId;

/// What premain does with an action that breaks a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Alert only.
    #[default]
    Observe,
    /// Alert, saying whether enforce would have denied it.
    DryRun,
    /// Deny it where premain decides before it completes.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::DryRun => "dry-run",
            Self::Enforce => "enforce",
        }
    }

    /// `--mode` on the command line.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "observe" => Ok(Self::Observe),
            "dry-run" => Ok(Self::DryRun),
            "enforce" => Ok(Self::Enforce),
            _ => Err(format!("unknown mode {text:?} (want observe, dry-run or enforce)")),
        }
    }
}

/// What happened to an action an alert reports, under a mode other than observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The syscall failed with `EPERM`; the process went on.
    Denied,
    /// The process was killed in the call, before it ran another instruction of its own (an
    /// exec: before the new program's first instruction).
    Killed,
    /// Dry run: enforce would have denied it.
    WouldDeny,
    /// premain's decision came after the bound: the action was allowed.
    TimedOut,
    /// The action was not denied: its rule cannot be enforced (see [`enforceable`]), or it
    /// did not reach premain before it completed (a credential file not watched yet).
    NotEnforced,
}

impl Outcome {
    pub const ALL: [Outcome; 5] =
        [Self::Denied, Self::Killed, Self::WouldDeny, Self::TimedOut, Self::NotEnforced];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Killed => "killed",
            Self::WouldDeny => "would-deny",
            Self::TimedOut => "timed-out",
            Self::NotEnforced => "not-enforced",
        }
    }
}

/// The rules whose actions premain decides before they complete, and so can act on: credential
/// reads and persistence writes to files that exist, through the file watch (fanotify
/// permission events on every catalogued file premain knows, whatever the syscall or the
/// name); IPv4 and IPv6 connects and addressed sends, denied by the guard (cgroup programs,
/// whatever the syscall); execs and reads or writes of another process's memory, whose
/// process the guard kills in the call.
pub fn enforceable(rule: RuleId) -> bool {
    matches!(
        rule,
        RuleId::CredentialRead
            | RuleId::Persistence
            | RuleId::NetworkConnect
            | RuleId::NetworkSend
            | RuleId::ProcessMemory
            | RuleId::ProgramExec
    )
}

/// The `enforcement` of an alert: its mode and what came of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Enforcement {
    pub mode: Mode,
    pub outcome: Outcome,
}

impl Enforcement {
    /// The enforcement of an alert raised after the fact (from a kernel record: the action
    /// has completed) under `mode`; `asked` when the action waited for premain's answer before
    /// it could complete (an enforcing run denies it: one that completed all the same was let
    /// through by the bound). `None` under observe.
    pub(crate) fn after_the_fact(mode: Mode, asked: bool) -> Option<Self> {
        let outcome = match mode {
            Mode::Observe => return None,
            Mode::DryRun if asked => Outcome::WouldDeny,
            Mode::Enforce if asked => Outcome::TimedOut,
            Mode::DryRun | Mode::Enforce => Outcome::NotEnforced,
        };
        Some(Self { mode, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_outcomes_have_their_serialized_names() {
        for mode in [Mode::Observe, Mode::DryRun, Mode::Enforce] {
            assert_eq!(serde_json::to_value(mode).unwrap(), serde_json::json!(mode.as_str()));
            assert_eq!(Mode::parse(mode.as_str()), Ok(mode));
        }
        for outcome in Outcome::ALL {
            assert_eq!(serde_json::to_value(outcome).unwrap(), serde_json::json!(outcome.as_str()));
        }
        assert!(Mode::parse("block").unwrap_err().contains("observe, dry-run or enforce"));
    }

    #[test]
    fn a_dry_run_would_deny_what_enforce_denies_and_nothing_else() {
        for asked in [false, true] {
            let dry = Enforcement::after_the_fact(Mode::DryRun, asked).unwrap();
            assert_eq!(dry.outcome == Outcome::WouldDeny, asked);
            // An enforcing run denies before the fact: what completed was not denied, for want
            // of a timely answer when premain was asked.
            let late = Enforcement::after_the_fact(Mode::Enforce, asked).unwrap();
            assert_eq!(late.outcome, if asked { Outcome::TimedOut } else { Outcome::NotEnforced });
            assert_eq!(Enforcement::after_the_fact(Mode::Observe, asked), None);
        }
        assert!(enforceable(RuleId::CredentialRead) && enforceable(RuleId::Persistence));
        assert!(enforceable(RuleId::NetworkConnect) && enforceable(RuleId::ProgramExec));
        assert!(!enforceable(RuleId::RawSocket) && !enforceable(RuleId::IoUring));
    }
}
