//! Holding: a process that executes a file premain has never judged waits until premain has
//! judged it (and attached CPython probes). With the exec watch (the default) `execve` itself
//! waits, invisibly: an interactive shell shows nothing, and a premain killed meanwhile lets the
//! exec go on. The fallback (`limits.exec_watch = false`, or no fanotify exec marks) stops the
//! process before its first instruction and resumes it; a premain killed while holding leaves
//! processes stopped, and the next one resumes them.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{Premain, TempDir, checked, clean, script};
use serde_json::Value;

fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Polls `pred` for up to 10 s.
fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh copy of Debian's static CPython (a new file premain has never judged), named like
/// an interpreter: those are the executables the kernel holds.
fn fresh_python(dir: &Path) -> Command {
    let copy = dir.join("python3-fresh");
    fs::copy(PYTHON, &copy).expect("copy python");
    let mut cmd = Command::new(copy);
    cmd.args(["-c", "pass"]);
    cmd
}

const PYTHON: &str = "/usr/bin/python3.11";

fn exited(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
}

/// A configuration that turns the exec watch off: the SIGSTOP hold is the fallback.
fn fallback_config(dir: &Path) -> String {
    let config = dir.join("fallback.toml");
    fs::write(&config, "[limits]\nexec_watch = false\n").unwrap();
    config.to_str().unwrap().to_owned()
}

/// A `python -m venv --copies` made now: its interpreter is a file premain has never judged.
fn fresh_venv(dir: &Path, name: &str) -> PathBuf {
    let venv = dir.join(name);
    checked(
        clean(PYTHON).args(["-m", "venv", "--copies", "--without-pip"]).arg(&venv),
        "create a --copies venv",
    );
    venv
}

