//! Holding: a process that executes a file premain has never judged is stopped before its
//! first instruction until premain has judged it (and attached CPython probes), then resumed;
//! a premain killed while holding leaves processes stopped, and the next one resumes them.

use std::{
    fs,
    path::Path,
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

#[test]
fn unseen_executables_wait_until_judged() {
    let premain = Premain::start_alerts(&["--debug-stall-reader-ms", "4000"]);
    let dir = TempDir::new("hold");
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
    let premain = Premain::start_alerts(&["--debug-stall-reader-ms", "60000"]);
    let dir = TempDir::new("orphan");
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
    let next = Premain::start_alerts(&[]);
    eventually("the orphaned process to be resumed by the next premain", || exited(&mut child));
    assert!(child.wait().unwrap().success());
    assert!(next.stderr().contains("resumed processes a previous premain left stopped"), "{}", next.stderr());
    let (status, _) = next.stop();
    assert!(status.success());
}
