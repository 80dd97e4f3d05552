//! Prometheus metrics. Every label takes a bounded set of values: rules, phases, severities,
//! hooks, stages and sink names are fixed by the code or the config; the optional alert labels
//! (namespace, distribution, pod, culprit kind) are capped by `metrics.max_label_values`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use prometheus::{
    Encoder as _, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::{
    detect::{RuleId, Severity},
    kernel::counters::HOOKS,
    ops::config::AlertLabel,
    phase::Phase,
};

/// Where a record was lost.
pub(crate) mod stage {
    /// The kernel ring buffer was full.
    pub(crate) const RING_BUFFER: &str = "ring_buffer";
    /// A kernel table (in-flight syscalls, tracked processes) was full.
    pub(crate) const KERNEL_TABLE: &str = "kernel_table";
    /// The record could not be decoded.
    pub(crate) const DECODE: &str = "decode";
    /// A sink's in-memory queue was full.
    pub(crate) const USERSPACE_QUEUE: &str = "userspace_queue";
    /// A sink dropped it (spool bound reached).
    pub(crate) const SINK: &str = "sink";
    /// Received, but its process was gone before it could be identified (its exec record was
    /// lost): whether it was Python cannot be known.
    pub(crate) const UNATTRIBUTED: &str = "unattributed";
}

/// Handles on every metric; cheap to clone and shared by the daemon, sinks and watchers.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub registry: Registry,
    alerts: IntCounterVec,
    alert_labels: Arc<Vec<AlertLabel>>,
    label_values: Arc<Mutex<HashMap<AlertLabel, HashSet<String>>>>,
    max_label_values: usize,
    pub alerts_folded: IntCounter,
    /// Actions of the application's own module-level code that broke a rule, not reported.
    pub application_code_quiet: IntCounterVec,
    pub events: IntCounterVec,
    pub runtime_skipped: IntCounterVec,
    /// Records sent with a field the kernel could not read, by hook.
    pub read_failures: IntCounterVec,
    /// Ring drains by what started them (see `pace`).
    pub reader_drains: IntCounterVec,
    /// Records found by a settle or tick drain: sent without waking the reader while it was
    /// waiting to be woken (see `pace`).
    pub reader_unwoken: IntCounter,
    pub lost: IntCounterVec,
    pub tracked_processes: IntGauge,
    pub interpreter_images: IntGauge,
    pub probe_failures: IntCounter,
    pub held: IntCounter,
    pub hold_seconds: Histogram,
    pub late_interpreters: IntCounter,
    pub ring_buffer_fill: Gauge,
    pub ring_buffer_bytes: IntGauge,
    pub delivered: IntCounterVec,
    pub delivery_failures: IntCounterVec,
    pub sink_queue: IntGaugeVec,
    pub sink_spool_bytes: IntGaugeVec,
    pub reloads: IntCounterVec,
    pub ready: IntGauge,
    pub pods_known: IntGauge,
    pub kubernetes_watch_errors: IntCounter,
    /// Catalogued credential files the file watch has marks on.
    pub file_watch_files: IntGauge,
    pub file_watch_persistence_files: IntGauge,
    pub file_watch_persistence_dirs: IntGauge,
    /// Opens of watched files let through because the event loop did not decide in time.
    pub file_watch_late: IntCounter,
    /// Alerting opens only the file watch saw (no kernel program recorded them).
    pub file_watch_unseen: IntCounter,
    /// Exec permission decisions of the exec watch, by outcome (see [`EXEC_OUTCOMES`]).
    pub exec_decisions: IntCounterVec,
    /// How long an exec waited for its decision.
    pub exec_decision_seconds: Histogram,
    /// Filesystems whose execs the exec watch decides.
    pub exec_watch_filesystems: IntGauge,
    /// Actions of alerts under dry-run or enforce, by rule and outcome (repeats included).
    pub enforcement: IntCounterVec,
    /// How long an open of a watched credential file waited for premain's answer.
    pub open_decision_seconds: Histogram,
}

