//! The real-application corpus: applications built from pinned PyPI wheels
//! (`tests/requirements-apps.txt`, downloaded by `cargo xtask setup` into
//! `target/tools/apps-wheelhouse`), each installed into a venv of its own with no index and run
//! the way its users run it, under premain's default configuration in enforce mode (nothing
//! of a benign application may be denied), with a temporary HOME
//! holding fake credentials. Their own module-level code reads `.env` files and creates cloud
//! clients, as real applications do: none of them may raise an alert, also when the run is the
//! first of an interpreter binary premain has never seen. The malicious twins (a dependency that
//! reads the credentials at import, a `.pth`) must alert, with the right phase, party and culprit.
//!
//! Every check judges only the alerts of its own process trees (`Premain::alerts_of`), after
//! premain's sentinel, and prints them in full when it fails. The corpus runs on Debian's
//! CPython 3.11 and pyenv's 3.12 (the versions whose binary wheels are pinned).

use std::{
    ffi::OsStr,
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{Premain, Python, Sink, TempDir, checked, clean, pythons, tools_dir, workspace_root};
use serde_json::Value;

/// The corpus's CPythons, by the labels `pythons()` gives them, and what provides each.
const CORPUS: &[(&str, &str)] = &[
    ("system 3.11", "Debian's /usr/bin/python3.11 (python3 package; python3-venv from cargo xtask setup)"),
    ("pyenv 3.12", "pyenv's CPython 3.12 (~/.pyenv/versions/3.12.*)"),
];

/// How long a server may take to come up (two workers importing Flask on a busy machine).
const SERVER_TIMEOUT: Duration = Duration::from_secs(90);

fn corpus() -> Vec<Python> {
    let found = pythons();
    CORPUS
        .iter()
        .map(|(label, what)| {
            found
                .iter()
                .find(|p| p.label.starts_with(label))
                .cloned()
                .unwrap_or_else(|| panic!("the application corpus needs {what}; found {:?}", labels(&found)))
        })
        .collect()
}

fn labels(pythons: &[Python]) -> Vec<&str> {
    pythons.iter().map(|p| p.label.as_str()).collect()
}

/// The wheelhouse `cargo xtask setup` fills from `tests/requirements-apps.txt`; a stale or
/// missing one fails here, naming the setup step, instead of in a pip resolution error.
fn wheelhouse() -> PathBuf {
    let dir = tools_dir().join("apps-wheelhouse");
    let wanted = fs::read_to_string(workspace_root().join("tests/requirements-apps.txt")).unwrap();
    let stamp = fs::read_to_string(dir.join("premain-requirements.txt")).unwrap_or_default();
    assert!(
        stamp == wanted,
        "{} does not hold the wheels of tests/requirements-apps.txt: run `cargo xtask setup`",
        dir.display()
    );
    dir
}

/// A copy of `tests/apps/<name>` in `into`.
fn app_tree(name: &str, into: &Path) -> PathBuf {
    let dest = into.join(name);
    copy_dir(&workspace_root().join("tests/apps").join(name), &dest);
    dest
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            // Bytecode of the repository's own runs must not stand in for the sources.
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A temporary HOME with fake credentials: what a dependency that steals would read.
fn bait_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    for (file, content) in [
        (
            ".aws/credentials",
            "[default]\naws_access_key_id = AKIAFAKEFAKEFAKEFAKE\naws_secret_access_key = fakefakefakefakefakefakefakefakefakefake\n",
        ),
        (".ssh/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n"),
        (".netrc", "machine example.invalid login x password fake\n"),
    ] {
        let path = home.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    home
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A venv of the corpus: its directory and base interpreter.
struct Venv {
    root: PathBuf,
    base: Python,
}

impl Venv {
    /// `python -m venv --copies` (with pip, as users make them).
    fn create(py: &Python, root: &Path) -> Self {
        checked(
            clean(&py.path).args(["-m", "venv", "--copies"]).arg(root),
            &format!("[{}] python -m venv", py.label),
        );
        Self { root: root.to_path_buf(), base: py.clone() }
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    fn python(&self) -> PathBuf {
        self.bin("python")
    }

    fn site(&self) -> PathBuf {
        let (major, minor) = self.base.version;
        self.root.join(format!("lib/python{major}.{minor}/site-packages"))
    }

    /// Makes the venv's interpreter a binary premain has never seen, as a venv made now would
    /// have: its copies are removed and `python -m venv --copies --upgrade` copies them again
    /// (new inodes). The next run is then the first of that image, held until judged.
    fn fresh_interpreter(&self) {
        let before = identity(&self.python());
        for entry in fs::read_dir(self.root.join("bin")).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("python") {
                fs::remove_file(entry.path()).unwrap();
            }
        }
        checked(
            clean(&self.base.path).args(["-m", "venv", "--copies", "--upgrade"]).arg(&self.root),
            &format!("[{}] python -m venv --upgrade", self.base.label),
        );
        assert_ne!(before, identity(&self.python()), "the venv's interpreter was not copied anew");
    }
}

/// What premain knows an executable by: device, inode, modification time.
fn identity(path: &Path) -> (u64, u64, i64, i64) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec())
}

/// One application's world on one CPython: a bait HOME, the premain to ask, and the failures
/// (with every alert seen) collected for the end.
struct Stage<'a> {
    py: &'a Python,
    premain: &'a Premain,
    dir: &'a Path,
    home: PathBuf,
    failures: Vec<String>,
}

