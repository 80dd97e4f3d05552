//! The allowlists that exempt a whole process or culprit from every rule: executables,
//! culprit files and module names, distributions.

use std::{collections::HashSet, path::Path};

use globset::GlobSet;

use super::glob_set;
use crate::ops::config::Allow as Options;

pub(super) struct Allow {
    culprits: GlobSet,
    distributions: HashSet<String>,
    exes: GlobSet,
}

impl Allow {
    pub(super) fn compile(options: &Options) -> Result<Self, String> {
        Ok(Self {
            culprits: glob_set(options.culprits.iter().map(|g| g.get_ref().as_str()))?,
            distributions: options.distributions.iter().map(|d| normalize_distribution(d)).collect(),
            exes: glob_set(options.exes.iter().map(|g| g.get_ref().as_str()))?,
        })
    }

    /// Whether anything is exempted at all.
    pub(super) fn any(&self) -> bool {
        !self.culprits.is_empty() || !self.distributions.is_empty() || !self.exes.is_empty()
    }

    /// Whether distributions are exempted (finding a culprit's distribution reads the disk).
    pub(super) fn by_distribution(&self) -> bool {
        !self.distributions.is_empty()
    }

    pub(super) fn allowed(
        &self,
        exe: Option<&Path>,
        culprit_files: &[&Path],
        distribution: Option<&str>,
    ) -> bool {
        exe.is_some_and(|e| self.exes.is_match(e))
            || culprit_files.iter().any(|f| self.culprits.is_match(f))
            || distribution.is_some_and(|d| self.distributions.contains(&normalize_distribution(d)))
    }
}

/// PyPI's name normalization (PEP 503): case-insensitive, runs of `-_.` are one `-`.
pub(crate) fn normalize_distribution(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}
