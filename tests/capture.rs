//! Kernel capture, end to end: real premain, real kernel, real interpreters.
//!
//! One premain instance serves each test; tests run one at a time (`--test-threads=1`, set by
//! `cargo xtask test`) because they share the kernel's tracepoints.

use std::{
    ffi::OsStr, fs, net::TcpListener, os::unix::fs::MetadataExt as _, os::unix::fs::PermissionsExt as _,
    process::Command,
};

use integration_tests::{Premain, TempDir, matching, pythons, run_ok, script};
use serde_json::{Value, json};

struct Listeners {
    v4: TcpListener,
    v6: TcpListener,
}

impl Listeners {
    fn new() -> Self {
        Self {
            v4: TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1"),
            v6: TcpListener::bind("[::1]:0").expect("bind ::1"),
        }
    }
    fn ports(&self) -> (u16, u16) {
        (self.v4.local_addr().unwrap().port(), self.v6.local_addr().unwrap().port())
    }
}

/// The single event of `pid` with `hook` whose `key` is `value`; panics with the process's
/// events when there are none or several.
fn the_one(events: &[Value], pid: u32, hook: &str, key: &str, value: &Value, label: &str) -> Value {
    let found = matching(events, pid, hook, key, value);
    if found.len() != 1 {
        let mine: Vec<String> = events.iter().filter(|e| e["pid"] == pid).map(Value::to_string).collect();
        panic!(
            "[{label}] expected exactly one {hook} event with {key} = {value}, found {}; events of pid {pid}:\n{}",
            found.len(),
            mine.join("\n")
        );
    }
    found[0].clone()
}

/// Runs `actions.py` under `python` and checks every action appears once, correctly.
fn check_actions(premain: &Premain, label: &str, python: &OsStr, dir: &TempDir, listeners: &Listeners) {
    let (port4, port6) = listeners.ports();
    let d = dir.path();
    let out = run_ok(
        python,
        &[
            script("actions.py").as_os_str(),
            d.as_os_str(),
            OsStr::new(&port4.to_string()),
            OsStr::new(&port6.to_string()),
        ],
    );
    let report: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("[{label}] bad script output {out:?}: {e}"));
    let pid = report["pid"].as_u64().unwrap() as u32;
    let child = report["child"].as_u64().unwrap() as u32;
    premain.wait_exit(child);
    premain.wait_exit(pid);
    let events = premain.events();
    let path = |name: &str| json!(d.join(name).to_str().unwrap());

    // Opens that succeed carry the kernel's path of the file and its inode; the caller's
    // string when it differs.
    let ino = |name: &str| json!(std::fs::metadata(d.join(name)).unwrap().ino());
    let abs = the_one(&events, pid, "open", "path", &path("abs-marker"), label);
    assert_eq!(abs["path_resolution"], "kernel", "[{label}] {abs}");
    assert_eq!((&abs["ino"], &abs["requested"]), (&ino("abs-marker"), &Value::Null), "[{label}] {abs}");
    assert!(abs["result"].as_i64().unwrap() >= 0, "[{label}] {abs}");
    assert_eq!(abs["tracking"], "python", "[{label}] {abs}");

    let rel = the_one(&events, pid, "open", "path", &path("rel-marker"), label);
    assert_eq!(rel["path_resolution"], "kernel", "[{label}] {rel}");
    assert_eq!(
        (&rel["ino"], &rel["requested"]),
        (&ino("rel-marker"), &json!("rel-marker")),
        "[{label}] {rel}"
    );

    let dirfd = the_one(&events, pid, "open", "path", &path("dirfd-marker"), label);
    assert_eq!(dirfd["requested"], "dirfd-marker", "[{label}] {dirfd}");
    assert!(dirfd["dirfd"].as_i64().unwrap() >= 0, "[{label}] {dirfd}");

    // A failed open opened no file: the caller's string, made absolute by the daemon.
    let missing = the_one(&events, pid, "open", "path", &path("missing-marker"), label);
    assert_eq!(missing["path_resolution"], "absolute", "[{label}] {missing}");
    assert_eq!(
        (missing["result"].as_i64(), missing["error"].as_str()),
        (Some(-2), Some("ENOENT")),
        "[{label}] {missing}"
    );

    for (addr, family) in [(format!("127.0.0.1:{port4}"), "inet"), (format!("[::1]:{port6}"), "inet6")] {
        let c = the_one(&events, pid, "connect", "addr", &json!(addr), label);
        assert_eq!((c["result"].as_i64(), c["family"].as_str()), (Some(0), Some(family)), "[{label}] {c}");
    }

    let exec = the_one(&events, child, "exec", "path", &json!("/bin/true"), label);
    assert_eq!(exec["ppid"], pid, "[{label}] {exec}");
    assert_eq!(exec["result"], 0, "[{label}] {exec}");
    assert_eq!(exec["argv"], json!(["/bin/true"]), "[{label}] {exec}");
    let fork = the_one(&events, pid, "fork", "child_pid", &json!(child), label);
    assert_eq!(fork["thread"], false, "[{label}] {fork}");
}

