//! The sink: inside the sandbox's namespace, it accepts every TCP connection and receives every
//! UDP datagram, whatever the address and port, answers every DNS question with its own address,
//! and records what was sent (see [`Capture`]).
//!
//! Catch-all: a BPF sk_lookup program (Linux 5.9+, see `sklookup`) hands every new connection and
//! datagram to one listener and one UDP socket, so no port is missed and no iptables/nftables or
//! listener per port is needed; the namespace routes every address to `lo`, so any IP works.
//!
//! Resolver: UDP and TCP port 53 of *every* address reach the sink's DNS code, so whatever
//! nameserver the namespace's `/etc/resolv.conf` names (10.x, 127.0.0.53, none at all: glibc then
//! asks 127.0.0.1) is answered by the sink; no private resolv.conf or mount namespace is needed.
//! Answers are sent from the address the question went to, as resolvers require.
//!
//! One thread serves all sockets with poll(2); a connection that looks like HTTP gets an empty
//! `200 OK` once its request is in, so a package's download does not hang until vet's timeout.
//!
//! The package index, when the run has one: its host names are answered with addresses of their
//! own, and a connection to an index endpoint (see [`super::index`]) is handed to the
//! [relay](super::relay) instead, which passes it through to the real index. The catch-all
//! leaves loopback to the ordinary lookup, so an index on a loopback address gets a listener of
//! its own at that address in the namespace, bound before the catch-all's so that no ephemeral
//! port takes it.

use std::{
    collections::HashMap,
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::SystemTime,
};

use anyhow::{Context as _, Result};

use super::{
    capture::{Capture, DnsQuery, Evidence, Flow, Transport},
    dns,
    index::RelayTarget,
    netns::NetNs,
    relay::{Record, Relays},
    sklookup::{CatchAll, SLOT_DNS, SLOT_TCP, SLOT_UDP},
    udp,
};

/// What the sink answers and keeps.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// The address every A question gets (any address reaches the sink; a documentation address,
    /// RFC 5737, reads as "the sink" in a report).
    pub answer_v4: Ipv4Addr,
    /// The address every AAAA question gets (RFC 3849).
    pub answer_v6: Ipv6Addr,
    /// Bytes kept per flow; the rest is counted, not kept.
    pub keep: usize,
    /// The package index's endpoints, relayed; empty: no index, everything is sunk.
    pub relay: Vec<RelayTarget>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            answer_v4: Ipv4Addr::new(192, 0, 2, 1),
            answer_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            keep: 64 * 1024,
            relay: Vec::new(),
        }
    }
}

/// A running sink; stopped (and its catch-all detached) when dropped.
#[derive(Debug)]
pub struct Sink {
    capture: Arc<Mutex<Capture>>,
    /// An eventfd the serving thread polls: written to stop it.
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
    relays: Arc<Relays>,
    _catch_all: CatchAll,
}

/// The sink's sockets, created inside the namespace.
struct Sockets {
    tcp: TcpListener,
    udp: UdpSocket,
    dns: UdpSocket,
    /// Listeners at the index's loopback addresses (which the catch-all leaves alone).
    index: Vec<TcpListener>,
}

