//! Secrets in command lines never leave premain: a Python started by a shell whose command
//! line holds fake secrets reads a bait credential and runs a program with fake tokens in its
//! argv, and no secret reaches stdout (alerts and `--events` lines), the log, a file sink in
//! Falco's format or a webhook's spool, while the alerts say what was redacted.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use integration_tests::{Premain, TempDir, pyenv_python, tool};
use serde_json::{Value, json};

const MARKER: &str = "***REDACTED***";

/// A `sitecustomize` that reads the bait credential, runs the program in `REDACTION_ARGV`
/// (one argument a line), prints its pid and waits for its stdin to close: the shell that
/// started it stays alive, so its command line is read for the alerts' ancestry.
const SITECUSTOMIZE: &str = "\
import os, subprocess, sys
open(os.path.expanduser('~/.aws/credentials')).close()
subprocess.run(os.environ['REDACTION_ARGV'].split('\\n'), check=True)
print(os.getpid(), flush=True)
sys.stdin.read()
";

/// Every file under `dir`, as text (the spool's segments and cursor).
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.display().to_string(), String::from_utf8_lossy(&fs::read(&path).unwrap()).into()));
        }
    }
    out
}

#[test]
fn secrets_in_command_lines_are_redacted_everywhere() {
    let python = pyenv_python();
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos().to_string();
    let aws_key_id = format!("AKIA{}", &nonce[nonce.len() - 16..]);
    let secrets = [
        format!("FAKEdb{nonce}"),
        format!("FAKEapi{nonce}"),
        format!("FAKEtok{nonce}"),
        format!("ghp_FAKE{nonce}"),
        format!("FAKEpw{nonce}"),
        format!("FAKEurl{nonce}"),
        format!("FAKEbearer{nonce}"),
        format!("FAKEcustom{nonce}"),
        aws_key_id.clone(),
    ];

    let dir = TempDir::new("redaction");
    let home = dir.path().join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    fs::write(home.join(".aws/credentials"), "[default]\naws_access_key_id = fake\n").unwrap();
    let site = dir.path().join("site");
    fs::create_dir_all(&site).unwrap();
    fs::write(site.join("sitecustomize.py"), SITECUSTOMIZE).unwrap();
    let file_sink = dir.path().join("falco.jsonl");
    let spool = dir.path().join("spool");
    // A webhook nobody answers: what it would send stays in its spool.
    let dead_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.file(
        "premain.toml",
        &format!(
            "[alerts]\nredact_patterns = ['FAKEcustom[0-9]+']\n\
             [[sinks]]\ntype = \"stdout\"\n\
             [[sinks]]\ntype = \"file\"\nformat = \"falco\"\npath = {file_sink:?}\n\
             [[sinks]]\ntype = \"webhook\"\nname = \"soc\"\nurl = \"http://127.0.0.1:{dead_port}/alerts\"\n\
             timeout_ms = 500\nbackoff_initial_ms = 100\nbackoff_max_ms = 500\nspool_dir = {spool:?}\n\
             [shutdown]\ndrain_deadline_secs = 1\n"
        ),
    );
    let premain = Premain::start(&["--config", config.to_str().unwrap()]);

    let program = [
        "/bin/true".to_owned(),
        format!("ghp_FAKE{nonce}"),
        "--password".to_owned(),
        format!("FAKEpw{nonce}"),
        format!("https://bob:FAKEurl{nonce}@example.invalid/"),
        aws_key_id.clone(),
        format!("Authorization: Bearer FAKEbearer{nonce}"),
        format!("FAKEcustom{nonce}"),
    ];
    // The shell forks the Python (two commands), so it is its parent; its own command line
    // has a secret flag, and its script a secret variable and a flag with its value.
    let script = format!(
        "export API_TOKEN=FAKEapi{nonce}; \"$REDACTION_PYTHON\" -c pass --token FAKEtok{nonce}; exit $?"
    );
    let bash = tool("bash");
    let mut shell = Command::new(&bash)
        .args(["-c", &script, "bash", &format!("--db-password=FAKEdb{nonce}")])
        .env("HOME", &home)
        .env("PYTHONPATH", &site)
        .env("REDACTION_PYTHON", &python.path)
        .env("REDACTION_ARGV", program.join("\n"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let mut pid = String::new();
    BufReader::new(shell.stdout.take().unwrap()).read_line(&mut pid).expect("the Python's pid");
    let pid: u32 = pid.trim().parse().unwrap_or_else(|_| panic!("the sitecustomize printed {pid:?}"));

    let read = premain.wait_for("the credential alert", |a| {
        a["kind"] == "alert" && a["rule"] == "credential-read" && a["process"]["pid"] == pid
    });
    let exec = premain.wait_for("the exec alert", |a| {
        a["kind"] == "alert"
            && a["rule"] == "program-exec"
            && a["process"]["ppid"] == pid
            && a["action"]["path"] == "/bin/true"
    });
    drop(shell.stdin.take());
    assert!(shell.wait().unwrap().success(), "the shell or its Python failed");
    premain.wait_exit(pid);

    let process = &read["process"];
    assert_eq!(process["cmdline_redacted"], true, "{read}");
    assert_eq!(process["cmdline"], json!([python.path.to_str().unwrap(), "-c", "pass", "--token", MARKER]));
    let shell_line = &process["ancestry"][0];
    assert_eq!(shell_line["cmdline_redacted"], true, "{read}");
    assert_eq!(
        shell_line["cmdline"],
        json!([
            bash.to_str().unwrap(),
            "-c",
            format!("export API_TOKEN={MARKER}; \"$REDACTION_PYTHON\" -c pass --token {MARKER}; exit $?"),
            "bash",
            format!("--db-password={MARKER}"),
        ])
    );
    assert_eq!(exec["action"]["argv_redacted"], true, "{exec}");
    assert_eq!(
        exec["action"]["argv"],
        json!([
            "/bin/true",
            MARKER,
            "--password",
            MARKER,
            format!("https://bob:{MARKER}@example.invalid/"),
            MARKER,
            format!("Authorization: {MARKER}"),
            MARKER,
        ])
    );
    assert_eq!(exec["process"]["cmdline_redacted"], true, "the forked child's: {exec}");
    assert_eq!(exec["inherited_from"]["cmdline_redacted"], true, "{exec}");
    let events = premain.events();
    let image =
        events.iter().find(|e| e["hook"] == "image" && e["pid"] == pid).expect("the Python's image event");
    assert_eq!(image["argv_redacted"], true, "{image}");
    let exec_event = events
        .iter()
        .find(|e| e["hook"] == "exec" && e["ppid"] == pid && e["path"] == "/bin/true" && e["result"] == 0)
        .expect("the exec event");
    assert_eq!(exec_event["argv"], exec["action"]["argv"], "{exec_event}");
    assert_eq!(exec_event["argv_redacted"], true);

    let (status, stderr, raw) = premain.stop_raw();
    assert!(status.success(), "{stderr}");
    let falco = fs::read_to_string(&file_sink).expect("the file sink");
    let envelope: Value = falco
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|e| e["output_fields"]["proc.pid"] == pid && e["rule"] == "Pre-main credential read")
        .expect("the credential alert in Falco's form");
    assert_eq!(envelope["output_fields"]["premain.process.cmdline_redacted"], true, "{envelope}");
    assert!(envelope["output"].as_str().unwrap().contains(MARKER), "{envelope}");
    let spooled = files_under(&spool);
    assert!(spooled.iter().any(|(_, text)| text.contains(MARKER)), "the alerts were spooled: {spooled:?}");

    let stdout: Vec<String> = raw.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let mut places: Vec<(String, &str)> = vec![("the log".into(), &stderr), ("the file sink".into(), &falco)];
    places.extend(stdout.iter().map(|l| ("stdout".to_owned(), l.as_str())));
    places.extend(spooled.iter().map(|(path, text)| (path.clone(), text.as_str())));
    for secret in secrets.iter().map(String::as_str).chain([nonce.as_str()]) {
        for (place, text) in &places {
            assert!(!text.contains(secret), "{secret} reached {place}: {text}");
        }
    }
}