fn marker_dir() -> TempDir {
    let dir = TempDir::new("capture");
    for name in ["abs-marker", "rel-marker", "dirfd-marker"] {
        dir.file(name, "marker\n");
    }
    dir
}

#[test]
fn every_cpython_reports_opens_connects_and_execs() {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no CPython 3.8+ found on this machine");
    let premain = Premain::start(&[]);
    let listeners = Listeners::new();
    let mut ran = Vec::new();
    for python in &pythons {
        let dir = marker_dir();
        check_actions(&premain, &python.label, python.path.as_os_str(), &dir, &listeners);
        ran.push(format!("{} ({})", python.label, python.path.display()));
    }
    // Interpreters reached through a venv's symlink and as a renamed copy are still CPython.
    let venv_root = TempDir::new("venv");
    let venv = venv_root.path().join("venv");
    let base = pythons.last().expect("at least one");
    run_ok(
        &base.path,
        &[OsStr::new("-m"), OsStr::new("venv"), OsStr::new("--without-pip"), venv.as_os_str()],
    );
    let dir = marker_dir();
    check_actions(&premain, "venv", venv.join("bin/python").as_os_str(), &dir, &listeners);
    ran.push(format!("venv of {}", base.label));

    let renamed = venv_root.path().join("bash");
    fs::copy(&base.path, &renamed).expect("copy interpreter");
    let dir = marker_dir();
    check_actions(&premain, "renamed copy", renamed.as_os_str(), &dir, &listeners);
    ran.push(format!("copy of {} named bash", base.label));

    let (status, _) = premain.stop();
    assert!(status.success(), "premain exited with {status}");
    eprintln!("CPython interpreters exercised:\n  {}", ran.join("\n  "));
}

#[test]
fn non_python_processes_are_not_reported() {
    let premain = Premain::start(&[]);
    let dir = TempDir::new("nonpy");
    let marker = dir.file("np-marker", "x\n");
    let listeners = Listeners::new();
    let (port4, _) = listeners.ports();
    // A program merely named like Python is not Python.
    let fake = dir.path().join("python3");
    fs::copy("/bin/cat", &fake).expect("copy cat");
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    run_ok("/bin/cat", &[marker.as_os_str()]);
    run_ok(&fake, &[marker.as_os_str()]);
    run_ok(
        "/bin/sh",
        &[OsStr::new("-c"), OsStr::new(&format!("cat {} >/dev/null; /bin/true", marker.display()))],
    );
    run_ok(
        "/bin/bash",
        &[OsStr::new("-c"), OsStr::new(&format!("exec 3<>/dev/tcp/127.0.0.1/{port4}; exec 3>&-"))],
    );
    let _ = Command::new(integration_tests::tool("curl"))
        .args(["-s", "-m", "2", &format!("http://127.0.0.1:{port4}/")])
        .output();
    // Once the sentinel is in, what they did would be too.
    premain.sentinel();
    let leaked: Vec<Value> = premain
        .events()
        .into_iter()
        .filter(|e| {
            e["path"] == json!(marker.to_str().unwrap()) || e["port"] == port4 || e["path"] == "/bin/true"
        })
        .collect();
    assert!(leaked.is_empty(), "non-Python activity was reported: {leaked:#?}");
}

#[test]
fn detached_grandchild_outliving_its_python_ancestor_is_reported() {
    let premain = Premain::start(&[]);
    let mut ran = Vec::new();
    for py in pythons() {
        let dir = TempDir::new("detach");
        let marker = dir.file("late-marker", "x\n");
        let pidfile = dir.path().join("sh.pid");
        run_ok(&py.path, &[script("detach.py").as_os_str(), marker.as_os_str(), pidfile.as_os_str()]);
        let label = &py.label;
        let open = premain.wait_for(&format!("[{label}] the detached grandchild's open"), |v| {
            v["hook"] == "open" && v["path"] == json!(marker.to_str().unwrap())
        });
        let sh_pid: u32 = fs::read_to_string(&pidfile).expect("pidfile").trim().parse().expect("pid");
        assert_eq!(open["pid"], sh_pid, "[{label}] {open}");
        assert_eq!(open["comm"], "cat", "[{label}] {open}");
        assert_eq!(open["tracking"], "descendant", "[{label}] {open}");
        premain.wait_exit(sh_pid);
        ran.push(label.clone());
    }
    eprintln!("CPython interpreters exercised: {}", ran.join(", "));
}

