//! `premain vet` end to end, as root: real pip installs of local packages into a sandboxed venv
//! under the real kernel programs. Each test names the CPython it ran (one per test, a
//! different one each, to keep the suite short: every run creates a venv and installs).
//!
//! - an `setup.py` that reads `~/.pypirc` fails vet with a `credential-read` at `install`,
//!   named by its `setup.py`; its upgrade, which also reads `~/.ssh`, installed with uv and
//!   vetted against the first report (`--baseline`), fails with the new read alone;
//! - a `.pth` stealer fails vet: the bait AWS credentials and a bait variable are proven to
//!   leave (in the sink's TCP capture and in DNS names), while a canary credential in the real
//!   `HOME` and a listener on the host's loopback see nothing;
//! - real packages from PyPI pass: flask, django, requests, psutil's and numpy's binary wheels,
//!   an sdist whose C extension is compiled in the sandbox (markupsafe), and one whose
//!   setuptools-scm takes its version from the sdist's `PKG-INFO` (pluggy);
//! - every SARIF those runs write (`--sarif`), with findings and clean, validates against the
//!   pinned OASIS SARIF 2.1.0 schema (`cargo xtask setup` fetches it; jsonschema in its tools
//!   venv checks it, formats included);
//! - with `--index-url`, a PEP 503 index on the host's loopback (`python -m http.server`) is
//!   reached through vet's relay: flask and its dependencies come from it and have no finding,
//!   an sdist stealer served by the same index still fails, and another service on the host's
//!   loopback hears nothing.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
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
    command.arg("vet").arg("--format").arg("json").arg("--python").arg(&python.path).args(args);
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

/// Every finding as `(distribution, finding)`.
fn findings(report: &Value) -> Vec<(&str, &Value)> {
    report["distributions"]
        .as_array()
        .expect("distributions")
        .iter()
        .flat_map(|d| {
            let name = d["name"].as_str().unwrap_or("");
            d["findings"].as_array().into_iter().flatten().map(move |f| (name, f))
        })
        .collect()
}

/// The kinds of the steps a finding was seen in.
fn steps_of<'a>(report: &'a Value, finding: &Value) -> Vec<&'a str> {
    let steps = report["steps"].as_array().expect("steps");
    finding["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| steps.get(i.as_u64()? as usize)?["kind"].as_str())
        .collect()
}

/// Where the bait named `name` was seen leaving.
fn leaks<'a>(report: &'a Value, name: &str) -> &'a [Value] {
    report["baits"]
        .as_array()
        .expect("baits")
        .iter()
        .find(|b| b["name"] == name)
        .and_then(|b| b["leaked"].as_array())
        .map_or(&[], Vec::as_slice)
}

/// Validates the SARIF log at `sarif` against the pinned SARIF 2.1.0 schema (draft-04), its
/// formats (`uri`, `uri-reference`, `date-time`) included, and returns it.
fn valid_sarif(sarif: &Path) -> Value {
    let schema = tools_dir().join("sarif/sarif-2.1.0-rtm.5.json");
    let python = tools_dir().join("venv/bin/python");
    assert!(
        schema.is_file() && python.is_file(),
        "no SARIF schema or tools venv in {} (cargo xtask setup)",
        tools_dir().display()
    );
    let script = r#"
import json, sys
from jsonschema import Draft4Validator, FormatChecker
schema = json.load(open(sys.argv[1]))
Draft4Validator.check_schema(schema)
log = json.load(open(sys.argv[2]))
errors = sorted(Draft4Validator(schema, format_checker=FormatChecker()).iter_errors(log), key=lambda e: list(map(str, e.absolute_path)))
for e in errors:
    print("/" + "/".join(map(str, e.absolute_path)), e.message[:300])
sys.exit(1 if errors else 0)
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .arg(sarif)
        .output()
        .expect("run the tools venv's python");
    assert!(
        out.status.success(),
        "{} does not validate against SARIF 2.1.0:\n{}{}",
        sarif.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&fs::read(sarif).unwrap()).unwrap()
}

