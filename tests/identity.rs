//! Programs are allowed by identity, not name. A `.pth` that runs a copy of a harmless binary
//! named `uname` from a temporary directory (or a symlink there to the real one) raises
//! `program-exec`; one that runs the system's `/usr/bin/uname` does not. A package built
//! from an sdist with a C extension by real pip compiles and links with the system toolchain
//! during `install` and raises nothing, while the same kind of build that runs a `gcc` copy
//! from a temporary directory, or a shell that runs curl, raises an alert for each. A control
//! run with `install.toolchain = []` shows the toolchain's execs were seen and are what the
//! default lets through.
//!
//! Each test runs on every CPython found, waits for premain's sentinel before concluding that
//! no alert came, and judges only the alerts of its own process trees.

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    fs,
    net::TcpListener,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use integration_tests::{Premain, Python, TempDir, checked, clean, pythons, tool, tools_dir};
use serde_json::Value;

/// The `.pth` line's module: runs the programs `PREMAIN_IDENTITY_RUN` lists (JSON) at
/// start-up and writes their exit statuses and outputs to `PREMAIN_IDENTITY_OUT`.
const HOOK: &str = "\
import json, os, subprocess
_run = os.environ.get('PREMAIN_IDENTITY_RUN')
if _run:
    _ran = {}
    for _program in json.loads(_run):
        _done = subprocess.run([_program], stdout=subprocess.PIPE)
        _ran[_program] = [_done.returncode, _done.stdout.decode()]
    with open(os.environ['PREMAIN_IDENTITY_OUT'], 'w') as _out:
        json.dump(_ran, _out)
";

/// The C extension the packages build: `identity_ext.answer()` is 42.
const EXTENSION: &str = r#"#include <Python.h>

static PyObject *answer(PyObject *self, PyObject *unused) { return PyLong_FromLong(42); }

static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "identity_ext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_identity_ext(void) { return PyModule_Create(&module); }
"#;

/// setup.py of the packages. With `PREMAIN_FAKE_GCC` set, it also runs that program (a copy
/// named `gcc` outside the system's directories), a shell that runs curl against a closed
/// loopback port, and make, whose recipe (run by `/bin/bash`, make's `SHELL`) writes a file
/// and runs curl against another closed port, in every build hook that runs it.
const SETUP_PY: &str = "\
import os, shutil, subprocess, tempfile
from setuptools import Extension, setup

if os.environ.get('PREMAIN_FAKE_GCC'):
    subprocess.run([os.environ['PREMAIN_FAKE_GCC'], '--version'], check=True)
    port = os.environ['PREMAIN_CLOSED_PORT']
    subprocess.run(['/bin/sh', '-c', 'curl -s -m 5 http://127.0.0.1:%s/ || true' % port], check=True)
    made = tempfile.mkdtemp()
    with open(os.path.join(made, 'Makefile'), 'w') as f:
        f.write('SHELL = /bin/bash\\nall:\\n\\techo made > made.txt; curl -s -m 5 http://127.0.0.1:%s/ || true\\n'
                % os.environ['PREMAIN_MAKE_PORT'])
    subprocess.run(['make', '-s', '-C', made], check=True)
    assert open(os.path.join(made, 'made.txt')).read() == 'made\\n', 'the recipe did not run'
    shutil.rmtree(made)

setup(name='identity-ext', version='1.0', ext_modules=[Extension('identity_ext', ['identity_ext.c'])])
";

const PYPROJECT: &str = "\
[build-system]
requires = ['setuptools', 'wheel']
build-backend = 'setuptools.build_meta'
";

/// Makes the sdist: `python -I -c TAR out.tar.gz tree` (runtime code: no alert).
const TAR: &str = "\
import os, sys, tarfile
with tarfile.open(sys.argv[1], 'w:gz') as t:
    t.add(sys.argv[2], arcname=os.path.basename(sys.argv[2]))
";

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A fresh venv (no pip) of `py` in `dir`; returns its python and site-packages.
fn venv(py: &Python, dir: &Path) -> (PathBuf, PathBuf) {
    checked(
        clean(&py.path).args(["-m", "venv", "--without-pip"]).arg(dir),
        &format!("[{}] python -m venv", py.label),
    );
    let site = dir.join(format!("lib/python{}.{}/site-packages", py.version.0, py.version.1));
    assert!(site.is_dir(), "[{}] no {}", py.label, site.display());
    (dir.join("bin/python"), site)
}

