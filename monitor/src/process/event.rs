//! Events of tracked processes and their JSON form (`premain run --events`).

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use monitor_common::{FLAG_ARGS_TRUNCATED, FLAG_PATH_TRUNCATED, FLAG_READ_FAILED};
use serde_json::{Map, Value, json};

use crate::{
    k8s::Container,
    kernel::decode::{Header, Mark},
    kernel::sockaddr::SockAddr,
    process::table::{Process, Resolution},
};

#[derive(Debug, Clone)]
pub enum Action {
    Open {
        path: PathBuf,
        resolution: Resolution,
        dirfd: i32,
        flags: u32,
        mode: u32,
        result: i64,
    },
    Connect {
        addr: Vec<u8>,
        fd: i32,
        result: i64,
    },
    /// A datagram (or message) sent to an explicit address.
    Send {
        addr: Vec<u8>,
        fd: i32,
        result: i64,
    },
    /// An exec by a tracked process; `image` describes the new program when it succeeded.
    Exec {
        path: PathBuf,
        argv: Vec<Vec<u8>>,
        result: i64,
        image: Option<Box<ProcessInfo>>,
    },
    /// A process starts a tracked image without having been tracked before (not an action
    /// of a tracked process; the phase engine needs it).
    Image {
        path: PathBuf,
        argv: Vec<Vec<u8>>,
    },
    Fork {
        child_pid: u32,
        child_tid: u32,
        thread: bool,
    },
    Exit {
        status: i32,
    },
    Marker(Mark),
}

impl Action {
    pub fn hook(&self) -> &'static str {
        match self {
            Self::Open { .. } => "open",
            Self::Connect { .. } => "connect",
            Self::Send { .. } => "send",
            Self::Exec { .. } => "exec",
            Self::Image { .. } => "image",
            Self::Marker(_) => "python",
            Self::Fork { .. } => "fork",
            Self::Exit { .. } => "exit",
        }
    }
}

/// What is known of the acting process when the event happened.
#[derive(Debug, Clone, Default)]
pub struct ProcessInfo {
    pub ppid: u32,
    pub exe: Option<PathBuf>,
    pub argv: Vec<Vec<u8>>,
    pub argv_truncated: bool,
    /// `major.minor` of the CPython the process runs, when it runs one.
    pub python: Option<String>,
    /// Its interpreter's start-up probes are attached: its phases come from them.
    pub probed: bool,
    pub preexisting: bool,
    pub tracking: &'static str,
    pub cwd: Option<PathBuf>,
    /// `CLOCK_MONOTONIC` time its current image started (0 when unknown).
    pub started_ns: u64,
    pub container: Option<Container>,
}

impl ProcessInfo {
    pub fn of(process: Option<&Process>) -> Self {
        let Some(p) = process else {
            return Self { tracking: "unknown", ..Self::default() };
        };
        Self {
            ppid: p.ppid,
            probed: !p.late && p.python.as_ref().is_some_and(|i| i.probed),
            cwd: p.cwd.clone(),
            started_ns: p.started_ns,
            container: p.container.clone(),
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            argv_truncated: p.argv_truncated,
            python: p.python.as_ref().map(|i| match i.version {
                Some((major, minor)) => format!("{major}.{minor}"),
                None => "unknown".to_owned(),
            }),
            preexisting: p.preexisting,
            tracking: if p.is_python() {
                "python"
            } else if p.is_descendant() {
                "descendant"
            } else {
                "unknown"
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub header: Header,
    pub process: ProcessInfo,
    pub action: Action,
}

/// Converts kernel `CLOCK_MONOTONIC` stamps into wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    realtime_minus_monotonic_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        Self { realtime_minus_monotonic_ns: real - mono }
    }

    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        let ns = (i128::from(ktime_ns) + self.realtime_minus_monotonic_ns).max(0);
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// RFC 3339 UTC with microseconds, without a date-time dependency.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

pub fn errno_name(errno: i64) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        26 => "ETXTBSY",
        30 => "EROFS",
        36 => "ENAMETOOLONG",
        40 => "ELOOP",
        88 => "ENOTSOCK",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        104 => "ECONNRESET",
        106 => "EISCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

/// A byte string as JSON text. Invalid UTF-8 is replaced (U+FFFD) in the string, so callers
/// also add the exact bytes in hex under `<field>_hex` (see [`put_bytes`]).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn put_bytes(obj: &mut Map<String, Value>, field: &str, bytes: &[u8]) {
    obj.insert(field.to_owned(), Value::String(text(bytes)));
    if std::str::from_utf8(bytes).is_err() {
        obj.insert(format!("{field}_hex"), Value::String(hex(bytes)));
    }
}

/// An argv in the form of [`put_bytes`]: when any entry is not UTF-8, `<field>_hex` lists the
/// exact bytes of every entry.
pub(crate) fn put_argv(obj: &mut Map<String, Value>, field: &str, argv: &[Vec<u8>]) {
    obj.insert(field.to_owned(), argv_json(argv));
    if argv.iter().any(|a| std::str::from_utf8(a).is_err()) {
        obj.insert(
            format!("{field}_hex"),
            Value::Array(argv.iter().map(|a| Value::String(hex(a))).collect()),
        );
    }
}

pub(crate) fn put_result(obj: &mut Map<String, Value>, result: i64) {
    obj.insert("result".into(), json!(result));
    if result < 0 {
        obj.insert("error".into(), Value::String(errno_name(-result)));
    }
}

/// A path, or `null`, in the form of [`put_bytes`].
pub(crate) fn put_path(obj: &mut Map<String, Value>, field: &str, path: Option<&std::path::Path>) {
    use std::os::unix::ffi::OsStrExt as _;
    match path {
        Some(path) => put_bytes(obj, field, path.as_os_str().as_bytes()),
        None => {
            obj.insert(field.to_owned(), Value::Null);
        }
    }
}

fn argv_json(argv: &[Vec<u8>]) -> Value {
    Value::Array(argv.iter().map(|a| Value::String(text(a))).collect())
}

fn access_mode(flags: u32) -> &'static str {
    match flags & 3 {
        0 => "read",
        1 => "write",
        _ => "read-write",
    }
}

