//! The task behind the sinks that write lines locally (stdout, file): take a batch from the
//! queue, write it whole off the runtime, retry with backoff when writing fails.

use std::{io, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    time::{Instant, sleep, sleep_until},
};

use super::{BATCH, Shared, backoff::Backoff, blocking};
use crate::alert::Record;

const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Where a local sink puts its lines. Called off the runtime: it may block.
pub(super) trait LineTarget: Send + 'static {
    /// Appends `lines` (each ends in a newline) in order. On failure, says how many were
    /// written whole; no part of a later line is left behind.
    fn write(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)>;

    /// After each batch, when [`Self::next_sync`] comes, and (with `closing`) at the end:
    /// flushes or makes durable what was written, as configured.
    fn sync(&mut self, closing: bool) -> io::Result<()>;

    /// When [`Self::sync`] has work waiting only for time to pass.
    fn next_sync(&self) -> Option<std::time::Instant> {
        None
    }
}

/// Moves `target` to a blocking thread for `work` and back.
async fn off_runtime<T: LineTarget, R: Send + 'static>(
    mut target: T,
    work: impl FnOnce(&mut T) -> R + Send + 'static,
) -> (T, R) {
    blocking(move || {
        let result = work(&mut target);
        (target, result)
    })
    .await
}

pub(super) async fn run<T: LineTarget>(
    mut target: T,
    mut rx: mpsc::Receiver<Arc<Record>>,
    shared: Arc<Shared>,
    mut cancel: watch::Receiver<bool>,
) {
    let mut records = Vec::with_capacity(BATCH);
    let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
    let mut failing = 0u64;
    'taking: loop {
        let due = target.next_sync().map(Instant::from_std);
        let open = tokio::select! {
            biased;
            _ = cancel.changed() => break 'taking,
            n = rx.recv_many(&mut records, BATCH) => n > 0,
            () = sleep_until_some(due) => {
                let result;
                (target, result) = off_runtime(target, |t| t.sync(false)).await;
                note_sync_failure(&shared, result);
                continue;
            }
        };
        // After the queue closes there may still be a loss record to write.
        let lines = Arc::new(shared.take(&mut records));
        let mut done = 0;
        while done < lines.len() {
            let batch = Arc::clone(&lines);
            let result;
            (target, result) = off_runtime(target, move |t| t.write(&batch[done..])).await;
            match result {
                Ok(()) => {
                    shared.release(lines.len() - done);
                    done = lines.len();
                    if failing > 0 {
                        tracing::info!(sink = %shared.name, failed_attempts = failing, "writing works again");
                    }
                    failing = 0;
                    backoff.reset();
                }
                Err((written, err)) => {
                    shared.release(written);
                    done += written;
                    shared.failures.inc();
                    failing += 1;
                    if failing.is_power_of_two() {
                        tracing::error!(sink = %shared.name, error = %err, attempts = failing, "cannot write records; retrying");
                    }
                    tokio::select! {
                        biased;
                        _ = cancel.changed() => {
                            shared.abandon(lines.len() - done);
                            break 'taking;
                        }
                        () = sleep(backoff.next_wait()) => {}
                    }
                }
            }
        }
        if !lines.is_empty() {
            let result;
            (target, result) = off_runtime(target, |t| t.sync(false)).await;
            note_sync_failure(&shared, result);
        }
        if !open {
            break;
        }
    }
    shared.drain_lost(&mut rx);
    let (_, result) = off_runtime(target, |t| t.sync(true)).await;
    note_sync_failure(&shared, result);
}

async fn sleep_until_some(due: Option<Instant>) {
    match due {
        Some(due) => sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// The lines were written; only their durability (fsync) or flushing failed. Rewriting them
/// would duplicate them, so this is counted and logged, not retried.
fn note_sync_failure(shared: &Shared, result: io::Result<()>) {
    if let Err(err) = result {
        shared.failures.inc();
        tracing::error!(sink = %shared.name, error = %err, "cannot flush or sync written records");
    }
}
