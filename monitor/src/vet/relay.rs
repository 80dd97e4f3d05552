//! The sink's relay to the package index: a connection the sink recognised as an index
//! endpoint's ([`super::index::RelayTarget`]) is passed through, byte for byte, to the real
//! index, dialled from vet's own thread in the host's network namespace. TLS stays end to end
//! (the sandbox's pip checks the index's certificate as it would anywhere); what the sandbox sent
//! is recorded in the connection's flow, as every flow's is, so a bait value sent in the clear to
//! an `http` index is still seen leaving.
//!
//! Each relayed connection has two threads (one per direction), blocking; stopping shuts every
//! relayed socket down, which ends them.

use std::{
    collections::HashMap,
    io::{self, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{Arc, Mutex, PoisonError},
    thread::{self, JoinHandle},
    time::{Duration, SystemTime},
};

use super::{capture::Capture, sink::keep};

/// How long dialling the index may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections relayed at once at most; more are closed (pip uses a few, uv tens).
const MAX_LIVE: usize = 256;

/// The live relayed connections.
#[derive(Debug, Default)]
pub(super) struct Relays {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    stopping: bool,
    next: u64,
    /// Each live connection's sockets (the sandbox's side, then the index's once dialled).
    sockets: HashMap<u64, Vec<TcpStream>>,
    threads: Vec<JoinHandle<()>>,
}

/// Where a relayed connection's bytes from the sandbox are recorded.
pub(super) struct Record {
    pub(super) capture: Arc<Mutex<Capture>>,
    pub(super) flow: usize,
    pub(super) keep: usize,
}

impl Relays {
    /// Relays `client` to the first of `upstream` that answers; false when it was not taken
    /// (stopping, or too many live), and the connection is closed.
    pub(super) fn start(
        self: &Arc<Self>,
        client: TcpStream,
        upstream: Vec<SocketAddr>,
        record: Record,
    ) -> bool {
        let mut state = self.lock();
        state.threads.retain(|t| !t.is_finished());
        if state.stopping || state.threads.len() >= MAX_LIVE {
            return false;
        }
        let Ok(registered) = client.try_clone() else { return false };
        let id = state.next;
        state.next += 1;
        state.sockets.insert(id, vec![registered]);
        let relays = self.clone();
        let spawned = thread::Builder::new().name("vet-relay".into()).spawn(move || {
            relays.relay(id, client, &upstream, &record);
            relays.lock().sockets.remove(&id);
        });
        match spawned {
            Ok(thread) => {
                state.threads.push(thread);
                true
            }
            Err(_) => {
                state.sockets.remove(&id);
                false
            }
        }
    }

    /// Ends every relayed connection and waits for their threads.
    pub(super) fn stop(&self) {
        let threads = {
            let mut state = self.lock();
            state.stopping = true;
            for socket in state.sockets.values().flatten() {
                let _ = socket.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut state.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn relay(&self, id: u64, mut client: TcpStream, upstream: &[SocketAddr], record: &Record) {
        if client.set_nonblocking(false).is_err() {
            return;
        }
        let Some(mut server) = upstream.iter().find_map(|a| TcpStream::connect_timeout(a, DIAL_TIMEOUT).ok())
        else {
            tracing::warn!(upstream = ?upstream, "vet: the package index did not answer");
            return;
        };
        {
            let mut state = self.lock();
            if state.stopping {
                return;
            }
            match server.try_clone() {
                Ok(s) => state.sockets.entry(id).or_default().push(s),
                Err(_) => return,
            }
        }
        let (Ok(mut from_server), Ok(mut to_client)) = (server.try_clone(), client.try_clone()) else {
            return;
        };
        let down = thread::spawn(move || {
            let _ = io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
        });
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            {
                let mut capture = record.capture.lock().unwrap_or_else(PoisonError::into_inner);
                keep(&mut capture.flows[record.flow], &buf[..n], n, record.keep, SystemTime::now());
            }
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(Shutdown::Write);
        let _ = down.join();
    }
}
