//! Deferred start-up code: a one-line `.pth` that only plants a function (an `atexit`
//! handler, a patched `json.loads`, a `sys.meta_path` finder, a signal handler,
//! `sys.excepthook`, a codec search function) which steals credentials and connects out long
//! after main started, from the main thread (tests/scenarios/packages/deferred-*). Each alerts
//! with phase `startup`, its `.pth` as culprit, `deferred: true` and the planted frame
//! (function, file, line, checked against the payload's source), on every CPython present.
//! The benign hooks (virtualenv's `_virtualenv.pth`, setuptools' `distutils-precedence.pth`, an
//! editable install's finder, coverage's start-up hook) installed together, under an
//! application that reads `~/.aws/credentials` and connects at runtime through a library: no
//! alert. One premain for the whole file.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    Premain, Python, Sink, TempDir, checked, clean,
    corpus::{bait_home, scenario_dir, settle, setuptools_links, source_tree},
    pythons, require_root, tools_dir,
};
use serde_json::Value;

/// The six payloads: distribution suffix, the application that triggers it, the function and
/// file its alerts name (a module of the distribution, or `<string>` for code of the `.pth`
/// line itself), and whether the application is meant to exit with a failure.
struct Payload {
    name: &'static str,
    app: &'static str,
    function: &'static str,
    /// The module the function is in; `None`: the `.pth` line's own code.
    module: Option<&'static str>,
    fails: bool,
}

const PAYLOADS: [Payload; 6] = [
    Payload { name: "atexit", app: "print('main done')\n", function: "<lambda>", module: None, fails: false },
    Payload {
        name: "json",
        app: "import json\nprint(json.loads('{\"a\": 1}'))\n",
        function: "_steal",
        module: Some("deferred_json_patch.py"),
        fails: false,
    },
    Payload {
        name: "finder",
        app: "try:\n    import premain_lazy_plugin\nexcept ImportError:\n    print('no plugin')\n",
        function: "find_spec",
        module: Some("deferred_finder.py"),
        fails: false,
    },
    Payload {
        name: "signal",
        app: "import os, signal, time\nos.kill(os.getpid(), signal.SIGUSR1)\ntime.sleep(0.2)\n",
        function: "premain_on_usr1",
        module: None,
        fails: false,
    },
    Payload {
        name: "excepthook",
        app: "raise RuntimeError('boom')\n",
        function: "report_crash",
        module: Some("deferred_excepthook.py"),
        fails: true,
    },
    Payload {
        name: "codec",
        app: "try:\n    'x'.encode('premain_deferred')\nexcept LookupError:\n    print('no codec')\n",
        function: "premain_codec_search",
        module: None,
        fails: false,
    },
];

/// Wheels of the six payload distributions, built once with real pip.
fn wheels() -> &'static Path {
    static WHEELS: OnceLock<PathBuf> = OnceLock::new();
    WHEELS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("premain-deferred-wheels-{}", std::process::id()));
        let out = dir.join("wheels");
        fs::create_dir_all(&out).unwrap();
        let builder = pythons().into_iter().next().expect("a CPython 3.8+ to build the payload wheels");
        let mut cmd = clean(&builder.path);
        cmd.args(["-m", "pip", "wheel", "--no-index", "--no-deps", "-q", "-w"]).arg(&out);
        for p in &PAYLOADS {
            cmd.arg(source_tree(&format!("deferred-{}", p.name), &dir.join("src")));
        }
        checked(&mut cmd, "building the payload wheels");
        out
    })
}

/// The line of `source` (1-based) holding `needle`. The inline payloads' functions are the
/// source of an `exec` in the `.pth` line, whose lines are the `\n`s of that string.
fn line_of(source: &str, needle: &str, exec_string: bool) -> u32 {
    let lines: Vec<&str> = if exec_string {
        let inner = &source[source.find("exec(\"").expect("an exec'd definition") + 6..];
        inner.split("\\n").collect()
    } else {
        source.lines().collect()
    };
    let i = lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in the payload"));
    i as u32 + 1
}

/// Where a payload's two actions are in its source: (credential read, connect).
fn lines(p: &Payload) -> (u32, u32) {
    let src = scenario_dir().join(format!("packages/deferred-{}", p.name));
    match p.module {
        Some(module) => {
            let text = fs::read_to_string(src.join("src").join(module)).unwrap();
            (line_of(&text, ".aws/credentials", false), line_of(&text, "create_connection", false))
        }
        None if p.function == "<lambda>" => (1, 1),
        None => {
            let text = fs::read_to_string(src.join(format!("src/aaa_deferred_{}.pth", p.name))).unwrap();
            (line_of(&text, ".aws/credentials", true), line_of(&text, "create_connection", true))
        }
    }
}

