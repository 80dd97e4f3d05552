//! The JSON form of a report (`premain.vet/v1`), and reading one back (`--baseline`).

use super::model::{Report, SCHEMA};

impl Report {
    /// Pretty JSON; field order is the structs', lists are sorted, so runs compare by `diff`.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a report always serialises");
        text.push('\n');
        text
    }

    /// A report read back, refused (one line) unless it is `premain.vet/v1`.
    pub fn from_json(text: &str) -> Result<Report, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a premain vet report: {e}"))?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => return Err(format!("report schema is {other:?}, expected {SCHEMA:?}")),
            None => return Err(format!("not a premain vet report: no \"schema\": {SCHEMA:?}")),
        }
        serde_json::from_value(value).map_err(|e| format!("bad {SCHEMA} report: {e}"))
    }
}
