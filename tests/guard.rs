//! The network guard (`premain run --mode enforce|dry-run`): connects and addressed sends
//! (`sendto`, `sendmsg`; TCP and UDP, IPv4 and IPv6) of pre-main code fail with `EPERM` inside
//! the kernel (cgroup `connect4|6` and `sendmsg4|6` programs) and nothing leaves; the process
//! goes on, and runtime code, the application's own module-level code and allowed destinations
//! are never denied.
//!
//! Every destination is a loopback listener the test owns, which notes each TCP connection (by
//! the first line sent on it) and each datagram it receives. The payloads (`PROBE`) tag what
//! they send with who they are and note in a result file what each call got, so a test checks
//! both sides: the caller's errno and what reached the listener. Alerts are judged for the
//! test's own process tree only (`Premain::alerts_of`), after the sentinel.

use std::{
    collections::BTreeSet,
    fs,
    io::Read as _,
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use integration_tests::{Premain, Python, TempDir, clean, pyenv_python, pythons};
use serde_json::{Value, json};

/// `_probe(who)`: makes each call of `$PREMAIN_NET` (a JSON list of `[tag, op, host, port]`),
/// sending `"<who> <tag>\n"`, and appends `"<who> <tag> ok"` or `"<who> <tag> errno N"` to
/// `$PREMAIN_RESULT`. `op`: `tcp` (connect, send), `udp-connect` (connect, send), `sendto`,
/// `sendmsg` (with the address). The family follows the host (`:` means IPv6).
const PROBE: &str = r#"
import json as _json, os as _os, socket as _socket

def _probe(who):
    _lines = []
    for _tag, _op, _host, _port in _json.loads(_os.environ["PREMAIN_NET"]):
        _family = _socket.AF_INET6 if ":" in _host else _socket.AF_INET
        _kind = _socket.SOCK_STREAM if _op == "tcp" else _socket.SOCK_DGRAM
        _data = ("%s %s\n" % (who, _tag)).encode()
        _s = _socket.socket(_family, _kind)
        try:
            if _op == "tcp":
                _s.connect((_host, _port))
                _s.sendall(_data)
            elif _op == "udp-connect":
                _s.connect((_host, _port))
                _s.send(_data)
            elif _op == "sendto":
                _s.sendto(_data, (_host, _port))
            elif _op == "sendmsg":
                _s.sendmsg([_data], [], 0, (_host, _port))
            else:
                raise ValueError(_op)
            _what = "ok"
        except OSError as e:
            _what = "errno %d" % e.errno
        finally:
            _s.close()
        _lines.append("%s %s %s\n" % (who, _tag, _what))
    with open(_os.environ["PREMAIN_RESULT"], "a") as _f:
        _f.write("".join(_lines))
"#;

/// The application: main probes at runtime.
fn app_main() -> String {
    format!("{PROBE}\n_probe('main')\n")
}

/// Start-up payload: probes at once.
fn payload() -> String {
    format!("{PROBE}\n_probe('payload')\n")
}

// ---------------------------------------------------------------------------------------------
// Listeners.

/// A loopback listener the test owns: each TCP connection it accepts (noted by the first line
/// sent on it, `<silent>` if none) or each datagram it receives, in arrival order.
struct Listener {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn tcp(ip: &str) -> Self {
        let socket = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).expect("bind a TCP listener");
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let (got, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (sink, flag) = (Arc::clone(&got), Arc::clone(&stop));
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match socket.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut data = Vec::new();
                        let _ = conn.read_to_end(&mut data);
                        let text = String::from_utf8_lossy(&data).trim().to_owned();
                        sink.lock().unwrap().push(if text.is_empty() { "<silent>".into() } else { text });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, got, stop }
    }

    fn udp(ip: &str) -> Self {
        let socket = UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0)).expect("bind a UDP listener");
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = socket.local_addr().unwrap();
        let (got, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (sink, flag) = (Arc::clone(&got), Arc::clone(&stop));
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    sink.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
                }
            }
        });
        Self { addr, got, stop }
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.got.lock().unwrap().clear();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One call of a probe: its tag, `op`, and the listener (by index in [`Net::listeners`])
/// it goes to, at `host` (the listener's own address, or another spelling of it).
struct Call {
    tag: &'static str,
    op: &'static str,
    host: String,
    listener: usize,
}

impl Call {
    fn rule(&self) -> &'static str {
        if matches!(self.op, "tcp" | "udp-connect") { "network-connect" } else { "network-send" }
    }
}

/// The listeners and the calls a probe makes to them.
struct Net {
    listeners: Vec<Listener>,
    calls: Vec<Call>,
}

impl Net {
    /// Every kind of call the guard covers, each to a listener of its own (so that no two
    /// calls' alerts fold into one), plus a TCP connect to the IPv4 listener through its
    /// IPv4-mapped IPv6 address (`connect6` with `::ffff:127.0.0.1`).
    fn every_kind() -> Self {
        let mut net = Self { listeners: Vec::new(), calls: Vec::new() };
        let tcp4 = net.add("tcp4", "tcp", Listener::tcp("127.0.0.1"));
        net.add("tcp6", "tcp", Listener::tcp("::1"));
        let mapped = Call { tag: "tcp4-mapped", op: "tcp", host: "::ffff:127.0.0.1".into(), listener: tcp4 };
        net.calls.push(mapped);
        net.add("udp4-connect", "udp-connect", Listener::udp("127.0.0.1"));
        net.add("udp6-connect", "udp-connect", Listener::udp("::1"));
        net.add("sendto4", "sendto", Listener::udp("127.0.0.1"));
        net.add("sendto6", "sendto", Listener::udp("::1"));
        net.add("sendmsg4", "sendmsg", Listener::udp("127.0.0.1"));
        net.add("sendmsg6", "sendmsg", Listener::udp("::1"));
        net
    }

