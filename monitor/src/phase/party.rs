//! Whose code a culprit is: the application's own, a third party's (an installed
//! distribution, a `.pth` or customize hook, a package being built), or the interpreter's
//! standard library.
//!
//! Import-time code of the application itself (Django's `settings.py` reading `.env`, a
//! Flask `app.py` calling `load_dotenv()`) is the application starting, not pre-main code
//! someone slipped in. A module body is the application's when its file is outside every
//! `site-packages`/`dist-packages` directory, is not next to a `*.dist-info` (a `--target`
//! install), is not the standard library, and is the file the interpreter really loaded.
//! Every module body on the stack counts, not only the innermost: a dependency whose body
//! writes a file into the project and imports it stays the dependency's.

use std::{ffi::OsStr, path::Path};

use super::{Culprit, CulpritKind, state::Frame};
use crate::python::dist::site_dir;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[allow(clippy::enum_variant_names, reason = "`third-party` is the name alerts carry")]
pub(crate) enum Party {
    Application,
    ThirdParty,
    /// The interpreter's own standard library (frozen modules included).
    Interpreter,
    /// Code whose file is not known (an unreadable or false `co_filename`, no culprit).
    Unknown,
}

impl Party {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::ThirdParty => "third-party",
            Self::Interpreter => "interpreter",
            Self::Unknown => "unknown",
        }
    }

    /// Code of the application or of the interpreter it runs on: no one else's.
    pub(crate) fn is_own(self) -> bool {
        matches!(self, Self::Application | Self::Interpreter)
    }
}

/// The party of the code in `file`.
pub(crate) fn of_file(file: &Path) -> Party {
    let bytes = file.as_os_str().as_encoded_bytes();
    if bytes.starts_with(b"<frozen ") {
        return Party::Interpreter;
    }
    if bytes.starts_with(b"<") || file.is_relative() {
        return Party::Unknown;
    }
    if site_dir(file).is_some() {
        return Party::ThirdParty;
    }
    if in_standard_library(file) {
        return Party::Interpreter;
    }
    Party::Application
}

/// The party of the module bodies `frames` (those above the main code): third-party or
/// unknown when any one is, else the application's when any one is, else the interpreter's.
pub(crate) fn of_module_bodies<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Party {
    let mut party = None;
    for frame in frames.into_iter().filter(|f| f.module) {
        let this = match (frame.claim.is_some(), frame.false_claim(), frame.file()) {
            (true, None, Some(file)) => of_file(file),
            _ => Party::Unknown,
        };
        party = Some(match (party, this) {
            (_, Party::ThirdParty | Party::Unknown) => return this,
            (Some(Party::Application), _) | (_, Party::Application) => Party::Application,
            _ => Party::Interpreter,
        });
    }
    party.unwrap_or(Party::Unknown)
}

/// The party of a culprit from its files: the package being built, the hook's file, else the
/// module bodies it names.
pub(crate) fn of_culprit(c: &Culprit) -> Party {
    if matches!(c.kind, CulpritKind::Setup | CulpritKind::BuildBackend) {
        return Party::ThirdParty;
    }
    if c.filename_unreadable || c.claimed_file.is_some() || c.outer_claimed_file.is_some() {
        return Party::Unknown;
    }
    let files = [c.path.as_deref(), c.module_file.as_deref(), c.outer_module_file.as_deref()];
    let mut parties = files.into_iter().flatten().map(of_file);
    let Some(first) = parties.next() else { return Party::Unknown };
    parties.fold(first, |acc, p| match (acc, p) {
        (Party::ThirdParty | Party::Unknown, _) => acc,
        (_, Party::ThirdParty | Party::Unknown) => p,
        (Party::Application, _) | (_, Party::Application) => Party::Application,
        _ => Party::Interpreter,
    })
}

