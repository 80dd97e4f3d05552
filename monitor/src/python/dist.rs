//! Names for culprit files: the module a file implements and the installed distribution that
//! owns it (from the `*.dist-info/RECORD` files of its site-packages directory).

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dist {
    pub name: String,
    pub version: String,
}

struct Index {
    mtime: Option<SystemTime>,
    /// Path relative to the site directory -> owner.
    files: HashMap<PathBuf, Dist>,
}

/// Site directories indexed at most (each index is rebuilt when its directory changes).
const MAX_SITES: usize = 64;

#[derive(Default)]
pub(crate) struct Distributions {
    sites: HashMap<PathBuf, Index>,
}

impl Distributions {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The distribution whose RECORD lists `file`.
    pub(crate) fn owner(&mut self, file: &Path) -> Option<Dist> {
        let site = site_dir(file)?;
        let rel = file.strip_prefix(&site).ok()?.to_path_buf();
        let mtime = fs::metadata(&site).and_then(|m| m.modified()).ok();
        let stale = self.sites.get(&site).is_none_or(|index| index.mtime != mtime);
        if stale {
            if self.sites.len() >= MAX_SITES {
                self.sites.clear();
            }
            self.sites.insert(site.clone(), Index { mtime, files: index(&site) });
        }
        self.sites.get(&site)?.files.get(&rel).cloned()
    }
}

/// The `site-packages`-like directory above `file`: one named so, or holding `*.dist-info`.
pub(crate) fn site_dir(file: &Path) -> Option<PathBuf> {
    for dir in file.ancestors().skip(1).take(12) {
        let name = dir.file_name().and_then(OsStr::to_str).unwrap_or("");
        if name == "site-packages" || name == "dist-packages" {
            return Some(dir.to_path_buf());
        }
    }
    file.ancestors().skip(1).take(4).find(|dir| holds_dist_info(dir)).map(Path::to_path_buf)
}

/// Listings remembered: the phase of every module body asks, and a standard library directory
/// holds hundreds of entries. A listing is trusted while the directory's mtime is unchanged.
const LISTINGS_MAX: usize = 4096;

thread_local! {
    static LISTINGS: std::cell::RefCell<HashMap<PathBuf, (std::time::SystemTime, bool)>> =
        std::cell::RefCell::new(HashMap::new());
}

/// Whether `dir` holds a `*.dist-info` directory (a `pip install --target` tree).
fn holds_dist_info(dir: &Path) -> bool {
    let Ok(mtime) = fs::metadata(dir).and_then(|m| m.modified()) else { return false };
    if let Some(known) =
        LISTINGS.with_borrow(|l| l.get(dir).filter(|(at, _)| *at == mtime).map(|(_, has)| *has))
    {
        return known;
    }
    let has = fs::read_dir(dir).ok().is_some_and(|entries| {
        entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".dist-info"))
    });
    LISTINGS.with_borrow_mut(|l| {
        if l.len() >= LISTINGS_MAX {
            l.clear();
        }
        l.insert(dir.to_path_buf(), (mtime, has));
    });
    has
}

fn index(site: &Path) -> HashMap<PathBuf, Dist> {
    let mut files = HashMap::new();
    let Ok(entries) = fs::read_dir(site) else { return files };
    for entry in entries.flatten() {
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = dir_name.strip_suffix(".dist-info") else { continue };
        let dist = metadata(&entry.path()).unwrap_or_else(|| {
            let (name, version) = stem.split_once('-').unwrap_or((stem, ""));
            Dist { name: name.to_owned(), version: version.to_owned() }
        });
        let Ok(record) = fs::read_to_string(entry.path().join("RECORD")) else { continue };
        for line in record.lines() {
            let path = record_path(line);
            if !path.is_empty() {
                files.insert(PathBuf::from(path), dist.clone());
            }
        }
    }
    files
}

/// The first CSV field of a RECORD line (quoted when it contains a comma).
fn record_path(line: &str) -> String {
    if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    out.push('"');
                    chars.next();
                } else {
                    break;
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    line.split(',').next().unwrap_or("").to_owned()
}

fn metadata(dist_info: &Path) -> Option<Dist> {
    let text = fs::read_to_string(dist_info.join("METADATA")).ok()?;
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Name: ") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Version: ") {
            version = Some(v.trim().to_owned());
        }
    }
    Some(Dist { name: name?, version: version.unwrap_or_default() })
}