/// A listener on the host's loopback, counting the connections it accepts.
struct HostListener {
    port: u16,
    heard: Arc<AtomicUsize>,
    stop: Arc<AtomicUsize>,
    watcher: thread::JoinHandle<()>,
}

impl HostListener {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let heard = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicUsize::new(0));
        let (heard_in, stop_in) = (heard.clone(), stop.clone());
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
        Self { port, heard, stop, watcher }
    }

    /// Stops listening; how many connections it accepted.
    fn stop(self) -> usize {
        self.stop.store(1, Ordering::Relaxed);
        self.watcher.join().unwrap();
        self.heard.load(Ordering::Relaxed)
    }
}

/// The `n`th CPython found (wrapping), so that each test runs on another one.
fn python(n: usize) -> Python {
    let all = pythons();
    assert!(!all.is_empty(), "no CPython 3.8+ found");
    all[n % all.len()].clone()
}

/// uv from the tools venv `cargo xtask setup` fills.
fn uv() -> PathBuf {
    let uv = tools_dir().join("venv/bin/uv");
    assert!(uv.is_file(), "no uv at {} (cargo xtask setup)", uv.display());
    uv
}

#[test]
fn an_install_time_credential_read_fails_vet_and_its_upgrade_fails_with_the_new_read_alone() {
    let py = python(1);
    let dir = TempDir::new("vet-setup");
    let package = source_tree("evil-setup", dir.path());
    let links = setuptools_links(dir.path()).expect("the pinned setuptools wheels (cargo xtask setup)");
    let v = vet(&py, None, &["--find-links".as_ref(), links.as_os_str(), package.as_os_str()]);
    assert_eq!(v.code, Some(1), "vet passed a package whose setup.py reads ~/.pypirc:\n{}", v.stderr);
    assert_eq!(v.report["verdict"]["status"], "fail");
    let found = findings(&v.report);
    let read = found
        .iter()
        .find(|(dist, f)| *dist == "evil-setup" && f["rule"] == "credential-read" && f["phase"] == "install")
        .unwrap_or_else(|| panic!("no install-time credential-read by evil-setup: {found:#?}"));
    assert_eq!(steps_of(&v.report, read.1), ["install"]);
    assert_eq!(read.1["culprit"]["kind"], "setup");
    assert!(read.1["culprit"]["path"].as_str().unwrap().ends_with("setup.py"), "{:#}", read.1);
    // The read was of the run's bait HOME, not of anything real.
    assert_eq!(read.1["target"]["text"], "~/.pypirc", "{:#}", read.1);
    let touched =
        &v.report["baits"].as_array().unwrap().iter().find(|b| b["name"] == "~/.pypirc").unwrap()["touched"];
    assert_eq!(touched[0]["distribution"], "evil-setup", "{touched:#}");

    // The upgrade reads ~/.ssh too. Installed with uv (its build hooks run in uv's build venv)
    // and judged against the first report, it fails with the new read alone: the ~/.pypirc
    // read of both versions is known, whatever installed it.
    let baseline = dir.path().join("evil-setup-0.3.json");
    fs::write(&baseline, serde_json::to_vec(&v.report).unwrap()).unwrap();
    let upgrade = dir.path().join("upgrade");
    fs::create_dir(&upgrade).unwrap();
    let upgrade = source_tree("evil-setup", &upgrade);
    let setup_py = fs::read_to_string(upgrade.join("setup.py")).unwrap();
    let setup_py = setup_py
        .replace("version=\"0.3\"", "version=\"0.4\"")
        .replace("setup(", "open(os.path.expanduser(\"~/.ssh/id_ed25519\")).close()\n\nsetup(");
    assert!(
        setup_py.contains("0.4") && setup_py.contains(".ssh"),
        "evil-setup's setup.py changed:\n{setup_py}"
    );
    fs::write(upgrade.join("setup.py"), setup_py).unwrap();
    let sarif = dir.path().join("upgrade.sarif");
    let uv = uv();
    let v = vet(
        &py,
        None,
        &[
            "--installer".as_ref(),
            "uv".as_ref(),
            "--uv".as_ref(),
            uv.as_os_str(),
            "--baseline".as_ref(),
            baseline.as_os_str(),
            "--sarif".as_ref(),
            sarif.as_os_str(),
            "--find-links".as_ref(),
            links.as_os_str(),
            upgrade.as_os_str(),
        ],
    );
    assert_eq!(v.code, Some(1), "vet passed the upgrade that reads ~/.ssh:\n{}", v.stderr);
    assert_eq!(v.report["run"]["installer"], "uv");
    let found = findings(&v.report);
    let brief: Vec<String> = found
        .iter()
        .map(|(d, f)| {
            format!("{d}: {} {} {} {}", f["rule"], f["phase"], f["culprit"]["path"], f["target"]["text"])
        })
        .collect();
    assert_eq!(brief.len(), 1, "the upgrade's new findings: {brief:#?}");
    let (dist, new) = found[0];
    assert!(
        dist == "evil-setup"
            && new["rule"] == "credential-read"
            && new["phase"] == "install"
            && new["culprit"]["kind"] == "setup"
            && new["culprit"]["path"].as_str().is_some_and(|p| p.ends_with("setup.py"))
            && new["target"]["text"] == "~/.ssh/id_ed25519",
        "{new:#}"
    );
    let upgraded = v.report["distributions"].as_array().unwrap().iter().find(|d| d["name"] == "evil-setup");
    assert_eq!(upgraded.unwrap()["version"], "0.4");
    assert_eq!(v.report["verdict"]["failing"], 1, "{:#}", v.report["verdict"]);
    assert_eq!(v.report["baseline"]["known"], 1, "{:#}", v.report["baseline"]);
    assert_eq!(v.report["baseline"]["distributions"], serde_json::json!(["evil-setup 0.3"]));
    // The SARIF of the same run: the one new finding.
    let log = valid_sarif(&sarif);
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0]["ruleId"], "credential-read");
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
    // Readable by anyone, as a careless home can be: only vet's hiding keeps it from the
    // sandbox user.
    for path in [dir.path(), &real_home, &real_home.join(".aws"), &canary] {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    // A listener on the host's loopback that must never hear from the sandbox.
    let listener = HostListener::start();
    let port = listener.port;

    let package = source_tree("evil-exfil", dir.path());
    fs::write(
        package.join("src/evil_exfil_targets.py"),
        format!("CANARY = {:?}\nHOST_PORT = {port}\n", canary.to_str().unwrap()),
    )
    .unwrap();
    let links = setuptools_links(dir.path()).expect("the pinned setuptools wheels (cargo xtask setup)");
    let capture_file = dir.path().join("capture.json");
    let sarif = dir.path().join("vet.sarif");
    let v = vet(
        &py,
        Some(&real_home),
        &[
            "--find-links".as_ref(),
            links.as_os_str(),
            "--capture".as_ref(),
            capture_file.as_os_str(),
            "--sarif".as_ref(),
            sarif.as_os_str(),
            package.as_os_str(),
        ],
    );
    let heard = listener.stop();

    assert_eq!(v.code, Some(1), "vet passed a start-up stealer:\n{}", v.stderr);
    let found = findings(&v.report);
    let at_startup = |rule: &str| {
        found.iter().any(|(dist, f)| {
            *dist == "evil-exfil"
                && f["rule"] == rule
                && f["phase"] == "startup"
                && steps_of(&v.report, f).contains(&"startup")
                && f["culprit"]["kind"] == "pth"
                && f["culprit"]["path"] == "<site-packages>/aaa_evil_exfil.pth"
        })
    };
    assert!(at_startup("credential-read"), "no start-up credential-read by the .pth: {found:#?}");
    assert!(at_startup("network-connect"), "no start-up network-connect by the .pth: {found:#?}");
    assert!(at_startup("exfiltration"), "no exfiltration finding for the .pth: {found:#?}");
    // Proof of exfiltration: the bait AWS secret and the bait variable left in the TCP flow
    // (base64), the bait GITHUB_TOKEN in DNS names (hex).
    let over = |name: &str, channel: &str, encoding: &str| {
        leaks(&v.report, name).iter().any(|l| l["channel"] == channel && l["encoding"] == encoding)
    };
    assert!(
        over("~/.aws/credentials", "flow", "base64"),
        "the AWS bait was not seen leaving: {:#}",
        v.report["baits"]
    );
    assert!(
        over("AWS_SECRET_ACCESS_KEY", "flow", "base64"),
        "the bait variable was not seen leaving: {:#}",
        v.report["baits"]
    );
    assert!(
        leaks(&v.report, "GITHUB_TOKEN").iter().any(|l| l["encoding"] == "hex" && l["channel"] != "flow"),
        "the DNS exfiltration was not seen: {:#}",
        v.report["baits"]
    );
    assert!(
        v.report["dns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"].as_str().unwrap().ends_with("t.exfil.example")),
        "the DNS names asked: {:#}",
        v.report["dns"]
    );
    // The machine was never reached: the canary is in nothing the sink received (the real
    // homes are hidden, so it could not be read), and the host's listener heard nothing.
    let capture: Value = serde_json::from_slice(&fs::read(&capture_file).unwrap()).unwrap();
    let received: Vec<u8> = capture["flows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8))
        .collect();
    let text = String::from_utf8_lossy(&received);
    // The payload sends what it read in the clear too: its bait is there, the canary is not.
    let aws_secret = "aws_secret_access_key = premainvet";
    assert!(text.contains(aws_secret), "the payload's plain send is not in the capture");
    assert!(!text.contains(&canary_value), "the canary credential left the sandbox");
    assert_eq!(heard, 0, "a listener outside the sandbox was reached");
    // The SARIF of the same run, exfiltration results included.
    let log = valid_sarif(&sarif);
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "exfiltration"), "{results:#?}");
}

