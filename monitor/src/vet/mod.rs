//! `premain vet`: packages put through install, start-up and import in a sandbox no package
//! code can leave, watched by premain's own engine.
//!
//! - [`netns`]: a network namespace (loopback only, every address routed to it) and entering it;
//! - [`sink`]: the catch-all listener, DNS answerer and recorder, started inside a namespace;
//! - [`capture`]: what the sink recorded, and the search for a bait value in it;
//! - [`bait`]: the bait HOME and environment, values unique to the run;
//! - [`jail`]: the steps' processes: own cgroup, real homes hidden, the namespace, no root;
//! - [`observer`]: the premain that watches the run;
//! - [`installed`]: what an install added, read from disk;
//! - [`run`]: the steps, from the venv to the imports, and what they were seen doing.

pub mod bait;
pub mod capture;
mod dns;
mod encode;
pub mod installed;
pub mod jail;
pub mod netns;
pub mod observer;
mod route;
pub mod run;
pub mod sink;
mod sklookup;
#[cfg(test)]
mod tests;
mod udp;

/// What the run saw, until the report layer renders it: the steps, what was installed, the
/// alerts by step, and which baits were seen leaving.
pub fn summary(facts: &run::Facts) -> serde_json::Value {
    let leaks: Vec<_> = facts
        .baits
        .iter()
        .filter_map(|b| {
            let found = facts.capture.contains(b.value.as_bytes());
            (!found.is_empty())
                .then(|| serde_json::json!({"bait": format!("{:?}", b.kind), "seen": found.len()}))
        })
        .collect();
    serde_json::json!({
        "python": facts.python,
        "installer": facts.installer,
        "steps": facts.steps,
        "install_failed": facts.install_failed,
        "installed": facts.installed.iter().map(|d| serde_json::json!({"name": d.name, "version": d.version, "modules": d.modules})).collect::<Vec<_>>(),
        "alerts": facts.alerts.iter().map(|(i, a)| serde_json::json!({"step": i, "alert": a})).collect::<Vec<_>>(),
        "leaks": leaks,
        "dns": facts.capture.dns.iter().map(|q| q.name.clone()).collect::<Vec<_>>(),
    })
}

/// Whether any package-step alert or leak was seen.
pub fn any_finding(facts: &run::Facts) -> bool {
    facts.alerts.iter().any(|(i, _)| facts.steps[*i].kind != run::StepKind::Prepare)
        || facts.baits.iter().any(|b| !facts.capture.contains(b.value.as_bytes()).is_empty())
}
