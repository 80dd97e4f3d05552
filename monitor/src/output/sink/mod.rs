//! Alert delivery: every record the daemon publishes goes to each configured sink (stdout, a
//! rotating file, a webhook with an on-disk spool) through a bounded memory queue of its own,
//! so one slow sink never holds back the daemon or the other sinks.
//!
//! Nothing is dropped silently: a record that does not fit a sink's queue, or that a sink has
//! to give up on, is counted in `premain_events_lost_total{hook="alert"}`, and the sink's
//! receiver is told by an in-band loss record
//! (`{"kind":"loss","hook":"alert","stage":..,"sink":..,"reason":..,"count":..}`).

mod backoff;
mod falco;
mod file;
mod spool;
mod stdout;
#[cfg(test)]
mod test_support;
mod webhook;
mod writer;

use std::{
    io,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use prometheus::{IntCounter, IntGauge};
use serde_json::Value;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, timeout_at},
};

use crate::{
    alert::{Kind, Loss, Record},
    ops::{
        config::{self, Format},
        metrics::{Metrics, stage},
    },
    output::time::rfc3339,
};

/// Hook label of losses on the alert path.
const HOOK: &str = "alert";
/// Records a sink takes from its queue at once.
const BATCH: usize = 256;

/// Why the sinks could not start; one line naming the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink:?}: cannot open {}: {source}", path.display())]
    Open {
        sink: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sink {sink:?}: bad header {header:?}: {reason}")]
    Header { sink: String, header: String, reason: String },
    #[error("sink {sink:?}: cannot set up the HTTP client: {reason}")]
    Client { sink: String, reason: String },
}

/// The running sinks.
pub(crate) struct Sinks {
    sinks: Vec<Handle>,
    cancel: watch::Sender<bool>,
}

struct Handle {
    tx: mpsc::Sender<Arc<Record>>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What was left undelivered at shutdown, per sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShutdownReport {
    pub sinks: Vec<Leftover>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leftover {
    pub sink: String,
    /// Records given up when the deadline came (they were only in memory); counted as lost.
    pub lost: u64,
    /// Records still in a webhook's spool; they are delivered after the next start.
    pub spooled: u64,
}

impl ShutdownReport {
    /// Every sink delivered everything it was given.
    #[cfg(test)]
    pub(crate) fn is_complete(&self) -> bool {
        self.sinks.iter().all(|s| s.lost == 0 && s.spooled == 0)
    }
}

impl Sinks {
    /// Starts one tokio task per configured sink on the current runtime. Errors (cannot create
    /// the file's directory or open it, cannot create/read the spool dir, bad header value) are
    /// one-line, naming the sink.
    pub(crate) fn start(
        sinks: &[config::Sink],
        queue_capacity: usize,
        metrics: &Metrics,
        hostname: &str,
    ) -> Result<Self, SinkError> {
        let (cancel, _) = watch::channel(false);
        let mut handles = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let shared = Arc::new(Shared::new(sink, metrics, hostname));
            let (tx, rx) = mpsc::channel(queue_capacity.max(1));
            let stop = cancel.subscribe();
            let task = match sink {
                config::Sink::Stdout { .. } => {
                    tokio::spawn(writer::run(stdout::Stdout, rx, Arc::clone(&shared), stop))
                }
                config::Sink::File { path, max_bytes, keep, fsync, fsync_interval_ms, .. } => {
                    let interval = Duration::from_millis(*fsync_interval_ms);
                    let file = file::RotatingFile::open(path, *max_bytes, *keep, *fsync, interval).map_err(
                        |source| SinkError::Open { sink: shared.name.clone(), path: path.clone(), source },
                    )?;
                    tokio::spawn(writer::run(file, rx, Arc::clone(&shared), stop))
                }
                config::Sink::Webhook {
                    url,
                    headers,
                    batch_max,
                    batch_wait_ms,
                    timeout_ms,
                    backoff_initial_ms,
                    backoff_max_ms,
                    spool_dir,
                    spool_max_bytes,
                    ..
                } => {
                    let options = webhook::Options {
                        url,
                        headers,
                        batch_max: *batch_max,
                        batch_wait_ms: *batch_wait_ms,
                        timeout_ms: *timeout_ms,
                        backoff_initial_ms: *backoff_initial_ms,
                        backoff_max_ms: *backoff_max_ms,
                        spool_dir,
                        spool_max_bytes: *spool_max_bytes,
                    };
                    let (hook, spool) = webhook::Webhook::new(&options, Arc::clone(&shared))?;
                    tokio::spawn(hook.run(spool, rx, stop))
                }
            };
            handles.push(Handle { tx, shared, task });
        }
        Ok(Self { sinks: handles, cancel })
    }

    /// Queues one record (an alert or a loss record) for every sink.
    /// Never blocks or awaits. When a sink's queue is full the record is counted lost for that
    /// sink, and the sink writes a `queue_full` loss record with the aggregated count as soon
    /// as it takes from its queue again.
    pub(crate) fn publish(&self, record: Arc<Record>) {
        for sink in &self.sinks {
            let shared = &sink.shared;
            // Counted before sending: the sink may take the record before `try_send` returns.
            shared.queue_add(1);
            if let Err(err) = sink.tx.try_send(Arc::clone(&record)) {
                shared.queue_sub(1);
                shared.metrics.lose(HOOK, stage::USERSPACE_QUEUE, 1);
                match err {
                    mpsc::error::TrySendError::Full(_) => {
                        shared.overflow.fetch_add(1, Ordering::Relaxed);
                    }
                    mpsc::error::TrySendError::Closed(_) => {
                        if !shared.stopped.swap(true, Ordering::Relaxed) {
                            tracing::error!(sink = %shared.name, "sink has stopped; its records are lost");
                        }
                    }
                }
            }
        }
    }

    /// Closes the queues and waits until each sink has delivered what was queued, at most
    /// `deadline` overall. Returns per sink what was left undelivered (for a webhook: what is
    /// still in its spool, delivered on the next start).
    pub(crate) async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let hard = Instant::now() + deadline;
        // A slice of the deadline is kept for the sinks to stop and account for what is left.
        let soft = hard - (deadline / 5).min(Duration::from_secs(1));
        let Self { sinks, cancel } = self;
        let mut running: Vec<(Arc<Shared>, JoinHandle<()>, bool)> = sinks
            .into_iter()
            .map(|Handle { tx, shared, task }| {
                drop(tx);
                (shared, task, false)
            })
            .collect();
        for (_, task, finished) in &mut running {
            *finished = timeout_at(soft, task).await.is_ok();
        }
        cancel.send_replace(true);
        let mut report = ShutdownReport { sinks: Vec::with_capacity(running.len()) };
        for (shared, mut task, finished) in running {
            if !finished && timeout_at(hard, &mut task).await.is_err() {
                task.abort();
            }
            // What a stopped (or stuck) task still held in memory is lost; a task that stopped
            // on its own has already moved it to `abandoned`.
            let (queued, held) = (shared.queued.load(Ordering::Relaxed), shared.held.load(Ordering::Relaxed));
            for (stage, n) in [(stage::USERSPACE_QUEUE, queued), (stage::SINK, held)] {
                if n > 0 {
                    shared.metrics.lose(HOOK, stage, n);
                }
            }
            let lost = shared.abandoned.load(Ordering::Relaxed) + queued + held;
            let spooled = shared.spooled.load(Ordering::Relaxed);
            if lost > 0 {
                tracing::warn!(sink = %shared.name, records = lost, "records not delivered before the shutdown deadline were lost");
            }
            if spooled > 0 {
                tracing::warn!(sink = %shared.name, records = spooled, "records remain in the spool; they are sent after the next start");
            }
            report.sinks.push(Leftover { sink: shared.name.clone(), lost, spooled });
        }
        report
    }
}