#[test]
fn every_malicious_package_of_the_corpus_fails_with_its_finding_phase_and_culprit() {
    let py = python(5);
    let dir = TempDir::new("vet-corpus");
    let packages = ["evil-setup", "evil-backend", "evil-pth", "evil-detach", "evil-site", "evil-import"];
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let links = setuptools_links(dir.path()).expect("the pinned setuptools wheels (cargo xtask setup)");
    args.extend(["--find-links".into(), links.into_os_string()]);
    let sarif = dir.path().join("vet.sarif");
    args.extend(["--sarif".into(), sarif.clone().into_os_string()]);
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
    let found = findings(&v.report);
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
        let hit = found.iter().any(|(d, f)| {
            *d == dist
                && f["rule"] == rule
                && f["phase"] == phase
                && f["culprit"]["kind"] == culprit
                && f["target"]["text"].as_str().is_some_and(|t| t.ends_with(target))
                && steps_of(&v.report, f).contains(&step)
        });
        if !hit {
            missing.push(format!("{dist}: {rule} at {phase} by {culprit} on *{target} in step {step}"));
        }
    }
    let brief: Vec<String> = found
        .iter()
        .map(|(d, f)| {
            format!(
                "{d}: {} {} {} {} {:?}",
                f["rule"],
                f["phase"],
                f["culprit"]["kind"],
                f["target"]["text"],
                steps_of(&v.report, f)
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
    // The SARIF of the same run: a result per finding.
    let log = valid_sarif(&sarif);
    assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), found.len());
}