impl Sink {
    /// Starts the sink in `netns`. Needs root (CAP_SYS_ADMIN, CAP_BPF, CAP_NET_ADMIN).
    pub fn start(netns: &NetNs, config: SinkConfig) -> Result<Self> {
        // `[::]` sockets take IPv4 too: a fresh namespace's net.ipv6.bindv6only is 0.
        let loopback: Vec<SocketAddr> =
            config.relay.iter().flat_map(|t| t.catch.iter().copied()).filter(|a| a.ip().is_loopback()).fold(
                Vec::new(),
                |mut all, a| {
                    if !all.contains(&a) {
                        all.push(a);
                    }
                    all
                },
            );
        let sockets = netns
            .run_in(|| -> io::Result<Sockets> {
                let mut index = Vec::new();
                for addr in &loopback {
                    match TcpListener::bind(addr) {
                        Ok(listener) => index.push(listener),
                        // ::1 where the namespace has no IPv6: nothing can reach it there either.
                        Err(e) if addr.is_ipv6() && e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
                        Err(e) => {
                            return Err(io::Error::new(e.kind(), format!("the index's address {addr}: {e}")));
                        }
                    }
                }
                let sockets = Sockets {
                    tcp: TcpListener::bind("[::]:0")?,
                    udp: UdpSocket::bind("[::]:0")?,
                    dns: UdpSocket::bind("[::]:53")?,
                    index,
                };
                udp::want_destination(sockets.udp.as_fd(), true)?;
                udp::want_destination(sockets.dns.as_fd(), false)?;
                for fd in [sockets.tcp.as_fd(), sockets.udp.as_fd(), sockets.dns.as_fd()]
                    .into_iter()
                    .chain(sockets.index.iter().map(|l| l.as_fd()))
                {
                    set_nonblocking(fd.as_raw_fd())?;
                }
                Ok(sockets)
            })?
            .context("opening the sink's sockets in the namespace")?;
        let catch_all =
            CatchAll::attach(netns.fd()).context("attaching the sink's catch-all (BPF sk_lookup)")?;
        for (slot, fd) in [
            (SLOT_TCP, sockets.tcp.as_fd()),
            (SLOT_UDP, sockets.udp.as_fd()),
            (SLOT_DNS, sockets.dns.as_fd()),
        ] {
            catch_all.redirect(slot, fd).context("putting the sink's sockets in the catch-all's map")?;
        }
        // SAFETY: eventfd takes no pointers; the descriptor is owned right below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("creating the sink's stop eventfd");
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(raw) };
        let capture = Arc::new(Mutex::new(Capture::default()));
        let relays = Arc::new(Relays::default());
        let mut serve = Serve {
            sockets,
            config,
            capture: capture.clone(),
            relays: relays.clone(),
            stop: stop.try_clone().context("duplicating the sink's stop eventfd")?,
            conns: Vec::new(),
            datagram_flows: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("vet-sink".into())
            .spawn(move || serve.run())
            .context("starting the sink's thread")?;
        Ok(Self { capture, stop, thread: Some(thread), relays, _catch_all: catch_all })
    }

