//! Test fixtures: temporary directories, sample records, a scripted HTTP receiver.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::{
    alert::{ActionKind, ActionView, Alert, CulpritView, Kind, ProcessView, Record, SCHEMA, Target},
    detect::{RuleId, Severity},
    ops::config::{Format, Fsync, Sink},
    output::{
        json::{Argv, Capture, Outcome, Text},
        redact::Redactor,
    },
    phase::{Basis, CulpritKind, Party, Phase},
};

/// A directory under the system temp dir, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("premain-sink-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An alert, numbered by `seq` (its id is `a-<seq>`).
pub(super) fn alert(seq: u64) -> Box<Alert> {
    Box::new(Alert {
        kind: Kind,
        schema: SCHEMA,
        id: format!("a-{seq}"),
        time: "2026-03-01T12:00:00.123456Z".into(),
        node: "node-from-record".into(),
        rule: RuleId::CredentialRead,
        severity: Severity::Critical,
        phase: Phase::Startup,
        phase_basis: Basis::Probes,
        deferred: None,
        culprit: CulpritView {
            kind: CulpritKind::Pth,
            party: Party::ThirdParty,
            path: Text::new("path", b"/site-packages/evil.pth"),
            module: Some("evil".into()),
            module_path: None,
            outermost_module: None,
            distribution: Some("evil-pkg".into()),
            version: Some("1.0".into()),
            filename_unreadable: None,
            filename_mismatch: None,
            claimed_filename: None,
            outermost_claimed_filename: None,
            hook: None,
            backend: None,
            installer: None,
            source_dir: None,
            planted_frame: None,
        },
        process: ProcessView {
            pid: 4242,
            tid: 4242,
            ppid: 1,
            exe: Text::new("exe", b"/usr/bin/python3.12"),
            cmdline: Argv::new(
                "cmdline",
                &[b"python3".to_vec(), b"-c".to_vec(), b"import x".to_vec()],
                &Redactor::default(),
            ),
            cmdline_truncated: None,
            uid: 1000,
            gid: 1000,
            comm: Text::new("comm", b"python3"),
            python: Some("3.12".into()),
            cgroup_id: 77,
            start_time: None,
            ancestry: Vec::new(),
        },
        action: ActionView {
            kind: ActionKind::Open,
            target: Target::File {
                path: Text::new("path", b"/home/u/.netrc"),
                requested: None,
                path_resolution: "kernel",
                syscall: "openat",
                dev: Some("254:0".into()),
                ino: Some(42),
                alias_of: None,
                flags: 0,
                category: Some("netrc".into()),
            },
            outcome: Outcome::of(3),
            capture: Capture::default(),
        },
        stack: Vec::new(),
        stack_truncated: None,
        stack_error: None,
        stack_inherited_from: None,
        inherited_from: None,
        container: None,
        kubernetes: None,
        enforcement: None,
        count: 1,
        folded: None,
        window_seconds: None,
    })
}

/// [`alert`] as a record to publish.
pub(super) fn record(seq: u64) -> Arc<Record> {
    Arc::new(Record::Alert(alert(seq)))
}

/// [`alert`] as the JSON a sink writes.
pub(super) fn alert_json(seq: u64) -> Value {
    serde_json::to_value(Record::Alert(alert(seq))).unwrap()
}

/// The `seq` of an alert made by [`alert`], from its id.
pub(super) fn seq(record: &Value) -> u64 {
    record["id"]
        .as_str()
        .and_then(|id| id.strip_prefix("a-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seq in {record}"))
}

pub(super) fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{}: last line cut", path.display());
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect()
}

pub(super) fn file_sink(path: &Path, max_bytes: u64, keep: u32) -> Sink {
    Sink::File {
        name: None,
        format: Format::Premain,
        path: path.to_owned(),
        max_bytes,
        keep,
        fsync: Fsync::Interval,
        fsync_interval_ms: 1000,
    }
}

/// A webhook sink with quick retries (the batch wait and timeout are the test's).
pub(super) fn webhook_sink(url: &str, spool: &Path, batch_max: usize, spool_max_bytes: u64) -> Sink {
    Sink::Webhook {
        name: Some("hook".into()),
        format: Format::Premain,
        url: url.to_owned(),
        headers: BTreeMap::from([("Authorization".to_owned(), "Bearer t0ken".to_owned())]),
        batch_max,
        batch_wait_ms: 20,
        timeout_ms: 300,
        backoff_initial_ms: 5,
        backoff_max_ms: 40,
        spool_dir: spool.to_owned(),
        spool_max_bytes,
    }
}

/// Polls `done` until it holds; the bound only turns a hang into a failure.
pub(super) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(tokio::time::Instant::now() < give_up, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How the receiver answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    Status(u16),
    /// Reads the request, then never answers.
    Stall,
    /// Drops the connection without an answer.
    Reset,
}

type Script = Box<dyn FnMut(usize) -> Reply + Send>;

#[derive(Default)]
pub(super) struct Received {
    /// Bodies answered with 2xx, each parsed into its records.
    pub(super) accepted: Vec<Vec<Value>>,
    /// Bodies read and never answered.
    pub(super) stalled: Vec<Vec<Value>>,
    pub(super) requests: usize,
    /// Request headers seen, lower-case names.
    pub(super) headers: Vec<(String, String)>,
}

/// An HTTP/1.1 receiver on 127.0.0.1 whose answer to the n-th request comes from a script.
pub(super) struct Receiver {
    pub(super) url: String,
    pub(super) received: Arc<Mutex<Received>>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub(super) async fn start(script: impl FnMut(usize) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let (state, answers) = (Arc::clone(&received), Arc::clone(&script));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, answers) = (Arc::clone(&state), Arc::clone(&answers));
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (state, answers) = (Arc::clone(&state), Arc::clone(&answers));
                    async move { answer(request, &state, &answers).await }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url: format!("http://{addr}/alerts"), received, script }
    }

    pub(super) fn set_script(&self, script: impl FnMut(usize) -> Reply + Send + 'static) {
        *self.script.lock().unwrap() = Box::new(script);
    }

    /// Every accepted record, in arrival order.
    pub(super) fn records(&self) -> Vec<Value> {
        self.received.lock().unwrap().accepted.iter().flatten().cloned().collect()
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn answer(
    request: Request<hyper::body::Incoming>,
    state: &Mutex<Received>,
    script: &Mutex<Script>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = request.into_body().collect().await.map_err(|_| Dropped)?.to_bytes();
    let records = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(records)) => records,
        Ok(record) => vec![record],
        Err(e) => panic!("receiver got a body that is not JSON ({e}): {}", String::from_utf8_lossy(&body)),
    };
    let reply = {
        let mut state = state.lock().unwrap();
        let reply = (script.lock().unwrap())(state.requests);
        state.requests += 1;
        state.headers = headers;
        match reply {
            Reply::Status(code) if (200..300).contains(&code) => state.accepted.push(records),
            Reply::Stall => state.stalled.push(records),
            Reply::Status(_) | Reply::Reset => {}
        }
        reply
    };
    match reply {
        Reply::Status(code) => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
            *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
            Ok(response)
        }
        Reply::Stall => std::future::pending::<Result<_, Infallible>>().await.map_err(|e| match e {}),
        Reply::Reset => Err(Dropped),
    }
}
