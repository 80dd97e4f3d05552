//! `--baseline`: what is new against an earlier report. A finding is the same finding in
//! another run when its fingerprint is: the distribution's name (not its version), the rule,
//! the phase, the culprit file and the target, all normalised (no pids, times, bait values or
//! temporary paths), so an upgrade that starts reading `~/.ssh` stands out.

use std::collections::BTreeSet;

use super::model::{Comparison, Report, TargetKind, TargetRef};

/// 64-bit FNV-1a, written out so that fingerprints never change with a library.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The fingerprint of a finding (16 hex digits); `distribution` is the canonical name, or
/// empty for findings no distribution owns.
pub(crate) fn fingerprint(
    distribution: &str,
    rule: &str,
    phase: &str,
    culprit: Option<&str>,
    target: &TargetRef,
) -> String {
    // A destination is its host name when the capture told it (every name resolves to the
    // sink), its address otherwise; a leak is the bait and where it went.
    let what = match target.kind {
        TargetKind::Destination | TargetKind::DnsName => target.host.as_deref().unwrap_or(&target.text),
        _ => &target.text,
    };
    let bait = target.bait.as_deref().unwrap_or("");
    let key = format!(
        "{distribution}\u{1f}{rule}\u{1f}{phase}\u{1f}{}\u{1f}{:?}\u{1f}{what}\u{1f}{bait}",
        culprit.unwrap_or(""),
        target.kind
    );
    format!("{:016x}", fnv1a(&key))
}

impl Report {
    /// Only the findings `baseline` does not have; verdicts are those of the new findings.
    /// `file` names the baseline in the report.
    pub fn new_against(&self, baseline: &Report, file: Option<&str>) -> Report {
        let known: BTreeSet<&str> = baseline
            .distributions
            .iter()
            .flat_map(|d| d.findings.iter().map(|f| f.fingerprint.as_str()))
            .collect();
        let mut report = self.clone();
        let mut dropped = 0;
        for d in &mut report.distributions {
            let before = d.findings.len();
            d.findings.retain(|f| !known.contains(f.fingerprint.as_str()));
            dropped += before - d.findings.len();
        }
        report.recompute_verdict();
        report.baseline = Some(Comparison {
            file: file.map(str::to_owned),
            started: baseline.run.started.clone(),
            inputs: baseline.run.inputs.clone(),
            distributions: baseline
                .distributions
                .iter()
                .filter(|d| d.name.is_some())
                .map(|d| d.label())
                .collect(),
            known: dropped,
        });
        report
    }
}
