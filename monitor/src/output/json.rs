//! Byte strings in JSON: kernel paths, command lines and names are bytes, not always UTF-8.
//! Each is written as UTF-8 text (invalid sequences replaced by U+FFFD) and, when it is not
//! valid UTF-8, its exact bytes in hex under `<key>_hex`. So a line never breaks and nothing
//! a hostile program chose is lost.
//!
//! Command lines are the exception to "nothing is lost": secrets in them are replaced first
//! (see [`super::redact`]), and the field is then followed by `<key>_redacted: true`.

use std::{os::unix::ffi::OsStrExt as _, path::Path};

use serde::{Serialize, Serializer, ser::SerializeMap as _};

use super::redact::Redactor;

/// The bytes as UTF-8, invalid sequences replaced.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A byte string under `key`, with `key_hex` when it is not UTF-8; `None` is `null`. Meant for
/// `#[serde(flatten)]`: it writes its own keys into the enclosing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text {
    key: &'static str,
    bytes: Option<Vec<u8>>,
    redacted: bool,
}

impl Text {
    pub(crate) fn new(key: &'static str, bytes: &[u8]) -> Self {
        Self { key, bytes: Some(bytes.to_vec()), redacted: false }
    }

    pub(crate) fn path(key: &'static str, path: Option<&Path>) -> Self {
        Self { key, bytes: path.map(|p| p.as_os_str().as_bytes().to_vec()), redacted: false }
    }

    /// A piece of a command line (what `-c` runs), secrets replaced.
    pub(crate) fn command(key: &'static str, bytes: &[u8], redactor: &Redactor) -> Self {
        match redactor.entry(bytes) {
            Some(redacted) => Self { key, bytes: Some(redacted), redacted: true },
            None => Self::new(key, bytes),
        }
    }

    /// The text as written (lossy), or `None` for `null`.
    pub(crate) fn text(&self) -> Option<String> {
        self.bytes.as_deref().map(lossy)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let invalid = self.bytes.as_deref().filter(|b| std::str::from_utf8(b).is_err());
        let entries = 1 + usize::from(invalid.is_some()) + usize::from(self.redacted);
        let mut map = serializer.serialize_map(Some(entries))?;
        map.serialize_entry(self.key, &self.text())?;
        if let Some(bytes) = invalid {
            map.serialize_entry(&format!("{}_hex", self.key), &hex(bytes))?;
        }
        if self.redacted {
            map.serialize_entry(&format!("{}_redacted", self.key), &true)?;
        }
        map.end()
    }
}

/// An argument list under `key`, its secrets replaced (`key_redacted: true` then); when any
/// entry is not UTF-8, `key_hex` lists every entry in hex. For `#[serde(flatten)]`, like
/// [`Text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Argv {
    key: &'static str,
    args: Vec<Vec<u8>>,
    redacted: bool,
}

impl Argv {
    /// The one way a command line becomes output: the redactor sees the bytes before either
    /// rendering is made from them.
    pub(crate) fn new(key: &'static str, args: &[Vec<u8>], redactor: &Redactor) -> Self {
        match redactor.argv(args) {
            Some(redacted) => Self { key, args: redacted, redacted: true },
            None => Self { key, args: args.to_vec(), redacted: false },
        }
    }

    pub(crate) fn args(&self) -> impl Iterator<Item = String> + '_ {
        self.args.iter().map(|a| lossy(a))
    }

    /// Whether a secret was replaced.
    pub(crate) fn redacted(&self) -> bool {
        self.redacted
    }
}

impl Serialize for Argv {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let invalid = self.args.iter().any(|a| std::str::from_utf8(a).is_err());
        let mut map =
            serializer.serialize_map(Some(1 + usize::from(invalid) + usize::from(self.redacted)))?;
        map.serialize_entry(self.key, &self.args().collect::<Vec<_>>())?;
        if invalid {
            let hexes: Vec<String> = self.args.iter().map(|a| hex(a)).collect();
            map.serialize_entry(&format!("{}_hex", self.key), &hexes)?;
        }
        if self.redacted {
            map.serialize_entry(&format!("{}_redacted", self.key), &true)?;
        }
        map.end()
    }
}

/// A syscall's result, and the errno's name when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Outcome {
    pub result: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    pub(crate) fn of(result: i64) -> Self {
        Self { result, error: (result < 0).then(|| errno_name(-result)) }
    }
}

