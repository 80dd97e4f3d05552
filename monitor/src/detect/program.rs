//! `program-exec`: an exec, successful or refused, of a program pre-main code may not run.

use std::{collections::HashSet, path::Path};

pub(super) struct Programs {
    allowed: HashSet<String>,
}

impl Programs {
    pub(super) fn new(allowed: &[String]) -> Self {
        Self { allowed: allowed.iter().cloned().collect() }
    }

    /// Whether an exec of `path` that returned `result` is a program run against the rule.
    pub(super) fn run(&self, path: &Path, result: i64) -> bool {
        // A PATH search tries every directory: the misses are not programs run.
        const ENOENT: i64 = 2;
        const ENOTDIR: i64 = 20;
        if result == -ENOENT || result == -ENOTDIR {
            return false;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        !self.allowed.contains(&name)
    }
}
