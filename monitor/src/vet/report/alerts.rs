//! Reading `premain.alert/v1` objects as premain prints them, tolerant of missing fields (an
//! older or newer premain, a field left `null`).

use std::{collections::HashMap, time::SystemTime};

use serde_json::Value;

/// What the report needs of one alert.
#[derive(Clone, Debug, Default)]
pub(crate) struct Alert {
    pub step: usize,
    pub id: Option<String>,
    pub time: Option<SystemTime>,
    pub rule: String,
    pub phase: String,
    pub culprit: Culprit,
    pub action: Action,
    pub count: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Culprit {
    pub kind: String,
    pub party: Option<String>,
    pub path: Option<String>,
    pub module: Option<String>,
    pub module_path: Option<String>,
    pub distribution: Option<String>,
    pub version: Option<String>,
    pub hook: Option<String>,
    pub source_dir: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Action {
    /// `open`, `connect`, `send`, `exec`, `process-memory`, `socket`, `rename`, `link`,
    /// `symlink`, `io-uring`.
    pub kind: String,
    /// File, new name, program or `/proc/<pid>/mem`.
    pub path: Option<String>,
    pub alias_of: Option<String>,
    pub category: Option<String>,
    /// `connect`/`send`: the rendered address (`1.2.3.4:443`, `[::1]:53`, a UNIX path).
    pub addr: Option<String>,
    pub family: Option<String>,
    pub argv: Vec<String>,
    pub via: Option<String>,
    pub socket: Option<String>,
    pub opcode: Option<String>,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Alert {
    /// The alert in `value`, or `None` when it is not one (a loss record, another schema).
    pub(crate) fn parse(step: usize, value: &Value) -> Option<Self> {
        if value.get("kind").and_then(Value::as_str).is_some_and(|k| k != "alert") {
            return None;
        }
        let rule = s(value, "rule")?;
        let null = Value::Null;
        let c = value.get("culprit").unwrap_or(&null);
        let a = value.get("action").unwrap_or(&null);
        let socket = match (s(a, "family"), s(a, "socket_type")) {
            (Some(f), Some(t)) => Some(format!("{f} {t}")),
            (Some(f), None) => Some(f),
            _ => None,
        };
        let kind = s(a, "type").unwrap_or_default();
        Some(Self {
            step,
            id: s(value, "id"),
            time: s(value, "time").as_deref().and_then(parse_rfc3339),
            rule,
            phase: s(value, "phase").unwrap_or_else(|| "unknown".into()),
            culprit: Culprit {
                kind: s(c, "kind").unwrap_or_else(|| "unknown".into()),
                party: s(c, "party"),
                path: s(c, "path"),
                module: s(c, "module"),
                module_path: s(c, "module_path"),
                distribution: s(c, "distribution"),
                version: s(c, "version"),
                hook: s(c, "hook"),
                source_dir: s(c, "source_dir"),
            },
            action: Action {
                socket: if kind == "socket" { socket } else { None },
                kind,
                path: s(a, "path"),
                alias_of: s(a, "alias_of"),
                category: s(a, "category"),
                addr: s(a, "addr"),
                family: s(a, "family"),
                argv: a
                    .get("argv")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default(),
                via: s(a, "via"),
                opcode: s(a, "opcode"),
            },
            count: value.get("count").and_then(Value::as_u64).unwrap_or(1).max(1),
        })
    }

    /// The culprit's file: the `.pth`/customize/setup/backend file, else the module's.
    pub(crate) fn culprit_file(&self) -> Option<&str> {
        self.culprit.path.as_deref().or(self.culprit.module_path.as_deref())
    }
}

/// Every alert of `input`, folded re-prints merged into their first print (same `id`, the
/// largest `count`).
pub(crate) fn parse_all(alerts: &[(usize, Value)]) -> Vec<Alert> {
    let mut out: Vec<Alert> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (step, value) in alerts {
        let Some(alert) = Alert::parse(*step, value) else { continue };
        if let Some(id) = &alert.id {
            if let Some(&i) = by_id.get(id) {
                out[i].count = out[i].count.max(alert.count);
                continue;
            }
            by_id.insert(id.clone(), out.len());
        }
        out.push(alert);
    }
    out
}

/// `2026-11-21T17:37:23.551567Z` (UTC, as premain writes it; an offset is honoured).
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut at = 19;
    let mut nanos: i64 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let digits = &text[start..at];
        let padded: String = digits.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = padded.parse().ok()?;
    }
    let offset = match b.get(at) {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let o = num(at + 1..at + 3)? * 3600 + num(at + 4..at + 6)? * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, u32::try_from(nanos).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::time::rfc3339;

    #[test]
    fn rfc3339_round_trips() {
        for secs in [0, 1_700_000_000, 1_795_000_123] {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, 551_567_000);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        let plus = parse_rfc3339("2026-11-21T18:37:23+01:00").unwrap();
        assert_eq!(plus, parse_rfc3339("2026-11-21T17:37:23Z").unwrap());
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn folded_reprints_merge_and_losses_are_skipped() {
        let a = serde_json::json!({"kind":"alert","id":"x-1","rule":"network-connect","phase":"import",
            "culprit":{"kind":"module"},"action":{"type":"connect","addr":"192.0.2.1:443","port":443},"count":1});
        let mut b = a.clone();
        b["count"] = 7.into();
        let loss = serde_json::json!({"kind":"loss","hook":"x","count":3});
        let all = parse_all(&[(0, a), (0, loss), (1, b), (1, serde_json::json!({"rule": "io-uring"}))]);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].count, 7);
        assert_eq!(all[0].action.addr.as_deref(), Some("192.0.2.1:443"));
        assert_eq!(all[1].culprit.kind, "unknown");
    }
}