    /// A TCP connect over IPv4 and a `sendto` over IPv6: one of each rule and family.
    fn small() -> Self {
        let mut net = Self { listeners: Vec::new(), calls: Vec::new() };
        net.add("tcp4", "tcp", Listener::tcp("127.0.0.1"));
        net.add("sendto6", "sendto", Listener::udp("::1"));
        net
    }

    /// A call `tag` of `op` to `listener` at its own address; returns the listener's index.
    fn add(&mut self, tag: &'static str, op: &'static str, listener: Listener) -> usize {
        let host = listener.addr.ip().to_string();
        self.listeners.push(listener);
        let index = self.listeners.len() - 1;
        self.calls.push(Call { tag, op, host, listener: index });
        index
    }

    /// `$PREMAIN_NET` for [`PROBE`].
    fn env(&self) -> String {
        let calls: Vec<Value> = self
            .calls
            .iter()
            .map(|c| json!([c.tag, c.op, c.host, self.listeners[c.listener].addr.port()]))
            .collect();
        Value::Array(calls).to_string()
    }

    /// The target an alert names for `call`: `ip:port`, `[ip6]:port`.
    fn target(&self, call: &Call) -> String {
        let port = self.listeners[call.listener].addr.port();
        SocketAddr::new(call.host.parse().unwrap(), port).to_string()
    }

    fn clear(&self) {
        self.listeners.iter().for_each(Listener::clear);
    }

    /// What each probe of `whos` notes when every call of its gets `what` (`ok`, `errno 1`).
    fn noted(&self, whos: &[(&str, &str)]) -> Vec<String> {
        let names: Vec<&str> = whos.iter().map(|(who, _)| *who).collect();
        self.noted_by(&names, |who, _| whos.iter().find(|(w, _)| *w == who).map_or("?", |(_, what)| what))
    }

