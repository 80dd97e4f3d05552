//! The webhook sink: records go through the on-disk spool, then are POSTed as JSON arrays of
//! up to `batch_max`. Delivery is at least once: a batch is retried with backoff (connection
//! errors, timeouts, 5xx, 408, 429) until the receiver answers 2xx, for as long as the spool
//! holds it. A receiver refusing the content (other 4xx) gets the batch dropped and counted.
//!
//! In Falco's format every request carries one event, not an array: that is what
//! falcosidekick (and Falco's own `http_output`) takes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use reqwest::{
    StatusCode, Url,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use rustls_platform_verifier::BuilderVerifierExt as _;

use tokio::{
    sync::{Notify, mpsc, watch},
    time::{Instant, sleep, sleep_until},
};

use super::{BATCH, Shared, SinkError, backoff::Backoff, blocking, error_chain, spool::Spool};
use crate::{alert::Record, ops::config::Format};

/// Retrying a failed spool write (a full disk): the records wait in memory meanwhile.
const SPOOL_RETRY_INITIAL: Duration = Duration::from_millis(100);
const SPOOL_RETRY_MAX: Duration = Duration::from_secs(10);

/// A webhook sink's settings, as configured.
pub(super) struct Options<'a> {
    pub(super) url: &'a str,
    pub(super) headers: &'a BTreeMap<String, String>,
    pub(super) batch_max: usize,
    pub(super) batch_wait_ms: u64,
    pub(super) timeout_ms: u64,
    pub(super) backoff_initial_ms: u64,
    pub(super) backoff_max_ms: u64,
    pub(super) spool_dir: &'a Path,
    pub(super) spool_max_bytes: u64,
}

pub(super) struct Webhook {
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    batch_max: usize,
    batch_wait: Duration,
    timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
}

enum Outcome {
    Accepted,
    /// Worth retrying: the receiver is away or overloaded.
    Retry(String),
    /// The receiver refuses this content; sending it again will not help.
    Rejected(StatusCode),
}