/// A venv of `py` (`--without-pip`) with `wheels` installed by `py`'s own pip; its python and
/// site-packages.
fn venv_with(py: &Python, dir: &Path, home: &Path, wheels: &[PathBuf]) -> (PathBuf, PathBuf) {
    checked(clean(&py.path).args(["-m", "venv", "--without-pip"]).arg(dir), &format!("[{}] venv", py.label));
    let python = dir.join("bin/python");
    let mut pip = clean(&py.path);
    pip.args(["-m", "pip", "--python"]).arg(&python).args(["install", "--no-index", "-q"]).args(wheels);
    checked(pip.env("HOME", home), &format!("[{}] pip install", py.label));
    let site = dir.join(format!("lib/python{}.{}/site-packages", py.version.0, py.version.1));
    (python, site)
}

/// Runs `python app` with the bait HOME, the sink and `env`; returns its pid, status and
/// output.
fn run_app(
    python: &Path,
    app: &Path,
    home: &Path,
    sink: &Sink,
    env: &[(&str, &Path)],
) -> (u32, bool, String) {
    let mut cmd = clean(python);
    cmd.arg(app).current_dir(app.parent().unwrap()).env("HOME", home);
    cmd.env("PREMAIN_SINK_PORT", sink.port.to_string()).envs(env.iter().copied());
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn the application");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for the application");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (pid, out.status.success(), text)
}

/// One alert per rule (a payload that runs twice, from a `.pth` site reads twice, folds).
fn distinct(alerts: Vec<Value>) -> Vec<Value> {
    let mut seen = Vec::new();
    alerts.into_iter().filter(|a| !seen.contains(&a["id"]) && (seen.push(a["id"].clone()), true).1).collect()
}

