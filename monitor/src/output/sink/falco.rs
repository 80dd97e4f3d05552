//! Falco's JSON output envelope (`json_output: true`), so that falcosidekick and whatever
//! reads Falco's events take premain's records unchanged:
//! `{"time","rule","priority","source","hostname","output","output_fields","tags"}`.
//!
//! `output_fields` uses Falco's field names where one means the same (`proc.pid`,
//! `proc.exepath`, `fd.name`, `k8s.pod.name`, ...) and `premain.*` for the rest.
//! Fields without a value are left out rather than sent as null.

use std::{net::SocketAddr, time::SystemTime};

use serde_json::{Map, Value, json};

use crate::{
    detect::{CREDENTIAL_READ, NETWORK_CONNECT, NETWORK_SEND, PROGRAM_EXEC},
    process::event::rfc3339,
};

/// Falco `source` of every premain event.
const SOURCE: &str = "premain";
/// Rule of loss records.
const LOSS_RULE: &str = "premain records lost";

/// Falco priority of an alert severity:
///
/// | severity | priority        |
/// |----------|-----------------|
/// | critical | `Critical`      |
/// | high     | `Error`         |
/// | medium   | `Warning`       |
/// | low      | `Notice`        |
/// | info     | `Informational` |
///
/// Falco's `Emergency` and `Alert` (the system itself is unusable or needs action at once)
/// are not used; loss records are `Warning`, and an unknown severity too.
pub(super) fn priority(severity: &str) -> &'static str {
    match severity {
        "critical" => "Critical",
        "high" => "Error",
        "medium" => "Warning",
        "low" => "Notice",
        "info" => "Informational",
        _ => "Warning",
    }
}

/// Falco-style rule name: `credential-read` → `Pre-main credential read`.
fn rule_name(rule: &str) -> String {
    format!("Pre-main {}", rule.replace(['-', '_'], " "))
}

/// MITRE ATT&CK tactic tag, as Falco's rules tag them.
fn tactic(rule: &str) -> Option<&'static str> {
    match rule {
        CREDENTIAL_READ => Some("mitre_credential_access"),
        NETWORK_CONNECT | NETWORK_SEND => Some("mitre_command_and_control"),
        PROGRAM_EXEC => Some("mitre_execution"),
        _ => None,
    }
}

/// The envelope of any record: alerts and loss records get their own; anything else becomes
/// an `Informational` event with its fields flattened under `premain.`.
pub(super) fn envelope(record: &Value, hostname: &str) -> Value {
    match record.get("kind").and_then(Value::as_str) {
        Some("alert") => alert(record, hostname),
        Some("loss") => loss(record, hostname),
        _ => other(record, hostname),
    }
}

