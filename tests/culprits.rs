//! Culprits that hold: an alert names the module file the interpreter really ran and the
//! installed distribution that owns it, whatever its file name is made of.
//!
//! Each test installs distributions by hand into a fresh venv of every CPython present (the
//! files, then a `*.dist-info` with `METADATA` and `RECORD`, as an installer leaves them) and
//! waits for the credential-read alert of each interpreter process, whose culprit it checks.
//! The bait credentials live in a temporary HOME.

use std::{
    ffi::OsStr,
    fs,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use integration_tests::{EVENT_TIMEOUT, Premain, Python, TempDir, clean, pythons};
use serde_json::{Value, json};

fn text(path: &Path) -> String {
    path.to_str().expect("test paths are UTF-8").to_owned()
}

/// Reads a bait credential at import time.
fn reads(bait: &str) -> String {
    format!("import os\nopen(os.path.expanduser('~/{bait}')).close()\n")
}

/// One CPython's world: a fake HOME with bait credentials and a plain venv.
struct Stage {
    dir: TempDir,
    label: String,
    home: PathBuf,
    python: PathBuf,
    site: PathBuf,
}

impl Stage {
    fn new(py: &Python) -> Self {
        let dir = TempDir::new("culprits");
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".aws")).unwrap();
        fs::write(home.join(".aws/credentials"), "[default]\naws_access_key_id = AKIAFAKE\n").unwrap();
        fs::write(home.join(".netrc"), "machine example.invalid login fake password fake\n").unwrap();
        fs::write(home.join(".git-credentials"), "https://fake:fake@example.invalid\n").unwrap();
        let venv = dir.path().join("venv");
        let out =
            clean(&py.path).args(["-m", "venv", "--without-pip"]).arg(&venv).output().expect("run venv");
        assert!(
            out.status.success(),
            "[{}] python -m venv: {}",
            py.label,
            String::from_utf8_lossy(&out.stderr)
        );
        let site = venv.join(format!("lib/python{}.{}/site-packages", py.version.0, py.version.1));
        assert!(site.is_dir(), "[{}] no {}", py.label, site.display());
        Self {
            home: fs::canonicalize(&home).unwrap(),
            site: fs::canonicalize(&site).unwrap(),
            python: venv.join("bin/python"),
            label: py.label.clone(),
            dir,
        }
    }

    /// Installs distribution `name` 1.0: `files` (paths relative to site-packages, contents),
    /// listed in its `RECORD`.
    fn install(&self, name: &str, files: &[(&str, &str)]) {
        let info = self.site.join(format!("{}-1.0.dist-info", name.replace('-', "_")));
        fs::create_dir_all(&info).unwrap();
        let mut record = String::new();
        for (path, contents) in files {
            let file = self.site.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(&file, contents).unwrap();
            record.push_str(&format!("{path},,\n"));
        }
        let info_name = info.file_name().unwrap().to_str().unwrap();
        fs::write(info.join("METADATA"), format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n"))
            .unwrap();
        record.push_str(&format!("{info_name}/METADATA,,\n{info_name}/RECORD,,\n"));
        fs::write(info.join("RECORD"), record).unwrap();
    }

    /// Writes a sourceless `.pyc` at `rel` (under site-packages) of `source` compiled with the
    /// file name `claim`, as `compileall` would (a timestamp header for this CPython).
    fn forge_pyc(&self, rel: &str, source: &str, claim: &Path) {
        const FORGE: &str = "import sys, importlib._bootstrap_external as b\n\
                             source, claim, out = sys.argv[1:]\n\
                             code = compile(source, claim, 'exec')\n\
                             open(out, 'wb').write(b._code_to_timestamp_pyc(code, 0, 0))\n";
        let out = clean(&self.python)
            .args(["-I", "-c", FORGE, source])
            .arg(claim)
            .arg(self.site.join(rel))
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "[{}] forging {rel}: {}",
            self.label,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `python -c code` in the venv to completion; returns its pid.
    fn run(&self, code: &str) -> u32 {
        self.run_env(code, &[])
    }

    fn run_env(&self, code: &str, env: &[(&str, &OsStr)]) -> u32 {
        self.run_args(&[OsStr::new("-c"), OsStr::new(code)], env)
    }

    /// Runs `python args...` in the venv to completion; returns its pid.
    fn run_args(&self, args: &[&OsStr], env: &[(&str, &OsStr)]) -> u32 {
        let child = clean(&self.python)
            .args(args)
            .env("HOME", &self.home)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait python");
        assert!(
            out.status.success(),
            "[{}] python {args:?}: {}",
            self.label,
            String::from_utf8_lossy(&out.stderr)
        );
        pid
    }

    fn bait(&self, name: &str) -> String {
        text(&self.home.join(name))
    }
}

/// The credential-read alert of `pid` reading `bait`, whose fields must all be as in `want`
/// (JSON pointers into the alert and their values).
struct Want {
    label: String,
    what: &'static str,
    pid: u32,
    bait: String,
    fields: Vec<(&'static str, Value)>,
}

impl Want {
    fn matches(&self, alert: &Value) -> bool {
        alert["rule"] == "credential-read"
            && alert["process"]["pid"] == self.pid
            && alert["action"]["path"] == self.bait.as_str()
    }

    fn verdict(&self, alert: &Value) -> Result<(), String> {
        let wrong: Vec<String> = self
            .fields
            .iter()
            .filter(|(pointer, want)| alert.pointer(pointer).unwrap_or(&Value::Null) != want)
            .map(|(pointer, want)| {
                format!("{pointer} is {}, not {want}", alert.pointer(pointer).unwrap_or(&Value::Null))
            })
            .collect();
        if wrong.is_empty() { Ok(()) } else { Err(wrong.join("; ")) }
    }
}

/// A read of `bait` by `pid` that must raise no alert.
struct Unwanted {
    label: String,
    what: &'static str,
    pid: u32,
    bait: String,
}

/// Waits until each wanted alert came (or [`EVENT_TIMEOUT`] passed) and checks it; then,
/// after premain's sentinel, that each process raised that alert once, and none of the
/// unwanted ones. Panics with every CPython's failures.
fn judge(premain: &Premain, wants: &[Want], unwanted: &[Unwanted]) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while Instant::now() < deadline && !wants.iter().all(|w| premain.alerts().iter().any(|a| w.matches(a))) {
        thread::sleep(Duration::from_millis(50));
    }
    premain.sentinel();
    let alerts = premain.alerts();
    let mut failures = Vec::new();
    for want in wants {
        let found: Vec<&Value> = alerts.iter().filter(|a| want.matches(a)).collect();
        let verdict = match found.as_slice() {
            [alert] => want.verdict(alert).map(|()| *alert),
            [] => Err("no alert".to_owned()),
            many => Err(format!("{} alerts: {many:?}", many.len())),
        };
        match verdict {
            Ok(alert) => println!("[{}] {}: {}", want.label, want.what, alert["culprit"]),
            Err(why) => failures.push(format!(
                "[{}] {}: {why}; culprit {}",
                want.label,
                want.what,
                found.first().map_or(Value::Null, |a| a["culprit"].clone())
            )),
        }
    }
    for not in unwanted {
        let found = alerts
            .iter()
            .find(|a| a["process"]["pid"] == not.pid && a["action"]["path"] == not.bait.as_str());
        match found {
            Some(alert) => failures.push(format!("[{}] {}: an alert: {alert}", not.label, not.what)),
            None => println!("[{}] {}: no alert", not.label, not.what),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn every_python() -> Vec<Python> {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    pythons
}

/// Packages and modules named in Latin-1 (`évil`, `données`), beyond it in UCS-2 (`злой`,
/// `悪意`) and in UCS-4 (Gothic `𐌰𐌹𐌺`): their code objects' file names are compact `str`s of
/// each kind, read whole, so the culprit names the module, its file and its distribution; a
/// module in a directory whose name is not UTF-8 is named with the exact bytes of its path.
#[test]
fn modules_with_non_ascii_names_are_named_with_their_distribution() {
    let premain = Premain::start_alerts(&[]);
    let mut wants = Vec::new();
    let mut unwanted = Vec::new();
    // Kept until the alerts are judged: the distributions are read then.
    let mut stages = Vec::new();
    for py in every_python() {
        let stage = Stage::new(&py);
        stage.install(
            "evil-latin",
            &[
                ("évil/__init__.py", "from . import données\n"),
                ("évil/données.py", &reads(".aws/credentials")),
            ],
        );
        stage.install("evil-cyrillic", &[("злой/__init__.py", &reads(".aws/credentials"))]);
        stage.install("evil-gothic", &[("𐌰𐌹𐌺/__init__.py", &reads(".aws/credentials"))]);
        // Imported by a `.pth` line at start-up, in every process of the venv.
        stage.install(
            "evil-cjk",
            &[
                ("evil_cjk.pth", "import 悪意.モジュール\n"),
                ("悪意/__init__.py", ""),
                ("悪意/モジュール.py", &reads(".netrc")),
            ],
        );
        let site = |rel: &str| json!(text(&stage.site.join(rel)));
        let imported = |module: &str, file: &str, outer: Option<&str>, dist: &str| {
            let mut fields = vec![
                ("/phase", json!("import")),
                ("/culprit/kind", json!("module")),
                ("/culprit/module", json!(module)),
                ("/culprit/module_path", site(file)),
                ("/culprit/path", site(file)),
                ("/culprit/distribution", json!(dist)),
                ("/culprit/version", json!("1.0")),
                ("/culprit/filename_unreadable", Value::Null),
                ("/culprit/filename_mismatch", Value::Null),
                ("/culprit/party", json!("third-party")),
            ];
            fields.extend(outer.map(|o| ("/culprit/outermost_module", json!(o))));
            fields
        };
        for (what, code, fields) in [
            (
                "Latin-1",
                "import évil",
                imported("évil.données", "évil/données.py", Some("évil"), "evil-latin"),
            ),
            ("UCS-2", "import злой", imported("злой", "злой/__init__.py", None, "evil-cyrillic")),
            ("UCS-4", "import 𐌰𐌹𐌺", imported("𐌰𐌹𐌺", "𐌰𐌹𐌺/__init__.py", None, "evil-gothic")),
        ] {
            let pid = stage.run(code);
            wants.push(Want {
                label: py.label.clone(),
                what,
                pid,
                bait: stage.bait(".aws/credentials"),
                fields,
            });
        }
        // A directory whose name is not UTF-8, on PYTHONPATH: CPython's `surrogateescape`
        // made its byte U+DCFF (a UCS-2 `str`), which gives the exact byte back.
        // A `site-packages` below it: a module of the application itself would raise nothing.
        let odd = stage.dir.path().join(OsStr::from_bytes(b"lib\xff")).join("site-packages");
        fs::create_dir_all(&odd).unwrap();
        fs::write(odd.join("evil_bytes.py"), reads(".aws/credentials")).unwrap();
        let hex: String =
            odd.join("evil_bytes.py").as_os_str().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let pid = stage.run_env("import evil_bytes", &[("PYTHONPATH", odd.as_os_str())]);
        wants.push(Want {
            label: py.label.clone(),
            what: "not UTF-8",
            pid,
            bait: stage.bait(".aws/credentials"),
            fields: vec![
                ("/phase", json!("import")),
                ("/culprit/module", json!("evil_bytes")),
                ("/culprit/module_path_hex", json!(hex)),
                ("/culprit/filename_mismatch", Value::Null),
            ],
        });
        // A script in a UCS-2 directory is the main code (named by the `cpython.run_file` audit
        // event's `str` before 3.12, by the command line after): its own read is runtime, its
        // import's is not.
        let app = stage.dir.path().join("злой app/app.py");
        fs::create_dir(app.parent().unwrap()).unwrap();
        fs::write(&app, format!("{}import злой\n", reads(".git-credentials"))).unwrap();
        let pid = stage.run_args(&[app.as_os_str()], &[]);
        wants.push(Want {
            label: py.label.clone(),
            what: "script's import",
            pid,
            bait: stage.bait(".aws/credentials"),
            fields: vec![("/phase", json!("import")), ("/culprit/module", json!("злой"))],
        });
        unwanted.push(Unwanted {
            label: py.label.clone(),
            what: "script's own read",
            pid,
            bait: stage.bait(".git-credentials"),
        });
        let pid = stage.run("pass");
        wants.push(Want {
            label: py.label.clone(),
            what: ".pth, UCS-2",
            pid,
            bait: stage.bait(".netrc"),
            fields: vec![
                ("/phase", json!("startup")),
                ("/culprit/kind", json!("pth")),
                ("/culprit/path", site("evil_cjk.pth")),
                ("/culprit/module", json!("悪意.モジュール")),
                ("/culprit/module_path", site("悪意/モジュール.py")),
                ("/culprit/distribution", json!("evil-cjk")),
                ("/culprit/filename_mismatch", Value::Null),
            ],
        });
        stages.push(stage);
    }
    judge(&premain, &wants, &unwanted);
    let (status, stderr) = premain.stop();
    assert!(status.success(), "premain exited with {status}\n{stderr}");
    let ran: Vec<&str> = stages.iter().map(|s| s.label.as_str()).collect();
    println!("Pythons exercised: {}", ran.join(", "));
}

/// A sourceless `.pyc` of another distribution compiled as `…/site-packages/requests/__init__.py`
/// claims to be `requests` (whose distribution is installed): the alert names the file the
/// interpreter loaded and its distribution, and says what the code object claimed. The same
/// when it is imported lazily by main code, once premain has declared the process quiet (its
/// opens of code files are recorded still). Code compiled in memory under `requests`' name is
/// loaded from no file: only the module that ran it is named. A code object whose file name is
/// not a compact `str` is said to be unreadable.
#[test]
fn modules_are_named_by_the_file_the_interpreter_loaded() {
    let premain = Premain::start_alerts(&[]);
    let skipped_before = premain.metric("premain_runtime_calls_skipped_total{hook=\"open\"}");
    let mut wants = Vec::new();
    let mut stages = Vec::new();
    let payload = reads(".aws/credentials");
    for py in every_python() {
        let stage = Stage::new(&py);
        let requests = stage.site.join("requests/__init__.py");
        stage.install("requests", &[("requests/__init__.py", "__version__ = '1.0'\n")]);
        stage.install("evil-sourceless", &[("evilpkg/__init__.pyc", "")]);
        stage.forge_pyc("evilpkg/__init__.pyc", &payload, &requests);
        let in_memory = format!("exec(compile({payload:?}, {:?}, 'exec'))\n", text(&requests));
        stage.install("evil-memory", &[("evilmem/__init__.py", &in_memory)]);
        let unreadable = format!(
            "class S(str):\n    pass\n\
             exec(compile({payload:?}, 'x', 'exec').replace(co_filename=S('/nowhere/x.py')))\n"
        );
        stage.install("evil-unreadable", &[("evilsub/__init__.py", &unreadable)]);
        let site = |rel: &str| json!(text(&stage.site.join(rel)));
        let forged = || {
            vec![
                ("/phase", json!("import")),
                ("/culprit/kind", json!("module")),
                ("/culprit/module", json!("evilpkg")),
                ("/culprit/module_path", site("evilpkg/__init__.pyc")),
                ("/culprit/path", site("evilpkg/__init__.pyc")),
                ("/culprit/distribution", json!("evil-sourceless")),
                ("/culprit/filename_mismatch", json!(true)),
                ("/culprit/claimed_filename", json!(text(&requests))),
            ]
        };
        // `os.open`, not `open()`: 3.8's first `open()` imports `_bootlocale`, after which the
        // process is recorded until premain has read that module's return.
        let lazy = "import os, time\ntime.sleep(2)\n\
                    for _ in range(50):\n    os.close(os.open('/etc/hostname', os.O_RDONLY))\n\
                    import evilpkg\n";
        for (what, code, fields) in [
            ("forged .pyc", "import evilpkg", forged()),
            ("forged .pyc, lazy import while quiet", lazy, forged()),
            (
                "compiled in memory",
                "import evilmem",
                vec![
                    ("/phase", json!("import")),
                    ("/culprit/module", Value::Null),
                    ("/culprit/module_path", Value::Null),
                    ("/culprit/outermost_module", json!("evilmem")),
                    ("/culprit/distribution", json!("evil-memory")),
                    ("/culprit/filename_mismatch", json!(true)),
                    ("/culprit/claimed_filename", json!(text(&requests))),
                ],
            ),
            (
                "unreadable name",
                "import evilsub",
                vec![
                    ("/phase", json!("import")),
                    ("/culprit/module", Value::Null),
                    ("/culprit/filename_unreadable", json!(true)),
                    ("/culprit/outermost_module", json!("evilsub")),
                    ("/culprit/distribution", json!("evil-unreadable")),
                    ("/culprit/filename_mismatch", Value::Null),
                ],
            ),
        ] {
            let pid = stage.run(code);
            wants.push(Want {
                label: py.label.clone(),
                what,
                pid,
                bait: stage.bait(".aws/credentials"),
                fields,
            });
        }
        stages.push(stage);
    }
    judge(&premain, &wants, &[]);
    // The lazy imports came after main code whose opens went unrecorded: they were quiet.
    // (The kernel's counts reach the metric within a second.)
    let want = 50.0 * stages.len() as f64;
    let skipped = || premain.metric("premain_runtime_calls_skipped_total{hook=\"open\"}") - skipped_before;
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while skipped() < want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    assert!(skipped() >= want, "{} opens skipped as quiet, not {want}", skipped());
    let (status, stderr) = premain.stop();
    assert!(status.success(), "premain exited with {status}\n{stderr}");
    let ran: Vec<&str> = stages.iter().map(|s| s.label.as_str()).collect();
    println!("Pythons exercised: {}", ran.join(", "));
}

/// The application's own module-level code (a project outside every site-packages directory:
/// `settings.py` reading credentials as Django's does) raises nothing by default, and an alert
/// of the configured severity with `alerts.application_code`; a dependency it imports is a
/// third party, and so is a module that dependency writes into the project and imports.
#[test]
fn the_applications_own_module_level_code_is_its_own() {
    for (config, severity) in [(None, None), (Some("low"), Some("low"))] {
        let conf = TempDir::new("culprits-conf");
        let mut args = Vec::new();
        if let Some(level) = config {
            let file = conf.file("premain.toml", &format!("[alerts]\napplication_code = \"{level}\"\n"));
            args = vec!["--config".to_owned(), text(&file)];
        }
        let premain = Premain::start_alerts(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let quiet_before = premain.metric("premain_application_code_actions_total{rule=\"credential-read\"}");
        let mut wants = Vec::new();
        let mut unwanted = Vec::new();
        let mut stages = Vec::new();
        for py in every_python() {
            let stage = Stage::new(&py);
            let project = stage.dir.path().join("project");
            fs::create_dir(&project).unwrap();
            fs::write(project.join("settings.py"), reads(".aws/credentials")).unwrap();
            let plant = format!(
                "import os, sys\n{}\nwith open({:?}, 'w') as f:\n    f.write({:?})\nimport planted\n",
                reads(".netrc"),
                text(&project.join("planted.py")),
                reads(".git-credentials"),
            );
            stage.install("helper-dep", &[("helper_dep/__init__.py", &plant)]);
            fs::write(project.join("app.py"), "import settings\nimport helper_dep\n").unwrap();
            let pid = stage.run_args(&[project.join("app.py").as_os_str()], &[]);
            let party = |who: &str| vec![("/phase", json!("import")), ("/culprit/party", json!(who))];
            match severity {
                None => unwanted.push(Unwanted {
                    label: py.label.clone(),
                    what: "settings.py",
                    pid,
                    bait: stage.bait(".aws/credentials"),
                }),
                Some(level) => wants.push(Want {
                    label: py.label.clone(),
                    what: "settings.py",
                    pid,
                    bait: stage.bait(".aws/credentials"),
                    fields: [party("application"), vec![("/severity", json!(level))]].concat(),
                }),
            }
            let dependency =
                [party("third-party"), vec![("/culprit/distribution", json!("helper-dep"))]].concat();
            wants.push(Want {
                label: py.label.clone(),
                what: "its dependency",
                pid,
                bait: stage.bait(".netrc"),
                fields: [dependency, vec![("/severity", json!("critical"))]].concat(),
            });
            wants.push(Want {
                label: py.label.clone(),
                what: "a module the dependency planted in the project",
                pid,
                bait: stage.bait(".git-credentials"),
                fields: [party("third-party"), vec![("/culprit/module", json!("planted"))]].concat(),
            });
            stages.push(stage);
        }
        judge(&premain, &wants, &unwanted);
        if config.is_none() {
            let quiet = premain.metric("premain_application_code_actions_total{rule=\"credential-read\"}");
            assert!(
                quiet - quiet_before >= stages.len() as f64,
                "premain_application_code_actions_total went from {quiet_before} to {quiet}"
            );
        }
        let (status, stderr) = premain.stop();
        assert!(status.success(), "premain exited with {status}\n{stderr}");
        let ran: Vec<&str> = stages.iter().map(|s| s.label.as_str()).collect();
        println!("application_code = {config:?}: Pythons exercised: {}", ran.join(", "));
    }
}