pub(crate) fn errno_name(errno: i64) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        26 => "ETXTBSY",
        30 => "EROFS",
        36 => "ENAMETOOLONG",
        40 => "ELOOP",
        88 => "ENOTSOCK",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        104 => "ECONNRESET",
        106 => "EISCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

/// What the kernel could not capture whole: `truncated` (the fields cut) and `read_failed`,
/// from a record header's flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Capture {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_failed: Option<bool>,
    /// `ia32` for a 32-bit syscall of a 64-bit process (`int 0x80`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abi: Option<&'static str>,
}

impl Capture {
    pub(crate) fn of(flags: u32) -> Self {
        use monitor_common::{
            FLAG_ARGS_TRUNCATED, FLAG_COMPAT, FLAG_KPATH_TRUNCATED, FLAG_PATH_TRUNCATED, FLAG_READ_FAILED,
        };
        let mut truncated = Vec::new();
        if flags & (FLAG_PATH_TRUNCATED | FLAG_KPATH_TRUNCATED) != 0 {
            truncated.push("path");
        }
        if flags & FLAG_ARGS_TRUNCATED != 0 {
            truncated.push("argv");
        }
        Self {
            truncated: (!truncated.is_empty()).then_some(truncated),
            read_failed: (flags & FLAG_READ_FAILED != 0).then_some(true),
            abi: (flags & FLAG_COMPAT != 0).then_some("ia32"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    struct Holder {
        #[serde(flatten)]
        path: Text,
        #[serde(flatten)]
        argv: Argv,
        n: u32,
    }

    #[test]
    fn non_utf8_bytes_keep_their_exact_form() {
        let value = serde_json::to_value(Holder {
            path: Text::new("path", b"/tmp/\xff\n\"x"),
            argv: Argv::new("argv", &[b"/bin/x".to_vec(), b"\xff".to_vec()], &Redactor::default()),
            n: 1,
        })
        .unwrap();
        assert_eq!(value["path_hex"], json!("2f746d702fff0a2278"));
        assert_eq!(value["argv"], json!(["/bin/x", "\u{fffd}"]));
        assert_eq!(value["argv_hex"], json!(["2f62696e2f78", "ff"]));
        assert_eq!(value["n"], 1);
        assert!(!serde_json::to_string(&value).unwrap().contains('\n'));
        let plain = serde_json::to_value(Holder {
            path: Text::path("path", None),
            argv: Argv::new("argv", &[b"ok".to_vec()], &Redactor::default()),
            n: 2,
        })
        .unwrap();
        assert_eq!(plain, json!({"path": null, "argv": ["ok"], "n": 2}));
    }

    #[test]
    fn a_secret_leaves_neither_rendering() {
        let value = serde_json::to_value(Holder {
            path: Text::command("path", b"DB_PASSWORD=s3cret", &Redactor::default()),
            argv: Argv::new(
                "argv",
                &[
                    b"env".to_vec(),
                    b"API_TOKEN=s3cr\xffet".to_vec(),
                    b"--password".to_vec(),
                    b"s3cret".to_vec(),
                ],
                &Redactor::default(),
            ),
            n: 3,
        })
        .unwrap();
        let text = value.to_string();
        assert!(!text.contains("s3cr") && !text.contains(&hex(b"s3cr")), "{text}");
        assert_eq!(value["path"], "DB_PASSWORD=***REDACTED***");
        assert_eq!(value["path_redacted"], true);
        assert_eq!(value["argv"], json!(["env", "API_TOKEN=***REDACTED***", "--password", "***REDACTED***"]));
        assert_eq!(value["argv_redacted"], true);
        assert!(value.get("argv_hex").is_none(), "what was not UTF-8 was the secret");
        let kept = Argv::new("argv", &[b"s\xff".to_vec(), b"API_TOKEN=x".to_vec()], &Redactor::default());
        let kept = serde_json::to_value(Holder { path: Text::new("path", b"p"), argv: kept, n: 4 }).unwrap();
        assert_eq!(kept["argv_hex"], json!(["73ff", hex(b"API_TOKEN=***REDACTED***")]));
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(errno_name(9999), "errno 9999");
        assert_eq!(
            serde_json::to_value(Outcome::of(-111)).unwrap(),
            json!({"result": -111, "error": "ECONNREFUSED"})
        );
        assert_eq!(serde_json::to_value(Outcome::of(3)).unwrap(), json!({"result": 3}));
    }
}