/// Checks the alerts of one payload's run.
fn judge(
    py: &Python,
    p: &Payload,
    site: &Path,
    home: &Path,
    sink: &Sink,
    alerts: &[Value],
) -> Result<(), String> {
    let label = format!("[{}] {}", py.label, p.name);
    let (read_line, connect_line) = lines(p);
    let file = p.module.map_or("<string>".to_owned(), |m| site.join(m).display().to_string());
    let credentials = home.join(".aws/credentials").display().to_string();
    let mut rules: Vec<&str> = alerts.iter().filter_map(|a| a["rule"].as_str()).collect();
    rules.sort_unstable();
    if rules != ["credential-read", "network-connect"] {
        return Err(format!("{label}: want a credential-read and a network-connect, got {alerts:#?}"));
    }
    for a in alerts {
        let (target, line) = match a["rule"].as_str() {
            Some("credential-read") => (credentials.clone(), read_line),
            _ => (sink.addr(), connect_line),
        };
        let got_target = a["action"]["path"].as_str().or(a["action"]["addr"].as_str()).unwrap_or("");
        let frame = &a["culprit"]["planted_frame"];
        let function = frame["function"].as_str().unwrap_or("");
        let checks = [
            ("phase", a["phase"] == "startup"),
            ("deferred", a["deferred"] == true),
            ("culprit kind", a["culprit"]["kind"] == "pth"),
            (
                "culprit path",
                a["culprit"]["path"]
                    .as_str()
                    .is_some_and(|s| s.ends_with(&format!("/aaa_deferred_{}.pth", p.name))),
            ),
            ("distribution", a["culprit"]["distribution"] == format!("deferred-{}", p.name).as_str()),
            ("target", got_target == target),
            // 3.11+ name a method by its qualified name (`PluginFinder.find_spec`).
            ("planted function", function.rsplit('.').next() == Some(p.function)),
            ("planted file", frame["file"] == file.as_str()),
            ("planted line", frame["line"] == line),
        ];
        if let Some((what, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(format!("{label}: wrong {what} (want line {line}, file {file}): {a:#}"));
        }
    }
    Ok(())
}

/// Each payload on one CPython: a venv with the six distributions, each triggered by its own
/// application run.
fn payloads_on(py: &Python, premain: &Premain, dir: &Path) -> Result<(), String> {
    let home = bait_home(dir);
    let wheels: Vec<PathBuf> = fs::read_dir(wheels()).unwrap().flatten().map(|e| e.path()).collect();
    let (python, site) = venv_with(py, &dir.join("venv"), &home, &wheels);
    let sink = Sink::start();
    let mut failures = Vec::new();
    for p in &PAYLOADS {
        let app = dir.join(format!("app_{}.py", p.name));
        fs::write(&app, p.app).unwrap();
        let result = dir.join(format!("result_{}.txt", p.name));
        let before = sink.connections();
        let (pid, ok, out) = run_app(
            &python,
            &app,
            &home,
            &sink,
            &[("PREMAIN_DEFERRED", Path::new(p.name)), ("PREMAIN_RESULT", &result)],
        );
        // The payload really did it: its own note, and the sink's count (its accepting thread
        // polls).
        let noted = fs::read_to_string(&result).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(2);
        while sink.connections() == before && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if ok == p.fails || !noted.starts_with(&format!("{}: read", p.name)) || sink.connections() == before {
            failures.push(format!(
                "[{}] {}: the payload did not run (exit ok {ok}): {out}{noted}",
                py.label, p.name
            ));
            continue;
        }
        let alerts = distinct(settle(premain, pid, 2));
        if let Err(e) = judge(py, p, &site, &home, &sink, &alerts) {
            failures.push(e);
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) }
}

/// The benign hooks together in one virtualenv-made venv of `py`: `_virtualenv.pth`,
/// setuptools' `distutils-precedence.pth`, an editable install of a flat-layout project (its
/// `__editable__` finder), and coverage's start-up hook (the `.pth` coverage writes for
/// `patch = subprocess`), measuring. The application reads `~/.aws/credentials` and connects at
/// runtime through the editable library: no alert.
fn benign_hooks(py: &Python, premain: &Premain, dir: &Path) -> Result<(), String> {
    let installers = tools_dir().join("installers-wheelhouse");
    let wheelhouse = tools_dir().join("wheelhouse");
    let links =
        setuptools_links(dir).ok_or("no setuptools and wheel in the wheelhouse (cargo xtask setup)")?;
    let home = bait_home(dir);
    // virtualenv itself, from the installers' wheelhouse.
    let tools = dir.join("tools");
    checked(clean(&py.path).args(["-m", "venv", "--without-pip"]).arg(&tools), "the virtualenv venv");
    let mut pip = clean(&py.path);
    pip.args(["-m", "pip", "--python"]).arg(tools.join("bin/python"));
    pip.args(["install", "--no-index", "-q", "--find-links"]).arg(&installers).arg("virtualenv");
    checked(&mut pip, "installing virtualenv");
    let venv = dir.join("venv");
    let mut make = clean(tools.join("bin/python"));
    make.args(["-m", "virtualenv", "--no-seed", "--no-periodic-update", "--app-data"])
        .arg(dir.join("app-data"));
    make.arg("-p").arg(&py.path).arg(&venv);
    checked(&mut make, "virtualenv");
    let python = venv.join("bin/python");
    let site = venv.join(format!("lib/python{}.{}/site-packages", py.version.0, py.version.1));
    // setuptools and coverage, then the editable library (built by setuptools in isolation).
    let library = dir.join("cloudlib-project");
    fs::create_dir_all(library.join("cloudlib")).unwrap();
    fs::write(
        library.join("pyproject.toml"),
        "[project]\nname = \"cloudlib\"\nversion = \"1.0\"\n\n[build-system]\nrequires = [\"setuptools>=64\"]\nbuild-backend = \"setuptools.build_meta\"\n",
    )
    .unwrap();
    fs::write(library.join("cloudlib/__init__.py"), CLOUDLIB).unwrap();
    let mut pip = clean(&py.path);
    pip.args(["-m", "pip", "--python"]).arg(&python).args(["install", "--no-index", "-q", "--find-links"]);
    pip.arg(&wheelhouse).arg("--find-links").arg(&links).args(["setuptools", "coverage", "-e"]).arg(&library);
    checked(pip.env("HOME", &home), "installing setuptools, coverage and the editable library");
    // coverage's own start-up hook, as `patch = subprocess` writes it.
    checked(
        clean(&python).args(["-c", "from coverage.patch import create_pth_files; create_pth_files()"]),
        "coverage's start-up hook",
    );
    let mut hooks: Vec<String> = fs::read_dir(&site)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pth"))
        .collect();
    hooks.sort();
    let editable = hooks.iter().find(|n| n.starts_with("__editable__")).cloned().unwrap_or_default();
    let editable_text = fs::read_to_string(site.join(&editable)).unwrap_or_default();
    let want = ["_virtualenv.pth", "distutils-precedence.pth"];
    if !want.iter().all(|w| hooks.iter().any(|h| h == w))
        || !hooks.iter().any(|h| h.starts_with("subcover_"))
        || !editable_text.starts_with("import __editable___cloudlib")
    {
        return Err(format!(
            "[{}] the benign hooks are not all there: {hooks:?}, editable: {editable_text:?}",
            py.label
        ));
    }
    let config = dir.join(".coveragerc");
    fs::write(&config, format!("[run]\ndata_file = {}\n", dir.join(".coverage").display())).unwrap();
    let app = dir.join("app.py");
    fs::write(&app, APP).unwrap();
    let sink = Sink::start();
    let (pid, ok, out) = run_app(&python, &app, &home, &sink, &[("COVERAGE_PROCESS_START", &config)]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while sink.connections() == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let bytes = fs::read(home.join(".aws/credentials")).unwrap().len();
    let read = format!("read {bytes} bytes");
    let hooks_ran =
        ["DistutilsMetaFinder", "_Finder", "_EditableFinder", "coverage measuring", read.as_str()];
    if !ok || sink.connections() != 1 || !hooks_ran.iter().all(|h| out.contains(h)) {
        return Err(format!(
            "[{}] the application or its hooks did not run as meant ({} connections): {out}",
            py.label,
            sink.connections()
        ));
    }
    let alerts = settle(premain, pid, 0);
    if !alerts.is_empty() {
        return Err(format!("[{}] benign hooks raised alerts: {alerts:#?}", py.label));
    }
    Ok(())
}

/// The editable library: a boto3-like session that reads the shared credentials file and a
/// client that connects, both when the application calls them.
const CLOUDLIB: &str = "import os\nimport socket\n\n\nclass Session:\n    def __init__(self):\n        path = os.path.join(os.path.expanduser('~'), '.aws', 'credentials')\n        with open(path) as f:\n            self.credentials = f.read()\n\n    def client(self, service):\n        return Client(service)\n\n\nclass Client:\n    def __init__(self, service):\n        self.service = service\n\n    def ping(self):\n        socket.create_connection(('127.0.0.1', int(os.environ['PREMAIN_SINK_PORT'])), timeout=3).close()\n";

/// The control application: shows that every hook ran, then does at runtime what the payloads
/// do (json, a lazy import, a handled exception, a codec lookup), and reads the credentials and
/// connects through the library.
const APP: &str = "import codecs, importlib, json, sys\nimport cloudlib\nimport coverage\n\nprint('meta_path', [getattr(f, '__name__', type(f).__name__) for f in sys.meta_path])\nprint('coverage measuring' if coverage.Coverage.current() else 'coverage idle')\njson.loads('{}')\nimportlib.import_module('colorsys')\ncodecs.lookup('utf-8')\ntry:\n    raise ValueError('handled')\nexcept ValueError:\n    pass\nsession = cloudlib.Session()\nprint('read', len(session.credentials), 'bytes')\nsession.client('s3').ping()\n";

#[test]
fn deferred_startup_code_is_the_hooks_and_benign_hooks_stay_quiet() {
    require_root();
    wheels();
    let all = pythons();
    assert!(!all.is_empty(), "no CPython 3.8+ found");
    let premain = Premain::start_alerts(&["--fold-window-secs", "2"]);
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for py in &all {
        let dir = TempDir::new(&format!("deferred-{}", py.label.replace([' ', '/'], "-")));
        match payloads_on(py, &premain, dir.path()) {
            Ok(()) => ran.push(py.label.clone()),
            Err(e) => failures.push(e),
        }
    }
    // virtualenv and its closure come from the installers' wheelhouse, made for CPython 3.11.
    let control = all.iter().rev().find(|p| p.version == (3, 11)).expect("a CPython 3.11");
    let dir = TempDir::new("deferred-benign");
    if let Err(e) = benign_hooks(control, &premain, dir.path()) {
        failures.push(e);
    }
    let (status, stderr) = premain.stop();
    println!("deferred payloads alerted on: {}; benign hooks on {}", ran.join(", "), control.label);
    assert!(failures.is_empty(), "{}\npremain stderr:\n{stderr}", failures.join("\n"));
    assert!(status.success(), "premain exited with {status}");
}
