//! What the sink recorded, and the search that turns it into proof: a bait value (a fake
//! credential unique to the run) found in what a package sent means it left, not just was read.

use std::{net::SocketAddr, time::SystemTime};

use serde::Serialize;

pub use super::encode::Encoding;
use super::encode::{Form, forms};

/// Everything the sink received, in arrival order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Capture {
    pub flows: Vec<Flow>,
    pub dns: Vec<DnsQuery>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    Udp,
}

/// A TCP connection, or the UDP datagrams from one source to one destination.
#[derive(Clone, Debug, Serialize)]
pub struct Flow {
    pub transport: Transport,
    pub source: SocketAddr,
    /// Where the package meant to send (the address and port it connected or sent to).
    pub destination: SocketAddr,
    pub first: SystemTime,
    pub last: SystemTime,
    /// The first bytes received (up to the sink's cap); datagrams one after the other.
    pub bytes: Vec<u8>,
    /// All bytes received, kept or not.
    pub received: u64,
    /// The index endpoint (`host:port`) the sink relayed the connection to, for a connection
    /// that was the package index's; `None` for one the sink took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayed: Option<String>,
}

/// A DNS question the sink answered.
#[derive(Clone, Debug, Serialize)]
pub struct DnsQuery {
    pub at: SystemTime,
    pub transport: Transport,
    pub source: SocketAddr,
    /// The resolver the package used (any address reaches the sink).
    pub server: SocketAddr,
    /// Dotted, odd bytes as `\DDD`.
    pub name: String,
    pub qtype: u16,
}

/// Where a bait value was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "in", rename_all = "snake_case")]
pub enum Place {
    /// In `Capture::flows[flow]`'s bytes, at `offset`.
    Flow { flow: usize, destination: SocketAddr, offset: usize },
    /// In `Capture::dns[query]`'s name; `split` when only its labels put together hold it.
    DnsName { query: usize, name: String, split: bool },
}

/// One finding of a bait value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub place: Place,
    pub encoding: Encoding,
}

impl Capture {
    /// Where `needle` (or its hex, percent, base64 or base32 form) appears in what was sent,
    /// or in a queried name, also when split across labels (`ab.cd.evil.test` holds `abcd`).
    pub fn contains(&self, needle: &[u8]) -> Vec<Evidence> {
        let mut found = Vec::new();
        if needle.is_empty() {
            return found;
        }
        let forms = forms(needle);
        for (index, flow) in self.flows.iter().enumerate() {
            for form in &forms {
                if let Some(offset) = find(&flow.bytes, form, form.any_case) {
                    let place = Place::Flow { flow: index, destination: flow.destination, offset };
                    found.push(Evidence { place, encoding: form.encoding });
                }
            }
        }
        for (index, query) in self.dns.iter().enumerate() {
            let joined: String = query.name.split('.').collect();
            for form in &forms {
                // Names are case-insensitive on the way (resolvers may change case).
                let split = if find(query.name.as_bytes(), form, true).is_some() {
                    false
                } else if find(joined.as_bytes(), form, true).is_some() {
                    true
                } else {
                    continue;
                };
                let place = Place::DnsName { query: index, name: query.name.clone(), split };
                found.push(Evidence { place, encoding: form.encoding });
            }
        }
        found
    }
}