impl Webhook {
    /// Checks the settings and opens the spool (`spool_dir/<sink name>/`).
    pub(super) fn new(options: &Options<'_>, shared: Arc<Shared>) -> Result<(Self, Spool), SinkError> {
        let sink = || shared.name.clone();
        let client_error = |reason: String| SinkError::Client { sink: sink(), reason };
        let url = Url::parse(options.url).map_err(|e| client_error(format!("url {:?}: {e}", options.url)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in options.headers {
            let bad = |reason: String| SinkError::Header { sink: sink(), header: name.clone(), reason };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
            let mut value = HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?;
            // Keeps tokens out of debug output.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let timeout = Duration::from_millis(options.timeout_ms);
        let client = client(url.scheme() == "https", timeout).map_err(client_error)?;
        let dir: PathBuf = options.spool_dir.join(dir_name(&shared.name));
        let spool = Spool::open(&dir, options.spool_max_bytes, Arc::clone(&shared))
            .map_err(|source| SinkError::Open { sink: sink(), path: dir.clone(), source })?;
        let batch_max = if shared.format == Format::Falco { 1 } else { options.batch_max.max(1) };
        let hook = Self {
            client,
            url,
            headers,
            batch_max,
            batch_wait: Duration::from_millis(options.batch_wait_ms),
            timeout,
            backoff_initial: Duration::from_millis(options.backoff_initial_ms.max(1)),
            backoff_max: Duration::from_millis(options.backoff_max_ms),
            shared,
        };
        Ok((hook, spool))
    }

    pub(super) async fn run(
        self,
        spool: Spool,
        rx: mpsc::Receiver<Arc<Record>>,
        cancel: watch::Receiver<bool>,
    ) {
        let spool = Arc::new(Mutex::new(spool));
        let wake = Notify::new();
        let closed = AtomicBool::new(false);
        tokio::join!(
            ingest(&self.shared, &spool, rx, &wake, &closed, cancel.clone()),
            self.send(&spool, &wake, &closed, cancel),
        );
    }

    /// Sends from the spool until the queue is closed and the spool empty, or until cancelled.
    async fn send(
        &self,
        spool: &Arc<Mutex<Spool>>,
        wake: &Notify,
        closed: &AtomicBool,
        mut cancel: watch::Receiver<bool>,
    ) {
        let shared = &self.shared;
        let max = self.batch_max;
        let mut backoff = Backoff::new(self.backoff_initial, self.backoff_max);
        let mut failing = 0u64;
        loop {
            // Looked at before reading: once `closed` is set, nothing more is appended.
            let draining = closed.load(Ordering::Acquire);
            let mut batch = match with_spool(spool, move |s| s.read_batch(max)).await {
                Ok(batch) => batch,
                Err(err) => {
                    shared.failures.inc();
                    tracing::error!(sink = %shared.name, error = %err, "cannot read the spool; retrying");
                    if pause(&mut cancel, backoff.next_wait()).await {
                        continue;
                    }
                    return;
                }
            };
            if batch.lines.is_empty() {
                if draining {
                    return;
                }
                tokio::select! {
                    biased;
                    _ = cancel.changed() => return,
                    () = wake.notified() => continue,
                }
            }
            if batch.lines.len() < max && !draining {
                let until = Instant::now() + self.batch_wait;
                loop {
                    tokio::select! {
                        biased;
                        _ = cancel.changed() => return,
                        () = sleep_until(until) => break,
                        () = wake.notified() => {}
                    }
                    if let Ok(fuller) = with_spool(spool, move |s| s.read_batch(max)).await {
                        batch = fuller;
                    }
                    if batch.lines.len() >= max || closed.load(Ordering::Acquire) {
                        break;
                    }
                }
            }
            let body = self.body(&batch.lines);
            let n = batch.lines.len() as u64;
            loop {
                let outcome = tokio::select! {
                    biased;
                    _ = cancel.changed() => return,
                    outcome = self.post(body.clone()) => outcome,
                };
                match outcome {
                    Outcome::Accepted => {
                        if let Err(err) = with_spool(spool, move |s| s.ack(&batch)).await {
                            tracing::error!(sink = %shared.name, error = %err, "cannot record a delivery in the spool; it may be sent again");
                        }
                        shared.delivered.inc_by(n);
                        if failing > 0 {
                            tracing::info!(sink = %shared.name, failed_attempts = failing, "delivering again");
                        }
                        failing = 0;
                        backoff.reset();
                        break;
                    }
                    Outcome::Retry(why) => {
                        shared.failures.inc();
                        failing += 1;
                        if failing.is_power_of_two() {
                            tracing::warn!(sink = %shared.name, error = %why, attempts = failing, "delivery failed; retrying");
                        }
                        if with_spool(spool, |s| s.orphaned()).await {
                            tracing::error!(sink = %shared.name, records = n, "spool full: records in the failing batch dropped");
                            if let Err(err) = with_spool(spool, move |s| s.abandon(&batch)).await {
                                tracing::error!(sink = %shared.name, error = %err, "cannot update the spool");
                            }
                            break;
                        }
                        if !pause(&mut cancel, backoff.next_wait()).await {
                            return;
                        }
                    }
                    Outcome::Rejected(status) => {
                        tracing::error!(sink = %shared.name, %status, records = n, "the receiver refused the records; dropped");
                        if let Err(err) = with_spool(spool, move |s| s.reject(&batch)).await {
                            tracing::error!(sink = %shared.name, error = %err, "cannot update the spool");
                        }
                        break;
                    }
                }
            }
        }
    }

    /// A JSON array of the lines, or the one event in Falco's format.
    fn body(&self, lines: &[Vec<u8>]) -> Vec<u8> {
        let record = |line: &[u8]| line.strip_suffix(b"\n").unwrap_or(line).to_vec();
        if self.shared.format == Format::Falco
            && let [line] = lines
        {
            return record(line);
        }
        let mut body = Vec::with_capacity(lines.iter().map(Vec::len).sum::<usize>() + 2);
        body.push(b'[');
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&record(line));
        }
        body.push(b']');
        body
    }

    async fn post(&self, body: Vec<u8>) -> Outcome {
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(body);
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Outcome::Retry(error_chain(&err)),
        };
        let status = response.status();
        // Reading the answer lets the connection be reused; what it says does not matter.
        let _ = response.bytes().await;
        if status.is_success() {
            Outcome::Accepted
        } else if status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS
        {
            Outcome::Rejected(status)
        } else {
            // 5xx, 408, 429, and redirects (not followed: a POST must not turn into a GET).
            Outcome::Retry(format!("HTTP {status}"))
        }
    }
}

/// The spool's directory: the sink's name, kept to one plain path component.
fn dir_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if safe.chars().all(|c| c == '.') { format!("_{safe}") } else { safe }
}