    /// What each probe of `whos` notes, `what(who, call)` for each call.
    fn noted_by<'a>(&self, whos: &[&str], what: impl Fn(&str, &Call) -> &'a str) -> Vec<String> {
        let mut lines: Vec<String> = whos
            .iter()
            .flat_map(|who| self.calls.iter().map(move |c| (who, c)))
            .map(|(who, c)| format!("{who} {} {}", c.tag, what(who, c)))
            .collect();
        lines.sort();
        lines
    }

    /// [`Net::check_received_by`] where every call of each of `whos` arrives.
    fn check_received(&self, label: &str, whos: &[&str]) {
        self.check_received_by(label, whos, |_, _| true);
    }

    /// Waits until every listener has received what the probes of `whos` sent it
    /// (`"<who> <tag>"` of each call for which `arrives(who, call)`), and checks that nothing
    /// else came. The probes of the last of `whos` run last, and all of their calls arrive:
    /// once theirs have, whatever was sent before them has too (a listener's accept queue and
    /// a socket's receive queue keep their order).
    fn check_received_by(&self, label: &str, whos: &[&str], arrives: impl Fn(&str, &Call) -> bool) {
        let expected = |i: usize| -> Vec<String> {
            let mut v: Vec<String> = whos
                .iter()
                .flat_map(|who| self.calls.iter().filter(|c| c.listener == i).map(move |c| (*who, c)))
                .filter(|(who, c)| arrives(who, c))
                .map(|(who, c)| format!("{who} {}", c.tag))
                .collect();
            v.sort();
            v
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        for (i, listener) in self.listeners.iter().enumerate() {
            let want = expected(i);
            loop {
                let mut got = listener.got();
                got.sort();
                let arrived = want.iter().all(|w| got.contains(w));
                if arrived || Instant::now() > deadline {
                    assert_eq!(got, want, "[{label}] what {} received", listener.addr);
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Start-up payloads.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Hook {
    /// `import zz_premain_guard` in a `.pth` of the user site (as `pip install --user` leaves
    /// one), the module beside it.
    Pth,
    /// `sitecustomize.py` in a directory on `PYTHONPATH`.
    Sitecustomize,
    /// A `.pth` line of the user site that runs the payload itself (`import os; exec(...)`, as
    /// real `.pth` payloads do): its code is no module body under `site-packages` but a
    /// `<string>` that `site.py` runs.
    PthExec,
}

impl Hook {
    fn culprit(self) -> (&'static str, &'static str) {
        match self {
            Self::Pth => ("pth", "/zz_premain_guard.pth"),
            Self::Sitecustomize => ("sitecustomize", "/sitecustomize.py"),
            Self::PthExec => ("pth", "/zz_premain_guard_exec.pth"),
        }
    }
}

/// A temporary HOME with a fake credential, a start-up payload installed by `hook`, and an
/// application directory.
struct World {
    dir: TempDir,
    home: PathBuf,
    /// `PYTHONPATH` (for [`Hook::Sitecustomize`]).
    path: Option<PathBuf>,
    app: PathBuf,
    result: PathBuf,
}

impl World {
    fn new(py: &Python, hook: Hook, payload: &str, main: &str) -> Self {
        let dir = TempDir::new("guard");
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".aws")).unwrap();
        fs::write(home.join(".aws/credentials"), "[default]\naws_access_key_id = AKIAGUARDFAKE0001\n")
            .unwrap();
        let mut path = None;
        match hook {
            Hook::Pth => {
                let site =
                    home.join(format!(".local/lib/python{}.{}/site-packages", py.version.0, py.version.1));
                fs::create_dir_all(&site).unwrap();
                fs::write(site.join("zz_premain_guard.pth"), "import zz_premain_guard\n").unwrap();
                fs::write(site.join("zz_premain_guard.py"), payload).unwrap();
            }
            Hook::PthExec => {
                let site =
                    home.join(format!(".local/lib/python{}.{}/site-packages", py.version.0, py.version.1));
                fs::create_dir_all(&site).unwrap();
                let code = dir.file("payload.txt", payload);
                let line = format!("import os; exec(open({:?}).read(), {{}})\n", code.display().to_string());
                fs::write(site.join("zz_premain_guard_exec.pth"), line).unwrap();
            }
            Hook::Sitecustomize => {
                let custom = dir.path().join("custom");
                fs::create_dir_all(&custom).unwrap();
                fs::write(custom.join("sitecustomize.py"), payload).unwrap();
                path = Some(custom);
            }
        }
        let app = dir.path().join("app");
        fs::create_dir_all(&app).unwrap();
        fs::write(app.join("app.py"), main).unwrap();
        let result = dir.path().join("result");
        Self { dir, home, path, app, result }
    }

    fn command(&self, python: &Path, net: &Net) -> Command {
        let _ = fs::remove_file(&self.result);
        let mut cmd = clean(python);
        cmd.arg("app.py").current_dir(&self.app).env("HOME", &self.home);
        cmd.env("PREMAIN_RESULT", &self.result).env("PREMAIN_NET", net.env());
        cmd.env("PREMAIN_MAIN_STARTED", self.dir.path().join("main-started"));
        if let Some(path) = &self.path {
            cmd.env("PYTHONPATH", path);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    /// Runs the application with `python` (bounded: 30 s); returns its pid and what the probes
    /// noted, sorted.
    fn run(&self, label: &str, python: &Path, net: &Net) -> (u32, Vec<String>) {
        let pid = run_bounded(label, &mut self.command(python, net));
        (pid, self.noted())
    }

    fn noted(&self) -> Vec<String> {
        let mut lines: Vec<String> =
            fs::read_to_string(&self.result).unwrap_or_default().lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }
}

/// Runs `cmd` to completion within 30 s (else kills it and fails: a process hung); it must
/// exit 0. Returns its pid.
fn run_bounded(label: &str, cmd: &mut Command) -> u32 {
    let child = cmd.spawn().unwrap_or_else(|e| panic!("[{label}] spawn: {e}"));
    let pid = child.id();
    let (status, stderr) = wait_bounded(label, child, Duration::from_secs(30));
    assert!(status.success(), "[{label}] the application must exit 0: {status}\n{stderr}");
    pid
}

fn wait_bounded(label: &str, mut child: Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("[{label}] pid {} still running after {limit:?}: it hung", child.id());
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    (status, stderr)
}

// ---------------------------------------------------------------------------------------------
// Alerts.

/// The alerts of `pid`'s tree once premain has handled everything it did (the sentinel).
fn alerts_of(premain: &Premain, pid: u32) -> Vec<Value> {
    premain.sentinel();
    premain.alerts_of(pid)
}

/// `(rule, phase, target)` of an alert.
fn key(alert: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    (s(&alert["rule"]), s(&alert["phase"]), s(&alert["action"]["addr"]))
}

/// The `(rule, phase, target)` of every call of `net`.
fn expected_keys(net: &Net, phase: &str) -> BTreeSet<(String, String, String)> {
    net.calls.iter().map(|c| (c.rule().to_owned(), phase.to_owned(), net.target(c))).collect()
}

/// premain's warnings that the guard decided on a call of `pid` that raised no alert.
fn overreach(premain: &Premain, pid: u32) -> Vec<String> {
    let field = format!("pid={pid} ");
    premain
        .stderr()
        .lines()
        .filter(|l| l.contains("the guard decided on an action that raises no alert") && l.contains(&field))
        .map(str::to_owned)
        .collect()
}

/// Checks that every alert is a network alert of a call of `net` in `phase`, with the
/// `enforcement` of `mode` and `outcome` and the action's result to match; returns their keys.
fn check_network_alerts(
    label: &str,
    alerts: &[Value],
    phase: &str,
    mode: &str,
    outcome: &str,
) -> BTreeSet<(String, String, String)> {
    for a in alerts {
        assert!(
            matches!(a["rule"].as_str(), Some("network-connect" | "network-send")),
            "[{label}] only the guarded calls alert: {a}"
        );
        assert_eq!(a["phase"], phase, "[{label}] {a}");
        assert_eq!(a["enforcement"], json!({"mode": mode, "outcome": outcome}), "[{label}] {a}");
        if outcome == "denied" {
            assert_eq!(a["action"]["result"], -1, "[{label}] {a}");
            assert_eq!(a["action"]["error"], "EPERM", "[{label}] {a}");
        } else {
            assert!(a["action"]["result"].as_i64().is_some_and(|r| r >= 0), "[{label}] went through: {a}");
        }
    }
    let keys: BTreeSet<_> = alerts.iter().map(key).collect();
    assert_eq!(keys.len(), alerts.len(), "[{label}] one alert per call: {alerts:#?}");
    keys
}

fn check_stopped(premain: Premain, mode: &str) {
    let (status, stderr) = premain.stop();
    assert!(status.success(), "premain {mode}: {status}\n{stderr}");
    let line = stderr.lines().find(|l| l.contains("enforcement on")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("network-connect") && line.contains("network-send"), "deniable: {line}");
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// A start-up payload (a `.pth` line in the user site importing it, a `.pth` line running it,
/// a `sitecustomize`) makes every kind of call the guard covers, each to a listener of its own:
/// TCP connects over IPv4, IPv6 and an IPv4-mapped IPv6 address, UDP connects, `sendto` and
/// `sendmsg` with an address over IPv4 and IPv6. Under enforce each fails with `EPERM`, no listener receives anything from it, main
/// then makes the same calls at runtime and they all go through, and the process exits 0; the
/// alerts (one per call, `startup`, the payload's culprit) say `denied`. Under dry-run
/// everything goes through and the same alerts say `would-deny`: the `(rule, phase, target)`
/// of the dry run's `would-deny` alerts are exactly those enforce denied, on every CPython.
#[test]
fn start_up_calls_are_denied_under_enforce_and_flagged_under_dry_run() {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    let net = Net::every_kind();
    let hooks = [Hook::Pth, Hook::PthExec, Hook::Sitecustomize];
    let mut sets = Vec::new();
    for (mode, payload_got, outcome) in [("enforce", "errno 1", "denied"), ("dry-run", "ok", "would-deny")] {
        let premain = Premain::start_alerts(&["--mode", mode]);
        let mut set = BTreeSet::new();
        for py in &pythons {
            for hook in hooks {
                let label = format!("{} {hook:?} {mode}", py.label);
                let world = World::new(py, hook, &payload(), &app_main());
                net.clear();
                let (pid, noted) = world.run(&label, &py.path, &net);
                assert_eq!(
                    noted,
                    net.noted(&[("payload", payload_got), ("main", "ok")]),
                    "[{label}] the calls"
                );
                let senders: &[&str] = if mode == "enforce" { &["main"] } else { &["payload", "main"] };
                net.check_received(&label, senders);
                let alerts = alerts_of(&premain, pid);
                let keys = check_network_alerts(&label, &alerts, "startup", mode, outcome);
                assert_eq!(keys, expected_keys(&net, "startup"), "[{label}] one alert per payload call");
                let (kind, file) = hook.culprit();
                for a in &alerts {
                    assert_eq!(a["culprit"]["kind"], kind, "[{label}] {a}");
                    let path = a["culprit"]["path"].as_str().unwrap_or("");
                    assert!(path.ends_with(file), "[{label}] culprit {path}");
                    assert_eq!(a["process"]["pid"], pid, "[{label}] {a}");
                }
                assert_eq!(overreach(&premain, pid), Vec::<String>::new(), "[{label}]");
                set.extend(keys.into_iter().map(|k| (py.label.clone(), hook, k)));
            }
        }
        check_stopped(premain, mode);
        sets.push(set);
    }
    assert_eq!(sets[0], sets[1], "dry-run's would-deny alerts are exactly enforce's denied ones");
    let ran: Vec<&str> = pythons.iter().map(|p| p.label.as_str()).collect();
    println!(
        "ran on {} (each with a .pth importing it, a .pth running it and a sitecustomize; enforce and dry-run)",
        ran.join(", ")
    );
}

/// Builds `netlib-1.0-py3-none-any.whl` in `dir` (its `netlib/__init__.py` is `source`), with
/// hashes in its `RECORD`, as a build backend leaves it.
const MAKE_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile
out, source = sys.argv[1], open(sys.argv[2]).read()
files = {
    "netlib/__init__.py": source,
    "netlib-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: netlib\nVersion: 1.0\n\n",
    "netlib-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: premain-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
record = "".join("%s,sha256=%s,%d\n" % (n, digest(t.encode()), len(t.encode())) for n, t in files.items())
files["netlib-1.0.dist-info/RECORD"] = record + "netlib-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(out, "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
"#;

/// Where the third-party package `netlib` is installed.
#[derive(Clone, Copy, Debug)]
enum Install {
    /// By hand into a fresh venv's `site-packages` (the files, `METADATA` and `RECORD`, as an
    /// installer leaves them); the venv's interpreter runs the application.
    Venv,
    /// `pip install --no-index --target <dir>/<name>` of a wheel; the base interpreter runs the
    /// application with that directory on `PYTHONPATH`.
    Target(&'static str),
}

/// An application whose own module (`settings.py`, beside its script) probes at import, then
/// imports the third-party `netlib`, whose module body probes, then probes in main.
struct ImportWorld {
    dir: TempDir,
    python: PathBuf,
    path: Option<PathBuf>,
    /// netlib's `__init__.py`, as the alert names it.
    module: PathBuf,
}

impl ImportWorld {
    /// `later`: netlib's module body probes again 200 ms after its first calls, as
    /// `netlib-later`.
    fn new(py: &Python, install: Install, later: bool) -> Self {
        let dir = TempDir::new("guard-import");
        fs::create_dir_all(dir.path().join("home")).unwrap();
        let app = dir.path().join("app");
        fs::create_dir_all(&app).unwrap();
        fs::write(app.join("settings.py"), format!("{PROBE}\n_probe('settings')\n")).unwrap();
        fs::write(app.join("app.py"), format!("import settings\nimport netlib\n{PROBE}\n_probe('main')\n"))
            .unwrap();
        let mut source = format!("{PROBE}\n_probe('netlib')\n");
        if later {
            source.push_str("import time\ntime.sleep(0.2)\n_probe('netlib-later')\n");
        }
        let (python, path, site) = match install {
            Install::Venv => {
                let venv = dir.path().join("venv");
                let mut cmd = clean(&py.path);
                integration_tests::checked(
                    cmd.args(["-m", "venv", "--without-pip"]).arg(&venv),
                    "python -m venv",
                );
                let site = venv.join(format!("lib/python{}.{}/site-packages", py.version.0, py.version.1));
                assert!(site.is_dir(), "[{}] no {}", py.label, site.display());
                fs::create_dir_all(site.join("netlib")).unwrap();
                fs::write(site.join("netlib/__init__.py"), &source).unwrap();
                let info = site.join("netlib-1.0.dist-info");
                fs::create_dir_all(&info).unwrap();
                fs::write(info.join("METADATA"), "Metadata-Version: 2.1\nName: netlib\nVersion: 1.0\n\n")
                    .unwrap();
                fs::write(info.join("INSTALLER"), "pip\n").unwrap();
                fs::write(
                    info.join("RECORD"),
                    "netlib/__init__.py,,\nnetlib-1.0.dist-info/METADATA,,\nnetlib-1.0.dist-info/INSTALLER,,\nnetlib-1.0.dist-info/RECORD,,\n",
                )
                .unwrap();
                (venv.join("bin/python"), None, site)
            }
            Install::Target(name) => {
                let source_file = dir.file("netlib_init.py", &source);
                let wheel = dir.path().join("netlib-1.0-py3-none-any.whl");
                let mut cmd = clean(&py.path);
                cmd.args(["-c", MAKE_WHEEL]).arg(&wheel).arg(&source_file);
                integration_tests::checked(&mut cmd, "build the wheel");
                let target = dir.path().join(name);
                let mut cmd = clean(&py.path);
                cmd.args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-index",
                    "--no-deps",
                    "--no-compile",
                    "--target",
                ]);
                cmd.arg(&target).arg(&wheel);
                integration_tests::checked(&mut cmd, &format!("[{}] pip install --target", py.label));
                assert!(target.join("netlib-1.0.dist-info/RECORD").is_file(), "pip installed netlib");
                (py.path.clone(), Some(target.clone()), target)
            }
        };
        let module = fs::canonicalize(site.join("netlib/__init__.py")).unwrap();
        Self { dir, python, path, module }
    }

    fn run(&self, label: &str, net: &Net) -> (u32, Vec<String>) {
        let result = self.dir.path().join("result");
        let _ = fs::remove_file(&result);
        let mut cmd = clean(&self.python);
        cmd.arg("app.py").current_dir(self.dir.path().join("app")).env("HOME", self.dir.path().join("home"));
        cmd.env("PREMAIN_RESULT", &result).env("PREMAIN_NET", net.env());
        if let Some(path) = &self.path {
            cmd.env("PYTHONPATH", path);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let pid = run_bounded(label, &mut cmd);
        let mut lines: Vec<String> =
            fs::read_to_string(&result).unwrap_or_default().lines().map(str::to_owned).collect();
        lines.sort();
        (pid, lines)
    }
}

/// Runs the application of an [`ImportWorld`] with `netlib` installed as `install`, under
/// enforce, and checks: netlib's module body is denied every call (`import` alerts naming its
/// module and distribution, `third-party`), the application's own `settings.py` and main are
/// denied nothing and raise no alert.
fn check_import(premain: &Premain, py: &Python, install: Install, net: &Net) {
    let label = format!("{} {install:?}", py.label);
    let world = ImportWorld::new(py, install, false);
    net.clear();
    let (pid, noted) = world.run(&label, net);
    premain.sentinel();
    let alerts = premain.alerts_of(pid);
    let summary: Vec<String> = alerts
        .iter()
        .map(|a| format!("{} {} {} {}", a["rule"], a["phase"], a["action"]["addr"], a["enforcement"]))
        .collect();
    let want = net.noted(&[("settings", "ok"), ("netlib", "errno 1"), ("main", "ok")]);
    assert_eq!(noted, want, "[{label}] the calls; premain's alerts for them:\n{}", summary.join("\n"));
    net.check_received(&label, &["settings", "main"]);
    let keys = check_network_alerts(&label, &alerts, "import", "enforce", "denied");
    assert_eq!(keys, expected_keys(net, "import"), "[{label}] one alert per netlib call, none for settings");
    for a in &alerts {
        let c = &a["culprit"];
        assert_eq!(c["kind"], "module", "[{label}] {a}");
        assert_eq!(c["module_path"], world.module.to_str().unwrap(), "[{label}] {a}");
        assert_eq!(c["distribution"], "netlib", "[{label}] {a}");
        assert_eq!(c["party"], "third-party", "[{label}] {a}");
    }
    assert_eq!(overreach(premain, pid), Vec::<String>::new(), "[{label}]");
}

/// Import time, under enforce: the module body of a third-party package, installed into a
/// venv's `site-packages` and by `pip install --target <dir>/site-packages`, is denied every
/// kind of call, with `import` alerts naming its module and distribution; the application's own
/// module (`settings.py`, beside the script), imported first, makes the same calls and is
/// denied nothing and raises no alert (the default `alerts.application_code = "quiet"`); main
/// then makes them too and the process exits 0. On every CPython.
#[test]
fn import_time_calls_of_a_third_party_package_are_denied_and_the_application_s_are_not() {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    let net = Net::every_kind();
    let premain = Premain::start_alerts(&["--mode", "enforce"]);
    for py in &pythons {
        check_import(&premain, py, Install::Venv, &net);
        check_import(&premain, py, Install::Target("site-packages"), &net);
    }
    check_stopped(premain, "enforce");
    let ran: Vec<&str> = pythons.iter().map(|p| p.label.as_str()).collect();
    println!("ran on {} (a venv, and pip install --target .../site-packages)", ran.join(", "));
}

/// `pip install --target deps` (as AWS Lambda bundles and vendored dependencies are made):
/// premain says netlib is third-party (its `*.dist-info` is beside it), but the kernel's own
/// view of the phase, which decides until premain has read the thread's latest phase change,
/// only knows `site-packages`/`dist-packages` (README, Known limits). What must hold: every call
/// of netlib's module body alerts (`import`, third-party) saying truthfully what came of it
/// (`denied` and `EPERM` for a call that failed, `not-enforced` for one that went through, and
/// the listeners received exactly those), and once premain has caught up (200 ms later, still
/// in the module body) every call is denied. The application's own module and main are denied
/// nothing and raise nothing. On one CPython.
#[test]
fn import_time_calls_of_a_package_installed_with_target_into_any_directory_are_denied_once_judged() {
    let py = pyenv_python();
    let net = Net::every_kind();
    let premain = Premain::start_alerts(&["--mode", "enforce"]);
    let label = format!("{} --target deps", py.label);
    let world = ImportWorld::new(&py, Install::Target("deps"), true);
    let (pid, noted) = world.run(&label, &net);
    let alerts = alerts_of(&premain, pid);
    let got = |who: &str, tag: &str| {
        let line = noted.iter().find(|l| l.starts_with(&format!("{who} {tag} "))).expect("noted");
        line.rsplit_once(&format!("{tag} ")).unwrap().1.to_owned()
    };
    let early_through: Vec<&str> =
        net.calls.iter().map(|c| c.tag).filter(|t| got("netlib", t) == "ok").collect();
    let what = |who: &str, c: &Call| match who {
        "netlib" => {
            if early_through.contains(&c.tag) {
                "ok"
            } else {
                "errno 1"
            }
        }
        "netlib-later" => "errno 1",
        _ => "ok",
    };
    let whos = ["settings", "netlib", "netlib-later", "main"];
    assert_eq!(noted, net.noted_by(&whos, what), "[{label}] the calls");
    net.check_received_by(&label, &whos, |who, c| what(who, c) == "ok");
    let mut want = BTreeSet::new();
    for c in &net.calls {
        let outcome = if early_through.contains(&c.tag) { "not-enforced" } else { "denied" };
        want.insert((c.rule().to_owned(), net.target(c), outcome.to_owned()));
        want.insert((c.rule().to_owned(), net.target(c), "denied".to_owned()));
    }
    let mut keys = BTreeSet::new();
    for a in &alerts {
        let outcome = a["enforcement"]["outcome"].as_str().unwrap_or("?");
        assert_eq!(a["phase"], "import", "[{label}] {a}");
        assert_eq!(a["culprit"]["module_path"], world.module.to_str().unwrap(), "[{label}] {a}");
        assert_eq!(a["culprit"]["party"], "third-party", "[{label}] {a}");
        let failed = a["action"]["result"] == -1 && a["action"]["error"] == "EPERM";
        assert_eq!(failed, outcome == "denied", "[{label}] the outcome says what came of the call: {a}");
        keys.insert((a["rule"].as_str().unwrap_or("?").to_owned(), key(a).2, outcome.to_owned()));
    }
    assert_eq!(keys, want, "[{label}] the alerts (rule, target, outcome)");
    assert_eq!(alerts.len(), want.len(), "[{label}] one alert per call and outcome: {alerts:#?}");
    check_stopped(premain, "enforce");
    println!(
        "ran on {}: {} of netlib's {} immediate calls went through (not-enforced), all denied 200 ms later",
        py.label,
        early_through.len(),
        net.calls.len()
    );
}

/// `allow.destinations`: with a configuration allowing `127.0.0.3/32`, `*:<a UDP port>` and
/// `[::1/128]:<a TCP port>`, a start-up payload's TCP connects to `127.0.0.3` (also through
/// `::ffff:127.0.0.3`), its `sendto` to that UDP port and its IPv6 connect to that TCP port go
/// through under enforce and raise no alert; its calls to destinations the list does not cover
/// (another IPv4 port, another IPv6 port) are denied, so the guard was on. On every CPython.
#[test]
fn allowed_destinations_are_never_denied() {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    let mut net = Net { listeners: Vec::new(), calls: Vec::new() };
    let three = net.add("tcp-127.0.0.3", "tcp", Listener::tcp("127.0.0.3"));
    net.calls.push(Call {
        tag: "tcp-mapped-127.0.0.3",
        op: "tcp",
        host: "::ffff:127.0.0.3".into(),
        listener: three,
    });
    let udp = net.add("sendto-any-host-port", "sendto", Listener::udp("127.0.0.1"));
    let tcp6 = net.add("tcp6-port", "tcp", Listener::tcp("::1"));
    net.add("tcp4-other", "tcp", Listener::tcp("127.0.0.1"));
    net.add("sendto6-other", "sendto", Listener::udp("::1"));
    let allowed = ["tcp-127.0.0.3", "tcp-mapped-127.0.0.3", "sendto-any-host-port", "tcp6-port"];
    let dir = TempDir::new("guard-allow");
    let config = dir.file(
        "premain.toml",
        &format!(
            "[allow]\ndestinations = [\"127.0.0.3/32\", \"*:{}\", \"[::1/128]:{}\"]\n",
            net.listeners[udp].addr.port(),
            net.listeners[tcp6].addr.port()
        ),
    );
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap(), "--mode", "enforce"]);
    for py in &pythons {
        let label = format!("{} allow.destinations", py.label);
        let world = World::new(py, Hook::Pth, &payload(), &app_main());
        net.clear();
        let (pid, noted) = world.run(&label, &py.path, &net);
        let what =
            |who: &str, c: &Call| if who == "main" || allowed.contains(&c.tag) { "ok" } else { "errno 1" };
        assert_eq!(noted, net.noted_by(&["payload", "main"], what), "[{label}] the calls");
        net.check_received_by(&label, &["payload", "main"], |who, c| what(who, c) == "ok");
        let alerts = alerts_of(&premain, pid);
        let keys = check_network_alerts(&label, &alerts, "startup", "enforce", "denied");
        let denied: BTreeSet<_> = net
            .calls
            .iter()
            .filter(|c| !allowed.contains(&c.tag))
            .map(|c| (c.rule().to_owned(), "startup".to_owned(), net.target(c)))
            .collect();
        assert_eq!(keys, denied, "[{label}] only the calls to destinations not allowed alert");
        assert_eq!(overreach(&premain, pid), Vec::<String>::new(), "[{label}]");
    }
    check_stopped(premain, "enforce");
    let ran: Vec<&str> = pythons.iter().map(|p| p.label.as_str()).collect();
    println!("ran on {}", ran.join(", "));
}

/// A start-up payload that starts a thread, which waits until main has started and then
/// probes: optionally after importing a module no one imported yet (`http.client`, as a
/// payload fetching something would), so that the thread's latest phase change (the return
/// of those module bodies) comes just before its calls.
fn thread_payload() -> String {
    const THREAD: &str = r#"
import os as _o, threading as _t, time as _tm

def _later():
    _deadline = _tm.time() + 20
    while not _o.path.exists(_o.environ["PREMAIN_MAIN_STARTED"]) and _tm.time() < _deadline:
        _tm.sleep(0.005)
    if _o.environ.get("PREMAIN_THREAD_IMPORTS"):
        import http.client
    _probe("thread")

_t.Thread(target=_later).start()
"#;
    format!("{PROBE}\n{THREAD}")
}

/// Main says it has started, waits for the payload's thread, then probes.
fn thread_main() -> String {
    const MAIN: &str = r#"
import os, threading
open(os.environ["PREMAIN_MAIN_STARTED"], "w").close()
for t in threading.enumerate():
    if t is not threading.current_thread():
        t.join()
"#;
    format!("{MAIN}\n{PROBE}\n_probe('main')\n")
}

/// A thread started by the start-up payload (a `.pth` importing a module, a `.pth` line running
/// the payload itself, a `sitecustomize`) that makes its calls after main has started keeps the
/// payload's phase: under enforce its calls are denied, with `startup` alerts naming the
/// payload and the thread; main's calls, made after the thread's, go through. Also when the
/// thread imports a module just before its calls. Every case is run before the test fails, and
/// the failure lists each case whose thread got through, with premain's alerts for it.
#[test]
fn a_thread_of_the_start_up_payload_is_denied_after_main_has_started() {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    let net = Net::small();
    let premain = Premain::start_alerts(&["--mode", "enforce"]);
    let mut failures = Vec::new();
    for py in &pythons {
        for hook in [Hook::Pth, Hook::PthExec, Hook::Sitecustomize] {
            for imports in [false, true] {
                let label = format!("{} {hook:?}{}", py.label, if imports { " importing first" } else { "" });
                let world = World::new(py, hook, &thread_payload(), &thread_main());
                net.clear();
                let mut cmd = world.command(&py.path, &net);
                if imports {
                    cmd.env("PREMAIN_THREAD_IMPORTS", "1");
                }
                let pid = run_bounded(&label, &mut cmd);
                let noted = world.noted();
                let alerts = alerts_of(&premain, pid);
                if noted != net.noted(&[("thread", "errno 1"), ("main", "ok")]) {
                    // Gathered, so that the failure says which cases hold and which do not.
                    let thread: Vec<&String> = noted.iter().filter(|l| l.starts_with("thread")).collect();
                    let outcomes: Vec<String> = alerts
                        .iter()
                        .map(|a| {
                            format!("{} {} {}", a["rule"], a["action"]["addr"], a["enforcement"]["outcome"])
                        })
                        .collect();
                    failures.push(format!("[{label}] {thread:?}; alerts: {outcomes:?}"));
                    continue;
                }
                net.check_received(&label, &["main"]);
                let keys = check_network_alerts(&label, &alerts, "startup", "enforce", "denied");
                assert_eq!(
                    keys,
                    expected_keys(&net, "startup"),
                    "[{label}] one alert per call of the thread"
                );
                let (kind, file) = hook.culprit();
                for a in &alerts {
                    assert_eq!(a["process"]["pid"], pid, "[{label}] {a}");
                    assert_ne!(a["process"]["tid"], pid, "[{label}] the thread's, not main's: {a}");
                    assert_eq!(a["culprit"]["kind"], kind, "[{label}] {a}");
                    let path = a["culprit"]["path"].as_str().unwrap_or("");
                    assert!(path.ends_with(file), "[{label}] culprit {path}");
                }
                assert_eq!(overreach(&premain, pid), Vec::<String>::new(), "[{label}]");
            }
        }
    }
    check_stopped(premain, "enforce");
    assert!(failures.is_empty(), "the payload's thread got through:\n{}", failures.join("\n"));
    let ran: Vec<&str> = pythons.iter().map(|p| p.label.as_str()).collect();
    println!(
        "ran on {} (a .pth importing the payload, a .pth running it, a sitecustomize; with and without an import first)",
        ran.join(", ")
    );
}

/// Main code that probes at once, then right after importing a module no one imported yet
/// (`http.client`), so that its calls come just after a change of its thread's phase.
fn eager_main() -> String {
    format!("{PROBE}\n_probe('main')\nimport http.client\n_probe('main-after-import')\n")
}

/// Runtime code is never denied, even when its calls come just after its thread's phase
/// changed (before premain can have judged the change): under enforce, with no start-up
/// payload, `python -m tool` whose `tool/__main__.py` is an installed distribution's (in a
/// venv's `site-packages`, as `python -m pip`, `python -m uvicorn` run) and a script that has
/// just imported a third-party module (whose body does nothing) make every kind of call, at
/// once and right after an import: all go through, nothing alerts, and premain logs no call
/// the guard decided on without an alert. On every CPython.
#[test]
fn main_code_is_never_denied_even_right_after_an_import() {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    let net = Net::every_kind();
    let premain = Premain::start_alerts(&["--mode", "enforce"]);
    let mut failures = Vec::new();
    for py in &pythons {
        let dir = TempDir::new("guard-runtime");
        let venv = dir.path().join("venv");
        integration_tests::checked(clean(&py.path).args(["-m", "venv", "--without-pip"]).arg(&venv), "venv");
        let site = venv.join(format!("lib/python{}.{}/site-packages", py.version.0, py.version.1));
        for (name, files) in [
            ("tool", &[("tool/__init__.py", String::new()), ("tool/__main__.py", eager_main())][..]),
            ("quietlib", &[("quietlib/__init__.py", "VALUE = 1\n".to_owned())][..]),
        ] {
            let info = site.join(format!("{name}-1.0.dist-info"));
            fs::create_dir_all(&info).unwrap();
            let mut record = String::new();
            for (path, text) in files {
                fs::create_dir_all(site.join(path).parent().unwrap()).unwrap();
                fs::write(site.join(path), text).unwrap();
                record.push_str(&format!("{path},,\n"));
            }
            fs::write(
                info.join("METADATA"),
                format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n"),
            )
            .unwrap();
            record.push_str(&format!("{name}-1.0.dist-info/METADATA,,\n{name}-1.0.dist-info/RECORD,,\n"));
            fs::write(info.join("RECORD"), record).unwrap();
        }
        let script = dir.file("app.py", &format!("import quietlib\n{}", eager_main()));
        fs::create_dir_all(dir.path().join("home")).unwrap();
        let result = dir.path().join("result");
        for (how, args) in
            [("python -m tool", vec!["-m", "tool"]), ("python app.py", vec![script.to_str().unwrap()])]
        {
            let label = format!("{} {how}", py.label);
            let _ = fs::remove_file(&result);
            net.clear();
            let mut cmd = clean(venv.join("bin/python"));
            cmd.args(&args).current_dir(dir.path()).env("HOME", dir.path().join("home"));
            cmd.env("PREMAIN_RESULT", &result).env("PREMAIN_NET", net.env());
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
            let pid = run_bounded(&label, &mut cmd);
            let mut noted: Vec<String> =
                fs::read_to_string(&result).unwrap_or_default().lines().map(str::to_owned).collect();
            noted.sort();
            let alerts = alerts_of(&premain, pid);
            let overreach = overreach(&premain, pid);
            if noted != net.noted(&[("main", "ok"), ("main-after-import", "ok")]) || !overreach.is_empty() {
                // Gathered, so that the report says which cases hold and which do not.
                let denied: Vec<&String> = noted.iter().filter(|l| !l.ends_with(" ok")).collect();
                failures.push(format!(
                    "[{label}] denied: {denied:?}\n  premain logged {} such lines, the first: {}",
                    overreach.len(),
                    overreach.first().map_or("", String::as_str)
                ));
                continue;
            }
            net.check_received(&label, &["main", "main-after-import"]);
            assert_eq!(alerts, Vec::<Value>::new(), "[{label}] main code raises nothing");
        }
    }
    check_stopped(premain, "enforce");
    assert!(failures.is_empty(), "main code was denied:\n{}", failures.join("\n"));
    let ran: Vec<&str> = pythons.iter().map(|p| p.label.as_str()).collect();
    println!("ran on {} (python -m of an installed package, and a script)", ran.join(", "));
}

/// The ids of premain's links to its cgroup `sock_addr` programs (`connect4|6`,
/// `sendmsg4|6`), from its descriptors and `bpftool link show`.
fn guard_links(pid: i32) -> BTreeSet<u64> {
    let mut mine = BTreeSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap().flatten() {
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("link_id:")) {
            mine.insert(id.trim().parse::<u64>().unwrap());
        }
    }
    bpf_links()
        .into_iter()
        .filter(|(id, attach)| mine.contains(id) && is_guard(attach))
        .map(|(id, _)| id)
        .collect()
}

fn is_guard(attach: &str) -> bool {
    ["inet4_connect", "inet6_connect", "udp4_sendmsg", "udp6_sendmsg"].iter().any(|k| attach.ends_with(k))
}

/// `bpftool link show`: `(id, attach_type)` of every link.
fn bpf_links() -> Vec<(u64, String)> {
    let out = Command::new(integration_tests::tool("bpftool")).args(["link", "show", "-j"]).output().unwrap();
    assert!(out.status.success(), "bpftool link show: {}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|l| (l["id"].as_u64().unwrap(), l["attach_type"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// A start-up payload that tries a TCP connect to `$PREMAIN_LOOP_PORT` every 20 ms, noting
/// each result, until one goes through (or 20 s pass).
const LOOP_PAYLOAD: &str = r#"
import os, socket, time
_deadline = time.time() + 20
while time.time() < _deadline:
    _s = socket.socket()
    try:
        _s.connect(("127.0.0.1", int(os.environ["PREMAIN_LOOP_PORT"])))
        _s.sendall(b"payload loop\n")
        _what = "ok"
    except OSError as e:
        _what = "errno %d" % e.errno
    finally:
        _s.close()
    with open(os.environ["PREMAIN_RESULT"], "a") as _f:
        _f.write("loop %s\n" % _what)
    if _what == "ok":
        break
    time.sleep(0.02)
"#;

/// Fail-safe: premain killed with SIGKILL under enforce while a start-up payload is being
/// denied connects. The payload's next tries go through (its process neither hangs nor dies,
/// and its main then runs), premain's cgroup links are gone, and a new process's start-up
/// connect and send go through at once.
#[test]
fn a_killed_premain_leaves_no_guard_behind() {
    let py = pyenv_python();
    let premain = Premain::start_alerts(&["--mode", "enforce"]);
    let links = guard_links(premain.daemon_pid());
    assert_eq!(
        links.len(),
        4,
        "premain holds its connect4, connect6, sendmsg4 and sendmsg6 links: {links:?}"
    );
    let sink = Listener::tcp("127.0.0.1");
    let net = Net::small();
    let world = World::new(&py, Hook::Pth, LOOP_PAYLOAD, &app_main());
    let mut cmd = world.command(&py.path, &net);
    cmd.env("PREMAIN_LOOP_PORT", sink.addr.port().to_string());
    let child = cmd.spawn().unwrap();
    integration_tests::eventually("the payload's connects denied", || {
        world.noted().iter().filter(|l| *l == "loop errno 1").count() >= 3
    });
    let (status, _) = premain.stop_within(libc::SIGKILL, Duration::from_secs(20));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{status}");
    let (status, stderr) = wait_bounded("the payload", child, Duration::from_secs(30));
    assert!(status.success(), "the payload's process: {status}\n{stderr}");
    let noted = world.noted();
    let loops: Vec<&String> = noted.iter().filter(|l| l.starts_with("loop")).collect();
    assert_eq!(loops.last().map(|l| l.as_str()), Some("loop ok"), "{noted:?}");
    assert!(
        loops[..loops.len() - 1].iter().all(|l| *l == "loop errno 1"),
        "denied until premain died, then through: {noted:?}"
    );
    assert_eq!(sink.got(), vec!["payload loop".to_owned()], "the listener got the one connect let through");
    net.check_received("main after the kill", &["main"]);
    let left: Vec<u64> = bpf_links().into_iter().map(|(id, _)| id).filter(|id| links.contains(id)).collect();
    assert_eq!(left, Vec::<u64>::new(), "premain's cgroup links are gone once it is reaped");
    // A new process, with premain gone: through at once.
    let world = World::new(&py, Hook::Pth, &payload(), &app_main());
    net.clear();
    let (_, noted) = world.run("after the kill", &py.path, &net);
    assert_eq!(noted, net.noted(&[("payload", "ok"), ("main", "ok")]), "with premain gone");
    net.check_received("after the kill", &["payload", "main"]);
    println!(
        "ran on {}; {} connects denied before the kill, the next one went through",
        py.label,
        loops.len() - 1
    );
}
