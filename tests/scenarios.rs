//! The scenario corpus: real packages (tests/scenarios/packages) built locally and installed
//! with real pip (no index, no network) into fresh venvs, run on every CPython present, with
//! bait credentials in a temporary HOME and a loopback listener as the sink. Each scenario
//! lists the exact alerts it expects; a missing, extra or mis-phased alert fails it.
//!
//! Venvs are created with `--copies`, so each run starts an interpreter binary premain has
//! never seen (a fresh inode; for the static Debian build, a fresh image to probe).

use std::{
    collections::BTreeMap,
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    Premain, Python, Sink, TempDir, checked, clean,
    corpus::{
        bait_home, compare, got, on_pythons, on_pythons_under, os, repeats, settle, setuptools_links,
        source_tree, want,
    },
    pythons,
};

/// Wheels of the scenario packages, built once per test binary with real pip.
fn wheels() -> &'static Path {
    static WHEELS: OnceLock<PathBuf> = OnceLock::new();
    WHEELS.get_or_init(|| {
        let dir = env::temp_dir().join(format!("premain-wheels-{}", std::process::id()));
        let src = dir.join("src");
        let out = dir.join("wheels");
        fs::create_dir_all(&out).unwrap();
        let builder = pythons().into_iter().next().expect("a CPython 3.8+ to build the scenario wheels");
        let mut cmd = clean(&builder.path);
        cmd.args(["-m", "pip", "wheel", "--no-index", "--no-deps", "-q", "-w"]).arg(&out);
        for name in
            ["evil-pth", "paths-only", "evil-detach", "evil-site", "evil-import", "evil-thread", "benign-lib"]
        {
            cmd.arg(source_tree(name, &src));
        }
        checked(&mut cmd, "building the scenario wheels");
        out
    })
}

/// A venv whose interpreter is a fresh copy; returns its python.
fn venv(py: &Python, dir: &Path) -> PathBuf {
    checked(
        clean(&py.path).args(["-m", "venv", "--without-pip", "--copies"]).arg(dir),
        &format!("[{}] python -m venv", py.label),
    );
    dir.join("bin/python")
}

/// `pip install` with `py`'s own pip into the environment of `target`.
fn pip_install(py: &Python, target: &Path, home: &Path, args: &[&OsStr]) {
    let mut cmd = clean(&py.path);
    cmd.args(["-m", "pip", "--python"]).arg(target).args(["install", "--no-index", "-q"]);
    cmd.args(args).env("HOME", home);
    checked(&mut cmd, &format!("[{}] pip install {args:?}", py.label));
}

/// A scenario's world: a bait HOME, a loopback sink and a fresh `--copies` venv with the
/// scenario's distributions installed by pip.
struct Stage {
    home: PathBuf,
    sink: Sink,
    python: PathBuf,
    site: PathBuf,
}

impl Stage {
    fn new(py: &Python, dir: &Path, dists: &[&str]) -> Self {
        let home = bait_home(dir);
        let python = venv(py, &dir.join("venv"));
        if !dists.is_empty() {
            let wheels: Vec<PathBuf> = dists.iter().map(|d| wheel_of(d)).collect();
            let args: Vec<&OsStr> = wheels.iter().map(|w| w.as_os_str()).collect();
            pip_install(py, &python, &home, &args);
        }
        let site = fs::read_dir(dir.join("venv/lib"))
            .ok()
            .and_then(|mut libs| libs.next())
            .and_then(Result::ok)
            .map(|lib| lib.path().join("site-packages"))
            .expect("the venv has a site-packages");
        Self { home, sink: Sink::start(), python, site }
    }

    /// A bait file, as alerts name it.
    fn bait(&self, rel: &str) -> String {
        self.home.join(rel).display().to_string()
    }

