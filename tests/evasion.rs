//! Evasion: the payloads of `tests/scripts/evasion` reach credentials, the network, other
//! processes' memory and persistence files by routes a naive syscall monitor misses (legacy
//! and handle-based opens, path spellings, a path rewritten under the kernel's feet,
//! `sendmmsg`, raw sockets). Each runs *pre-main*, from a `.pth` line of a fresh venv, on every
//! CPython present.
//!
//! Every test first checks that the payload did what it claims, against the test's own bait
//! (the SHA-256 of the file it read, the datagrams a listener received, the file it wrote).
//! Once every CPython has run, it waits for the alert of each of those interpreter processes
//! and checks its fields. The controls run the same payloads as main scripts (runtime code)
//! or point the same tricks at harmless files, and wait for premain's sentinel before
//! concluding that no alert came.

use std::{
    ffi::OsStr,
    fs,
    io::{BufRead as _, BufReader, Read as _},
    net::UdpSocket,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{EVENT_TIMEOUT, Premain, Python, TempDir, cannot_run, clean, pythons, script};
use serde_json::{Value, json};

/// The `.pth` that runs the payloads: the culprit every alert must name.
const HOOK_PTH: &str = "aaa_evasion.pth";
/// The module the `.pth` line imports (a copy of `scripts/evasion/run_premain.py`).
const HOOK_MODULE: &str = "premain_evasion_hook";

fn payload(name: &str) -> PathBuf {
    script(&format!("evasion/{name}"))
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn text(path: &Path) -> String {
    path.to_str().expect("test paths are UTF-8").to_owned()
}

/// 16 random bytes in hex: bait contents and markers no other run could produce.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A payload's JSON line, `"ok": true` checked.
fn parse_result(label: &str, what: &str, stdout: &str, stderr: &str) -> Value {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_else(|| {
        panic!("[{label}] {what} printed nothing; stderr:\n{stderr}");
    });
    let value: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("[{label}] {what} printed no JSON ({e}): {line}"));
    assert_eq!(value["ok"], true, "[{label}] {what}: {value}\nstderr:\n{stderr}");
    value
}

/// A payload run: the interpreter's pid and the payload's JSON.
struct Ran {
    pid: u32,
    result: Value,
}

/// One CPython's world: a fake HOME with a random AWS credential, a work dir on the same
/// filesystem (for hard links), and a plain venv whose site-packages holds the hook `.pth`.
struct Stage {
    dir: TempDir,
    label: String,
    home: PathBuf,
    /// `home/.aws/credentials`.
    bait: PathBuf,
    work: PathBuf,
    python: PathBuf,
    pth: PathBuf,
    /// The base CPython, which hashes files with `-S` (no site, so no hook: runtime code).
    hasher: PathBuf,
}

impl Stage {
    fn new(py: &Python) -> Self {
        let dir = TempDir::new("evasion");
        let home = dir.path().join("home");
        let bait = home.join(".aws/credentials");
        fs::create_dir_all(bait.parent().unwrap()).unwrap();
        fs::write(
            &bait,
            format!("[default]\naws_access_key_id = AKIAFAKE\naws_secret_access_key = {}\n", random_hex()),
        )
        .unwrap();
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
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
        fs::copy(payload("run_premain.py"), site.join(format!("{HOOK_MODULE}.py"))).unwrap();
        let pth = site.join(HOOK_PTH);
        fs::write(&pth, format!("import {HOOK_MODULE}\n")).unwrap();
        Self {
            dir,
            label: py.label.clone(),
            home: fs::canonicalize(home).unwrap(),
            bait: fs::canonicalize(bait).unwrap(),
            work: fs::canonicalize(work).unwrap(),
            python: venv.join("bin/python"),
            pth: fs::canonicalize(pth).unwrap(),
            hasher: py.path.clone(),
        }
    }

    fn base(&self, env: &[(&str, &OsStr)]) -> Command {
        let mut cmd = clean(&self.python);
        cmd.env("HOME", &self.home).envs(env.iter().copied()).current_dir(self.dir.path());
        cmd
    }

    /// Runs payload `name` pre-main (from the hook `.pth`, then `-c pass` as main); panics
    /// unless it succeeded and printed `"ok": true`.
    fn premain(&self, name: &str, args: &[&OsStr]) -> Ran {
        self.premain_env(name, args, &[])
    }

    fn premain_env(&self, name: &str, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Ran {
        self.premain_script(&payload(name), args, env)
    }

    fn premain_script(&self, script: &Path, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Ran {
        let out = self.dir.path().join(format!("result-{}.json", random_hex()));
        let config = json!({
            "script": text(script),
            "argv": args.iter().map(|a| a.to_str().expect("UTF-8 argument")).collect::<Vec<_>>(),
            "out": text(&out),
        });
        let child = self
            .base(env)
            .env("PREMAIN_EVASION", config.to_string())
            .args(["-c", "pass"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let pid = child.id();
        let what = format!("{} pre-main {args:?}", script.display());
        let done = child.wait_with_output().expect("wait python");
        let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
        assert!(done.status.success(), "[{}] {what}: {}\n{stderr}", self.label, done.status);
        let report: Value = serde_json::from_str(
            &fs::read_to_string(&out)
                .unwrap_or_else(|e| panic!("[{}] {what}: no result ({e}):\n{stderr}", self.label)),
        )
        .expect("the hook writes JSON");
        assert_eq!(report["exit"], 0, "[{}] {what} failed: {report}\n{stderr}", self.label);
        let result = parse_result(&self.label, &what, report["stdout"].as_str().unwrap_or(""), &stderr);
        Ran { pid, result }
    }

    /// Runs payload `name` as the main script (`python payload.py args`: runtime code).
    fn main(&self, name: &str, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Ran {
        self.main_env(&payload(name), args, env)
    }

    /// Runs `script` as the main script.
    fn main_script(&self, script: &Path, args: &[&OsStr]) -> Ran {
        self.main_env(script, args, &[])
    }

    fn main_env(&self, script: &Path, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Ran {
        let name = script.display();
        let child = self
            .base(env)
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let pid = child.id();
        let done = child.wait_with_output().expect("wait python");
        let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
        let what = format!("{name} {args:?} as main");
        assert!(done.status.success(), "[{}] {what}: {}\n{stderr}", self.label, done.status);
        Ran { pid, result: parse_result(&self.label, &what, &String::from_utf8_lossy(&done.stdout), &stderr) }
    }

    /// The SHA-256 of a file, computed by a separate interpreter (no site: runtime code).
    fn sha256(&self, path: &Path) -> String {
        let out = Command::new(&self.hasher)
            .args([
                "-S",
                "-c",
                "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
            ])
            .arg(path)
            .output()
            .expect("run the hasher");
        assert!(out.status.success(), "hash {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The payload read exactly `file`'s contents.
    fn assert_read(&self, ran: &Ran, file: &Path) {
        let want = fs::metadata(file).unwrap().len();
        assert_eq!(ran.result["sha256"], self.sha256(file), "[{}] {}", self.label, ran.result);
        assert_eq!(ran.result["bytes"], want, "[{}] {}", self.label, ran.result);
    }

    /// A harmless file in the fake HOME, with random contents.
    fn plain(&self, name: &str) -> PathBuf {
        let path = self.home.join(name);
        fs::write(&path, format!("just notes {}\n", random_hex())).unwrap();
        path
    }
}

/// Runs `test` on every CPython under one premain (alerts only). Each run checks its
/// payload's own result at once and records in its [`Plan`] the alerts it must (and must not)
/// raise; those are judged once every CPython has run, against one shared deadline, so a
/// daemon that misses them fails the test in one timeout with the verdict of each CPython.
fn on_every_python(name: &str, test: impl FnMut(&Stage, &mut Plan)) {
    on_every_python_with(name, &[], test);
}

/// [`on_every_python`] with `extra` arguments to `premain run`.
fn on_every_python_with(name: &str, extra: &[&str], mut test: impl FnMut(&Stage, &mut Plan)) {
    on_every_python_under(name, extra, |_, stage, plan| test(stage, plan));
}

/// [`on_every_python_with`], the test also given the premain it runs under.
fn on_every_python_under(name: &str, extra: &[&str], mut test: impl FnMut(&Premain, &Stage, &mut Plan)) {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    let premain = Premain::start_alerts(extra);
    let mut stages = Vec::new();
    let mut plans = Vec::new();
    for py in &pythons {
        let stage = Stage::new(py);
        let mut plan =
            Plan { label: py.label.clone(), alerts: Vec::new(), quiet: Vec::new(), single: Vec::new() };
        test(&premain, &stage, &mut plan);
        println!("{name}: [{}] the payload did what it claims", py.label);
        stages.push(stage);
        plans.push(plan);
    }
    let failures = judge(&premain, &plans);
    let stderr = premain.stderr();
    let (status, _) = premain.stop();
    let mut failed: Vec<&str> = failures.iter().map(|(label, _)| label.as_str()).collect();
    failed.dedup();
    let passed: Vec<&str> = plans.iter().map(|p| p.label.as_str()).filter(|l| !failed.contains(l)).collect();
    println!("{name}: ran on {}; alerts as expected on [{}]", plans.len(), passed.join(", "));
    if !failures.is_empty() {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let all: Vec<String> = failures.iter().map(|(label, why)| format!("[{label}] {why}")).collect();
        panic!(
            "{name}: failed on [{}]:\n{}\npremain stderr (last lines, newest first):\n{}",
            failed.join(", "),
            all.join("\n"),
            tail.join("\n")
        );
    }
    assert!(status.success(), "premain exited with {status}\n{stderr}");
}

type Check = Box<dyn Fn(&Value) -> Result<(), String>>;

/// What one CPython's runs must produce.
struct Plan {
    label: String,
    alerts: Vec<Want>,
    /// Processes that must raise no alert (of the rule, when given).
    quiet: Vec<(Vec<u32>, Option<&'static str>)>,
    /// Processes that must raise exactly one alert of the rule.
    single: Vec<(u32, &'static str)>,
}

/// An alert of `pid` with `rule` that passes every check.
struct Want {
    pid: u32,
    rule: &'static str,
    checks: Vec<Check>,
}

impl Want {
    fn verdict(&self, alert: &Value) -> Result<(), String> {
        field(alert, "/rule", &json!(self.rule))?;
        self.checks.iter().try_for_each(|c| c(alert))
    }
}

impl Plan {
    fn alert(&mut self, pid: u32, rule: &'static str, checks: Vec<Check>) {
        self.alerts.push(Want { pid, rule, checks });
    }

    /// After premain's sentinel (everything done before it has been alerted), no alert of
    /// `pids` (with `rule`, when given) exists.
    fn none(&mut self, pids: Vec<u32>, rule: Option<&'static str>) {
        self.quiet.push((pids, rule));
    }

    /// After premain's sentinel, and after the credential file watch has given up waiting for
    /// a kernel record of what it saw, `pid` has exactly one alert of `rule`.
    fn once(&mut self, pid: u32, rule: &'static str) {
        self.single.push((pid, rule));
    }
}

/// How long the file watch waits for a kernel program's record of an open it saw, plus the
/// tick that acts on it (`daemon/watch.rs`).
const WATCH_GIVES_UP: Duration = Duration::from_millis(2500);

/// Waits until every wanted alert came or [`EVENT_TIMEOUT`] passed, then (for the controls)
/// for the sentinel; returns each CPython's failures with the alerts its processes did raise.
fn judge(premain: &Premain, plans: &[Plan]) -> Vec<(String, String)> {
    let wants: Vec<(&Plan, &Want)> =
        plans.iter().flat_map(|p| p.alerts.iter().map(move |w| (p, w))).collect();
    let mut found: Vec<Option<Value>> = vec![None; wants.len()];
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let alerts = premain.alerts();
        for ((_, want), slot) in wants.iter().zip(found.iter_mut()).filter(|(_, f)| f.is_none()) {
            *slot =
                alerts.iter().find(|a| a["process"]["pid"] == want.pid && want.verdict(a).is_ok()).cloned();
        }
        if found.iter().all(Option::is_some) || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    if plans.iter().any(|p| !p.single.is_empty()) {
        thread::sleep(WATCH_GIVES_UP);
    }
    if plans.iter().any(|p| !p.quiet.is_empty() || !p.single.is_empty()) {
        premain.sentinel();
    }
    let alerts = premain.alerts();
    let of = |pid: u32| alerts.iter().filter(move |a| a["process"]["pid"] == pid);
    let mut failures = Vec::new();
    for ((plan, want), got) in wants.iter().zip(&found) {
        if let Some(alert) = got {
            println!("[{}] {} alert: {}", plan.label, want.rule, brief(alert));
            continue;
        }
        let seen: Vec<String> = of(want.pid)
            .map(|a| format!("    {}\n      -> {}", brief(a), want.verdict(a).unwrap_err()))
            .collect();
        let seen = if seen.is_empty() { "    (none)".to_owned() } else { seen.join("\n") };
        failures.push((
            plan.label.clone(),
            format!(
                "no matching {} alert for pid {} within {EVENT_TIMEOUT:?}; its alerts:\n{seen}",
                want.rule, want.pid
            ),
        ));
    }
    for plan in plans {
        for (pid, rule) in &plan.single {
            let all: Vec<String> =
                of(*pid).filter(|a| a["rule"] == *rule).map(|a| format!("    {}", brief(a))).collect();
            if all.len() != 1 {
                failures.push((
                    plan.label.clone(),
                    format!("{} {rule} alerts of pid {pid}, not 1:\n{}", all.len(), all.join("\n")),
                ));
            }
        }
        for (pids, rule) in &plan.quiet {
            let extra: Vec<String> = pids
                .iter()
                .flat_map(|pid| of(*pid))
                .filter(|a| rule.is_none_or(|r| a["rule"] == r))
                .map(|a| format!("    {}", brief(a)))
                .collect();
            if !extra.is_empty() {
                failures.push((plan.label.clone(), format!("unexpected alerts:\n{}", extra.join("\n"))));
            }
        }
    }
    failures
}

/// `alert[pointer] == want`, as a readable error.
fn field(alert: &Value, pointer: &str, want: &Value) -> Result<(), String> {
    let got = alert.pointer(pointer).unwrap_or(&Value::Null);
    if got == want { Ok(()) } else { Err(format!("{pointer} is {got}, not {want}")) }
}

/// Pre-main, from the hook `.pth`: what every alert here must say about its origin.
fn from_hook(stage: &Stage) -> Check {
    let pth = text(&stage.pth);
    Box::new(move |a| {
        field(a, "/phase", &json!("startup"))?;
        field(a, "/culprit/kind", &json!("pth"))?;
        field(a, "/culprit/path", &json!(pth))
    })
}

/// An alert without its process details (the ancestry holds whole command lines).
fn brief(alert: &Value) -> Value {
    json!({
        "rule": alert["rule"],
        "severity": alert["severity"],
        "phase": alert["phase"],
        "culprit": {"kind": alert["culprit"]["kind"], "path": alert["culprit"]["path"]},
        "pid": alert["process"]["pid"],
        "action": alert["action"],
    })
}

/// A credential read as the contract describes it: `path` the real (canonical) file, or the
/// link's own name for a hard link; `requested` the caller's string when it differs.
struct Read<'a> {
    path: &'a Path,
    requested: Option<String>,
    syscall: &'a str,
}

fn credential(stage: &Stage, want: Read<'_>) -> Check {
    let ino = fs::metadata(&stage.bait).unwrap().ino();
    let path = text(want.path);
    // Equal to `path` is the same as no string: then the field is absent or null.
    let requested = want.requested.filter(|r| *r != path).map_or(Value::Null, Value::from);
    let syscall = want.syscall.to_owned();
    Box::new(move |a| {
        field(a, "/action/type", &json!("open"))?;
        field(a, "/action/path", &json!(path))?;
        field(a, "/action/requested", &requested)?;
        field(a, "/action/category", &json!("aws"))?;
        field(a, "/action/ino", &json!(ino))?;
        field(a, "/action/syscall", &json!(syscall))?;
        if a["action"]["dev"].is_null() { Err("/action/dev is missing".to_owned()) } else { Ok(()) }
    })
}

/// Wants the credential-read alert of `ran` described by `want`.
fn want_credential(plan: &mut Plan, stage: &Stage, ran: &Ran, want: Read<'_>) {
    plan.alert(ran.pid, "credential-read", vec![from_hook(stage), credential(stage, want)]);
}

/// A plain `open()` of the credential: the baseline every evasion below is a detour from
/// (it also proves the hook's alerts carry the `.pth` culprit and the `startup` phase).
#[test]
fn baseline_plain_open_reads_credentials() {
    on_every_python("baseline", |stage, plan| {
        let reader = stage.dir.path().join("plain_read.py");
        fs::write(&reader, PLAIN_READ).unwrap();
        let ran = stage.premain_script(&reader, &[stage.bait.as_os_str()], &[]);
        stage.assert_read(&ran, &stage.bait);
        let bait = text(&stage.bait);
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/action/type", &json!("open"))?;
                field(a, "/action/path", &json!(bait))?;
                field(a, "/action/category", &json!("aws"))
            }),
        ];
        plan.alert(ran.pid, "credential-read", checks);
    });
}

/// An open that both a kernel program and the credential file watch see is one alert, the
/// kernel program's (the watch only speaks for opens nothing else recorded).
#[test]
fn an_open_the_hooks_record_is_alerted_once() {
    // Nothing folds: a second alert of the same open would be printed.
    on_every_python_under("one alert per open", &["--fold-window-secs", "0"], |premain, stage, plan| {
        let reader = stage.dir.path().join("plain_read.py");
        fs::write(&reader, PLAIN_READ).unwrap();
        // Makes premain watch this HOME's credentials before the payload runs.
        let notes = stage.plain("notes.txt");
        stage.main_script(&reader, &[notes.as_os_str()]);
        premain.sentinel();
        let ran = stage.premain_script(&reader, &[stage.bait.as_os_str()], &[]);
        stage.assert_read(&ran, &stage.bait);
        want_credential(plan, stage, &ran, Read { path: &stage.bait, requested: None, syscall: "openat" });
        plan.once(ran.pid, "credential-read");
    });
}

/// Reads argv[1] with a plain `open()`; prints what the payloads print.
const PLAIN_READ: &str = r#"
import hashlib, json, sys
with open(sys.argv[1], "rb") as f:
    data = f.read()
print(json.dumps({"ok": True, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
"#;

#[test]
fn open_legacy_syscall_reads_credentials() {
    on_every_python("open_legacy", |stage, plan| {
        let ran = stage.premain("open_legacy.py", &[stage.bait.as_os_str()]);
        stage.assert_read(&ran, &stage.bait);
        assert_eq!(ran.result["syscall"], "open");
        want_credential(plan, stage, &ran, Read { path: &stage.bait, requested: None, syscall: "open" });
    });
}

#[test]
fn open_by_handle_reads_credentials() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cannot_run("open_by_handle_at needs CAP_DAC_READ_SEARCH (root)");
    }
    on_every_python("open_by_handle", |stage, plan| {
        let ran = stage.premain("open_by_handle.py", &[stage.bait.as_os_str()]);
        stage.assert_read(&ran, &stage.bait);
        // There is no path string to report: `requested` stays empty.
        want_credential(
            plan,
            stage,
            &ran,
            Read { path: &stage.bait, requested: None, syscall: "open_by_handle_at" },
        );
    });
}

/// `link_tricks.py MODE`: the alert names the real file, and the spelling opened.
fn link_trick(mode: &str) {
    on_every_python(&format!("link_tricks {mode}"), |stage, plan| {
        let ran =
            stage.premain("link_tricks.py", &[stage.bait.as_os_str(), stage.work.as_os_str(), os(mode)]);
        stage.assert_read(&ran, &stage.bait);
        assert_eq!(ran.result["mode"], mode);
        let opened = ran.result["opened"].as_str().expect("opened").to_owned();
        // A hard link is the file under a second name: that name is the path opened.
        let innocent = stage.work.join("innocent");
        let path = if mode == "hardlink" { innocent.as_path() } else { stage.bait.as_path() };
        want_credential(plan, stage, &ran, Read { path, requested: Some(opened), syscall: "openat" });
    });
}

#[test]
fn link_tricks_symlink_reads_credentials() {
    link_trick("symlink");
}

#[test]
fn link_tricks_hardlink_reads_credentials() {
    link_trick("hardlink");
}

#[test]
fn link_tricks_proc_cwd_reads_credentials() {
    link_trick("proc_cwd");
}

#[test]
fn link_tricks_dots_reads_credentials() {
    link_trick("dots");
}

#[test]
fn link_tricks_proc_fd_reads_credentials() {
    link_trick("proc_fd");
}

#[test]
fn link_tricks_proc_root_reads_credentials() {
    link_trick("proc_root");
}

#[test]
fn link_tricks_chdir_race_reads_credentials() {
    link_trick("chdir_race");
}

#[test]
fn phantom_toctou_reads_credentials() {
    // Tries that lose the race can fail on a torn path (ENOENT) whose string is TARGET's: that
    // failed try is an alert too, and the open that got through must have one of its own
    // (folding keeps successful and failed actions apart) with the file's identity.
    on_every_python("phantom_toctou", |stage, plan| {
        let decoy = stage.plain("decoy.txt");
        let ran = stage.premain("phantom_toctou.py", &[stage.bait.as_os_str(), decoy.as_os_str()]);
        stage.assert_read(&ran, &stage.bait);
        assert_eq!(ran.result["opened"], "target");
        // The string at the syscall's entry may have been either spelling (or a torn mix):
        // only the file the kernel opened is fixed, so `requested` is not checked.
        let ino = fs::metadata(&stage.bait).unwrap().ino();
        let bait = text(&stage.bait);
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/action/type", &json!("open"))?;
                field(a, "/action/path", &json!(bait))?;
                field(a, "/action/category", &json!("aws"))?;
                field(a, "/action/ino", &json!(ino))?;
                field(a, "/action/syscall", &json!("openat"))
            }),
        ];
        plan.alert(ran.pid, "credential-read", checks);
    });
}

#[test]
fn sendmmsg_sends_to_loopback() {
    on_every_python("sendmmsg", |stage, plan| {
        let listener = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = listener.local_addr().unwrap().port();
        let ran = stage.premain("sendmmsg.py", &[os(&port.to_string())]);
        assert_eq!(ran.result["messages"], 2, "[{}] {}", stage.label, ran.result);
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut buf = [0u8; 2048];
            let (n, _) =
                listener.recv_from(&mut buf).unwrap_or_else(|e| panic!("[{}] datagram: {e}", stage.label));
            got.push(n);
        }
        assert_eq!(json!(got), ran.result["lengths"], "[{}] the listener got other datagrams", stage.label);
        let addr = format!("127.0.0.1:{port}");
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/action/type", &json!("send"))?;
                field(a, "/action/addr", &json!(addr))?;
                field(a, "/action/port", &json!(port))?;
                field(a, "/action/family", &json!("inet"))?;
                // Each message's destination is the kernel's, and its memory still names it.
                field(a, "/action/destination_rewritten", &Value::Null)
            }),
        ];
        plan.alert(ran.pid, "network-send", checks);
    });
}

/// A TEST-NET-1 address and port the connect's sockaddr is rewritten to during the call.
const DECOY: (&str, u16) = ("192.0.2.1", 9);

/// Phantom on a connect's destination: the sockaddr names the test's listener when the call
/// starts and a decoy by the time it returns (the listener's full accept queue keeps the call
/// waiting for a SYN retransmission). The alert names the listener, the destination the kernel
/// checked, and the decoy the caller's memory held at the return as `requested`.
#[test]
fn connect_toctou_names_the_real_destination() {
    on_every_python("connect_toctou", |stage, plan| {
        let (port, listener) = full_tcp_listener();
        let ran = stage
            .premain("connect_toctou.py", &[os(&port.to_string()), os(DECOY.0), os(&DECOY.1.to_string())]);
        let got = listener.join().expect("the listener");
        let decoy = format!("{}:{}", DECOY.0, DECOY.1);
        let real = format!("127.0.0.1:{port}");
        assert_eq!(ran.result["peer"], json!(real), "[{}] {}", stage.label, ran.result);
        assert_eq!(ran.result["at_return"], json!(decoy), "[{}] {}", stage.label, ran.result);
        let texts: Vec<Value> = got.iter().map(|b| json!(String::from_utf8_lossy(b))).collect();
        assert_eq!(texts, [ran.result["payload"].clone()], "[{}] what the listener got", stage.label);
        let real_port = connect_to(stage, port, None);
        let checks: Vec<Check> = vec![
            real_port,
            Box::new(move |a| {
                field(a, "/action/port", &json!(port))?;
                field(a, "/action/requested", &json!(decoy))?;
                field(a, "/action/destination_rewritten", &json!(true))
            }),
        ];
        plan.alert(ran.pid, "network-connect", checks);
    });
}

/// The same on a UDP `sendto`: the datagram's bytes sit in a userfaultfd page, so the call
/// waits on its fault after the kernel copied the destination, while the payload rewrites the
/// sockaddr to the decoy. The datagram reaches the test's socket; the alert names it.
#[test]
fn sendto_toctou_names_the_real_destination() {
    on_every_python("sendto_toctou", |stage, plan| {
        let listener = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (port_text, decoy_port) = (port.to_string(), DECOY.1.to_string());
        let args = [os(&port_text), os(DECOY.0), os(&decoy_port), os("--sendto")];
        let ran = stage.premain("connect_toctou.py", &args);
        let decoy = format!("{}:{}", DECOY.0, DECOY.1);
        assert_eq!(ran.result["at_return"], json!(decoy), "[{}] {}", stage.label, ran.result);
        let mut buf = [0u8; 2048];
        let (n, _) =
            listener.recv_from(&mut buf).unwrap_or_else(|e| panic!("[{}] datagram: {e}", stage.label));
        assert_eq!(json!(String::from_utf8_lossy(&buf[..n])), ran.result["payload"], "[{}]", stage.label);
        let addr = format!("127.0.0.1:{port}");
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/action/type", &json!("send"))?;
                field(a, "/action/addr", &json!(addr))?;
                field(a, "/action/port", &json!(port))?;
                field(a, "/action/requested", &json!(decoy))?;
                field(a, "/action/destination_rewritten", &json!(true))
            }),
        ];
        plan.alert(ran.pid, "network-send", checks);
    });
}