/// One sink's state shared by `publish`, its task and `shutdown`.
struct Shared {
    name: String,
    format: Format,
    hostname: String,
    metrics: Metrics,
    queue_gauge: IntGauge,
    delivered: IntCounter,
    failures: IntCounter,
    /// Records in the memory queue.
    queued: AtomicU64,
    /// Records refused by the full queue and not yet announced by a loss record.
    overflow: AtomicU64,
    /// Lines taken from the queue and not yet written (or spooled).
    held: AtomicU64,
    /// Lines given up at shutdown (already counted lost).
    abandoned: AtomicU64,
    /// Webhook: undelivered records in the spool.
    spooled: AtomicU64,
    /// Its task has ended before shutdown (it panicked): said once.
    stopped: AtomicBool,
}

impl Shared {
    fn new(sink: &config::Sink, metrics: &Metrics, hostname: &str) -> Self {
        let name = sink.name().to_owned();
        Self {
            queue_gauge: metrics.sink_queue.with_label_values(&[&name]),
            delivered: metrics.delivered.with_label_values(&[&name]),
            failures: metrics.delivery_failures.with_label_values(&[&name]),
            format: sink.format(),
            hostname: hostname.to_owned(),
            metrics: metrics.clone(),
            queued: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            held: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            name,
        }
    }

    fn queue_add(&self, n: u64) {
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.queue_gauge.add(n as i64);
    }

