//! Which host a captured flow was meant for (TLS SNI, HTTP `Host`), and whether a host or
//! address is the package index the run allows.

use std::net::{IpAddr, SocketAddr};

/// The host name a flow's first bytes name: the SNI of a TLS ClientHello, or an HTTP request's
/// `Host` header (without its port).
pub(crate) fn flow_host(bytes: &[u8]) -> Option<String> {
    sni(bytes).or_else(|| http_host(bytes))
}

fn http_host(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(8192)];
    let text = String::from_utf8_lossy(head);
    let first = text.split("\r\n").next()?;
    if !first.contains(" HTTP/1.") {
        return None;
    }
    for line in text.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("host")
        {
            let value = value.trim();
            return Some(strip_port(value).to_ascii_lowercase()).filter(|h| !h.is_empty());
        }
    }
    None
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The server name of a TLS ClientHello at the start of `b`.
fn sni(b: &[u8]) -> Option<String> {
    let u16_at =
        |i: usize| -> Option<usize> { Some(usize::from(*b.get(i)?) << 8 | usize::from(*b.get(i + 1)?)) };
    // Record: type 22 (handshake); handshake type 1 (ClientHello).
    if b.first() != Some(&22) || b.get(5) != Some(&1) {
        return None;
    }
    let mut at = 5 + 4 + 2 + 32; // handshake header, version, random
    at += 1 + usize::from(*b.get(at)?); // session id
    at += 2 + u16_at(at)?; // cipher suites
    at += 1 + usize::from(*b.get(at)?); // compression methods
    let end = (at + 2 + u16_at(at)?).min(b.len());
    at += 2;
    while at + 4 <= end {
        let (kind, len) = (u16_at(at)?, u16_at(at + 2)?);
        at += 4;
        if kind == 0 {
            // server_name list: length, then type 0 (host_name), length, name.
            let name_len = u16_at(at + 3)?;
            let name = b.get(at + 5..at + 5 + name_len)?;
            return std::str::from_utf8(name).ok().map(str::to_ascii_lowercase);
        }
        at += len;
    }
    None
}

/// The allowed index hosts, each `host` or `host:port`.
#[derive(Clone, Debug, Default)]
pub(crate) struct IndexHosts(Vec<(String, Option<u16>)>);

impl IndexHosts {
    pub(crate) fn new(hosts: &[String]) -> Self {
        Self(
            hosts
                .iter()
                .filter_map(|h| {
                    let h = h.trim();
                    let h = h.split_once("://").map_or(h, |(_, rest)| rest);
                    let h = h.split('/').next().unwrap_or(h);
                    let h = h.rsplit_once('@').map_or(h, |(_, host)| host);
                    if h.is_empty() {
                        return None;
                    }
                    let host = strip_port(h).to_ascii_lowercase();
                    let port = h.strip_prefix(&format!("[{host}]")).or_else(|| h.get(host.len()..));
                    let port = port.and_then(|p| p.strip_prefix(':')).and_then(|p| p.parse().ok());
                    Some((host, port))
                })
                .collect(),
        )
    }

    /// Whether `host` (a name or an address) on `port` is an index host.
    pub(crate) fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ip: Option<IpAddr> = host.parse().ok();
        self.0.iter().any(|(h, p)| {
            let same = match (host_ip, h.parse::<IpAddr>()) {
                (Some(a), Ok(b)) => a.to_canonical() == b.to_canonical(),
                _ => *h == host,
            };
            same && (p.is_none() || *p == port)
        })
    }

    /// Whether a socket address is an index host by its address alone.
    pub(crate) fn allows_addr(&self, addr: &SocketAddr) -> bool {
        self.allows(&addr.ip().to_string(), Some(addr.port()))
    }
}

/// An alert's rendered address (`1.2.3.4:443`, `[::1]:53`) as a socket address.
pub(crate) fn parse_addr(text: &str) -> Option<SocketAddr> {
    text.parse().ok()
}

#[cfg(test)]
/// A minimal ClientHello naming `host`.
pub(super) fn client_hello(host: &str) -> Vec<u8> {
    let name = host.as_bytes();
    let mut sni = vec![0, 0];
    let list_len = name.len() + 3;
    sni.extend([((list_len + 2) >> 8) as u8, (list_len + 2) as u8]);
    sni.extend([(list_len >> 8) as u8, list_len as u8, 0, (name.len() >> 8) as u8, name.len() as u8]);
    sni.extend(name);
    let mut ext = vec![0x00, 0x0b, 0, 2, 1, 0]; // ec_point_formats first
    ext.extend(&sni);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend([(ext.len() >> 8) as u8, ext.len() as u8]);
    body.extend(&ext);
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(&body);
    let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_host_of_tls_and_http() {
        assert_eq!(
            flow_host(&client_hello("Files.PythonHosted.org")).as_deref(),
            Some("files.pythonhosted.org")
        );
        assert_eq!(
            flow_host(b"POST /x HTTP/1.1\r\nhost: evil.example:8080\r\n\r\nbody").as_deref(),
            Some("evil.example")
        );
        assert_eq!(flow_host(b"\x16\x03\x01"), None);
        assert_eq!(flow_host(b"hello"), None);
    }

    #[test]
    fn index_hosts_match_names_addresses_and_ports() {
        let hosts = IndexHosts::new(&[
            "https://pypi.org/simple".into(),
            "127.0.0.1:3141".into(),
            "[::1]:8080".into(),
            "Mirror.Local".into(),
        ]);
        assert!(hosts.allows("pypi.org", Some(443)));
        assert!(hosts.allows("pypi.org.", None));
        assert!(hosts.allows("mirror.local", Some(1)));
        assert!(!hosts.allows("evil.pypi.org", Some(443)));
        assert!(hosts.allows_addr(&"127.0.0.1:3141".parse().unwrap()));
        assert!(!hosts.allows_addr(&"127.0.0.1:80".parse().unwrap()));
        assert!(hosts.allows_addr(&"[::1]:8080".parse().unwrap()));
        assert!(!IndexHosts::new(&[]).allows("pypi.org", None));
    }
}