/// A loopback listener whose accept queue is full (backlog 1, two connections waiting), so
/// the kernel drops the next SYN. Once a connect to it is under way (`SYN_SENT` in
/// `/proc/net/tcp`), the thread accepts the waiting connections, and the connect gets through
/// at its SYN retransmission (1 s). Returns the port and the thread, which gives the bytes of
/// every connection that sent any.
fn full_tcp_listener() -> (u16, thread::JoinHandle<Vec<Vec<u8>>>) {
    use std::os::fd::AsRawFd as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    // SAFETY: our listening socket; listen() again only sets its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0, "listen");
    let addr = listener.local_addr().unwrap();
    let port = addr.port();
    let waiting: Vec<_> =
        (0..2).map(|_| std::net::TcpStream::connect(addr).expect("fill the accept queue")).collect();
    let handle = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !syn_sent_to(port) {
            assert!(Instant::now() < deadline, "no connect to port {port} came");
            thread::sleep(Duration::from_millis(5));
        }
        // Its first SYN is dropped by now.
        thread::sleep(Duration::from_millis(100));
        drop(waiting);
        listener.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        for _ in 0..3 {
            let mut conn = loop {
                match listener.accept() {
                    Ok((conn, _)) => break conn,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept on port {port}: {e}"),
                }
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let _ = conn.read_to_end(&mut buf);
            if !buf.is_empty() {
                got.push(buf);
            }
        }
        got
    });
    (port, handle)
}