    fn queue_sub(&self, n: u64) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.queue_gauge.sub(n as i64);
    }

    /// Encodes the records just taken from the queue (emptying `records`), followed by the
    /// loss record for those the full queue refused meanwhile. The lines count as held.
    fn take(&self, records: &mut Vec<Arc<Record>>) -> Vec<Vec<u8>> {
        self.queue_sub(records.len() as u64);
        let mut lines: Vec<Vec<u8>> = records.drain(..).map(|r| self.encode(&r)).collect();
        let overflow = self.overflow.swap(0, Ordering::Relaxed);
        if overflow > 0 {
            let loss = loss_record(&self.name, stage::USERSPACE_QUEUE, "queue_full", overflow);
            lines.push(self.encode(&Record::Loss(loss)));
        }
        self.held.fetch_add(lines.len() as u64, Ordering::Relaxed);
        lines
    }

    /// Held lines are done with: written, spooled or given up.
    fn release(&self, n: usize) {
        self.held.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// Held lines given up (at shutdown, or when the sink cannot write them).
    fn abandon(&self, n: usize) {
        if n > 0 {
            self.release(n);
            self.abandoned.fetch_add(n as u64, Ordering::Relaxed);
            self.metrics.lose(HOOK, stage::SINK, n as u64);
        }
    }

    /// Records still in the queue when the sink stops for good are lost.
    fn drain_lost(&self, rx: &mut mpsc::Receiver<Arc<Record>>) {
        rx.close();
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        if n > 0 {
            self.queue_sub(n);
            self.abandoned.fetch_add(n, Ordering::Relaxed);
            self.metrics.lose(HOOK, stage::USERSPACE_QUEUE, n);
        }
    }

    /// One line (newline-terminated) in this sink's format.
    fn encode(&self, record: &Record) -> Vec<u8> {
        // Serializing these types into a Vec cannot fail: every map key is a string.
        let mut line = match self.format {
            Format::Premain => serde_json::to_vec(record),
            Format::Falco => serde_json::to_vec(&falco::envelope(record, &self.hostname)),
        }
        .unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The in-band record telling a sink's receiver that `count` records meant for it were lost.
fn loss_record(sink: &str, stage: &'static str, reason: &'static str, count: u64) -> Loss {
    Loss {
        kind: Kind,
        time: rfc3339(SystemTime::now()),
        hook: HOOK,
        stage,
        reason,
        sink: Some(sink.to_owned()),
        count,
        total: None,
    }
}

/// If `line` is a loss record this sink wrote (in either format), its reason and count.
fn own_loss(line: &[u8], sink: &str) -> Option<(String, u64)> {
    // Most lines are alerts: skip parsing them.
    if !line.windows(6).any(|w| w == b"\"loss\"") {
        return None;
    }
    let record: Value = serde_json::from_slice(line).ok()?;
    let field = |key: &str| match record.get("output_fields") {
        Some(fields) => fields.get(format!("premain.{key}")),
        None => record.get(key),
    };
    let is = |key: &str, want: &str| field(key).and_then(Value::as_str) == Some(want);
    if !(is("kind", "loss") && is("hook", HOOK) && is("sink", sink)) {
        return None;
    }
    Some((field("reason")?.as_str()?.to_owned(), field("count")?.as_u64()?))
}

/// Runs blocking I/O off the async runtime, keeping a panic a panic.
async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only when the runtime shuts down, which also drops the task awaiting this.
            Err(err) => panic!("blocking sink I/O cancelled: {err}"),
        },
    }
}

/// An error with its causes, on one line (reqwest keeps the useful part in the sources).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{test_support::*, *};

    #[tokio::test]
    async fn a_full_queue_is_counted_and_announced() {
        let dir = TempDir::new("queue-full");
        let path = dir.path().join("alerts.jsonl");
        let metrics = Metrics::new(&[], 10);
        let sinks = Sinks::start(&[file_sink(&path, 1 << 20, 2)], 4, &metrics, "node-1").unwrap();
        // The sink task cannot run while this test does not await: only 4 fit.
        for i in 0..100 {
            sinks.publish(record(i));
        }
        assert_eq!(metrics.lost.with_label_values(&[HOOK, stage::USERSPACE_QUEUE]).get(), 96);
        assert_eq!(metrics.sink_queue.with_label_values(&["file"]).get(), 4);
        let report = sinks.shutdown(Duration::from_secs(60)).await;
        assert!(report.is_complete(), "{report:?}");
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[..4].iter().map(seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        let loss = &lines[4];
        assert_eq!(
            (&loss["kind"], &loss["hook"], &loss["stage"], &loss["sink"], &loss["reason"], &loss["count"]),
            (
                &json!("loss"),
                &json!("alert"),
                &json!("userspace_queue"),
                &json!("file"),
                &json!("queue_full"),
                &json!(96)
            )
        );
        assert_eq!(metrics.sink_queue.with_label_values(&["file"]).get(), 0);
    }

    #[test]
    fn own_loss_records_are_recognised_in_both_formats() {
        let record = Record::Loss(loss_record("hook", stage::SINK, "spool_full", 7));
        let premain = serde_json::to_string(&record).unwrap();
        let falco = falco::envelope(&record, "n").to_string();
        for line in [&premain, &falco] {
            assert_eq!(own_loss(line.as_bytes(), "hook"), Some(("spool_full".into(), 7)), "{line}");
            assert_eq!(own_loss(line.as_bytes(), "other"), None);
        }
        let alert = serde_json::to_string(&Record::Alert(alert(1))).unwrap();
        assert_eq!(own_loss(alert.as_bytes(), "hook"), None);
    }

    #[test]
    fn errors_are_one_line() {
        let err = SinkError::Open {
            sink: "audit".into(),
            path: "/nonexistent/x".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let text = err.to_string();
        assert!(text.starts_with("sink \"audit\": cannot open /nonexistent/x"), "{text}");
        assert_eq!(text.lines().count(), 1);
    }
}
