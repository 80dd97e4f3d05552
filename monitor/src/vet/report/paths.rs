//! Paths as a reviewer reads them and as a baseline compares them: the venv's site-packages is
//! `<site-packages>`, the bait home `~`, a build's source tree `<source>`, temporary directories
//! `<tmp>`, process ids `<pid>`. Nothing of a run's random names is left.

use std::{path::Path, sync::LazyLock};

use regex::Regex;

/// The run's places to shorten.
#[derive(Clone, Debug, Default)]
pub(crate) struct Normaliser {
    home: String,
    venv: String,
}

static SITE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^/lib(?:64)?/python[0-9.t]+/(?:site|dist)-packages(/|$)").expect("valid"));
static TMP_SITE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:/var)?/tmp/.*?/(?:site|dist)-packages/").expect("valid"));
static TMP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(?:/var)?/tmp/[^/]+").expect("valid"));
static PID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^/proc/[0-9]+/").expect("valid"));
static TID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^task/[0-9]+/").expect("valid"));

fn text(path: &Path) -> String {
    path.to_string_lossy().trim_end_matches('/').to_owned()
}

impl Normaliser {
    pub(crate) fn new(home: &Path, venv: &Path) -> Self {
        Self { home: text(home), venv: text(venv) }
    }

    /// `path` normalised; `source` is an install culprit's source tree.
    pub(crate) fn path(&self, path: &str, source: Option<&str>) -> String {
        if let Some(source) = source.map(|s| s.trim_end_matches('/')).filter(|s| !s.is_empty())
            && let Some(rest) = strip(path, source)
        {
            return format!("<source>{rest}");
        }
        if !self.venv.is_empty()
            && let Some(rest) = strip(path, &self.venv)
        {
            if let Some(m) = SITE.find(rest) {
                return format!("<site-packages>/{}", &rest[m.end()..]).trim_end_matches('/').to_owned();
            }
            return format!("<venv>{rest}");
        }
        if !self.home.is_empty()
            && let Some(rest) = strip(path, &self.home)
        {
            return format!("~{rest}");
        }
        if let Some(m) = TMP_SITE.find(path) {
            return format!("<tmp>/…/site-packages/{}", &path[m.end()..]);
        }
        if let Some(m) = TMP.find(path) {
            return format!("<tmp>{}", &path[m.end()..]);
        }
        if let Some(m) = PID.find(path) {
            let rest = TID.replace(&path[m.end()..], "task/<tid>/");
            return format!("/proc/<pid>/{rest}");
        }
        path.to_owned()
    }
}

/// The rest of `path` after the directory `dir` (`""` or starting with `/`).
fn strip<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    path.strip_prefix(dir).filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// PEP 503's normalised distribution name.
pub(crate) fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_run_places() {
        let n = Normaliser::new(Path::new("/tmp/vet-1a2b/home"), Path::new("/tmp/vet-1a2b/venv/"));
        let site = "/tmp/vet-1a2b/venv/lib/python3.12/site-packages";
        assert_eq!(n.path(&format!("{site}/evil/__init__.py"), None), "<site-packages>/evil/__init__.py");
        assert_eq!(n.path(&format!("{site}/aaa.pth"), None), "<site-packages>/aaa.pth");
        assert_eq!(n.path("/tmp/vet-1a2b/venv/bin/python", None), "<venv>/bin/python");
        assert_eq!(n.path("/tmp/vet-1a2b/home/.aws/credentials", None), "~/.aws/credentials");
        assert_eq!(n.path("/tmp/vet-1a2b/homework/x", None), "<tmp>/homework/x");
        assert_eq!(
            n.path("/tmp/pip-install-x1/evil_9f/setup.py", Some("/tmp/pip-install-x1/evil_9f")),
            "<source>/setup.py"
        );
        assert_eq!(
            n.path("/tmp/pip-build-env-q/overlay/lib/python3.12/site-packages/setuptools/x.py", None),
            "<tmp>/…/site-packages/setuptools/x.py"
        );
        assert_eq!(n.path("/tmp/abc123/payload.sh", None), "<tmp>/payload.sh");
        assert_eq!(n.path("/proc/4242/task/4243/mem", None), "/proc/<pid>/task/<tid>/mem");
        assert_eq!(n.path("/usr/bin/curl", None), "/usr/bin/curl");
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("Foo_Bar.baz"), "foo-bar-baz");
        assert_eq!(canonical_name("grpcio"), "grpcio");
        assert_eq!(canonical_name("a--_b"), "a-b");
    }
}
