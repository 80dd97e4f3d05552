//! The `install` phase: a Python process that a package installer started to run a build hook
//! (pip's PEP 517 `_in_process.py`, pip's legacy `setup.py` caller, uv's build scripts, hatch's
//! copy of `_in_process.py`).
//! Told from the process's argv and its ancestors; everything such a process and its
//! descendants do is install-time code of the package being built.

use std::{
    ffi::OsStr,
    fs,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use crate::{
    phase::{Culprit, CulpritKind, InstallDetector},
    process::event::ProcessInfo,
    process::table::Lineage,
};

/// PEP 517 hook names, as pip and uv pass or embed them.
const HOOKS: &[&str] = &[
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_wheel",
    "build_wheel",
    "get_requires_for_build_editable",
    "prepare_metadata_for_build_editable",
    "build_editable",
    "get_requires_for_build_sdist",
    "build_sdist",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookKind {
    /// `python .../pyproject_hooks/_in_process/_in_process.py <hook> <dir>`.
    Pep517,
    /// `python -c "... <pip-setuptools-caller> ..." egg_info|bdist_wheel|install ...`.
    LegacySetup,
    /// uv: `<build venv>/bin/python -c "<script calling the backend>"`.
    Uv,
    /// hatch, building a project whose backend is not hatchling: its runner writes
    /// pyproject_hooks' `_in_process.py` to a temporary `script.py` and runs
    /// `<build env>/bin/python <tmp>/script.py <hook> <tmp>/control`.
    Hatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hook {
    pub kind: HookKind,
    pub name: Option<String>,
    /// `setup.py` named on the legacy caller's command line.
    pub setup_py: Option<PathBuf>,
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The build hook a process runs, from its argv (`argv[0]` is the interpreter).
pub(crate) fn hook_of(argv: &[Vec<u8>], exe: Option<&Path>) -> Option<Hook> {
    let args = argv.get(1..).unwrap_or_default();
    for (i, arg) in args.iter().enumerate() {
        if arg.ends_with(b"/_in_process.py") || arg.as_slice() == b"_in_process.py" {
            let name = args.get(i + 1).map(|n| text(n).into_owned());
            return Some(Hook { kind: HookKind::Pep517, name, setup_py: None });
        }
        if (arg.ends_with(b"/script.py") || arg.as_slice() == b"script.py")
            && let Some(name) =
                args.get(i + 1).map(|n| text(n).into_owned()).filter(|n| HOOKS.contains(&n.as_str()))
            && args
                .get(i + 2)
                .is_some_and(|c| Path::new(OsStr::from_bytes(c)).file_name() == Some(OsStr::new("control")))
        {
            return Some(Hook { kind: HookKind::Hatch, name: Some(name), setup_py: None });
        }
        if arg.as_slice() == b"-c" {
            let code = text(args.get(i + 1)?);
            if code.contains("<pip-setuptools-caller>") {
                let name = args.get(i + 2).map(|n| text(n).into_owned());
                let setup_py = quoted_path_ending(&code, "setup.py");
                return Some(Hook { kind: HookKind::LegacySetup, name, setup_py });
            }
            // uv runs its build venv's `python`, a symlink to the base interpreter: the build
            // venv shows in argv[0] (the path executed), not in the resolved executable.
            let in_build_venv = |p: &[u8]| String::from_utf8_lossy(p).contains("/builds-v0/");
            let uv_build = argv.first().is_some_and(|a| in_build_venv(a))
                || exe.is_some_and(|e| in_build_venv(e.as_os_str().as_encoded_bytes()));
            if uv_build && (code.contains("backend") || code.contains("build_meta")) {
                // `build_wheel` is part of `prepare_metadata_for_build_wheel`: the longest wins.
                let name = HOOKS
                    .iter()
                    .filter(|h| code.contains(*h))
                    .max_by_key(|h| h.len())
                    .map(|h| (*h).to_owned());
                return Some(Hook { kind: HookKind::Uv, name, setup_py: None });
            }
            return None;
        }
        if !arg.starts_with(b"-") {
            // The script: not a hook runner.
            return None;
        }
    }
    None
}

fn quoted_path_ending(code: &str, suffix: &str) -> Option<PathBuf> {
    let end = code.find(&format!("{suffix}'")).or_else(|| code.find(&format!("{suffix}\"")))? + suffix.len();
    let start = code[..end].rfind(['\'', '"'])? + 1;
    Some(PathBuf::from(&code[start..end]))
}

/// Installers that are programs of their own (pip is also run as a script or a module).
const INSTALLERS: &[&str] = &["pip", "uv", "poetry", "pdm", "pipx", "hatch", "build", "pyproject-build"];

/// The installer a command line runs, if any.
pub(crate) fn installer_of(argv: &[Vec<u8>], exe: Option<&Path>) -> Option<&'static str> {
    let named = |name: &str| INSTALLERS.iter().copied().find(|i| *i == name);
    let file_name = |path: &Path| path.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some(found) = exe.and_then(file_name).as_deref().and_then(named) {
        return Some(found);
    }
    for (i, arg) in argv.iter().enumerate() {
        if arg.as_slice() == b"-m" {
            return argv.get(i + 1).and_then(|m| named(&String::from_utf8_lossy(m)));
        }
        let Some(name) = file_name(Path::new(OsStr::from_bytes(arg))) else { continue };
        if name == "__pip-runner__.py" || name.starts_with("pip3") {
            return Some("pip");
        }
        // The program itself, or the script its interpreter runs.
        if i <= 1
            && let Some(found) = named(&name)
        {
            return Some(found);
        }
        if i >= 1 && !arg.starts_with(b"-") {
            break;
        }
    }
    None
}

/// What the source tree being built says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Source {
    pub name: Option<String>,
    pub version: Option<String>,
    pub backend: Option<String>,
    pub backend_path: Vec<String>,
    pub has_setup_py: bool,
}

pub(crate) fn read_source(dir: &Path) -> Source {
    let mut source = Source { has_setup_py: dir.join("setup.py").is_file(), ..Source::default() };
    if let Some(table) =
        fs::read_to_string(dir.join("pyproject.toml")).ok().and_then(|t| t.parse::<toml::Table>().ok())
    {
        let get = |section: &str, key: &str| table.get(section).and_then(|s| s.get(key)).cloned();
        source.name = get("project", "name").and_then(|v| v.as_str().map(str::to_owned));
        source.version = get("project", "version").and_then(|v| v.as_str().map(str::to_owned));
        source.backend = get("build-system", "build-backend").and_then(|v| v.as_str().map(str::to_owned));
        source.backend_path = get("build-system", "backend-path")
            .and_then(|v| {
                v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            })
            .unwrap_or_default();
    }
    // PKG-INFO in an sdist, then setup.cfg, then a literal in setup.py.
    let mut from_lines = |file: &str, name_key: &str, version_key: &str| {
        let Ok(content) = fs::read_to_string(dir.join(file)) else { return };
        for line in content.lines() {
            let Some((key, value)) = line.split_once([':', '=']) else { continue };
            let (key, value) = (key.trim(), value.trim().to_owned());
            if source.name.is_none() && key.eq_ignore_ascii_case(name_key) && !value.is_empty() {
                source.name = Some(value);
            } else if source.version.is_none() && key.eq_ignore_ascii_case(version_key) && !value.is_empty() {
                source.version = Some(value);
            }
        }
    };
    from_lines("PKG-INFO", "Name", "Version");
    from_lines("setup.cfg", "name", "version");
    if source.name.is_none()
        && let Ok(setup) = fs::read_to_string(dir.join("setup.py"))
    {
        source.name = literal_after(&setup, "name");
        if source.version.is_none() {
            source.version = literal_after(&setup, "version");
        }
    }
    source
}

/// The string literal in `key="value"` / `key = 'value'` inside Python source.
fn literal_after(code: &str, key: &str) -> Option<String> {
    let mut rest = code;
    while let Some(at) = rest.find(key) {
        let before_ok =
            at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric() && rest.as_bytes()[at - 1] != b'_';
        let after = rest[at + key.len()..].trim_start();
        if before_ok && let Some(value) = after.strip_prefix('=') {
            let value = value.trim_start();
            if let Some(q) = value.chars().next().filter(|c| *c == '"' || *c == '\'') {
                let body = &value[1..];
                if let Some(end) = body.find(q) {
                    return Some(body[..end].to_owned());
                }
            }
        }
        rest = &rest[at + key.len()..];
    }
    None
}

/// Builds the culprit for a hook running in `dir`.
pub(crate) fn culprit(hook: &Hook, dir: Option<&Path>, installer: Option<&str>) -> Culprit {
    let source = dir.map(read_source).unwrap_or_default();
    let setuptools = source.backend.as_deref().is_none_or(|b| b.starts_with("setuptools.build_meta"));
    let mut culprit = Culprit {
        hook: hook.name.clone(),
        source_dir: dir.map(Path::to_path_buf),
        backend: source.backend.clone(),
        installer: installer.map(str::to_owned),
        ..Culprit::default()
    };
    if hook.kind == HookKind::LegacySetup || (setuptools && source.has_setup_py) {
        culprit.kind = CulpritKind::Setup;
        culprit.path = hook.setup_py.clone().or_else(|| dir.map(|d| d.join("setup.py")));
    } else {
        culprit.kind = CulpritKind::BuildBackend;
        culprit.path = match (dir, &source.backend) {
            (Some(dir), Some(backend)) => backend_file(dir, &source.backend_path, backend),
            _ => None,
        };
    }
    culprit
}

/// The file of an in-tree backend (`backend-path`), if there is one.
fn backend_file(dir: &Path, backend_path: &[String], backend: &str) -> Option<PathBuf> {
    let module = backend.split(':').next()?.replace('.', "/");
    backend_path.iter().find_map(|p| {
        let base = dir.join(p);
        [base.join(format!("{module}.py")), base.join(&module).join("__init__.py")]
            .into_iter()
            .find(|f| f.is_file())
    })
}

/// Frontends that install through another installer they run: pipx runs pip in the app's venv
/// (`<venv>/bin/python -m pip install ...`), so the hook's nearest installer is pip, but the
/// user ran pipx, and pipx is what the culprit names.
const DRIVERS: &[(&str, &str)] = &[("pipx", "pip")];

/// The installer of a hook whose parent is `ppid` (and whose own pid is `pid`): the nearest
/// installer among the ancestors, or the frontend that drives it (see [`DRIVERS`]). Looks at
/// most 16 ancestors up, through `lineage`.
fn installer_among(pid: u32, ppid: u32, lineage: impl Fn(u32) -> Option<Lineage>) -> Option<&'static str> {
    let mut found: Option<&'static str> = None;
    let mut cursor = ppid;
    for _ in 0..16 {
        if cursor <= 1 || cursor == pid {
            break;
        }
        let Some(up) = lineage(cursor) else { break };
        if let Some(this) = installer_of(&up.argv, up.exe.as_deref()) {
            match found {
                None => found = Some(this),
                Some(nearest) if DRIVERS.contains(&(this, nearest)) => return Some(this),
                Some(_) => {}
            }
            // Only an installer that some frontend drives is worth looking above.
            if !DRIVERS.iter().any(|(_, driven)| Some(*driven) == found) {
                break;
            }
        }
        cursor = up.ppid;
    }
    found
}

/// The daemon's detector: a hook runner with an installer among its ancestors (looked up in
/// the engine's table, else in `/proc`).
pub(crate) fn detector() -> InstallDetector {
    Box::new(|pid: u32, info: &ProcessInfo, known: &dyn Fn(u32) -> Option<Lineage>| {
        let hook = hook_of(&info.argv, info.exe.as_deref())?;
        let installer = installer_among(pid, info.ppid, |p| known(p).or_else(|| Lineage::read(p)));
        // uv's build scripts and hatch's `script.py` are recognised by their shape, so confirm
        // with lineage; pip's hook runners are unambiguous and stay install-time even if pip
        // itself is gone.
        if installer.is_none() && matches!(hook.kind, HookKind::Uv | HookKind::Hatch) {
            return None;
        }
        Some(culprit(&hook, info.cwd.as_deref(), installer))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn recognises_pip_and_uv_hook_runners() {
        let pep517 = argv(&[
            "/v/bin/python",
            "/v/lib/python3.12/site-packages/pip/_vendor/pyproject_hooks/_in_process/_in_process.py",
            "build_wheel",
            "/tmp/tmpab",
        ]);
        assert_eq!(
            hook_of(&pep517, None).unwrap(),
            Hook { kind: HookKind::Pep517, name: Some("build_wheel".into()), setup_py: None }
        );
        let legacy = argv(&[
            "python",
            "-u",
            "-c",
            "exec(compile('''# This is <pip-setuptools-caller>\n...''' % ('/tmp/pip-req/setup.py',), \"<pip-setuptools-caller>\", \"exec\"))",
            "egg_info",
            "--egg-base",
            "/tmp/x",
        ]);
        let hook = hook_of(&legacy, None).unwrap();
        assert_eq!((hook.kind, hook.name.as_deref()), (HookKind::LegacySetup, Some("egg_info")));
        assert_eq!(hook.setup_py, Some(PathBuf::from("/tmp/pip-req/setup.py")));
        let uv = argv(&[
            "/c/builds-v0/.tmpX/bin/python",
            "-c",
            "from setuptools.build_meta import __legacy__ as backend\nbackend.prepare_metadata_for_build_wheel('x')",
        ]);
        // The executable resolves to the base interpreter; argv[0] is the build venv's.
        for exe in ["/c/builds-v0/.tmpX/bin/python", "/root/.pyenv/versions/3.12.1/bin/python3.12"] {
            let hook = hook_of(&uv, Some(Path::new(exe))).unwrap();
            assert_eq!(
                (hook.kind, hook.name.as_deref()),
                (HookKind::Uv, Some("prepare_metadata_for_build_wheel"))
            );
        }
        // Not hooks: ordinary scripts and commands, a uv-like -c outside a uv build venv.
        assert!(hook_of(&argv(&["python", "app.py", "_in_process.py"]), None).is_none());
        assert!(
            hook_of(&argv(&["python", "-c", "import build_meta"]), Some(Path::new("/usr/bin/python")))
                .is_none()
        );
        assert!(hook_of(&argv(&["python", "-m", "pip", "install", "x"]), None).is_none());
        // hatch's copy of `_in_process.py`, run by its runner in the build env.
        let hatch = argv(&[
            "/d/hatch/env/virtual/evil-setup/Xa1/hatch-build/bin/python",
            "/tmp/tmpq1/script.py",
            "get_requires_for_build_wheel",
            "/tmp/tmpq1/control",
        ]);
        assert_eq!(
            hook_of(&hatch, None).unwrap(),
            Hook { kind: HookKind::Hatch, name: Some("get_requires_for_build_wheel".into()), setup_py: None }
        );
        // Not hooks: a script.py without a hook name and a control directory.
        for args in [
            &["python", "/tmp/script.py", "build_wheel", "/tmp/out"][..],
            &["python", "/tmp/script.py", "serve", "/tmp/control"],
            &["python", "script.py"],
            &["python", "app.py", "script.py", "build_wheel", "/x/control"],
        ] {
            assert!(hook_of(&argv(args), None).is_none(), "{args:?}");
        }
    }

    #[test]
    fn recognises_installers() {
        assert_eq!(installer_of(&argv(&["python3", "-m", "pip", "install", "."]), None), Some("pip"));
        assert_eq!(installer_of(&argv(&["/v/bin/python", "/v/bin/pip", "install", "x"]), None), Some("pip"));
        assert_eq!(installer_of(&argv(&["python", "/tmp/pip-23.whl/pip", "install"]), None), Some("pip"));
        assert_eq!(installer_of(&argv(&["py", "/x/pip/__pip-runner__.py", "install"]), None), Some("pip"));
        assert_eq!(
            installer_of(&argv(&["uv", "pip", "install"]), Some(Path::new("/usr/bin/uv"))),
            Some("uv")
        );
        assert_eq!(installer_of(&argv(&["python3", "-m", "build", "--wheel"]), None), Some("build"));
        assert_eq!(
            installer_of(&argv(&["/v/bin/python", "/v/bin/pyproject-build", "."]), None),
            Some("pyproject-build")
        );
        assert_eq!(
            installer_of(&argv(&["/v/bin/python", "/v/bin/pipx", "install", "x"]), None),
            Some("pipx")
        );
        assert_eq!(
            installer_of(&argv(&["/t/bin/python3.11", "/t/bin/hatch", "build", "-t", "wheel"]), None),
            Some("hatch")
        );
        assert_eq!(installer_of(&argv(&["python", "app.py", "pip"]), None), None);
        assert_eq!(installer_of(&argv(&["bash", "-c", "pip install x"]), None), None);
    }

    /// A process table: `(pid, ppid, argv, exe)`.
    fn lineage_of<'a>(table: &'a [(u32, u32, &[&str], &str)]) -> impl Fn(u32) -> Option<Lineage> + 'a {
        move |pid| {
            table.iter().find(|(p, ..)| *p == pid).map(|(_, ppid, args, exe)| Lineage {
                ppid: *ppid,
                exe: Some(PathBuf::from(exe)),
                argv: argv(args),
                argv_truncated: false,
            })
        }
    }

    #[test]
    fn names_the_frontend_among_the_ancestors() {
        let py = "/usr/bin/python3.11";
        let shell: (u32, u32, &[&str], &str) = (10, 1, &["bash"], "/usr/bin/bash");
        // pipx runs pip in the app's venv; pip runs the hook: pipx is named.
        let pipx = [
            shell,
            (20, 10, &["/t/bin/python", "/t/bin/pipx", "install", "./evil-src"], py),
            (30, 20, &["/h/venvs/evil/bin/python", "-m", "pip", "--no-input", "install", "/x"], py),
        ];
        assert_eq!(installer_among(40, 30, lineage_of(&pipx)), Some("pipx"));
        // Through pip's own build-environment child, and pipx's shared venv's pip.
        let pipx_deeper = [
            shell,
            (20, 10, &["/t/bin/python3.11", "/t/bin/pipx", "upgrade", "evil"], py),
            (30, 20, &["/h/shared/bin/python", "-m", "pip", "install", "pip"], py),
            (
                35,
                30,
                &["/h/venvs/evil/bin/python", "/h/shared/lib/python3.11/site-packages/pip", "install"],
                py,
            ),
        ];
        assert_eq!(installer_among(40, 35, lineage_of(&pipx_deeper)), Some("pipx"));
        // pip alone (or under a shell or a CI runner) stays pip.
        let pip = [shell, (30, 10, &["python3", "-m", "pip", "install", "."], py)];
        assert_eq!(installer_among(40, 30, lineage_of(&pip)), Some("pip"));
        // The installers that build without pip are the nearest, whatever is above them.
        for (args, exe, name) in [
            (&["/t/bin/python", "/t/bin/poetry", "install"][..], py, "poetry"),
            (&["/t/bin/python", "/t/bin/pdm", "build"][..], py, "pdm"),
            (&["uv", "sync", "--offline"][..], "/t/bin/uv", "uv"),
            (&["/t/bin/python", "/t/bin/hatch", "build", "-t", "wheel"][..], py, "hatch"),
        ] {
            let table = [
                shell,
                (15, 10, &["/t/bin/python", "/t/bin/pipx", "run", "x"][..], py),
                (20, 15, args, exe),
                (30, 20, &["/tmp/tmpx/.venv/bin/python", "-c", "pass"][..], py),
            ];
            assert_eq!(installer_among(40, 30, lineage_of(&table)), Some(name), "{args:?}");
        }
        // hatch runs its runner script in the build env, and the runner the hook caller.
        let hatch = [
            shell,
            (20, 10, &["/t/bin/python3.11", "/t/bin/hatch", "build", "-t", "wheel"][..], py),
            (30, 20, &["/d/hatch-build/bin/python", "-u", "/d/.scripts/build_wheel.py"][..], py),
        ];
        assert_eq!(installer_among(40, 30, lineage_of(&hatch)), Some("hatch"));
        // No installer, or a lineage that ends (an ancestor gone), or a loop back to the hook.
        assert_eq!(installer_among(40, 10, lineage_of(&[shell])), None);
        assert_eq!(installer_among(40, 99, lineage_of(&pip)), None);
        let looped: [(u32, u32, &[&str], &str); 1] = [(30, 40, &["python3", "x.py"], py)];
        assert_eq!(installer_among(40, 30, lineage_of(&looped)), None);
    }

    #[test]
    fn reads_the_package_being_built() {
        let dir = std::env::temp_dir().join(format!("premain-install-{}", std::process::id()));
        fs::create_dir_all(dir.join("backend")).unwrap();
        fs::write(dir.join("pyproject.toml"), "[project]\nname = \"evil-build\"\nversion = \"1.2\"\n[build-system]\nrequires = []\nbuild-backend = \"mybackend\"\nbackend-path = [\"backend\"]\n").unwrap();
        fs::write(dir.join("backend/mybackend.py"), "").unwrap();
        let hook = Hook { kind: HookKind::Pep517, name: Some("build_wheel".into()), setup_py: None };
        let c = culprit(&hook, Some(&dir), Some("pip"));
        assert_eq!(c.kind, CulpritKind::BuildBackend);
        assert_eq!(c.path, Some(dir.join("backend/mybackend.py")));
        assert_eq!(c.backend.as_deref(), Some("mybackend"));
        let s = read_source(&dir);
        assert_eq!((s.name.as_deref(), s.version.as_deref()), (Some("evil-build"), Some("1.2")));
        fs::remove_file(dir.join("pyproject.toml")).unwrap();
        fs::write(
            dir.join("setup.py"),
            "from setuptools import setup\nsetup(name='evil_setup', version = \"0.1\")\n",
        )
        .unwrap();
        let c = culprit(&hook, Some(&dir), Some("pip"));
        assert_eq!((c.kind, c.path.clone()), (CulpritKind::Setup, Some(dir.join("setup.py"))));
        let s = read_source(&dir);
        assert_eq!((s.name.as_deref(), s.version.as_deref()), (Some("evil_setup"), Some("0.1")));
        fs::remove_dir_all(&dir).unwrap();
    }
}