fn alert(a: &Value, hostname: &str) -> Value {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let rule = a["rule"].as_str().unwrap_or("unknown");
    let priority = priority(a["severity"].as_str().unwrap_or_default());
    let process = &a["process"];
    let action = &a["action"];
    let culprit = &a["culprit"];
    let mut fields = Fields::default();

    fields.put("proc.pid", &process["pid"]);
    fields.put("thread.tid", &process["tid"]);
    fields.put("proc.ppid", &process["ppid"]);
    fields.put("proc.exepath", &process["exe"]);
    fields.put("proc.name", &process["comm"]);
    fields.put("proc.cmdline", &json!(cmdline(&process["comm"], &process["cmdline"])));
    fields.put("user.uid", &process["uid"]);
    fields.put("group.gid", &process["gid"]);

    let action_type = action["type"].as_str().unwrap_or_default();
    let evt_type = match action_type {
        "open" => "open",
        "connect" => "connect",
        "send" => "sendto",
        "exec" => "execve",
        other => other,
    };
    fields.put("evt.type", &json!(evt_type));
    if let Some(result) = action["result"].as_i64() {
        let res = if result < 0 {
            text(&action["error"]).unwrap_or_else(|| result.to_string())
        } else {
            "SUCCESS".into()
        };
        fields.put("evt.res", &json!(res));
    }
    let target = match action_type {
        "open" => {
            fields.put("fd.name", &action["path"]);
            text(&action["path"]).map(|p| format!("file={p}"))
        }
        "connect" | "send" => {
            fields.put("fd.name", &action["addr"]);
            if let Some(addr) = action["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok()) {
                // The connecting side is the client, so the remote end is also the server.
                for (ip, port) in [("fd.rip", "fd.rport"), ("fd.sip", "fd.sport")] {
                    fields.put(ip, &json!(addr.ip().to_string()));
                    fields.put(port, &json!(addr.port()));
                }
            }
            text(&action["addr"]).map(|a| format!("connection={a}"))
        }
        "exec" => {
            fields.put("premain.action.path", &action["path"]);
            fields.put("premain.action.argv", &json!(join_args(&action["argv"], 0)));
            text(&action["path"]).map(|p| format!("program={p}"))
        }
        _ => None,
    };

    if let Some(container) = a.get("container") {
        // Falco names host processes' container `host`.
        let id = container.get("id").and_then(Value::as_str).unwrap_or("host");
        fields.put("container.id", &json!(id));
        fields.put("container.type", container.get("runtime").unwrap_or(&Value::Null));
    }
    if let Some(k8s) = a.get("kubernetes") {
        fields.put("k8s.ns.name", k8s.get("namespace").unwrap_or(&Value::Null));
        fields.put("k8s.pod.name", k8s.get("pod").unwrap_or(&Value::Null));
        fields.put("k8s.pod.uid", k8s.get("pod_uid").unwrap_or(&Value::Null));
    }

    fields.put("premain.alert_id", &a["id"]);
    fields.put("premain.rule", &a["rule"]);
    fields.put("premain.severity", &a["severity"]);
    fields.put("premain.phase", &a["phase"]);
    fields.put("premain.phase_basis", &a["phase_basis"]);
    fields.put("premain.count", &a["count"]);
    fields.put("premain.action.type", &action["type"]);
    fields.put("premain.action.category", &action["category"]);
    for key in ["kind", "path", "module", "distribution", "version"] {
        fields.put(&format!("premain.culprit.{key}"), &culprit[key]);
    }
    fields.put("premain.python", &process["python"]);
    fields.put("premain.cgroup_id", &process["cgroup_id"]);
    fields.put("premain.inherited_from.pid", &a["inherited_from"]["pid"]);
    fields.put("premain.inherited_from.exe", &a["inherited_from"]["exe"]);

    let time = falco_time(&a["time"]);
    let by = match (text(&culprit["distribution"]), text(&culprit["module"]), text(&culprit["path"])) {
        (Some(dist), _, _) => match text(&culprit["version"]) {
            Some(version) => format!("distribution {dist} {version}"),
            None => format!("distribution {dist}"),
        },
        (None, Some(module), _) => format!("module {module}"),
        (None, None, Some(path)) => path,
        (None, None, None) => text(&culprit["kind"]).unwrap_or_else(|| "unknown code".into()),
    };
    let mut detail: Vec<String> = target.into_iter().collect();
    for (label, field) in [
        ("user.uid", "user.uid"),
        ("proc.pid", "proc.pid"),
        ("proc.exepath", "proc.exepath"),
        ("proc.cmdline", "proc.cmdline"),
        ("culprit", "premain.culprit.kind"),
        ("culprit_path", "premain.culprit.path"),
        ("phase", "premain.phase"),
        ("container.id", "container.id"),
        ("k8s.ns.name", "k8s.ns.name"),
        ("k8s.pod.name", "k8s.pod.name"),
    ] {
        if let Some(value) = fields.0.get(field) {
            detail.push(format!("{label}={}", plain(value)));
        }
    }
    let rule = rule_name(rule);
    let output = format!("{}: {priority} {rule} by {by} ({})", clock(&time), detail.join(" "));
    let mut tags = vec![json!("premain"), json!("python"), json!("supply_chain")];
    tags.extend(tactic(a["rule"].as_str().unwrap_or_default()).map(|t| json!(t)));
    json!({
        "time": time,
        "rule": rule,
        "priority": priority,
        "source": SOURCE,
        "hostname": host(a, hostname),
        "output": output,
        "output_fields": Value::Object(fields.0),
        "tags": tags,
    })
}

