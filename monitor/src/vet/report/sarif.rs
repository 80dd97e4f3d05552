//! SARIF 2.1.0 for code scanning: one run, a rule per premain rule (and `exfiltration`), each
//! finding a result whose location is the culprit file. Files of the venv's site-packages, the
//! build's source tree, the bait home and the venv are relative to `SITE_PACKAGES`, `SRCROOT`,
//! `HOME` and `VENV` (described in `originalUriBaseIds`); findings allowed by the policy carry
//! an external suppression; `partialFingerprints` hold the baseline fingerprint.

use serde_json::{Value, json};

use super::{
    model::{DistributionReport, Finding, Report, TargetKind},
    policy::{RULES, describe},
};

pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The project's page when the package names one (`homepage` in Cargo.toml).
const INFORMATION_URI: &str = env!("CARGO_PKG_HOMEPAGE");

/// Percent-encodes what a URI reference may not hold as is (RFC 3986), keeping `/`.
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The artifact location of a normalised culprit path.
fn artifact(path: &str) -> Value {
    let based = [
        ("<site-packages>/", "SITE_PACKAGES"),
        ("<source>/", "SRCROOT"),
        ("~/", "HOME"),
        ("<venv>/", "VENV"),
    ];
    for (prefix, base) in based {
        if let Some(rest) = path.strip_prefix(prefix) {
            return json!({"uri": uri_encode(rest), "uriBaseId": base});
        }
    }
    if let Some(rest) = path.strip_prefix("<tmp>/") {
        let rest = rest.trim_start_matches("…/");
        return json!({"uri": uri_encode(rest), "uriBaseId": "TMP"});
    }
    if path.starts_with('/') {
        return json!({"uri": format!("file://{}", uri_encode(path))});
    }
    json!({"uri": uri_encode(path)})
}

fn message(d: &DistributionReport, f: &Finding) -> String {
    let culprit = match (&f.culprit.path, &f.culprit.module) {
        (Some(p), _) => format!("{} {p}", f.culprit.kind),
        (None, Some(m)) => format!("{} {m}", f.culprit.kind),
        (None, None) => f.culprit.kind.clone(),
    };
    let mut target = f.target.text.clone();
    if let Some(h) = &f.target.host {
        target = format!("{target} ({h})");
    }
    if let Some(c) = &f.target.category {
        target = format!("{target} [{c}]");
    }
    let what = match (&f.target.bait, &f.target.encoding) {
        (Some(bait), Some(enc)) => {
            let how =
                if f.target.kind == TargetKind::DnsName { "a DNS name under" } else { "what was sent to" };
            format!("the value of bait {bait} was found ({enc}) in {how} {target}")
        }
        _ => format!("{}: {target}", f.rule),
    };
    let times = if f.count > 1 { format!(" ({} times)", f.count) } else { String::new() };
    format!("{}: during {}, {culprit}: {what}{times}", d.label(), f.phase)
}

impl Report {
    /// The report as a SARIF 2.1.0 log.
    pub fn to_sarif(&self) -> Value {
        let used = |rule: &str| self.distributions.iter().any(|d| d.findings.iter().any(|f| f.rule == rule));
        let rules: Vec<&str> =
            RULES.iter().copied().filter(|r| self.policy.levels.contains_key(*r) || used(r)).collect();
        let rule_objects: Vec<Value> = rules
            .iter()
            .map(|r| {
                json!({
                    "id": r,
                    "name": r,
                    "shortDescription": {"text": describe(r)},
                    // A rule off but for some distribution: no level by default.
                    "defaultConfiguration": {"level": self.policy.levels.get(*r).map_or("none", |l| l.as_str())},
                })
            })
            .collect();
        let mut results = Vec::new();
        for d in &self.distributions {
            for f in &d.findings {
                let index = rules.iter().position(|r| *r == f.rule);
                let location = match &f.culprit.path {
                    Some(p) => artifact(p),
                    // No file to point at: the distribution or the input.
                    None => {
                        json!({"uri": uri_encode(&d.name.clone().or_else(|| d.input.clone()).unwrap_or_default())})
                    }
                };
                let mut logical = json!({"kind": "package"});
                if let Some(n) = &d.name {
                    logical["name"] = json!(n);
                    logical["fullyQualifiedName"] = json!(d.label());
                } else if let Some(i) = &d.input {
                    logical["name"] = json!(i);
                }
                let mut result = json!({
                    "ruleId": f.rule,
                    "level": f.level.as_str(),
                    "message": {"text": message(d, f)},
                    "locations": [{"physicalLocation": {"artifactLocation": location}, "logicalLocations": [logical]}],
                    "partialFingerprints": {"premainVet/v1": f.fingerprint},
                    "properties": {
                        "distribution": d.name,
                        "version": d.version,
                        "input": d.input,
                        "phase": f.phase,
                        "steps": f.steps,
                        "culprit": f.culprit,
                        "target": f.target,
                        "count": f.count,
                        "fails": f.fails,
                    },
                });
                if let Some(i) = index {
                    result["ruleIndex"] = json!(i);
                }
                if let Some(why) = &f.allowed {
                    result["suppressions"] = json!([{"kind": "external", "justification": why}]);
                }
                results.push(result);
            }
        }
        let mut driver = json!({
            "name": "premain vet",
            "version": env!("CARGO_PKG_VERSION"),
            "rules": rule_objects,
        });
        if !INFORMATION_URI.is_empty() {
            driver["informationUri"] = json!(INFORMATION_URI);
        }
        let base = |text: &str| json!({"description": {"text": text}});
        json!({
            "$schema": SARIF_SCHEMA,
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": driver},
                "originalUriBaseIds": {
                    "SITE_PACKAGES": base("the site-packages directory of the venv vet installed into"),
                    "SRCROOT": base("the source tree of the distribution being built"),
                    "HOME": base("the bait home directory of the run"),
                    "VENV": base("the venv vet installed into"),
                    "TMP": base("a temporary directory of the run"),
                },
                "invocations": [{
                    "executionSuccessful": true,
                    "startTimeUtc": self.run.started,
                }],
                "results": results,
                "properties": {
                    "verdict": self.verdict,
                    "inputs": self.run.inputs,
                    "baseline": self.baseline,
                },
            }],
        })
    }

    /// [`Report::to_sarif`], pretty.
    pub fn to_sarif_string(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.to_sarif()).expect("SARIF serialises");
        text.push('\n');
        text
    }
}
