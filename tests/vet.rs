//! `premain vet` end to end, as root: real pip installs of local packages into a sandboxed venv
//! under the real kernel programs. Each test names the CPython it ran (one per test, a
//! different one each, to keep the suite short: every run creates a venv and installs).
//!
//! - an `setup.py` that reads `~/.pypirc` fails vet with a `credential-read` at `install`,
//!   named by its `setup.py`;
//! - a `.pth` stealer fails vet: the bait AWS credentials and a bait variable are proven to
//!   leave (in the sink's TCP capture and in DNS names), while a canary credential in the real
//!   `HOME` and a listener on the host's loopback see nothing;
//! - real packages from the apps wheelhouse (flask and its dependencies, psutil's C extension)
//!   pass.

use std::{
    fs,
    io::Read as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use integration_tests::{
    Python, TempDir,
    corpus::{setuptools_links, source_tree},
    premain_binary, pythons, require_root, tools_dir,
};
use serde_json::Value;

struct Vetted {
    code: Option<i32>,
    report: Value,
    stderr: String,
}

fn vet(python: &Python, home: Option<&Path>, args: &[&std::ffi::OsStr]) -> Vetted {
    require_root();
    let mut command = Command::new(premain_binary());
    command.arg("vet").arg("--python").arg(&python.path).args(args);
    if let Some(home) = home {
        command.env("HOME", home);
    }
    let out = command.stdin(Stdio::null()).output().expect("run premain vet");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("premain vet printed no JSON report ({e}); stderr:\n{stderr}"));
    eprintln!("[{}] premain vet exited {:?}", python.label, out.status.code());
    Vetted { code: out.status.code(), report, stderr }
}