fn loss(record: &Value, hostname: &str) -> Value {
    let mut fields = Fields::default();
    for key in ["kind", "hook", "stage", "reason", "sink", "count", "total"] {
        fields.put(&format!("premain.{key}"), &record[key]);
    }
    let detail: Vec<String> = ["count", "hook", "stage", "reason", "sink"]
        .iter()
        .filter(|k| !record[**k].is_null())
        .map(|k| format!("{k}={}", plain(&record[*k])))
        .collect();
    let time = falco_time(&record["time"]);
    json!({
        "time": time,
        "rule": LOSS_RULE,
        "priority": "Warning",
        "source": SOURCE,
        "hostname": host(record, hostname),
        "output": format!("{}: Warning {LOSS_RULE} ({})", clock(&time), detail.join(" ")),
        "output_fields": Value::Object(fields.0),
        "tags": ["premain", "loss"],
    })
}

fn other(record: &Value, hostname: &str) -> Value {
    let kind = record.get("kind").and_then(Value::as_str).unwrap_or("record");
    let mut fields = Fields::default();
    fields.put("premain.kind", &json!(kind));
    flatten("premain", record, &mut fields);
    let time = falco_time(&record["time"]);
    let rule = format!("premain {kind}");
    json!({
        "time": time,
        "rule": rule,
        "priority": "Informational",
        "source": SOURCE,
        "hostname": host(record, hostname),
        "output": format!("{}: Informational {rule}", clock(&time)),
        "output_fields": Value::Object(fields.0),
        "tags": ["premain"],
    })
}

/// `output_fields` without nulls.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, key: &str, value: &Value) {
        if !value.is_null() {
            self.0.insert(key.to_owned(), value.clone());
        }
    }
}

fn flatten(prefix: &str, value: &Value, fields: &mut Fields) {
    match value {
        Value::Object(obj) => {
            for (key, inner) in obj {
                flatten(&format!("{prefix}.{key}"), inner, fields);
            }
        }
        other => fields.put(prefix, other),
    }
}

fn host(record: &Value, hostname: &str) -> String {
    if hostname.is_empty() {
        record["node"].as_str().unwrap_or_default().to_owned()
    } else {
        hostname.to_owned()
    }
}

/// Falco's `proc.cmdline`: the process name, then the arguments after `argv[0]`.
fn cmdline(comm: &Value, argv: &Value) -> Option<String> {
    let name = comm.as_str()?;
    let args = join_args(argv, 1);
    Some(if args.is_empty() { name.to_owned() } else { format!("{name} {args}") })
}

fn join_args(argv: &Value, skip: usize) -> String {
    let args = argv.as_array().map(Vec::as_slice).unwrap_or_default();
    args.iter().skip(skip).map(plain).collect::<Vec<_>>().join(" ")
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// RFC 3339 with nanoseconds, as Falco writes `time`: the record's own time (premain keeps
/// microseconds) widened, or now.
fn falco_time(time: &Value) -> String {
    let (text, nanos) = match time.as_str() {
        Some(t) => (t.to_owned(), None),
        None => {
            let now = SystemTime::now();
            let nanos = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            (rfc3339(now), Some(nanos))
        }
    };
    let Some(body) = text.strip_suffix('Z') else { return text };
    let (seconds, fraction) = body.split_once('.').unwrap_or((body, ""));
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return text;
    }
    let fraction = match nanos {
        Some(nanos) => format!("{nanos:09}"),
        None => format!("{:0<9}", &fraction[..fraction.len().min(9)]),
    };
    format!("{seconds}.{fraction}Z")
}