/// A copy of `/bin/true` at `path`, mode 0755: a harmless program with whatever name.
fn impostor(path: &Path) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::copy("/bin/true", path).expect("copy /bin/true");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// Waits until `root`'s alerts cover `count` distinct (rule, target) pairs or 15 s passed,
/// then for premain's sentinel, after which no alert of what `root` did can still come.
fn settle(premain: &Premain, root: u32, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while distinct(&premain.alerts_of(root)).len() < count && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    premain.sentinel();
    premain.alerts_of(root)
}

/// An alert as `(rule, target)`: the path run, opened, or the address reached.
fn key(alert: &Value) -> (String, String) {
    let action = &alert["action"];
    let target = action["path"].as_str().or(action["addr"].as_str()).unwrap_or("?");
    (alert["rule"].as_str().unwrap_or("?").to_owned(), target.to_owned())
}

fn distinct(alerts: &[Value]) -> BTreeSet<(String, String)> {
    alerts.iter().map(key).collect()
}

fn listing(alerts: &[Value]) -> String {
    if alerts.is_empty() {
        return "    (none)".to_owned();
    }
    alerts.iter().map(|a| format!("    {a}")).collect::<Vec<_>>().join("\n")
}

/// Runs `check` on every CPython under one premain, reporting every failure at the end and
/// the interpreters it ran on.
fn on_every_python(name: &str, mut check: impl FnMut(&Python, &Premain, &Path) -> Result<(), String>) {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    assert!(
        pythons.iter().any(|p| p.label.starts_with("pyenv 3.12")),
        "no pyenv CPython 3.12 (cargo xtask setup / pyenv install)"
    );
    let premain = Premain::start_alerts(&[]);
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for py in &pythons {
        let dir = TempDir::new(&format!("identity-{name}"));
        match check(py, &premain, dir.path()) {
            Ok(()) => ran.push(py.label.clone()),
            Err(err) => failures.push(format!("[{}] {err}", py.label)),
        }
    }
    let (status, stderr) = premain.stop();
    println!("{name}: passed on {}", ran.join(", "));
    assert!(failures.is_empty(), "{name}:\n{}\npremain stderr:\n{stderr}", failures.join("\n"));
    assert!(status.success(), "premain exited with {status}");
}

/// A venv of `py` in `dir` whose `.pth` runs the hook; returns its python.
fn hooked_venv(py: &Python, dir: &Path) -> PathBuf {
    let (python, site) = venv(py, &dir.join("venv"));
    fs::write(site.join("premain_identity_hook.py"), HOOK).unwrap();
    fs::write(site.join("aaa_identity.pth"), "import premain_identity_hook\n").unwrap();
    python
}