    /// Runs `python` to completion with the bait HOME and the sink's port; returns its pid.
    fn run(
        &self,
        python: &Path,
        args: &[&OsStr],
        cwd: &Path,
        extra: &[(&str, &OsStr)],
    ) -> Result<u32, String> {
        let mut cmd = clean(python);
        cmd.args(args).current_dir(cwd).env("HOME", &self.home);
        cmd.env("PREMAIN_SINK_PORT", self.sink.port.to_string()).envs(extra.iter().copied());
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn scenario");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait scenario");
        if !out.status.success() {
            return Err(format!("{python:?} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(pid)
    }
}

/// `pip install` of source trees (a build), as a process whose alerts the caller collects.
fn pip_build(
    py: &Python,
    target: &Path,
    home: &Path,
    args: &[&OsStr],
    env: &[(&str, &str)],
) -> Result<u32, String> {
    let mut cmd = clean(&py.path);
    cmd.args(["-m", "pip", "--python"]).arg(target).args(["install", "--no-index", "-q"]).args(args);
    cmd.env("HOME", home).envs(env.iter().copied());
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("[{}] pip install failed: {}", py.label, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(pid)
}

fn wheel_of(dist: &str) -> PathBuf {
    let prefix = format!("{}-", dist.replace('-', "_"));
    fs::read_dir(wheels())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
        .unwrap_or_else(|| panic!("no wheel for {dist}"))
}

/// Runs `scenario` on every CPython, reporting every failure at the end.
fn on_every_python(name: &str, scenario: impl FnMut(&Python, &Premain, &Path) -> Result<(), String>) {
    wheels();
    on_pythons(name, &pythons(), scenario);
}

/// [`on_every_python`] with more arguments to `premain run`.
fn on_every_python_under(
    name: &str,
    args: &[&str],
    scenario: impl FnMut(&Python, &Premain, &Path) -> Result<(), String>,
) {
    wheels();
    on_pythons_under(name, &pythons(), args, scenario);
}

fn user_site(home: &Path, py: &Python) -> PathBuf {
    home.join(format!(".local/lib/python{}.{}/site-packages", py.version.0, py.version.1))
}

#[test]
fn pth_reads_credentials_and_connects_at_startup() {
    on_every_python("pth", |py, premain, dir| {
        let stage = Stage::new(py, dir, &["evil-pth", "paths-only"]);
        let script = dir.join("app.py");
        fs::write(&script, "print('hello')\n").unwrap();
        let expect = || {
            vec![
                want("credential-read", "startup", "pth", stage.bait(".aws/credentials")).from("evil-pth"),
                want("network-connect", "startup", "pth", stage.sink.addr()).from("evil-pth"),
            ]
        };
        let modes: [&[&OsStr]; 3] =
            [&[os("-c"), os("pass")], &[script.as_os_str()], &[os("-m"), os("platform")]];
        for args in modes {
            let pid = stage.run(&stage.python, args, dir, &[])?;
            let alerts = settle(premain, pid, 2);
            compare(&format!("{} venv {args:?}", py.label), &alerts, expect())?;
            for a in &alerts {
                let path = a["culprit"]["path"].as_str().unwrap_or("");
                if !path.ends_with("/aaa_evil_pth.pth") || a["culprit"]["module"] != "evil_pth_payload" {
                    return Err(format!("[{}] wrong culprit: {}", py.label, a["culprit"]));
                }
            }
        }
        // Out of a venv: the user site of the base interpreter, installed there by pip.
        let user = user_site(&stage.home, py);
        let mut cmd = clean(&py.path);
        cmd.args(["-m", "pip", "install", "--no-index", "-q", "--target"])
            .arg(&user)
            .arg(wheel_of("evil-pth"));
        checked(cmd.env("HOME", &stage.home), &format!("[{}] pip install --target", py.label));
        let pid = stage.run(&py.path, &[os("-c"), os("pass")], dir, &[])?;
        compare(&format!("{} user site", py.label), &settle(premain, pid, 2), expect())
    });
}

#[test]
fn pth_detached_child_acts_after_its_parent_exited() {
    on_every_python("detach", |py, premain, dir| {
        let stage = Stage::new(py, dir, &["evil-detach"]);
        let done = dir.join("done");
        let pid =
            stage.run(&stage.python, &[os("-c"), os("pass")], dir, &[("PREMAIN_DONE", done.as_os_str())])?;
        let parent_gone = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if !done.exists() {
            return Err(format!("[{}] the detached child never finished", py.label));
        }
        if parent_gone.elapsed() < Duration::from_millis(500) {
            return Err(format!("[{}] the child acted too early to prove anything", py.label));
        }
        let alerts = settle(premain, pid, 3);
        compare(
            &py.label,
            &alerts,
            vec![
                want("program-exec", "startup", "pth", stage.python.display().to_string())
                    .from("evil-detach")
                    .inherited(),
                want("credential-read", "startup", "pth", stage.bait(".ssh/id_ed25519"))
                    .from("evil-detach")
                    .inherited(),
                want("network-connect", "startup", "pth", stage.sink.addr()).from("evil-detach").inherited(),
            ],
        )?;
        let origin = alerts.iter().map(|a| &a["inherited_from"]["pid"]).collect::<Vec<_>>();
        if origin.iter().any(|p| **p != pid) {
            return Err(format!("[{}] taint should come from {pid}: {origin:?}", py.label));
        }
        Ok(())
    });
}

#[test]
fn sitecustomize_runs_curl() {
    let curl = PathBuf::from("/usr/bin/curl");
    assert!(curl.exists(), "this scenario needs curl at /usr/bin/curl (cargo xtask setup installs it)");
    on_every_python("sitecustomize", |py, premain, dir| {
        let stage = Stage::new(py, dir, &["evil-site"]);
        // On PYTHONPATH, as pip's build environments do: a distribution's own sitecustomize
        // (Debian's) would otherwise shadow the one in site-packages.
        let pythonpath = [("PYTHONPATH", stage.site.as_os_str())];
        let pid = stage.run(&stage.python, &[os("-c"), os("pass")], dir, &pythonpath)?;
        let alerts = settle(premain, pid, 2);
        compare(
            &py.label,
            &alerts,
            vec![
                want("program-exec", "startup", "sitecustomize", "/usr/bin/curl")
                    .from("evil-site")
                    .inherited(),
                want("network-connect", "startup", "sitecustomize", stage.sink.addr())
                    .from("evil-site")
                    .inherited(),
            ],
        )
    });
}

const APP: &str = "\
import os
import evil_import, evil_thread, benign_lib
def main():
    benign_lib.read_aws()
    from benign_lib import lazy
    lazy.phone_home(int(os.environ['PREMAIN_SINK_PORT']))
    open(os.environ['PREMAIN_FLAG'], 'w').close()
main()
";

#[test]
fn import_time_code_and_benign_controls() {
    on_every_python("import", |py, premain, dir| {
        let stage = Stage::new(py, dir, &["evil-import", "evil-thread", "benign-lib"]);
        let app = dir.join("app");
        fs::create_dir_all(app.join("app_pkg")).unwrap();
        fs::write(app.join("app_main.py"), APP).unwrap();
        fs::write(app.join("app_pkg/__init__.py"), "").unwrap();
        fs::write(app.join("app_pkg/__main__.py"), APP).unwrap();
        let sink = &stage.sink;
        let expected = || {
            vec![
                want("credential-read", "import", "module", stage.bait(".netrc")).from("evil-import"),
                want("network-connect", "import", "module", sink.addr()).from("evil-import"),
                want("network-send", "import", "module", sink.addr()).from("evil-import"),
                want("network-send", "import", "module", format!("127.0.0.2:{}", sink.port))
                    .from("evil-import"),
                want("credential-read", "import", "module", stage.bait(".kube/config"))
                    .from("evil-thread")
                    .inherited(),
            ]
        };
        struct Run<'a> {
            label: &'static str,
            exe: &'a Path,
            args: Vec<&'a OsStr>,
            env: Vec<(&'static str, &'a OsStr)>,
        }
        let runs = [
            Run { label: "venv file", exe: &stage.python, args: vec![os("app_main.py")], env: vec![] },
            Run { label: "venv -m", exe: &stage.python, args: vec![os("-m"), os("app_pkg")], env: vec![] },
            Run { label: "venv -c", exe: &stage.python, args: vec![os("-c"), os(APP)], env: vec![] },
            Run {
                label: "no venv file",
                exe: &py.path,
                args: vec![os("app_main.py")],
                env: vec![("PYTHONPATH", stage.site.as_os_str())],
            },
        ];
        for (i, Run { label, exe, args, env: extra }) in runs.into_iter().enumerate() {
            let flag = dir.join(format!("flag{i}"));
            let mut env: Vec<(&str, &OsStr)> = vec![("PREMAIN_FLAG", flag.as_os_str())];
            env.extend(extra);
            let pid = stage.run(exe, &args, &app, &env)?;
            let alerts = settle(premain, pid, 5);
            compare(&format!("{} {label}", py.label), &alerts, expected())?;
            let modules: BTreeMap<String, String> = alerts
                .iter()
                .map(|a| (a["action"]["type"].to_string(), a["culprit"]["module"].to_string()))
                .collect();
            if alerts.iter().any(|a| !a["culprit"]["module"].as_str().is_some_and(|m| m.starts_with("evil_")))
            {
                return Err(format!("[{} {label}] culprit modules: {modules:?}", py.label));
            }
        }
        Ok(())
    });
}

#[test]
fn setup_py_reads_credentials_during_pip_install() {
    let links_dir = TempDir::new("links");
    let Some(links) = setuptools_links(links_dir.path()) else {
        return integration_tests::cannot_run(
            "no setuptools and wheel wheels in the wheelhouse `cargo xtask setup` fills",
        );
    };
    on_every_python("setup.py", |py, premain, dir| {
        let stage = Stage::new(py, dir, &[]);
        let src = source_tree("evil-setup", dir);
        let args = [os("--find-links"), links.as_os_str(), src.as_os_str()];
        let pid = pip_build(py, &stage.python, &stage.home, &args, &[])?;
        let alerts = settle(premain, pid, 1);
        // setup.py runs once per build hook process; pip versions differ in how many.
        let one = want("credential-read", "install", "setup", stage.bait(".pypirc")).from("evil-setup");
        compare(&py.label, &alerts, vec![one.clone(); repeats(&alerts, &one)])?;
        for a in &alerts {
            let c = &a["culprit"];
            if !c["path"].as_str().unwrap_or("").ends_with("setup.py") || c["installer"] != "pip" {
                return Err(format!("[{}] culprit: {c}", py.label));
            }
        }
        Ok(())
    });
}

/// The same package installed by uv (`uv pip install`): its build scripts run the build venv's
/// `python` (a symlink to the base interpreter) with `-c`, and setuptools runs `setup.py` with
/// `exec`; every build process is `install`, with uv as the installer.
#[test]
fn setup_py_reads_credentials_during_uv_install() {
    let links_dir = TempDir::new("links");
    let Some(links) = setuptools_links(links_dir.path()) else {
        return integration_tests::cannot_run(
            "no setuptools and wheel wheels in the wheelhouse `cargo xtask setup` fills",
        );
    };
    let uv = integration_tests::tools_dir().join("venv/bin/uv");
    if !uv.is_file() {
        return integration_tests::cannot_run("no uv in the tools venv `cargo xtask setup` fills");
    }
    on_every_python("setup.py under uv", |py, premain, dir| {
        let stage = Stage::new(py, dir, &[]);
        let src = source_tree("evil-setup", dir);
        let mut cmd = clean(&uv);
        cmd.args(["pip", "install", "--no-index", "--quiet", "--python"]).arg(&stage.python);
        cmd.arg("--find-links").arg(&links).arg(&src);
        cmd.env("HOME", &stage.home).env("UV_CACHE_DIR", dir.join("uv-cache")).env_remove("UV_INDEX_URL");
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
        let pid = child.id();
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "[{}] uv pip install failed: {}",
                py.label,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let alerts = settle(premain, pid, 1);
        let one = want("credential-read", "install", "setup", stage.bait(".pypirc")).from("evil-setup");
        compare(&py.label, &alerts, vec![one.clone(); repeats(&alerts, &one)])?;
        for a in &alerts {
            let c = &a["culprit"];
            if !c["path"].as_str().unwrap_or("").ends_with("setup.py") || c["installer"] != "uv" {
                return Err(format!("[{}] culprit: {c}", py.label));
            }
        }
        Ok(())
    });
}

/// The build frontends that are not installers: `python -m build` (pyproject-hooks in an
/// isolated env of its own) and `uv build` (uv's build venv). The project's `setup.py` is
/// install-time code under each, named with the frontend.
#[test]
fn setup_py_reads_credentials_under_every_build_frontend() {
    let links_dir = TempDir::new("links");
    let Some(links) = setuptools_links(links_dir.path()) else {
        return integration_tests::cannot_run(
            "no setuptools and wheel wheels in the wheelhouse `cargo xtask setup` fills",
        );
    };
    let wheelhouse = integration_tests::tools_dir().join("wheelhouse");
    let uv = integration_tests::tools_dir().join("venv/bin/uv");
    if !uv.is_file() {
        return integration_tests::cannot_run("no uv in the tools venv `cargo xtask setup` fills");
    }
    on_every_python("setup.py under build frontends", |py, premain, dir| {
        let stage = Stage::new(py, dir, &[]);
        // The stage's venv has no pip: uv installs build into it.
        let mut install = clean(&uv);
        install.args(["pip", "install", "--no-index", "--quiet", "--python"]).arg(&stage.python);
        install.arg("--find-links").arg(&wheelhouse).arg("build");
        install.env("UV_CACHE_DIR", dir.join("uv-cache")).env_remove("UV_INDEX_URL");
        checked(&mut install, "installing build from the wheelhouse");
        let src = source_tree("evil-setup", dir);
        let out = dir.join("dist");
        let mut build = clean(&stage.python);
        build.args(["-m", "build", "--wheel", "--outdir"]).arg(&out).arg(&src);
        // Its isolated env gets setuptools from the links, as pip's would.
        build.env("PIP_NO_INDEX", "1").env("PIP_FIND_LINKS", &links);
        let mut uv_build = clean(&uv);
        uv_build.args(["build", "--wheel", "--no-index", "--python"]).arg(&stage.python);
        uv_build.arg("--find-links").arg(&links).arg("--out-dir").arg(&out).arg(&src);
        uv_build.env("UV_CACHE_DIR", dir.join("uv-cache")).env_remove("UV_INDEX_URL");
        for (frontend, mut cmd) in [("build", build), ("uv", uv_build)] {
            cmd.env("HOME", &stage.home).stdout(Stdio::null()).stderr(Stdio::piped());
            let child = cmd.spawn().map_err(|e| e.to_string())?;
            let pid = child.id();
            let done = child.wait_with_output().map_err(|e| e.to_string())?;
            if !done.status.success() {
                return Err(format!(
                    "[{}] {frontend} failed: {}",
                    py.label,
                    String::from_utf8_lossy(&done.stderr)
                ));
            }
            let alerts = settle(premain, pid, 1);
            let one = want("credential-read", "install", "setup", stage.bait(".pypirc")).from("evil-setup");
            compare(&format!("{} {frontend}", py.label), &alerts, vec![one.clone(); repeats(&alerts, &one)])?;
            for a in &alerts {
                let c = &a["culprit"];
                if c["installer"] != frontend || c["party"] != "third-party" {
                    return Err(format!("[{}] {frontend}: culprit {c}", py.label));
                }
            }
        }
        Ok(())
    });
}

#[test]
fn in_tree_backend_connects_during_its_hook() {
    let uv = integration_tests::tools_dir().join("venv/bin/uv");
    if !uv.is_file() {
        return integration_tests::cannot_run("no uv in the tools venv `cargo xtask setup` fills");
    }
    on_every_python("backend", |py, premain, dir| {
        let stage = Stage::new(py, dir, &[]);
        let port = stage.sink.port.to_string();
        let env = [("PREMAIN_SINK_PORT", port.as_str())];
        for installer in ["pip", "uv"] {
            // A copy of the tree per installer: neither builds in what the other left.
            let src = source_tree("evil-backend", &dir.join(installer));
            let pid = if installer == "pip" {
                pip_build(py, &stage.python, &stage.home, &[src.as_os_str()], &env)?
            } else {
                let mut cmd = clean(&uv);
                cmd.args(["pip", "install", "--no-index", "--quiet", "--python"])
                    .arg(&stage.python)
                    .arg(&src);
                cmd.env("HOME", &stage.home).envs(env).env("UV_CACHE_DIR", dir.join("uv-cache"));
                let child =
                    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
                let pid = child.id();
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!("[{}] uv: {}", py.label, String::from_utf8_lossy(&out.stderr)));
                }
                pid
            };
            let alerts = settle(premain, pid, 1);
            let one =
                want("network-connect", "install", "build-backend", stage.sink.addr()).from("evil-backend");
            compare(
                &format!("{} {installer}", py.label),
                &alerts,
                vec![one.clone(); repeats(&alerts, &one)],
            )?;
            for a in &alerts {
                let c = &a["culprit"];
                if c["backend"] != "evil_backend_impl"
                    || !c["path"].as_str().unwrap_or("").ends_with("evil_backend_impl.py")
                    || c["installer"] != installer
                {
                    return Err(format!("[{}] {installer}: culprit {c}", py.label));
                }
            }
        }
        Ok(())
    });
}

