//! Secrets in command lines. Every command line premain prints (alerts, with their ancestry and
//! origin, and event lines, hence every sink, the spool and the Falco envelope) is an
//! [`Argv`](super::json::Argv) made through a [`Redactor`], which replaces each secret it finds
//! with [`MARKER`] in the bytes, before the text and `_hex` forms are made from them.
//!
//! Only the secret is replaced: a flag's or variable's name stays (`--db-password=***REDACTED***`,
//! `AWS_SECRET_ACCESS_KEY=***REDACTED***`), so an analyst still sees what was passed. Detection
//! looks at one argv entry at a time, except that an entry that names a secret on its own
//! (`--password`, `aws_secret_access_key`) makes the whole next entry one.

use std::sync::LazyLock;

use regex::bytes::{Captures, Regex, RegexBuilder};

/// What a secret is replaced with.
const MARKER: &[u8] = b"***REDACTED***";

/// Long flags whose value is a secret: `--password`, `--db-password`, `--api-key`, `--token`,
/// ... The name must end in the secret word, so `--token-file` and `--tokenizer` are not.
const FLAG: &str = r"--[A-Za-z0-9_-]*(?i:password|passwd|passphrase|token|secret|(?:api|access|secret|private)[-_]?key|credentials?)";

/// Built-in detectors, matched on bytes with ASCII classes. The group `secret` is what is
/// replaced; a pattern without one is replaced whole.
static BUILT_IN: LazyLock<Vec<Detector>> = LazyLock::new(|| {
    let named = |pattern: &str| Detector { regex: ascii(pattern), named: true };
    let plain = |pattern: &str| Detector { regex: ascii(pattern), named: false };
    vec![
        // AWS access key ids.
        plain(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        // An AWS secret access key after its name, as in credentials files, JSON or `aws
        // configure set` (`aws_secret_access_key = ...`, `"AwsSecretAccessKey": "..."`).
        plain(
            r#"(?i:aws[-_ ]?secret[-_ ]?(?:access[-_ ]?)?key)["' ]*[:=]["' ]*(?P<secret>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|\z)"#,
        ),
        // GitHub, GitLab, Slack, npm and PyPI tokens, by their prefixes.
        plain(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|npm_[A-Za-z0-9]{30,}|pypi-AgE[A-Za-z0-9_-]{20,})",
        ),
        // JSON web tokens: three base64url parts, the first a JSON object (`{"` is `eyJ`).
        plain(r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"),
        // A private key's body (after a line break, a space or the `\n` of shell code), to
        // the end of the entry when the key was cut.
        plain(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?P<secret>[\s\\](?s:.*?))(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
        ),
        // HTTP credentials: the value of an `Authorization:` header that starts the entry, a
        // quoted string or a line (not the word in a sentence), a bearer token (long enough not
        // to be the next word of a sentence about bearer tokens).
        plain(r#"(?:^|["'=\r\n])(?i:(?:proxy-)?authorization)[ \t]*:[ \t]*(?P<secret>[^\r\n]*[^\s])"#),
        plain(r"(?i:\bbearer)[ \t]+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)"),
        // The password in a URL's user info: `https://user:***REDACTED***@host`.
        plain(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:(?P<secret>[^\s/?#]+)@"),
        // A secret flag with its value in the same entry: the rest of an entry that starts
        // `--password=`, or a word (or quoted string) after the flag inside shell code
        // (`sh -c "mysql --password hunter2 db"`).
        plain(&format!(r"^{FLAG}=(?P<secret>(?s:.+))")),
        plain(&format!(r#"(?:^|[\s'"]){FLAG}(?:=|[ \t]+)(?P<secret>"[^"]*"|'[^']*'|[^\s'";&|]+)"#)),
        // `NAME=value` where the name says it holds a secret: a whole entry (`env DB_PASSWORD=x
        // prog`, the value may have spaces), or inside shell code (up to a space, `;`, `&` or
        // `|`, or quoted). `==` is a version pin, and a name right after `-` is a flag's.
        named(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<secret>[^=](?s:.*))"),
        named(
            r#"(?:^|[^A-Za-z0-9_-])(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<secret>"[^"]*"|'[^']*'|[^\s;&|'"=][^\s;&|'"]*)"#,
        ),
    ]
});

/// An entry that is only the name of a secret: the next entry is its value.
static NAMES_NEXT: LazyLock<Regex> =
    LazyLock::new(|| ascii(&format!(r"^(?:{FLAG}|(?i:(?:--)?aws[-_]secret[-_]access[-_]key))$")));

/// Built-in patterns are fixed and tested: one that does not compile is a bug.
fn ascii(pattern: &str) -> Regex {
    RegexBuilder::new(pattern).unicode(false).build().expect("built-in redaction pattern")
}

struct Detector {
    regex: Regex,
    /// Matches only count when the group `name` says it holds a secret.
    named: bool,
}

/// A configured pattern (`alerts.redact_patterns`): Rust regex syntax, matched against the
/// bytes of each argv entry.
pub(crate) fn pattern(text: &str) -> Result<Regex, String> {
    // The error shows the pattern with a caret under the fault, over several lines: a
    // configuration error is one line.
    Regex::new(text).map_err(|e| e.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The built-in detectors and the configured patterns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    configured: Vec<Regex>,
}

impl Redactor {
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let configured = patterns
            .into_iter()
            .map(|p| pattern(p).map_err(|e| format!("bad regex {p:?} in alerts.redact_patterns: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { configured })
    }

    /// `args` with every secret replaced, or `None` when there was none.
    pub(crate) fn argv(&self, args: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
        let mut out: Option<Vec<Vec<u8>>> = None;
        let mut value_of_name = false;
        for (i, arg) in args.iter().enumerate() {
            let redacted =
                if value_of_name && !arg.is_empty() { Some(MARKER.to_vec()) } else { self.entry(arg) };
            value_of_name = NAMES_NEXT.is_match(arg);
            if let Some(redacted) = redacted {
                out.get_or_insert_with(|| args.to_vec())[i] = redacted;
            }
        }
        out
    }

    /// One argv entry with every secret in it replaced, or `None` when there was none.
    pub(crate) fn entry(&self, arg: &[u8]) -> Option<Vec<u8>> {
        let mut spans = Vec::new();
        for detector in BUILT_IN.iter() {
            for caps in detector.regex.captures_iter(arg) {
                if !detector.named || caps.name("name").is_some_and(|n| names_a_secret(n.as_bytes())) {
                    spans.extend(secret(&caps));
                }
            }
        }
        for regex in &self.configured {
            spans.extend(regex.captures_iter(arg).filter_map(|caps| secret(&caps)));
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        let mut out = Vec::with_capacity(arg.len());
        let mut done = 0;
        for (start, end) in spans {
            // Overlapping finds of several detectors become one marker.
            if start >= done {
                out.extend_from_slice(&arg[done..start]);
                out.extend_from_slice(MARKER);
            }
            done = done.max(end);
        }
        out.extend_from_slice(&arg[done..]);
        Some(out)
    }
}

/// The span to replace: the group `secret`, else the whole match; nothing when it is empty
/// (a `BEGIN PRIVATE KEY` line alone, a pattern that matched nothing).
fn secret(caps: &Captures<'_>) -> Option<(usize, usize)> {
    let m = caps.name("secret").or_else(|| caps.get(0))?;
    (!m.is_empty()).then(|| (m.start(), m.end()))
}

/// Whether a variable name says it holds a secret: it contains SECRET, TOKEN, PASSWORD,
/// PASSWD, KEY, CREDENTIAL or AUTH, in any case (AUTHOR, as in `GIT_AUTHOR_NAME`, is not
/// AUTH; AUTHORIZATION is).
fn names_a_secret(name: &[u8]) -> bool {
    let upper = name.to_ascii_uppercase();
    let has = |word: &[u8]| upper.windows(word.len()).any(|w| w == word);
    let auth = upper.windows(4).enumerate().any(|(i, w)| {
        let rest = &upper[i + 4..];
        w == b"AUTH" && (!rest.starts_with(b"OR") || rest.starts_with(b"ORIZ"))
    });
    auth || [&b"SECRET"[..], b"TOKEN", b"PASSWORD", b"PASSWD", b"KEY", b"CREDENTIAL"].into_iter().any(has)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(arg: &str) -> String {
        let out = Redactor::default().entry(arg.as_bytes()).unwrap_or_else(|| panic!("{arg:?} unchanged"));
        String::from_utf8(out).unwrap()
    }

    fn unchanged(arg: &str) {
        let out = Redactor::default().entry(arg.as_bytes()).map(|o| String::from_utf8_lossy(&o).into_owned());
        assert_eq!(out, None, "{arg:?} was changed");
    }

    fn argv(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn aws_access_key_ids_and_secret_keys() {
        assert_eq!(redacted("AKIAABCDEFGHIJKLMNOP"), "***REDACTED***");
        assert_eq!(redacted("id=ASIAABCDEFGHIJKLMNOP,"), "id=***REDACTED***,");
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            redacted(&format!("aws_secret_access_key = {secret}")),
            "aws_secret_access_key = ***REDACTED***"
        );
        assert_eq!(
            redacted(&format!(r#"{{"SecretAccessKey":1,"AwsSecretKey": "{secret}"}}"#)),
            r#"{"SecretAccessKey":1,"AwsSecretKey": "***REDACTED***"}"#
        );
        unchanged("AKIAshort");
        unchanged("aws_secret_access_key = not-forty-characters");
    }

    #[test]
    fn tokens_by_prefix() {
        let body = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8";
        for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "npm_", "pypi-AgE"] {
            assert_eq!(redacted(&format!("{prefix}{body}")), "***REDACTED***", "{prefix}");
        }
        assert_eq!(redacted("xoxb-1234567890-abcdefghij"), "***REDACTED***");
        assert_eq!(
            redacted("https://x-access-token:ghs_A1b2C3d4E5f6G7h8I9j0K1l2@github.com/o/r"),
            "https://x-access-token:***REDACTED***@github.com/o/r"
        );
        unchanged("ghp_short");
        unchanged("pypi-simple");
    }

    #[test]
    fn json_web_tokens() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(redacted(&format!("--data=jwt {jwt} end")), "--data=jwt ***REDACTED*** end");
        unchanged("eyJ.x.y");
    }

    #[test]
    fn private_key_bodies() {
        let key =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----\n";
        assert_eq!(
            redacted(key),
            "-----BEGIN OPENSSH PRIVATE KEY-----***REDACTED***-----END OPENSSH PRIVATE KEY-----\n"
        );
        assert_eq!(
            redacted("-----BEGIN PRIVATE KEY-----\nMIIEvQ"),
            "-----BEGIN PRIVATE KEY-----***REDACTED***"
        );
        unchanged("grep -- '-----BEGIN RSA PRIVATE KEY-----'");
        unchanged("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    }

    #[test]
    fn http_credentials() {
        assert_eq!(redacted("Authorization: Basic dXNlcjpwYXNz"), "Authorization: ***REDACTED***");
        assert_eq!(redacted("proxy-authorization:token"), "proxy-authorization:***REDACTED***");
        assert_eq!(redacted("curl -H 'Bearer abcdefghijklmnop1234' x"), "curl -H 'Bearer ***REDACTED***' x");
        assert_eq!(redacted("https://bob:hunter2@example.com/x"), "https://bob:***REDACTED***@example.com/x");
        assert_eq!(
            redacted("postgres://app:p@ss:w0rd@db:5432/app"),
            "postgres://app:***REDACTED***@db:5432/app"
        );
        assert_eq!(redacted("--header=Authorization: token abc"), "--header=Authorization: ***REDACTED***");
        unchanged("git commit -m 'support bearer tokens in the client'");
        unchanged("fix authorization: check roles first");
        unchanged("https://example.com:8443/path@x");
        unchanged("ssh://git@example.com/repo");
    }

    #[test]
    fn secret_flags() {
        for flag in ["--password", "--db-password", "--token", "--secret", "--api-key", "--client_secret"] {
            assert_eq!(redacted(&format!("{flag}=x y")), format!("{flag}=***REDACTED***"));
        }
        assert_eq!(
            redacted("mysql --password hunter2 db; curl --api-key='a b' x"),
            "mysql --password ***REDACTED*** db; curl --api-key=***REDACTED*** x"
        );
        unchanged("--token-file=/run/token");
        unchanged("--tokenizer=bert");
        unchanged("--password=");
    }

    #[test]
    fn secret_variables() {
        assert_eq!(redacted("AWS_SECRET_ACCESS_KEY=abc def"), "AWS_SECRET_ACCESS_KEY=***REDACTED***");
        assert_eq!(redacted("db_password=x"), "db_password=***REDACTED***");
        assert_eq!(
            redacted("export GH_TOKEN=abc; API_KEY='a b' PGPASSWD=\"c\" run"),
            "export GH_TOKEN=***REDACTED***; API_KEY=***REDACTED*** PGPASSWD=***REDACTED*** run"
        );
        assert_eq!(redacted("HTTP_AUTHORIZATION=x"), "HTTP_AUTHORIZATION=***REDACTED***");
        assert_eq!(redacted("MY_CREDENTIALS=x"), "MY_CREDENTIALS=***REDACTED***");
        unchanged("GIT_AUTHOR_NAME=Bob");
        unchanged("PYTHONPATH=/srv/app");
        unchanged("keyring==24.3.1");
        unchanged("--sort-key=name");
    }

    #[test]
    fn a_name_alone_makes_the_next_entry_secret() {
        let redactor = Redactor::default();
        let out = redactor.argv(&argv(&["mysql", "--password", "hunter2", "db"])).expect("redacted");
        assert_eq!(out, argv(&["mysql", "--password", "***REDACTED***", "db"]));
        let out = redactor
            .argv(&argv(&["aws", "configure", "set", "aws_secret_access_key", "abc", "--profile", "p"]))
            .expect("redacted");
        assert_eq!(out[4], MARKER);
        assert_eq!(out[5], b"--profile");
        assert_eq!(redactor.argv(&argv(&["tool", "--token"])), None, "nothing follows");
    }

    #[test]
    fn ordinary_command_lines_stay() {
        let redactor = Redactor::default();
        for line in [
            &["python", "-m", "pip", "install", "requests==2.31"][..],
            &["gcc", "-O2", "-o", "x", "x.c"],
            &["git", "commit", "-m", "fix token parsing"],
            &["git", "commit", "-m", "fix: token: parsing, password: reset flow"],
            &["python3", "-c", "import os; print(os.environ.get('API_TOKEN'))"],
            &["bash", "-c", "for k in a b; do echo $k; done"],
            &["ssh", "-i", "/home/a/.ssh/id_ed25519", "git@github.com"],
            &["curl", "https://pypi.org/simple/requests/"],
            &["make", "-j2", "CFLAGS=-O2", "PREFIX=/usr"],
            &["python", "-m", "keyring", "--help"],
            &["/usr/bin/python3", "/srv/app/manage.py", "runserver", "0.0.0.0:8000"],
        ] {
            assert_eq!(redactor.argv(&argv(line)), None, "{line:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_redacted_too() {
        let out = Redactor::default().entry(b"\xff--x DB_PASSWORD=s\xfe\xffcret \xfe").expect("redacted");
        assert_eq!(out, b"\xff--x DB_PASSWORD=***REDACTED*** \xfe");
    }

    #[test]
    fn configured_patterns() {
        let redactor = Redactor::new(["corp_[0-9a-f]{8}", "--vault=(?P<secret>.+)"]).unwrap();
        assert_eq!(redactor.entry(b"use corp_deadbeef now").unwrap(), b"use ***REDACTED*** now");
        assert_eq!(redactor.entry(b"--vault=abc").unwrap(), b"--vault=***REDACTED***");
        assert_eq!(redactor.entry(b"--vault="), None, "an empty secret is nothing to hide");
        let e = Redactor::new(["ok", "a("]).unwrap_err();
        assert!(e.starts_with("bad regex \"a(\" in alerts.redact_patterns: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