/// Some socket is connecting to 127.0.0.1:`port` (`/proc/net/tcp`: state 02, `SYN_SENT`).
fn syn_sent_to(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/tcp").unwrap_or_default().lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2) == Some(&want.as_str()) && fields.get(3) == Some(&"02")
    })
}

/// `process_vm_readv.py --serve MARKER` as a plain runtime process: the victim whose memory
/// the payloads read. Killed on drop if still running.
struct Victim {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    addr: u64,
    len: u64,
    marker: String,
}

impl Victim {
    fn start(stage: &Stage) -> Self {
        let marker = format!("premain-marker-{}", random_hex());
        let mut child = stage
            .base(&[])
            .arg(payload("process_vm_readv.py"))
            .args(["--serve", &marker])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the victim");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the victim's line");
        let serve = parse_result(&stage.label, "the victim", &line, "");
        assert_eq!(serve["pid"], child.id(), "[{}] {serve}", stage.label);
        Self {
            pid: child.id(),
            addr: serve["addr"].as_u64().expect("addr"),
            len: serve["len"].as_u64().expect("len"),
            child,
            stdin,
            marker,
        }
    }

    /// Neither stopped nor traced after the payload let go of it.
    fn assert_running(&self, label: &str) {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("the victim's stat");
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next().unwrap()).unwrap();
        assert!(!matches!(state, 'T' | 't' | 'Z' | 'X'), "[{label}] the victim is left in state {state}");
    }

    /// Closes its stdin and checks that it exits 0.
    fn finish(mut self, label: &str) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "[{label}] the victim exited {status}");
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("[{label}] the victim did not exit once its stdin closed");
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a memory payload against a fresh victim; expects `process-memory` with `via`.
fn process_memory(
    name: &str,
    via: &str,
    args: impl Fn(&Victim) -> Vec<String>,
    check: impl Fn(&Victim, &Ran),
) {
    on_every_python(&format!("process-memory {via}"), |stage, plan| {
        let victim = Victim::start(stage);
        let argv = args(&victim);
        let argv: Vec<&OsStr> = argv.iter().map(OsStr::new).collect();
        let ran = stage.premain(name, &argv);
        check(&victim, &ran);
        victim.assert_running(&stage.label);
        let target = victim.pid;
        let via = via.to_owned();
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/severity", &json!("critical"))?;
                field(a, "/action/type", &json!("process-memory"))?;
                field(a, "/action/target_pid", &json!(target))?;
                field(a, "/action/via", &json!(via))
            }),
        ];
        plan.alert(ran.pid, "process-memory", checks);
        victim.finish(&stage.label);
    });
}

