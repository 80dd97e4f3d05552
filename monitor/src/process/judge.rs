//! Judging executables off the event loop: reading an ELF file can take milliseconds, or for
//! ever on a mount that does not answer (FUSE), and the reader must keep draining the ring
//! meanwhile. Requests go to a small pool of threads; verdicts come back on a channel the event
//! loop selects on, and the tracker keeps the records of the processes concerned until then.

use std::{
    collections::VecDeque,
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use monitor_common::ExeKey;
use tokio::sync::mpsc;

use crate::python::interpreter::Verdict;

/// Judging threads at most: a judgment stuck on a hung file takes one of them.
const THREADS_MAX: usize = 4;
/// An idle thread exits after this long.
const IDLE: Duration = Duration::from_secs(5);

/// What to judge: the executable `key` that process `pid` runs (`filename` as it exec'd it,
/// empty when unknown).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub pid: u32,
    pub key: ExeKey,
    pub filename: Vec<u8>,
}

/// A verdict for `key`; `None` when the file could not be examined.
#[derive(Debug)]
pub(crate) struct Judged {
    pub key: ExeKey,
    pub verdict: Option<Verdict>,
}

/// Judges a request; [`crate::process::tracker::judge_from_proc`] in the daemon.
pub(crate) type JudgeFn = fn(u32, &ExeKey, &[u8]) -> Option<Verdict>;

#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    idle: usize,
    threads: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    judge: JudgeFn,
    results: mpsc::UnboundedSender<Judged>,
}

/// Hands requests to the judging threads.
#[derive(Clone)]
pub(crate) struct Pool(Arc<Shared>);

impl Pool {
    /// A pool judging with `judge`, and where its verdicts arrive.
    pub(crate) fn new(judge: JudgeFn) -> (Self, mpsc::UnboundedReceiver<Judged>) {
        let (results, verdicts) = mpsc::unbounded_channel();
        let shared = Shared { queue: Mutex::default(), wake: Condvar::new(), judge, results };
        (Self(Arc::new(shared)), verdicts)
    }

    pub(crate) fn submit(&self, request: Request) {
        let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.requests.push_back(request);
        if queue.idle == 0 && queue.threads < THREADS_MAX {
            let shared = Arc::clone(&self.0);
            if std::thread::Builder::new().name("judge".into()).spawn(move || work(&shared)).is_ok() {
                queue.threads += 1;
            } else if queue.threads == 0 {
                tracing::warn!("cannot start a judging thread; executables wait to be judged");
            }
        }
        drop(queue);
        self.0.wake.notify_one();
    }
}

fn work(shared: &Shared) {
    loop {
        let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        let request = loop {
            if let Some(request) = queue.requests.pop_front() {
                break request;
            }
            queue.idle += 1;
            let (woken, timeout) = shared.wake.wait_timeout(queue, IDLE).unwrap_or_else(|p| p.into_inner());
            queue = woken;
            queue.idle -= 1;
            if timeout.timed_out() && queue.requests.is_empty() {
                queue.threads -= 1;
                return;
            }
        };
        drop(queue);
        let verdict = (shared.judge)(request.pid, &request.key, &request.filename);
        if shared.results.send(Judged { key: request.key, verdict }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_python(_: u32, _: &ExeKey, filename: &[u8]) -> Option<Verdict> {
        (filename != b"unreadable").then_some(Verdict::NotPython)
    }

    #[tokio::test]
    async fn every_request_is_answered() {
        let (pool, mut verdicts) = Pool::new(not_python);
        for ino in 0..20 {
            let filename = if ino == 7 { b"unreadable".to_vec() } else { Vec::new() };
            pool.submit(Request { pid: 1, key: ExeKey { ino, ..ExeKey::default() }, filename });
        }
        let mut answered = Vec::new();
        for _ in 0..20 {
            let judged = verdicts.recv().await.expect("a verdict");
            assert_eq!(judged.verdict.is_none(), judged.key.ino == 7);
            answered.push(judged.key.ino);
        }
        answered.sort_unstable();
        assert_eq!(answered, (0..20).collect::<Vec<_>>());
    }
}
