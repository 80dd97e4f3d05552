//! The premain that watches the sandbox: this same binary's `premain run`, started as a child
//! for the length of the run (vet loads the kernel programs itself; no daemon needs to run,
//! and a running one holds the node's lock: vet then says so and stops). Every alert it prints
//! is kept; the caller picks its own by cgroup.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// How long premain may take to load its programs.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long premain may take to stop and deliver what it queued.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Observer {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    stdout_reader: Option<thread::JoinHandle<()>>,
    spawned: Instant,
    /// Stopped: only the kernel's detaching of its programs is left (see [`Self::stop`]).
    detaching: bool,
}

impl Observer {
    /// Starts `premain run` with every alert printed at once (no folding) and no endpoints;
    /// [`Self::wait_ready`] waits until it watches.
    pub fn spawn(config: Option<&Path>) -> Result<Self> {
        let exe = std::env::current_exe().context("finding premain's own executable")?;
        let mut command = Command::new(exe);
        command.args(["run", "--fold-window-secs", "0", "--metrics-address", ""]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting premain run")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().context("premain's stdout")?;
        let sink = lines.clone();
        let stdout_reader = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap_or_else(PoisonError::into_inner).push(value);
                }
            }
        });
        let err = child.stderr.take().context("premain's stderr")?;
        let sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
                let mut all = sink.lock().unwrap_or_else(PoisonError::into_inner);
                all.push_str(&String::from_utf8_lossy(&line));
                all.push('\n');
            }
        });
        Ok(Self { child, lines, stderr, stdout_reader: Some(stdout_reader),
            spawned: Instant::now(),
            detaching: false,
        })
    }

    /// Waits for premain's ready line: from then on it watches every process started.
    pub fn wait_ready(&mut self) -> Result<()> {
        let deadline = self.spawned + READY_TIMEOUT;
        loop {
            if self.stderr_text().lines().any(is_ready_line) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                thread::sleep(Duration::from_millis(100));
                let text = self.stderr_text();
                let why = text
                    .lines()
                    .rev()
                    .find(|l| l.contains("error"))
                    .map_or_else(|| status.to_string(), |l| l.trim().to_owned());
                bail!("the monitor could not start: {why}");
            }
            if Instant::now() > deadline {
                bail!("the monitor was not ready after {} s", READY_TIMEOUT.as_secs());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Alerts printed so far.
    pub fn alerts(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|v| v["kind"] == "alert")
            .cloned()
            .collect()
    }

    /// Waits until an alert `pred` accepts has been printed.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.alerts().iter().any(&pred) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!("the monitor did not report the run's end marker within {} s", timeout.as_secs())
    }

    /// Stops premain (SIGTERM: it delivers what it queued) and returns every alert it printed
    /// (the run's end marker has made sure those of every step are in). Returns once premain
    /// says it stopped, which it does after releasing the node's lock: the kernel's detaching
    /// of its programs, seconds it then spends before exiting, is not waited for.
    pub fn stop(mut self) -> Vec<Value> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                if let Some(reader) = self.stdout_reader.take() {
                    let _ = reader.join();
                }
                return self.alerts();
            }
            if self.stderr_text().lines().any(is_stopped_line) {
                self.detaching = true;
                return self.alerts();
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.alerts()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if !self.detaching && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// premain's last line before it detaches its programs (`TIME  INFO stopped report=...`).
fn is_stopped_line(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().skip(1).take(3).collect();
    matches!(words[..], ["INFO", "stopped", report] if report.starts_with("report="))
}

/// premain's ready line (`TIME  INFO premain ready ...`): its message, not a field, says so.
fn is_ready_line(line: &str) -> bool {
    line.split_whitespace().skip(1).take(3).eq(["INFO", "premain", "ready"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stopped_line_is_the_one_after_delivery() {
        let t = "2026-12-08T01:48:52.425796Z";
        assert!(is_stopped_line(&format!("{t}  INFO stopped report=ShutdownReport {{ sinks: [] }}")));
        assert!(!is_stopped_line(&format!("{t}  INFO stopped reading; delivering queued alerts records=3")));
        assert!(!is_stopped_line(&format!("{t}  INFO programs detached seconds=3.1")));
        assert!(!is_stopped_line(&format!("{t}  WARN stopped report=x")));
        assert!(!is_stopped_line("stopped"));
    }
}
