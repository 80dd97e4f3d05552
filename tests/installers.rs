//! Every installer: the scenario corpus's `evil-setup` (a `setup.py` that reads `~/.pypirc`) built
//! by the installers tests/scenarios.rs does not run: `uv sync` of a project with it as a path
//! dependency, `poetry install` of such a project and `poetry build` of the tree, `pdm install` and
//! `pdm build` likewise, `pipx install ./evil-setup`, and `hatch build -t wheel` of the tree (hatch
//! as the frontend of a setuptools project). Under each, the read is one alert (per build hook
//! process) in the `install` phase, whose culprit is the `setup.py` of `evil-setup`, a third
//! party's, with `installer` naming the frontend the user ran.
//!
//! Real tools, no network: poetry, pdm, pipx and hatch come from the wheels `cargo xtask setup`
//! downloads with pinned hashes (`tests/requirements-installers.txt`), installed with no index into
//! a venv of Debian's CPython 3.11 in the test's directory (hatch into one of its own: the uv it
//! depends on would make pipx build with uv). Their builds get setuptools and wheel from the pinned
//! wheelhouse: uv with `--offline --no-index --find-links`, pdm from a `find_links` source on that
//! directory, pipx's pip with `PIP_NO_INDEX` and `PIP_FIND_LINKS`, hatch's build environment (made
//! and filled by uv) with `UV_OFFLINE`, `UV_NO_INDEX` and `UV_FIND_LINKS`, and poetry, which reads
//! only index URLs, from a PEP 503 index of that directory served on loopback by the test
//! ([`SimpleIndex`]). Every proxy variable points at a closed loopback port, so a request that
//! tried to leave the machine would fail the install.
//!
//! The projects are built on Debian's CPython 3.11 and pyenv's 3.12 (or `PREMAIN_TEST_PYTHONS`);
//! each test prints which ran.