fn alerts(report: &Value) -> Vec<(&str, &Value)> {
    let steps = report["steps"].as_array().expect("steps");
    report["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| (steps[a["step"].as_u64().unwrap() as usize]["kind"].as_str().unwrap(), &a["alert"]))
        .collect()
}

/// The `n`th CPython found (wrapping), so that each test runs on another one.
fn python(n: usize) -> Python {
    let all = pythons();
    assert!(!all.is_empty(), "no CPython 3.8+ found");
    all[n % all.len()].clone()
}

#[test]
fn an_install_time_credential_read_fails_vet() {
    let py = python(1);
    let dir = TempDir::new("vet-setup");
    let package = source_tree("evil-setup", dir.path());
    let links = setuptools_links(dir.path()).expect("the pinned setuptools wheels (cargo xtask setup)");
    let v = vet(&py, None, &["--find-links".as_ref(), links.as_os_str(), package.as_os_str()]);
    assert_eq!(v.code, Some(1), "vet passed a package whose setup.py reads ~/.pypirc:\n{}", v.stderr);
    let found = alerts(&v.report);
    let read = found
        .iter()
        .find(|(step, a)| *step == "install" && a["rule"] == "credential-read" && a["phase"] == "install")
        .unwrap_or_else(|| panic!("no install-time credential-read: {found:#?}"));
    assert_eq!(read.1["action"]["category"], "pypirc");
    assert!(read.1["culprit"]["path"].as_str().unwrap().ends_with("evil-setup/setup.py"), "{:#}", read.1);
    assert_eq!(read.1["culprit"]["distribution"], "evil-setup");
    // The read was of the run's bait, not of anything real.
    assert!(read.1["action"]["path"].as_str().unwrap().contains("/premain-vet-"), "{:#}", read.1);
}

#[test]
fn a_startup_stealer_is_caught_with_its_exfiltration_proven_and_the_real_home_and_network_untouched() {
    let py = python(3);
    let dir = TempDir::new("vet-exfil");
    // The real HOME, as vet sees it: a canary credential in it.
    let real_home = dir.path().join("real-home");
    fs::create_dir_all(real_home.join(".aws")).unwrap();
    let canary_value = format!("premaincanary{}", std::process::id());
    let canary = real_home.join(".aws/credentials");
    fs::write(&canary, format!("[default]\naws_secret_access_key = {canary_value}\n")).unwrap();
    // A listener on the host's loopback that must never hear from the sandbox.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let heard = Arc::new(AtomicUsize::new(0));
    let heard_in = heard.clone();
    let stop = Arc::new(AtomicUsize::new(0));
    let stop_in = stop.clone();
    let watcher = thread::spawn(move || {
        while stop_in.load(Ordering::Relaxed) == 0 {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = Vec::new();
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = s.read_to_end(&mut buf);
                heard_in.fetch_add(1, Ordering::Relaxed);
            }
            thread::sleep(Duration::from_millis(10));
        }
    });

    let package = source_tree("evil-exfil", dir.path());
    fs::write(
        package.join("src/evil_exfil_targets.py"),
        format!("CANARY = {:?}\nHOST_PORT = {port}\n", canary.to_str().unwrap()),
    )
    .unwrap();
    let links = setuptools_links(dir.path()).expect("the pinned setuptools wheels (cargo xtask setup)");
    let v = vet(&py, Some(&real_home), &["--find-links".as_ref(), links.as_os_str(), package.as_os_str()]);
    stop.store(1, Ordering::Relaxed);
    watcher.join().unwrap();

    assert_eq!(v.code, Some(1), "vet passed a start-up stealer:\n{}", v.stderr);
    let found = alerts(&v.report);
    let at_startup = |rule: &str| {
        found.iter().any(|(step, a)| {
            *step == "startup"
                && a["rule"] == rule
                && a["phase"] == "startup"
                && a["culprit"]["path"].as_str().is_some_and(|p| p.ends_with("aaa_evil_exfil.pth"))
        })
    };
    assert!(at_startup("credential-read"), "no start-up credential-read by the .pth: {found:#?}");
    assert!(at_startup("network-connect"), "no start-up network-connect by the .pth: {found:#?}");
    // Proof of exfiltration: the bait AWS secret and the bait variable left, in the TCP flow
    // (base64) and the bait GITHUB_TOKEN in DNS names (hex).
    let leaks = v.report["leaks"].as_array().expect("leaks");
    let leaked = |what: &str| leaks.iter().any(|l| l["bait"].as_str().is_some_and(|b| b.contains(what)));
    assert!(leaked(".aws/credentials"), "the AWS bait was not seen leaving: {leaks:#?}");
    assert!(leaked("AWS_SECRET_ACCESS_KEY"), "the bait variable was not seen leaving: {leaks:#?}");
    assert!(leaked("GITHUB_TOKEN"), "the DNS exfiltration was not seen: {leaks:#?}");
    assert!(
        v.report["dns"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().ends_with("t.exfil.example")),
        "the DNS names asked: {:#}",
        v.report["dns"]
    );
    // The machine was never reached: the canary did not leave (it could not be read: the
    // real homes are hidden), and the host's listener heard nothing.
    let text = v.report.to_string();
    assert!(!text.contains(&canary_value), "the canary credential is in the report");
    assert_eq!(heard.load(Ordering::Relaxed), 0, "a listener outside the sandbox was reached");
    let canary_open = found
        .iter()
        .find(|(_, a)| a["action"]["path"] == canary.to_str().unwrap())
        .unwrap_or_else(|| panic!("the payload's try at the real HOME raised no alert: {found:#?}"));
    assert!(
        canary_open.1["action"]["result"].as_i64().unwrap() < 0,
        "the canary was opened: {:#}",
        canary_open.1
    );
}