/// Runs `python -c pass`, started by `launcher` (a command that ends by running its
/// arguments, in the same process) when one is given, whose `.pth` runs `programs`. Returns
/// its pid and what each program printed, once they all ran and exited 0.
fn run_pth(
    launcher: &[&OsStr],
    python: &Path,
    dir: &Path,
    programs: &[&Path],
) -> Result<(u32, Vec<String>), String> {
    let out = dir.join("ran.json");
    let list = serde_json::to_string(&programs.iter().map(|p| text(p)).collect::<Vec<_>>()).unwrap();
    let mut cmd = match launcher.split_first() {
        Some((program, args)) => {
            let mut cmd = clean(program);
            cmd.args(args).arg(python);
            cmd
        }
        None => clean(python),
    };
    let child = cmd
        .args(["-c", "pass"])
        .env("PREMAIN_IDENTITY_RUN", list)
        .env("PREMAIN_IDENTITY_OUT", &out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let pid = child.id();
    let done = child.wait_with_output().expect("wait python");
    if !done.status.success() {
        return Err(format!("python failed: {}", String::from_utf8_lossy(&done.stderr)));
    }
    let ran: Value = serde_json::from_str(&fs::read_to_string(&out).map_err(|e| format!("no {out:?}: {e}"))?)
        .map_err(|e| e.to_string())?;
    let mut outputs = Vec::new();
    for program in programs {
        let result = &ran[text(program)];
        if result[0] != 0 {
            return Err(format!("{} did not run: {ran}", program.display()));
        }
        outputs.push(result[1].as_str().unwrap_or_default().to_owned());
    }
    Ok((pid, outputs))
}

#[test]
fn a_pth_running_a_copy_named_uname_alerts_and_the_system_uname_does_not() {
    assert!(Path::new("/usr/bin/uname").is_file(), "/usr/bin/uname (coreutils) is missing");
    on_every_python("uname", |py, premain, dir| {
        let python = hooked_venv(py, dir);
        let copy = impostor(&dir.join("bin/uname"));
        let link = dir.join("link/uname");
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink("/usr/bin/uname", &link).unwrap();

        let (pid, _) = run_pth(&[], &python, dir, &[&copy, &link])?;
        let alerts = settle(premain, pid, 2);
        let want: BTreeSet<(String, String)> =
            [&copy, &link].iter().map(|p| ("program-exec".to_owned(), text(p).to_owned())).collect();
        if distinct(&alerts) != want {
            return Err(format!("the impostors: want {want:?}, got:\n{}", listing(&alerts)));
        }
        for a in &alerts {
            if a["phase"] != "startup"
                || a["culprit"]["kind"] != "pth"
                || a["culprit"]["party"] != "third-party"
            {
                return Err(format!("not the .pth's start-up: {a}"));
            }
        }

        let system = [Path::new("/usr/bin/uname"), Path::new("/bin/uname")];
        let (pid, printed) = run_pth(&[], &python, dir, &system)?;
        if printed.iter().any(|p| p.trim() != "Linux") {
            return Err(format!("the system's uname printed {printed:?}"));
        }
        let alerts = settle(premain, pid, 0);
        if !alerts.is_empty() {
            return Err(format!("the system's uname alerted:\n{}", listing(&alerts)));
        }
        Ok(())
    });
}

#[test]
fn a_copy_bind_mounted_over_the_system_uname_in_a_mount_namespace_alerts() {
    on_every_python("mount", |py, premain, dir| {
        let python = hooked_venv(py, dir);
        // Owned by root like the real one: only the mount tells them apart.
        let copy = impostor(&dir.join("bin/uname"));
        let unshare = tool("unshare");
        // A mount namespace of its own whose mounts propagate nowhere, where the copy is
        // mounted over /usr/bin/uname before the python runs (in the same process).
        let script = "mount --bind \"$0\" /usr/bin/uname && exec \"$@\"";
        let launcher = [
            unshare.as_os_str(),
            os("--mount"),
            os("--propagation"),
            os("private"),
            os("--"),
            os("/bin/sh"),
            os("-c"),
            os(script),
            copy.as_os_str(),
        ];
        let uname = Path::new("/usr/bin/uname");
        let (pid, printed) = run_pth(&launcher, &python, dir, &[uname])?;
        if printed != [""] {
            return Err(format!("/usr/bin/uname was not the copy in the namespace: it printed {printed:?}"));
        }
        let alerts = settle(premain, pid, 1);
        let want = BTreeSet::from([("program-exec".to_owned(), text(uname).to_owned())]);
        if distinct(&alerts) != want {
            return Err(format!("want {want:?}, got:\n{}", listing(&alerts)));
        }
        Ok(())
    });
}

/// The setuptools and wheel wheels of `cargo xtask setup`'s wheelhouse, for build isolation.
fn wheelhouse() -> PathBuf {
    let dir = tools_dir().join("wheelhouse");
    let names: Vec<String> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for wheel in ["setuptools-", "wheel-"] {
        assert!(
            names.iter().any(|n| n.starts_with(wheel) && n.ends_with(".whl")),
            "no {wheel}*.whl in {} (cargo xtask setup fills it)",
            dir.display()
        );
    }
    dir
}

/// The package's sdist, made in `dir` with `py`.
fn sdist(py: &Python, dir: &Path) -> PathBuf {
    let tree = dir.join("identity-ext-1.0");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("setup.py"), SETUP_PY).unwrap();
    fs::write(tree.join("pyproject.toml"), PYPROJECT).unwrap();
    fs::write(tree.join("identity_ext.c"), EXTENSION).unwrap();
    fs::write(tree.join("PKG-INFO"), "Metadata-Version: 2.1\nName: identity-ext\nVersion: 1.0\n").unwrap();
    let archive = dir.join("identity-ext-1.0.tar.gz");
    checked(clean(&py.path).args(["-I", "-c", TAR]).arg(&archive).arg(&tree), "making the sdist");
    fs::remove_dir_all(&tree).unwrap();
    archive
}

/// `pip install` of the sdist into a fresh venv (build isolation from the wheelhouse, no
/// index), with `env`; returns pip's pid once the extension imports and answers.
fn pip_install(py: &Python, dir: &Path, env: &[(&str, &OsStr)]) -> Result<u32, String> {
    tool("gcc");
    let archive = sdist(py, dir);
    let (python, _) = venv(py, &dir.join("venv"));
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();
    let mut cmd = clean(&py.path);
    cmd.args(["-m", "pip", "--python"]).arg(&python).args(["install", "--no-index", "-q", "--find-links"]);
    cmd.arg(wheelhouse()).arg(&archive).env("HOME", &home).envs(env.iter().copied());
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("pip install failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let out = checked(
        clean(&python).args(["-c", "import identity_ext; print(identity_ext.answer())"]),
        "importing the built extension",
    );
    if String::from_utf8_lossy(&out.stdout).trim() != "42" {
        return Err(format!("the extension answered {:?}", String::from_utf8_lossy(&out.stdout)));
    }
    Ok(pid)
}