use std::{
    env,
    io::{ErrorKind, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use integration_tests::{
    Premain, Python, TempDir, cannot_run, clean,
    corpus::{bait_home, compare, on_pythons, repeats, settle, setuptools_links, source_tree, want},
    pythons, tools_dir,
};

/// The CPython the installers run on: the wheels of `tests/requirements-installers.txt` are
/// resolved for 3.11.
const INSTALLERS_PYTHON: &str = "/usr/bin/python3.11";

/// What the tests install with: the installers' venv, and a find-links directory with the
/// pinned setuptools and wheel wheels.
struct Kit {
    dir: TempDir,
    links: PathBuf,
}

impl Kit {
    /// Installs poetry, pdm and pipx from the installers' wheelhouse into a fresh venv; `Err`
    /// says what `cargo xtask setup` has not provided (any other failure panics).
    fn new() -> Result<Self, String> {
        Self::with(&["poetry", "pdm", "pipx"])
    }

    /// Installs `tools` from the installers' wheelhouse into a fresh venv. hatch has one of its
    /// own: it depends on uv, and pipx beside a uv builds with uv instead of pip.
    fn with(tools: &[&str]) -> Result<Self, String> {
        let wheelhouse = tools_dir().join("installers-wheelhouse");
        if !wheelhouse.join("premain-requirements.txt").is_file() {
            return Err(format!("no installers wheelhouse at {} (cargo xtask setup)", wheelhouse.display()));
        }
        let uv = uv()?;
        let dir = TempDir::new("installers");
        let links = setuptools_links(dir.path())
            .ok_or("no setuptools and wheel wheels in the wheelhouse `cargo xtask setup` fills")?;
        let venv = dir.path().join("tools");
        let mut make = clean(INSTALLERS_PYTHON);
        make.args(["-m", "venv", "--without-pip"]).arg(&venv);
        // Setup is there: from here on a failure is the test's, not a skip.
        run_quiet(make, "creating the installers' venv").unwrap_or_else(|e| panic!("{e}"));
        let mut install = clean(&uv);
        install.args(["pip", "install", "--offline", "--no-index", "--quiet", "--python"]);
        install.arg(venv.join("bin/python")).arg("--find-links").arg(&wheelhouse);
        install.args(tools).env("UV_CACHE_DIR", dir.path().join("uv-cache"));
        run_quiet(install, &format!("installing {} from the installers wheelhouse", tools.join(", ")))
            .unwrap_or_else(|e| panic!("{e}"));
        Ok(Self { dir, links })
    }

    /// A program of the installers' venv.
    fn bin(&self, name: &str) -> PathBuf {
        self.dir.path().join("tools/bin").join(name)
    }
}

fn uv() -> Result<PathBuf, String> {
    let uv = tools_dir().join("venv/bin/uv");
    if uv.is_file() { Ok(uv) } else { Err("no uv in the tools venv `cargo xtask setup` fills".into()) }
}

/// Debian's CPython 3.11 and pyenv's newest 3.12, or `PREMAIN_TEST_PYTHONS`.
fn test_pythons() -> Vec<Python> {
    let all = pythons();
    if env::var_os("PREMAIN_TEST_PYTHONS").is_some() {
        return all;
    }
    let debian = all.iter().find(|p| p.label == "system 3.11").cloned();
    let pyenv = all.iter().rev().find(|p| p.label.starts_with("pyenv") && p.version == (3, 12)).cloned();
    debian.into_iter().chain(pyenv).collect()
}

/// `cmd` with the bait HOME, its caches and configuration under `dir`, and no way out: every
/// proxy is a closed loopback port (loopback itself is exempt, for [`SimpleIndex`]).
fn offline(mut cmd: Command, home: &Path, dir: &Path) -> Command {
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if ["UV_", "POETRY_", "PDM_", "PIPX_", "PIP_", "HATCH_", "VIRTUALENV_", "XDG_"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    for key in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        cmd.env(key, "http://127.0.0.1:9");
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    let state = dir.join("state");
    cmd.env("HOME", home)
        .env("XDG_CACHE_HOME", state.join("cache"))
        .env("XDG_CONFIG_HOME", state.join("config"))
        .env("XDG_DATA_HOME", state.join("data"))
        .env("VIRTUALENV_OVERRIDE_APP_DATA", state.join("virtualenv"))
        .env("VIRTUALENV_NO_PERIODIC_UPDATE", "1");
    cmd
}

/// Runs `cmd` to completion; its pid, or its output as the error.
fn run(mut cmd: Command, what: &str) -> Result<u32, String> {
    let child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("{what}: {e}"))?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(pid)
}

fn run_quiet(cmd: Command, what: &str) -> Result<(), String> {
    run(cmd, what).map(drop)
}

/// Where the `setup.py` that ran is: in the tree given, or (an sdist unpacked by the
/// installer) somewhere under a directory.
enum SetupPy<'a> {
    In(&'a Path),
    Under(&'a Path),
}

impl SetupPy<'_> {
    fn matches(&self, path: &str) -> bool {
        match self {
            Self::In(tree) => Path::new(path) == tree.join("setup.py"),
            Self::Under(dir) => Path::new(path).starts_with(dir) && path.ends_with("/setup.py"),
        }
    }
}

/// The alerts of what `root` ran: `evil-setup`'s `setup.py` (at `setup_py`) reading
/// `~/.pypirc`, once per build hook process (installers differ in how many they run), at
/// install time, with `installer`.
fn expect_setup_py(
    premain: &Premain,
    root: u32,
    home: &Path,
    label: &str,
    installer: &str,
    setup_py: SetupPy<'_>,
) -> Result<(), String> {
    let alerts = settle(premain, root, 1);
    let pypirc = home.join(".pypirc").display().to_string();
    let one = want("credential-read", "install", "setup", pypirc).from("evil-setup");
    compare(label, &alerts, vec![one.clone(); repeats(&alerts, &one)])?;
    for a in &alerts {
        let c = &a["culprit"];
        if !setup_py.matches(c["path"].as_str().unwrap_or("")) || c["installer"] != installer {
            return Err(format!("[{label}] culprit (wanted installer {installer}): {c}"));
        }
    }
    Ok(())
}

/// A project that depends on the `evil-setup` source tree beside its pyproject.toml (in
/// `dir/app`), with `pyproject` as that file.
fn project_with_evil_setup(dir: &Path, pyproject: &str) -> PathBuf {
    let app = dir.join("app");
    source_tree("evil-setup", &app);
    std::fs::write(app.join("pyproject.toml"), pyproject).unwrap();
    app
}

/// A copy of `evil-setup` to build as a project of its own: its pyproject.toml with a
/// `[project]` table (poetry and pdm need one) and `tool` (the tool's source of setuptools).
fn evil_setup_project(dir: &Path, tool: &str) -> PathBuf {
    let tree = source_tree("evil-setup", &dir.join("own"));
    let pyproject = format!(
        "[project]\nname = \"evil-setup\"\nversion = \"0.3\"\nrequires-python = \">=3.8\"\n\n\
         [build-system]\nrequires = [\"setuptools\", \"wheel\"]\nbuild-backend = \"setuptools.build_meta\"\n\n{tool}"
    );
    std::fs::write(tree.join("pyproject.toml"), pyproject).unwrap();
    tree
}

/// `uv sync` of a project with `evil-setup` as a path dependency: uv builds it in its build
/// venv, fully offline. Twice: the source tree, and an sdist of it (which uv unpacks into its
/// cache and builds there).
#[test]
fn uv_sync_builds_a_path_dependency_whose_setup_py_steals() {
    let links_dir = TempDir::new("links");
    let (Ok(uv), Some(links)) = (uv(), setuptools_links(links_dir.path())) else {
        return cannot_run("no uv, or no setuptools and wheel wheels, from `cargo xtask setup`");
    };
    on_pythons("uv sync", &test_pythons(), |py, premain, dir| {
        let home = bait_home(dir);
        let cache = dir.join("uv-cache");
        let uv_offline = |project: &Path, command: &str| {
            let mut cmd = offline(clean(&uv), &home, dir);
            cmd.args([command, "--offline", "--no-index", "--find-links"]).arg(&links);
            cmd.current_dir(project).env("UV_CACHE_DIR", &cache).env("UV_PYTHON_DOWNLOADS", "never");
            cmd
        };
        // No build system: virtual projects, of which uv builds only the dependencies.
        let app = |dependency: &str| {
            format!(
                "[project]\nname = \"victim-app\"\nversion = \"0.1\"\nrequires-python = \">=3.8\"\n\
                 dependencies = [\"evil-setup\"]\n\n[tool.uv.sources]\nevil-setup = {{ path = \"{dependency}\" }}\n"
            )
        };
        let tree = project_with_evil_setup(dir, &app("evil-setup"));
        let mut sync = uv_offline(&tree, "sync");
        sync.arg("--python").arg(&py.path);
        let label = format!("{} uv sync (source tree)", py.label);
        let pid = run(sync, &label)?;
        expect_setup_py(premain, pid, &home, &label, "uv", SetupPy::In(&tree.join("evil-setup")))?;
        installed(&tree.join(".venv"), &label)?;

        // The sdist, made by `uv build` (its own alerts are not this run's).
        let sdist_app = dir.join("sdist-app");
        std::fs::create_dir_all(&sdist_app).unwrap();
        let mut sdist = uv_offline(&tree, "build");
        sdist.args(["--sdist", "--python"]).arg(&py.path).arg("--out-dir").arg(&sdist_app).arg("evil-setup");
        run_quiet(sdist, &format!("[{}] uv build --sdist", py.label))?;
        std::fs::write(sdist_app.join("pyproject.toml"), app("evil_setup-0.3.tar.gz")).unwrap();
        let mut sync = uv_offline(&sdist_app, "sync");
        sync.arg("--python").arg(&py.path);
        let label = format!("{} uv sync (sdist)", py.label);
        let pid = run(sync, &label)?;
        expect_setup_py(premain, pid, &home, &label, "uv", SetupPy::Under(&cache))?;
        installed(&sdist_app.join(".venv"), &label)
    });
}

/// Fails unless the venv at `venv` has `evil_setup` installed.
fn installed(venv: &Path, label: &str) -> Result<(), String> {
    let found = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|lib| lib.path().join("site-packages/evil_setup/__init__.py").is_file());
    if found { Ok(()) } else { Err(format!("[{label}] evil_setup is not installed in {}", venv.display())) }
}

/// Poetry's environment for a project: its caches and configuration in `dir`, the project's
/// venv in the project, no keyring, no questions.
fn poetry(kit: &Kit, home: &Path, dir: &Path, project: &Path) -> Command {
    let mut cmd = offline(clean(kit.bin("poetry")), home, dir);
    cmd.current_dir(project)
        .env("POETRY_CACHE_DIR", dir.join("poetry-cache"))
        .env("POETRY_CONFIG_DIR", dir.join("poetry-config"))
        .env("POETRY_DATA_DIR", dir.join("poetry-data"))
        .env("POETRY_VIRTUALENVS_IN_PROJECT", "true")
        .env("POETRY_KEYRING_ENABLED", "false")
        .env("POETRY_NO_INTERACTION", "1");
    cmd
}

/// poetry 2: `poetry install` of a project with `evil-setup` as a path dependency
/// (`develop = false`: built into a wheel), and `poetry build` of the tree itself (a setuptools
/// backend: poetry builds it in an isolated env). Both get setuptools from [`SimpleIndex`].
#[test]
fn poetry_installs_and_builds_a_tree_whose_setup_py_steals() {
    let kit = match Kit::new() {
        Ok(kit) => kit,
        Err(reason) => return cannot_run(&reason),
    };
    let index = SimpleIndex::serve(&kit.links);
    let source = format!(
        "[[tool.poetry.source]]\nname = \"local\"\nurl = \"{}\"\npriority = \"primary\"\n",
        index.url()
    );
    on_pythons("poetry", &test_pythons(), |py, premain, dir| {
        let home = bait_home(dir);
        let app = project_with_evil_setup(
            dir,
            &format!(
                "[project]\nname = \"victim-app\"\nversion = \"0.1\"\nrequires-python = \">=3.8\"\n\n\
                 [tool.poetry]\npackage-mode = false\n\n[tool.poetry.dependencies]\n\
                 evil-setup = {{ path = \"evil-setup\", develop = false }}\n\n{source}"
            ),
        );
        let mut env_use = poetry(&kit, &home, dir, &app);
        env_use.args(["env", "use"]).arg(&py.path);
        run_quiet(env_use, &format!("[{}] poetry env use", py.label))?;
        let mut install = poetry(&kit, &home, dir, &app);
        install.arg("install");
        let label = format!("{} poetry install", py.label);
        let pid = run(install, &label)?;
        expect_setup_py(premain, pid, &home, &label, "poetry", SetupPy::In(&app.join("evil-setup")))?;
        installed(&app.join(".venv"), &label)?;

        let tree = evil_setup_project(dir, &source);
        let mut env_use = poetry(&kit, &home, dir, &tree);
        env_use.args(["env", "use"]).arg(&py.path);
        run_quiet(env_use, &format!("[{}] poetry env use (build)", py.label))?;
        let mut build = poetry(&kit, &home, dir, &tree);
        build.args(["build", "--format", "wheel", "--output"]).arg(dir.join("dist"));
        let label = format!("{} poetry build", py.label);
        let pid = run(build, &label)?;
        expect_setup_py(premain, pid, &home, &label, "poetry", SetupPy::In(&tree))?;
        built(&dir.join("dist"), &label)
    });
}

/// Fails unless `dist` has a wheel of `evil-setup`.
fn built(dist: &Path, label: &str) -> Result<(), String> {
    let found = std::fs::read_dir(dist)
        .into_iter()
        .flatten()
        .flatten()
        .any(|f| f.file_name().to_string_lossy().starts_with("evil_setup-0.3-"));
    if found { Ok(()) } else { Err(format!("[{label}] no evil_setup wheel in {}", dist.display())) }
}

/// pdm's environment for a project: caches and configuration in `dir`, no update check.
fn pdm(kit: &Kit, home: &Path, dir: &Path, project: &Path) -> Command {
    let mut cmd = offline(clean(kit.bin("pdm")), home, dir);
    cmd.current_dir(project)
        .env("PDM_CACHE_DIR", dir.join("pdm-cache"))
        .env("PDM_CONFIG_FILE", dir.join("pdm-config.toml"))
        .env("PDM_CHECK_UPDATE", "false")
        .env("PDM_NON_INTERACTIVE", "1");
    cmd
}

/// pdm: `pdm install` of a project with `evil-setup` as a `file:///${PROJECT_ROOT}` dependency,
/// and `pdm build` of the tree. The source named `pypi` replaces the index: a `find_links`
/// source on the directory of setuptools and wheel.
#[test]
fn pdm_installs_and_builds_a_tree_whose_setup_py_steals() {
    let kit = match Kit::new() {
        Ok(kit) => kit,
        Err(reason) => return cannot_run(&reason),
    };
    let source = format!(
        "[[tool.pdm.source]]\nname = \"pypi\"\nurl = \"file://{}\"\ntype = \"find_links\"\n",
        kit.links.display()
    );
    on_pythons("pdm", &test_pythons(), |py, premain, dir| {
        let home = bait_home(dir);
        let app = project_with_evil_setup(
            dir,
            &format!(
                "[project]\nname = \"victim-app\"\nversion = \"0.1\"\nrequires-python = \">=3.8\"\n\
                 dependencies = [\"evil-setup @ file:///${{PROJECT_ROOT}}/evil-setup\"]\n\n\
                 [tool.pdm]\ndistribution = false\n\n{source}"
            ),
        );
        let mut use_python = pdm(&kit, &home, dir, &app);
        use_python.args(["use", "-f"]).arg(&py.path);
        run_quiet(use_python, &format!("[{}] pdm use", py.label))?;
        let mut install = pdm(&kit, &home, dir, &app);
        install.arg("install");
        let label = format!("{} pdm install", py.label);
        let pid = run(install, &label)?;
        expect_setup_py(premain, pid, &home, &label, "pdm", SetupPy::In(&app.join("evil-setup")))?;
        installed(&app.join(".venv"), &label)?;

        let tree = evil_setup_project(dir, &source);
        let mut use_python = pdm(&kit, &home, dir, &tree);
        use_python.args(["use", "-f"]).arg(&py.path);
        run_quiet(use_python, &format!("[{}] pdm use (build)", py.label))?;
        let mut build = pdm(&kit, &home, dir, &tree);
        build.args(["build", "--no-sdist", "--dest"]).arg(dir.join("dist"));
        let label = format!("{} pdm build", py.label);
        let pid = run(build, &label)?;
        expect_setup_py(premain, pid, &home, &label, "pdm", SetupPy::In(&tree))?;
        built(&dir.join("dist"), &label)
    });
}

/// `pipx install ./evil-setup`: pipx runs pip in the app's venv, and pip runs the hooks; the
/// culprit names pipx. pipx wants an app, so the copy gets a console script (in a `setup.cfg`,
/// beside the corpus's `setup.py`). pipx's shared venv takes pip from the installers
/// wheelhouse, the builds setuptools and wheel from theirs.
#[test]
fn pipx_installs_a_tree_whose_setup_py_steals() {
    let kit = match Kit::new() {
        Ok(kit) => kit,
        Err(reason) => return cannot_run(&reason),
    };
    let wheelhouse = tools_dir().join("installers-wheelhouse");
    let find_links = format!("{} {}", kit.links.display(), wheelhouse.display());
    on_pythons("pipx", &test_pythons(), |py, premain, dir| {
        let home = bait_home(dir);
        let tree = source_tree("evil-setup", dir);
        std::fs::write(
            tree.join("setup.cfg"),
            "[options.entry_points]\nconsole_scripts =\n    evil-setup = evil_setup:main\n",
        )
        .unwrap();
        let mut install = offline(clean(kit.bin("pipx")), &home, dir);
        install.args(["install", "--python"]).arg(&py.path).arg("./evil-setup").current_dir(dir);
        install
            .env("PIPX_HOME", dir.join("pipx"))
            .env("PIPX_BIN_DIR", dir.join("pipx-bin"))
            .env("PIPX_MAN_DIR", dir.join("pipx-man"))
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", &find_links);
        let label = format!("{} pipx install", py.label);
        let pid = run(install, &label)?;
        expect_setup_py(premain, pid, &home, &label, "pipx", SetupPy::In(&tree))?;
        installed(&dir.join("pipx/venvs/evil-setup"), &label)?;
        if !dir.join("pipx-bin/evil-setup").exists() {
            return Err(format!("[{label}] pipx installed no evil-setup app"));
        }
        Ok(())
    });
}

/// hatch: `hatch build -t wheel` of the tree, whose build backend is setuptools: hatch makes its
/// `hatch-build` environment on the Python of `HATCH_PYTHON` with uv, installs the
/// build-system's requirements into it, then runs the backend's hooks there (through a copy of
/// pyproject_hooks' `_in_process.py`, its `script.py`). uv gets setuptools and wheel from their
/// directory with no index; hatch's data, cache and configuration (`XDG_CONFIG_HOME`) are the
/// test's.
#[test]
fn hatch_builds_a_tree_whose_setup_py_steals() {
    let kit = match Kit::with(&["hatch"]) {
        Ok(kit) => kit,
        Err(reason) => return cannot_run(&reason),
    };
    on_pythons("hatch", &test_pythons(), |py, premain, dir| {
        let home = bait_home(dir);
        let tree = evil_setup_project(dir, "");
        let mut build = offline(clean(kit.bin("hatch")), &home, dir);
        build.args(["build", "-t", "wheel"]).arg(dir.join("dist")).current_dir(&tree);
        build
            .env("HATCH_PYTHON", &py.path)
            .env("HATCH_DATA_DIR", dir.join("hatch-data"))
            .env("HATCH_CACHE_DIR", dir.join("hatch-cache"))
            .env("HATCH_INTERACTIVE", "false")
            .env("UV_CACHE_DIR", dir.join("uv-cache"))
            .env("UV_OFFLINE", "1")
            .env("UV_NO_INDEX", "1")
            .env("UV_FIND_LINKS", &kit.links)
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", &kit.links);
        let label = format!("{} hatch build", py.label);
        let pid = run(build, &label)?;
        expect_setup_py(premain, pid, &home, &label, "hatch", SetupPy::In(&tree))?;
        built(&dir.join("dist"), &label)
    });
}

/// A PEP 503 simple index of the wheels in a directory, on loopback (poetry reads packages only
/// from index URLs): `/simple/<project>/` lists the project's files, `/files/<name>` serves
/// one. Stops when dropped.
struct SimpleIndex {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SimpleIndex {
    fn serve(dir: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the simple index");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let dir = dir.to_path_buf();
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let dir = dir.clone();
                        thread::spawn(move || answer(conn, &dir));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { port, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple/", self.port)
    }
}

impl Drop for SimpleIndex {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A project name as PEP 503 compares them.
fn normalized(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if matches!(c, '-' | '_' | '.') { '-' } else { c.to_ascii_lowercase() };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

fn answer(mut conn: TcpStream, dir: &Path) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let wheels: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".whl"))
        .collect();
    let (status, kind, body) = if let Some(project) = path.strip_prefix("/simple/") {
        let project = normalized(project.trim_end_matches('/'));
        let files: Vec<&String> =
            wheels.iter().filter(|f| normalized(f.split('-').next().unwrap_or("")) == project).collect();
        if files.is_empty() {
            ("404 Not Found", "text/plain", b"not found\n".to_vec())
        } else {
            let links: String =
                files.iter().map(|f| format!("<a href=\"/files/{f}\">{f}</a><br>\n")).collect();
            let page = format!("<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n");
            ("200 OK", "text/html", page.into_bytes())
        }
    } else if let Some(file) = path.strip_prefix("/files/").filter(|f| wheels.iter().any(|w| w == f)) {
        match std::fs::read(dir.join(file)) {
            Ok(bytes) => ("200 OK", "application/octet-stream", bytes),
            Err(_) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        }
    } else {
        ("404 Not Found", "text/plain", b"not found\n".to_vec())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = conn.write_all(&body);
    }
}

/// pip's legacy path: a tree with no pyproject.toml, `--no-use-pep517 --no-build-isolation`,
/// where pip runs `setup.py` itself through its `<pip-setuptools-caller>` (`egg_info`, then
/// `bdist_wheel`) in the target environment, which has setuptools and wheel.
#[test]
fn pip_legacy_runs_a_setup_py_that_steals() {
    let links_dir = TempDir::new("legacy-links");
    let Some(links) = setuptools_links(links_dir.path()) else {
        return cannot_run("no setuptools and wheel wheels in the wheelhouse `cargo xtask setup` fills");
    };
    on_pythons("pip legacy", &test_pythons(), |py, premain, dir| {
        let home = bait_home(dir);
        let tree = source_tree("evil-setup", dir);
        std::fs::remove_file(tree.join("pyproject.toml")).unwrap();
        let venv = dir.join("venv");
        let mut make = clean(&py.path);
        make.args(["-m", "venv", "--without-pip"]).arg(&venv);
        run_quiet(make, &format!("[{}] venv", py.label))?;
        let target = venv.join("bin/python");
        let pip = |args: &[&str]| {
            let mut cmd = offline(clean(&py.path), &home, dir);
            cmd.args(["-m", "pip", "--python"]).arg(&target).args(["install", "--no-index", "-q"]);
            cmd.arg("--find-links").arg(&links).args(args);
            cmd
        };
        run_quiet(pip(&["setuptools", "wheel"]), &format!("[{}] setuptools into the venv", py.label))?;
        let mut legacy = pip(&["--no-use-pep517", "--no-build-isolation"]);
        legacy.arg(&tree);
        let label = format!("{} pip --no-use-pep517", py.label);
        let pid = run(legacy, &label)?;
        expect_setup_py(premain, pid, &home, &label, "pip", SetupPy::In(&tree))?;
        installed(&venv, &label)
    });
}