#[test]
fn proc_mem_reads_another_process() {
    process_memory(
        "proc_mem.py",
        "proc-mem",
        |v| vec![v.pid.to_string(), v.marker.clone()],
        |v, ran| {
            assert_eq!(ran.result["marker"], v.marker.as_str(), "{}", ran.result);
            assert_eq!(ran.result["found"], true, "proc_mem did not find the marker: {}", ran.result);
        },
    );
}

#[test]
fn process_vm_readv_reads_another_process() {
    process_memory(
        "process_vm_readv.py",
        "process_vm_readv",
        |v| vec![v.pid.to_string(), v.addr.to_string(), v.len.to_string()],
        |v, ran| {
            assert_eq!(ran.result["text"], v.marker.as_str(), "{}", ran.result);
            assert_eq!(ran.result["bytes"], v.len, "{}", ran.result);
        },
    );
}

#[test]
fn ptrace_attach_stops_another_process() {
    process_memory(
        "ptrace_attach.py",
        "ptrace-attach",
        |v| vec![v.pid.to_string()],
        |v, ran| {
            assert_eq!(ran.result["pid"], v.pid, "{}", ran.result);
            assert_eq!(ran.result["request"], "PTRACE_ATTACH", "{}", ran.result);
            assert_eq!(ran.result["detached"], true, "{}", ran.result);
        },
    );
}

