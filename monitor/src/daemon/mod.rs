//! `premain run`: start-up checks, load and attach, then the event loop until a signal.

mod pace;

use std::{
    io::{self, Write as _},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval, sleep, sleep_until},
};

use crate::{
    alert::{Alert, Alerts, Kind, Loss, Record},
    daemon::pace::{Pace, Tell},
    detect::Rules,
    k8s::{K8sError, PodCache, WatchOptions, spawn_watch},
    kernel::btf::Btf,
    kernel::counters::{Snapshot, hook_name},
    kernel::decode::decode,
    kernel::error::StartError,
    kernel::loader::{self, KernelMaps},
    kernel::offsets,
    kernel::preflight,
    kernel::ring_fill::RingFill,
    ops::config::{AlertLabel, Config, ConfigError, Switch},
    ops::endpoints::{self, Health},
    ops::metrics::{Metrics, stage},
    output::sink::{SinkError, Sinks},
    output::{
        event_line::event_line,
        time::{Clock, rfc3339},
    },
    phase::{Phase, PhaseEngine},
    process::seed,
    process::tracker::{Tracker, judge_from_proc},
    python::install,
};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The configuration file; none runs with the defaults.
    pub config: Option<PathBuf>,
    /// Command-line values that win over the file's (at start and on every reload).
    pub overrides: Overrides,
    /// Print every event of a tracked process as a JSON line on stdout.
    pub events: bool,
    /// Test hook: wait this long after `ready` before reading records.
    pub stall_reader: Option<Duration>,
    /// The node-wide single-instance lock.
    pub lock_file: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub ring_buffer_size: Option<u32>,
    pub max_processes: Option<usize>,
    pub fold_window_secs: Option<u64>,
    pub metrics_address: Option<String>,
}