impl Event {
    pub fn to_json(&self, clock: &Clock) -> Value {
        use std::os::unix::ffi::OsStrExt as _;
        let h = &self.header;
        let mut obj = Map::new();
        obj.insert("kind".into(), json!("event"));
        obj.insert("hook".into(), json!(self.action.hook()));
        obj.insert("time".into(), json!(rfc3339(clock.wall(h.ktime_ns))));
        obj.insert("ktime_ns".into(), json!(h.ktime_ns));
        obj.insert("pid".into(), json!(h.pid));
        obj.insert("tid".into(), json!(h.tid));
        obj.insert("ppid".into(), json!(h.ppid));
        obj.insert("uid".into(), json!(h.uid));
        obj.insert("gid".into(), json!(h.gid));
        obj.insert("cgroup_id".into(), json!(h.cgroup_id));
        put_bytes(&mut obj, "comm", &h.comm);
        put_path(&mut obj, "exe", self.process.exe.as_deref());
        obj.insert("python".into(), json!(self.process.python));
        obj.insert("tracking".into(), json!(self.process.tracking));
        obj.insert("preexisting".into(), json!(self.process.preexisting));
        match &self.action {
            Action::Open { path, resolution, dirfd, flags, mode, result } => {
                put_bytes(&mut obj, "path", path.as_os_str().as_bytes());
                obj.insert("path_resolution".into(), json!(resolution.as_str()));
                obj.insert("dirfd".into(), json!(dirfd));
                obj.insert("flags".into(), json!(flags));
                obj.insert("access".into(), json!(access_mode(*flags)));
                obj.insert("mode".into(), json!(mode));
                put_result(&mut obj, *result);
            }
            Action::Connect { addr, fd, result } | Action::Send { addr, fd, result } => {
                let parsed = SockAddr::parse(addr);
                obj.insert("addr".into(), json!(parsed.render()));
                obj.insert("family".into(), json!(parsed.family()));
                obj.insert("port".into(), json!(parsed.port()));
                obj.insert("fd".into(), json!(fd));
                put_result(&mut obj, *result);
            }
            Action::Image { path, argv } => {
                put_bytes(&mut obj, "path", path.as_os_str().as_bytes());
                put_argv(&mut obj, "argv", argv);
            }
            Action::Marker(mark) => match mark {
                Mark::Main { how, target } => {
                    obj.insert("marker".into(), json!("main"));
                    obj.insert("how".into(), json!(how));
                    put_bytes(&mut obj, "target", target);
                }
                Mark::EvalEnter { filename } => {
                    obj.insert("marker".into(), json!("eval_enter"));
                    put_bytes(&mut obj, "filename", filename);
                }
                Mark::RunningMain => {
                    obj.insert("marker".into(), json!("running_main"));
                }
                Mark::EvalExit => {
                    obj.insert("marker".into(), json!("eval_exit"));
                }
            },
            Action::Exec { path, argv, result, .. } => {
                put_bytes(&mut obj, "path", path.as_os_str().as_bytes());
                put_argv(&mut obj, "argv", argv);
                put_result(&mut obj, *result);
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
        put_capture_flags(&mut obj, h.flags);
        Value::Object(obj)
    }
}

/// What the kernel could not capture whole: `truncated` (the fields cut) and `read_failed`.
pub(crate) fn put_capture_flags(obj: &mut Map<String, Value>, flags: u32) {
    let mut truncated = Vec::new();
    if flags & FLAG_PATH_TRUNCATED != 0 {
        truncated.push("path");
    }
    if flags & FLAG_ARGS_TRUNCATED != 0 {
        truncated.push("argv");
    }
    if !truncated.is_empty() {
        obj.insert("truncated".into(), json!(truncated));
    }
    if flags & FLAG_READ_FAILED != 0 {
        obj.insert("read_failed".into(), json!(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_micros(951_782_400_000_001)),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_305_599)), "2026-11-21T23:59:59.000000Z");
    }

    #[test]
    fn non_utf8_bytes_keep_their_exact_form() {
        let mut obj = Map::new();
        put_bytes(&mut obj, "path", b"/tmp/\xff\n\"x");
        assert_eq!(obj["path_hex"], json!("2f746d702fff0a2278"));
        let line = serde_json::to_string(&obj).unwrap();
        assert!(!line.contains('\n'));
        let mut obj = Map::new();
        put_argv(&mut obj, "argv", &[b"/bin/x".to_vec(), b"\xff".to_vec()]);
        assert_eq!(obj["argv"], json!(["/bin/x", "\u{fffd}"]));
        assert_eq!(obj["argv_hex"], json!(["2f62696e2f78", "ff"]));
        let mut obj = Map::new();
        put_argv(&mut obj, "argv", &[b"ok".to_vec()]);
        assert!(obj.get("argv_hex").is_none());
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(errno_name(9999), "errno 9999");
    }
}