#[test]
fn ptrace_seize_interrupts_another_process() {
    process_memory(
        "ptrace_attach.py",
        "ptrace-seize",
        |v| vec![v.pid.to_string(), "--seize".to_owned()],
        |v, ran| {
            assert_eq!(ran.result["pid"], v.pid, "{}", ran.result);
            assert_eq!(ran.result["request"], "PTRACE_SEIZE+PTRACE_INTERRUPT", "{}", ran.result);
            assert_eq!(ran.result["detached"], true, "{}", ran.result);
        },
    );
}

/// `persist.py KIND`: the file it wrote holds what it says, and premain names that file.
/// `target` is the file the alert must name, relative to the fake HOME (`~/...`) or to the
/// stand-in site-packages dir (`site/...`).
fn persistence(kind: &str, target: &str, category: &str, action: &str) {
    on_every_python(&format!("persistence {kind}"), |stage, plan| {
        let site = stage.dir.path().join("standin/lib/python3/site-packages");
        fs::create_dir_all(&site).unwrap();
        let site = fs::canonicalize(site).unwrap();
        let mut args = vec![os(kind), stage.home.as_os_str()];
        if matches!(kind, "pth" | "pth_rename" | "sitecustomize") {
            args.push(site.as_os_str());
        }
        // persist.py refuses to write into $HOME (the real home, it assumes): give it another.
        let login = stage.dir.path().join("login");
        fs::create_dir(&login).unwrap();
        let ran = stage.premain_env("persist.py", &args, &[("HOME", login.as_os_str())]);
        let target = match target.split_once('/') {
            Some(("~", rest)) => stage.home.join(rest),
            Some(("site", rest)) => site.join(rest),
            _ => panic!("bad target {target}"),
        };
        // The written file (for a symlink, the file it points to) holds the reported bytes.
        let written = PathBuf::from(ran.result["path"].as_str().expect("path"));
        assert_eq!(ran.result["sha256"], stage.sha256(&written), "[{}] {}", stage.label, ran.result);
        if kind == "symlink_bashrc" {
            assert_eq!(fs::read_link(&target).unwrap(), written, "[{}] {}", stage.label, ran.result);
        } else {
            assert_eq!(written, target, "[{}] {}", stage.label, ran.result);
        }
        let (path, category, action) = (text(&target), category.to_owned(), action.to_owned());
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/action/type", &json!(action))?;
                field(a, "/action/path", &json!(path))?;
                field(a, "/action/category", &json!(category))
            }),
        ];
        plan.alert(ran.pid, "persistence", checks);
    });
}

#[test]
fn persistence_bashrc() {
    persistence("bashrc", "~/.bashrc", "shell-rc", "open");
}

#[test]
fn persistence_profile() {
    persistence("profile", "~/.profile", "shell-rc", "open");
}

#[test]
fn persistence_authorized_keys() {
    persistence("authorized_keys", "~/.ssh/authorized_keys", "ssh-authorized-keys", "open");
}

#[test]
fn persistence_systemd_user() {
    persistence("systemd_user", "~/.config/systemd/user/evil.service", "systemd-unit", "open");
}

#[test]
fn persistence_autostart() {
    persistence("autostart", "~/.config/autostart/evil.desktop", "xdg-autostart", "open");
}

#[test]
fn persistence_pth() {
    persistence("pth", "site/evil.pth", "python-pth", "open");
}

#[test]
fn persistence_pth_rename() {
    // Written as .evil.tmp (no rule matches that name), then renamed into place.
    persistence("pth_rename", "site/x.pth", "python-pth", "rename");
}

#[test]
fn persistence_sitecustomize() {
    persistence("sitecustomize", "site/sitecustomize.py", "python-customize", "open");
}

#[test]
fn persistence_symlink_bashrc() {
    // ~/.evil_rc is written first (a plain file); the persistence is the link ~/.bashrc.
    persistence("symlink_bashrc", "~/.bashrc", "shell-rc", "symlink");
}

#[test]
fn raw_sockets() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cannot_run("raw sockets need CAP_NET_RAW (root)");
    }
    on_every_python("raw_socket", |stage, plan| {
        let ran = stage.premain("raw_socket.py", &[os("--packet")]);
        let families: Vec<&Value> =
            ran.result["sockets"].as_array().unwrap().iter().map(|s| &s["family"]).collect();
        assert_eq!(families, ["AF_INET", "AF_PACKET"], "[{}] {}", stage.label, ran.result);
        for family in ["inet", "packet"] {
            let checks: Vec<Check> = vec![
                from_hook(stage),
                Box::new(move |a| {
                    field(a, "/action/type", &json!("socket"))?;
                    field(a, "/action/family", &json!(family))
                }),
            ];
            plan.alert(ran.pid, "raw-socket", checks);
        }
    });
}

/// Control: the payloads as main scripts are runtime code, which never alerts.
#[test]
fn control_payloads_as_main_raise_nothing() {
    on_every_python("control runtime", |stage, plan| {
        let listener = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = listener.local_addr().unwrap().port().to_string();
        let victim = Victim::start(stage);
        let victim_pid = victim.pid.to_string();
        let login = stage.dir.path().join("login");
        fs::create_dir(&login).unwrap();
        let mut pids = Vec::new();
        let ran = stage.main("open_legacy.py", &[stage.bait.as_os_str()], &[]);
        stage.assert_read(&ran, &stage.bait);
        pids.push(ran.pid);
        let ran = stage.main(
            "link_tricks.py",
            &[stage.bait.as_os_str(), stage.work.as_os_str(), os("symlink")],
            &[],
        );
        stage.assert_read(&ran, &stage.bait);
        pids.push(ran.pid);
        pids.push(stage.main("sendmmsg.py", &[os(&port)], &[]).pid);
        pids.push(stage.main("proc_mem.py", &[os(&victim_pid), os(&victim.marker)], &[]).pid);
        pids.push(stage.main("ptrace_attach.py", &[os(&victim_pid)], &[]).pid);
        let home = [("HOME", login.as_os_str())];
        pids.push(stage.main("persist.py", &[os("bashrc"), stage.home.as_os_str()], &home).pid);
        pids.push(stage.main("raw_socket.py", &[os("--packet")], &[]).pid);
        let ran = stage.main("io_uring_open_read.py", &[stage.bait.as_os_str()], &[]);
        stage.assert_read(&ran, &stage.bait);
        pids.push(ran.pid);
        plan.none(pids, None);
        victim.finish(&stage.label);
    });
}

/// Control: the same pre-main tricks on a file that is not a credential raise no
/// credential-read alert.
#[test]
fn control_tricks_on_plain_files_raise_no_credential_alert() {
    on_every_python("control plain reads", |stage, plan| {
        let notes = stage.plain("notes.txt");
        let mut pids = Vec::new();
        let ran = stage.premain("open_legacy.py", &[notes.as_os_str()]);
        stage.assert_read(&ran, &notes);
        pids.push(ran.pid);
        for mode in ["symlink", "hardlink", "proc_cwd", "chdir_race"] {
            let ran = stage.premain("link_tricks.py", &[notes.as_os_str(), stage.work.as_os_str(), os(mode)]);
            stage.assert_read(&ran, &notes);
            pids.push(ran.pid);
        }
        for args in [vec![notes.as_os_str()], vec![notes.as_os_str(), os("--direct")]] {
            let ran = stage.premain("io_uring_open_read.py", &args);
            stage.assert_read(&ran, &notes);
            pids.push(ran.pid);
        }
        plan.none(pids, Some("credential-read"));
    });
}