fn install_alerts_only(alerts: &[Value]) -> Result<(), String> {
    let foreign = |a: &&Value| {
        a["phase"] != "install" || a["culprit"]["kind"] != "setup" || a["culprit"]["party"] != "third-party"
    };
    match alerts.iter().find(foreign) {
        Some(a) => Err(format!("an alert not of setup.py's install: {a}")),
        None => Ok(()),
    }
}

#[test]
fn pip_builds_a_c_extension_with_the_system_toolchain_without_alerts() {
    on_every_python("toolchain", |py, premain, dir| {
        let pid = pip_install(py, dir, &[])?;
        let alerts = settle(premain, pid, 0);
        if !alerts.is_empty() {
            return Err(format!("the build alerted:\n{}", listing(&alerts)));
        }
        Ok(())
    });
    // The control: with no toolchain allowed, the same build's compiler, assembler and linker
    // alert. So premain saw them run during the install, and the default list let them through.
    let py = pythons().into_iter().find(|p| p.label.starts_with("pyenv 3.12")).expect("a pyenv CPython 3.12");
    let config = TempDir::new("identity-config");
    let file = config.file("no-toolchain.toml", "[install]\ntoolchain = []\n");
    let premain = Premain::start_alerts(&["--config", text(&file)]);
    let dir = TempDir::new("identity-control");
    let pid = pip_install(&py, dir.path(), &[]).unwrap_or_else(|e| panic!("[{}] {e}", py.label));
    let names = ["gcc", "cc1", "as", "collect2", "ld"];
    let alerts = settle(&premain, pid, names.len());
    install_alerts_only(&alerts).unwrap();
    let ran: BTreeSet<String> = distinct(&alerts)
        .into_iter()
        .filter(|(rule, _)| rule == "program-exec")
        .filter_map(|(_, path)| Some(Path::new(&path).file_name()?.to_str()?.to_owned()))
        .collect();
    let missing: Vec<&str> = names
        .into_iter()
        .filter(|name| !ran.iter().any(|r| r == name || (*name == "gcc" && r.ends_with("gcc"))))
        .collect();
    let (status, stderr) = premain.stop();
    assert!(
        missing.is_empty(),
        "[{}] without a toolchain, no alert for {missing:?}; the build's alerts:\n{}\npremain stderr:\n{stderr}",
        py.label,
        listing(&alerts)
    );
    assert!(status.success(), "premain exited with {status}");
    println!("toolchain: [{}] without install.toolchain, the build alerted for {ran:?}", py.label);
}

/// A loopback port nothing listens on: connecting is refused at once.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap().port().to_string()
}

#[test]
fn a_build_running_a_gcc_copy_or_a_shell_alerts() {
    on_every_python("impostors", |py, premain, dir| {
        let gcc = impostor(&dir.join("bin/gcc"));
        let port = closed_port();
        let make_port = closed_port();
        let env = [
            ("PREMAIN_FAKE_GCC", gcc.as_os_str()),
            ("PREMAIN_CLOSED_PORT", os(&port)),
            ("PREMAIN_MAKE_PORT", os(&make_port)),
        ];
        let pid = pip_install(py, dir, &env)?;
        let alerts = settle(premain, pid, 5);
        install_alerts_only(&alerts)?;
        let got = distinct(&alerts);
        let pair = |rule: &str, target: &str| (rule.to_owned(), target.to_owned());
        let mut want = BTreeSet::from([
            pair("program-exec", text(&gcc)),
            pair("program-exec", "/bin/sh"),
            pair("network-connect", &format!("127.0.0.1:{port}")),
            // make's recipe shell (`/bin/bash`) is the build's: only what it ran alerts.
            pair("network-connect", &format!("127.0.0.1:{make_port}")),
        ]);
        // Wherever the shell's PATH search found curl.
        want.extend(
            got.iter().filter(|(rule, path)| rule == "program-exec" && path.ends_with("/curl")).cloned(),
        );
        if got != want || want.len() != 5 {
            return Err(format!("want {want:?} and a curl, got:\n{}", listing(&alerts)));
        }
        Ok(())
    });
}