/// The run's directory `premain vet --keep` left (named on its stderr), removed when dropped.
struct Kept(PathBuf);

impl Kept {
    fn from_stderr(stderr: &str) -> Self {
        let path = stderr
            .lines()
            .find_map(|l| l.split_once("the run's directory is kept: ").map(|(_, p)| p.trim()))
            .unwrap_or_else(|| panic!("vet --keep named no directory:\n{stderr}"));
        Self(PathBuf::from(path))
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn real_packages_from_pypi_pass() {
    // The vet wheelhouse's binary wheels are for CPython 3.12 (tests/requirements-vet.txt).
    let Some(py) = pythons().into_iter().find(|p| p.version == (3, 12)) else {
        panic!("no CPython 3.12 for the vet wheelhouse");
    };
    let dir = TempDir::new("vet-real");
    let sdists = tools_dir().join("vet-sdists");
    let markupsafe = sdists.join("markupsafe-3.0.4.tar.gz");
    let pluggy = sdists.join("pluggy-1.7.0.tar.gz");
    // flask, django, psutil and the sdists' build backends (setuptools, setuptools-scm) come
    // from the apps wheelhouse, requests and numpy from vet's own.
    let apps = tools_dir().join("apps-wheelhouse");
    let wheels = tools_dir().join("vet-wheelhouse");
    for path in [&markupsafe, &pluggy, &apps, &wheels] {
        assert!(path.exists(), "{} is missing (cargo xtask setup)", path.display());
    }
    let sarif = dir.path().join("vet.sarif");
    let v = vet(
        &py,
        None,
        &[
            "--keep".as_ref(),
            "--sarif".as_ref(),
            sarif.as_os_str(),
            "--find-links".as_ref(),
            apps.as_os_str(),
            "--find-links".as_ref(),
            wheels.as_os_str(),
            "flask".as_ref(),
            "django".as_ref(),
            "requests".as_ref(),
            "psutil".as_ref(),
            "numpy".as_ref(),
            markupsafe.as_os_str(),
            pluggy.as_os_str(),
        ],
    );
    let kept = Kept::from_stderr(&v.stderr);
    let found = findings(&v.report);
    assert_eq!(v.code, Some(0), "vet failed benign packages: {found:#?}\n{}", v.stderr);
    assert_eq!(v.report["verdict"]["status"], "pass");
    let installed: Vec<(String, &str)> = v.report["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap().to_ascii_lowercase(), d["version"].as_str().unwrap_or("")))
        .collect();
    let version = |name: &str| installed.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    for name in [
        "flask",
        "werkzeug",
        "jinja2",
        "markupsafe",
        "django",
        "asgiref",
        "sqlparse",
        "requests",
        "urllib3",
        "idna",
        "certifi",
        "charset-normalizer",
        "psutil",
        "numpy",
        "pluggy",
    ] {
        assert!(version(name).is_some(), "{name} not installed: {installed:?}");
    }
    // setuptools-scm found pluggy's version in the sdist's PKG-INFO: with no version found it
    // would have used the project's fallback, 1.6.0+fallback.
    assert_eq!(version("pluggy"), Some("1.7.0"));
    // markupsafe was built from its sdist, in the sandbox, with its C extension compiled.
    let site = kept.0.join("venv/lib/python3.12/site-packages");
    let dist_info = site.join("markupsafe-3.0.4.dist-info");
    let direct_url = fs::read_to_string(dist_info.join("direct_url.json")).unwrap_or_default();
    assert!(direct_url.contains("markupsafe-3.0.4.tar.gz"), "markupsafe not from its sdist: {direct_url}");
    let wheel = fs::read_to_string(dist_info.join("WHEEL")).unwrap_or_default();
    assert!(wheel.contains("Tag: cp312-cp312-linux_x86_64"), "markupsafe's build: {wheel}");
    let speedups = site.join("markupsafe/_speedups.cpython-312-x86_64-linux-gnu.so");
    assert!(speedups.is_file(), "markupsafe's C extension was not compiled");
    let steps = v.report["steps"].as_array().unwrap();
    let imports: Vec<&Value> = steps.iter().filter(|s| s["kind"] == "import").collect();
    for module in ["flask", "django", "requests", "psutil", "numpy", "markupsafe", "pluggy"] {
        assert!(imports.iter().any(|s| s["target"] == module), "{module} was not imported: {steps:#?}");
    }
    for step in imports {
        assert_eq!(step["exit_code"], 0, "an import failed: {step:#}");
    }
    // The clean run's SARIF: no results.
    let log = valid_sarif(&sarif);
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));
}

/// A PEP 503 "simple" index served by `python -m http.server` on the host's loopback, from a
/// directory laid out as `simple/<project>/` with an `index.html` each; killed when dropped.
struct SimpleIndex {
    server: Child,
    port: u16,
    log: PathBuf,
}

impl SimpleIndex {
    /// Serves `files` (wheels and sdists), each under its project's normalised name.
    fn serve(python: &Python, dir: &Path, files: &[PathBuf]) -> Self {
        let root = dir.join("index");
        let mut projects: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for file in files {
            let name = file.file_name().unwrap().to_str().unwrap().to_owned();
            let project = normalise(name.split('-').next().unwrap());
            let into = root.join("simple").join(&project);
            fs::create_dir_all(&into).unwrap();
            std::os::unix::fs::symlink(file, into.join(&name)).unwrap();
            projects.entry(project).or_default().push(name);
        }
        let page =
            |links: Vec<String>| format!("<!DOCTYPE html>\n<html><body>\n{}</body></html>\n", links.concat());
        let mut all = Vec::new();
        for (project, names) in &projects {
            let links = names.iter().map(|n| format!("<a href=\"{n}\">{n}</a><br>\n")).collect();
            fs::write(root.join("simple").join(project).join("index.html"), page(links)).unwrap();
            all.push(format!("<a href=\"{project}/\">{project}</a><br>\n"));
        }
        fs::write(root.join("simple/index.html"), page(all)).unwrap();
        let log = dir.join("index.log");
        let mut server = Command::new(&python.path)
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory"])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start python -m http.server");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("http.server did not say its port: {line:?}"));
        Self { server, port, log }
    }

    /// The paths the index was asked for, from its request log.
    fn requests(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|l| l.split('"').nth(1))
            .filter_map(|request| request.split(' ').nth(1).map(str::to_owned))
            .collect()
    }
}