    /// What was received so far.
    pub fn captured(&self) -> Capture {
        self.capture.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Where `needle` (a bait value) was seen leaving, in any encoding the capture search knows.
    pub fn contains(&self, needle: &[u8]) -> Vec<Evidence> {
        self.capture.lock().unwrap_or_else(PoisonError::into_inner).contains(needle)
    }

    /// Stops serving and returns everything received.
    pub fn stop(mut self) -> Capture {
        self.halt();
        self.captured()
    }

    fn halt(&mut self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.relays.stop();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.halt();
    }
}

fn set_nonblocking(fd: i32) -> io::Result<()> {
    let mut one: libc::c_int = 1;
    // SAFETY: FIONBIO reads the int we pass, which outlives the call.
    if unsafe { libc::ioctl(fd, libc::FIONBIO, &raw mut one) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An accepted connection.
struct Conn {
    stream: TcpStream,
    flow: usize,
    /// DNS over TCP (to port 53): length-prefixed questions are answered.
    dns: bool,
    /// Bytes not yet acted on: DNS messages not yet complete, or an HTTP request not yet answered.
    pending: Vec<u8>,
    /// HTTP answered, or the traffic is not HTTP: nothing more to send.
    done: bool,
}

/// The serving thread's state.
struct Serve {
    sockets: Sockets,
    config: SinkConfig,
    capture: Arc<Mutex<Capture>>,
    relays: Arc<Relays>,
    stop: OwnedFd,
    conns: Vec<Conn>,
    /// Each (source, destination) of UDP traffic's flow index.
    datagram_flows: HashMap<(SocketAddr, SocketAddr), usize>,
}

impl Serve {
    fn run(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let fixed = [
                self.stop.as_raw_fd(),
                self.sockets.tcp.as_raw_fd(),
                self.sockets.udp.as_raw_fd(),
                self.sockets.dns.as_raw_fd(),
            ];
            let index = self.sockets.index.len();
            let mut fds: Vec<libc::pollfd> = fixed
                .into_iter()
                .chain(self.sockets.index.iter().map(|l| l.as_raw_fd()))
                .chain(self.conns.iter().map(|c| c.stream.as_raw_fd()))
                .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
                .collect();
            // SAFETY: polls the array we own, of the length we pass.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(0) {
                return;
            }
            // Before accepting: connections accepted below were not polled.
            let ready_conns: Vec<bool> = (0..self.conns.len()).map(|i| ready(4 + index + i)).collect();
            if ready(1) {
                self.accept(None);
            }
            for i in (0..index).filter(|i| ready(4 + i)) {
                self.accept(Some(i));
            }
            if ready(2) {
                self.datagrams(&mut buf);
            }
            if ready(3) {
                self.dns_datagrams(&mut buf);
            }
            let mut i = 0;
            self.conns.retain_mut(|conn| {
                i += 1;
                !ready_conns.get(i - 1).copied().unwrap_or(true)
                    || read_conn(conn, &mut buf, &self.capture, &self.config)
            });
        }
    }

    /// Accepts from the catch-all's listener, or from the index listener `index`.
    fn accept(&mut self, index: Option<usize>) {
        let listener = index.map_or(&self.sockets.tcp, |i| &self.sockets.index[i]);
        while let Ok((stream, source)) = listener.accept() {
            // Accepted sockets have the address the package connected to as their own.
            let Ok(destination) = stream.local_addr() else { continue };
            let destination = canonical(destination);
            let target = self.config.relay.iter().find(|t| t.catch.contains(&destination));
            let now = SystemTime::now();
            let mut capture = lock(&self.capture);
            capture.flows.push(Flow {
                transport: Transport::Tcp,
                source: canonical(source),
                destination,
                first: now,
                last: now,
                bytes: Vec::new(),
                received: 0,
                relayed: target.map(|t| t.label.clone()),
            });
            let flow = capture.flows.len() - 1;
            drop(capture);
            if let Some(target) = target {
                let record = Record { capture: self.capture.clone(), flow, keep: self.config.keep };
                if !self.relays.start(stream, target.upstream.clone(), record) {
                    tracing::warn!(index = %target.label, "vet: a connection to the package index was closed unrelayed");
                }
                continue;
            }
            if set_nonblocking(stream.as_raw_fd()).is_err() {
                continue;
            }
            let dns = destination.port() == 53;
            self.conns.push(Conn { stream, flow, dns, pending: Vec::new(), done: false });
        }
    }

    fn datagrams(&mut self, buf: &mut [u8]) {
        while let Ok(got) = udp::receive(self.sockets.udp.as_fd(), buf) {
            let Some(destination) = got.destination else { continue };
            let now = SystemTime::now();
            let mut capture = lock(&self.capture);
            let index = *self.datagram_flows.entry((got.source, destination)).or_insert_with(|| {
                capture.flows.push(Flow {
                    transport: Transport::Udp,
                    source: got.source,
                    destination,
                    first: now,
                    last: now,
                    bytes: Vec::new(),
                    received: 0,
                    relayed: None,
                });
                capture.flows.len() - 1
            });
            keep(&mut capture.flows[index], &buf[..got.len.min(buf.len())], got.len, self.config.keep, now);
        }
    }

    fn dns_datagrams(&mut self, buf: &mut [u8]) {
        while let Ok(got) = udp::receive(self.sockets.dns.as_fd(), buf) {
            let query = &buf[..got.len.min(buf.len())];
            let server = got.destination.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |d| d.ip());
            if let Some(answer) = answer(
                query,
                Transport::Udp,
                got.source,
                SocketAddr::new(server, 53),
                &self.capture,
                &self.config,
            ) {
                let _ = udp::send_from(self.sockets.dns.as_fd(), &answer, got.source, server);
            }
        }
    }
}

