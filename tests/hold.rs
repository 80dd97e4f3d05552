//! Holding: a process that executes a file premain has never judged is stopped before its
//! first instruction until premain has judged it (and attached CPython probes), then resumed;
//! a premain killed while holding leaves processes stopped, and the next one resumes them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{Premain, TempDir};

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

fn fresh_copy(dir: &Path, of: &str) -> PathBuf {
    let copy = dir.join("fresh-binary");
    fs::copy(of, &copy).expect("copy binary");
    copy
}

fn exited(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
}

#[test]
fn unseen_executables_wait_until_judged() {
    let premain = Premain::start_alerts(&["--debug-stall-reader-ms", "4000"]);
    let dir = TempDir::new("hold");
    let mut child = Command::new(fresh_copy(dir.path(), "/bin/true")).spawn().expect("spawn");
    let pid = child.id();
    // The reader is stalled: nobody has judged the file, so the process must be stopped.
    eventually("the unseen binary to be held", || state(pid) == Some('T'));
    assert!(!exited(&mut child), "a held process ran");
    // Once the reader runs, it is judged (not Python) and resumed.
    eventually("the held process to be resumed", || exited(&mut child));
    assert!(child.wait().unwrap().success());
    // Judged once: the next run is not held.
    let status = Command::new(dir.path().join("fresh-binary")).status().expect("run again");
    assert!(status.success());
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn a_killed_premain_leaves_no_process_stopped_for_good() {
    let premain = Premain::start_alerts(&["--debug-stall-reader-ms", "60000"]);
    let dir = TempDir::new("orphan");
    let mut child = Command::new(fresh_copy(dir.path(), "/bin/true")).spawn().expect("spawn");
    let pid = child.id();
    eventually("the unseen binary to be held", || state(pid) == Some('T'));
    let (status, _) = premain.stop_with(libc::SIGKILL);
    assert!(!status.success());
    // Killed: its programs are gone, the process is still stopped.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(state(pid), Some('T'), "the held process should still be stopped");
    let next = Premain::start_alerts(&[]);
    eventually("the orphaned process to be resumed by the next premain", || exited(&mut child));
    assert!(child.wait().unwrap().success());
    assert!(next.stderr().contains("resumed processes a previous premain left stopped"), "{}", next.stderr());
    let (status, _) = next.stop();
    assert!(status.success());
}
