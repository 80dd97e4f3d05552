//! Alert delivery end to end: the real daemon, real pre-main alerts, and a real local webhook
//! receiver that fails, stalls and recovers; the rotating file sink; SIGTERM drain; the Falco
//! envelope on stdout.

use std::{
    collections::HashSet,
    fs,
    process::{Child, ChildStdin, Command},
    time::{Duration, Instant},
};

use integration_tests::{
    Bait, Premain, alert_of, eventually, http_get, pyenv_python, script, spawn_listener,
};
use serde_json::Value;

/// `tests/scripts/webhook_receiver.py`, killed on drop (it also exits when its stdin closes).
struct Receiver {
    child: Child,
    _stdin: ChildStdin,
    addr: String,
}

impl Receiver {
    fn start() -> Self {
        let mut command = Command::new(integration_tests::tool("python3"));
        command.arg(script("webhook_receiver.py"));
        let (child, stdin, port) = spawn_listener(command, "the webhook receiver");
        Self { child, _stdin: stdin, addr: format!("127.0.0.1:{port}") }
    }

    fn mode(&self, mode: &str, delay: f64) {
        let body = format!(r#"{{"mode":"{mode}","delay":{delay}}}"#);
        let out = Command::new(integration_tests::tool("curl"))
            .args(["-sf", "-X", "POST", "--data", &body, &format!("http://{}/_mode", self.addr)])
            .output()
            .expect("curl");
        assert!(out.status.success(), "setting mode {mode}");
    }

    fn received(&self) -> Vec<Value> {
        let (status, body) = http_get(&self.addr, "/_received");
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("JSON list")
    }

    fn stats(&self) -> Value {
        serde_json::from_str(&http_get(&self.addr, "/_stats").1).expect("JSON")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook_config(bait: &Bait, receiver: &Receiver, extra: &str) -> String {
    let spool = bait.dir.path().join("spool");
    format!(
        "[alerts]\nfold_window_secs = 0\n[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"webhook\"\nname = \"soc\"\n\
         url = \"http://{}/alerts\"\nbatch_max = 3\nbatch_wait_ms = 50\ntimeout_ms = 1000\nbackoff_initial_ms = 100\n\
         backoff_max_ms = 500\nspool_dir = {:?}\n{extra}",
        receiver.addr,
        spool.to_str().unwrap()
    )
}

fn alert_ids(records: &[Value]) -> HashSet<String> {
    records.iter().filter(|r| r["kind"] == "alert").map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn webhook_outage_stall_and_recovery_lose_no_alert() {
    let python = pyenv_python();
    eprintln!("python: {}", python.label);
    let bait = Bait::create();
    let receiver = Receiver::start();
    let config = bait.dir.file("premain.toml", &webhook_config(&bait, &receiver, ""));
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap()]);

    receiver.mode("fail", 0.0);
    let mut expected = HashSet::new();
    for _ in 0..4 {
        let pid = bait.run(&python);
        expected.insert(alert_of(&premain, pid, &bait.netrc())["id"].as_str().unwrap().to_owned());
    }
    let failures = r#"premain_alert_delivery_failures_total{sink="soc"}"#;
    eventually("failed deliveries counted", || premain.metric(failures) >= 2.0);
    receiver.mode("stall", 0.0);
    let stalled_before = receiver.stats()["stalled"].as_u64().unwrap();
    for _ in 0..3 {
        let pid = bait.run(&python);
        expected.insert(alert_of(&premain, pid, &bait.netrc())["id"].as_str().unwrap().to_owned());
    }
    eventually("a stalled delivery", || receiver.stats()["stalled"].as_u64().unwrap() > stalled_before);
    assert!(
        premain.metric(r#"premain_sink_spool_bytes{sink="soc"}"#) > 0.0,
        "undelivered alerts wait on disk"
    );
    receiver.mode("ok", 0.0);
    eventually("every alert delivered", || alert_ids(&receiver.received()).is_superset(&expected));

    // Everything premain raised (stdout sink) reaches the webhook too.
    let raised = alert_ids(&premain.alerts());
    eventually("every raised alert delivered", || alert_ids(&receiver.received()).is_superset(&raised));
    let received = receiver.received();
    for record in &received {
        assert_ne!(record["kind"], "loss", "nothing was lost: {record}");
    }
    // At least once: the batch (at most 3) that stalled may arrive twice, nothing else repeats.
    let unique = alert_ids(&received).len();
    assert!(received.len() <= unique + 3, "{} records for {unique} alerts", received.len());
    // The counter moves once premain has read the receiver's answer, a little after it arrived.
    eventually("delivered alerts counted", || {
        premain.metric(r#"premain_alerts_delivered_total{sink="soc"}"#) >= unique as f64
    });
    eventually("the spool emptied", || premain.metric(r#"premain_sink_spool_bytes{sink="soc"}"#) == 0.0);
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn sigterm_delivers_queued_alerts_before_exit() {
    let python = pyenv_python();
    let bait = Bait::create();
    let receiver = Receiver::start();
    // A slow receiver: alerts are still queued when SIGTERM arrives.
    receiver.mode("ok", 0.5);
    let config = bait
        .dir
        .file("premain.toml", &webhook_config(&bait, &receiver, "[shutdown]\ndrain_deadline_secs = 15\n"));
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap()]);
    let mut expected = HashSet::new();
    for _ in 0..5 {
        let pid = bait.run(&python);
        expected.insert(alert_of(&premain, pid, &bait.netrc())["id"].as_str().unwrap().to_owned());
    }
    let stopping = Instant::now();
    let (status, stderr) = premain.stop_with(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert!(stopping.elapsed() < Duration::from_secs(20), "exited within the drain deadline");
    let got = alert_ids(&receiver.received());
    assert!(got.is_superset(&expected), "delivered {got:?}, expected {expected:?}\n{stderr}");
}

#[test]
fn file_sink_rotates_and_keeps_every_line_whole() {
    let python = pyenv_python();
    let bait = Bait::create();
    let log = bait.dir.path().join("log/alerts.jsonl");
    let config = bait.dir.file(
        "premain.toml",
        &format!(
            "[alerts]\nfold_window_secs = 0\n[[sinks]]\ntype = \"file\"\npath = {:?}\nmax_bytes = 4096\nkeep = 2\n\
             fsync = \"always\"\n",
            log.to_str().unwrap()
        ),
    );
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap()]);
    let mut pids = Vec::new();
    for _ in 0..12 {
        pids.push(bait.run(&python));
    }
    let rotated = |n: u32| log.with_file_name(format!("alerts.jsonl.{n}"));
    eventually("two rotations", || rotated(2).exists());
    let (status, _) = premain.stop();
    assert!(status.success());
    assert!(!rotated(3).exists(), "keep = 2");
    let mut alerts = Vec::new();
    for file in [rotated(2), rotated(1), log.clone()] {
        let text = fs::read_to_string(&file).unwrap();
        // A line longer than max_bytes gets a file of its own; any other file stays within it.
        let lines = text.lines().count();
        assert!(
            text.len() <= 4096 || lines == 1,
            "{} is {} bytes in {lines} lines",
            file.display(),
            text.len()
        );
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            alerts.push(value);
        }
    }
    // The oldest file may have been deleted; the newest alerts are all there, in order.
    let last_pid = *pids.last().unwrap();
    assert!(alerts.iter().any(|a| a["process"]["pid"] == last_pid), "the last alert is in the newest file");
    let times: Vec<&str> = alerts.iter().map(|a| a["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "rotated files in order");
}

#[test]
fn falco_envelope_on_stdout() {
    let python = pyenv_python();
    let bait = Bait::create();
    let config = bait.dir.file("premain.toml", "[[sinks]]\ntype = \"stdout\"\nformat = \"falco\"\n");
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap()]);
    let pid = bait.run(&python);
    let event = premain.wait_for("a Falco event", |v| v["output_fields"]["proc.pid"] == pid);
    for key in ["time", "rule", "priority", "source", "hostname", "output", "output_fields"] {
        assert!(!event[key].is_null(), "{key} missing: {event}");
    }
    assert_eq!(event["source"], "premain");
    assert_eq!(event["priority"], "Critical");
    assert_eq!(event["output_fields"]["fd.name"], bait.netrc().to_str().unwrap());
    assert_eq!(event["output_fields"]["premain.phase"], "startup");
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn a_full_spool_drops_the_oldest_counts_them_and_tells_the_receiver() {
    let python = pyenv_python();
    let bait = Bait::create();
    let receiver = Receiver::start();
    receiver.mode("fail", 0.0);
    let config = bait.dir.file(
        "premain.toml",
        &webhook_config(&bait, &receiver, "")
            .replace("backoff_max_ms = 500\n", "backoff_max_ms = 500\nspool_max_bytes = 8192\n"),
    );
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap()]);
    let lost = r#"premain_events_lost_total{hook="alert",stage="sink"}"#;
    let mut runs = 0;
    while premain.metric(lost) == 0.0 {
        assert!(runs < 40, "an 8 KiB spool overflows within 40 runs");
        let pid = bait.run(&python);
        alert_of(&premain, pid, &bait.netrc());
        runs += 1;
    }
    receiver.mode("ok", 0.0);
    let counted = || premain.metric(lost) as u64;
    eventually("the loss record delivered", || {
        let reported: u64 = receiver
            .received()
            .iter()
            .filter(|r| r["kind"] == "loss" && r["reason"] == "spool_full")
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        reported > 0 && reported == counted()
    });
    let (status, _) = premain.stop();
    assert!(status.success());
}