/// Takes records from the queue into the spool.
async fn ingest(
    shared: &Shared,
    spool: &Arc<Mutex<Spool>>,
    mut rx: mpsc::Receiver<Arc<Record>>,
    wake: &Notify,
    closed: &AtomicBool,
    mut cancel: watch::Receiver<bool>,
) {
    let mut records = Vec::with_capacity(BATCH);
    let mut backoff = Backoff::new(SPOOL_RETRY_INITIAL, SPOOL_RETRY_MAX);
    let mut failing = 0u64;
    loop {
        let open = tokio::select! {
            biased;
            _ = cancel.changed() => {
                // Appending is quick: what is still queued goes to disk for the next start.
                rx.close();
                while let Ok(record) = rx.try_recv() {
                    records.push(record);
                }
                false
            }
            n = rx.recv_many(&mut records, BATCH) => n > 0,
        };
        let lines = Arc::new(shared.take(&mut records));
        let mut done = 0;
        while done < lines.len() {
            let batch = Arc::clone(&lines);
            match with_spool(spool, move |s| s.append(&batch[done..])).await {
                Ok(()) => {
                    shared.release(lines.len() - done);
                    done = lines.len();
                    failing = 0;
                    backoff.reset();
                }
                Err((written, err)) => {
                    shared.release(written);
                    done += written;
                    shared.failures.inc();
                    failing += 1;
                    if failing.is_power_of_two() {
                        tracing::error!(sink = %shared.name, error = %err, attempts = failing, "cannot write to the spool; retrying");
                    }
                    if *cancel.borrow() || !pause(&mut cancel, backoff.next_wait()).await {
                        shared.abandon(lines.len() - done);
                        break;
                    }
                }
            }
        }
        wake.notify_one();
        if !open || *cancel.borrow() {
            break;
        }
    }
    shared.drain_lost(&mut rx);
    closed.store(true, Ordering::Release);
    wake.notify_one();
}

/// Waits `wait`; false when cancelled meanwhile.
async fn pause(cancel: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        biased;
        _ = cancel.changed() => false,
        () = sleep(wait) => true,
    }
}

async fn with_spool<R: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    work: impl FnOnce(&mut Spool) -> R + Send + 'static,
) -> R {
    let spool = Arc::clone(spool);
    blocking(move || work(&mut spool.lock().unwrap_or_else(PoisonError::into_inner))).await
}