fn find(haystack: &[u8], form: &Form, any_case: bool) -> Option<usize> {
    let pattern = &form.pattern;
    if pattern.is_empty() || pattern.len() > haystack.len() {
        return None;
    }
    haystack
        .windows(pattern.len())
        .position(|w| if any_case { w.eq_ignore_ascii_case(pattern) } else { w == pattern })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAIT: &[u8] = b"ghp_premainBait7Q2x";

    fn flow(bytes: &[u8]) -> Flow {
        Flow {
            transport: Transport::Tcp,
            source: "127.0.0.1:40000".parse().unwrap(),
            destination: "192.0.2.1:443".parse().unwrap(),
            first: SystemTime::UNIX_EPOCH,
            last: SystemTime::UNIX_EPOCH,
            bytes: bytes.to_vec(),
            received: bytes.len() as u64,
            relayed: None,
        }
    }

    fn query(name: &str) -> DnsQuery {
        DnsQuery {
            at: SystemTime::UNIX_EPOCH,
            transport: Transport::Udp,
            source: "127.0.0.1:40000".parse().unwrap(),
            server: "10.0.0.2:53".parse().unwrap(),
            name: name.into(),
            qtype: 1,
        }
    }

    fn encodings(capture: &Capture) -> Vec<Encoding> {
        capture.contains(BAIT).iter().map(|e| e.encoding).collect()
    }

    fn b64(data: &[u8], alphabet: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in data.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize]);
            }
        }
        out
    }

    fn b32(data: &[u8]) -> Vec<u8> {
        let bits: Vec<u8> = data.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1)).collect();
        bits.chunks(5)
            .map(|c| {
                let v = c.iter().chain(std::iter::repeat(&0)).take(5).fold(0, |a, &b| a << 1 | b);
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[v as usize]
            })
            .collect()
    }

    #[test]
    fn finds_the_raw_value_with_its_offset() {
        let capture =
            Capture { flows: vec![flow(b"POST / HTTP/1.1\r\n\r\ntoken=ghp_premainBait7Q2x")], dns: vec![] };
        let found = capture.contains(BAIT);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].encoding, Encoding::Raw);
        assert!(matches!(found[0].place, Place::Flow { flow: 0, offset: 25, .. }));
    }

    #[test]
    fn finds_encoded_forms_inside_larger_payloads() {
        let std64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let url64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for prefix in [&b""[..], b"k", b"ke", b"key=", b"{\"aws\":\"\xff\xfe"] {
            let payload = [prefix, BAIT, b"\"}\xfb\xff"].concat();
            let hex: String = payload.iter().map(|b| format!("{b:02X}")).collect();
            for (bytes, expected) in [
                (b64(&payload, std64), Encoding::Base64),
                (b32(&payload).to_ascii_lowercase(), Encoding::Base32),
                (hex.into_bytes(), Encoding::Hex),
            ] {
                let capture = Capture { flows: vec![flow(&bytes)], dns: vec![] };
                assert_eq!(encodings(&capture), [expected], "{prefix:?} {}", String::from_utf8_lossy(&bytes));
            }
            let url = b64(&[&b"\xfb\xff"[..], prefix, BAIT].concat(), url64);
            let capture = Capture { flows: vec![flow(&url)], dns: vec![] };
            let found = encodings(&capture);
            assert!(found == [Encoding::Base64] || found == [Encoding::Base64Url], "{found:?}");
        }
    }

    #[test]
    fn finds_the_value_in_dns_names_also_split_across_labels() {
        let hex: String = BAIT.iter().map(|b| format!("{b:02x}")).collect();
        let split = format!("{}.{}.{}.x.evil.test", &hex[..20], &hex[20..30], &hex[30..]);
        let b32 = String::from_utf8(b32(BAIT)).unwrap().to_lowercase();
        let capture = Capture {
            flows: vec![],
            dns: vec![
                query("pypi.org"),
                query(&format!("{hex}.evil.test")),
                query(&split),
                query(&format!("{}.{}.evil.test", &b32[..13], &b32[13..])),
                query("GHP_PREMAINBAIT7Q2X.evil.test"),
            ],
        };
        let found = capture.contains(BAIT);
        let summary: Vec<_> = found
            .iter()
            .map(|e| match &e.place {
                Place::DnsName { query, split, .. } => (*query, *split, e.encoding),
                Place::Flow { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, false, Encoding::Hex),
                (2, true, Encoding::Hex),
                (3, true, Encoding::Base32),
                (4, false, Encoding::Raw)
            ]
        );
    }

    #[test]
    fn finds_nothing_in_unrelated_traffic() {
        let capture = Capture {
            flows: vec![flow(b"GET /simple/requests/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n")],
            dns: vec![query("pypi.org"), query("files.pythonhosted.org")],
        };
        assert_eq!(capture.contains(BAIT), []);
        assert_eq!(capture.contains(b""), []);
    }
}
