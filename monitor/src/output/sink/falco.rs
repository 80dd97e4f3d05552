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
    alert::{ActionKind, Alert, Loss, Record, Target},
    detect::{RuleId, Severity},
    output::time::rfc3339,
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
/// are not used; loss records are `Warning`.
pub(super) fn priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "Critical",
        Severity::High => "Error",
        Severity::Medium => "Warning",
        Severity::Low => "Notice",
        Severity::Info => "Informational",
    }
}

/// Falco-style rule name: `credential-read` → `Pre-main credential read`.
fn rule_name(rule: RuleId) -> String {
    format!("Pre-main {}", rule.as_str().replace(['-', '_'], " "))
}

/// MITRE ATT&CK tactic tag, as Falco's rules tag them.
fn tactic(rule: RuleId) -> &'static str {
    match rule {
        RuleId::CredentialRead => "mitre_credential_access",
        RuleId::NetworkConnect | RuleId::NetworkSend => "mitre_command_and_control",
        RuleId::ProgramExec => "mitre_execution",
        RuleId::ProcessMemory => "mitre_credential_access",
        RuleId::Persistence => "mitre_persistence",
        RuleId::RawSocket => "mitre_discovery",
        RuleId::IoUring => "mitre_defense_evasion",
    }
}

/// The envelope of a record.
pub(super) fn envelope(record: &Record, hostname: &str) -> Value {
    match record {
        Record::Alert(a) => alert(a, hostname),
        Record::Loss(l) => loss(l, hostname),
    }
}