#[test]
fn ring_buffer_overflow_is_counted_per_hook() {
    // One page of ring buffer and a reader that waits: a burst of opens cannot fit. An
    // interpreter already running when premain starts makes its executable known, so the
    // burst is not held (stopped) until the stalled reader judges it.
    let py = &pythons()[0];
    let mut known =
        Command::new(&py.path).args(["-c", "import time; time.sleep(60)"]).spawn().expect("spawn");
    let premain = Premain::start(&["--ring-buffer-size", "4096", "--debug-stall-reader-ms", "3000"]);
    let _ = known.kill();
    let _ = known.wait();
    let dir = TempDir::new("overflow");
    let target = dir.file("burst", "x\n");
    run_ok(&py.path, &[script("burst.py").as_os_str(), target.as_os_str(), OsStr::new("2000")]);
    premain.wait_for("a loss record for the open hook", |v| v["kind"] == "loss" && v["hook"] == "open");
    // Stopping reports whatever is still uncounted and drains the ring.
    let lines = premain.lines();
    let (status, stderr) = premain.stop();
    assert!(status.success(), "{status}");
    assert!(stderr.contains("lost="), "no loss summary on stderr: {stderr}");
    let losses: Vec<&Value> = lines.iter().filter(|v| v["kind"] == "loss" && v["hook"] == "open").collect();
    assert!(losses.iter().all(|l| l["reason"] == "ring_buffer_full"), "{losses:#?}");
    let lost: u64 = losses.iter().map(|l| l["count"].as_u64().unwrap()).sum();
    let received =
        lines.iter().filter(|e| e["hook"] == "open" && e["path"] == json!(target.to_str().unwrap())).count()
            as u64;
    // Every burst open was either delivered or counted lost; the interpreter's own start-up
    // opens share the counter, hence at least.
    assert!(received + lost >= 2000, "received {received} + lost {lost} < 2000");
    assert!(lost >= 2000 - 64, "a one-page ring held more than 64 records? lost {lost}");
}

/// Runtime code never alerts, so the kernel stops recording a process whose code is all
/// runtime (and whose start-up hooks ran no code); module-level code run later, and children,
/// must still be seen from their first call.
#[test]
fn runtime_code_goes_unrecorded_and_code_after_it_still_alerts() {
    let bait = integration_tests::Bait::create();
    // A dependency's directory: the application's own module-level code raises nothing.
    let modules = bait.dir.path().join("site-packages");
    fs::create_dir_all(&modules).unwrap();
    let read_netrc = "import os\nopen(os.path.expanduser('~/.netrc')).close()\n";
    fs::write(modules.join("late_module.py"), read_netrc).unwrap();
    fs::write(modules.join("child_module.py"), read_netrc).unwrap();
    let target = bait.dir.file("target.txt", "x");
    let app = bait.dir.file(
        "app.py",
        "import os, sys, time\n\
         sys.path.insert(0, sys.argv[1])\n\
         time.sleep(0.5)\n\
         for _ in range(2000):\n    open(sys.argv[2], 'rb').close()\n\
         open(os.path.expanduser('~/.netrc')).close()\n\
         import late_module\n\
         child = os.fork()\n\
         if child == 0:\n    import child_module\n    os._exit(0)\n\
         os.waitpid(child, 0)\n\
         print(child)\n",
    );
    let premain = Premain::start_alerts(&[]);
    let skipped = || premain.metric(r#"premain_runtime_calls_skipped_total{hook="open"}"#);
    let netrc = bait.netrc();
    let mut ran = Vec::new();
    for py in pythons() {
        let before = skipped();
        // `-S`: no site, so no `.pth` line of the base interpreter runs code (which would keep
        // the process recorded, see tests/deferred.rs).
        let run = Command::new(&py.path)
            .arg("-S")
            .arg(&app)
            .arg(&modules)
            .arg(&target)
            .env("HOME", bait.dir.path().join("home"))
            .env_remove("PYTHONPATH")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let parent = run.id();
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}: {}", py.label, String::from_utf8_lossy(&out.stderr));
        let child: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let module_alert = |pid: u32, module: &str| {
            premain.wait_for(&format!("{}: the alert of {module}", py.label), |v| {
                v["kind"] == "alert"
                    && v["process"]["pid"] == pid
                    && v["culprit"]["module"] == module
                    && v["action"]["path"] == netrc.to_str().unwrap()
            })
        };
        let late = module_alert(parent, "late_module");
        assert_eq!(late["phase"], "import", "{}: {late}", py.label);
        let from_child = module_alert(child, "child_module");
        assert_eq!(from_child["phase"], "import", "{}: {from_child}", py.label);
        assert_eq!(from_child["process"]["ppid"], parent, "{}", py.label);
        // The runtime read of the same file did not alert on its own.
        let of_parent = premain.alerts().into_iter().filter(|a| a["process"]["pid"] == parent).count();
        assert_eq!(of_parent, 1, "{}", py.label);
        // Most of the 2,000 runtime opens were never recorded (the first ones may be, until
        // premain has read that main code started).
        // (The counter is sampled about once a second.)
        integration_tests::eventually(&format!("{}: 1,500 runtime opens skipped", py.label), || {
            skipped() - before >= 1500.0
        });
        ran.push(py.label);
    }
    let (status, _) = premain.stop();
    assert!(status.success());
    eprintln!("CPython interpreters exercised: {}", ran.join(", "));
}