/// Pre-main writes of harmless files with the moves persistence uses (append, create in
/// new dirs, write-then-rename, symlink), for the persistence control.
const PLAIN_WRITES: &str = r#"
import hashlib, json, os, sys
home, site = sys.argv[1], sys.argv[2]
line = b"harmless\n"
paths = []
def append(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as f:
        f.write(line)
    paths.append(path)
append(os.path.join(home, "notes.txt"))
append(os.path.join(home, ".config", "myapp", "settings.ini"))
append(os.path.join(site, "README.txt"))
with open(os.path.join(home, "draft.tmp"), "wb") as f:
    f.write(line)
os.rename(os.path.join(home, "draft.tmp"), os.path.join(home, "draft.txt"))
paths.append(os.path.join(home, "draft.txt"))
os.symlink(os.path.join(home, "notes.txt"), os.path.join(home, "notes-link.txt"))
print(json.dumps({"ok": True, "paths": paths, "sha256": hashlib.sha256(line).hexdigest()}))
"#;

/// Control: pre-main writes that are not persistence raise no persistence alert.
#[test]
fn control_plain_writes_raise_no_persistence_alert() {
    on_every_python("control plain writes", |stage, plan| {
        let writer = stage.dir.path().join("plain_writes.py");
        fs::write(&writer, PLAIN_WRITES).unwrap();
        let site = stage.dir.path().join("standin/lib/python3/site-packages");
        fs::create_dir_all(&site).unwrap();
        let ran = stage.premain_script(&writer, &[stage.home.as_os_str(), site.as_os_str()], &[]);
        for path in ran.result["paths"].as_array().unwrap() {
            let path = Path::new(path.as_str().unwrap());
            assert_eq!(ran.result["sha256"], stage.sha256(path), "[{}] {}", stage.label, path.display());
        }
        assert!(stage.home.join("draft.txt").is_file() && stage.home.join("notes-link.txt").is_symlink());
        plan.none(vec![ran.pid], Some("persistence"));
    });
}

/// `creat(2)` (x86_64 number 85, which no `openat` hook sees) of a shell start-up file.
#[test]
fn creat_legacy_writes_persistence() {
    on_every_python("creat_legacy", |stage, plan| {
        let rc = stage.home.join(".bashrc");
        let ran = stage.premain("creat_legacy.py", &[rc.as_os_str()]);
        assert_eq!(ran.result["sha256"], stage.sha256(&rc), "[{}] {}", stage.label, ran.result);
        let path = text(&rc);
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/action/type", &json!("open"))?;
                field(a, "/action/path", &json!(path))?;
                field(a, "/action/syscall", &json!("creat"))?;
                field(a, "/action/category", &json!("shell-rc"))
            }),
        ];
        plan.alert(ran.pid, "persistence", checks);
    });
}

/// The ring itself: its creation is io_uring use whose target the kernel cannot tell.
fn uring_use(stage: &Stage) -> Check {
    let hook = from_hook(stage);
    Box::new(move |a| {
        hook(a)?;
        field(a, "/action/type", &json!("io-uring"))?;
        field(a, "/severity", &json!("medium"))
    })
}

/// `IORING_OP_OPENAT` into a normal fd, then `IORING_OP_READ`: no open syscall at all. The
/// open is walked at its completion, like any other.
#[test]
fn io_uring_open_reads_credentials() {
    on_every_python("io_uring open", |stage, plan| {
        let ran = stage.premain("io_uring_open_read.py", &[stage.bait.as_os_str()]);
        stage.assert_read(&ran, &stage.bait);
        assert_eq!(ran.result["mode"], "fd", "{}", ran.result);
        want_credential(plan, stage, &ran, Read { path: &stage.bait, requested: None, syscall: "io_uring" });
        plan.alert(ran.pid, "io-uring", vec![uring_use(stage)]);
    });
}

/// The same into a fixed (direct) slot: the file never gets an fd, so the name the request
/// carried (the kernel's copy) is what is known.
#[test]
fn io_uring_direct_open_reads_credentials() {
    on_every_python("io_uring direct open", |stage, plan| {
        let ran = stage.premain("io_uring_open_read.py", &[stage.bait.as_os_str(), os("--direct")]);
        stage.assert_read(&ran, &stage.bait);
        assert_eq!(ran.result["mode"], "direct", "{}", ran.result);
        let bait = text(&stage.bait);
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/action/type", &json!("open"))?;
                field(a, "/action/path", &json!(bait))?;
                field(a, "/action/syscall", &json!("io_uring"))?;
                field(a, "/action/category", &json!("aws"))
            }),
        ];
        plan.alert(ran.pid, "credential-read", checks);
    });
}

/// `io_uring_rename.py OP SRCDIR TARGET ANCHOR [--sqpoll]` pre-main (`how`: the anchor, then
/// the flag): the request gave `target` its new name (checked on disk: the renamed or linked
/// inode, the symlink's target, the content's hash); then the `persistence` alert of
/// `category` names `target` with `syscall: "io_uring"`, or, with no category, no persistence
/// alert comes.
fn uring_name(
    stage: &Stage,
    plan: &mut Plan,
    op: &str,
    (srcdir, target): (&Path, &Path),
    how: &[&str],
    category: Option<&str>,
) {
    // The payload refuses to write in $HOME (the real home, it assumes): give it another.
    let login = stage.dir.path().join("login");
    fs::create_dir_all(&login).unwrap();
    let mut args = vec![os(op), srcdir.as_os_str(), target.as_os_str()];
    args.extend(how.iter().copied().map(os));
    let ran = stage.premain_env("io_uring_rename.py", &args, &[("HOME", login.as_os_str())]);
    let label = &stage.label;
    assert_eq!(ran.result["target"], text(target), "[{label}] {}", ran.result);
    assert_eq!(ran.result["sqpoll"], how.contains(&"--sqpoll"), "[{label}] {}", ran.result);
    let source = PathBuf::from(ran.result["source"].as_str().expect("source"));
    let meta = fs::symlink_metadata(target).unwrap_or_else(|e| panic!("[{label}] {}: {e}", target.display()));
    match op {
        "rename" => {
            assert!(!source.exists(), "[{label}] {} is still there", source.display());
            assert_eq!(ran.result["ino"], meta.ino(), "[{label}] {}", ran.result);
        }
        "link" => {
            assert_eq!(ran.result["ino"], meta.ino(), "[{label}] {}", ran.result);
            assert_eq!(meta.nlink(), 2, "[{label}] {}", ran.result);
        }
        _ => assert_eq!(fs::read_link(target).unwrap(), source, "[{label}] {}", ran.result),
    }
    assert_eq!(ran.result["sha256"], stage.sha256(target), "[{label}] {}", ran.result);
    let Some(category) = category else {
        plan.none(vec![ran.pid], Some("persistence"));
        return;
    };
    let (path, category, op) = (text(target), category.to_owned(), op.to_owned());
    // An SQPOLL ring's requests are submitted by its kernel thread, which runs no Python code:
    // the process's phase, no culprit.
    let origin = if how.contains(&"--sqpoll") { from_io_thread(ran.pid) } else { from_hook(stage) };
    let checks: Vec<Check> = vec![
        origin,
        Box::new(move |a| {
            field(a, "/action/type", &json!(op))?;
            field(a, "/action/path", &json!(path))?;
            field(a, "/action/syscall", &json!("io_uring"))?;
            field(a, "/action/category", &json!(category))
        }),
    ];
    plan.alert(ran.pid, "persistence", checks);
    plan.alert(ran.pid, "io-uring", vec![uring_use(stage)]);
}

