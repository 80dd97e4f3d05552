//! `premain run --events`: every event of a tracked process as one JSON line.

use std::os::unix::ffi::OsStrExt as _;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    detect::{socket_family, socket_type},
    kernel::{decode::Mark, sockaddr::SockAddr},
    output::{
        json::{Argv, Capture, Outcome, Text},
        redact::Redactor,
        time::{Clock, rfc3339},
    },
    phase::Phase,
    process::event::{Action, Event, open_syscall, uring_opcode},
};

/// The JSON line of `event`, which happened in `phase`; `redactor` hides secrets in its
/// command line.
pub(crate) fn event_line(event: &Event, phase: Phase, clock: &Clock, redactor: &Redactor) -> Value {
    let h = &event.header;
    let mut obj = Map::new();
    obj.insert("kind".into(), json!("event"));
    obj.insert("hook".into(), json!(event.action.hook()));
    obj.insert("time".into(), json!(rfc3339(clock.wall(h.ktime_ns))));
    obj.insert("ktime_ns".into(), json!(h.ktime_ns));
    obj.insert("pid".into(), json!(h.pid));
    obj.insert("tid".into(), json!(h.tid));
    obj.insert("ppid".into(), json!(h.ppid));
    obj.insert("uid".into(), json!(h.uid));
    obj.insert("gid".into(), json!(h.gid));
    obj.insert("cgroup_id".into(), json!(h.cgroup_id));
    flat(&mut obj, Text::new("comm", &h.comm));
    flat(&mut obj, Text::path("exe", event.process.exe.as_deref()));
    obj.insert("python".into(), json!(event.process.python));
    obj.insert("tracking".into(), json!(event.process.tracking));
    obj.insert("preexisting".into(), json!(event.process.preexisting));
    match &event.action {
        Action::Open { path, requested, resolution, dirfd, flags, mode, result, syscall, file, alias_of } => {
            flat(&mut obj, Text::new("path", path.as_os_str().as_bytes()));
            if let Some(requested) = requested {
                flat(&mut obj, Text::new("requested", requested.as_os_str().as_bytes()));
            }
            obj.insert("syscall".into(), json!(open_syscall(*syscall)));
            if let Some(file) = file {
                obj.insert("dev".into(), json!(file.dev_text()));
                obj.insert("ino".into(), json!(file.ino));
                obj.insert("nlink".into(), json!(file.nlink));
            }
            if let Some(alias) = alias_of {
                flat(&mut obj, Text::new("alias_of", alias.as_os_str().as_bytes()));
            }
            obj.insert("path_resolution".into(), json!(resolution.as_str()));
            obj.insert("dirfd".into(), json!(dirfd));
            obj.insert("flags".into(), json!(flags));
            obj.insert("access".into(), json!(access_mode(*flags)));
            obj.insert("mode".into(), json!(mode));
            flat(&mut obj, Outcome::of(*result));
        }
        Action::Connect { addr, requested, fd, result } | Action::Send { addr, requested, fd, result } => {
            let parsed = SockAddr::parse(addr);
            obj.insert("addr".into(), json!(parsed.render()));
            obj.insert("family".into(), json!(parsed.family()));
            obj.insert("port".into(), json!(parsed.port()));
            if requested.is_some() {
                obj.insert("destination_rewritten".into(), json!(true));
                if let Some(text) = crate::alert::requested_addr(requested.as_deref()) {
                    obj.insert("requested".into(), json!(text));
                }
            }
            obj.insert("fd".into(), json!(fd));
            flat(&mut obj, Outcome::of(*result));
        }
        Action::Image { path, argv } => {
            flat(&mut obj, Text::new("path", path.as_os_str().as_bytes()));
            flat(&mut obj, Argv::new("argv", argv, redactor));
        }
        Action::Marker(mark) => match mark {
            Mark::Main { how, target } => {
                obj.insert("marker".into(), json!("main"));
                obj.insert("how".into(), json!(how));
                // What `-c` runs is part of the command line.
                flat(&mut obj, Text::command("target", target, redactor));
            }
            Mark::EvalEnter { filename, .. } => {
                obj.insert("marker".into(), json!("eval_enter"));
                match filename {
                    Some(filename) => flat(&mut obj, Text::new("filename", filename)),
                    // Unreadable (the line also says `read_failed`).
                    None => drop(obj.insert("filename".into(), Value::Null)),
                }
            }
            Mark::RunningMain => {
                obj.insert("marker".into(), json!("running_main"));
            }
            Mark::EvalExit => {
                obj.insert("marker".into(), json!("eval_exit"));
            }
        },
        Action::Exec { path, argv, result, .. } => {
            flat(&mut obj, Text::new("path", path.as_os_str().as_bytes()));
            flat(&mut obj, Argv::new("argv", argv, redactor));
            flat(&mut obj, Outcome::of(*result));
        }
        Action::Memory { target_pid, via, path, result } => {
            obj.insert("target_pid".into(), json!(target_pid));
            obj.insert("via".into(), json!(via));
            if let Some(path) = path {
                flat(&mut obj, Text::new("path", path.as_os_str().as_bytes()));
            }
            flat(&mut obj, Outcome::of(*result));
        }
        Action::Socket { family, sock_type, protocol, result } => {
            obj.insert("family".into(), json!(socket_family(*family)));
            obj.insert("socket_type".into(), json!(socket_type(*sock_type)));
            obj.insert("protocol".into(), json!(protocol));
            flat(&mut obj, Outcome::of(*result));
        }
        Action::Uring { opcode } => {
            obj.insert("opcode".into(), json!(uring_opcode(*opcode)));
        }
        Action::Name { op, path, old, syscall, result } => {
            obj.insert("op".into(), json!(op));
            flat(&mut obj, Text::new("path", path.as_os_str().as_bytes()));
            flat(&mut obj, Text::new("old", old.as_os_str().as_bytes()));
            obj.insert("syscall".into(), json!(syscall));
            flat(&mut obj, Outcome::of(*result));
        }
        Action::Fork { child_pid, child_tid, thread } => {
            obj.insert("child_pid".into(), json!(child_pid));
            obj.insert("child_tid".into(), json!(child_tid));
            obj.insert("thread".into(), json!(thread));
        }
        Action::Exit { status } => {
            obj.insert("exit_code".into(), json!((status >> 8) & 0xff));
            obj.insert("signal".into(), json!(status & 0x7f));
        }
    }
    flat(&mut obj, Capture::of(h.flags));
    obj.insert("phase".into(), json!(phase.as_str()));
    Value::Object(obj)
}

/// Adds the keys `part` serializes to.
fn flat(obj: &mut Map<String, Value>, part: impl Serialize) {
    if let Ok(Value::Object(fields)) = serde_json::to_value(part) {
        obj.extend(fields);
    }
}

pub(crate) fn access_mode(flags: u32) -> &'static str {
    match flags & 3 {
        0 => "read",
        1 => "write",
        _ => "read-write",
    }
}