/// On 3.12+ the `PySys_Audit` probe (a trap on every audit event) is detached from an image
/// once `_PyInterpreterState_SetRunningMain` has been seen marking main; later runs are
/// phased from that marker and the command line alone. Older interpreters keep the audit
/// probe.
#[test]
fn running_main_replaces_the_audit_probe_where_it_exists() {
    let dir = TempDir::new("running-main");
    let modules = dir.path().join("modules");
    fs::create_dir_all(&modules).unwrap();
    let target = dir.file("target.txt", "x");
    let from_module = dir.file("from-module.txt", "x");
    fs::write(modules.join("imported_here.py"), format!("open({from_module:?}).close()\n")).unwrap();
    // Found before premain starts: finding them runs them.
    let found = pythons();
    let premain = Premain::start(&[]);
    let mut ran = Vec::new();
    for py in &found {
        let run = |how: &[&str]| {
            let mut cmd = Command::new(&py.path);
            cmd.args(how).env("PYTHONPATH", &modules);
            let child = cmd.spawn().unwrap();
            let pid = child.id();
            assert!(child.wait_with_output().unwrap().status.success(), "{}", py.label);
            premain.wait_exit(pid);
            pid
        };
        let code = format!("open({:?}).close(); import imported_here", target.to_str().unwrap());
        let script = dir.file("script.py", &format!("{code}\n"));
        let first = run(&["-c", &code]);
        for pid in [run(&["-c", &code]), run(&[script.to_str().unwrap()]), first] {
            let events: Vec<Value> = premain.events().into_iter().filter(|e| e["pid"] == pid).collect();
            let phase_of = |path: &str| {
                let open = events.iter().find(|e| e["hook"] == "open" && e["path"] == path);
                open.unwrap_or_else(|| panic!("{}: no open of {path}: {events:#?}", py.label))["phase"]
                    .clone()
            };
            assert_eq!(phase_of(target.to_str().unwrap()), "runtime", "{}", py.label);
            assert_eq!(phase_of(from_module.to_str().unwrap()), "import", "{}", py.label);
            let markers: Vec<&str> = events.iter().filter_map(|e| e["marker"].as_str()).collect();
            let mains: Vec<&&str> = markers.iter().filter(|m| m.contains("main")).collect();
            match (py.version >= (3, 12), pid == first) {
                (true, true) => assert_eq!(mains, [&"running_main", &"main"], "{}: {markers:?}", py.label),
                (true, false) => assert_eq!(mains, [&"running_main"], "{}: audit probe detached", py.label),
                (false, _) => assert_eq!(mains, [&"main"], "{}", py.label),
            }
        }
        ran.push(py.label.clone());
    }
    let (status, stderr) = premain.stop();
    assert!(status.success());
    let detached = stderr.lines().filter(|l| l.contains("PySys_Audit probe detached")).count();
    let newer = found.iter().filter(|p| p.version >= (3, 12)).count();
    assert_eq!(detached, newer, "{stderr}");
    eprintln!("CPython interpreters exercised: {}", ran.join(", "));
}
