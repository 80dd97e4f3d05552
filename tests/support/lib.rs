//! Support for premain's integration tests: run the real daemon as a child, collect the JSON
//! lines it prints, and find the CPythons installed on this machine.
//!
//! Tests panic rather than return errors, so failures carry the context printed here.

use std::{
    env,
    ffi::OsStr,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod corpus;

/// How long premain may take to load and attach (the verifier runs once per program).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an expected event may take to show up.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The message of the line premain logs once every program is attached.
pub const READY: &str = "premain ready";

/// Whether `line` of premain's stderr (`TIME  LEVEL message fields`) is the ready line: its
/// message, not a field's value, is [`READY`].
pub fn is_ready_line(line: &str) -> bool {
    let mut words = line.split_whitespace().skip(1);
    words.next() == Some("INFO") && READY.split(' ').all(|w| words.next() == Some(w))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

/// The daemon under test: `PREMAIN_BIN`, or the release build `cargo xtask test` makes.
pub fn premain_binary() -> PathBuf {
    let path = env::var_os("PREMAIN_BIN")
        .map_or_else(|| workspace_root().join("target/release/premain"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} is missing: run the suite with `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// Where the tests' premains keep what outlives a run (`--state-dir`).
pub fn test_state_dir() -> PathBuf {
    workspace_root().join("target/test-state")
}

/// `Command` for `program` with pip's and Python's environment knobs from the caller removed,
/// so a test's interpreters and installers behave the same under any developer's shell.
pub fn clean(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("PIP_") || key.starts_with("PYTHON") || key == "VIRTUAL_ENV" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("PIP_DISABLE_PIP_VERSION_CHECK", "1").env("PIP_NO_INPUT", "1").stdin(Stdio::null());
    cmd
}

/// Runs `cmd`; panics with its output unless it succeeded.
pub fn checked(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `target/tools` (`$PREMAIN_TOOLS` under `cargo xtask test`): what `cargo xtask setup` built or
/// unpacked for the tests.
pub fn tools_dir() -> PathBuf {
    env::var_os("PREMAIN_TOOLS").map_or_else(|| workspace_root().join("target/tools"), PathBuf::from)
}

/// A program the tests run, as `cargo xtask setup` provides it (its `PROGRAMS` list: a check
/// there fails when a test runs one that is not listed): from `target/tools/bin`, else `PATH`
/// or the sbin directories. A program that is missing fails the test, naming it.
pub fn tool(name: &str) -> PathBuf {
    let path = env::var_os("PATH").unwrap_or_default();
    std::iter::once(tools_dir().join("bin"))
        .chain(env::split_paths(&path))
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: `cargo xtask setup` provides it"))
}

/// This test cannot run its check here (`reason`). That fails the test, unless
/// `PREMAIN_TEST_ALLOW_SKIP=1` is set (never in CI): then it passes, and `cargo xtask test`
/// lists it as skipped in its closing summary. Call as `return cannot_run(...)`.
pub fn cannot_run(reason: &str) {
    let test = thread::current().name().unwrap_or("a test").to_owned();
    if env::var("PREMAIN_TEST_ALLOW_SKIP").as_deref() != Ok("1") {
        panic!("{test} cannot run: {reason} (PREMAIN_TEST_ALLOW_SKIP=1 skips it)");
    }
    println!("SKIPPED: {test}: {reason}");
    if let Some(log) = env::var_os("PREMAIN_SKIP_LOG") {
        use std::io::Write as _;
        let file = fs::OpenOptions::new().create(true).append(true).open(log);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

pub fn require_root() {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "integration tests load eBPF programs and need root: run `sudo cargo xtask test`");
}

/// A running `premain run --events`. Stopped with SIGINT on drop.
pub struct Premain {
    child: Option<Child>,
    /// Says when the stdout reader has read the last line (end of file).
    stdout_done: std::sync::mpsc::Receiver<()>,
    lines: Arc<Mutex<Vec<Value>>>,
    /// Every stdout line exactly as written, without its newline.
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
    stderr: Arc<Mutex<String>>,
}

impl Premain {
    pub fn start(extra: &[&str]) -> Self {
        Self::launch(&[], &["run", "--events"], extra)
    }

    /// `premain run --events` started by `launcher` (a program that runs its arguments as a
    /// child and forwards SIGINT/SIGTERM to it): premain is then not the test's child.
    /// [`Premain::pid`] is the launcher's; [`Premain::daemon_pid`] is premain's.
    pub fn start_via(launcher: &[&OsStr], extra: &[&str]) -> Self {
        Self::launch(launcher, &["run", "--events"], extra)
    }

    /// Without `--events`: only alerts and loss records are printed.
    pub fn start_alerts(extra: &[&str]) -> Self {
        Self::launch(&[], &["run"], extra)
    }

    /// Starts premain as a container would: with exactly `args`, only `env` in its
    /// environment, in `/`. Returns at once: the caller decides what ready means.
    pub fn spawn_exact(args: &[String], env: &[(String, String)]) -> Self {
        require_root();
        let mut command = Command::new(premain_binary());
        command.args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v))).current_dir("/");
        Self::spawn(command)
    }

    fn launch(launcher: &[&OsStr], base: &[&str], extra: &[&str]) -> Self {
        require_root();
        // A free port each run: tests never collide with each other or with a premain the
        // developer has running on the default port.
        let metrics: &[&str] =
            if extra.contains(&"--metrics-address") { &[] } else { &["--metrics-address", "127.0.0.1:0"] };
        // The tests' verdicts on executables stay in the build tree, not in the machine's
        // /var/lib/premain, which a premain of the developer's may use.
        let state = test_state_dir();
        let state: &[&OsStr] = if extra.contains(&"--state-dir") {
            &[]
        } else {
            &[OsStr::new("--state-dir"), state.as_os_str()]
        };
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(premain_binary());
                c
            }
            None => Command::new(premain_binary()),
        };
        command.args(base).args(metrics).args(state).args(extra).env("RUST_LOG", "info");
        let mut premain = Self::spawn(command);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !premain.stderr().lines().any(is_ready_line) {
            if let Some(status) = premain.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                thread::sleep(Duration::from_millis(100));
                panic!("premain exited before ready ({status}); stderr:\n{}", premain.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "premain not ready after {READY_TIMEOUT:?}; stderr:\n{}",
                premain.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
        premain
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn premain");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&lines);
        let raw_sink = Arc::clone(&raw);
        let (done, stdout_done) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let _done = Defer(Some(move || {
                let _ = done.send(());
            }));
            let mut out = BufReader::new(out);
            loop {
                let mut line = Vec::new();
                if out.read_until(b'\n', &mut line).expect("read premain stdout") == 0 {
                    break;
                }
                let whole = line.pop_if(|b| *b == b'\n').is_some();
                raw_sink.lock().unwrap().push(line.clone());
                if !whole {
                    // Only a premain killed in the middle of a write leaves a partial line.
                    eprintln!("premain's stdout ended in the middle of a line ({} bytes)", line.len());
                    break;
                }
                let line = String::from_utf8(line).expect("premain stdout is UTF-8");
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("premain printed invalid JSON ({e}): {line}"));
                sink.lock().unwrap().push(value);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            // Bytes, not lines of UTF-8: a log line with other bytes must not end the capture.
            for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
                let mut all = sink.lock().unwrap();
                all.push_str(&String::from_utf8_lossy(&line));
                all.push('\n');
            }
        });
        Self { child: Some(child), stdout_done, lines, raw, stderr }
    }

    /// The exit status, once premain has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// The premain process itself: [`Premain::pid`], or its child under a launcher.
    pub fn daemon_pid(&self) -> i32 {
        let pid = self.pid();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let exe = fs::canonicalize(premain_binary()).expect("premain binary");
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
            .find(|c| fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|e| e == exe))
            .unwrap_or(pid)
    }

    /// Sends `signal` and leaves premain running.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Where the metrics endpoint listens, from the start-up log.
    pub fn metrics_address(&self) -> String {
        let stderr = self.stderr();
        let line = stderr
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .unwrap_or_else(|| panic!("no metrics endpoint in the log:\n{stderr}"));
        let at = line.find("address=").expect("address field") + "address=".len();
        line[at..].split_whitespace().next().expect("an address").to_owned()
    }

    /// `GET path` on the metrics endpoint: `(status, body)`.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.metrics_address(), path)
    }

    /// The value of the sample `series` (name with its labels as printed, e.g.
    /// `premain_events_total{hook="open"}`), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        sample(&body, series)
    }

    /// Every JSON line printed so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Alerts, each once: a folded alert printed again (same `id`) replaces the first line.
    pub fn alerts(&self) -> Vec<Value> {
        let mut by_id: Vec<Value> = Vec::new();
        for line in self.lines().into_iter().filter(|v| v["kind"] == "alert") {
            match by_id.iter_mut().find(|a| a["id"] == line["id"]) {
                Some(slot) => *slot = line,
                None => by_id.push(line),
            }
        }
        by_id
    }

    /// Every stdout line exactly as premain wrote it (bytes, newline removed).
    pub fn raw_lines(&self) -> Vec<Vec<u8>> {
        self.raw.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.lines().into_iter().filter(|v| v["kind"] == "event").collect()
    }

    /// Waits until a line matching `pred` arrives; panics with `what` and the lines seen.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        // Lines only grow: scan each once, under the lock, without copying them all each time
        // (a busy machine can make premain print hundreds of thousands of lines).
        let mut scanned = 0;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some(found) = lines[scanned..].iter().find(|v| pred(v)) {
                    return found.clone();
                }
                scanned = lines.len();
            }
            if Instant::now() > deadline {
                let seen = self.lines();
                let tail: Vec<String> = seen.iter().rev().take(40).map(Value::to_string).collect();
                panic!(
                    "no {what} after {EVENT_TIMEOUT:?} ({} lines; last ones, newest first):\n{}\nstderr:\n{}",
                    seen.len(),
                    tail.join("\n"),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit event of `pid`: records arrive in order, so every earlier record of
    /// that process has been handled once it is seen.
    pub fn wait_exit(&self, pid: u32) {
        self.wait_for(&format!("exit event of pid {pid}"), |v| v["hook"] == "exit" && v["pid"] == pid);
    }

    /// Stops with SIGINT and returns the exit status and everything premain wrote on stderr.
    pub fn stop(self) -> (ExitStatus, String) {
        self.stop_with(libc::SIGINT)
    }

    /// Stops with SIGINT; also returns every JSON line, including those printed on the way out.
    pub fn stop_lines(self) -> (ExitStatus, String, Vec<Value>) {
        let lines = Arc::clone(&self.lines);
        let (status, stderr) = self.stop();
        let all = lines.lock().unwrap().clone();
        (status, stderr, all)
    }

    /// Stops with SIGINT; also returns every stdout line exactly as written.
    pub fn stop_raw(self) -> (ExitStatus, String, Vec<Vec<u8>>) {
        let raw = Arc::clone(&self.raw);
        let (status, stderr) = self.stop();
        let all = raw.lock().unwrap().clone();
        (status, stderr, all)
    }

    pub fn stop_with(self, signal: i32) -> (ExitStatus, String) {
        self.stop_within(signal, Duration::from_secs(20))
    }

    /// Sends `signal` and waits at most `limit` for premain to exit (then kills it and panics),
    /// and for every line it wrote to be read.
    pub fn stop_within(mut self, signal: i32, limit: Duration) -> (ExitStatus, String) {
        let status = self.signal_and_wait(signal, limit);
        // A launcher's other children could keep the pipe open: bounded.
        let read = self.stdout_done.recv_timeout(Duration::from_secs(10));
        assert!(read.is_ok(), "premain's stdout was not closed 10 s after it exited");
        (status, self.stderr())
    }

    /// Alerts whose process is `root`, descends from it, or inherited its phase from it.
    pub fn alerts_of(&self, root: u32) -> Vec<Value> {
        self.alerts()
            .into_iter()
            .filter(|a| {
                a["process"]["pid"] == root
                    || a["inherited_from"]["pid"] == root
                    || a["process"]["ancestry"]
                        .as_array()
                        .is_some_and(|up| up.iter().any(|p| p["pid"] == root))
            })
            .collect()
    }

    /// Waits until premain has handled every record made before this call, so that a check
    /// that nothing else came can be made: runs a Python whose `sitecustomize` execs a copy of
    /// `/bin/true` never seen before, and waits for that exec's alert. premain handles records
    /// in the order they were made: what was made earlier has been alerted by then. (With the
    /// exec watch the copy is judged before its exec goes on, so its record does not wait behind
    /// records that wait for a verdict still coming, which only an exec not decided in time
    /// leaves.) Needs the `program-exec` rule.
    pub fn sentinel(&self) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = TempDir::new("sentinel");
        let program = dir.path().join(format!("sentinel-{}-{n}", std::process::id()));
        fs::copy("/bin/true", &program).expect("copy /bin/true");
        fs::create_dir(dir.path().join("site")).unwrap();
        fs::write(
            dir.path().join("site/sitecustomize.py"),
            // Under enforce the exec is killed (with an alert all the same): its status is not
            // what the sentinel is for.
            format!("import subprocess\nsubprocess.run([{:?}])\n", program.display().to_string()),
        )
        .unwrap();
        let python = pyenv_python();
        let status = Command::new(&python.path)
            .args(["-c", "pass"])
            .env("PYTHONPATH", dir.path().join("site"))
            .stdin(Stdio::null())
            .status()
            .expect("run the sentinel");
        assert!(status.success(), "the sentinel failed: {status}");
        let path = program.to_str().unwrap().to_owned();
        self.wait_for("the sentinel's alert", |v| {
            v["kind"] == "alert" && v["rule"] == "program-exec" && v["action"]["path"] == path.as_str()
        });
    }

    fn signal_and_wait(&mut self, signal: i32, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait premain") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "premain did not stop within {limit:?} of signal {signal}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Premain {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            for _ in 0..200 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs its closure when dropped (also when the thread unwinds).
struct Defer<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for Defer<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// The value of the sample `series` in a Prometheus text exposition, 0 when absent.
pub fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

/// A minimal HTTP/1.1 GET (the test side needs no HTTP client crate).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    // Chunked bodies are not expected from the endpoint (it sends a full body with a length).
    (status, body)
}

/// A directory under /tmp removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let mut template = format!("/tmp/premain-{tag}-XXXXXX\0").into_bytes();
        // SAFETY: a writable NUL-terminated template, as mkdtemp requires.
        let ptr = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        assert!(!ptr.is_null(), "mkdtemp failed");
        template.pop();
        Self(PathBuf::from(String::from_utf8(template).expect("ASCII")))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone)]
pub struct Python {
    pub label: String,
    pub path: PathBuf,
    /// `(major, minor)`.
    pub version: (u32, u32),
}

/// Every CPython 3.8+ on this machine: pyenv's (`$PYENV_ROOT` or `~/.pyenv`) and the system's
/// `/usr/bin/python3.X`. `PREMAIN_TEST_PYTHONS` (colon-separated paths) replaces the discovery.
pub fn pythons() -> Vec<Python> {
    if let Some(list) = env::var_os("PREMAIN_TEST_PYTHONS") {
        return env::split_paths(&list)
            .filter_map(|path| python_at(path.display().to_string(), path))
            .collect();
    }
    let mut found = Vec::new();
    let pyenv_root = env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    if let Ok(entries) = fs::read_dir(pyenv_root.join("versions")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((major, minor)) = parse_version(&name) else { continue };
            let exe = entry.path().join("bin").join(format!("python{major}.{minor}"));
            if let Some(py) = python_at(format!("pyenv {name}"), exe) {
                found.push(py);
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/usr/bin") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(ver) = name.strip_prefix("python") else { continue };
            let plain = ver.contains('.') && ver.chars().all(|c| c.is_ascii_digit() || c == '.');
            if plain && parse_version(ver).is_some() {
                found.extend(python_at(format!("system {ver}"), entry.path()));
            }
        }
    }
    found.sort_by(|a, b| a.version.cmp(&b.version).then(a.label.cmp(&b.label)));
    found
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    (major == 3 && minor >= 8).then_some((major, minor))
}

fn python_at(label: String, path: PathBuf) -> Option<Python> {
    if !path.is_file() {
        return None;
    }
    let out = Command::new(&path)
        .args(["-c", "import sys; print(sys.version_info[0], sys.version_info[1])"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace().map(|n| n.parse::<u32>());
    let version = (it.next()?.ok()?, it.next()?.ok()?);
    (version.0 == 3 && version.1 >= 8).then_some(Python { label, path, version })
}

/// Runs a command to completion, panicking with its output if it fails; returns stdout.
pub fn run_ok(program: impl AsRef<OsStr>, args: &[&OsStr]) -> String {
    let program = program.as_ref();
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("spawn {program:?}: {e}"));
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Events of `pid` whose field `key` equals `value`.
pub fn matching<'a>(events: &'a [Value], pid: u32, hook: &str, key: &str, value: &Value) -> Vec<&'a Value> {
    events.iter().filter(|e| e["pid"] == pid && e["hook"] == hook && &e[key] == value).collect()
}

/// Polls `pred` for up to 20 s.
pub fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A CPython whose site runs a `sitecustomize` found on PYTHONPATH (Debian's own python
/// ships one in its stdlib that would shadow it).
pub fn pyenv_python() -> Python {
    pythons()
        .into_iter()
        .rev()
        // `PREMAIN_TEST_PYTHONS` labels its CPythons by path.
        .find(|p| p.label.starts_with("pyenv") || p.path.components().any(|c| c.as_os_str() == ".pyenv"))
        .expect("a pyenv CPython (cargo xtask setup / pyenv install)")
}

/// A bait HOME with a fake `.netrc`, and a PYTHONPATH dir whose `sitecustomize` reads it at
/// start-up: two pre-main credential reads per run (the second folds into the first alert).
pub struct Bait {
    pub dir: TempDir,
}

impl Bait {
    pub fn create() -> Self {
        let dir = TempDir::new("ops");
        fs::create_dir_all(dir.path().join("home")).unwrap();
        fs::write(dir.path().join("home/.netrc"), "machine example.invalid login fake password fake\n")
            .unwrap();
        fs::create_dir_all(dir.path().join("site")).unwrap();
        fs::write(
            dir.path().join("site/sitecustomize.py"),
            "import os\nfor _ in range(2):\n    open(os.path.expanduser('~/.netrc')).close()\n",
        )
        .unwrap();
        Self { dir }
    }

    pub fn netrc(&self) -> PathBuf {
        self.dir.path().join("home/.netrc")
    }

    /// Runs the python once to completion; returns its pid.
    pub fn run(&self, python: &Python) -> u32 {
        let mut child = Command::new(&python.path)
            .args(["-c", "pass"])
            .env("HOME", self.dir.path().join("home"))
            .env("PYTHONPATH", self.dir.path().join("site"))
            .spawn()
            .expect("spawn python");
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        pid
    }
}

pub fn alert_of(premain: &Premain, pid: u32, path: &Path) -> Value {
    premain.wait_for(&format!("credential alert of pid {pid}"), |v| {
        v["kind"] == "alert" && v["process"]["pid"] == pid && v["action"]["path"] == path.to_str().unwrap()
    })
}

/// Starts a loopback helper (`tests/scripts/webhook_receiver.py`, the API server stand-in)
/// that prints the port it listens on as its first line and exits when its stdin closes.
/// Returns it, that stdin (keep it open) and the port.
pub fn spawn_listener(mut command: Command, what: &str) -> (Child, ChildStdin, u16) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let stdin = child.stdin.take().expect("piped stdin");
    let mut port = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut port)
        .unwrap_or_else(|e| panic!("{what}'s port: {e}"));
    let port = port.trim().parse().unwrap_or_else(|_| panic!("{what} printed no port: {port:?}"));
    (child, stdin, port)
}

/// Loopback TCP (and UDP, same port) sink that accepts every connection and answers HTTP
/// requests with an empty 200; stops when dropped.
pub struct Sink {
    pub port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    udp: Option<UdpSocket>,
}

impl Sink {
    pub fn start() -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let port = tcp.local_addr().unwrap().port();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut conn, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(300)));
                        let mut buf = [0u8; 1024];
                        let _ = conn.read(&mut buf);
                        let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let udp = UdpSocket::bind(("127.0.0.1", port)).ok();
        if let Some(udp) = &udp {
            udp.set_nonblocking(true).unwrap();
        }
        Self { port, stop, accepted, udp }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Datagrams received since the last call.
    pub fn datagrams(&self) -> usize {
        let Some(udp) = &self.udp else { return 0 };
        let mut buf = [0u8; 2048];
        std::iter::from_fn(|| udp.recv(&mut buf).ok()).count()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
