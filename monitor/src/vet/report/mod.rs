//! The report of `premain vet` (issue 14): pure logic, no kernel. The orchestration fills an
//! [`Input`] (run facts, steps, installed distributions, the alerts premain printed, the baits
//! and the sink's capture), loads a [`Policy`] (or takes the default) and calls
//! [`Report::build`]; then [`Report::new_against`] for `--baseline`, a renderer
//! ([`Report::to_table`], [`Report::to_json`], [`Report::to_sarif_string`]) and
//! [`Report::exit_code`].
//!
//! - [`model`]: the input and the report (`premain.vet/v1`, its JSON form is the schema);
//! - [`policy`]: levels, `fail_on`, rules allowed per distribution (TOML);
//! - `build`: alerts, capture and baits into findings per distribution, verdicts;
//! - `baseline`: fingerprints and what is new against an earlier report;
//! - `json`, `sarif`, `table`: the three formats.

mod alerts;
mod baseline;
mod build;
mod json;
pub mod model;
mod network;
mod paths;
pub mod policy;
mod sarif;
mod table;
#[cfg(test)]
mod tests;

pub use model::*;
pub use policy::{Policy, PolicyError};
pub use sarif::SARIF_SCHEMA;

/// An output format (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "sarif" => Ok(Self::Sarif),
            _ => Err(format!("unknown format {s:?} (table, json, sarif)")),
        }
    }
}

/// The alerts in premain's stdout (one JSON object per line), for [`Input::alerts`]: each with
/// `step`. Lines that are not JSON objects are skipped.
pub fn alerts_from_lines(step: usize, text: &str) -> Vec<(usize, serde_json::Value)> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .filter(serde_json::Value::is_object)
        .map(|value| (step, value))
        .collect()
}

impl Report {
    /// The report in `format`; `colour` for a table on a terminal.
    pub fn render(&self, format: Format, colour: bool) -> String {
        match format {
            Format::Table => self.to_table(colour),
            Format::Json => self.to_json(),
            Format::Sarif => self.to_sarif_string(),
        }
    }

    /// 0 when the verdict passes, 1 when findings fail the policy (2, errors, is the caller's).
    pub fn exit_code(&self) -> i32 {
        match self.verdict.status {
            Status::Pass => 0,
            Status::Fail => 1,
        }
    }
}