/// Runs `lines` in an interactive bash (job control on) on a pseudo-terminal; returns what the
/// terminal showed.
fn interactive_shell(lines: &[String]) -> String {
    let output =
        checked(clean(PYTHON).arg(script("pty_shell.py")).args(lines), "an interactive bash on a pty");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_first_run_in_an_interactive_shell_is_not_stopped() {
    let premain = Premain::start_alerts(&[]);
    let dir = TempDir::new("pty");
    let (first, second) = (fresh_venv(dir.path(), "first"), fresh_venv(dir.path(), "second"));
    // Quoted apart so that the terminal's echo of the command does not show the words.
    let shown = interactive_shell(&[
        format!("{}/bin/python -c 'print(1)'; echo \"sta\"\"tus=$?\"", first.display()),
        format!("{}/bin/python -c 'print(2)' && echo \"ne\"\"xt\"", second.display()),
    ]);
    assert!(!shown.contains("Stopped"), "the first run was stopped:\n{shown}");
    assert!(shown.contains("status=0"), "the first run's status:\n{shown}");
    assert!(shown.lines().any(|l| l.trim() == "next"), "`&&` did not go on:\n{shown}");
    assert!(premain.metric(r#"premain_exec_decisions_total{outcome="python"}"#) >= 2.0);
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn a_first_run_is_phased_by_its_probes() {
    let premain = Premain::start_alerts(&[]);
    let dir = TempDir::new("first-run");
    let venv = fresh_venv(dir.path(), "venv");
    let credentials = dir.path().join("home/.aws/credentials");
    fs::create_dir_all(credentials.parent().unwrap()).unwrap();
    fs::write(&credentials, "[default]\naws_access_key_id = bait\n").unwrap();
    let site = fs::read_dir(venv.join("lib")).unwrap().next().unwrap().unwrap().path().join("site-packages");
    fs::write(site.join("evil.pth"), "import os; open(os.path.expanduser('~/.aws/credentials')).read()\n")
        .unwrap();
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", "pass"])
        .env("HOME", dir.path().join("home"))
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let alert = premain.wait_for("the .pth's credential read", |v: &Value| {
        v["kind"] == "alert"
            && v["process"]["pid"] == pid
            && v["action"]["path"] == credentials.to_str().unwrap()
    });
    assert_eq!(alert["phase"], "startup", "{alert}");
    assert_eq!(
        alert["phase_basis"], "probes",
        "the first run had its probes from its first instruction: {alert}"
    );
    assert_eq!(alert["culprit"]["kind"], "pth", "{alert}");
    let (status, _) = premain.stop();
    assert!(status.success());
}

/// Starts `program` without waiting for its exec to succeed, as `Command::spawn` does (that
/// would wait as long as the exec does); returns its pid.
fn spawn_unwaited(program: &Path, args: &[&str]) -> i32 {
    use std::{ffi::CString, os::unix::ffi::OsStrExt as _};
    let path = CString::new(program.as_os_str().as_bytes()).unwrap();
    let argv: Vec<CString> =
        std::iter::once(path.clone()).chain(args.iter().map(|a| CString::new(*a).unwrap())).collect();
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    // SAFETY: the child only calls async-signal-safe functions (execv, _exit) on memory
    // prepared before the fork.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            libc::execv(path.as_ptr(), pointers.as_ptr());
            libc::_exit(127);
        }
        pid
    }
}

/// The exit status of child `pid` once it has exited.
fn reaped(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: a valid out-pointer.
    let n = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
    (n == pid).then_some(status)
}

#[test]
fn an_exec_waiting_for_a_killed_premain_goes_on() {
    // The loop is stalled: the exec waits for a decision that does not come before the kill.
    let premain = Premain::start_alerts(&["--debug-stall-reader-ms", "60000"]);
    let dir = TempDir::new("killed");
    let copy = dir.path().join("python3-fresh");
    fs::copy(PYTHON, &copy).expect("copy python");
    let pid = spawn_unwaited(&copy, &["-c", "pass"]);
    thread::sleep(Duration::from_millis(300));
    // Still inside execve, waiting, and not stopped.
    let syscall = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    assert!(syscall.starts_with("59 ") || syscall.starts_with("322 "), "not waiting in execve: {syscall}");
    assert_ne!(state(pid as u32), Some('T'), "the exec watch stopped the process");
    assert_eq!(reaped(pid), None, "the exec did not wait");
    // premain takes seconds to be gone (its programs' teardown); the exec goes on well before.
    let killed = Instant::now();
    premain.signal(libc::SIGKILL);
    let mut exit = None;
    eventually("the waiting exec to go on once premain is killed", || {
        exit = reaped(pid);
        exit.is_some()
    });
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "the exec waited {:?} after the kill",
        killed.elapsed()
    );
    let (status, _) = premain.stop_with(libc::SIGKILL);
    assert!(!status.success());
    assert_eq!(exit, Some(0), "the interpreter ran and succeeded");
}

/// The line premain keeps for `path`'s current version in its verdict file.
fn verdict_line(path: &Path, verdict: &str) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let m = fs::metadata(path).unwrap();
    format!(
        "{} {} {} {}.{} {}.{} {verdict}\n",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

#[test]
fn verdicts_survive_a_restart() {
    let dir = TempDir::new("verdicts");
    let state = dir.path().join("state");
    let config = ["--state-dir", state.to_str().unwrap()];
    let program = dir.path().join("fresh-true");
    fs::copy("/bin/true", &program).unwrap();
    let premain = Premain::start_alerts(&config);
    assert!(Command::new(&program).status().unwrap().success());
    let kept = state.join("verdicts");
    eventually("the new program's verdict kept", || {
        fs::read_to_string(&kept).is_ok_and(|k| k.contains(&verdict_line(&program, "other")))
    });
    assert!(premain.stop().0.success());

    // A restarted premain takes what the file says without reading the executable: shown with
    // a CPython copy the file says is not Python (which only root, who owns the state
    // directory, could have written), run with a sitecustomize that reads a bait credential.
    let python = dir.path().join("python3-fresh");
    fs::copy(PYTHON, &python).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&kept)
        .unwrap()
        .write_all(verdict_line(&python, "other").as_bytes())
        .unwrap();
    let bait = integration_tests::Bait::create();
    let again = Premain::start_alerts(&config);
    let run = || {
        let mut child = Command::new(&python)
            .args(["-c", "pass"])
            .env("HOME", bait.dir.path().join("home"))
            .env("PYTHONPATH", bait.dir.path().join("site"))
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        pid
    };
    let trusted = run();
    again.sentinel();
    assert!(
        again.alerts_of(trusted).is_empty(),
        "the kept verdict was not used: {:?}",
        again.alerts_of(trusted)
    );
    // Written to, it is another version: judged (CPython), and its run alerts.
    fs::OpenOptions::new().append(true).open(&python).unwrap().write_all(b"\0").unwrap();
    let judged = run();
    integration_tests::alert_of(&again, judged, &bait.netrc());
    assert!(again.stop().0.success());
}

/// A child killed when dropped, so that a failing test leaves nothing waiting behind it.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_filesystem_mounted_in_another_mount_namespace_is_watched() {
    let premain = Premain::start_alerts(&[]);
    let dir = TempDir::new("mount-ns");
    let (mnt, ready, go) = (dir.path().join("mnt"), dir.path().join("ready"), dir.path().join("go"));
    fs::create_dir(&mnt).unwrap();
    let filesystems = premain.metric("premain_exec_watch_filesystems");
    // A container's root in small: a new filesystem only another mount namespace sees.
    let mut container = Killed(
        Command::new(integration_tests::tool("unshare"))
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                r#"mount -t tmpfs tmpfs "$1" && cp {PYTHON} "$1/python3-ns" && touch "$2" &&
               while [ ! -e "$3" ]; do sleep 0.05; done && exec "$1/python3-ns" -c pass"#
            ))
            .arg("sh")
            .args([&mnt, &ready, &go])
            .spawn()
            .expect("unshare"),
    );
    eventually("the namespace's filesystem mounted", || ready.exists());
    let deadline = Instant::now() + Duration::from_secs(25);
    while premain.metric("premain_exec_watch_filesystems") <= filesystems {
        assert!(Instant::now() < deadline, "the new filesystem was not marked: {}", premain.stderr());
        thread::sleep(Duration::from_millis(200));
    }
    let decided = r#"premain_exec_decisions_total{outcome="python"}"#;
    let before = premain.metric(decided);
    fs::write(&go, "").unwrap();
    assert!(container.0.wait().unwrap().success());
    eventually("the exec on it decided", || premain.metric(decided) > before);
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn without_cap_sys_admin_the_sigstop_hold_is_the_fallback() {
    let setpriv = integration_tests::tool("setpriv");
    let drop: [&std::ffi::OsStr; 4] = [
        setpriv.as_os_str(),
        "--inh-caps=-sys_admin".as_ref(),
        "--bounding-set=-sys_admin".as_ref(),
        "--".as_ref(),
    ];
    let premain = Premain::start_via(&drop, &[]);
    assert!(premain.stderr().contains("exec watch off"), "{}", premain.stderr());
    assert_eq!(premain.metric("premain_exec_watch_filesystems"), 0.0);
    let held = premain.metric("premain_processes_held_total");
    let dir = TempDir::new("no-sys-admin");
    assert!(fresh_python(dir.path()).status().expect("run").success());
    eventually("the first run held", || premain.metric("premain_processes_held_total") == held + 1.0);
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn unseen_executables_wait_until_judged() {
    let dir = TempDir::new("hold");
    let premain =
        Premain::start_alerts(&["--debug-stall-reader-ms", "4000", "--config", &fallback_config(dir.path())]);
    let mut child = fresh_python(dir.path()).spawn().expect("spawn");
    let pid = child.id();
    // The reader is stalled: nobody has judged the file, so the process must be stopped.
    eventually("the unseen binary to be held", || state(pid) == Some('T'));
    assert!(!exited(&mut child), "a held process ran");
    // Once the reader runs, it is judged, probed and resumed.
    eventually("the held process to be resumed", || exited(&mut child));
    assert!(child.wait().unwrap().success());
    // Judged once: the next run is not held.
    let status = fresh_python(dir.path()).status().expect("run again");
    assert!(status.success());
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn a_killed_premain_leaves_no_process_stopped_for_good() {
    let dir = TempDir::new("orphan");
    let premain = Premain::start_alerts(&[
        "--debug-stall-reader-ms",
        "60000",
        "--config",
        &fallback_config(dir.path()),
    ]);
    let mut child = fresh_python(dir.path()).spawn().expect("spawn");
    let pid = child.id();
    eventually("the unseen binary to be held", || state(pid) == Some('T'));
    // Meanwhile (the reader is still stalled), a new binary that is not an interpreter, run
    // by an untracked process, is not held: a job-control shell would show it as stopped.
    let other = dir.path().join("fresh-true");
    fs::copy("/bin/true", &other).unwrap();
    let mut plain = Command::new(&other).spawn().unwrap();
    eventually("a new non-Python binary to run unheld", || exited(&mut plain));
    let (status, _) = premain.stop_with(libc::SIGKILL);
    assert!(!status.success());
    // Killed (and gone): nothing resumed the process.
    assert_eq!(state(pid), Some('T'), "the held process should still be stopped");
    let next = Premain::start_alerts(&["--config", &fallback_config(dir.path())]);
    eventually("the orphaned process to be resumed by the next premain", || exited(&mut child));
    assert!(child.wait().unwrap().success());
    assert!(next.stderr().contains("resumed processes a previous premain left stopped"), "{}", next.stderr());
    let (status, _) = next.stop();
    assert!(status.success());
}
