//! The file a module body's code was really loaded from. A code object's `co_filename` is
//! whatever its compiler was told: a sourceless `.pyc` compiled as `…/requests/__init__.py`
//! claims to be `requests`. The interpreter, though, opens what it loads just before it runs
//! it, on the same thread: the `.py` source, its `__pycache__` bytecode, a sourceless `.pyc`,
//! or the archive zipimport reads. So each thread keeps the code files it opened for reading,
//! each with the depth of code-object frames it was opened at, and a module body entered at
//! that depth takes the one that corresponds to its `co_filename`, else the one opened most
//! recently since its last sibling body returned (what it was loaded from, whatever it
//! claims), else none (its code was not loaded from a file: compiled in memory).

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

/// Opens remembered per thread: the imports in flight at one time, with room to spare.
const MAX_LOADS: usize = 16;

#[derive(Clone, Debug)]
struct Load {
    path: PathBuf,
    /// Code-object frames running on the thread when it was opened.
    depth: usize,
    /// Opened since the last module body at `depth + 1` returned.
    fresh: bool,
}

/// Code files a thread opened for reading that no code object has taken yet.
#[derive(Clone, Debug, Default)]
pub(crate) struct Loads(Vec<Load>);

/// Where a frame's code came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The file its `co_filename` names (or it names none: `<string>`, `<frozen os>`, the
    /// user's main code, which is not checked).
    Claimed,
    /// Another file, the one the interpreter opened for it.
    Loaded(PathBuf),
    /// No file: nothing opened on its thread corresponds to it.
    Unseen,
}

impl Loads {
    /// The thread opened `path` (the kernel's path) for reading with `depth` frames running;
    /// only code files are kept (other opens are the bulk of a program's).
    pub(crate) fn opened(&mut self, path: &Path, depth: usize) {
        if !is_code(path) {
            return;
        }
        let path = path.to_path_buf();
        if self.0.len() >= MAX_LOADS {
            self.0.remove(0);
        }
        self.0.push(Load { path, depth, fresh: true });
    }

    /// A frame returned and `depth` frames run: what was opened deeper was for bodies that are
    /// gone, and what was opened at `depth` before is older than that sibling.
    pub(crate) fn returned_to(&mut self, depth: usize) {
        self.0.retain(|l| l.depth <= depth);
        for load in self.0.iter_mut().filter(|l| l.depth == depth) {
            load.fresh = false;
        }
    }

    /// Where the module body entered with `depth` frames running, whose `co_filename` is
    /// `claim` (`None`: unreadable), was loaded from; takes that load.
    pub(crate) fn take(&mut self, depth: usize, claim: Option<&Path>) -> Source {
        if let Some(claim) = claim {
            let matching =
                |claim: &Path| self.0.iter().rposition(|l| l.depth == depth && corresponds(claim, &l.path));
            // The file system only when the names alone match nothing opened at that depth.
            let opened_any = self.0.iter().any(|l| l.depth == depth);
            let found = matching(claim)
                .or_else(|| opened_any.then(|| real_path(claim)).flatten().and_then(|real| matching(&real)));
            if let Some(i) = found {
                self.0.remove(i);
                return Source::Claimed;
            }
        }
        match self.0.iter().rposition(|l| l.depth == depth && l.fresh) {
            Some(i) => Source::Loaded(self.0.remove(i).path),
            None => Source::Unseen,
        }
    }
}

/// `claim` with its symlinks resolved (of its directory only, when the file is gone), when
/// that changes it: the kernel's paths have none.
fn real_path(claim: &Path) -> Option<PathBuf> {
    if !claim.is_absolute() {
        return None;
    }
    let real = match std::fs::canonicalize(claim) {
        Ok(real) => real,
        Err(_) => std::fs::canonicalize(claim.parent()?).ok()?.join(claim.file_name()?),
    };
    (real != claim).then_some(real)
}

/// Whether opening `loaded` is how the interpreter loads code named `claim`: the file itself
/// (a relative `claim` is matched against the end of the path), its bytecode in the
/// `__pycache__` beside it or under a `PYTHONPYCACHEPREFIX` mirror of its directory, or the
/// zip archive it is inside. A sourceless `x.pyc` does not stand for an `x.py` claim.
fn corresponds(claim: &Path, loaded: &Path) -> bool {
    let claim = claim.strip_prefix(".").unwrap_or(claim);
    if claim == loaded || (claim.is_relative() && loaded.ends_with(claim)) {
        return true;
    }
    // `archive.zip/pkg/mod.py`.
    if claim.is_absolute() && is_archive(loaded) && claim.starts_with(loaded) {
        return true;
    }
    let (Some((dir, stem)), Some(claim_dir)) = (cached_source(loaded), claim.parent()) else {
        return false;
    };
    let beside = dir.file_name() == Some(OsStr::new("__pycache__")) && dir.parent() == Some(claim_dir);
    let mirrored = dir != claim_dir
        && claim_dir.strip_prefix("/").is_ok_and(|rel| !rel.as_os_str().is_empty() && dir.ends_with(rel));
    claim.extension() == Some(OsStr::new("py")) && claim.file_stem() == Some(stem) && (beside || mirrored)
}

/// For a cached bytecode file `<dir>/<stem>.<tag>.pyc`: its directory and the module stem.
fn cached_source(loaded: &Path) -> Option<(&Path, &OsStr)> {
    if loaded.extension() != Some(OsStr::new("pyc")) {
        return None;
    }
    let name = loaded.file_name()?.as_bytes();
    let dot = name.iter().position(|&b| b == b'.')?;
    // `<stem>.<tag>.pyc`: a sourceless `<stem>.pyc` has no tag.
    let tagged = name[dot + 1..].contains(&b'.');
    tagged.then(|| (loaded.parent().unwrap_or(Path::new("/")), OsStr::from_bytes(&name[..dot])))
}