impl<'a> Stage<'a> {
    fn new(py: &'a Python, premain: &'a Premain, dir: &'a Path) -> Self {
        Self { py, premain, dir, home: bait_home(dir), failures: Vec::new() }
    }

    /// `cmd` with the bait HOME and pip's configuration files ignored (a machine's pip.conf
    /// could add an index or find-links).
    fn command(&self, program: impl AsRef<OsStr>, cwd: &Path) -> Command {
        let mut cmd = clean(program);
        cmd.current_dir(cwd).env("HOME", &self.home).env("PIP_CONFIG_FILE", "/dev/null");
        cmd
    }

    /// Runs `cmd` to completion; returns its pid and output, or why it failed.
    fn run(&self, mut cmd: Command, what: &str) -> Result<(u32, Output), String> {
        let child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("{what}: {e}"))?;
        let pid = child.id();
        let out = child.wait_with_output().map_err(|e| format!("{what}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "[{}] {what} failed ({}):\n{}\n{}",
                self.py.label,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok((pid, out))
    }

    /// Runs `cmd` and records a failure when it raised any alert.
    fn quiet_run(&mut self, cmd: Command, what: &str) -> Result<Output, String> {
        let (pid, out) = self.run(cmd, what)?;
        self.expect_quiet(pid, what);
        Ok(out)
    }

    /// [`Stage::quiet_run`] as the first run of a fresh copy of `venv`'s interpreter; prints
    /// whether premain held it until judged or phased it from syscall order.
    fn quiet_first_run(&mut self, venv: &Venv, cmd: Command, what: &str) -> Result<Output, String> {
        venv.fresh_interpreter();
        let before = hold_counts(self.premain);
        let (pid, out) = self.run(cmd, what)?;
        // Before the sentinel, whose own run is held.
        let after = hold_counts(self.premain);
        println!(
            "[{}] {what}, first run of a fresh interpreter: (held, late) {before:?} -> {after:?}",
            self.py.label
        );
        self.expect_quiet(pid, &format!("{what}, first run of a fresh interpreter"));
        Ok(out)
    }

    /// `pip install --no-index` from the apps wheelhouse into `venv`, itself judged: installing
    /// wheels and building projects with build isolation raise nothing.
    fn pip_install(&mut self, venv: &Venv, cwd: &Path, args: &[&OsStr]) -> Result<(), String> {
        let mut cmd = self.command(venv.python(), cwd);
        cmd.args(["-m", "pip", "install", "--no-index", "-q", "--find-links"]).arg(wheelhouse()).args(args);
        self.quiet_run(cmd, &format!("pip install {args:?}")).map(drop)
    }

    /// After premain's sentinel, `root`'s tree must have raised nothing.
    fn expect_quiet(&mut self, root: u32, what: &str) {
        self.premain.sentinel();
        let alerts = self.premain.alerts_of(root);
        if !alerts.is_empty() {
            self.failures.push(format!(
                "[{}] {what} (pid {root}) raised {} alert(s):\n{}",
                self.py.label,
                alerts.len(),
                listing(&alerts)
            ));
        }
    }

    fn finish(self) -> Result<(), String> {
        if self.failures.is_empty() { Ok(()) } else { Err(self.failures.join("\n")) }
    }
}

/// Each alert as a readable summary (what the engine decided, on what, for which process)
/// followed by its full JSON.
fn listing(alerts: &[Value]) -> String {
    alerts
        .iter()
        .map(|a| format!("  - {}\n    {}", summary(a), within_test(a)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The alert with its ancestry cut at this test's process: what lies above is the harness.
fn within_test(alert: &Value) -> Value {
    let mut alert = alert.clone();
    if let Some(up) = alert["process"]["ancestry"].as_array_mut()
        && let Some(at) = up.iter().position(|p| p["pid"] == std::process::id())
    {
        up.truncate(at);
    }
    alert
}

fn summary(a: &Value) -> String {
    let c = &a["culprit"];
    let action = &a["action"];
    let target = action["path"].as_str().or(action["addr"].as_str()).unwrap_or("?");
    format!(
        "{} phase={} basis={} culprit={{kind={} path={} module={} module_path={} distribution={}}} \
         action={} {target} process={{pid={} exe={} cmdline={}}} inherited_from={}",
        a["rule"],
        a["phase"],
        a["phase_basis"],
        c["kind"],
        c["path"],
        c["module"],
        c["module_path"],
        c["distribution"],
        action["type"],
        a["process"]["pid"],
        a["process"]["exe"],
        a["process"]["cmdline"],
        a["inherited_from"]["pid"],
    )
}

/// Runs `app` on every corpus CPython under one premain with the default configuration in
/// enforce mode (`--mode enforce`: a benign application raises no alert, so nothing of it may be
/// denied, and it must behave exactly as without premain), reporting every failure at the end
/// and the CPythons it ran on.
fn on_corpus(name: &str, app: impl FnMut(&mut Stage) -> Result<(), String>) {
    on_corpus_under(name, &["--mode", "enforce"], app);
}

/// [`on_corpus`] with `args` to `premain run` instead.
fn on_corpus_under(name: &str, args: &[&str], mut app: impl FnMut(&mut Stage) -> Result<(), String>) {
    let pythons = corpus();
    wheelhouse();
    let premain = Premain::start_alerts(args);
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for py in &pythons {
        let dir = TempDir::new(&format!("apps-{name}"));
        let mut stage = Stage::new(py, &premain, dir.path());
        match app(&mut stage).and_then(|()| stage.finish()) {
            Ok(()) => ran.push(py.label.clone()),
            Err(err) => failures.push(err),
        }
    }
    let (status, stderr) = premain.stop();
    println!("{name}: CPythons {:?}; passed on {ran:?}", labels(&pythons));
    assert!(failures.is_empty(), "{name}:\n{}\npremain stderr:\n{stderr}", failures.join("\n"));
    assert!(status.success(), "premain exited with {status}");
}

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server (gunicorn, uvicorn) in a process group of its own, so that stopping it stops its
/// workers too; stopped when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(mut cmd: Command, log: PathBuf) -> Self {
        let file = fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file).process_group(0);
        Self { child: cmd.spawn().expect("start the server"), log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` holds, failing with the server's log when it exits or times out.
    fn wait(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + SERVER_TIMEOUT;
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the server exited ({status}) before {what}:\n{}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("no {what} after {SERVER_TIMEOUT:?}:\n{}", self.log()));
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGTERM to the master (a graceful stop of its workers), then SIGKILL to the whole group
    /// if it is not gone within 20 s.
    fn stop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: the group is the server's own (process_group(0) at spawn).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.0 GET on loopback: `(status, body)`, or why it failed.
fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read the response: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status =
        text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(format!("no status: {text}"))?;
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// How many processes premain held and phased from syscall order so far: printed around a
/// first run, to show which way premain saw it.
fn hold_counts(premain: &Premain) -> (f64, f64) {
    (premain.metric("premain_processes_held_total"), premain.metric("premain_late_interpreters_total"))
}

#[test]
fn django_check_and_migrate_read_their_env_without_alerts() {
    on_corpus("django", |stage| {
        let site = app_tree("django", stage.dir);
        let db = stage.dir.join("db.sqlite3");
        fs::write(
            site.join(".env"),
            format!(
                "SECRET_KEY=fake-django-secret-key\nDEBUG=off\nDATABASE_URL=sqlite:///{}\n",
                db.display()
            ),
        )
        .unwrap();
        let venv = Venv::create(stage.py, &stage.dir.join("venv"));
        stage.pip_install(&venv, &site, &[os("django==5.2.20"), os("django-environ")])?;
        for (first, args) in [(true, ["manage.py", "check"]), (false, ["manage.py", "migrate"])] {
            let mut cmd = stage.command(venv.python(), &site);
            cmd.args(args);
            let what = format!("python {}", args.join(" "));
            if first {
                stage.quiet_first_run(&venv, cmd, &what)?;
            } else {
                stage.quiet_run(cmd, &what)?;
            }
        }
        if !db.is_file() {
            return Err(format!("[{}] migrate made no {}", stage.py.label, db.display()));
        }
        Ok(())
    });
}

/// The Flask app's venv (flask, python-dotenv, gunicorn) with the app's tree beside it.
fn flask_world(stage: &mut Stage) -> Result<(Venv, PathBuf), String> {
    let tree = app_tree("flask", stage.dir);
    fs::write(tree.join(".env"), "SECRET_KEY=fake-flask-secret-key\n").unwrap();
    let venv = Venv::create(stage.py, &stage.dir.join("venv"));
    stage.pip_install(&venv, &tree, &[os("flask"), os("python-dotenv"), os("gunicorn")])?;
    Ok((venv, tree))
}

/// `gunicorn -w 2 APP` on a loopback port, returned once both workers have loaded the app.
fn gunicorn(
    stage: &Stage,
    venv: &Venv,
    tree: &Path,
    app: &str,
    upstream: u16,
) -> Result<(Server, u16), String> {
    let port = free_port();
    let marks = stage.dir.join(format!("workers-{port}"));
    fs::create_dir_all(&marks).unwrap();
    let mut cmd = stage.command(venv.bin("gunicorn"), tree);
    cmd.args(["-w", "2", "-b", &format!("127.0.0.1:{port}"), app]);
    cmd.env("UPSTREAM_PORT", upstream.to_string()).env("WORKERS_READY_DIR", &marks);
    let mut server = Server::start(cmd, stage.dir.join(format!("gunicorn-{port}.log")));
    server
        .wait("two gunicorn workers with the app loaded", || {
            fs::read_dir(&marks).map(|d| d.count() >= 2).unwrap_or(false)
        })
        .map_err(|e| format!("[{}] {e}", stage.py.label))?;
    Ok((server, port))
}

/// gunicorn with two workers and one request whose handler reads the credentials and connects
/// out (runtime: no alert). Twice: as the deploy's first start, when gunicorn's master is the
/// first run of its interpreter, and as a restart.
#[test]
fn flask_under_gunicorn_serves_a_request_on_a_fresh_interpreter_without_alerts() {
    on_corpus("flask", |stage| {
        let (venv, tree) = flask_world(stage)?;
        let upstream = Sink::start();
        venv.fresh_interpreter();
        for run in ["first run of a fresh interpreter", "restart"] {
            let before = hold_counts(stage.premain);
            let (mut server, port) = gunicorn(stage, &venv, &tree, "app:app", upstream.port)?;
            let after = hold_counts(stage.premain);
            println!("[{}] gunicorn, {run}: (held, late) {before:?} -> {after:?}", stage.py.label);
            let answer = get(port, "/work");
            server.stop();
            let (status, body) =
                answer.map_err(|e| format!("[{}] GET /work: {e}\n{}", stage.py.label, server.log()))?;
            if status != 200 || !body.contains("reached") {
                return Err(format!("[{}] GET /work: {status} {body}\n{}", stage.py.label, server.log()));
            }
            stage.expect_quiet(server.pid(), &format!("gunicorn -w 2 app:app with one request, {run}"));
        }
        Ok(())
    });
}

#[test]
fn fastapi_installed_by_uv_under_uvicorn_serves_a_request_without_alerts() {
    let uv = tools_dir().join("venv/bin/uv");
    assert!(uv.is_file(), "no {} (cargo xtask setup installs uv in its tools venv)", uv.display());
    on_corpus("fastapi", |stage| {
        let tree = app_tree("fastapi", stage.dir);
        fs::write(tree.join(".env"), "DATABASE_URL=sqlite:///app.db\nAPI_TOKEN=fake-api-token\n").unwrap();
        let root = stage.dir.join("venv");
        checked(
            clean(&stage.py.path).args(["-m", "venv", "--copies", "--without-pip"]).arg(&root),
            &format!("[{}] python -m venv", stage.py.label),
        );
        let venv = Venv { root, base: stage.py.clone() };
        let mut cmd = stage.command(&uv, &tree);
        cmd.args(["pip", "install", "--no-config", "--no-index", "--quiet", "--python"]).arg(venv.python());
        cmd.arg("--find-links").arg(wheelhouse()).args(["fastapi", "pydantic-settings", "uvicorn"]);
        cmd.env("UV_CACHE_DIR", stage.dir.join("uv-cache"));
        stage.quiet_run(cmd, "uv pip install fastapi pydantic-settings uvicorn")?;
        venv.fresh_interpreter();
        for run in ["first run of a fresh interpreter", "restart"] {
            let port = free_port();
            let mut cmd = stage.command(venv.bin("uvicorn"), &tree);
            cmd.args(["app:app", "--host", "127.0.0.1", "--port", &port.to_string()]);
            let before = hold_counts(stage.premain);
            let mut server = Server::start(cmd, stage.dir.join(format!("uvicorn-{port}.log")));
            server
                .wait("uvicorn listening", || listening(port))
                .map_err(|e| format!("[{}] {e}", stage.py.label))?;
            let after = hold_counts(stage.premain);
            println!("[{}] uvicorn, {run}: (held, late) {before:?} -> {after:?}", stage.py.label);
            let answer = get(port, "/health");
            server.stop();
            let (status, body) = answer.map_err(|e| format!("[{}] GET /health: {e}", stage.py.label))?;
            if status != 200 || !body.contains("sqlite") {
                return Err(format!("[{}] GET /health: {status} {body}\n{}", stage.py.label, server.log()));
            }
            stage.expect_quiet(server.pid(), &format!("uvicorn app:app with one request, {run}"));
        }
        Ok(())
    });
}

#[test]
fn an_app_module_making_a_boto3_client_at_import_raises_nothing() {
    on_corpus("boto3", |stage| {
        let tree = app_tree("boto_service", stage.dir);
        let venv = Venv::create(stage.py, &stage.dir.join("venv"));
        stage.pip_install(&venv, &tree, &[os("boto3")])?;
        let mut cmd = stage.command(venv.python(), &tree);
        cmd.arg("main.py").env("AWS_EC2_METADATA_DISABLED", "true");
        let out = stage.quiet_first_run(&venv, cmd, "python main.py (service.py makes the client)")?;
        let printed = String::from_utf8_lossy(&out.stdout);
        if printed.trim() != "us-east-1 AKIA" {
            return Err(format!(
                "[{}] the client did not read the bait credentials: {printed:?}",
                stage.py.label
            ));
        }
        Ok(())
    });
}

/// pytest with a conftest that loads `.env`, black, mypy and ipython on the same code, each
/// the first run of a fresh interpreter.
#[test]
fn developer_tools_on_fresh_interpreters_raise_nothing() {
    on_corpus("tools", |stage| {
        let tree = app_tree("tools", stage.dir);
        fs::write(tree.join(".env"), "APP_REGION=eu-test-1\n").unwrap();
        let venv = Venv::create(stage.py, &stage.dir.join("venv"));
        let wanted = ["pytest", "python-dotenv", "black", "mypy", "ipython"];
        stage.pip_install(&venv, &tree, &wanted.map(os))?;
        let ipython = "import inventory; print(inventory.stock({'apple': 3}, 'apple'))";
        let runs: [(&str, &[&str]); 4] = [
            ("pytest", &["-q"]),
            ("black", &["--check", "inventory.py", "conftest.py", "tests"]),
            ("mypy", &["inventory.py"]),
            ("ipython", &["-c", ipython]),
        ];
        for (tool, args) in runs {
            let mut cmd = stage.command(venv.bin(tool), &tree);
            cmd.args(args);
            stage.quiet_first_run(&venv, cmd, &format!("{tool} {args:?}"))?;
        }
        Ok(())
    });
}

#[test]
fn an_editable_install_and_its_console_script_raise_nothing() {
    on_corpus("editable", |stage| {
        let tree = app_tree("editable", stage.dir);
        fs::write(tree.join(".env"), "NOTES_OWNER=alice\n").unwrap();
        let venv = Venv::create(stage.py, &stage.dir.join("venv"));
        stage.pip_install(&venv, &tree, &[os("-e"), os(".")])?;
        let notes = stage.command(venv.bin("notes"), &tree);
        let out = stage.quiet_first_run(&venv, notes, "notes (editable console script)")?;
        if String::from_utf8_lossy(&out.stdout).trim() != "notes for alice" {
            return Err(format!(
                "[{}] notes printed {:?}",
                stage.py.label,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        Ok(())
    });
}

/// A git checkout whose version setuptools-scm derives from its tag during `pip install`
/// (the build runs git).
#[test]
fn setuptools_scm_versions_a_git_checkout_without_alerts() {
    on_corpus("scm", |stage| {
        let tree = app_tree("scm", stage.dir);
        let git = |args: &[&str]| {
            let mut cmd = Command::new("git");
            cmd.args(["-c", "user.name=premain", "-c", "user.email=premain@localhost"]).args(args);
            checked(cmd.current_dir(&tree).env("HOME", &stage.home), &format!("git {args:?}"));
        };
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "scm demo"]);
        git(&["tag", "v1.2.3"]);
        let venv = Venv::create(stage.py, &stage.dir.join("venv"));
        stage.pip_install(&venv, &tree, &[os(".")])?;
        let mut cmd = stage.command(venv.python(), stage.dir);
        cmd.args(["-c", "import scm_demo; print(scm_demo.__version__)"]);
        let out = stage.quiet_first_run(&venv, cmd, "python -c 'import scm_demo'")?;
        if String::from_utf8_lossy(&out.stdout).trim() != "1.2.3" {
            return Err(format!("[{}] version {:?}", stage.py.label, String::from_utf8_lossy(&out.stdout)));
        }
        Ok(())
    });
}

/// What a twin's alert must be.
struct Twin<'a> {
    phase: &'a str,
    culprit_kind: &'a str,
    /// The culprit's distribution, or the end of its path.
    culprit: (&'a str, &'a str),
    target: String,
}

/// Every alert of `alerts` is `want`'s `credential-read`, and there are `count` of them.
impl Stage<'_> {
    /// After premain's sentinel, `root`'s tree raised exactly `count` alerts, each `want`'s.
    fn expect_twin(&mut self, root: u32, what: &str, want: &Twin, count: usize) {
        self.premain.sentinel();
        if let Err(e) = twin_alerts(&self.premain.alerts_of(root), want, count) {
            self.failures.push(format!("[{}] {what} (pid {root}): {e}", self.py.label));
        }
    }
}

/// Every alert of `alerts` is `want`'s `credential-read`, and there are `count` of them.
fn twin_alerts(alerts: &[Value], want: &Twin, count: usize) -> Result<(), String> {
    let wrong: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            let c = &a["culprit"];
            let (field, value) = want.culprit;
            let named = match field {
                "distribution" => c["distribution"] == value,
                _ => c[field].as_str().is_some_and(|p| p.ends_with(value)),
            };
            !(a["rule"] == "credential-read"
                && a["phase"] == want.phase
                && c["kind"] == want.culprit_kind
                && named
                && c["party"] == "third-party"
                && a["action"]["path"] == want.target.as_str())
        })
        .collect();
    if !wrong.is_empty() || alerts.len() != count {
        return Err(format!(
            "want {count} credential-read of {} in {} by {} {:?} (party third-party), got {}:\n{}",
            want.target,
            want.phase,
            want.culprit_kind,
            want.culprit,
            alerts.len(),
            listing(alerts)
        ));
    }
    Ok(())
}

/// The Flask app with a malicious dependency (a wheel built here from tests/apps/twins) that
/// reads the credentials when imported: each gunicorn worker that imports the app raises one
/// `import` alert naming that distribution. Then a `.pth` dropped into the venv that reads them:
/// the master's start-up raises one `startup` alert naming the `.pth`.
#[test]
fn malicious_twins_of_the_flask_app_alert() {
    // Observed: a twin denied its read would fail at import, and the point here is its alerts.
    on_corpus_under("twins", &[], |stage| {
        let (venv, tree) = flask_world(stage)?;
        let wheels = stage.dir.join("wheels");
        let twin = app_tree("twins", stage.dir).join("shiny-config");
        let mut cmd = stage.command(venv.python(), stage.dir);
        cmd.args(["-m", "pip", "wheel", "--no-index", "--no-deps", "-q", "--find-links"]).arg(wheelhouse());
        cmd.arg("-w").arg(&wheels).arg(&twin);
        stage.run(cmd, "pip wheel shiny-config")?;
        let wheel =
            fs::read_dir(&wheels).unwrap().flatten().map(|e| e.path()).next().expect("the twin's wheel");
        stage.pip_install(&venv, &tree, &[wheel.as_os_str()])?;
        let bait = stage.home.join(".aws/credentials").display().to_string();
        let upstream = Sink::start();

        let (mut server, _) = gunicorn(stage, &venv, &tree, "twin_app:app", upstream.port)?;
        server.stop();
        let want = Twin {
            phase: "import",
            culprit_kind: "module",
            culprit: ("distribution", "shiny-config"),
            target: bait.clone(),
        };
        stage.expect_twin(server.pid(), "the dependency under gunicorn", &want, 2);

        fs::write(
            venv.site().join("zzz_premain_twin.pth"),
            "import os; open(os.path.expanduser('~/.aws/credentials')).close()\n",
        )
        .unwrap();
        let (mut server, _) = gunicorn(stage, &venv, &tree, "app:app", upstream.port)?;
        server.stop();
        let want = Twin {
            phase: "startup",
            culprit_kind: "pth",
            culprit: ("path", "/zzz_premain_twin.pth"),
            target: bait,
        };
        stage.expect_twin(server.pid(), "the .pth under gunicorn", &want, 1);
        Ok(())
    });
}