impl Drop for SimpleIndex {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A PEP 503 normalised project name.
fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// An sdist of a scenario package (`<name>-<version>.tar.gz`, as `python -m build` names it),
/// packed with tarfile: nothing of the package runs outside the sandbox.
fn sdist(python: &Python, tree: &Path, name: &str, version: &str, into: &Path) -> PathBuf {
    let stem = format!("{}-{version}", name.replace('-', "_"));
    fs::write(tree.join("PKG-INFO"), format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"))
        .unwrap();
    let out = into.join(format!("{stem}.tar.gz"));
    let status = Command::new(&python.path)
        .args([
            "-I",
            "-c",
            "import sys, tarfile\nwith tarfile.open(sys.argv[2], 'w:gz') as t: t.add(sys.argv[1], arcname=sys.argv[3])",
        ])
        .arg(tree)
        .arg(&out)
        .arg(&stem)
        .status()
        .unwrap();
    assert!(status.success(), "packing {stem}");
    out
}

#[test]
fn packages_from_an_index_are_relayed_to_it_and_judged_as_from_files() {
    // The apps wheelhouse holds wheels for CPython 3.11 and 3.12.
    let Some(py) = pythons().into_iter().find(|p| p.version == (3, 11) || p.version == (3, 12)) else {
        panic!("no CPython 3.11 or 3.12 for the apps wheelhouse");
    };
    let dir = TempDir::new("vet-index");
    // Another service on the host's loopback, which the stealer tries too.
    let listener = HostListener::start();
    let tree = source_tree("evil-exfil", dir.path());
    fs::write(
        tree.join("src/evil_exfil_targets.py"),
        format!("CANARY = None\nHOST_PORT = {}\n", listener.port),
    )
    .unwrap();
    let mut files: Vec<PathBuf> = fs::read_dir(tools_dir().join("apps-wheelhouse"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    let flask = files
        .iter()
        .find_map(|p| p.file_name().unwrap().to_str().filter(|n| n.starts_with("flask-")).map(str::to_owned))
        .expect("flask in the apps wheelhouse (cargo xtask setup)");
    files.push(sdist(&py, &tree, "evil-exfil", "2.0", dir.path()));
    let index = SimpleIndex::serve(&py, dir.path(), &files);
    let url = format!("http://127.0.0.1:{}/simple/", index.port);
    let index_host = format!("127.0.0.1:{}", index.port);
    let other_service = format!("127.0.0.1:{}", listener.port);

    let v = vet(&py, None, &["--index-url".as_ref(), url.as_ref(), "flask".as_ref(), "evil-exfil".as_ref()]);
    let heard = listener.stop();
    let requests = index.requests();
    drop(index);

    // The downloads came from the index, through the relay.
    for wanted in [
        "/simple/flask/".to_owned(),
        format!("/simple/flask/{flask}"),
        "/simple/evil-exfil/evil_exfil-2.0.tar.gz".into(),
    ] {
        assert!(
            requests.contains(&wanted),
            "the index was not asked for {wanted}: {requests:#?}\n{}",
            v.stderr
        );
    }
    let found = findings(&v.report);
    assert_eq!(v.code, Some(1), "vet passed a stealer from the index: {found:#?}\n{}", v.stderr);
    assert_eq!(v.report["run"]["index_hosts"], serde_json::json!([index_host]));
    // The stealer from the index fails as it does from a file; its try of the host's other
    // service is a finding, and reached nothing.
    let by_pth = |rule: &str, target: Option<&str>| {
        found.iter().any(|(dist, f)| {
            *dist == "evil-exfil"
                && f["rule"] == rule
                && f["phase"] == "startup"
                && f["culprit"]["path"] == "<site-packages>/aaa_evil_exfil.pth"
                && target.is_none_or(|t| f["target"]["text"] == t)
        })
    };
    assert!(by_pth("credential-read", None), "no start-up credential-read: {found:#?}");
    assert!(by_pth("exfiltration", None), "no exfiltration: {found:#?}");
    assert!(by_pth("network-connect", Some(&other_service)), "no connect to {other_service}: {found:#?}");
    assert_eq!(heard, 0, "the host's other loopback service was reached");
    // Flask and its dependencies, from the index: installed, imported, no finding; nothing the
    // index was sent is one.
    let failing: Vec<&str> = v.report["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["verdict"]["status"] != "pass")
        .map(|d| d["name"].as_str().unwrap_or("(no distribution)"))
        .collect();
    assert_eq!(failing, ["evil-exfil"], "{found:#?}");
    let installed: Vec<&str> =
        v.report["distributions"].as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).collect();
    for name in
        ["flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click", "blinker", "evil-exfil"]
    {
        assert!(
            installed.iter().any(|i| i.eq_ignore_ascii_case(name)),
            "{name} not installed: {installed:?}"
        );
    }
    assert!(
        found.iter().all(|(_, f)| f["target"]["text"] != index_host.as_str()),
        "the index is a finding: {found:#?}"
    );
    let relayed: Vec<&Value> =
        v.report["destinations"].as_array().unwrap().iter().filter(|d| d["relayed"] == true).collect();
    assert!(
        !relayed.is_empty()
            && relayed.iter().all(|d| d["address"] == index_host.as_str() && d["index"] == true),
        "the relayed destinations: {:#}",
        v.report["destinations"]
    );
    for step in v.report["steps"].as_array().unwrap().iter().filter(|s| s["kind"] == "import") {
        assert_eq!(step["exit_code"], 0, "an import failed: {step:#}");
    }
}