/// Outcomes of an exec decision: `python` and `other` (judged), `remembered` (a verdict kept
/// from an earlier run), `own` (premain's own execs), `unjudged` (the file could not be
/// examined), `late` (not decided within the bound: allowed), `busy` (too many decisions at
/// once: allowed undecided).
pub(crate) const EXEC_OUTCOMES: [&str; 7] =
    ["python", "other", "remembered", "own", "unjudged", "late", "busy"];

/// Alert labels always present.
const ALERT_LABELS: [&str; 3] = ["rule", "phase", "severity"];

impl Metrics {
    pub(crate) fn new(alert_labels: &[AlertLabel], max_label_values: usize) -> Self {
        let registry = Registry::new_custom(Some("premain".into()), None).expect("valid prefix");
        let mut labels = alert_labels.to_vec();
        labels.sort();
        labels.dedup();
        let names: Vec<&str> =
            ALERT_LABELS.iter().copied().chain(labels.iter().map(|l| l.as_str())).collect();
        let alerts = IntCounterVec::new(
            Opts::new("alerts_total", "Alerts raised (before folding) by rule, phase and severity"),
            &names,
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let metrics = Self {
            alerts,
            alert_labels: Arc::new(labels),
            label_values: Arc::default(),
            max_label_values,
            alerts_folded: counter("alerts_folded_total", "Alert repeats folded into an open alert"),
            application_code_quiet: counter_vec(
                "application_code_actions_total",
                "Actions of the application's own module-level code that broke a rule, not reported (alerts.application_code = quiet), by rule",
                &["rule"],
            ),
            events: counter_vec("events_total", "Records of tracked processes received, by hook", &["hook"]),
            runtime_skipped: counter_vec(
                "runtime_calls_skipped_total",
                "Calls of processes whose code was all runtime that the kernel did not record, by hook",
                &["hook"],
            ),
            read_failures: counter_vec(
                "kernel_read_failures_total",
                "Records sent with a field the kernel could not read (user memory not paged in), by hook",
                &["hook"],
            ),
            reader_drains: counter_vec(
                "reader_drains_total",
                "Kernel ring buffer drains, by trigger (wakeup, poll, settle, tick)",
                &["trigger"],
            ),
            reader_unwoken: counter(
                "reader_unwoken_records_total",
                "Records that waited in the ring without waking the reader until a settle or tick drain",
            ),
            lost: counter_vec(
                "events_lost_total",
                "Records or alerts lost, by hook and stage (ring_buffer, kernel_table, decode, unattributed, userspace_queue, sink)",
                &["hook", "stage"],
            ),
            tracked_processes: gauge(
                "tracked_processes",
                "Python processes and their descendants being tracked",
            ),
            interpreter_images: gauge("interpreter_images", "Interpreter binaries with uprobes attached"),
            probe_failures: counter(
                "interpreter_probe_failures_total",
                "Interpreter binaries whose uprobes failed to attach",
            ),
            held: counter("processes_held_total", "New interpreter runs stopped until judged"),
            hold_seconds: Histogram::with_opts(
                HistogramOpts::new("hold_duration_seconds", "How long a held interpreter run waited")
                    .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            )
            .expect("valid metric"),
            late_interpreters: counter(
                "late_interpreters_total",
                "Interpreter runs phased from syscall order because they were not held",
            ),
            ring_buffer_fill: Gauge::new(
                "ring_buffer_fill_ratio",
                "Kernel ring buffer fill at the last sample (0-1)",
            )
            .expect("valid metric"),
            ring_buffer_bytes: gauge("ring_buffer_size_bytes", "Kernel ring buffer size"),
            delivered: counter_vec("alerts_delivered_total", "Records delivered, by sink", &["sink"]),
            delivery_failures: counter_vec(
                "alert_delivery_failures_total",
                "Failed delivery attempts (each retried), by sink",
                &["sink"],
            ),
            sink_queue: gauge_vec("sink_queue_depth", "Records waiting in a sink's memory queue", &["sink"]),
            sink_spool_bytes: gauge_vec(
                "sink_spool_bytes",
                "Bytes not yet delivered in a sink's on-disk spool",
                &["sink"],
            ),
            reloads: counter_vec("config_reloads_total", "Configuration reloads, by result", &["result"]),
            ready: gauge("ready", "1 once every program is attached"),
            pods_known: gauge("kubernetes_pods", "Pods of this node in the metadata cache"),
            kubernetes_watch_errors: counter(
                "kubernetes_watch_errors_total",
                "Failed or broken pod watch requests to the API server",
            ),
            file_watch_files: gauge(
                "file_watch_files",
                "Catalogued credential files the file watch is asked about before every open",
            ),
            file_watch_persistence_files: gauge(
                "file_watch_persistence_files",
                "Persistence targets (files) the file watch is asked about before every open",
            ),
            file_watch_persistence_dirs: gauge(
                "file_watch_persistence_directories",
                "Persistence directories the file watch is asked about before every open of a file in them, a new one included",
            ),
            file_watch_late: counter(
                "file_watch_late_total",
                "Opens of watched credential files let through before premain had decided (decided later)",
            ),
            file_watch_unseen: counter(
                "file_watch_unseen_total",
                "Alerting opens of credential files and persistence targets that only the file watch saw (32-bit syscalls, lost records)",
            ),
            exec_decisions: counter_vec(
                "exec_decisions_total",
                "Execs of files the exec watch had not let through before, by outcome (python, other, remembered, own, unjudged, late, busy)",
                &["outcome"],
            ),
            exec_decision_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "exec_decision_seconds",
                    "How long an exec of a file not let through before waited for its decision",
                )
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0]),
            )
            .expect("valid metric"),
            exec_watch_filesystems: gauge(
                "exec_watch_filesystems",
                "Filesystems whose execs wait for premain's verdict (0: the SIGSTOP hold is the fallback)",
            ),
            enforcement: counter_vec(
                "enforcement_decisions_total",
                "Actions of alerts under dry-run or enforce, by rule and outcome (denied, killed, would-deny, timed-out, not-enforced; denied-without-alert and would-deny-without-alert: the guard's kernel view decided on an action that raises no alert)",
                &["rule", "outcome"],
            ),
            open_decision_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "open_decision_seconds",
                    "How long an open of a watched credential file waited for premain's answer (allow or deny)",
                )
                .buckets(vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1]),
            )
            .expect("valid metric"),
            registry,
        };
        let build =
            IntGaugeVec::new(Opts::new("build_info", "premain's version; always 1"), &["version", "rustc"])
                .expect("valid metric");
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("PREMAIN_RUSTC").unwrap_or("unknown"),
            ])
            .set(1);
        for collector in [
            Box::new(build) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.alerts.clone()),
            Box::new(metrics.alerts_folded.clone()),
            Box::new(metrics.application_code_quiet.clone()),
            Box::new(metrics.events.clone()),
            Box::new(metrics.runtime_skipped.clone()),
            Box::new(metrics.read_failures.clone()),
            Box::new(metrics.reader_drains.clone()),
            Box::new(metrics.reader_unwoken.clone()),
            Box::new(metrics.lost.clone()),
            Box::new(metrics.tracked_processes.clone()),
            Box::new(metrics.interpreter_images.clone()),
            Box::new(metrics.probe_failures.clone()),
            Box::new(metrics.held.clone()),
            Box::new(metrics.hold_seconds.clone()),
            Box::new(metrics.late_interpreters.clone()),
            Box::new(metrics.ring_buffer_fill.clone()),
            Box::new(metrics.ring_buffer_bytes.clone()),
            Box::new(metrics.delivered.clone()),
            Box::new(metrics.delivery_failures.clone()),
            Box::new(metrics.sink_queue.clone()),
            Box::new(metrics.sink_spool_bytes.clone()),
            Box::new(metrics.reloads.clone()),
            Box::new(metrics.ready.clone()),
            Box::new(metrics.pods_known.clone()),
            Box::new(metrics.kubernetes_watch_errors.clone()),
            Box::new(metrics.file_watch_files.clone()),
            Box::new(metrics.file_watch_persistence_files.clone()),
            Box::new(metrics.file_watch_persistence_dirs.clone()),
            Box::new(metrics.file_watch_late.clone()),
            Box::new(metrics.file_watch_unseen.clone()),
            Box::new(metrics.exec_decisions.clone()),
            Box::new(metrics.exec_decision_seconds.clone()),
            Box::new(metrics.exec_watch_filesystems.clone()),
            Box::new(metrics.enforcement.clone()),
            Box::new(metrics.open_decision_seconds.clone()),
        ] {
            metrics.registry.register(collector).expect("distinct metric names");
        }
        metrics
    }

    /// Counts one alert. `optional` gives the value of each optional label the alert has.
    pub(crate) fn alert(
        &self,
        rule: &str,
        phase: &str,
        severity: &str,
        optional: impl Fn(AlertLabel) -> Option<String>,
    ) {
        let mut values: Vec<String> = vec![rule.into(), phase.into(), severity.into()];
        if !self.alert_labels.is_empty() {
            let mut seen = self.label_values.lock().unwrap_or_else(|p| p.into_inner());
            for label in self.alert_labels.iter() {
                let value = optional(*label).unwrap_or_default();
                let known = seen.entry(*label).or_default();
                let bounded = if value.is_empty() || known.contains(&value) {
                    value
                } else if known.len() < self.max_label_values {
                    known.insert(value.clone());
                    value
                } else {
                    "other".to_owned()
                };
                values.push(bounded);
            }
        }
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        self.alerts.with_label_values(&refs).inc();
    }

    /// Creates, at 0, every series whose labels are known before anything happens, so that
    /// `rate()` and `increase()` see the first increment and an absent series means premain is
    /// not exporting: alerts of the enabled `rules` (with their severities) in each pre-main
    /// phase and unreported actions of the application's own code, records and losses of every
    /// hook and stage, reloads. (Drains by trigger are created by the reader, sinks' series by
    /// each sink.)
    pub(crate) fn expect(&self, rules: impl Iterator<Item = (RuleId, Severity)>) {
        let optional = vec![String::new(); self.alert_labels.len()];
        for (rule, severity) in rules {
            self.application_code_quiet.with_label_values(&[rule.as_str()]);
            for outcome in crate::enforce::Outcome::ALL {
                self.enforcement.with_label_values(&[rule.as_str(), outcome.as_str()]);
            }
            for phase in [Phase::Install, Phase::Startup, Phase::Import] {
                let mut values = vec![rule.as_str(), phase.as_str(), severity.as_str()];
                values.extend(optional.iter().map(String::as_str));
                self.alerts.with_label_values(&values);
            }
        }
        for hook in HOOKS {
            self.events.with_label_values(&[hook]);
            self.runtime_skipped.with_label_values(&[hook]);
            self.read_failures.with_label_values(&[hook]);
            for stage in [stage::RING_BUFFER, stage::KERNEL_TABLE, stage::UNATTRIBUTED] {
                self.lost.with_label_values(&[hook, stage]);
            }
        }
        self.lost.with_label_values(&["unknown", stage::DECODE]);
        for stage in [stage::USERSPACE_QUEUE, stage::SINK] {
            self.lost.with_label_values(&["alert", stage]);
        }
        for result in ["success", "failure"] {
            self.reloads.with_label_values(&[result]);
        }
        for outcome in EXEC_OUTCOMES {
            self.exec_decisions.with_label_values(&[outcome]);
        }
    }

    /// Records lost at `stage`.
    pub(crate) fn lose(&self, hook: &str, stage: &str, count: u64) {
        self.lost.with_label_values(&[hook, stage]).inc_by(count);
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_labels_are_capped() {
        let metrics = Metrics::new(&[AlertLabel::Namespace], 2);
        for ns in ["a", "b", "c", "d", "a"] {
            metrics.alert("credential-read", "startup", "critical", |_| Some(ns.into()));
        }
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains(r#"namespace="a""#) && text.contains(r#"namespace="b""#), "{text}");
        assert!(!text.contains(r#"namespace="c""#), "{text}");
        assert!(text.contains(r#"premain_alerts_total{namespace="other",phase="startup",rule="credential-read",severity="critical"} 2"#), "{text}");
        assert!(text.contains("premain_build_info{"), "{text}");
    }
}