/// The dotted module name a file implements (`pkg/sub/__init__.py` -> `pkg.sub`), relative
/// to its site directory, else to the outermost enclosing package. `<frozen os>` -> `os`.
pub(crate) fn module_name(file: &Path) -> Option<String> {
    let text = file.to_string_lossy();
    if let Some(name) = text.strip_prefix("<frozen ").and_then(|r| r.strip_suffix('>')) {
        return Some(name.to_owned());
    }
    if text.starts_with('<') {
        return None;
    }
    let mut stem = file.file_stem()?.to_string_lossy().into_owned();
    let mut dir = file.parent();
    // Bytecode cached for `<dir>/<stem>.py` as `<dir>/__pycache__/<stem>.<tag>.pyc`.
    if dir.and_then(Path::file_name) == Some(OsStr::new("__pycache__")) {
        stem = stem.split('.').next().unwrap_or_default().to_owned();
        dir = dir.and_then(Path::parent);
    }
    let mut parts = Vec::new();
    if stem != "__init__" {
        parts.push(stem);
    }
    let site = site_dir(file);
    while let Some(d) = dir {
        if Some(d) == site.as_deref() {
            break;
        }
        // Sourceless packages have only the bytecode.
        let is_package = d.join("__init__.py").is_file() || d.join("__init__.pyc").is_file();
        if site.is_none() && !is_package {
            break;
        }
        match d.file_name() {
            Some(name) => parts.push(name.to_string_lossy().into_owned()),
            None => break,
        }
        dir = d.parent();
        if parts.len() > 32 {
            break;
        }
    }
    parts.reverse();
    (!parts.is_empty()).then(|| parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_module_names_from_a_site_directory() {
        let root = std::env::temp_dir().join(format!("premain-dist-{}", std::process::id()));
        let site = root.join("lib/python3.12/site-packages");
        fs::create_dir_all(site.join("evilpkg/sub")).unwrap();
        fs::create_dir_all(site.join("evilpkg-1.0.dist-info")).unwrap();
        for f in ["evilpkg/__init__.py", "evilpkg/sub/__init__.py", "evilpkg/sub/x.py", "zz.pth"] {
            fs::write(site.join(f), "").unwrap();
        }
        fs::write(
            site.join("evilpkg-1.0.dist-info/METADATA"),
            "Metadata-Version: 2.1\nName: evil-pkg\nVersion: 1.0\n\nbody\n",
        )
        .unwrap();
        fs::write(
            site.join("evilpkg-1.0.dist-info/RECORD"),
            "evilpkg/__init__.py,sha256=x,1\nevilpkg/sub/x.py,,\n\"zz.pth\",sha256=y,2\n../../../bin/evil,,\n",
        )
        .unwrap();
        let mut d = Distributions::new();
        let evil = Some(Dist { name: "evil-pkg".into(), version: "1.0".into() });
        assert_eq!(d.owner(&site.join("evilpkg/__init__.py")), evil);
        assert_eq!(d.owner(&site.join("zz.pth")), evil);
        assert_eq!(d.owner(&site.join("evilpkg/sub/__init__.py")), None);
        assert_eq!(module_name(&site.join("evilpkg/sub/x.py")).as_deref(), Some("evilpkg.sub.x"));
        assert_eq!(module_name(&site.join("evilpkg/__init__.py")).as_deref(), Some("evilpkg"));
        assert_eq!(module_name(&site.join("evilpkg/__init__.pyc")).as_deref(), Some("evilpkg"));
        assert_eq!(
            module_name(&site.join("evilpkg/sub/__pycache__/x.cpython-312.pyc")).as_deref(),
            Some("evilpkg.sub.x")
        );
        // Outside a site directory, packages are found by their `__init__`, source or not.
        fs::create_dir_all(root.join("app/pkg")).unwrap();
        fs::write(root.join("app/pkg/__init__.pyc"), "").unwrap();
        assert_eq!(module_name(&root.join("app/pkg/mod.pyc")).as_deref(), Some("pkg.mod"));
        assert_eq!(module_name(Path::new("<frozen os>")).as_deref(), Some("os"));
        assert_eq!(module_name(Path::new("<string>")), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