/// A request submitted by the `IORING_SETUP_SQPOLL` kernel thread of process `pid`, pre-main.
fn from_io_thread(pid: u32) -> Check {
    Box::new(move |a| {
        field(a, "/process/comm", &json!(format!("iou-sqp-{pid}")))?;
        field(a, "/phase", &json!("startup"))?;
        field(a, "/culprit/kind", &json!("unknown"))
    })
}

/// A stand-in site-packages directory of `stage` (no interpreter's path).
fn standin_site(stage: &Stage) -> PathBuf {
    let site = stage.dir.path().join("standin/lib/python3/site-packages");
    fs::create_dir_all(&site).unwrap();
    fs::canonicalize(site).unwrap()
}

/// `IORING_OP_RENAMEAT`, `LINKAT` and `SYMLINKAT` of a harmless file onto persistence targets:
/// no rename, link or symlink syscall. The new name is relative to a dirfd, to the cwd, or
/// absolute; each is the real target in the alert. The last two are submitted by an
/// `IORING_SETUP_SQPOLL` ring's kernel thread (`iou-sqp-<pid>`), a thread of the process that
/// shares its cwd and fd table: the same alert, but the kernel thread runs no Python code, so it has no
/// culprit.
#[test]
fn io_uring_renames_and_links_write_persistence() {
    on_every_python("io_uring names", |stage, plan| {
        let (site, work, home) = (standin_site(stage), stage.work.as_path(), stage.home.as_path());
        uring_name(stage, plan, "rename", (&site, &site.join("x.pth")), &["dirfd"], Some("python-pth"));
        let unit = home.join(".config/systemd/user/evil.service");
        uring_name(stage, plan, "rename", (work, &unit), &["cwd"], Some("systemd-unit"));
        uring_name(stage, plan, "link", (work, &home.join(".bashrc")), &["abs"], Some("shell-rc"));
        uring_name(stage, plan, "symlink", (work, &home.join(".profile")), &["dirfd"], Some("shell-rc"));
        let sqpoll = ["cwd", "--sqpoll"];
        uring_name(stage, plan, "rename", (work, &site.join("z.pth")), &sqpoll, Some("python-pth"));
        let sqpoll = ["dirfd", "--sqpoll"];
        uring_name(stage, plan, "symlink", (work, &site.join("w.pth")), &sqpoll, Some("python-pth"));
    });
}

/// Control: the same io_uring requests onto harmless names raise no persistence alert.
#[test]
fn control_io_uring_renames_to_plain_names_raise_no_persistence_alert() {
    on_every_python("control io_uring names", |stage, plan| {
        let (site, work, home) = (standin_site(stage), stage.work.as_path(), stage.home.as_path());
        uring_name(stage, plan, "rename", (&site, &site.join("x.txt")), &["dirfd"], None);
        uring_name(stage, plan, "rename", (work, &home.join("notes-renamed.txt")), &["cwd"], None);
        uring_name(stage, plan, "link", (work, &home.join(".bashrc.bak")), &["abs"], None);
        uring_name(stage, plan, "symlink", (work, &home.join("notes-link")), &["dirfd"], None);
        uring_name(stage, plan, "rename", (work, &site.join("z.txt")), &["cwd", "--sqpoll"], None);
    });
}

/// A loopback TCP listener that accepts `n` connections and hands back what each sent.
fn tcp_listener(n: usize) -> (u16, thread::JoinHandle<Vec<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..n {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let _ = conn.read_to_end(&mut buf);
            got.push(buf);
        }
        got
    });
    (port, handle)
}

fn connect_to(stage: &Stage, port: u16, abi: Option<&'static str>) -> Check {
    let hook = from_hook(stage);
    let addr = format!("127.0.0.1:{port}");
    Box::new(move |a| {
        hook(a)?;
        field(a, "/action/type", &json!("connect"))?;
        field(a, "/action/addr", &json!(addr))?;
        field(a, "/action/abi", &json!(abi))
    })
}

/// `IORING_OP_SOCKET`, `IORING_OP_CONNECT` and a linked `IORING_OP_SEND`: no socket, connect
/// or send syscall.
#[test]
fn io_uring_connect_reaches_loopback() {
    on_every_python("io_uring connect", |stage, plan| {
        let (port, listener) = tcp_listener(1);
        let ran = stage.premain("io_uring_connect.py", &[os(&port.to_string())]);
        let got = listener.join().expect("the listener");
        assert_eq!(json!(String::from_utf8_lossy(&got[0])), ran.result["payload"], "[{}]", stage.label);
        plan.alert(ran.pid, "network-connect", vec![connect_to(stage, port, None)]);
        plan.alert(ran.pid, "io-uring", vec![uring_use(stage)]);
    });
}

/// Runs `test` on every CPython under a premain that follows 32-bit syscalls
/// (`limits.ia32_syscalls`, off by default for what it costs every syscall of the node).
fn on_every_python_ia32(name: &str, test: impl FnMut(&Stage, &mut Plan)) {
    let dir = TempDir::new("ia32-config");
    let config = dir.file("premain.toml", "[limits]\nia32_syscalls = true\n");
    on_every_python_with(name, &["--config", config.to_str().unwrap()], test);
}

/// i386 `open` through `int 0x80` from the 64-bit interpreter: only the raw-syscall
/// tracepoints see it. The same as main code, and on a plain file, raises nothing.
#[test]
fn ia32_open_reads_credentials() {
    on_every_python_ia32("ia32 open", |stage, plan| {
        let abi: Check = Box::new(|a| field(a, "/action/abi", &json!("ia32")));
        ia32_open(stage, plan, None, "open", abi);
    });
}

/// The default configuration follows no 32-bit syscall, yet the credential file watch sees
/// the i386 `open` of a catalogued file: the alert comes from it (`syscall: "unseen"`,
/// `path_resolution: "file-watch"`). The same as main code, and on a plain file, raises nothing.
#[test]
fn ia32_open_reads_credentials_seen_by_the_file_watch() {
    on_every_python_under("ia32 open, default configuration", &[], |premain, stage, plan| {
        let watched: Check = Box::new(|a| field(a, "/action/path_resolution", &json!("file-watch")));
        ia32_open(stage, plan, Some(premain), "unseen", watched);
    });
}

