//! Just enough DNS for the sink: read the question of a query, answer it with the sink's address.
//!
//! Every name gets an answer (A and AAAA the sink's addresses, other types an empty NOERROR) so a
//! package goes on to connect, and every name is recorded: DNS exfiltration puts data in names.

use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) const TYPE_A: u16 = 1;
pub(super) const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const HEADER: usize = 12;
/// Answers are short-lived so a resolver cache does not outlive a vet run's meaning.
const TTL: u32 = 60;

/// The first question of a query.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Question {
    /// The name as asked, dotted, bytes outside printable ASCII as `\DDD` (dig's notation).
    pub(super) name: String,
    pub(super) qtype: u16,
    qclass: u16,
    /// Where the question ends in the query (it is copied into the answer).
    end: usize,
}

/// Reads the first question of `msg`, or None when it is not a query with one.
pub(super) fn question(msg: &[u8]) -> Option<Question> {
    if msg.len() < HEADER || msg[2] & 0x80 != 0 || u16::from_be_bytes([msg[4], msg[5]]) == 0 {
        return None;
    }
    let (name, at) = read_name(msg, HEADER)?;
    let fixed = msg.get(at..at + 4)?;
    Some(Question {
        name,
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        end: at + 4,
    })
}

/// Reads a (possibly compressed) name at `at`; returns it and where the question goes on.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut resume = None;
    // Each pointer must go backwards, so following them ends; the bound is belt and braces.
    for _ in 0..128 {
        let len = *msg.get(at)? as usize;
        match len {
            0 => return Some((if name.is_empty() { ".".into() } else { name }, resume.unwrap_or(at + 1))),
            l if l & 0xc0 == 0xc0 => {
                let target = (l & 0x3f) << 8 | *msg.get(at + 1)? as usize;
                if target >= at {
                    return None;
                }
                resume.get_or_insert(at + 2);
                at = target;
            }
            l if l <= 63 => {
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in msg.get(at + 1..at + 1 + l)? {
                    match b {
                        b'.' | b'\\' => name.push_str(&format!("\\{}", b as char)),
                        0x21..=0x7e => name.push(b as char),
                        _ => name.push_str(&format!("\\{b:03}")),
                    }
                }
                at += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

/// The answer to `query` (whose question is `q`): A and AAAA questions get `v4` and `v6`.
pub(super) fn answer(query: &[u8], q: &Question, v4: Ipv4Addr, v6: Ipv6Addr) -> Vec<u8> {
    let opcode = query[2] & 0x78;
    let rdata: Option<Vec<u8>> = match (opcode, q.qclass, q.qtype) {
        (0, CLASS_IN, TYPE_A) => Some(v4.octets().to_vec()),
        (0, CLASS_IN, TYPE_AAAA) => Some(v6.octets().to_vec()),
        _ => None,
    };
    let mut out = Vec::with_capacity(q.end + 32);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode, AA, the query's RD; RA; NOTIMP for opcodes other than QUERY.
    out.push(0x80 | opcode | 0x04 | (query[2] & 0x01));
    out.push(0x80 | if opcode == 0 { 0 } else { 4 });
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::from(rdata.is_some()).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[HEADER..q.end]);
    if let Some(rdata) = rdata {
        out.extend_from_slice(&[0xc0, HEADER as u8]);
        out.extend_from_slice(&q.qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as a stub resolver sends it: id, RD, one question, an EDNS OPT record.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        q
    }

    #[test]
    fn reads_the_question() {
        let q = question(&query("A1b2.Exfil.example.com", TYPE_AAAA)).unwrap();
        assert_eq!(q.name, "A1b2.Exfil.example.com");
        assert_eq!(q.qtype, TYPE_AAAA);
    }

    #[test]
    fn answers_a_with_the_sink_address() {
        let msg = query("pypi.org", TYPE_A);
        let q = question(&msg).unwrap();
        let a = answer(&msg, &q, Ipv4Addr::new(192, 0, 2, 1), Ipv6Addr::LOCALHOST);
        assert_eq!(&a[..2], &[0xab, 0xcd], "the query's id");
        assert_eq!(a[2], 0x85, "QR, AA, RD");
        assert_eq!(a[3], 0x80, "RA, NOERROR");
        assert_eq!(&a[4..8], &[0, 1, 0, 1], "one question, one answer");
        assert_eq!(&a[8..12], &[0, 0, 0, 0], "no EDNS record copied");
        assert_eq!(&a[12..q.end], &msg[12..q.end]);
        assert_eq!(&a[q.end..q.end + 2], &[0xc0, 12], "the answer's name points at the question");
        assert_eq!(&a[a.len() - 6..], &[0, 4, 192, 0, 2, 1]);
    }

    #[test]
    fn answers_aaaa_and_other_types() {
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let msg = query("x.test", TYPE_AAAA);
        let a = answer(&msg, &question(&msg).unwrap(), Ipv4Addr::LOCALHOST, v6);
        assert_eq!(&a[a.len() - 16..], &v6.octets());
        let txt = query("x.test", 16);
        let a = answer(&txt, &question(&txt).unwrap(), Ipv4Addr::LOCALHOST, v6);
        assert_eq!(&a[6..8], &[0, 0], "NOERROR with no answer");
        assert_eq!(a[3] & 0x0f, 0);
    }

    #[test]
    fn escapes_odd_bytes_and_follows_pointers() {
        let mut msg = query("a", TYPE_A);
        // A second copy of the name at the end, as a pointer back to the first question.
        let q = question(&msg).unwrap();
        assert_eq!(q.name, "a");
        msg[13] = 0x07;
        assert_eq!(question(&msg).unwrap().name, "\\007");
        let pointer = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12];
        assert_eq!(question(&pointer), None, "a pointer to itself is refused");
    }

    #[test]
    fn refuses_what_is_not_a_query() {
        assert_eq!(question(&[0; 5]), None);
        let mut response = query("a.b", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(question(&response), None);
        let truncated = query("abc.def", TYPE_A);
        assert_eq!(question(&truncated[..16]), None);
    }
}
