//! Where the catalogued credential files are on disk, so that the credential file watch can
//! mark them: `**/…` entries expanded under each known home directory, absolute ones from each
//! known root. The catalogue's matcher has the last word on every file found, so exclusions
//! and configured entries hold here as they do for opens. Walks are bounded in depth and size:
//! a home may hold millions of files, and only the few the catalogue names are wanted.

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

use super::{credential::Catalogue, persistence::Targets};

/// A list of globs whose files are looked for, and the matcher that has the last word.
pub(super) trait Findable {
    fn globs(&self) -> Vec<&str>;
    fn kind_of(&self, path: &Path) -> Option<&str>;
}

impl Findable for Catalogue {
    fn globs(&self) -> Vec<&str> {
        self.patterns().collect()
    }

    fn kind_of(&self, path: &Path) -> Option<&str> {
        self.category(path)
    }
}

/// The persistence targets the file watch marks: see [`Targets::marked_patterns`].
pub(super) struct TargetFiles<'a> {
    pub(super) targets: &'a Targets,
    pub(super) python_hooks: bool,
}

impl Findable for TargetFiles<'_> {
    fn globs(&self) -> Vec<&str> {
        self.targets.marked_patterns(self.python_hooks).collect()
    }

    fn kind_of(&self, path: &Path) -> Option<&str> {
        self.targets.category(path)
    }
}

/// Entries one walk looks at, at most.
const WALK_ENTRIES: usize = 2048;
/// How deep a `**` in the middle of an entry is followed.
const WALK_DEPTH_ANY: usize = 6;
/// Files found in one pass, at most.
pub(crate) const FOUND_MAX: usize = 8192;

/// Where files are looked for: a home directory as its owner sees it, under a root that premain
/// reaches it through (`/`, or `/proc/<pid>/root` for another mount namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Place {
    pub(crate) root: PathBuf,
    /// Absolute, as seen inside `root`; `None` for a root without a known home (its absolute
    /// entries only).
    pub(crate) home: Option<PathBuf>,
}

/// A catalogued file that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// As its owner sees it (the catalogue's name for it).
    pub(crate) path: PathBuf,
    /// Where premain reaches it.
    pub(crate) reach: PathBuf,
    pub(crate) category: String,
}

/// The files of `catalogue` under `places`.
pub(super) fn locate<'a>(catalogue: &dyn Findable, places: impl Iterator<Item = &'a Place>) -> Vec<Found> {
    let mut found = Vec::new();
    let mut roots = Vec::new();
    let globs = catalogue.globs();
    for place in places {
        if !roots.contains(&place.root) {
            roots.push(place.root.clone());
            for rel in globs.iter().filter_map(|p| p.strip_prefix('/')) {
                expand(catalogue, &place.root, Path::new("/"), rel, &mut found);
            }
        }
        if let Some(home) = &place.home {
            for rel in globs.iter().filter_map(|p| p.strip_prefix("**/")) {
                expand(catalogue, &place.root, home, rel, &mut found);
            }
        }
    }
    found.truncate(FOUND_MAX);
    found
}

/// The directories of `dirs` (absolute, or `**/` for a home's; no other wildcard) that exist
/// under `places`: `reach` is where premain reaches one, `category` empty. A symlink is
/// followed (the mark lands on the directory it leads to).
pub(super) fn locate_dirs<'a>(dirs: &[&str], places: impl Iterator<Item = &'a Place>) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    let mut roots = Vec::new();
    let mut add = |root: &Path, path: PathBuf| {
        let reach = reach(root, &path);
        if found.len() < FOUND_MAX && reach.is_dir() && !found.iter().any(|f| f.reach == reach) {
            found.push(Found { path, reach, category: String::new() });
        }
    };
    for place in places {
        if !roots.contains(&place.root) {
            roots.push(place.root.clone());
            for dir in dirs.iter().filter(|d| d.starts_with('/')) {
                add(&place.root, PathBuf::from(dir));
            }
        }
        if let Some(home) = &place.home {
            for rel in dirs.iter().filter_map(|d| d.strip_prefix("**/")) {
                add(&place.root, home.join(rel));
            }
        }
    }
    found
}

/// Files matching `rel` (a glob relative to `base`, which is seen inside `root`).
fn expand(catalogue: &dyn Findable, root: &Path, base: &Path, rel: &str, found: &mut Vec<Found>) {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let literal = parts.iter().take_while(|p| !p.contains(['*', '?', '[', '{', '\\'])).count();
    let start = parts[..literal].iter().fold(base.to_path_buf(), |dir, part| dir.join(part));
    // /proc is not a place for marks, and its entries (per-process environments) are opened
    // under names that change with every process.
    if start.starts_with("/proc") || parts[..literal].contains(&"..") || found.len() >= FOUND_MAX {
        return;
    }
    let rest = &parts[literal..];
    let depth = if rest.contains(&"**") { WALK_DEPTH_ANY } else { rest.len() };
    let mut budget = WALK_ENTRIES;
    walk(catalogue, root, &start, depth, &mut budget, found);
}

