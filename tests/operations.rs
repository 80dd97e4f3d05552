//! Operating premain: the configuration file and `check-config`, SIGHUP reload, and the
//! Prometheus metrics and health endpoints, each metric checked against the cause that moves it.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    Bait, Premain, READY, TempDir, alert_of, eventually, is_ready_line, premain_binary, pyenv_python,
};
use serde_json::Value;

fn check_config(file: &Path) -> (i32, String, String) {
    let out =
        Command::new(premain_binary()).arg("check-config").arg(file).output().expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_rejects_each_error_class_with_file_line_and_column() {
    let dir = TempDir::new("cfg");
    // (file contents, expected "line:column", expected message fragment)
    let cases: &[(&str, &str, &str)] = &[
        ("[alerts]\nfold_window_secs = 3\ncolour = \"red\"\n", "3:1", "unknown field `colour`"),
        ("[bogus]\n", "1:2", "unknown field `bogus`"),
        ("[limits]\nmax_processes = \"many\"\n", "2:17", "invalid type: string \"many\", expected usize"),
        ("[alerts]\nancestry_argv = 1\n", "2:17", "invalid type: integer `1`, expected a boolean"),
        ("[rules.credential-read]\nseverity = \"dire\"\n", "2:12", "unknown variant `dire`"),
        ("[credentials]\nexclude = [\"a/**\", \"b[\"]\n", "2:20", "bad glob \"b[\""),
        ("[allow]\ndestinations = [\"10.0.0.0/33:443\"]\n", "2:17", "bad destination \"10.0.0.0/33:443\""),
        ("[allow]\ndestinations = [\"*\"]\n", "2:17", "`*` needs a port"),
        ("[metrics]\naddress = \"localhost:9464\"\n", "2:11", "is not an IP:port address"),
        ("[limits]\nring_buffer_size = 1000\n", "2:20", "power of two"),
        ("[alerts]\nredact_patterns = [\"(\"]\n", "2:20", "bad regex \"(\" in alerts.redact_patterns"),
        (
            "[allow]\nprograms = [\"/usr/bin/uname\", \"gcc\"]\n",
            "2:31",
            "allow.programs: \"gcc\" is a bare name; give the absolute path, e.g. /usr/bin/gcc",
        ),
        (
            "[install]\ntoolchain = [\"bin/make\"]\n",
            "2:14",
            "install.toolchain: \"bin/make\" is not an absolute path",
        ),
        ("[[sinks]]\ntype = \"webhook\"\nurl = \"ftp://soc\"\n", "1:1", "webhook sink url"),
        ("[[sinks]]\ntype = \"file\"\n", "1:1", "missing field `path`"),
        (
            "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"stdout\"\n",
            "3:1",
            "two sinks are named \"stdout\"",
        ),
        ("[alerts\n", "1:8", "unclosed table"),
    ];
    for (i, (text, at, fragment)) in cases.iter().enumerate() {
        let file = dir.file(&format!("bad{i}.toml"), text);
        let (code, stdout, stderr) = check_config(&file);
        assert_eq!(code, 1, "case {i} must fail: {stdout}{stderr}");
        let expected = format!("premain: error: {}:{at}: ", file.display());
        assert!(stderr.starts_with(&expected), "case {i}: want {expected:?}…{fragment:?}, got {stderr:?}");
        assert!(stderr.contains(fragment), "case {i}: want {fragment:?} in {stderr:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    }
    let (code, _, stderr) = check_config(&dir.path().join("missing.toml"));
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.toml") && stderr.contains("cannot read"), "{stderr}");

    let good = dir.file(
        "good.toml",
        "[alerts]\nfold_window_secs = 5\n[[credentials.paths]]\ncategory = \"corp\"\nglob = \"/etc/corp/*.key\"\n\
         [allow]\ndestinations = [\"10.0.0.0/8:443\", \"[fd00::/8]:53\", \"*:9418\"]\n\
         [[sinks]]\ntype = \"stdout\"\nformat = \"falco\"\n",
    );
    let (code, stdout, stderr) = check_config(&good);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");

    // `run` refuses the same file before loading anything.
    let bad = dir.path().join("bad0.toml");
    let out = Command::new(premain_binary())
        .args(["run", "--config"])
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .expect("run premain");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("invalid configuration: {}:3:1: unknown field `colour`", bad.display())),
        "{stderr}"
    );
}

#[test]
fn sighup_applies_a_good_file_and_keeps_the_old_one_when_the_new_is_bad() {
    let python = pyenv_python();
    eprintln!("python: {} ({})", python.label, python.path.display());
    let bait = Bait::create();
    let config = bait.dir.file("premain.toml", "[alerts]\nfold_window_secs = 0\n");
    let config_arg = config.to_str().unwrap();
    let premain = Premain::start_alerts(&["--config", config_arg]);

    let pid = bait.run(&python);
    assert_eq!(alert_of(&premain, pid, &bait.netrc())["severity"], "critical");

    fs::write(
        &config,
        "[alerts]\nfold_window_secs = 0\n[rules.credential-read]\nseverity = \"medium\"\n[metrics]\nmax_label_values = 7\n",
    )
    .unwrap();
    premain.signal(libc::SIGHUP);
    eventually("the reload", || premain.stderr().contains("configuration reloaded"));
    assert!(
        premain.stderr().contains("section=\"metrics\""),
        "a restart-only change is reported: {}",
        premain.stderr()
    );
    let pid = bait.run(&python);
    assert_eq!(alert_of(&premain, pid, &bait.netrc())["severity"], "medium");

    fs::write(&config, "[rules.credential-read]\nseverity = \"medium\"\nenabled = \"maybe\"\n").unwrap();
    premain.signal(libc::SIGHUP);
    eventually("the refusal", || premain.stderr().contains("reload refused"));
    let refusal = premain.stderr().lines().find(|l| l.contains("reload refused")).unwrap().to_owned();
    assert!(refusal.contains(&format!("{config_arg}:3:11")), "{refusal}");
    // The previous (good) configuration is still in force.
    let pid = bait.run(&python);
    assert_eq!(alert_of(&premain, pid, &bait.netrc())["severity"], "medium");
    assert_eq!(premain.metric(r#"premain_config_reloads_total{result="success"}"#), 1.0);
    assert_eq!(premain.metric(r#"premain_config_reloads_total{result="failure"}"#), 1.0);
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn reloading_drops_no_event() {
    let python = pyenv_python();
    let dir = TempDir::new("reload-storm");
    let config = dir.file("premain.toml", "");
    let target = dir.file("target.txt", "x");
    let done = dir.path().join("done");
    let premain = Premain::start(&["--config", config.to_str().unwrap()]);
    // The Python opens the file until told to stop, and says how many times it did: the
    // reloads happen while it runs however fast or slow this machine is. It pauses every 50
    // opens, so it stays well below premain's capacity (what is tested is reloading, not
    // overflow, which tests/faults.rs accounts for).
    let script = format!(
        "import os, time\nn = 0\nwhile not os.path.exists({done:?}):\n    open({target:?}).close()\n    n += 1\n    if n % 50 == 0:\n        time.sleep(0.001)\nprint(n)\n",
        done = done.to_str().unwrap(),
        target = target.to_str().unwrap()
    );
    let child = Command::new(&python.path)
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let child_pid = child.id();
    premain.wait_for("the first open", |e| e["pid"] == child_pid && e["hook"] == "open");
    let reloads = r#"premain_config_reloads_total{result="success"}"#;
    let mut sent = 0;
    while premain.metric(reloads) < 20.0 {
        premain.signal(libc::SIGHUP);
        sent += 1;
        thread::sleep(Duration::from_millis(5));
    }
    fs::write(&done, "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let made: usize = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the count");
    premain.wait_exit(child_pid);
    let opens = premain
        .events()
        .iter()
        .filter(|e| e["pid"] == child_pid && e["hook"] == "open" && e["path"] == target.to_str().unwrap())
        .count();
    let losses: Vec<Value> = premain.lines().into_iter().filter(|v| v["kind"] == "loss").collect();
    eprintln!("{sent} SIGHUPs sent, {} reloads, {made} opens made, {opens} seen", premain.metric(reloads));
    assert_eq!(opens, made, "every open is reported across reloads; losses: {losses:?}");
    assert!(losses.is_empty(), "{losses:?}");
    let (status, _) = premain.stop();
    assert!(status.success());
}

/// Series whose labels are known in advance are there, at 0, as soon as premain serves
/// `/metrics`: `increase()` sees the first alert or loss, and an absent series means premain
/// does not export it. The exposition passes Prometheus's own `promtool check metrics`.
#[test]
fn known_series_are_exported_at_zero_from_the_start_and_pass_promtool() {
    let premain = Premain::start_alerts(&[]);
    let (status, body) = premain.get("/metrics");
    assert_eq!(status, 200);
    let value = |series: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} is not exported:\n{body}"))
            .trim()
            .parse::<f64>()
            .expect("a number")
    };
    for rule in ["credential-read", "network-connect", "network-send", "program-exec"] {
        let severity = if rule == "credential-read" { "critical" } else { "high" };
        for phase in ["install", "startup", "import"] {
            value(&format!(r#"premain_alerts_total{{phase="{phase}",rule="{rule}",severity="{severity}"}}"#));
        }
        value(&format!(r#"premain_application_code_actions_total{{rule="{rule}"}}"#));
    }
    for hook in
        ["open", "connect", "exec", "fork", "exit", "send", "python", "target", "socket", "name", "uring"]
    {
        for stage in ["ring_buffer", "kernel_table", "unattributed"] {
            value(&format!(r#"premain_events_lost_total{{hook="{hook}",stage="{stage}"}}"#));
        }
        value(&format!(r#"premain_events_total{{hook="{hook}"}}"#));
        value(&format!(r#"premain_kernel_read_failures_total{{hook="{hook}"}}"#));
    }
    for (hook, stage) in [("unknown", "decode"), ("alert", "userspace_queue"), ("alert", "sink")] {
        assert_eq!(value(&format!(r#"premain_events_lost_total{{hook="{hook}",stage="{stage}"}}"#)), 0.0);
    }
    // Other Pythons on the machine could raise alerts; none runs a build hook that sends.
    assert_eq!(value(r#"premain_alerts_total{phase="install",rule="network-send",severity="high"}"#), 0.0);
    for trigger in ["wakeup", "poll", "settle", "tick"] {
        value(&format!(r#"premain_reader_drains_total{{trigger="{trigger}"}}"#));
    }
    for result in ["success", "failure"] {
        assert_eq!(value(&format!(r#"premain_config_reloads_total{{result="{result}"}}"#)), 0.0);
    }
    for outcome in ["python", "other", "remembered", "own", "unjudged", "late", "busy"] {
        value(&format!(r#"premain_exec_decisions_total{{outcome="{outcome}"}}"#));
    }
    assert!(value("premain_exec_watch_filesystems") >= 1.0, "the exec watch is on by default");
    for sink in [
        r#"premain_alerts_delivered_total{sink="stdout"}"#,
        r#"premain_alert_delivery_failures_total{sink="stdout"}"#,
    ] {
        value(sink);
    }
    let mut promtool = Command::new(integration_tests::tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {}\n{said}", out.status);
    let (status, _) = premain.stop();
    assert!(status.success());
}

/// Supervisors, the bench and these tests wait for the ready line: it must be the only line,
/// from start to stop, with its words, and the start-up lines before it must not say `ready` at
/// all (a script written for "a line containing ready" then still waits for the right one).
#[test]
fn the_ready_line_is_the_only_one_of_its_kind() {
    let premain = Premain::start_alerts(&[]);
    let (status, stderr) = premain.stop();
    assert!(status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let with_words: Vec<&&str> = lines.iter().filter(|l| l.contains(READY)).collect();
    assert_eq!(with_words.len(), 1, "lines with {READY:?}:\n{stderr}");
    let ready = lines.iter().position(|l| is_ready_line(l)).expect("the ready line");
    for field in ["programs=", "preexisting=", "interpreters="] {
        assert!(lines[ready].contains(field), "no {field} in {:?}", lines[ready]);
    }
    let serving = lines.iter().position(|l| l.contains("serving /metrics")).expect("the endpoints line");
    assert!(serving < ready, "the endpoints are served before premain is ready:\n{stderr}");
    let early: Vec<&&str> = lines[..ready].iter().filter(|l| l.contains("ready")).collect();
    assert!(early.is_empty(), "start-up lines before the ready line say ready: {early:#?}");
}

#[test]
fn metrics_and_health_move_with_their_causes() {
    let python = pyenv_python();
    let bait = Bait::create();
    let premain = Premain::start_alerts(&[]);
    assert_eq!(premain.get("/readyz").0, 200, "ready once attached");
    assert_eq!(premain.get("/healthz").0, 200);
    assert_eq!(premain.get("/nope").0, 404);
    let (_, body) = premain.get("/metrics");
    assert!(body.contains("premain_build_info{rustc="), "{body}");
    assert_eq!(premain.metric("premain_ready"), 1.0);
    assert!(premain.metric("premain_ring_buffer_size_bytes") > 0.0);
    let alerts = r#"premain_alerts_total{phase="startup",rule="credential-read",severity="critical"}"#;
    let opens = r#"premain_events_total{hook="open"}"#;
    let folded = "premain_alerts_folded_total";
    let (alerts_before, opens_before) = (premain.metric(alerts), premain.metric(opens));
    let folded_before = premain.metric(folded);

    let pid = bait.run(&python);
    alert_of(&premain, pid, &bait.netrc());
    eventually("the alert counted", || premain.metric(alerts) == alerts_before + 1.0);
    assert_eq!(premain.metric(folded), folded_before + 1.0, "the repeat read folded");
    eventually("open records counted (sampled every second)", || premain.metric(opens) > opens_before);
    assert!(premain.metric("premain_interpreter_images") >= 1.0, "the CPython image is probed");
    // The first record of the burst woke the reader, which then polled until the burst was over
    // and went back to waiting, where the once-a-second tick drains too.
    let drains =
        |trigger: &str| premain.metric(&format!(r#"premain_reader_drains_total{{trigger="{trigger}"}}"#));
    eventually("a drain started by a wake-up", || drains("wakeup") >= 1.0);
    eventually("a poll after it", || drains("poll") >= 1.0);
    eventually("the idle reader's tick drain", || drains("tick") >= 1.0);
    assert!(body.contains("premain_reader_unwoken_records_total "), "{body}");

    // A Python that stays up is tracked.
    let mut sleeper = Command::new(&python.path).args(["-c", "import time; time.sleep(30)"]).spawn().unwrap();
    let base = premain.metric("premain_tracked_processes");
    eventually("the sleeper tracked", || premain.metric("premain_tracked_processes") >= base.max(1.0));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    // A fresh interpreter file's exec waits until it is judged.
    let python_decisions = r#"premain_exec_decisions_total{outcome="python"}"#;
    let decided = premain.metric(python_decisions);
    let copy = bait.dir.path().join("python3-fresh");
    fs::copy("/usr/bin/python3.11", &copy).expect("copy python");
    assert!(Command::new(&copy).args(["-c", "pass"]).status().unwrap().success());
    eventually("the decision counted", || premain.metric(python_decisions) == decided + 1.0);
    assert!(premain.metric("premain_exec_decision_seconds_count") >= 1.0);
    assert!(premain.metric("premain_exec_watch_filesystems") >= 1.0);

    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn ring_buffer_losses_match_the_loss_records_and_fill_is_sampled() {
    let python = pyenv_python();
    // Pre-run so the burst below is not held (stopped) until the stalled reader judges it.
    let mut warm = Command::new(&python.path).args(["-c", "import time; time.sleep(60)"]).spawn().unwrap();
    let warm_exe = fs::canonicalize(&python.path).unwrap();
    eventually("the warm-up interpreter to run", || {
        fs::read_link(format!("/proc/{}/exe", warm.id())).is_ok_and(|e| e == warm_exe)
    });
    let premain = Premain::start(&["--ring-buffer-size", "4096", "--debug-stall-reader-ms", "3000"]);
    let dir = TempDir::new("overflow");
    let target = dir.file("t.txt", "x");
    let script = format!("for _ in range(2000):\n    open({:?}).close()\n", target.to_str().unwrap());
    assert!(Command::new(&python.path).args(["-c", &script]).status().unwrap().success());
    // Once the stall ends the first drain finds the ring full; the gauge shows that peak.
    let mut peak = 0.0f64;
    eventually("a loss record", || {
        peak = peak.max(premain.metric("premain_ring_buffer_fill_ratio"));
        premain.lines().iter().any(|v| v["kind"] == "loss")
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        peak = peak.max(premain.metric("premain_ring_buffer_fill_ratio"));
        thread::sleep(Duration::from_millis(100));
    }
    warm.kill().unwrap();
    warm.wait().unwrap();
    let (status, _) = {
        let lines = premain.lines();
        let recorded: u64 = lines
            .iter()
            .filter(|v| v["kind"] == "loss" && v["hook"] == "open" && v["reason"] == "ring_buffer_full")
            .map(|v| v["count"].as_u64().unwrap())
            .sum();
        let counted = premain.metric(r#"premain_events_lost_total{hook="open",stage="ring_buffer"}"#);
        assert!(recorded > 0);
        assert_eq!(counted, recorded as f64, "the metric and the loss records agree");
        assert!(peak > 0.5, "the full ring was sampled (peak fill {peak})");
        premain.stop()
    };
    assert!(status.success());
}