fn alert(a: &Alert, hostname: &str) -> Value {
    let priority = priority(a.severity);
    let process = &a.process;
    let culprit = &a.culprit;
    let mut fields = Fields::default();

    fields.put("proc.pid", json!(process.pid));
    fields.put("thread.tid", json!(process.tid));
    fields.put("proc.ppid", json!(process.ppid));
    fields.put("proc.exepath", json!(process.exe.text()));
    let comm = process.comm.text().unwrap_or_default();
    let args: Vec<String> = process.cmdline.args().skip(1).collect();
    let cmdline = if args.is_empty() { comm.clone() } else { format!("{comm} {}", args.join(" ")) };
    fields.put("proc.name", json!(comm));
    fields.put("proc.cmdline", json!(cmdline));
    fields.put("premain.process.cmdline_redacted", json!(process.cmdline.redacted().then_some(true)));
    fields.put("user.uid", json!(process.uid));
    fields.put("group.gid", json!(process.gid));

    let evt_type = match a.action.kind {
        ActionKind::Open => "open",
        ActionKind::Connect => "connect",
        ActionKind::Send => "sendto",
        ActionKind::Exec => "execve",
        ActionKind::ProcessMemory => match &a.action.target {
            Target::Process { via: "proc-mem", .. } => "open",
            Target::Process { via: "process_vm_readv", .. } => "process_vm_readv",
            Target::Process { via: "process_vm_writev", .. } => "process_vm_writev",
            _ => "ptrace",
        },
        ActionKind::Socket => "socket",
        ActionKind::Rename => "rename",
        ActionKind::Link => "link",
        ActionKind::Symlink => "symlink",
        ActionKind::IoUring => "io_uring_enter",
    };
    fields.put("evt.type", json!(evt_type));
    let outcome = &a.action.outcome;
    let res = match &outcome.error {
        Some(error) => error.clone(),
        None if outcome.result < 0 => outcome.result.to_string(),
        None => "SUCCESS".into(),
    };
    fields.put("evt.res", json!(res));
    let mut category = None;
    let target = match &a.action.target {
        Target::File { path, category: c, .. } => {
            category = c.clone();
            let path = path.text();
            fields.put("fd.name", json!(path));
            path.map(|p| format!("file={p}"))
        }
        Target::Address { addr, .. } => {
            fields.put("fd.name", json!(addr));
            if let Ok(addr) = addr.parse::<SocketAddr>() {
                // The connecting side is the client, so the remote end is also the server.
                for (ip, port) in [("fd.rip", "fd.rport"), ("fd.sip", "fd.sport")] {
                    fields.put(ip, json!(addr.ip().to_string()));
                    fields.put(port, json!(addr.port()));
                }
            }
            Some(format!("connection={addr}"))
        }
        Target::Process { target_pid, via, path } => {
            fields.put("premain.action.target_pid", json!(target_pid));
            fields.put("premain.action.via", json!(via));
            if let Some(path) = path {
                fields.put("fd.name", json!(path.text()));
            }
            Some(format!("target_pid={target_pid}"))
        }
        Target::Uring { opcode } => {
            fields.put("premain.action.opcode", json!(opcode));
            Some(format!("io_uring={opcode}"))
        }
        Target::Socket { family, socket_type, protocol } => {
            fields.put("premain.action.family", json!(family));
            fields.put("premain.action.socket_type", json!(socket_type));
            fields.put("premain.action.protocol", json!(protocol));
            Some(format!("socket={family}/{socket_type}"))
        }
        Target::Name { path, old, syscall, category: c } => {
            category = c.clone();
            let path = path.text();
            fields.put("fd.name", json!(path));
            fields.put("premain.action.old", json!(old.text()));
            fields.put("premain.action.syscall", json!(syscall));
            path.map(|p| format!("file={p}"))
        }
        Target::Program { path, argv } => {
            let path = path.text();
            fields.put("premain.action.path", json!(path));
            fields.put("premain.action.argv", json!(argv.args().collect::<Vec<_>>().join(" ")));
            fields.put("premain.action.argv_redacted", json!(argv.redacted().then_some(true)));
            path.map(|p| format!("program={p}"))
        }
    };

    if let Some(container) = &a.container {
        fields.put("container.id", json!(container.id));
        fields.put("container.type", json!(container.runtime));
    }
    if let Some(k8s) = &a.kubernetes {
        fields.put("k8s.ns.name", json!(k8s.namespace));
        fields.put("k8s.pod.name", json!(k8s.pod));
        fields.put("k8s.pod.uid", json!(k8s.pod_uid));
    }

    fields.put("premain.alert_id", json!(a.id));
    fields.put("premain.rule", json!(a.rule));
    fields.put("premain.severity", json!(a.severity));
    fields.put("premain.phase", json!(a.phase));
    fields.put("premain.phase_basis", json!(a.phase_basis));
    fields.put("premain.count", json!(a.count));
    fields.put("premain.action.type", json!(a.action.kind));
    fields.put("premain.action.category", json!(category));
    fields.put("premain.culprit.kind", json!(culprit.kind));
    fields.put("premain.culprit.party", json!(culprit.party));
    fields.put("premain.culprit.path", json!(culprit.path.text()));
    fields.put("premain.culprit.module", json!(culprit.module));
    fields.put("premain.culprit.distribution", json!(culprit.distribution));
    fields.put("premain.culprit.version", json!(culprit.version));
    fields.put("premain.python", json!(process.python));
    fields.put("premain.cgroup_id", json!(process.cgroup_id));
    if a.deferred.is_some() {
        fields.put("premain.deferred", json!(true));
    }
    if let Some(frame) = &culprit.planted_frame {
        fields.put("premain.culprit.planted_frame.function", json!(frame.function));
        fields.put("premain.culprit.planted_frame.file", json!(frame.file));
        fields.put("premain.culprit.planted_frame.line", json!(frame.line));
    }
    if let Some(origin) = &a.inherited_from {
        fields.put("premain.inherited_from.pid", json!(origin.pid));
        fields.put("premain.inherited_from.exe", json!(origin.exe.text()));
    }

    let time = falco_time(Some(&a.time));
    let by = match (&culprit.distribution, &culprit.module, culprit.path.text()) {
        (Some(dist), _, _) => match &culprit.version {
            Some(version) => format!("distribution {dist} {version}"),
            None => format!("distribution {dist}"),
        },
        (None, Some(module), _) => format!("module {module}"),
        (None, None, Some(path)) => path,
        (None, None, None) => culprit.kind.as_str().to_owned(),
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
    let rule = rule_name(a.rule);
    let output = format!("{}: {priority} {rule} by {by} ({})", clock(&time), detail.join(" "));
    json!({
        "time": time,
        "rule": rule,
        "priority": priority,
        "source": SOURCE,
        "hostname": host(&a.node, hostname),
        "output": output,
        "output_fields": Value::Object(fields.0),
        "tags": ["premain", "python", "supply_chain", tactic(a.rule)],
    })
}

fn loss(record: &Loss, hostname: &str) -> Value {
    let mut fields = Fields::default();
    fields.put("premain.kind", json!("loss"));
    fields.put("premain.hook", json!(record.hook));
    fields.put("premain.stage", json!(record.stage));
    fields.put("premain.reason", json!(record.reason));
    fields.put("premain.sink", json!(record.sink));
    fields.put("premain.count", json!(record.count));
    fields.put("premain.total", json!(record.total));
    let mut detail = vec![
        format!("count={}", record.count),
        format!("hook={}", record.hook),
        format!("stage={}", record.stage),
    ];
    detail.push(format!("reason={}", record.reason));
    if let Some(sink) = &record.sink {
        detail.push(format!("sink={sink}"));
    }
    let time = falco_time(Some(&record.time));
    json!({
        "time": time,
        "rule": LOSS_RULE,
        "priority": "Warning",
        "source": SOURCE,
        "hostname": host("", hostname),
        "output": format!("{}: Warning {LOSS_RULE} ({})", clock(&time), detail.join(" ")),
        "output_fields": Value::Object(fields.0),
        "tags": ["premain", "loss"],
    })
}

/// `output_fields` without nulls.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, key: &str, value: Value) {
        if !value.is_null() {
            self.0.insert(key.to_owned(), value);
        }
    }
}

