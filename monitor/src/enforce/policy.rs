//! The mode of each rule where an action happens: the node-wide mode (`premain run --mode`,
//! else `enforcement.mode`), refined per rule (`enforcement.rules`), then by every scope the
//! action's process is in (`[[enforcement.scopes]]`, in the file's order: a later scope wins).

use std::{collections::BTreeMap, path::Path};

use globset::{GlobSet, GlobSetBuilder};

use super::Mode;
use crate::{
    detect::{RuleId, program_glob},
    ops::config::{EnforcementOptions, EnforcementScope},
};

/// Why a configuration's enforcement section was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Where an action happens, as far as scopes can tell.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scope<'a> {
    pub namespace: Option<&'a str>,
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The process's cgroup v2 path (`/system.slice/app.service`).
    pub cgroup: Option<&'a str>,
    pub exe: Option<&'a Path>,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    base: Mode,
    rules: BTreeMap<RuleId, Mode>,
    scopes: Vec<CompiledScope>,
}

#[derive(Debug, Clone)]
struct CompiledScope {
    namespaces: Vec<String>,
    labels: BTreeMap<String, String>,
    cgroups: Option<GlobSet>,
    executables: Option<GlobSet>,
    mode: Option<Mode>,
    rules: BTreeMap<RuleId, Mode>,
}

impl Policy {
    /// `base`, when given, replaces `enforcement.mode` (the command line's `--mode`).
    pub fn compile(options: &EnforcementOptions, base: Option<Mode>) -> Result<Self, PolicyError> {
        let scopes =
            options.scopes.iter().map(|s| CompiledScope::compile(s.get_ref())).collect::<Result<_, _>>()?;
        Ok(Self { base: base.unwrap_or(options.mode), rules: options.rules.clone(), scopes })
    }

    /// The mode of `rule` for an action in `scope`.
    pub(crate) fn mode(&self, rule: RuleId, scope: &Scope<'_>) -> Mode {
        let mut mode = self.rules.get(&rule).copied().unwrap_or(self.base);
        for s in self.scopes.iter().filter(|s| s.contains(scope)) {
            mode = s.rules.get(&rule).copied().or(s.mode).unwrap_or(mode);
        }
        mode
    }

    /// The mode of `rule` outside every scope.
    pub(crate) fn node_mode(&self, rule: RuleId) -> Mode {
        self.rules.get(&rule).copied().unwrap_or(self.base)
    }

    /// Whether `rule` may be in `mode` somewhere.
    pub fn may(&self, rule: RuleId, mode: Mode) -> bool {
        self.node_mode(rule) == mode
            || self.scopes.iter().any(|s| s.rules.get(&rule).copied().or(s.mode) == Some(mode))
    }

    /// Whether any rule may be in `mode` somewhere (for the start-up line and the watches).
    pub fn any(&self, mode: Mode) -> bool {
        RuleId::ALL.into_iter().any(|rule| self.may(rule, mode))
    }
}