/// `<prefix>/lib/pythonX.Y/…` (or `lib64`) outside its `site-packages`: CPython's layout of
/// the standard library on every platform premain runs on.
fn in_standard_library(file: &Path) -> bool {
    let parts: Vec<&OsStr> = file.iter().collect();
    parts.windows(2).any(|w| {
        matches!(w[0].to_str(), Some("lib" | "lib64"))
            && w[1].to_str().and_then(|n| n.strip_prefix("python")).is_some_and(is_version)
    })
}

fn is_version(text: &str) -> bool {
    let mut parts = text.split('.');
    let (Some(major), Some(minor), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    [major, minor].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::phase::loaded::Source;

    fn body(file: &str) -> Frame {
        Frame {
            claim: Some(PathBuf::from(file)),
            source: Source::Claimed,
            main: false,
            module: true,
            globals: 0,
        }
    }

    #[test]
    fn files_by_where_they_live() {
        assert_eq!(of_file(Path::new("/srv/app/settings.py")), Party::Application);
        assert_eq!(
            of_file(Path::new("/venv/lib/python3.12/site-packages/evil/__init__.py")),
            Party::ThirdParty
        );
        assert_eq!(of_file(Path::new("/usr/lib/python3/dist-packages/apt/__init__.py")), Party::ThirdParty);
        assert_eq!(of_file(Path::new("/usr/lib/python3.11/json/__init__.py")), Party::Interpreter);
        assert_eq!(of_file(Path::new("/opt/py/lib64/python3.13/uuid.py")), Party::Interpreter);
        assert_eq!(of_file(Path::new("<frozen os>")), Party::Interpreter);
        assert_eq!(of_file(Path::new("<string>")), Party::Unknown);
        assert_eq!(of_file(Path::new("settings.py")), Party::Unknown);
        // Not a version: an application directory that happens to be called so.
        assert_eq!(of_file(Path::new("/srv/lib/python-tools/x.py")), Party::Application);
    }

    #[test]
    fn a_target_install_next_to_its_dist_info_is_third_party() {
        let root = std::env::temp_dir().join(format!("premain-party-{}", std::process::id()));
        std::fs::create_dir_all(root.join("vendor/evil")).unwrap();
        std::fs::create_dir_all(root.join("vendor/evil-1.0.dist-info")).unwrap();
        let file = root.join("vendor/evil/__init__.py");
        std::fs::write(&file, "").unwrap();
        assert_eq!(of_file(&file), Party::ThirdParty);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn any_third_party_body_on_the_stack_decides() {
        let app = body("/srv/app/settings.py");
        let dep = body("/venv/lib/python3.12/site-packages/dep/__init__.py");
        let planted = body("/srv/app/planted.py");
        let stdlib = body("/usr/lib/python3.11/uuid.py");
        assert_eq!(of_module_bodies([&app]), Party::Application);
        assert_eq!(of_module_bodies([&app, &stdlib]), Party::Application);
        assert_eq!(of_module_bodies([&stdlib]), Party::Interpreter);
        assert_eq!(of_module_bodies([&app, &dep]), Party::ThirdParty);
        // A dependency's body that imports a file it wrote into the project.
        assert_eq!(of_module_bodies([&app, &dep, &planted]), Party::ThirdParty);
        assert_eq!(of_module_bodies([]), Party::Unknown);
    }

    #[test]
    fn a_body_of_unknown_or_false_origin_is_unknown() {
        let app = body("/srv/app/settings.py");
        let unreadable = Frame { claim: None, ..body("/x.py") };
        let forged = Frame { source: Source::Unseen, ..body("/srv/app/settings.py") };
        let elsewhere =
            Frame { source: Source::Loaded(PathBuf::from("/tmp/x.pyc")), ..body("/srv/app/a.py") };
        assert_eq!(of_module_bodies([&app, &unreadable]), Party::Unknown);
        assert_eq!(of_module_bodies([&forged]), Party::Unknown);
        assert_eq!(of_module_bodies([&elsewhere, &app]), Party::Unknown);
    }
}
