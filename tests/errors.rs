//! Bad input and missing privileges: one clear line on stderr, a non-zero exit, nothing else.

use std::{
    ffi::OsStr,
    fs,
    process::{Command, Output},
    time::{Duration, Instant},
};

use integration_tests::{Premain, TempDir, premain_binary, require_root};

fn premain(args: &[&OsStr]) -> Output {
    Command::new(premain_binary()).args(args).output().expect("run premain")
}

/// The whole of stderr must be one line starting with `premain: error:`.
fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{stderr}");
    assert!(lines[0].starts_with("premain: error: "), "{stderr}");
    lines[0].to_owned()
}

#[test]
fn unprivileged_run_says_what_is_missing() {
    require_root();
    // Drop to nobody with no capabilities at all.
    let out = Command::new(integration_tests::tool("setpriv"))
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .arg(premain_binary())
        .arg("run")
        .output()
        .expect("setpriv (util-linux) runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_error_line(&out);
    assert!(line.contains("needs root") && line.contains("CAP_BPF"), "{line}");
}

#[test]
fn bad_ring_buffer_size_is_rejected_before_touching_the_kernel() {
    let out = premain(&[OsStr::new("run"), OsStr::new("--ring-buffer-size"), OsStr::new("1000")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("power of two"));
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = premain(&[OsStr::new("run"), OsStr::new("--no-such-flag")]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn interpreter_command_judges_files_and_rejects_broken_ones() {
    let out = premain(&[OsStr::new("interpreter"), OsStr::new("/bin/true")]);
    assert!(out.status.success(), "{out:?}");
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(verdict["python"], false);

    let dir = TempDir::new("badelf");
    let broken = dir.path().join("python3");
    let real = fs::read("/bin/true").expect("read /bin/true");
    fs::write(&broken, &real[..200]).expect("write truncated ELF");
    let out = premain(&[OsStr::new("interpreter"), broken.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    one_error_line(&out);
}

#[test]
fn sigterm_detaches_and_exits_cleanly() {
    let premain = Premain::start(&[]);
    let started = Instant::now();
    let (status, stderr) = premain.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The tracepoints it used are free again: a second instance attaches at once.
    let again = Premain::start(&[]);
    let (status, _) = again.stop();
    assert!(status.success());
}

#[test]
fn a_second_premain_on_the_node_is_refused_and_the_first_keeps_running() {
    require_root();
    let first = Premain::start(&[]);
    let started = Instant::now();
    let out = premain(&[OsStr::new("run"), OsStr::new("--metrics-address"), OsStr::new("127.0.0.1:0")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_error_line(&out);
    assert!(line.contains("another premain is already running"), "{line}");
    assert!(line.contains(&format!("pid {}", first.pid())), "{line}");
    // Refused before loading anything: fast, and the first is untouched.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(first.get("/readyz").0 == 200, "the first premain is still ready");
    let (status, _) = first.stop();
    assert!(status.success());
    // Once it is gone, the lock is free again.
    let again = Premain::start(&[]);
    let (status, _) = again.stop();
    assert!(status.success());
}