/// `HH:MM:SS.nnnnnnnnn` of an RFC 3339 time: how Falco's `output` line starts.
fn clock(time: &str) -> &str {
    time.split_once('T').map_or(time, |(_, t)| t.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::sink::test_support::alert;

    #[test]
    fn an_alert_in_falco_form() {
        let mut record = alert(7);
        record["container"] = json!({"id": "0123456789ab", "runtime": "containerd"});
        record["kubernetes"] =
            json!({"pod_uid": "u-1", "pod": "web-0", "namespace": "shop", "labels": {"app": "web"}});
        let e = envelope(&record, "node-1");
        assert_eq!(e["time"], "2026-03-01T12:00:00.123456000Z");
        assert_eq!(e["rule"], "Pre-main credential read");
        assert_eq!(e["priority"], "Critical");
        assert_eq!(e["source"], "premain");
        assert_eq!(e["hostname"], "node-1");
        assert_eq!(e["tags"], json!(["premain", "python", "supply_chain", "mitre_credential_access"]));
        let f = &e["output_fields"];
        assert_eq!(f["proc.pid"], 4242);
        assert_eq!(f["proc.ppid"], 1);
        assert_eq!(f["proc.exepath"], "/usr/bin/python3.12");
        assert_eq!(f["proc.name"], "python3");
        assert_eq!(f["proc.cmdline"], "python3 -c import x");
        assert_eq!(f["user.uid"], 1000);
        assert_eq!(f["fd.name"], "/home/u/.netrc");
        assert_eq!(f["evt.type"], "open");
        assert_eq!(f["evt.res"], "SUCCESS");
        assert_eq!(f["container.id"], "0123456789ab");
        assert_eq!(f["container.type"], "containerd");
        assert_eq!(f["k8s.ns.name"], "shop");
        assert_eq!(f["k8s.pod.name"], "web-0");
        assert_eq!(f["premain.alert_id"], "a-7");
        assert_eq!(f["premain.phase"], "startup");
        assert_eq!(f["premain.count"], 1);
        assert_eq!(f["premain.culprit.kind"], "pth");
        assert_eq!(f["premain.culprit.path"], "/site-packages/evil.pth");
        assert_eq!(f["premain.culprit.module"], "evil");
        assert_eq!(f["premain.culprit.distribution"], "evil-pkg");
        assert!(f.as_object().unwrap().values().all(|v| !v.is_null()), "{f}");
        let output = e["output"].as_str().unwrap();
        assert!(output.starts_with("12:00:00.123456000: Critical Pre-main credential read by distribution evil-pkg 1.0 (file=/home/u/.netrc "), "{output}");
        assert!(output.contains("k8s.pod.name=web-0"), "{output}");
        assert!(!output.contains('\n'));
    }

    #[test]
    fn a_connect_names_the_remote_end() {
        let mut record = alert(1);
        record["rule"] = json!("network-connect");
        record["severity"] = json!("high");
        record["action"] = json!({"type": "connect", "addr": "[2001:db8::1]:443", "family": "inet6", "port": 443, "result": -111, "error": "ECONNREFUSED"});
        let e = envelope(&record, "");
        assert_eq!(e["priority"], "Error");
        assert_eq!(e["hostname"], "node-from-record", "the record's node when no hostname is given");
        let f = &e["output_fields"];
        assert_eq!((&f["fd.rip"], &f["fd.rport"]), (&json!("2001:db8::1"), &json!(443)));
        assert_eq!((&f["fd.sip"], &f["fd.sport"]), (&json!("2001:db8::1"), &json!(443)));
        assert_eq!(f["evt.res"], "ECONNREFUSED");
        assert_eq!(f["evt.type"], "connect");
    }

    #[test]
    fn a_loss_record_in_falco_form() {
        let record = json!({"kind":"loss","time":"2026-03-01T12:00:01.000002Z","hook":"open","stage":"kernel","reason":"ring_buffer_full","count":5,"total":9});
        let e = envelope(&record, "node-1");
        assert_eq!(e["rule"], "premain records lost");
        assert_eq!(e["priority"], "Warning");
        assert_eq!(e["source"], "premain");
        assert_eq!(e["time"], "2026-03-01T12:00:01.000002000Z");
        assert_eq!(
            e["output_fields"],
            json!({"premain.kind":"loss","premain.hook":"open","premain.stage":"kernel","premain.reason":"ring_buffer_full","premain.count":5,"premain.total":9})
        );
        assert_eq!(
            e["output"],
            "12:00:01.000002000: Warning premain records lost (count=5 hook=open stage=kernel reason=ring_buffer_full)"
        );
    }

    #[test]
    fn other_records_and_times() {
        let e = envelope(&json!({"kind":"summary","stats":{"alerts":3}}), "n");
        assert_eq!(e["rule"], "premain summary");
        assert_eq!(e["output_fields"]["premain.stats.alerts"], 3);
        let time = e["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-03-01T12:00:01.000002000Z".len(), "{time}");
        assert_eq!(falco_time(&json!("2026-03-01T12:00:01Z")), "2026-03-01T12:00:01.000000000Z");
        assert_eq!(priority("info"), "Informational");
        assert_eq!(priority("low"), "Notice");
        assert_eq!(priority("medium"), "Warning");
    }
}
