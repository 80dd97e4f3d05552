//! Hostile input: paths and argv made to break JSON lines and terminals, values at and beyond
//! PATH_MAX, programs that lie about their names, and secrets that must never be copied into
//! alerts or logs.

use std::{
    ffi::OsStr,
    fs,
    io::Read as _,
    net::{TcpListener, UdpSocket},
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use integration_tests::{
    Bait, Premain, Python, TempDir, alert_of, eventually, pyenv_python, pythons, script,
};
use serde_json::{Value, json};

/// A newline, both quotes, a backslash, ANSI colour escapes, a tab and bytes that are not
/// UTF-8, in one file name.
const HOSTILE: &[u8] = b"evil\n\"dq'sq\\bs\x1b[31mred\x1b[0m\t\xff\xfe-end";
/// Room for what every other Python on a busy machine does while these tests run.
const BIG_RING: &str = "67108864";
/// A CPython with its symbols in the executable (not in a libpython).
const SYSTEM_PYTHON: &str = "/usr/bin/python3.11";
/// A program name of the same kind (its first 15 bytes become the `comm`).
const HOSTILE_PROGRAM: &[u8] = b"t\x1b[31m\n\xff\"rue";

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every pyenv CPython (their site runs a `sitecustomize` from PYTHONPATH; Debian's own
/// python3 ships one that shadows it).
fn site_pythons() -> Vec<Python> {
    let found: Vec<Python> = pythons().into_iter().filter(|p| p.label.starts_with("pyenv")).collect();
    assert!(!found.is_empty(), "no pyenv CPython on this machine");
    found
}

/// Runs `python -c pass` with `env`, waits for it, returns its pid.
fn run_python(python: &Path, env: &[(&OsStr, &OsStr)], cwd: Option<&Path>) -> u32 {
    let mut cmd = Command::new(python);
    cmd.args(["-c", "pass"]).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().expect("spawn python");
    let pid = child.id();
    let status = wait_bounded(&mut child);
    assert!(status.success(), "{} failed: {status}", python.display());
    pid
}

fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child {} did not finish within 60 s (left stopped?)", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A path of exactly `len` bytes under `base`, ending in `tail`, made of directory
/// components of at most 200 bytes.
fn path_of_len(base: &Path, len: usize, tail: &str) -> PathBuf {
    let mut path = base.as_os_str().as_bytes().to_vec();
    let mut need = len - path.len() - tail.len() - 1;
    while need > 0 {
        let mut k = (need - 1).min(200);
        if need - (k + 1) == 1 {
            k -= 1;
        }
        path.push(b'/');
        path.extend(std::iter::repeat_n(b'a', k));
        need -= k + 1;
    }
    path.push(b'/');
    path.extend_from_slice(tail.as_bytes());
    assert_eq!(path.len(), len);
    PathBuf::from(os(&path))
}

/// Every stdout line is exactly one JSON object in valid UTF-8 with no raw control byte; no
/// stderr line carries a raw escape or starts anywhere but at a log record.
fn check_streams(raw: &[Vec<u8>], stderr: &str) {
    assert!(!raw.is_empty());
    for line in raw {
        let text =
            std::str::from_utf8(line).unwrap_or_else(|e| panic!("stdout line not UTF-8 ({e}): {line:?}"));
        assert!(!line.iter().any(|b| *b < 0x20 || *b == 0x7f), "raw control byte on stdout: {text:?}");
        let value: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not one JSON value ({e}): {text}"));
        assert!(value.is_object(), "{text}");
    }
    assert!(!stderr.contains('\x1b'), "raw escape on stderr:\n{stderr}");
    for line in stderr.lines() {
        let stamp = line.get(..5).unwrap_or("");
        assert!(
            stamp.len() == 5 && stamp[..4].bytes().all(|b| b.is_ascii_digit()) && stamp.ends_with('-'),
            "a stderr line that is not a log record (injected line break?): {line:?}\n{stderr}"
        );
    }
}

/// Stops premain with SIGINT and returns everything it wrote: stdout lines (including those
/// printed on the way out) and stderr.
fn finish(premain: Premain) -> (Vec<Vec<u8>>, String) {
    premain.signal(libc::SIGINT);
    eventually("premain to finish", || premain.stderr().contains("stopped report="));
    let (status, stderr, raw) = premain.stop_raw();
    assert!(status.success(), "{status}\n{stderr}");
    (raw, stderr)
}

struct Hostile {
    _dir: TempDir,
    home: PathBuf,
    site: PathBuf,
    long: PathBuf,
    toolong: PathBuf,
    program: PathBuf,
}

impl Hostile {
    fn create() -> Self {
        let dir = TempDir::new("hostile");
        let home = dir.path().join(os(HOSTILE));
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join(".netrc"), "machine example.invalid login fake password fake\n").unwrap();
        let site = dir.path().join("site");
        fs::create_dir_all(&site).unwrap();
        fs::copy(script("hostile_sitecustomize.py"), site.join("sitecustomize.py")).unwrap();
        // The longest path open(2) takes: 4095 bytes and the NUL.
        let long = path_of_len(&dir.path().join("long"), 4095, ".netrc");
        fs::create_dir_all(long.parent().unwrap()).unwrap();
        fs::write(&long, "machine example.invalid login fake password fake\n").unwrap();
        // Beyond PATH_MAX: open(2) refuses it; its first 4095 bytes still look like a keyring.
        let toolong = path_of_len(&dir.path().join("toolong/.gnupg"), 4200, "secring.gpg");
        let program = home.join(os(HOSTILE_PROGRAM));
        fs::copy("/bin/true", &program).unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        Self { _dir: dir, home, site, long, toolong, program }
    }

    /// Runs the hostile start-up under `python`; returns its pid once it has exited.
    fn run(&self, python: &Python, premain: &Premain) -> u32 {
        // Main code waits for stdin to close: premain resolves the relative open against
        // /proc/<pid>/cwd while the process is still there (see README, Known limits).
        let mut child = Command::new(&python.path)
            .args(["-c", "import sys; sys.stdin.read()"])
            .env("HOME", &self.home)
            .env("PYTHONPATH", &self.site)
            .env("PREMAIN_LONG", &self.long)
            .env("PREMAIN_TOOLONG", &self.toolong)
            .env("PREMAIN_PROGRAM", &self.program)
            .current_dir(&self.home)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let pid = child.id();
        let netrc = lossy(self.home.join(".netrc").as_os_str().as_bytes());
        premain.wait_for(&format!("[{}] the relative open", python.label), |v| {
            v["pid"] == pid
                && v["hook"] == "open"
                && v["path"] == netrc.as_str()
                && v["requested"] == ".netrc"
        });
        drop(child.stdin.take());
        let status = wait_bounded(&mut child);
        assert!(status.success(), "[{}] {status}", python.label);
        pid
    }
}

/// `truncated` of a record (event or alert action), as a list of field names.
fn truncated(v: &Value) -> Vec<String> {
    v["truncated"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn check_hostile_run(premain: &Premain, h: &Hostile, python: &Python, pid: u32) {
    let label = &python.label;
    premain.wait_exit(pid);
    let events = premain.events();
    // Alerts go through the sinks: they may come after the exit event.
    let alert_for = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Value {
        premain.wait_for(&format!("[{label}] alert for {what}"), |a| {
            a["kind"] == "alert" && (a["process"]["pid"] == pid || a["process"]["ppid"] == pid) && pred(a)
        })
    };

    // The credential in a hostile directory, read by absolute and by relative path.
    let netrc = h.home.join(".netrc");
    let netrc_bytes = netrc.as_os_str().as_bytes();
    let opens: Vec<&Value> = events
        .iter()
        .filter(|e| e["pid"] == pid && e["hook"] == "open" && e["path"] == lossy(netrc_bytes))
        .collect();
    // Both name the file the kernel opened; the relative one keeps the caller's string.
    let resolutions: Vec<(&str, &Value)> =
        opens.iter().map(|e| (e["path_resolution"].as_str().unwrap(), &e["requested"])).collect();
    let netrc_events: Vec<String> = events
        .iter()
        .filter(|e| e["pid"] == pid && e["path"].as_str().is_some_and(|p| p.ends_with(".netrc")))
        .map(|e| e.to_string().chars().take(600).collect())
        .collect();
    assert_eq!(
        resolutions,
        [("kernel", &Value::Null), ("kernel", &json!(".netrc"))],
        "[{label}] {}",
        netrc_events.join("\n")
    );
    for e in &opens {
        assert_eq!(e["path_hex"], hex(netrc_bytes), "[{label}] exact bytes in path_hex: {e}");
        assert!(truncated(e).is_empty(), "[{label}] {e}");
        assert!(e["result"].as_i64().unwrap() >= 0, "[{label}] {e}");
    }
    let alert = alert_for(&|a| a["action"]["path"] == lossy(netrc_bytes), "the hostile .netrc");
    assert_eq!(alert["action"]["path_hex"], hex(netrc_bytes), "[{label}] {alert}");
    assert_eq!(alert["action"]["category"], "netrc", "[{label}] {alert}");
    assert_eq!(alert["culprit"]["kind"], "sitecustomize", "[{label}] {alert}");
    assert!(truncated(&alert["action"]).is_empty(), "[{label}] {alert}");

    // PATH_MAX - 1 bytes: whole, not truncated.
    let long = h.long.to_str().unwrap();
    let e = events
        .iter()
        .find(|e| e["pid"] == pid && e["hook"] == "open" && e["path"] == long)
        .unwrap_or_else(|| panic!("[{label}] no event with the whole 4095-byte path"));
    assert!(truncated(e).is_empty() && e["result"].as_i64().unwrap() >= 0, "[{label}] {e}");
    let alert = alert_for(&|a| a["action"]["path"] == long, "the 4095-byte .netrc path");
    assert!(truncated(&alert["action"]).is_empty(), "[{label}] {alert}");

    // Beyond PATH_MAX: cut at 4095 bytes, and said so, in the event and in the alert.
    let cut = &h.toolong.to_str().unwrap()[..4095];
    let e = events
        .iter()
        .find(|e| e["pid"] == pid && e["hook"] == "open" && e["path"] == cut)
        .unwrap_or_else(|| panic!("[{label}] no event for the over-long path"));
    assert_eq!(
        (e["error"].as_str(), truncated(e)),
        (Some("ENAMETOOLONG"), vec!["path".to_owned()]),
        "[{label}] {e}"
    );
    let alert = alert_for(&|a| a["action"]["path"] == cut, "the over-long keyring path");
    assert_eq!(alert["action"]["category"], "gnupg", "[{label}] {alert}");
    assert_eq!(
        truncated(&alert["action"]),
        ["path"],
        "[{label}] a cut path is flagged in the alert: {alert}"
    );

    // A hostile program name and argv, exec'd by pre-main code.
    let program = h.program.as_os_str().as_bytes();
    let argv_bytes: [&[u8]; 5] =
        [program, b"new\nline", b"quote\"back\\slash", b"\x1b[31mred\x1b[0m", b"\xff\xfe"];
    let argv: Vec<String> = argv_bytes.iter().map(|a| lossy(a)).collect();
    let argv_hex: Vec<String> = argv_bytes.iter().map(|a| hex(a)).collect();
    let e = events
        .iter()
        .find(|e| e["ppid"] == pid && e["hook"] == "exec" && e["path"] == lossy(program))
        .unwrap_or_else(|| panic!("[{label}] no exec event of the hostile program"));
    assert_eq!(e["path_hex"], hex(program), "[{label}] {e}");
    assert_eq!(e["argv"], json!(argv), "[{label}] {e}");
    assert_eq!(e["argv_hex"], json!(argv_hex), "[{label}] exact argv bytes: {e}");
    assert!(truncated(e).is_empty(), "[{label}] {e}");
    let comm = &HOSTILE_PROGRAM[..HOSTILE_PROGRAM.len().min(15)];
    assert_eq!(
        (e["comm"].as_str(), e["comm_hex"].as_str()),
        (Some(lossy(comm).as_str()), Some(hex(comm).as_str())),
        "[{label}] {e}"
    );
    let alert = alert_for(
        &|a| a["rule"] == "program-exec" && a["action"]["path"] == lossy(program),
        "the hostile exec",
    );
    assert_eq!(alert["action"]["path_hex"], hex(program), "[{label}] {alert}");
    assert_eq!(alert["action"]["argv"], json!(argv), "[{label}] {alert}");
    assert_eq!(alert["action"]["argv_hex"], json!(argv_hex), "[{label}] {alert}");
    assert_eq!(alert["process"]["comm_hex"], hex(comm), "[{label}] {alert}");
    assert!(truncated(&alert["action"]).is_empty(), "[{label}] {alert}");

    // argv beyond what the kernel side copies: cut, and said so.
    let e = events
        .iter()
        .find(|e| {
            e["ppid"] == pid
                && e["hook"] == "exec"
                && e["path"] == "/bin/true"
                && e["argv"][1].as_str().is_some_and(|a| a.starts_with("xxx"))
        })
        .unwrap_or_else(|| panic!("[{label}] no exec event with the long argument"));
    let kept = e["argv"][1].as_str().unwrap().len();
    assert!(kept < 3000 && e["argv"][1].as_str().unwrap().bytes().all(|b| b == b'x'), "[{label}] {e}");
    assert_eq!(truncated(e), ["argv"], "[{label}] {e}");
    let alert = alert_for(
        &|a| {
            a["rule"] == "program-exec"
                && a["action"]["argv"][1].as_str().is_some_and(|s| s.starts_with("xxx"))
        },
        "the long-argv exec",
    );
    assert_eq!(alert["action"]["argv"], e["argv"], "[{label}] {alert}");
    assert_eq!(truncated(&alert["action"]), ["argv"], "[{label}] cut argv is flagged in the alert: {alert}");
}

#[test]
fn hostile_paths_and_argv_are_escaped_exact_and_never_cut_silently() {
    let h = Hostile::create();
    let premain = Premain::start(&["--ring-buffer-size", BIG_RING]);
    let mut ran = Vec::new();
    for python in site_pythons() {
        let pid = h.run(&python, &premain);
        check_hostile_run(&premain, &h, &python, pid);
        ran.push(python.label.clone());
    }
    // An interpreter in a hostile directory: its path reaches premain's log. Debian's CPython
    // holds its symbols in the executable, so the probed image is the copy itself.
    let copy = h.home.join("python3");
    fs::copy(SYSTEM_PYTHON, &copy).unwrap();
    let pid = run_python(&copy, &[], None);
    premain.wait_exit(pid);
    ran.push(format!("copy of {SYSTEM_PYTHON} in the hostile directory"));
    let (raw, stderr) = finish(premain);
    check_streams(&raw, &stderr);
    // The hostile interpreter path did reach the log, escaped.
    let logged =
        stderr.lines().find(|l| l.contains("probes attached") && l.contains("evil")).unwrap_or_else(|| {
            panic!("the probed interpreter in the hostile directory is not in the log:\n{stderr}")
        });
    eprintln!("logged as: {logged}");
    eprintln!("Pythons exercised: {}", ran.join(", "));
}

#[test]
fn names_do_not_make_or_unmake_python() {
    let python = pyenv_python();
    let bait = Bait::create();
    let dir = TempDir::new("spoof");
    let home = bait.dir.path().join("home");
    let site = bait.dir.path().join("site");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let premain = Premain::start(&["--ring-buffer-size", BIG_RING]);

    // CPython named bash: still CPython. Its first run waits in execve until judged and probed
    // (the exec watch), whatever its name, so it is probed from its first instruction too.
    let renamed = dir.path().join("bash");
    fs::copy(&python.path, &renamed).unwrap();
    let env: [(&OsStr, &OsStr); 2] = [(os(b"HOME"), home.as_os_str()), (os(b"PYTHONPATH"), site.as_os_str())];
    let first = run_python(&renamed, &env, None);
    let alert = alert_of(&premain, first, &bait.netrc());
    eprintln!(
        "renamed copy, first run: phase {} ({}), culprit {}",
        alert["phase"], alert["phase_basis"], alert["culprit"]
    );
    assert_eq!(alert["phase"], "startup", "{alert}");
    assert_eq!(alert["phase_basis"], "probes", "{alert}");
    assert_eq!(alert["process"]["exe"], renamed.to_str().unwrap(), "{alert}");
    assert_eq!(alert["process"]["python"], format!("{}.{}", python.version.0, python.version.1), "{alert}");
    // Not Python, named python3: bash reading the credential and connecting. Not tracked.
    let fake = dir.path().join("python3");
    fs::copy("/bin/bash", &fake).unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new(&fake)
        .args(["-c", &format!("read -r line < ~/.netrc; exec 3<>/dev/tcp/127.0.0.1/{port}; exec 3>&-")])
        .env("HOME", &home)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let fake_pid = child.id();
    assert!(wait_bounded(&mut child).success());

    let original = bait.run(&python);
    let reference = alert_of(&premain, original, &bait.netrc());
    assert_eq!(reference["culprit"]["kind"], "sitecustomize", "{reference}");
    assert_eq!(reference["phase_basis"], "probes", "{reference}");
    let same_as_reference = |copy: &Path, run: &str| {
        let pid = run_python(copy, &env, None);
        let alert = alert_of(&premain, pid, &bait.netrc());
        for key in ["rule", "phase", "phase_basis", "culprit", "inherited_from"] {
            assert_eq!(
                alert[key],
                reference[key],
                "{}, {run} run: {key} differs\n{alert}\n{reference}",
                copy.display()
            );
        }
        let name = copy.file_name().unwrap().to_str().unwrap();
        assert_eq!(alert["process"]["comm"], name, "{alert}");
    };
    same_as_reference(&renamed, "second");
    same_as_reference(&renamed, "third");
    // First runs that end at once, likely while premain is still examining the file: later
    // runs are still probed.
    for i in 0..4 {
        let copy = dir.path().join(format!("bash-{i}"));
        fs::copy(&python.path, &copy).unwrap();
        let mut first = Command::new(&copy).args(["-I", "-S", "-c", "pass"]).spawn().unwrap();
        let first_pid = first.id();
        assert!(first.wait().unwrap().success());
        premain.wait_exit(first_pid);
        same_as_reference(&copy, "second");
    }

    // A Python renaming itself (prctl PR_SET_NAME) before the read: same phase and culprit.
    let spoof_site = dir.path().join("spoof-site");
    fs::create_dir_all(&spoof_site).unwrap();
    fs::copy(script("spoof_sitecustomize.py"), spoof_site.join("sitecustomize.py")).unwrap();
    let spoof_env = |comm: Option<&str>| {
        let mut env: Vec<(&OsStr, &OsStr)> =
            vec![(os(b"HOME"), home.as_os_str()), (os(b"PYTHONPATH"), spoof_site.as_os_str())];
        if let Some(c) = comm {
            env.push((os(b"PREMAIN_COMM"), OsStr::new(c)));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>()
    };
    let run_spoof = |comm: Option<&str>| {
        let env = spoof_env(comm);
        let refs: Vec<(&OsStr, &OsStr)> = env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())).collect();
        let pid = run_python(&python.path, &refs, None);
        (pid, alert_of(&premain, pid, &bait.netrc()))
    };
    let (_, plain) = run_spoof(None);
    assert_eq!(
        (plain["phase"].as_str(), plain["culprit"]["kind"].as_str()),
        (Some("startup"), Some("sitecustomize"))
    );
    for name in ["sshd", "kworker/0:1", "python3"] {
        let (pid, alert) = run_spoof(Some(name));
        for key in ["rule", "phase", "phase_basis", "culprit", "inherited_from"] {
            assert_eq!(alert[key], plain[key], "comm {name}: {key} differs\n{alert}\n{plain}");
        }
        assert_eq!(alert["process"]["comm"], name, "{alert}");
        let read = premain.wait_for("the renamed process's read", |v| {
            v["kind"] == "event"
                && v["pid"] == pid
                && v["hook"] == "open"
                && v["path"] == bait.netrc().to_str().unwrap()
        });
        assert_eq!(
            (read["comm"].as_str(), read["phase"].as_str(), read["tracking"].as_str()),
            (Some(name), Some("startup"), Some("python")),
            "{read}"
        );
    }

    // Everything the fake python3 did would be in by now (its exit came before these runs).
    let leaked: Vec<Value> = premain
        .lines()
        .into_iter()
        .filter(|v| v["pid"] == fake_pid || v["process"]["pid"] == fake_pid)
        .collect();
    assert!(leaked.is_empty(), "a non-Python named python3 was tracked: {leaked:#?}");
    let (status, _) = premain.stop();
    assert!(status.success());
    eprintln!("Pythons exercised: {} (as itself, as a copy named bash, renamed by prctl)", python.label);
}

#[test]
fn secrets_never_reach_alerts_events_or_logs() {
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let file_marker = format!("premain-file-marker-{nonce}");
    let aws_marker = format!("premain-aws-marker-{nonce}");
    let env_marker = format!("premain-env-marker-{nonce}");
    let env_only_marker = format!("premain-env-only-marker-{nonce}");
    let markers = [&file_marker, &aws_marker, &env_marker, &env_only_marker];

    let dir = TempDir::new("secrets");
    let home = dir.path().join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    fs::write(home.join(".netrc"), format!("machine example.invalid login fake password {file_marker}\n"))
        .unwrap();
    fs::write(
        home.join(".aws/credentials"),
        format!("[default]\naws_access_key_id = AKIAFAKE\naws_secret_access_key = {aws_marker}\n"),
    )
    .unwrap();
    let site = dir.path().join("site");
    fs::create_dir_all(&site).unwrap();
    fs::copy(script("secrets_sitecustomize.py"), site.join("sitecustomize.py")).unwrap();
    let sink_file = dir.path().join("alerts.jsonl");
    let config = dir.file(
        "premain.toml",
        &format!(
            "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"file\"\npath = {:?}\n",
            sink_file.to_str().unwrap()
        ),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    // Drain the TCP side so the sender never blocks; stops with the test.
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let mut sink = Vec::new();
                        let _ = s.read_to_end(&mut sink);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };

    let premain = Premain::start(&["--config", config.to_str().unwrap(), "--ring-buffer-size", BIG_RING]);
    let mut ran = Vec::new();
    for python in site_pythons() {
        let label = &python.label;
        let pid = run_python(
            &python.path,
            &[
                (os(b"HOME"), home.as_os_str()),
                (os(b"PYTHONPATH"), site.as_os_str()),
                (os(b"PREMAIN_PORT"), OsStr::new(&port.to_string())),
                (os(b"SECRET_TOKEN"), OsStr::new(&env_marker)),
                (os(b"AWS_SECRET_ACCESS_KEY"), OsStr::new(&env_only_marker)),
            ],
            None,
        );
        premain.wait_exit(pid);
        let expect = |what: &str, rule: &str, pred: &dyn Fn(&Value) -> bool| {
            premain.wait_for(&format!("[{label}] alert for the {what}"), |a| {
                a["kind"] == "alert"
                    && a["rule"] == rule
                    && (a["process"]["pid"] == pid || a["inherited_from"]["pid"] == pid)
                    && pred(&a["action"])
            });
        };
        expect("netrc read", "credential-read", &|a| a["category"] == "netrc");
        expect("aws read", "credential-read", &|a| a["category"] == "aws");
        expect("environ read", "credential-read", &|a| a["category"] == "process-environ");
        expect("udp send", "network-send", &|a| a["port"] == port);
        expect("tcp connect", "network-connect", &|a| a["port"] == port);
        expect("sh exec", "program-exec", &|a| a["path"] == "/bin/sh");
        expect("env exec", "program-exec", &|a| a["path"] == "/usr/bin/env");
        ran.push(label.clone());
    }
    let metrics = premain.get("/metrics").1;
    let (raw, stderr) = finish(premain);
    let written = fs::read_to_string(&sink_file).unwrap();
    for marker in markers {
        for line in &raw {
            assert!(
                !line.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "a secret reached stdout: {}",
                lossy(line)
            );
        }
        assert!(!stderr.contains(marker.as_str()), "a secret reached the log:\n{stderr}");
        assert!(!written.contains(marker.as_str()), "a secret reached the file sink");
        assert!(!metrics.contains(marker.as_str()), "a secret reached the metrics");
    }
    // The secrets did travel through the syscalls premain watched.
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut datagram = [0u8; 2048];
    let n = udp.recv(&mut datagram).expect("the sitecustomize's datagram");
    let sent = lossy(&datagram[..n]);
    assert!(sent.contains(&file_marker), "{sent:?}");
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap();
    eprintln!("Pythons exercised: {}", ran.join(", "));
}

#[test]
fn modules_in_directories_with_non_ascii_names_still_count() {
    let python = pyenv_python();
    let bait = Bait::create();
    let home = bait.dir.path().join("home");
    let premain = Premain::start(&["--ring-buffer-size", BIG_RING]);
    let cases: [(&str, &[u8]); 2] = [("UTF-8", "modulé".as_bytes()), ("not UTF-8", b"mod\xffule")];
    for (i, (label, name)) in cases.into_iter().enumerate() {
        let dir = bait.dir.path().join(os(name));
        // A dependency's directory: the application's own modules raise nothing.
        let site = dir.join("site-packages");
        fs::create_dir_all(&site).unwrap();
        let module = format!("evil_import_{i}");
        fs::write(
            site.join(format!("{module}.py")),
            "import os\nopen(os.path.expanduser('~/.netrc')).close()\n",
        )
        .unwrap();
        let main = bait.dir.file(
            &format!("main_{i}.py"),
            &format!("import sys\nsys.path.insert(0, sys.argv[1])\nimport {module}\n"),
        );
        let mut child = Command::new(&python.path)
            .arg(&main)
            .arg(&site)
            .env("HOME", &home)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(wait_bounded(&mut child).success());
        let alert = alert_of(&premain, pid, &bait.netrc());
        eprintln!("[{label}] {}", alert["culprit"]);
        assert_eq!(alert["phase"], "import", "[{label}] module-level code of an imported module: {alert}");
        assert_eq!(alert["culprit"]["kind"], "module", "[{label}] {alert}");

        // The script itself in that directory: its own read is runtime, its import's is not.
        let app = dir.join(format!("app_{i}.py"));
        fs::write(
            &app,
            format!(
                "import os, sys\nopen(os.path.expanduser('~/.netrc')).close()\n\
                 sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'site-packages'))\nimport {module}\n"
            ),
        )
        .unwrap();
        let mut child =
            Command::new(&python.path).arg(&app).env("HOME", &home).stdin(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        assert!(wait_bounded(&mut child).success());
        premain.wait_exit(pid);
        let netrc = bait.netrc();
        let reads: Vec<Value> = premain
            .events()
            .into_iter()
            .filter(|e| e["pid"] == pid && e["hook"] == "open" && e["path"] == netrc.to_str().unwrap())
            .collect();
        let phases: Vec<&str> = reads.iter().map(|e| e["phase"].as_str().unwrap()).collect();
        assert_eq!(phases, ["runtime", "import"], "[{label}] script in that directory: {reads:#?}");
        let alert = alert_of(&premain, pid, &netrc);
        assert_eq!(alert["phase"], "import", "[{label}] {alert}");
    }
    let (status, _) = premain.stop();
    assert!(status.success());
    eprintln!("Pythons exercised: {}", python.label);
}

#[test]
fn huge_command_lines_are_cut_and_flagged_in_alerts() {
    let python = pyenv_python();
    let bait = Bait::create();
    let premain = Premain::start(&[]);
    // A shell holding a 30 KB script (as CI runners pass them) starts a Python with 3 KB of
    // arguments; the shell waits on its stdin so it is alive when the alert is written.
    let padding = "#".repeat(30_000);
    let args: Vec<String> = (0..40).map(|i| format!("arg{i}-{}", "x".repeat(70))).collect();
    let script = format!("\"$0\" -c pass {} ; read _ ; exit 0\n{padding}\n", args.join(" "));
    let mut shell = Command::new(integration_tests::tool("bash"))
        .args(["-c", &script])
        .arg(&python.path)
        .env("HOME", bait.dir.path().join("home"))
        .env("PYTHONPATH", bait.dir.path().join("site"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let shell_pid = shell.id();
    let alert = premain.wait_for("the bait alert of the shell's Python", |v| {
        v["kind"] == "alert"
            && v["process"]["ppid"] == shell_pid
            && v["action"]["path"] == bait.netrc().to_str().unwrap()
    });
    drop(shell.stdin.take());
    assert!(wait_bounded(&mut shell).success());

    let process = &alert["process"];
    // Bytes as in /proc/<pid>/cmdline: the arguments and the NULs between them.
    let own: usize =
        process["cmdline"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().len() + 1).sum::<usize>()
            - 1;
    assert!(own <= 2048, "the Python's command line is bounded: {own} bytes");
    assert!(process["cmdline"][3].as_str().unwrap().starts_with("arg0-"), "{process}");
    assert_eq!(process["cmdline_truncated"], true, "{process}");
    let parent = &process["ancestry"][0];
    assert_eq!(parent["pid"], shell_pid, "{process}");
    let shell_args = parent["cmdline"].as_array().unwrap();
    let bytes: usize = shell_args.iter().map(|a| a.as_str().unwrap().len() + 1).sum::<usize>() - 1;
    assert!(bytes <= 2048, "the shell's command line is bounded: {bytes} bytes");
    assert!(shell_args[2].as_str().unwrap().starts_with("\"$0\" -c pass arg0-"), "{parent}");
    assert_eq!(parent["cmdline_truncated"], true, "{parent}");
    // The other ancestors (the test harness, cargo, whatever runs them) are flagged exactly
    // when their own command line is over the bound: a CI runner's script may well be.
    for ancestor in &process["ancestry"].as_array().unwrap()[1..] {
        let pid = ancestor["pid"].as_u64().unwrap();
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let len = raw.strip_suffix(&[0]).unwrap_or(&raw).len();
        let flagged = ancestor["cmdline_truncated"] == true;
        assert_eq!(flagged, len > 2048, "ancestor {pid} has {len} bytes: {ancestor}");
    }
    let line = serde_json::to_string(&alert).unwrap();
    assert!(line.len() < 16 * 1024, "the whole alert stays small: {} bytes", line.len());
    let (status, _) = premain.stop();
    assert!(status.success());
    eprintln!("Pythons exercised: {}", python.label);
}