#[test]
fn every_malicious_package_of_the_corpus_fails_with_its_finding_phase_and_culprit() {
    let py = python(5);
    let dir = TempDir::new("vet-corpus");
    let packages = ["evil-setup", "evil-backend", "evil-pth", "evil-detach", "evil-site", "evil-import"];
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let links = setuptools_links(dir.path()).expect("the pinned setuptools wheels (cargo xtask setup)");
    args.extend(["--find-links".into(), links.into_os_string()]);
    // The corpus acts only when told where its test sink is: any port reaches vet's sink.
    // `done` is where evil-detach's detached child says it finished (in the run's directory).
    args.extend([
        "--env".into(),
        "PREMAIN_SINK_PORT=8080".into(),
        "--env".into(),
        "PREMAIN_SINK_HOST=203.0.113.9".into(),
        "--env".into(),
        "PREMAIN_DONE=done".into(),
    ]);
    args.extend(packages.iter().map(|p| source_tree(p, dir.path()).into_os_string()));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let v = vet(&py, None, &args);
    assert_eq!(v.code, Some(1), "vet passed the malicious corpus:\n{}", v.stderr);
    let found = alerts(&v.report);
    // (distribution, rule, phase, culprit kind, end of the target, step)
    let wanted = [
        ("evil-setup", "credential-read", "install", "setup", "/.pypirc", "install"),
        ("evil-backend", "network-connect", "install", "build-backend", ":8080", "install"),
        ("evil-pth", "credential-read", "startup", "pth", "/.aws/credentials", "startup"),
        ("evil-pth", "network-connect", "startup", "pth", ":8080", "startup"),
        ("evil-detach", "credential-read", "startup", "pth", "/.ssh/id_ed25519", "startup"),
        ("evil-site", "program-exec", "startup", "sitecustomize", "/curl", "startup"),
        ("evil-import", "credential-read", "import", "module", "/.netrc", "import"),
        ("evil-import", "network-connect", "import", "module", ":8080", "import"),
        ("evil-import", "network-send", "import", "module", ":8080", "import"),
    ];
    let mut missing = Vec::new();
    for (dist, rule, phase, culprit, target, step) in wanted {
        let hit = found.iter().any(|(s, a)| {
            let t = a["action"]["path"].as_str().or(a["action"]["addr"].as_str()).unwrap_or("");
            *s == step
                && a["rule"] == rule
                && a["phase"] == phase
                && a["culprit"]["kind"] == culprit
                && a["culprit"]["distribution"] == dist
                && t.ends_with(target)
        });
        if !hit {
            missing.push(format!("{dist}: {rule} at {phase} by {culprit} on *{target} in step {step}"));
        }
    }
    let brief: Vec<String> = found
        .iter()
        .map(|(s, a)| {
            format!(
                "{s}: {} {} {} {} {}",
                a["culprit"]["distribution"], a["rule"], a["phase"], a["culprit"]["kind"], a["action"]
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "[{}] missing:\n{}\nfound:\n{}",
        py.label,
        missing.join("\n"),
        brief.join("\n")
    );
}

#[test]
fn real_packages_from_the_wheelhouse_pass() {
    // The apps wheelhouse holds wheels for CPython 3.11 and 3.12.
    let Some(py) = pythons().into_iter().rev().find(|p| p.version == (3, 12) || p.version == (3, 11)) else {
        panic!("no CPython 3.11 or 3.12 for the apps wheelhouse");
    };
    let links: PathBuf = tools_dir().join("apps-wheelhouse");
    let v =
        vet(&py, None, &["--find-links".as_ref(), links.as_os_str(), "flask".as_ref(), "psutil".as_ref()]);
    let found = alerts(&v.report);
    assert_eq!(v.code, Some(0), "vet failed benign packages: {found:#?}\n{}", v.stderr);
    let installed: Vec<&str> =
        v.report["installed"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    for name in ["flask", "werkzeug", "jinja2", "markupsafe", "psutil"] {
        assert!(
            installed.iter().any(|i| i.eq_ignore_ascii_case(name)),
            "{name} not installed: {installed:?}"
        );
    }
    let steps = v.report["steps"].as_array().unwrap();
    let imports: Vec<&Value> = steps.iter().filter(|s| s["kind"] == "import").collect();
    assert!(imports.iter().any(|s| s["target"] == "psutil"), "psutil was not imported: {steps:#?}");
    for step in imports {
        assert_eq!(step["exit_code"], 0, "an import failed: {step:#}");
    }
}
