//! The forms a bait value takes on the wire once a package encodes it before sending.
//!
//! Base64 and base32 encode a value differently depending on where it starts in the encoded
//! payload (its offset modulo 3 or 5), so each alignment gives its own form: the characters that
//! depend only on the value's bytes, without those shared with its neighbours.

use serde::Serialize;

/// How the value was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Raw,
    Hex,
    /// Percent-encoded, as in a URL's query or a form body.
    Percent,
    Base64,
    /// Base64 with `-` and `_` (URL-safe alphabet).
    Base64Url,
    Base32,
}

/// One pattern to look for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Form {
    pub(super) encoding: Encoding,
    pub(super) pattern: Vec<u8>,
    /// Whether letter case carries no meaning (hex, base32, percent escapes; all of DNS).
    pub(super) any_case: bool,
}

/// Shorter patterns say nothing: they turn up by chance.
const MIN_PATTERN: usize = 4;

/// Every form of `value`, without duplicates (a value of unreserved characters is its own
/// percent-encoding).
pub(super) fn forms(value: &[u8]) -> Vec<Form> {
    let mut forms: Vec<Form> = Vec::new();
    let mut add = |encoding, pattern: Vec<u8>, any_case| {
        if pattern.len() >= MIN_PATTERN.min(value.len()) && !forms.iter().any(|f| f.pattern == pattern) {
            forms.push(Form { encoding, pattern, any_case });
        }
    };
    add(Encoding::Raw, value.to_vec(), false);
    add(Encoding::Hex, value.iter().flat_map(|b| format!("{b:02x}").into_bytes()).collect(), true);
    add(Encoding::Percent, percent(value), false);
    for shift in 0..3 {
        let b64 = aligned(value, shift, 6, B64);
        let url = b64.iter().map(|&c| url_safe(c)).collect();
        add(Encoding::Base64, b64, false);
        add(Encoding::Base64Url, url, false);
    }
    for shift in 0..5 {
        add(Encoding::Base32, aligned(value, shift, 5, B32), true);
    }
    forms
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn url_safe(c: u8) -> u8 {
    match c {
        b'+' => b'-',
        b'/' => b'_',
        c => c,
    }
}

/// The characters of `value` encoded `bits` bits a character when `shift` bytes precede it in
/// the encoded payload: only the characters made of the value's bits alone.
fn aligned(value: &[u8], shift: usize, bits: usize, alphabet: &[u8]) -> Vec<u8> {
    let total = (shift + value.len()) * 8;
    let first = (shift * 8).div_ceil(bits);
    let last = total / bits;
    let bit = |i: usize| -> u8 {
        let byte = i / 8;
        if byte < shift { 0 } else { (value[byte - shift] >> (7 - i % 8)) & 1 }
    };
    (first..last)
        .map(|c| {
            let index = (0..bits).fold(0usize, |acc, k| acc << 1 | bit(c * bits + k) as usize);
            alphabet[index]
        })
        .collect()
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn percent(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .flat_map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => vec![b],
            _ => format!("%{b:02X}").into_bytes(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        // Full encoding of `data` (with padding), to check the aligned forms against.
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
            for i in 0..4 {
                out.push(if i <= chunk.len() { B64[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
            }
        }
        out
    }

    #[test]
    fn base64_forms_match_the_value_at_any_offset() {
        let value = b"AKIA-bait-7f3a9c";
        let patterns: Vec<_> = forms(value).into_iter().filter(|f| f.encoding == Encoding::Base64).collect();
        for prefix in ["", "x", "xy", "token=", "{\"key\": \""] {
            let payload = [prefix.as_bytes(), value, b"\"}"].concat();
            let encoded = b64(&payload);
            assert!(
                patterns.iter().any(|f| encoded.contains(std::str::from_utf8(&f.pattern).unwrap())),
                "{encoded} after {prefix:?}"
            );
        }
    }

    #[test]
    fn shift_zero_is_the_plain_encoding_without_its_last_partial_characters() {
        assert_eq!(aligned(b"Man", 0, 6, B64), b"TWFu");
        assert_eq!(aligned(b"Ma", 0, 6, B64), b"TWE"[..2].to_vec());
        assert_eq!(aligned(b"foobar", 0, 5, B32), b"MZXW6YTBOI"[..9].to_vec());
    }

    #[test]
    fn hex_percent_and_url_safe_forms() {
        let f = forms(b"a/b+c?d");
        let find =
            |e| f.iter().find(|f| f.encoding == e).map(|f| String::from_utf8(f.pattern.clone()).unwrap());
        assert_eq!(find(Encoding::Hex).unwrap(), "612f622b633f64");
        assert_eq!(find(Encoding::Percent).unwrap(), "a%2Fb%2Bc%3Fd");
        assert!(f.iter().filter(|f| f.encoding == Encoding::Base64Url).count() >= 1);
        assert_eq!(forms(b"plain").iter().filter(|f| f.encoding == Encoding::Percent).count(), 0);
    }
}
