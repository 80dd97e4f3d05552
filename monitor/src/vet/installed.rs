//! What an install put in the venv, read from its `*.dist-info` directories on disk (running
//! Python to ask would run the packages' start-up hooks outside a step): each distribution's
//! name and version, its top-level modules and its console scripts.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Installed {
    pub name: String,
    pub version: String,
    /// Importable top-level names (packages, modules, C extensions), sorted.
    pub modules: Vec<String>,
    /// `[console_scripts]` entry point names.
    pub scripts: Vec<String>,
    pub dist_info: PathBuf,
}

/// The `site-packages` directories of a venv (`lib/python3.N/site-packages`).
pub fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found
}

/// Every distribution installed in the venv.
pub fn scan(venv: &Path) -> Vec<Installed> {
    let mut all = Vec::new();
    for site in site_packages(venv) {
        for entry in fs::read_dir(&site).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "dist-info")
                && path.is_dir()
                && let Some(dist) = read(&path)
            {
                all.push(dist);
            }
        }
    }
    all.sort();
    all
}

fn read(dist_info: &Path) -> Option<Installed> {
    let metadata = fs::read_to_string(dist_info.join("METADATA")).ok()?;
    let header = |key: &str| {
        metadata
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_owned()))
    };
    let name = header("Name")?;
    let version = header("Version").unwrap_or_default();
    let modules = match fs::read_to_string(dist_info.join("top_level.txt")) {
        Ok(text) => text.lines().map(str::trim).filter(|l| importable(l)).map(str::to_owned).collect(),
        Err(_) => fs::read_to_string(dist_info.join("RECORD")).map(|r| from_record(&r)).unwrap_or_default(),
    };
    let scripts = fs::read_to_string(dist_info.join("entry_points.txt"))
        .map(|t| console_scripts(&t))
        .unwrap_or_default();
    Some(Installed { name, version, modules, scripts, dist_info: dist_info.to_path_buf() })
}

/// Top-level names from a wheel's RECORD: `pkg/__init__.py` gives `pkg`, `mod.py` and
/// `mod.cpython-312-x86_64-linux-gnu.so` give `mod`; metadata, scripts and `.pth` files none.
fn from_record(record: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    for line in record.lines() {
        let Some(path) = line.split(',').next() else { continue };
        let path = path.trim_matches('"');
        if path.starts_with("..") || path.starts_with('/') {
            continue;
        }
        let (first, rest) = match path.split_once('/') {
            Some((dir, rest)) => (dir, Some(rest)),
            None => (path, None),
        };
        let name = match rest {
            Some(_)
                if first.ends_with(".dist-info") || first.ends_with(".data") || first == "__pycache__" =>
            {
                continue;
            }
            Some(_) => first,
            None => match first.split_once('.') {
                Some((stem, ext)) if ext == "py" || ext.ends_with("so") || ext == "pyd" => stem,
                _ => continue,
            },
        };
        if importable(name) {
            names.insert(name.to_owned());
        }
    }
    names.into_iter().collect()
}

/// A name `import` takes.
fn importable(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn console_scripts(text: &str) -> Vec<String> {
    let mut inside = false;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[console_scripts]";
        } else if inside && let Some((name, _)) = line.split_once('=') {
            names.push(name.trim().to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_gives_packages_modules_and_extensions_but_not_metadata_or_scripts() {
        let record = "requests/__init__.py,sha256=x,1\nrequests/api.py,,\nsix.py,,\n\
                      _cffi_backend.cpython-312-x86_64-linux-gnu.so,,\nx-1.0.dist-info/METADATA,,\n\
                      ../../bin/x,,\nx.pth,,\n__pycache__/six.cpython-312.pyc,,\nx-1.0.data/scripts/y,,\n";
        assert_eq!(from_record(record), ["_cffi_backend", "requests", "six"]);
    }

    #[test]
    fn console_scripts_only_from_their_section() {
        let text = "[console_scripts]\nflask = flask.cli:main\n\n[gui_scripts]\nx = y:z\n";
        assert_eq!(console_scripts(text), ["flask"]);
    }

    #[test]
    fn names_import_takes() {
        assert!(
            importable("yaml")
                && importable("_yaml")
                && !importable("my-pkg")
                && !importable("")
                && !importable("1x")
        );
    }
}
