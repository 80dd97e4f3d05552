//! The scenario corpus (tests/scenarios) and how its tests judge premain: the source trees of
//! its packages, a bait HOME, the exact alerts a scenario expects ([`Want`]) compared as a
//! multiset with what premain raised ([`compare`]) once it has settled ([`settle`]), and a run
//! of a scenario on a list of CPythons under one premain ([`on_pythons`]).

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{Premain, Python, TempDir, tools_dir, workspace_root};

/// A temporary HOME with fake credentials, under `dir`.
pub fn bait_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    for (file, content) in [
        (".aws/credentials", "[default]\naws_access_key_id = AKIAFAKEFAKEFAKEFAKE\n"),
        (".ssh/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n"),
        (".netrc", "machine example.invalid login x password fake\n"),
        (".kube/config", "apiVersion: v1\nkind: Config\n"),
        (".pypirc", "[pypi]\npassword = fake\n"),
    ] {
        let path = home.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    home
}

pub fn scenario_dir() -> PathBuf {
    workspace_root().join("tests/scenarios")
}

/// A copy of a scenario package with the shared in-tree backend beside it.
pub fn source_tree(name: &str, into: &Path) -> PathBuf {
    let dest = into.join(name);
    copy_dir(&scenario_dir().join("packages").join(name), &dest);
    fs::copy(scenario_dir().join("premain_scenario_backend.py"), dest.join("premain_scenario_backend.py"))
        .unwrap();
    dest
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The pinned setuptools and wheel wheels `cargo xtask setup` downloads into its wheelhouse
/// (`tests/requirements-wheels.txt`), for the builds of `setup.py` packages with no index,
/// copied into a find-links directory of their own under `into`.
pub fn setuptools_links(into: &Path) -> Option<PathBuf> {
    let wheelhouse = tools_dir().join("wheelhouse");
    let wheels: Vec<PathBuf> = fs::read_dir(&wheelhouse)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name.starts_with("setuptools-") || name.starts_with("wheel-")) && name.ends_with(".whl")
        })
        .collect();
    if wheels.len() < 2 {
        return None;
    }
    let links = into.join("links");
    fs::create_dir_all(&links).unwrap();
    for w in wheels {
        fs::copy(&w, links.join(w.file_name().unwrap())).unwrap();
    }
    Some(links)
}

/// One expected alert.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Want {
    pub rule: &'static str,
    pub phase: &'static str,
    pub culprit: &'static str,
    pub target: String,
    pub distribution: Option<String>,
    /// Whose code (`culprit.party`): every scenario's culprit is an installed distribution's.
    pub party: &'static str,
    /// The phase came from a creator (thread, parent, earlier image).
    pub inherited: bool,
}

pub fn want(
    rule: &'static str,
    phase: &'static str,
    culprit: &'static str,
    target: impl Into<String>,
) -> Want {
    Want {
        rule,
        phase,
        culprit,
        target: target.into(),
        distribution: None,
        party: "third-party",
        inherited: false,
    }
}

impl Want {
    pub fn from(self, dist: &str) -> Self {
        Self { distribution: Some(dist.to_owned()), ..self }
    }
    pub fn inherited(self) -> Self {
        Self { inherited: true, ..self }
    }
}

pub fn got(alert: &Value) -> Want {
    let action = &alert["action"];
    let target = action["path"].as_str().or(action["addr"].as_str()).unwrap_or("").to_owned();
    let s = |v: &Value| -> &'static str { Box::leak(v.as_str().unwrap_or("?").to_owned().into_boxed_str()) };
    Want {
        rule: s(&alert["rule"]),
        phase: s(&alert["phase"]),
        culprit: s(&alert["culprit"]["kind"]),
        target,
        distribution: alert["culprit"]["distribution"].as_str().map(str::to_owned),
        party: s(&alert["culprit"]["party"]),
        inherited: !alert["inherited_from"].is_null(),
    }
}

/// Waits until `root`'s alerts number at least `count`, then for premain's sentinel, after
/// which no alert of what `root` did can still come.
pub fn settle(premain: &Premain, root: u32, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while premain.alerts_of(root).len() < count && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    premain.sentinel();
    premain.alerts_of(root)
}

/// How many times `one` occurs among the alerts (at least once is expected).
pub fn repeats(alerts: &[Value], one: &Want) -> usize {
    alerts.iter().filter(|a| got(a) == *one).count().max(1)
}

/// Compares as multisets; returns a readable difference.
pub fn compare(label: &str, alerts: &[Value], mut wanted: Vec<Want>) -> Result<(), String> {
    let mut actual: Vec<Want> = alerts.iter().map(got).collect();
    actual.sort();
    wanted.sort();
    if actual == wanted {
        return Ok(());
    }
    let mut msg = format!("[{label}] alerts differ\n  expected:\n");
    for w in &wanted {
        msg += &format!("    {w:?}\n");
    }
    msg += "  got:\n";
    for a in alerts {
        msg += &format!("    {}\n", a);
    }
    Err(msg)
}

/// Runs `scenario` on each of `pythons` under one premain (alerts only, folded over 2 s), each
/// in a temporary directory of its own; reports every failure at the end, and prints which
/// CPythons it ran on.
pub fn on_pythons(
    name: &str,
    pythons: &[Python],
    scenario: impl FnMut(&Python, &Premain, &Path) -> Result<(), String>,
) {
    on_pythons_under(name, pythons, &[], scenario);
}

/// [`on_pythons`] with more arguments to `premain run` (`--mode enforce`...).
pub fn on_pythons_under(
    name: &str,
    pythons: &[Python],
    args: &[&str],
    mut scenario: impl FnMut(&Python, &Premain, &Path) -> Result<(), String>,
) {
    assert!(!pythons.is_empty(), "no CPython 3.8+ found");
    let mut all = vec!["--fold-window-secs", "2"];
    all.extend_from_slice(args);
    let premain = Premain::start_alerts(&all);
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for py in pythons {
        let dir = TempDir::new(&format!("scn-{}", name.replace([' ', '/'], "-")));
        match scenario(py, &premain, dir.path()) {
            Ok(()) => ran.push(py.label.clone()),
            Err(err) => failures.push(err),
        }
    }
    let (status, stderr) = premain.stop();
    println!("{name}: ran on {}", ran.join(", "));
    assert!(failures.is_empty(), "{}\npremain stderr:\n{stderr}", failures.join("\n"));
    assert!(status.success(), "premain exited with {status}");
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}