/// 32-bit persistence writes under the default configuration (no raw-syscall programs): the
/// file watch sees the i386 `open(O_WRONLY|O_APPEND)` of `~/.bashrc` (a mark on the file) and
/// the i386 `creat` of a new `~/.config/systemd/user/x.service` (the mark of its directory,
/// made when premain first saw this HOME), and alerts each from the watch with `abi: "ia32"`.
/// Controls: the same writes as main code, and a 32-bit read of `~/.bashrc` pre-main, raise
/// nothing; a native write of `~/.bashrc`, which the watch and the syscall programs both see,
/// is alerted once.
#[test]
fn ia32_persistence_writes_seen_by_the_file_watch() {
    on_every_python_under("ia32 persistence, default configuration", &[], |premain, stage, plan| {
        let rc = stage.home.join(".bashrc");
        fs::write(&rc, format!("# the user's own {}\n", random_hex())).unwrap();
        let units = stage.home.join(".config/systemd/user");
        fs::create_dir_all(&units).unwrap();
        let unit = units.join("x.service");
        let op = |ran: &Ran, i: usize, path: &Path| {
            let done = &ran.result["done"][i];
            assert_eq!(done["path"], text(path), "[{}] {}", stage.label, ran.result);
            assert_eq!(done["sha256"], stage.sha256(path), "[{}] {}", stage.label, ran.result);
            done.clone()
        };
        // The first run with this HOME makes premain look there; the sentinel waits for it.
        let first = stage.main("ia32_persist.py", &[os("read"), rc.as_os_str()], &[]);
        op(&first, 0, &rc);
        premain.sentinel();
        let main_unit = units.join("main.service");
        let args = [os("append"), rc.as_os_str(), os("creat"), main_unit.as_os_str()];
        let main = stage.main("ia32_persist.py", &args, &[]);
        op(&main, 0, &rc);
        op(&main, 1, &main_unit);
        let read = stage.premain("ia32_persist.py", &[os("read"), rc.as_os_str()]);
        op(&read, 0, &rc);
        plan.none(vec![first.pid, main.pid, read.pid], None);

        let before = fs::read_to_string(&rc).unwrap();
        let ran =
            stage.premain("ia32_persist.py", &[os("append"), rc.as_os_str(), os("creat"), unit.as_os_str()]);
        let appended = op(&ran, 0, &rc);
        let line = appended["line"].as_str().unwrap();
        assert_eq!(fs::read_to_string(&rc).unwrap(), format!("{before}{line}"), "[{}] appended", stage.label);
        let created = op(&ran, 1, &unit);
        assert_eq!(
            fs::read_to_string(&unit).unwrap(),
            created["line"].as_str().unwrap(),
            "[{}]",
            stage.label
        );
        for (path, category) in [(&rc, "shell-rc"), (&unit, "systemd-unit")] {
            let path = text(path);
            let ino = fs::metadata(&path).unwrap().ino();
            let checks: Vec<Check> = vec![
                from_hook(stage),
                Box::new(move |a| {
                    field(a, "/action/type", &json!("open"))?;
                    field(a, "/action/path", &json!(path))?;
                    field(a, "/action/category", &json!(category))?;
                    field(a, "/action/ino", &json!(ino))?;
                    field(a, "/action/syscall", &json!("unseen"))?;
                    field(a, "/action/path_resolution", &json!("file-watch"))?;
                    field(a, "/action/abi", &json!("ia32"))
                }),
            ];
            plan.alert(ran.pid, "persistence", checks);
        }

        // A native append (persist.py refuses to write into its own HOME: it gets another).
        let login = stage.dir.path().join("login");
        fs::create_dir(&login).unwrap();
        let before = fs::metadata(&rc).unwrap().len();
        let native = stage.premain_env(
            "persist.py",
            &[os("bashrc"), stage.home.as_os_str()],
            &[("HOME", login.as_os_str())],
        );
        let grown = fs::metadata(&rc).unwrap().len() - before;
        assert_eq!(native.result["bytes"], grown, "[{}] {}", stage.label, native.result);
        let path = text(&rc);
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(move |a| {
                field(a, "/action/path", &json!(path))?;
                field(a, "/action/syscall", &json!("openat"))?;
                field(a, "/action/category", &json!("shell-rc"))
            }),
        ];
        plan.alert(native.pid, "persistence", checks);
        plan.once(native.pid, "persistence");
    });
}

/// `ia32_open.py` as main code, pre-main on a plain file, and pre-main on the credential,
/// whose alert names `syscall` and passes `check`. With `premain`, its sentinel follows the
/// first run: that run (the first with this HOME) made premain look for credentials there.
fn ia32_open(stage: &Stage, plan: &mut Plan, premain: Option<&Premain>, syscall: &str, check: Check) {
    let main = stage.main("ia32_open.py", &[stage.bait.as_os_str()], &[]);
    stage.assert_read(&main, &stage.bait);
    if let Some(premain) = premain {
        premain.sentinel();
    }
    let notes = stage.plain("notes.txt");
    let plain = stage.premain("ia32_open.py", &[notes.as_os_str()]);
    stage.assert_read(&plain, &notes);
    plan.none(vec![main.pid], None);
    plan.none(vec![plain.pid], Some("credential-read"));
    let ran = stage.premain("ia32_open.py", &[stage.bait.as_os_str()]);
    stage.assert_read(&ran, &stage.bait);
    let checks = vec![
        from_hook(stage),
        credential(stage, Read { path: &stage.bait, requested: None, syscall }),
        check,
    ];
    plan.alert(ran.pid, "credential-read", checks);
}

/// A hard link to the credential that premain did not see being made (made by this test, a
/// process premain does not track; a link made before premain started is the same case):
/// premain knows the catalogued file by inode, so a plain `open()` of the link is a
/// credential read with `alias_of` naming the file. The same as main code raises nothing.
#[test]
fn hardlink_premain_did_not_see_made_reads_credentials() {
    on_every_python("hard link made out of sight", |stage, plan| {
        let link = stage.work.join("quarterly-report.txt");
        fs::hard_link(&stage.bait, &link).unwrap();
        let reader = stage.dir.path().join("plain_read.py");
        fs::write(&reader, PLAIN_READ).unwrap();
        let main = stage.main_script(&reader, &[link.as_os_str()]);
        stage.assert_read(&main, &stage.bait);
        plan.none(vec![main.pid], None);
        let ran = stage.premain_script(&reader, &[link.as_os_str()], &[]);
        stage.assert_read(&ran, &stage.bait);
        let bait = text(&stage.bait);
        let alias: Check = Box::new(move |a| field(a, "/action/alias_of", &json!(bait)));
        let checks = vec![
            from_hook(stage),
            credential(stage, Read { path: &link, requested: None, syscall: "openat" }),
            alias,
        ];
        plan.alert(ran.pid, "credential-read", checks);
    });
}

/// i386 `socketcall` (socket, connect, send), and the direct i386 socket/connect/sendto.
#[test]
fn ia32_socketcall_connects_to_loopback() {
    on_every_python_ia32("ia32 socketcall", |stage, plan| ia32_connects(stage, plan, true));
}

/// The same connects under a premain without the raw-syscall programs (the default): the
/// cgroup programs see them, with the kernel's copy of the address (the outcome is not known
/// there). The same as main code raises nothing.
#[test]
fn ia32_socketcall_connects_seen_by_the_cgroup_programs() {
    on_every_python("ia32 socketcall, default configuration", |stage, plan| {
        let (port, listener) = tcp_listener(1);
        let main = stage.main("ia32_socketcall.py", &[os(&port.to_string())], &[]);
        listener.join().expect("the listener");
        plan.none(vec![main.pid], None);
        ia32_connects(stage, plan, false);
    });
}

/// 32-bit raw sockets (socketcall and the direct i386 `socket`) under the default
/// configuration: the `cgroup/sock_create` program sees them; fails when it is not attached.
#[test]
fn ia32_raw_sockets_seen_by_the_cgroup_program() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cannot_run("raw sockets need CAP_NET_RAW (root)");
    }
    on_every_python("ia32 raw sockets, default configuration", |stage, plan| {
        let ran = stage.premain("ia32_socketcall.py", &[os("--raw")]);
        assert_eq!(
            ran.result["sockets"].as_array().map(Vec::len),
            Some(2),
            "[{}] {}",
            stage.label,
            ran.result
        );
        let checks: Vec<Check> = vec![
            from_hook(stage),
            Box::new(|a| {
                field(a, "/action/type", &json!("socket"))?;
                field(a, "/action/family", &json!("inet"))?;
                field(a, "/action/socket_type", &json!("raw"))
            }),
        ];
        plan.alert(ran.pid, "raw-socket", checks);
        plan.none(vec![stage.main("ia32_socketcall.py", &[os("--raw")], &[]).pid], None);
    });
}

/// Connects by both i386 routes, each wanting its alert; `outcome`: whether the alert knows
/// the call's result (else it says 0).
fn ia32_connects(stage: &Stage, plan: &mut Plan, outcome: bool) {
    for mode in [None, Some("--direct")] {
        let (port, listener) = tcp_listener(1);
        let port_text = port.to_string();
        let mut args = vec![os(&port_text)];
        args.extend(mode.map(os));
        let ran = stage.premain("ia32_socketcall.py", &args);
        let got = listener.join().expect("the listener");
        assert_eq!(json!(String::from_utf8_lossy(&got[0])), ran.result["payload"], "[{}]", stage.label);
        let result = if outcome { Value::Null } else { json!(0) };
        let known: Check =
            Box::new(move |a| if result.is_null() { Ok(()) } else { field(a, "/action/result", &result) });
        plan.alert(ran.pid, "network-connect", vec![connect_to(stage, port, Some("ia32")), known]);
    }
}