impl Overrides {
    fn apply(&self, config: &mut Config) {
        if let Some(size) = self.ring_buffer_size {
            config.limits.ring_buffer_size = toml::Spanned::new(0..0, size);
        }
        if let Some(max) = self.max_processes {
            config.limits.max_processes = max;
        }
        if let Some(secs) = self.fold_window_secs {
            config.alerts.fold_window_secs = secs;
        }
        if let Some(address) = &self.metrics_address {
            config.metrics.address = toml::Spanned::new(0..0, address.clone());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("--ring-buffer-size must be a power of two of at least 4096 bytes, not {0}")]
    RingSize(u32),
    #[error("--metrics-address must be IP:PORT (or empty to turn the endpoint off), not {0:?}")]
    MetricsAddress(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Lock(#[from] crate::ops::instance::LockError),
    #[error(transparent)]
    Kubernetes(K8sError),
    #[error("cannot listen on metrics.address {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("event loop failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads the configuration the daemon would run with.
pub fn configuration(opts: &RunOptions) -> Result<Config, RunError> {
    let mut config = match &opts.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    opts.overrides.apply(&mut config);
    let ring = *config.limits.ring_buffer_size.get_ref();
    if !ring.is_power_of_two() || ring < 4096 {
        return Err(RunError::RingSize(ring));
    }
    if let Some(address) = &opts.overrides.metrics_address
        && !address.is_empty()
        && config.metrics.socket_addr().is_none()
    {
        return Err(RunError::MetricsAddress(address.clone()));
    }
    Ok(config)
}

/// Records handled before the loop lets its other work run.
const DRAIN_BUDGET: usize = 8192;

pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    // Handlers first: a SIGHUP sent while starting must not kill the daemon (the default
    // action); it is acted on once the loop runs.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    tune_allocator();
    let config = configuration(&opts)?;
    // Nothing is started (no port bound, no spool created) for a run that cannot work.
    preflight::check_privileges()?;
    let _lock = crate::ops::instance::acquire(&opts.lock_file)?;
    preflight::check_btf()?;
    let rules = Rules::from_config(&config).map_err(|message| ConfigError {
        file: "configuration".into(),
        line: 0,
        column: 0,
        message,
    })?;
    let metrics = Metrics::new(&config.metrics.alert_labels, config.metrics.max_label_values);
    let health = Health::default();
    health.beat();
    // Endpoints and sinks first: a taken port or an unwritable spool fails before any program
    // is loaded, and /healthz answers while the verifier runs.
    if let Some(addr) = config.metrics.socket_addr() {
        let bound = endpoints::serve(addr, metrics.clone(), health.clone())
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    }
    let clock = Clock::new();
    let mut alerts = Alerts::new(clock, &config.alerts);
    alerts.set_pods(pod_watch(&config, &metrics)?, config.kubernetes.pod_labels);
    let sinks = Sinks::start(&config.sinks(), config.limits.queue_capacity, &metrics, alerts.node())?;

    let tracefs = preflight::tracefs()?;
    preflight::check_tracepoints(&tracefs, &loader::tracepoints())?;
    preflight::raise_memlock();
    let btf = Btf::from_sys_fs().map_err(StartError::from)?;
    let offsets = offsets::resolve(&btf, &tracefs)?;
    drop(btf);

    // A premain killed while holding processes left them stopped: nothing else resumes them.
    crate::process::hold::release_orphans();
    let ring_bytes = *config.limits.ring_buffer_size.get_ref();
    let mut kernel = loader::load(&offsets, ring_bytes)?;
    let attached = loader::attach_all(&mut kernel)?;
    let loader::Kernel { events, maps, counters, logger } = kernel;
    if let Some(logger) = logger {
        tokio::spawn(pump_kernel_log(logger));
    }
    let fill = RingFill::new(&events, ring_bytes)
        .inspect_err(|err| tracing::warn!(error = %err, "cannot sample the ring buffer fill"))
        .ok();
    metrics.ring_buffer_bytes.set(i64::from(ring_bytes));
    let mut tracker: Tracker<KernelMaps> =
        Tracker::new(maps, Box::new(judge_from_proc), config.limits.max_processes);
    let adopted = seed::seed(&mut tracker);
    // From now on a process starting an executable never seen waits (stopped) until it is
    // judged, so that a new CPython has its probes before it runs a line.
    if let Err(err) = tracker.kernel().set_hold(true) {
        tracing::warn!(error = %err, "cannot hold unseen executables: their first start-up may be phased from syscalls only");
    }
    release_free_heap();
    health.set_ready(true);
    metrics.ready.set(1);
    tracing::info!(
        programs = attached,
        preexisting = adopted,
        interpreters = tracker.kernel().probes.images(),
        "ready: all programs attached"
    );

    // Counters start at zero when the maps are created: everything counted from here on is
    // reported, including what is lost while the reader is not yet running.
    let mut last_counts = Snapshot::default();
    // A stop asked for during the stall is honoured: the loop below is skipped.
    let mut stopping = false;
    if let Some(stall) = opts.stall_reader {
        tokio::select! {
            () = sleep(stall) => {}
            _ = sigint.recv() => stopping = true,
            _ = sigterm.recv() => stopping = true,
        }
    }

    let mut ring = readable(events)?;
    let mut out = Output {
        events: opts.events,
        clock,
        malformed: 0,
        printed: 0,
        engine: PhaseEngine::new(install::detector())
            .with_quiet(!opts.events && !config.limits.record_runtime),
        rules,
        alerts,
        sinks,
        metrics: metrics.clone(),
        fill,
        fill_peak: 0.0,
        unattributed_reported: Default::default(),
        busy_clear_failures: 0,
    };
    let mut config = config;
    let mut ticker = interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    let mut pace = Pace::default();
    while !stopping {
        tokio::select! {
            guard = ring.readable_mut(), if pace.listening() => {
                let mut guard = guard?;
                // Before draining: tokio keeps a wake-up that arrives after the guard was made.
                guard.clear_ready();
                let tell = pace.woken();
                tell_kernel(&mut pace, tell, &mut tracker, &mut out);
                drain_paced(Trigger::Wakeup, &mut pace, guard.get_inner_mut(), &mut tracker, &mut out)?;
            }
            () = sleep_until(pace.poll_at().unwrap_or_else(Instant::now).into()), if pace.poll_at().is_some() => {
                let trigger = if pace.settling() { Trigger::Settle } else { Trigger::Poll };
                if !drain_paced(trigger, &mut pace, ring.get_mut(), &mut tracker, &mut out)? {
                    // Still readable: the ticker, signals and the metrics endpoint get their turn
                    // before the next batch, however fast records keep coming.
                    tokio::task::yield_now().await;
                }
            }
            _ = ticker.tick() => {
                health.beat();
                if pace.idle() {
                    // Step 3 of `pace`: a record sent without a wake-up is not left waiting.
                    drain_paced(Trigger::Tick, &mut pace, ring.get_mut(), &mut tracker, &mut out)?;
                }
                last_counts = report_losses(&counters, &last_counts, &out);
                out.report_unattributed(&tracker.stats);
                let closed = out.alerts.expire(false);
                out.publish_all(closed);
                out.sample(&tracker);
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    let swept = tracker.sweep();
                    if swept > 0 {
                        tracing::debug!(swept, "forgot processes whose exit was not seen");
                    }
                    out.engine.sweep(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                    release_free_heap();
                }
            }
            _ = sighup.recv() => {
                // Between two drains: records wait in the ring meanwhile, none are dropped.
                reload(&opts, &mut config, &mut out);
            }
            _ = sigint.recv() => stopping = true,
            _ = sigterm.recv() => stopping = true,
        }
    }
    health.set_ready(false);
    metrics.ready.set(0);
    // Stop holding, detach so nothing new arrives, then take what is left in the ring: that
    // resumes any process still held.
    let _ = tracker.kernel().set_hold(false);
    tracker.kernel().probes.unload();
    while !drain(ring.get_mut(), &mut tracker, &mut out, DRAIN_BUDGET)?.emptied {}
    let closed = out.alerts.expire(true);
    out.publish_all(closed);
    let final_counts = report_losses(&counters, &last_counts, &out);
    out.report_unattributed(&tracker.stats);
    let unattributed: u64 = tracker.stats.unattributed.iter().sum();
    let lost: u64 = (0..monitor_common::HOOK_COUNT).map(|h| final_counts.lost(h)).sum();
    let runtime_skipped: u64 = (0..monitor_common::HOOK_COUNT).map(|h| final_counts.quiet(h)).sum();
    tracing::info!(
        records = tracker.stats.records,
        events = out.printed,
        alerts = out.alerts.raised,
        folded = out.alerts.folded,
        malformed = out.malformed,
        lost,
        runtime_skipped,
        unattributed,
        not_python = tracker.stats.dropped_not_python,
        unjudged = tracker.stats.unjudged,
        "stopped reading; delivering queued alerts"
    );
    let deadline = Duration::from_secs(config.shutdown.drain_deadline_secs);
    let report = out.sinks.shutdown(deadline).await;
    tracing::info!(?report, "stopped");
    Ok(())
}

/// Starts the node-scoped pod watch when configured. Under `auto`, a cluster that cannot be
/// reached is a warning (alerts carry the pod UID from the cgroup regardless).
fn pod_watch(config: &Config, metrics: &Metrics) -> Result<PodCache, RunError> {
    let strict = config.kubernetes.enabled == Switch::On;
    let started = WatchOptions::resolve(&config.kubernetes).and_then(|opts| match opts {
        Some(opts) => {
            tracing::info!(api_server = %opts.api_server, node = %opts.node_name, "watching this node's pods");
            spawn_watch(opts, metrics.clone())
        }
        None => {
            tracing::debug!("kubernetes metadata off (not in a cluster and no kubernetes.api_server)");
            Ok(PodCache::default())
        }
    });
    match started {
        Ok(cache) => Ok(cache),
        Err(err) if strict => Err(RunError::Kubernetes(err)),
        Err(err) => {
            tracing::warn!(error = %err, "no pod metadata: alerts carry container and pod UIDs only");
            Ok(PodCache::default())
        }
    }
}

/// Re-reads the configuration file; a file that does not parse or compile leaves the running
/// configuration in force.
fn reload(opts: &RunOptions, config: &mut Config, out: &mut Output) {
    let Some(path) = &opts.config else {
        tracing::info!("SIGHUP: no --config file to reload");
        return;
    };
    let fresh = configuration(opts).and_then(|c| {
        let rules = Rules::from_config(&c).map_err(|message| ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message,
        })?;
        Ok((c, rules))
    });
    let (fresh, rules) = match fresh {
        Ok(ok) => ok,
        Err(err) => {
            out.metrics.reloads.with_label_values(&["failure"]).inc();
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
    out.rules = rules;
    out.alerts.set_options(&fresh.alerts);
    *config = kept;
    out.metrics.reloads.with_label_values(&["success"]).inc();
    tracing::info!(file = %path.display(), "configuration reloaded");
}

struct Output {
    events: bool,
    clock: Clock,
    malformed: u64,
    printed: u64,
    engine: PhaseEngine,
    rules: Rules,
    alerts: Alerts,
    sinks: Sinks,
    metrics: Metrics,
    fill: Option<RingFill>,
    /// Highest ring fill seen since the last tick.
    fill_peak: f64,
    /// `Stats::unattributed` as last reported.
    unattributed_reported: [u64; monitor_common::HOOK_COUNT as usize],
    /// Times the kernel could not be told to wake the reader again.
    busy_clear_failures: u64,
}

impl Output {
    /// Records dropped because their process was gone before it could be identified, as loss
    /// records and metrics, since the last call.
    fn report_unattributed(&mut self, stats: &crate::process::tracker::Stats) {
        let time = rfc3339(std::time::SystemTime::now());
        for (hook, (&now, then)) in stats.unattributed.iter().zip(&mut self.unattributed_reported).enumerate()
        {
            if now > *then {
                let hook = hook_name(hook as u32);
                let count = now - *then;
                tracing::warn!(
                    hook,
                    count,
                    "records lost: their process was gone before it could be identified"
                );
                self.metrics.lose(hook, stage::UNATTRIBUTED, count);
                self.sinks.publish(Arc::new(Record::Loss(Loss {
                    kind: Kind,
                    time: time.clone(),
                    hook,
                    stage: "daemon",
                    reason: "process_unidentified",
                    sink: None,
                    count,
                    total: Some(now),
                })));
                *then = now;
            }
        }
    }

    fn publish_all(&self, alerts: Vec<Alert>) {
        for alert in alerts {
            self.sinks.publish(Arc::new(Record::Alert(Box::new(alert))));
        }
    }

    /// Per-tick gauges.
    fn sample(&mut self, tracker: &Tracker<KernelMaps>) {
        self.metrics.ring_buffer_fill.set(self.fill_peak);
        self.fill_peak = 0.0;
        self.metrics.tracked_processes.set(tracker.table.len() as i64);
    }

    fn count_alert(&self, alert: &Alert) {
        let k8s = alert.kubernetes.as_ref();
        self.metrics.alert(alert.rule.as_str(), alert.phase.as_str(), alert.severity.as_str(), |label| {
            match label {
                AlertLabel::Namespace => k8s.and_then(|k| k.namespace.clone()),
                AlertLabel::Pod => k8s.and_then(|k| k.pod.clone()),
                AlertLabel::Distribution => alert.culprit.distribution.clone(),
                AlertLabel::CulpritKind => Some(alert.culprit.kind.as_str().to_owned()),
            }
        });
    }
}

/// What one drain did.
struct Drained {
    emptied: bool,
    records: usize,
}

/// What started a drain (the `trigger` label of `premain_reader_drains_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Wakeup,
    Poll,
    Settle,
    Tick,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Self::Wakeup => "wakeup",
            Self::Poll => "poll",
            Self::Settle => "settle",
            Self::Tick => "tick",
        }
    }
}

/// Drains the ring, then does what `pace` decides, which after clearing the flag is one more
/// drain. Returns whether the last drain emptied the ring.
fn drain_paced(
    mut trigger: Trigger,
    pace: &mut Pace,
    ring: &mut RingBuf<MapData>,
    tracker: &mut Tracker<KernelMaps>,
    out: &mut Output,
) -> io::Result<bool> {
    loop {
        out.metrics.reader_drains.with_label_values(&[trigger.label()]).inc();
        let drained = drain(ring, tracker, out, DRAIN_BUDGET)?;
        if matches!(trigger, Trigger::Settle | Trigger::Tick) && drained.records > 0 {
            tracing::debug!(records = drained.records, "records found without a wake-up");
            out.metrics.reader_unwoken.inc_by(drained.records as u64);
        }
        let tell = pace.drained(Instant::now(), drained.emptied, drained.records);
        if !tell_kernel(pace, tell, tracker, out) {
            return Ok(drained.emptied);
        }
        trigger = Trigger::Poll;
    }
}

/// Carries out `tell`; returns whether the flag was just cleared, so the ring is to be
/// drained once more.
fn tell_kernel(pace: &mut Pace, tell: Tell, tracker: &mut Tracker<KernelMaps>, out: &mut Output) -> bool {
    let busy = match tell {
        Tell::Nothing => return false,
        Tell::Busy => true,
        Tell::Idle => false,
    };
    let Err(err) = tracker.kernel().set_reader_busy(busy) else { return !busy };
    if busy {
        // Only means records keep waking the reader.
        tracing::debug!(error = %err, "cannot tell the kernel the reader is busy");
    } else {
        out.busy_clear_failures += 1;
        if out.busy_clear_failures.is_power_of_two() {
            tracing::warn!(error = %err, total = out.busy_clear_failures, "cannot tell the kernel to wake the reader again; polling instead");
        }
        pace.clear_failed(Instant::now());
    }
    false
}

/// Handles at most `budget` records.
fn drain(
    ring: &mut RingBuf<MapData>,
    tracker: &mut Tracker<KernelMaps>,
    out: &mut Output,
    budget: usize,
) -> io::Result<Drained> {
    if let Some(fill) = &out.fill {
        out.fill_peak = out.fill_peak.max(fill.ratio());
    }
    let stdout = io::stdout();
    let mut stdout = io::BufWriter::new(stdout.lock());
    let mut emptied = false;
    let mut records = 0;
    for _ in 0..budget {
        let Some(item) = ring.next() else {
            emptied = true;
            break;
        };
        records += 1;
        let decoded = decode(&item);
        drop(item);
        let record = match decoded {
            Ok(record) => record,
            Err(err) => {
                out.malformed += 1;
                out.metrics.lose("unknown", stage::DECODE, 1);
                if out.malformed.is_power_of_two() {
                    tracing::warn!(error = %err, total = out.malformed, "skipping malformed record");
                }
                continue;
            }
        };
        let Some(event) = tracker.handle(record) else { continue };
        let context = out.engine.observe(&event);
        out.engine.quiet_updates(&event, |pid, generation| tracker.kernel().set_quiet(pid, generation));
        for (pid, running_main) in out.engine.take_main_checks() {
            let image = tracker.table.get(pid).and_then(|p| p.python.as_ref()).map(|i| i.image.clone());
            if let Some(image) = image {
                tracker.kernel().probes.main_checked(&image, running_main);
            }
        }
        if out.events {
            serde_json::to_writer(&mut stdout, &event_line(&event, context.phase, &out.clock))?;
            stdout.write_all(b"\n")?;
            out.printed += 1;
        }
        if context.phase == Phase::Runtime {
            continue;
        }
        let Some(hit) = out.rules.evaluate(&event.action, context.phase == Phase::Install) else { continue };
        if out.alerts.exempt(&out.rules, &event, &context) {
            continue;
        }
        let folded = out.alerts.folded;
        if let Some(alert) = out.alerts.raise(&event, &context, hit, &tracker.table) {
            out.count_alert(&alert);
            // Event lines already written must come first on a shared stdout.
            stdout.flush()?;
            out.sinks.publish(Arc::new(Record::Alert(Box::new(alert))));
        } else if out.alerts.folded > folded {
            out.metrics.alerts_folded.inc();
        }
    }
    stdout.flush()?;
    let stats = &mut tracker.stats;
    for wait in stats.hold_waits_ns.drain(..) {
        out.metrics.hold_seconds.observe(wait as f64 / 1e9);
    }
    out.metrics.held.inc_by(stats.held.saturating_sub(out.metrics.held.get()));
    out.metrics.late_interpreters.inc_by(stats.late.saturating_sub(out.metrics.late_interpreters.get()));
    let probes = &tracker.kernel().probes;
    out.metrics.interpreter_images.set(probes.images() as i64);
    let failures = probes.failures() as u64;
    out.metrics.probe_failures.inc_by(failures.saturating_sub(out.metrics.probe_failures.get()));
    Ok(Drained { emptied, records })
}

/// Publishes kernel losses since `before` as loss records and metrics, and the records each
/// hook sent.
fn report_losses(
    counters: &aya::maps::PerCpuArray<MapData, u64>,
    before: &Snapshot,
    out: &Output,
) -> Snapshot {
    let now = Snapshot::read(counters);
    for hook in 0..monitor_common::HOOK_COUNT {
        let sent = now.sent(hook).saturating_sub(before.sent(hook));
        if sent > 0 {
            out.metrics.events.with_label_values(&[hook_name(hook)]).inc_by(sent);
        }
        let skipped = now.quiet(hook).saturating_sub(before.quiet(hook));
        if skipped > 0 {
            out.metrics.runtime_skipped.with_label_values(&[hook_name(hook)]).inc_by(skipped);
        }
    }
    let time = rfc3339(std::time::SystemTime::now());
    for record in now.loss_records(before, &time) {
        tracing::warn!(hook = record.hook, reason = record.reason, count = record.count, "records lost");
        let stage =
            if record.reason == "ring_buffer_full" { stage::RING_BUFFER } else { stage::KERNEL_TABLE };
        out.metrics.lose(record.hook, stage, record.count);
        out.sinks.publish(Arc::new(Record::Loss(record)));
    }
    now
}

async fn pump_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    let Ok(mut fd) = readable(logger) else { return };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else { return };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

/// Large buffers (whole executables read to judge them, BTF) get their own mappings, returned
/// to the kernel when freed. glibc's default raises this threshold after the first such free,
/// after which every later executable read lands in the heap and stays resident.
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no preconditions (glibc takes its own locks).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

/// Hands the heap's free pages back to the kernel. Loading (BTF, the object file) and bursts
/// of short-lived processes leave megabytes free but resident, which glibc otherwise keeps:
/// they would count against premain's memory budget for as long as it runs.
fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no preconditions; it only returns free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Registers a map-backed fd with the reactor for readability.
fn readable<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` (a ring buffer map or the aya-log reader) owns its fd and keeps it open
    // and unchanged until the `AsyncFd` drops it.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(io::Error::from)
}