fn host(node: &str, hostname: &str) -> String {
    if hostname.is_empty() { node.to_owned() } else { hostname.to_owned() }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// RFC 3339 with nanoseconds, as Falco writes `time`: the record's own time (premain keeps
/// microseconds) widened, or now.
fn falco_time(time: Option<&str>) -> String {
    let (text, nanos) = match time {
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        alert::{ContainerView, KubernetesView},
        output::{
            json::{Argv, Outcome, Text},
            redact::Redactor,
            sink::test_support::alert,
        },
    };

    #[test]
    fn an_alert_in_falco_form() {
        let mut record = alert(7);
        record.container = Some(ContainerView { id: "0123456789ab".into(), runtime: "containerd" });
        record.kubernetes = Some(KubernetesView {
            pod_uid: "u-1".into(),
            pod: Some("web-0".into()),
            namespace: Some("shop".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
        });
        let e = envelope(&Record::Alert(record), "node-1");
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
        assert!(f.get("premain.process.cmdline_redacted").is_none(), "nothing was redacted");
        let output = e["output"].as_str().unwrap();
        assert!(output.starts_with("12:00:00.123456000: Critical Pre-main credential read by distribution evil-pkg 1.0 (file=/home/u/.netrc "), "{output}");
        assert!(output.contains("k8s.pod.name=web-0"), "{output}");
        assert!(!output.contains('\n'));
    }

    #[test]
    fn a_deferred_alert_says_so_and_names_the_planted_frame() {
        let mut record = alert(2);
        record.deferred = Some(true);
        record.culprit.planted_frame = Some(crate::alert::PlantedFrameView {
            function: "report_crash".into(),
            file: "/site-packages/evil.py".into(),
            line: Some(12),
        });
        let e = envelope(&Record::Alert(record), "node-1");
        let f = &e["output_fields"];
        assert_eq!(f["premain.deferred"], true);
        assert_eq!(f["premain.culprit.planted_frame.function"], "report_crash");
        assert_eq!(f["premain.culprit.planted_frame.file"], "/site-packages/evil.py");
        assert_eq!(f["premain.culprit.planted_frame.line"], 12);
        assert!(envelope(&Record::Alert(alert(3)), "n")["output_fields"].get("premain.deferred").is_none());
    }

    #[test]
    fn a_connect_names_the_remote_end() {
        let mut record = alert(1);
        record.rule = RuleId::NetworkConnect;
        record.severity = Severity::High;
        record.action.kind = ActionKind::Connect;
        record.action.target = Target::Address {
            addr: "[2001:db8::1]:443".into(),
            family: "inet6",
            port: Some(443),
            requested: None,
            destination_rewritten: None,
        };
        record.action.outcome = Outcome::of(-111);
        let e = envelope(&Record::Alert(record), "");
        assert_eq!(e["priority"], "Error");
        assert_eq!(e["hostname"], "node-from-record", "the record's node when no hostname is given");
        let f = &e["output_fields"];
        assert_eq!((&f["fd.rip"], &f["fd.rport"]), (&json!("2001:db8::1"), &json!(443)));
        assert_eq!((&f["fd.sip"], &f["fd.sport"]), (&json!("2001:db8::1"), &json!(443)));
        assert_eq!(f["evt.res"], "ECONNREFUSED");
        assert_eq!(f["evt.type"], "connect");
    }

    #[test]
    fn secrets_leave_neither_the_fields_nor_the_output_line() {
        let argv = |a: &[&str]| a.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let mut record = alert(2);
        record.process.cmdline =
            Argv::new("cmdline", &argv(&["python3", "app.py", "--db-password=FAKEpw"]), &Redactor::default());
        record.rule = RuleId::ProgramExec;
        record.action.kind = ActionKind::Exec;
        record.action.target = Target::Program {
            path: Text::new("path", b"/usr/bin/curl"),
            argv: Argv::new(
                "argv",
                &argv(&["curl", "-H", "Authorization: Bearer FAKEtok"]),
                &Redactor::default(),
            ),
        };
        let e = envelope(&Record::Alert(record), "node-1");
        assert!(!e.to_string().contains("FAKE"), "{e}");
        let f = &e["output_fields"];
        assert_eq!(f["proc.cmdline"], "python3 app.py --db-password=***REDACTED***");
        assert_eq!(f["premain.process.cmdline_redacted"], true);
        assert_eq!(f["premain.action.argv"], "curl -H Authorization: ***REDACTED***");
        assert_eq!(f["premain.action.argv_redacted"], true);
        let output = e["output"].as_str().unwrap();
        assert!(output.contains("proc.cmdline=python3 app.py --db-password=***REDACTED***"), "{output}");
    }

    #[test]
    fn a_loss_record_in_falco_form() {
        let record = Loss {
            kind: crate::alert::Kind,
            time: "2026-03-01T12:00:01.000002Z".into(),
            hook: "open",
            stage: "kernel",
            reason: "ring_buffer_full",
            sink: None,
            count: 5,
            total: Some(9),
        };
        let e = envelope(&Record::Loss(record), "node-1");
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
    fn times_and_priorities() {
        let time = falco_time(None);
        assert_eq!(time.len(), "2026-03-01T12:00:01.000002000Z".len(), "{time}");
        assert_eq!(falco_time(Some("2026-03-01T12:00:01Z")), "2026-03-01T12:00:01.000000000Z");
        assert_eq!(priority(Severity::Info), "Informational");
        assert_eq!(priority(Severity::Low), "Notice");
        assert_eq!(priority(Severity::Medium), "Warning");
    }
}
