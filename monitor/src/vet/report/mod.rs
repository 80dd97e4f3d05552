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

impl Report {
    /// 0 when the verdict passes, 1 when findings fail the policy (2, errors, is the caller's).
    pub fn exit_code(&self) -> i32 {
        match self.verdict.status {
            Status::Pass => 0,
            Status::Fail => 1,
        }
    }
}