/// Reads what a connection has; false when it is over.
fn read_conn(conn: &mut Conn, buf: &mut [u8], capture: &Mutex<Capture>, config: &SinkConfig) -> bool {
    loop {
        let n = match conn.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let (source, server) = {
            let mut capture = lock(capture);
            let flow = &mut capture.flows[conn.flow];
            keep(flow, &buf[..n], n, config.keep, SystemTime::now());
            (flow.source, flow.destination)
        };
        if conn.done {
            continue;
        }
        conn.pending.extend_from_slice(&buf[..n]);
        if conn.dns {
            while conn.pending.len() >= 2 {
                let len = u16::from_be_bytes([conn.pending[0], conn.pending[1]]) as usize;
                if conn.pending.len() < 2 + len {
                    break;
                }
                let query: Vec<u8> = conn.pending.drain(..2 + len).skip(2).collect();
                if let Some(answer) = answer(&query, Transport::Tcp, source, server, capture, config) {
                    let framed = [&(answer.len() as u16).to_be_bytes()[..], &answer].concat();
                    let _ = conn.stream.write_all(&framed);
                }
            }
        } else if let Some(done) = http_request_complete(&conn.pending, config.keep) {
            conn.done = true;
            conn.pending = Vec::new();
            if done {
                let _ = conn
                    .stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    }
}

/// Some(true) once an HTTP request (headers and Content-Length body) is in, Some(false) when
/// the traffic is not HTTP (or too large to wait for), None while more is needed.
fn http_request_complete(pending: &[u8], limit: usize) -> Option<bool> {
    const METHODS: [&[u8]; 7] = [b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"PATCH ", b"OPTIONS "];
    let could_be = METHODS
        .iter()
        .any(|m| pending.starts_with(m) || m.starts_with(&pending[..pending.len().min(m.len())]));
    if !could_be || pending.len() > limit {
        return Some(false);
    }
    let head_end = pending.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
    let body: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (pending.len() >= head_end + body).then_some(true)
}

/// Records a DNS question and returns the answer to send.
fn answer(
    query: &[u8],
    transport: Transport,
    source: SocketAddr,
    server: SocketAddr,
    capture: &Mutex<Capture>,
    config: &SinkConfig,
) -> Option<Vec<u8>> {
    let q = dns::question(query)?;
    let asked = q.name.trim_end_matches('.');
    let (v4, v6) = config
        .relay
        .iter()
        .find(|t| t.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(asked)))
        .map_or((config.answer_v4, config.answer_v6), |t| (t.answer_v4, t.answer_v6));
    let answer = dns::answer(query, &q, v4, v6);
    lock(capture).dns.push(DnsQuery {
        at: SystemTime::now(),
        transport,
        source: canonical(source),
        server: canonical(server),
        name: q.name,
        qtype: q.qtype,
    });
    Some(answer)
}

/// Appends to a flow what fits under the cap; counts all of it.
pub(super) fn keep(flow: &mut Flow, data: &[u8], len: usize, cap: usize, now: SystemTime) {
    let room = cap.saturating_sub(flow.bytes.len());
    flow.bytes.extend_from_slice(&data[..data.len().min(room)]);
    flow.received += len as u64;
    flow.last = now;
}

fn lock(capture: &Mutex<Capture>) -> std::sync::MutexGuard<'_, Capture> {
    capture.lock().unwrap_or_else(PoisonError::into_inner)
}

/// IPv4-mapped IPv6 addresses (IPv4 traffic on the dual-stack sockets) as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_is_complete_with_its_body() {
        assert_eq!(http_request_complete(b"GE", 100), None);
        assert_eq!(http_request_complete(b"GET / HTTP/1.1\r\nHost: x\r\n", 100), None);
        assert_eq!(http_request_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100), Some(true));
        let post = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        assert_eq!(http_request_complete(post, 100), None);
        assert_eq!(http_request_complete(&[&post[..], b"cde"].concat(), 100), Some(true));
        assert_eq!(http_request_complete(b"\x16\x03\x01\x02\x00", 100), Some(false), "TLS");
        assert_eq!(http_request_complete(b"GET / HTTP/1.1\r\nHost: x", 10), Some(false));
    }

    #[test]
    fn a_flow_keeps_up_to_its_cap_and_counts_everything() {
        let now = SystemTime::now();
        let mut flow = Flow {
            transport: Transport::Udp,
            source: "127.0.0.1:1".parse().unwrap(),
            destination: "192.0.2.1:9".parse().unwrap(),
            first: now,
            last: now,
            bytes: Vec::new(),
            received: 0,
            relayed: None,
        };
        keep(&mut flow, b"abcdef", 6, 4, now);
        keep(&mut flow, b"gh", 2, 4, now);
        assert_eq!(flow.bytes, b"abcd");
        assert_eq!(flow.received, 8);
    }
}
