//! SIGHUP: the configuration file read again, between two drains of the ring.

use super::{
    Daemon, compile,
    options::{RunOptions, configuration},
};
use crate::ops::config::Config;

/// Re-reads the configuration file; a file that does not parse or compile leaves the running
/// configuration in force.
pub(super) fn reload(opts: &RunOptions, config: &mut Config, daemon: &mut Daemon) {
    let Some(path) = &opts.config else {
        tracing::info!("SIGHUP: no --config file to reload");
        return;
    };
    let fresh = configuration(opts).and_then(|c| {
        let (rules, redactor, policy) = compile(&c, &path.display().to_string())?;
        Ok((c, rules, redactor, policy))
    });
    let fresh = fresh.and_then(|(c, rules, redactor, policy)| {
        if policy.any(crate::enforce::Mode::Enforce) && daemon.watch.is_none() {
            return Err(super::RunError::Enforce("the credential file watch is not running".into()));
        }
        Ok((c, rules, redactor, policy))
    });
    let (fresh, rules, redactor, policy) = match fresh {
        Ok(ok) => ok,
        Err(err) => {
            daemon.metrics.reloads.with_label_values(&["failure"]).inc();
            tracing::error!(error = %err, "configuration reload refused; the running configuration stays in force");
            return;
        }
    };
    let restart_only = [
        ("limits", fresh.limits != config.limits),
        ("metrics", fresh.metrics != config.metrics),
        ("kubernetes", fresh.kubernetes != config.kubernetes),
        ("sinks", fresh.sinks() != config.sinks()),
        ("shutdown", fresh.shutdown != config.shutdown),
    ];
    let mut kept = config.clone();
    for (section, changed) in restart_only {
        if changed {
            tracing::warn!(section, "configuration section changed: it takes effect when premain restarts");
        }
    }
    kept.alerts = fresh.alerts.clone();
    kept.credentials = fresh.credentials;
    kept.rules = fresh.rules;
    kept.allow = fresh.allow;
    kept.install = fresh.install;
    if fresh.enforcement != config.enforcement {
        tracing::info!(mode = fresh.enforcement.mode.as_str(), "enforcement changed");
    }
    kept.enforcement = fresh.enforcement;
    if let Some(watch) = &mut daemon.watch {
        watch.set_persistence_policy(super::watches_persistence(&policy));
    }
    daemon.pipeline.policy = policy;
    daemon.metrics.expect(rules.enabled());
    daemon.pipeline.rules = rules;
    daemon.pipeline.redactor = redactor;
    daemon.rescan_credentials();
    if let Err(err) = daemon.pipeline.configure_guard(&mut daemon.kernel, true) {
        tracing::warn!(error = %err, "the guard keeps its previous configuration");
    }
    daemon.pipeline.alerts.set_options(&fresh.alerts);
    *config = kept;
    daemon.metrics.reloads.with_label_values(&["success"]).inc();
    tracing::info!(file = %path.display(), "configuration reloaded");
}