/// Files CPython loads code from: sources, bytecode and archives (the suffixes whose opens the
/// kernel records for quiet processes too). A module loaded from a file named otherwise is
/// named by no file.
fn is_code(path: &Path) -> bool {
    is_archive(path) || matches!(path.extension().and_then(OsStr::to_str), Some("py" | "pyc"))
}

/// Archives zipimport reads, by their usual names.
fn is_archive(path: &Path) -> bool {
    matches!(path.extension().and_then(OsStr::to_str), Some("zip" | "egg" | "whl" | "pyz" | "pex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(claim: &str, loaded: &str) -> bool {
        corresponds(Path::new(claim), Path::new(loaded))
    }

    #[test]
    fn what_the_interpreter_opens_for_a_file_name() {
        let site = "/venv/lib/python3.12/site-packages";
        let claim = format!("{site}/requests/__init__.py");
        assert!(yes(&claim, &claim));
        assert!(yes(&claim, &format!("{site}/requests/__pycache__/__init__.cpython-312.pyc")));
        assert!(yes(&claim, &format!("{site}/requests/__pycache__/__init__.cpython-312.opt-1.pyc")));
        // `PYTHONPYCACHEPREFIX=/cache`.
        assert!(yes(&claim, &format!("/cache{site}/requests/__init__.cpython-312.pyc")));
        assert!(yes("/srv/app.zip/pkg/mod.py", "/srv/app.zip"));
        assert!(yes("/srv/app.pyz/__main__.py", "/srv/app.pyz"));
        assert!(yes("pkg/mod.py", "/srv/pkg/mod.py"));
        assert!(yes("./mod.py", "/srv/mod.py"));
        // A sourceless `.pyc` (the forged case) is not the source it names, wherever it lies.
        assert!(!yes(&claim, &format!("{site}/requests/__init__.pyc")));
        assert!(!yes(&claim, &format!("{site}/evilpkg/__init__.pyc")));
        assert!(!yes(&claim, &format!("{site}/evilpkg/__pycache__/__init__.cpython-312.pyc")));
        assert!(!yes(&claim, &format!("{site}/requests/__pycache__/other.cpython-312.pyc")));
        assert!(!yes(&claim, &format!("{site}/requests/__pycache__/__init__.pyc")));
        assert!(!yes(&claim, &format!("{site}/requests")));
        assert!(!yes(&claim, &format!("{site}/requests/__init__.cpython-312.pyc")));
        assert!(!yes("mod.py", "/srv/othermod.py"));
    }

    #[test]
    fn a_claim_through_symlinks_is_the_file_they_lead_to() {
        let root = std::env::temp_dir().join(format!("premain-loaded-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("real/pkg")).unwrap();
        std::fs::write(root.join("etc/sitecustomize.py"), "").unwrap();
        std::os::unix::fs::symlink(root.join("etc/sitecustomize.py"), root.join("real/sitecustomize.py"))
            .unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("lib64")).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        let mut loads = Loads::default();
        // Debian's `sitecustomize.py` is a symlink into `/etc`; a venv's `lib64` one to `lib`.
        loads.opened(&root.join("etc/sitecustomize.py"), 0);
        assert_eq!(loads.take(0, Some(&root.join("real/sitecustomize.py"))), Source::Claimed);
        loads.opened(&root.join("real/pkg/mod.py"), 0);
        assert_eq!(loads.take(0, Some(&root.join("lib64/pkg/mod.py"))), Source::Claimed);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_body_takes_what_its_thread_opened_for_it() {
        let site = Path::new("/venv/site-packages");
        let mut loads = Loads::default();
        // A source whose coding cookie imports an encoding module before it runs.
        loads.opened(&site.join("x.py"), 1);
        loads.opened(&site.join("encodings/__pycache__/latin_1.cpython-312.pyc"), 1);
        assert_eq!(loads.take(1, Some(&site.join("encodings/latin_1.py"))), Source::Claimed);
        loads.returned_to(1);
        assert_eq!(loads.take(1, Some(&site.join("x.py"))), Source::Claimed);
        // The forged `.pyc`: claims `requests`, was opened as `evilpkg/__init__.pyc`.
        loads.opened(&site.join("evilpkg/__init__.pyc"), 1);
        let claim = site.join("requests/__init__.py");
        assert_eq!(loads.take(1, Some(&claim)), Source::Loaded(site.join("evilpkg/__init__.pyc")));
        // Code compiled in memory: nothing opened for it, and an earlier sibling's leftover
        // (a `.py` read as data before a module ran) does not stand in for it.
        loads.opened(&site.join("notes.py"), 1);
        loads.opened(&site.join("y.py"), 1);
        assert_eq!(loads.take(1, Some(&site.join("y.py"))), Source::Claimed);
        loads.returned_to(1);
        assert_eq!(loads.take(1, Some(&claim)), Source::Unseen);
        // Opens at another depth are for other bodies; deeper ones die with their body.
        loads.opened(&site.join("z.py"), 2);
        assert_eq!(loads.take(1, Some(&site.join("z.py"))), Source::Unseen);
        loads.returned_to(1);
        assert_eq!(loads.take(2, Some(&site.join("z.py"))), Source::Unseen);
        // An unreadable name takes the code file opened for it (other files are not kept).
        loads.opened(&site.join("w.pyc"), 1);
        loads.opened(&site.join("data.json"), 1);
        assert_eq!(loads.take(1, None), Source::Loaded(site.join("w.pyc")));
        // Bounded.
        for i in 0..100 {
            loads.opened(&site.join(format!("m{i}.py")), 3);
        }
        assert_eq!(loads.0.len(), MAX_LOADS);
    }
}