impl CompiledScope {
    fn compile(scope: &EnforcementScope) -> Result<Self, PolicyError> {
        let set = |key: &str, globs: &[String]| -> Result<Option<GlobSet>, PolicyError> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut builder = GlobSetBuilder::new();
            for glob in globs {
                let compiled = program_glob(glob).map_err(|e| {
                    PolicyError(format!("enforcement.scopes {key}: bad glob {glob:?}: {}", e.kind()))
                })?;
                builder.add(compiled);
            }
            builder.build().map(Some).map_err(|e| PolicyError(e.to_string()))
        };
        if scope.namespaces.is_empty()
            && scope.pod_labels.is_empty()
            && scope.cgroups.is_empty()
            && scope.executables.is_empty()
        {
            return Err(PolicyError(
                "an enforcement scope needs namespaces, pod_labels, cgroups or executables (set \
                 enforcement.mode or enforcement.rules for the whole node)"
                    .into(),
            ));
        }
        if scope.mode.is_none() && scope.rules.is_empty() {
            return Err(PolicyError("an enforcement scope needs a mode or rules".into()));
        }
        for (key, globs) in [("cgroups", &scope.cgroups), ("executables", &scope.executables)] {
            if let Some(bad) = globs.iter().find(|g| !g.starts_with('/')) {
                return Err(PolicyError(format!(
                    "enforcement.scopes {key}: {bad:?} is not an absolute path"
                )));
            }
        }
        Ok(Self {
            namespaces: scope.namespaces.clone(),
            labels: scope.pod_labels.clone(),
            cgroups: set("cgroups", &scope.cgroups)?,
            executables: set("executables", &scope.executables)?,
            mode: scope.mode,
            rules: scope.rules.clone(),
        })
    }

    /// Every selector it has matches (any of a list's entries; all of its labels).
    fn contains(&self, scope: &Scope<'_>) -> bool {
        let namespace = self.namespaces.is_empty()
            || scope.namespace.is_some_and(|n| self.namespaces.iter().any(|s| s == n));
        let labels = self.labels.is_empty()
            || scope.labels.is_some_and(|l| self.labels.iter().all(|(k, v)| l.get(k) == Some(v)));
        let cgroup = self.cgroups.as_ref().is_none_or(|g| scope.cgroup.is_some_and(|c| g.is_match(c)));
        let exe = self.executables.as_ref().is_none_or(|g| scope.exe.is_some_and(|e| g.is_match(e)));
        namespace && labels && cgroup && exe
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ops::config::Config;

    fn policy(text: &str, base: Option<Mode>) -> Policy {
        let config = Config::parse("test.toml", text).unwrap();
        Policy::compile(&config.enforcement, base).unwrap()
    }

    #[test]
    fn observe_everywhere_by_default() {
        let p = policy("", None);
        for rule in RuleId::ALL {
            assert_eq!(p.mode(rule, &Scope::default()), Mode::Observe);
        }
        assert!(!p.any(Mode::Enforce));
    }

    #[test]
    fn the_command_line_sets_every_rule_and_the_file_refines_it() {
        let text = r#"
            [enforcement]
            mode = "dry-run"
            rules = { network-connect = "observe" }
            [[enforcement.scopes]]
            namespaces = ["payments"]
            pod_labels = { app = "api" }
            mode = "dry-run"
            rules = { credential-read = "enforce" }
            [[enforcement.scopes]]
            executables = ["/opt/legacy/bin/*"]
            mode = "observe"
        "#;
        let p = policy(text, Some(Mode::Enforce));
        let node = Scope::default();
        assert_eq!(p.mode(RuleId::CredentialRead, &node), Mode::Enforce);
        assert_eq!(p.mode(RuleId::NetworkConnect, &node), Mode::Observe);
        let labels: BTreeMap<String, String> = [("app".to_owned(), "api".to_owned())].into();
        let api = Scope { namespace: Some("payments"), labels: Some(&labels), ..Scope::default() };
        assert_eq!(p.mode(RuleId::CredentialRead, &api), Mode::Enforce);
        assert_eq!(p.mode(RuleId::ProgramExec, &api), Mode::DryRun);
        assert_eq!(
            p.mode(RuleId::NetworkConnect, &api),
            Mode::DryRun,
            "the scope's mode wins over the rule's"
        );
        let other_pod = Scope { namespace: Some("payments"), ..Scope::default() };
        assert_eq!(p.mode(RuleId::ProgramExec, &other_pod), Mode::Enforce, "every label must match");
        let legacy = PathBuf::from("/opt/legacy/bin/python3");
        let later = Scope { exe: Some(&legacy), ..api };
        assert_eq!(p.mode(RuleId::CredentialRead, &later), Mode::Observe, "a later scope wins");
        let nested = PathBuf::from("/opt/legacy/bin/sub/python3");
        assert_eq!(p.mode(RuleId::CredentialRead, &Scope { exe: Some(&nested), ..api }), Mode::Enforce);
        assert!(p.any(Mode::Enforce) && p.any(Mode::DryRun));
        assert_eq!(policy(text, None).mode(RuleId::ProgramExec, &node), Mode::DryRun);
    }

    #[test]
    fn cgroup_scopes_match_the_v2_path() {
        let p = policy(
            "[[enforcement.scopes]]\ncgroups = [\"/system.slice/app.service\", \"/kubepods.slice/**\"]\nmode = \"enforce\"\n",
            None,
        );
        let at =
            |c: &'static str| p.mode(RuleId::CredentialRead, &Scope { cgroup: Some(c), ..Scope::default() });
        assert_eq!(at("/system.slice/app.service"), Mode::Enforce);
        assert_eq!(at("/kubepods.slice/kubepods-pod1.slice/cri-containerd-1.scope"), Mode::Enforce);
        assert_eq!(at("/system.slice/other.service"), Mode::Observe);
        assert_eq!(p.mode(RuleId::CredentialRead, &Scope::default()), Mode::Observe, "unknown cgroup");
    }

    #[test]
    fn bad_scopes_are_refused_with_the_reason() {
        for (text, why) in [
            ("[[enforcement.scopes]]\nmode = \"enforce\"\n", "needs namespaces"),
            ("[[enforcement.scopes]]\nnamespaces = [\"a\"]\n", "needs a mode or rules"),
            (
                "[[enforcement.scopes]]\nexecutables = [\"python3\"]\nmode = \"enforce\"\n",
                "not an absolute path",
            ),
            ("[[enforcement.scopes]]\ncgroups = [\"/a/[\"]\nmode = \"enforce\"\n", "bad glob"),
            ("[enforcement]\nmode = \"block\"\n", "unknown variant"),
            ("[enforcement]\nrules = { credential-reads = \"enforce\" }\n", "unknown variant"),
        ] {
            let err = Config::parse("test.toml", text).unwrap_err();
            assert!(err.to_string().contains(why), "{text}: {err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }
}