/// An HTTP client using rustls with ring. Only https needs the system's CA certificates,
/// which a minimal container may lack: plain http never does a TLS handshake.
fn client(https: bool, timeout: Duration) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let tls = if https {
        builder.with_platform_verifier().map_err(|e| format!("TLS: {e}"))?.with_no_client_auth()
    } else {
        builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .user_agent(concat!("premain/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| error_chain(&e))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        ops::config::Sink,
        ops::metrics::{Metrics, stage},
        output::sink::{HOOK, Sinks, test_support::*},
    };

    const NAME: &str = "hook";

    fn counter(metrics: &Metrics, what: &str) -> u64 {
        match what {
            "delivered" => metrics.delivered.with_label_values(&[NAME]).get(),
            "failures" => metrics.delivery_failures.with_label_values(&[NAME]).get(),
            "lost" => metrics.lost.with_label_values(&[HOOK, stage::SINK]).get(),
            "queue_lost" => metrics.lost.with_label_values(&[HOOK, stage::USERSPACE_QUEUE]).get(),
            _ => unreachable!(),
        }
    }

    fn alerts_and_losses(records: &[Value]) -> (Vec<u64>, u64) {
        let alerts = records.iter().filter(|r| r["kind"] == "alert").map(seq).collect();
        let losses = records
            .iter()
            .filter(|r| r["kind"] == "loss")
            .inspect(|r| {
                assert_eq!(
                    (&r["sink"], &r["reason"], &r["stage"]),
                    (&json!(NAME), &json!("spool_full"), &json!("sink")),
                    "{r}"
                )
            })
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        (alerts, losses)
    }

    #[tokio::test]
    async fn failures_and_stalls_lose_nothing() {
        let dir = TempDir::new("webhook-outage");
        // 500s, then two requests never answered (beyond the timeout), then all is well.
        let receiver = Receiver::start(|n| match n {
            0..4 => Reply::Status(500),
            4 => Reply::Status(503),
            5 => Reply::Status(429),
            6..8 => Reply::Stall,
            _ => Reply::Status(200),
        })
        .await;
        let metrics = Metrics::new(&[], 10);
        let batch_max = 7;
        let mut sink = webhook_sink(&receiver.url, dir.path(), batch_max, 64 << 20);
        if let Sink::Webhook { timeout_ms, .. } = &mut sink {
            *timeout_ms = 1000;
        }
        let sinks = Sinks::start(&[sink], 1024, &metrics, "node-1").unwrap();
        let total = 100;
        for i in 0..total {
            sinks.publish(record(i));
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        eventually("all delivered", || counter(&metrics, "delivered") >= total).await;
        let report = sinks.shutdown(Duration::from_secs(60)).await;
        assert!(report.is_complete(), "{report:?}");

        let received = receiver.received.lock().unwrap();
        assert!(
            received.accepted.iter().all(|b| !b.is_empty() && b.len() <= batch_max),
            "batches respect batch_max"
        );
        // At least once: a batch whose answer came too late is sent again, whole, right away.
        // Without those re-sends, every record arrives once, in order.
        let mut batches: Vec<&Vec<Value>> = Vec::new();
        for batch in &received.accepted {
            if batches.last() != Some(&batch) {
                batches.push(batch);
            }
        }
        let got: Vec<u64> = batches.into_iter().flatten().map(seq).collect();
        assert_eq!(got, (0..total).collect::<Vec<_>>(), "none lost, none duplicated but by re-sends");
        // Each batch left unanswered was sent again and accepted.
        assert_eq!(received.stalled.len(), 2);
        for stalled in &received.stalled {
            assert!(received.accepted.contains(stalled), "{stalled:?}");
        }
        assert_eq!(counter(&metrics, "delivered"), total);
        assert!(counter(&metrics, "failures") >= 8, "{}", counter(&metrics, "failures"));
        assert_eq!(counter(&metrics, "lost") + counter(&metrics, "queue_lost"), 0);
        let headers = &received.headers;
        assert!(headers.contains(&("authorization".into(), "Bearer t0ken".into())), "{headers:?}");
        assert!(headers.contains(&("content-type".into(), "application/json".into())), "{headers:?}");
        assert_eq!(metrics.sink_queue.with_label_values(&[NAME]).get(), 0);
    }

    #[tokio::test]
    async fn a_full_spool_drops_the_oldest_and_says_how_many() {
        let dir = TempDir::new("webhook-bound");
        let receiver = Receiver::start(|_| Reply::Reset).await;
        let metrics = Metrics::new(&[], 10);
        let sink = webhook_sink(&receiver.url, dir.path(), 5, 8192);
        let sinks = Sinks::start(&[sink], 1024, &metrics, "node-1").unwrap();
        let total = 300;
        for i in 0..total {
            sinks.publish(record(i));
        }
        eventually("all spooled", || metrics.sink_queue.with_label_values(&[NAME]).get() == 0).await;
        eventually("the receiver is tried", || counter(&metrics, "failures") > 2).await;
        let lost = counter(&metrics, "lost");
        assert!(lost > 0, "the spool overflowed");
        assert_eq!(counter(&metrics, "delivered"), 0);
        let spool_bytes = metrics.sink_spool_bytes.with_label_values(&[NAME]).get();
        assert!(spool_bytes > 0 && spool_bytes <= 8192 + 2048, "{spool_bytes}");

        receiver.set_script(|_| Reply::Status(200));
        let report = sinks.shutdown(Duration::from_secs(60)).await;
        assert!(report.is_complete(), "{report:?}");
        let (alerts, announced) = alerts_and_losses(&receiver.records());
        let lost = counter(&metrics, "lost");
        assert_eq!(alerts.len() as u64 + lost, total, "each record delivered or counted lost");
        assert_eq!(announced, lost, "the receiver is told exactly how many were lost");
        assert_eq!(alerts, (total - alerts.len() as u64..total).collect::<Vec<_>>(), "the newest are kept");
        assert_eq!(counter(&metrics, "queue_lost"), 0);
    }

    #[tokio::test]
    async fn a_restart_delivers_what_the_last_run_spooled() {
        let dir = TempDir::new("webhook-restart");
        let receiver = Receiver::start(|_| Reply::Status(503)).await;
        let sink = webhook_sink(&receiver.url, dir.path(), 10, 64 << 20);
        let metrics = Metrics::new(&[], 10);
        let first = Sinks::start(std::slice::from_ref(&sink), 1024, &metrics, "node-1").unwrap();
        for i in 0..25 {
            first.publish(record(i));
        }
        eventually("spooled", || metrics.sink_queue.with_label_values(&[NAME]).get() == 0).await;
        let report = first.shutdown(Duration::from_millis(500)).await;
        assert_eq!(report.sinks, [crate::output::sink::Leftover { sink: NAME.into(), lost: 0, spooled: 25 }]);
        assert!(receiver.records().is_empty());

        receiver.set_script(|_| Reply::Status(204));
        let metrics = Metrics::new(&[], 10);
        let second = Sinks::start(&[sink], 1024, &metrics, "node-1").unwrap();
        second.publish(record(25));
        eventually("delivered", || counter(&metrics, "delivered") >= 26).await;
        let report = second.shutdown(Duration::from_secs(60)).await;
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(receiver.records().iter().map(seq).collect::<Vec<_>>(), (0..26).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn shutdown_drains_without_waiting_for_a_fuller_batch() {
        let dir = TempDir::new("webhook-drain");
        let receiver = Receiver::start(|_| Reply::Status(200)).await;
        let mut sink = webhook_sink(&receiver.url, dir.path(), 1000, 64 << 20);
        if let Sink::Webhook { batch_wait_ms, .. } = &mut sink {
            *batch_wait_ms = 3_600_000;
        }
        let metrics = Metrics::new(&[], 10);
        let sinks = Sinks::start(&[sink], 1024, &metrics, "node-1").unwrap();
        for i in 0..40 {
            sinks.publish(record(i));
        }
        let deadline = Duration::from_secs(60);
        let started = std::time::Instant::now();
        let report = sinks.shutdown(deadline).await;
        assert!(started.elapsed() < deadline);
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(receiver.records().len(), 40);
    }

    #[tokio::test]
    async fn shutdown_with_a_dead_receiver_keeps_the_records() {
        let dir = TempDir::new("webhook-dead");
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let sink = webhook_sink(&format!("http://127.0.0.1:{port}/"), dir.path(), 10, 64 << 20);
        let metrics = Metrics::new(&[], 10);
        let sinks = Sinks::start(&[sink], 1024, &metrics, "node-1").unwrap();
        for i in 0..30 {
            sinks.publish(record(i));
        }
        let deadline = Duration::from_millis(800);
        let started = std::time::Instant::now();
        let report = sinks.shutdown(deadline).await;
        let took = started.elapsed();
        // Generous: only a hang should fail this.
        assert!(took < deadline + Duration::from_secs(10), "{took:?}");
        assert_eq!(report.sinks[0].spooled, 30, "{report:?}");
        assert_eq!(report.sinks[0].lost, 0, "{report:?}");
        assert!(!report.is_complete());
        assert!(counter(&metrics, "failures") > 0);
    }

    #[tokio::test]
    async fn falco_format_posts_one_event_per_request() {
        let dir = TempDir::new("webhook-falco");
        let receiver = Receiver::start(|_| Reply::Status(200)).await;
        let mut sink = webhook_sink(&receiver.url, dir.path(), 50, 64 << 20);
        if let Sink::Webhook { format, .. } = &mut sink {
            *format = Format::Falco;
        }
        let metrics = Metrics::new(&[], 10);
        let sinks = Sinks::start(&[sink], 1024, &metrics, "node-1").unwrap();
        for i in 0..3 {
            sinks.publish(record(i));
        }
        let report = sinks.shutdown(Duration::from_secs(60)).await;
        assert!(report.is_complete(), "{report:?}");
        let received = receiver.received.lock().unwrap();
        assert_eq!(received.accepted.len(), 3);
        for batch in &received.accepted {
            assert_eq!(batch.len(), 1);
            assert_eq!(batch[0]["source"], "premain");
            assert_eq!(batch[0]["hostname"], "node-1");
            assert_eq!(batch[0]["rule"], "Pre-main credential read");
        }
    }

    #[test]
    fn spool_dirs_stay_inside_spool_dir() {
        assert_eq!(dir_name("falco-sidekick_1.x"), "falco-sidekick_1.x");
        assert_eq!(dir_name("../etc"), ".._etc");
        assert_eq!(dir_name(".."), "_..");
        assert_eq!(dir_name(""), "_");
    }

    #[tokio::test]
    async fn start_errors_name_the_sink() {
        let dir = TempDir::new("webhook-errors");
        let metrics = Metrics::new(&[], 10);
        let mut sink = webhook_sink("http://127.0.0.1:9/", dir.path(), 10, 1 << 20);
        if let Sink::Webhook { headers, .. } = &mut sink {
            headers.insert("X-Bad".into(), "line\nbreak".into());
        }
        let err = Sinks::start(&[sink], 16, &metrics, "n").err().expect("refused");
        assert!(err.to_string().starts_with("sink \"hook\": bad header \"X-Bad\""), "{err}");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let sink = webhook_sink("http://127.0.0.1:9/", &blocker, 10, 1 << 20);
        let err = Sinks::start(&[sink], 16, &metrics, "n").err().expect("refused");
        assert!(err.to_string().starts_with("sink \"hook\": cannot open"), "{err}");
        assert_eq!(err.to_string().lines().count(), 1);
    }
}