/// `path` (seen inside `root`) if it is a catalogued file, else what lies below it, down to
/// `depth` levels.
fn walk(
    catalogue: &dyn Findable,
    root: &Path,
    path: &Path,
    depth: usize,
    budget: &mut usize,
    found: &mut Vec<Found>,
) {
    let reach = reach(root, path);
    // Symlinks to files are followed (the mark lands on the file); to directories, not.
    let Ok(meta) = fs::metadata(&reach) else { return };
    if meta.is_file() {
        if let Some(category) = catalogue.kind_of(path)
            && found.len() < FOUND_MAX
            && !found.iter().any(|f| f.reach == reach)
        {
            found.push(Found { path: path.to_path_buf(), reach, category: category.to_owned() });
        }
        return;
    }
    let linked = fs::symlink_metadata(&reach).is_ok_and(|m| m.file_type().is_symlink());
    if !meta.is_dir() || depth == 0 || linked {
        return;
    }
    let Ok(entries) = fs::read_dir(&reach) else { return };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        walk(catalogue, root, &path.join(entry.file_name()), depth - 1, budget, found);
    }
}

/// The path premain opens to reach `path` as seen inside `root`.
fn reach(root: &Path, path: &Path) -> PathBuf {
    let inside = path.components().filter(|c| !matches!(c, Component::RootDir)).collect::<PathBuf>();
    root.join(inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::config::{CredentialPath, Credentials};

    fn catalogue(extra: &[(&str, &str)], exclude: &[&str]) -> Catalogue {
        let options = Credentials {
            replace_defaults: false,
            paths: extra
                .iter()
                .map(|(c, g)| CredentialPath {
                    category: (*c).into(),
                    glob: toml::Spanned::new(0..0, (*g).into()),
                })
                .collect(),
            exclude: exclude.iter().map(|g| toml::Spanned::new(0..0, (*g).into())).collect(),
        };
        Catalogue::compile(&options).expect("compiles")
    }

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"fake").unwrap();
    }

    #[test]
    fn catalogued_files_under_a_home_and_a_root_are_found_and_nothing_else() {
        let dir = tempfile_dir();
        let home = dir.join("home/alice");
        for f in [
            ".aws/credentials",
            ".ssh/id_ed25519",
            ".ssh/id_ed25519.pub",
            ".ssh/known_hosts",
            ".env",
            ".env.example",
            ".config/gcloud/a/b/token.json",
            "notes.txt",
        ] {
            touch(&home.join(f));
        }
        // A literal name resolves as the process would resolve it, through symlinks.
        std::os::unix::fs::symlink(dir.join("elsewhere"), home.join(".kube")).unwrap();
        touch(&dir.join("elsewhere/config"));
        // A walk does not follow a symlinked directory (it could loop, or lead anywhere).
        std::os::unix::fs::symlink(dir.join("other"), home.join(".config/gcloud/linked")).unwrap();
        touch(&dir.join("other/token.json"));
        touch(&dir.join("etc/corp/x.key"));
        let cat = catalogue(&[("corp", "/etc/corp/*.key")], &[]);
        // Another mount namespace's root: files are named as its processes see them.
        let places = [Place { root: dir.clone(), home: Some(PathBuf::from("/home/alice")) }];
        let mut found: Vec<(String, String)> = locate(&cat, places.iter())
            .into_iter()
            .map(|f| {
                assert_eq!(f.reach, reach(&dir, &f.path));
                (f.path.display().to_string(), f.category)
            })
            .collect();
        found.sort();
        let want = [
            ("/etc/corp/x.key", "corp"),
            ("/home/alice/.aws/credentials", "aws"),
            ("/home/alice/.config/gcloud/a/b/token.json", "gcloud"),
            ("/home/alice/.env", "dotenv"),
            ("/home/alice/.kube/config", "kubeconfig"),
            ("/home/alice/.ssh/id_ed25519", "ssh-private-key"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(p, c)| ((*p).into(), (*c).into())).collect();
        assert_eq!(
            found, want,
            "the symlinked ~/.kube directory is not followed; *.pub and .env.example are excluded"
        );

        let cat = catalogue(&[], &["**/.env"]);
        let found = locate(&cat, places.iter());
        assert!(!found.iter().any(|f| f.path.ends_with(".env")), "configured exclusions hold");
        // Persistence targets: files in homes and the system's single files; the system's
        // directories' files are reached by directory marks.
        touch(&dir.join("home/alice/.bashrc"));
        touch(&dir.join("home/alice/.ssh/authorized_keys"));
        touch(&dir.join("etc/profile"));
        touch(&dir.join("etc/cron.d/job"));
        let targets = Targets::new();
        let files = |python_hooks| {
            let mut found: Vec<String> =
                locate(&TargetFiles { targets: &targets, python_hooks }, places.iter())
                    .into_iter()
                    .map(|f| format!("{} {}", f.path.display(), f.category))
                    .collect();
            found.sort();
            found
        };
        assert_eq!(
            files(false),
            [
                "/etc/profile shell-rc",
                "/home/alice/.bashrc shell-rc",
                "/home/alice/.ssh/authorized_keys ssh-authorized-keys"
            ]
        );
        fs::create_dir_all(dir.join("home/alice/.config/systemd/user")).unwrap();
        let dirs: Vec<&str> = targets.directories().collect();
        let mut found: Vec<String> =
            locate_dirs(&dirs, places.iter()).into_iter().map(|f| f.path.display().to_string()).collect();
        found.sort();
        assert_eq!(found, ["/etc/cron.d", "/home/alice/.config/systemd/user", "/home/alice/.ssh"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "premain-locate-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