/// What a scenario's payloads noted they got (`$PREMAIN_RESULT`), sorted.
fn results(file: &Path) -> Vec<String> {
    let mut lines: Vec<String> =
        fs::read_to_string(file).unwrap_or_default().lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// An alert acted on: (interpreter, rule, phase, culprit kind, target).
type Decided = (String, String, String, String, String);

/// The corpus's start-up, import and install payloads under `--mode enforce`: no credential
/// byte reaches them and nothing of theirs reaches the listener, each open, connect and send
/// failing with `EPERM` (the payloads' own notes say so), the application's main and its
/// runtime reads and connects go on to exit 0, and each alert says what was done. Under `--mode dry-run` nothing is denied, and the alerts that say
/// `would-deny` are exactly those enforce denied. pip, whose `setup.py` dies of the denial,
/// fails the install.
#[test]
fn enforce_denies_the_corpus_its_credentials_and_connections_and_dry_run_names_the_same_set() {
    let links_dir = TempDir::new("links");
    let Some(links) = setuptools_links(links_dir.path()) else {
        return integration_tests::cannot_run(
            "no setuptools and wheel wheels in the wheelhouse `cargo xtask setup` fills",
        );
    };
    // (interpreter, rule, phase, culprit kind, target) of the alerts enforce denied and of
    // those a dry run would have denied.
    let mut decided: BTreeMap<&str, Vec<Decided>> = BTreeMap::new();
    for (mode, outcome) in [("enforce", "denied"), ("dry-run", "would-deny")] {
        let mut noted = Vec::new();
        on_every_python_under(&format!("corpus under {mode}"), &["--mode", mode], |py, premain, dir| {
            let stage = Stage::new(py, dir, &["evil-pth", "evil-import", "evil-thread", "benign-lib"]);
            let app = dir.join("app");
            fs::create_dir_all(&app).unwrap();
            fs::write(app.join("app_main.py"), APP).unwrap();
            let (flag, result) = (dir.join("flag"), dir.join("result"));
            let env = [("PREMAIN_FLAG", flag.as_os_str()), ("PREMAIN_RESULT", result.as_os_str())];
            // Exit 0, and main's own last line (after its runtime read and connect) ran.
            let pid = stage.run(&stage.python, &[os("app_main.py")], &app, &env)?;
            if !flag.exists() {
                return Err(format!("[{}] main did not run to its end", py.label));
            }
            let payloads = results(&result);
            let noted_want: Vec<String> = if mode == "enforce" {
                let mut lines = vec![
                    "connect failed errno 1",
                    "connect failed errno 1",
                    "denied .aws/credentials errno 1",
                    "denied .kube/config errno 1",
                    "denied .netrc errno 1",
                    "send again failed errno 1",
                    "send failed errno 1",
                ];
                lines.sort();
                lines.into_iter().map(String::from).collect()
            } else {
                let size = |f: &str| fs::metadata(stage.home.join(f)).unwrap().len();
                let mut lines = vec![
                    "connected".to_owned(),
                    "connected".to_owned(),
                    format!("read .aws/credentials {} bytes", size(".aws/credentials")),
                    format!("read .kube/config {} bytes", size(".kube/config")),
                    format!("read .netrc {} bytes", size(".netrc")),
                    "sent".to_owned(),
                    "sent again".to_owned(),
                ];
                lines.sort();
                lines
            };
            if payloads != noted_want {
                return Err(format!("[{}] the payloads got {payloads:?}, not {noted_want:?}", py.label));
            }
            // Nothing of the payloads reached the listener under enforce: its one connection is
            // main's, at runtime.
            let (connections, datagrams) = (stage.sink.connections(), stage.sink.datagrams());
            let heard_want = if mode == "enforce" { (1, 0) } else { (3, 1) };
            if (connections, datagrams) != heard_want {
                return Err(format!(
                    "[{}] the listener got {connections} connections and {datagrams} datagrams, not {heard_want:?}",
                    py.label
                ));
            }
            let sink = &stage.sink;
            let alerts = settle(premain, pid, 7);
            compare(
                &format!("{} {mode}", py.label),
                &alerts,
                vec![
                    want("credential-read", "startup", "pth", stage.bait(".aws/credentials"))
                        .from("evil-pth"),
                    want("network-connect", "startup", "pth", sink.addr()).from("evil-pth"),
                    want("credential-read", "import", "module", stage.bait(".netrc")).from("evil-import"),
                    want("network-connect", "import", "module", sink.addr()).from("evil-import"),
                    want("network-send", "import", "module", sink.addr()).from("evil-import"),
                    want("network-send", "import", "module", format!("127.0.0.2:{}", sink.port))
                        .from("evil-import"),
                    want("credential-read", "import", "module", stage.bait(".kube/config"))
                        .from("evil-thread")
                        .inherited(),
                ],
            )?;
            // pip: setup.py reading ~/.pypirc.
            let src = source_tree("evil-setup", dir);
            let mut cmd = clean(&py.path);
            cmd.args(["-m", "pip", "--python"]).arg(&stage.python);
            cmd.args(["install", "--no-index", "-q", "--find-links"]).arg(&links).arg(&src);
            cmd.env("HOME", &stage.home).stdout(Stdio::null()).stderr(Stdio::piped());
            let child = cmd.spawn().map_err(|e| e.to_string())?;
            let pip = child.id();
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            match mode {
                "enforce" if out.status.success() || !stderr.contains("PermissionError") => {
                    return Err(format!(
                        "[{}] pip should fail on the denial: {}\n{stderr}",
                        py.label, out.status
                    ));
                }
                "dry-run" if !out.status.success() => {
                    return Err(format!("[{}] pip failed under dry-run: {stderr}", py.label));
                }
                _ => {}
            }
            let installs = settle(premain, pip, 1);
            let one = want("credential-read", "install", "setup", stage.bait(".pypirc")).from("evil-setup");
            compare(
                &format!("{} {mode} pip", py.label),
                &installs,
                vec![one.clone(); repeats(&installs, &one)],
            )?;
            for a in alerts.iter().chain(&installs) {
                let expected = outcome;
                if a["enforcement"]["mode"] != mode || a["enforcement"]["outcome"] != expected {
                    return Err(format!("[{}] {mode}: enforcement of {a}", py.label));
                }
                if a["enforcement"]["outcome"] == outcome {
                    let w = got(a);
                    noted.push((py.label.clone(), w.rule.into(), w.phase.into(), w.culprit.into(), {
                        // Temporary directories and the listener's port differ between the runs.
                        let port = format!(":{}", stage.sink.port);
                        w.target.replace(&dir.display().to_string(), "<dir>").replace(&port, ":<port>")
                    }));
                }
            }
            Ok(())
        });
        noted.sort();
        noted.dedup();
        decided.insert(mode, noted);
    }
    assert!(!decided["enforce"].is_empty());
    assert_eq!(decided["enforce"], decided["dry-run"], "dry-run must name what enforce denied");
}
