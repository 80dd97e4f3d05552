//! Interpreters already on disk when premain starts: judged before it is ready, so that their
//! first run is not the one that pays for reading their ELF and attaching probes.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Directories looked into besides `$PATH`'s.
const SYSTEM_DIRS: [&str; 4] = ["/usr/bin", "/usr/local/bin", "/bin", "/opt/python/bin"];
/// Trees of per-version installations (`<tree>/<version>/bin`).
const VERSION_TREES: [&str; 2] = ["/root/.pyenv/versions", "/opt/python"];

/// Files named like an interpreter (`python`, `python3`, `python3.12`, `python3.13t`, ...) in
/// the usual directories, the `$PATH` given, and every `bin` of the version trees.
pub(crate) fn interpreter_candidates(path_var: Option<&str>) -> Vec<PathBuf> {
    let mut dirs: BTreeSet<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
    dirs.extend(path_var.unwrap_or_default().split(':').filter(|d| d.starts_with('/')).map(PathBuf::from));
    for tree in VERSION_TREES {
        for version in fs::read_dir(tree).into_iter().flatten().flatten() {
            dirs.insert(version.path().join("bin"));
        }
    }
    let mut found = BTreeSet::new();
    for dir in dirs {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name().to_str().is_some_and(named_like_python) {
                found.insert(entry.path());
            }
        }
    }
    found.into_iter().filter(|p| is_regular_file(p)).collect()
}

/// `python`, then digits and dots, then at most a `t` or `d` ABI letter.
fn named_like_python(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("python") else { return false };
    let rest = rest.strip_suffix(['t', 'd']).unwrap_or(rest);
    rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn is_regular_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_names() {
        for name in ["python", "python3", "python3.12", "python3.13t", "python3.8d"] {
            assert!(named_like_python(name), "{name}");
        }
        for name in ["python3-config", "python3.12-config", "pythonw", "ipython3", "pydoc3"] {
            assert!(!named_like_python(name), "{name}");
        }
    }

    #[test]
    fn the_system_interpreter_is_a_candidate() {
        let found = interpreter_candidates(Some("relative:/nonexistent"));
        assert!(found.iter().all(|p| p.is_absolute()));
        if Path::new("/usr/bin/python3").exists() {
            assert!(found.contains(&PathBuf::from("/usr/bin/python3")), "{found:?}");
        }
    }
}
