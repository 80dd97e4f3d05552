//! `premain run`: start-up checks, load and attach, then the event loop until a signal.

mod exec_watch;
mod options;
mod pace;
mod pipeline;
mod reader;
mod reload;
mod watch;

use std::{io, sync::Arc, time::Duration};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use monitor_common::HOOK_COUNT;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::{MissedTickBehavior, interval, sleep, sleep_until},
};

pub use self::options::{Overrides, RunError, RunOptions, configuration};
use self::{
    exec_watch::ExecWatch,
    pace::Pace,
    pipeline::{GuardState, Pipeline},
    reader::{DRAIN_BUDGET, Trigger, drain, drain_paced, emit_all, report_losses, tell_kernel},
    watch::FileWatch,
};
use crate::{
    alert::{Alert, Alerts, Kind, Loss, Record},
    detect::{RuleId, Rules},
    enforce::{Mode, Policy, enforceable},
    k8s::{PodCache, WatchOptions, spawn_watch},
    kernel::{
        btf::Btf,
        control::KernelControl,
        counters::{Snapshot, hook_name},
        error::StartError,
        fanotify, hold, loader, offsets, preflight,
        ring_fill::RingFill,
    },
    ops::{
        config::{AlertLabel, Config, ConfigError, Switch},
        endpoints::{self, Health},
        instance,
        metrics::{Metrics, stage},
    },
    output::{
        redact::Redactor,
        sink::Sinks,
        time::{Clock, rfc3339},
    },
    phase::PhaseEngine,
    process::{
        judge::{self, Judged},
        seed,
        tracker::{JUDGE_DEADLINE, Tracker, judge_from_proc},
        verdict_store::VerdictStore,
    },
    python::install,
};

/// At shutdown, how long records that wait for a verdict may wait for it.
const JUDGE_AT_SHUTDOWN: Duration = Duration::from_secs(2);

/// The daemon's state between two turns of the event loop.
struct Daemon {
    kernel: KernelControl,
    pipeline: Pipeline,
    sinks: Sinks,
    metrics: Metrics,
    clock: Clock,
    /// Print every event (`--events`).
    events: bool,
    fill: Option<RingFill>,
    /// Highest ring fill seen since the last tick.
    fill_peak: f64,
    malformed: u64,
    printed: u64,
    /// `Stats::unattributed` as last reported.
    unattributed_reported: [u64; HOOK_COUNT as usize],
    /// Times the kernel could not be told to wake the reader again.
    busy_clear_failures: u64,
    /// The credential file watch (`limits.credential_file_watch`).
    watch: Option<FileWatch>,
    /// The exec watch (`limits.exec_watch`).
    exec_watch: Option<ExecWatch>,
}

pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    // Handlers first: a SIGHUP sent while starting must not kill the daemon (the default
    // action); it is acted on once the loop runs.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    tune_allocator();
    let mut config = configuration(&opts)?;
    // Nothing is started (no port bound, no spool created) for a run that cannot work.
    preflight::check_privileges()?;
    let lock = instance::acquire(&opts.lock_file)?;
    preflight::check_btf()?;
    let (rules, redactor, policy) = compile(&config, "configuration")?;
    let enforcing = policy.any(Mode::Enforce);
    if enforcing && !config.limits.credential_file_watch {
        return Err(RunError::Enforce("limits.credential_file_watch is false".into()));
    }
    let metrics = Metrics::new(&config.metrics.alert_labels, config.metrics.max_label_values);
    let health = Health::default();
    health.beat();
    // Endpoints and sinks first: a taken port or an unwritable spool fails before any program
    // is loaded, and /healthz answers while the verifier runs.
    if let Some(addr) = config.metrics.socket_addr() {
        let bound = endpoints::serve(addr, metrics.clone(), health.clone())
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        // Not naming /readyz: no line before the ready line may contain its word.
        tracing::info!(address = %bound, "serving /metrics and the health probes");
    }
    let clock = Clock::new();
    let mut alerts = Alerts::new(clock, &config.alerts);
    alerts.set_pods(pod_watch(&config, &metrics)?, config.kubernetes.pod_labels);
    let sink_configs = config.sinks();
    let sinks = Sinks::start(&sink_configs, config.limits.queue_capacity, &metrics, alerts.node())?;
    metrics.expect(rules.enabled());
    for trigger in Trigger::ALL {
        metrics.reader_drains.with_label_values(&[trigger.label()]);
    }

    let tracefs = preflight::tracefs()?;
    preflight::check_tracepoints(&tracefs, &loader::tracepoints())?;
    preflight::raise_memlock();
    let btf = Btf::from_sys_fs().map_err(StartError::from)?;
    let offsets = offsets::resolve(&btf, &tracefs)?;
    drop(btf);

    // A premain killed while holding processes left them stopped: nothing else resumes them.
    hold::release_orphans();
    let ring_bytes = *config.limits.ring_buffer_size.get_ref();
    let mut kernel = loader::load(&offsets, ring_bytes)?;
    let attached = loader::attach_all(&mut kernel, config.limits.ia32_syscalls)?;
    let loader::Kernel { events, control: mut kernel, counters, logger } = kernel;
    if let Some(logger) = logger {
        tokio::spawn(pump_kernel_log(logger));
    }
    let fill = RingFill::new(&events, ring_bytes)
        .inspect_err(|err| tracing::warn!(error = %err, "cannot sample the ring buffer fill"))
        .ok();
    metrics.ring_buffer_bytes.set(i64::from(ring_bytes));
    let mut tracker = Tracker::new(Box::new(judge_from_proc), config.limits.max_processes);
    let adopted = seed::seed(&mut tracker, &mut kernel);
    // From now on a process starting an executable never seen waits until it is judged, so
    // that a new CPython has its probes before it runs a line: inside execve (the exec watch),
    // else stopped at its first instruction (the kernel's SIGSTOP hold).
    let (exec_watch, mut settles) = start_exec_watch(&config, &metrics);
    let hold = match &exec_watch {
        Some(watch) => {
            let pythons = watch.judge_on_disk(&mut tracker, &mut kernel);
            tracing::debug!(pythons, "judged the interpreters on disk");
            false
        }
        None => true,
    };
    if let Err(err) = kernel.set_hold(hold) {
        tracing::warn!(error = %err, "cannot hold unseen executables: their first start-up may be phased from syscalls only");
    }
    // Before ready: the credential files on disk are watched from the first workload on.
    let (watch, mut asks) = if config.limits.credential_file_watch {
        match FileWatch::start(
            &metrics,
            config.limits.persistence_file_watch,
            watches_persistence(&policy),
            kernel.tracked_view(),
        ) {
            Ok((mut watch, asks)) => {
                tracker.set_credential_files(watch.rescan(&rules));
                tracker.set_persistence_files(watch.persistence_files());
                (Some(watch), Some(asks))
            }
            Err(err) if enforcing => {
                return Err(RunError::Enforce(format!("fanotify permission events: {err}")));
            }
            Err(err) => {
                tracing::warn!(error = %err, "credential file watch off (fanotify needs CAP_SYS_ADMIN): credential opens by 32-bit syscalls or through hard links made before premain started are not seen");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    if enforcing || policy.any(Mode::DryRun) {
        let deniable: Vec<&str> =
            RuleId::ALL.into_iter().filter(|r| enforceable(*r)).map(RuleId::as_str).collect();
        let observed: Vec<&str> =
            RuleId::ALL.into_iter().filter(|r| !enforceable(*r)).map(RuleId::as_str).collect();
        tracing::info!(
            mode = config.enforcement.mode.as_str(),
            deniable = deniable.join(","),
            alerted_only = observed.join(","),
            "enforcement on"
        );
    }
    // Before the ready line: a process started from then on is guarded from its exec.
    let mut guard = GuardState::default();
    guard.configure(&mut kernel, &policy, &rules, true).map_err(RunError::Guard)?;
    release_free_heap();
    health.set_ready(true);
    metrics.ready.set(1);
    // The one line whose message is `premain ready` (what supervisors and tests wait for):
    // no other line contains those words.
    tracing::info!(
        programs = attached,
        preexisting = adopted,
        interpreters = kernel.probed_images(),
        "premain ready"
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
    // Executables met from now on are judged off the event loop.
    let (judges, mut verdicts) = judge::Pool::new(judge_from_proc);
    tracker.judge_in_background(judges);
    let engine =
        PhaseEngine::new(install::detector()).with_quiet(!opts.events && !config.limits.record_runtime);
    let mut daemon = Daemon {
        kernel,
        pipeline: Pipeline {
            tracker,
            engine,
            rules,
            redactor,
            alerts,
            unseen: Vec::new(),
            policy,
            decided: Vec::new(),
            guard,
        },
        sinks,
        metrics: metrics.clone(),
        clock,
        events: opts.events,
        fill,
        fill_peak: 0.0,
        malformed: 0,
        printed: 0,
        unattributed_reported: Default::default(),
        busy_clear_failures: 0,
        watch,
        exec_watch,
    };
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
                tell_kernel(&mut pace, tell, &mut daemon);
                drain_paced(Trigger::Wakeup, &mut pace, guard.get_inner_mut(), &mut daemon)?;
            }
            () = sleep_until(pace.poll_at().unwrap_or_else(std::time::Instant::now).into()), if pace.poll_at().is_some() => {
                let trigger = if pace.settling() { Trigger::Settle } else { Trigger::Poll };
                if !drain_paced(trigger, &mut pace, ring.get_mut(), &mut daemon)? {
                    // Still readable: the ticker, signals and the metrics endpoint get their turn
                    // before the next batch, however fast records keep coming.
                    tokio::task::yield_now().await;
                }
            }
            Some(ask) = recv(&mut asks), if asks.is_some() => {
                if let Some(stall) = opts.stall_decisions {
                    sleep(stall).await;
                }
                // The opener waits in the kernel: what it did before is in the ring now.
                drain(ring.get_mut(), &mut daemon, DRAIN_BUDGET)?;
                if let Some(watch) = &daemon.watch
                    && let Some(denied) = watch.decide(ask, &mut daemon.pipeline, &mut daemon.kernel)
                {
                    emit_all(&mut daemon, vec![denied])?;
                }
            }
            Some(settle) = recv(&mut settles), if settles.is_some() => {
                settle.apply(&mut daemon.pipeline.tracker, &mut daemon.kernel);
            }
            Some(judged) = verdicts.recv() => {
                let handled = daemon.pipeline.judged(&mut daemon.kernel, judged);
                emit_all(&mut daemon, handled)?;
            }
            _ = ticker.tick() => {
                health.beat();
                let late = daemon.pipeline.give_up_judging(&mut daemon.kernel, JUDGE_DEADLINE);
                emit_all(&mut daemon, late)?;
                if pace.idle() {
                    // Step 3 of `pace`: a record sent without a wake-up is not left waiting.
                    drain_paced(Trigger::Tick, &mut pace, ring.get_mut(), &mut daemon)?;
                }
                let unseen = daemon.pipeline.unseen_due(std::time::Instant::now());
                daemon.metrics.file_watch_unseen.inc_by(unseen.iter().filter(|h| h.alert.is_some()).count() as u64);
                emit_all(&mut daemon, unseen)?;
                if ticks.is_multiple_of(watch::RESCAN_TICKS) {
                    daemon.rescan_credentials();
                }
                if ticks.is_multiple_of(exec_watch::RESCAN_TICKS)
                    && let Some(watch) = &daemon.exec_watch
                {
                    watch.rescan();
                }
                if let Err(err) = daemon.pipeline.configure_guard(&mut daemon.kernel, false) {
                    // Said once by the reload that brought it; each second would flood the log.
                    tracing::debug!(error = %err, "guard not updated");
                }
                last_counts = report_losses(&counters, &last_counts, &daemon);
                daemon.report_unattributed();
                let closed = daemon.pipeline.alerts.expire(false);
                daemon.publish_all(closed);
                daemon.sample();
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    let swept = daemon.pipeline.tracker.sweep(&mut daemon.kernel);
                    if swept > 0 {
                        tracing::debug!(swept, "forgot processes whose exit was not seen");
                    }
                    release_free_heap();
                }
            }
            _ = sighup.recv() => {
                // Between two drains: records wait in the ring meanwhile, none are dropped.
                reload::reload(&opts, &mut config, &mut daemon);
            }
            _ = sigint.recv() => stopping = true,
            _ = sigterm.recv() => stopping = true,
        }
    }
    health.set_ready(false);
    metrics.ready.set(0);
    // Execs that wait for the loop go on at once from now on.
    drop(settles);
    shut_down(daemon, ring.get_mut(), &mut verdicts, &counters, &last_counts, &config, lock).await
}

/// Stop holding and guarding, and sending records (or, where the kernel cannot say when that
/// holds, detach), then take what is left in the ring (that resumes any process still held),
/// and give the sinks their deadline. Then the node's lock is released and the programs are
/// detached: the kernel takes seconds for that, and a premain started meanwhile can load its
/// own programs.
async fn shut_down(
    mut daemon: Daemon,
    ring: &mut RingBuf<MapData>,
    verdicts: &mut mpsc::UnboundedReceiver<Judged>,
    counters: &PerCpuArray<MapData, u64>,
    last_counts: &Snapshot,
    config: &Config,
    lock: instance::InstanceLock,
) -> Result<(), RunError> {
    if !daemon.kernel.quiesce() {
        daemon.kernel.unload();
    }
    while !drain(ring, &mut daemon, DRAIN_BUDGET)?.emptied {}
    // Records that wait for a verdict (and held processes) get one, or are given up.
    let until = tokio::time::Instant::now() + JUDGE_AT_SHUTDOWN;
    while daemon.pipeline.tracker.judging() {
        match tokio::time::timeout_at(until, verdicts.recv()).await {
            Ok(Some(judged)) => {
                let handled = daemon.pipeline.judged(&mut daemon.kernel, judged);
                emit_all(&mut daemon, handled)?;
            }
            _ => {
                let late = daemon.pipeline.give_up_judging(&mut daemon.kernel, Duration::ZERO);
                emit_all(&mut daemon, late)?;
            }
        }
    }
    let closed = daemon.pipeline.alerts.expire(true);
    daemon.publish_all(closed);
    let final_counts = report_losses(counters, last_counts, &daemon);
    daemon.report_unattributed();
    let stats = &daemon.pipeline.tracker.stats;
    let unattributed: u64 = stats.unattributed.iter().sum();
    let lost: u64 = (0..HOOK_COUNT).map(|h| final_counts.lost(h)).sum();
    let runtime_skipped: u64 = (0..HOOK_COUNT).map(|h| final_counts.quiet(h)).sum();
    tracing::info!(
        records = stats.records,
        events = daemon.printed,
        alerts = daemon.pipeline.alerts.raised,
        folded = daemon.pipeline.alerts.folded,
        malformed = daemon.malformed,
        lost,
        runtime_skipped,
        unattributed,
        not_python = stats.dropped_not_python,
        unjudged = stats.unjudged,
        "stopped reading; delivering queued alerts"
    );
    let deadline = Duration::from_secs(config.shutdown.drain_deadline_secs);
    let report = daemon.sinks.shutdown(deadline).await;
    daemon.kernel.detach_cgroup_programs();
    drop(lock);
    // After the lock: whoever waits for this line may start the next premain.
    tracing::info!(?report, "stopped");
    let detaching = std::time::Instant::now();
    daemon.kernel.unload();
    tracing::info!(seconds = detaching.elapsed().as_secs_f64(), "programs detached");
    Ok(())
}

impl Daemon {
    /// Looks for catalogued credential files again (new files, a reloaded catalogue).
    fn rescan_credentials(&mut self) {
        if let Some(watch) = &mut self.watch {
            let files = watch.rescan(&self.pipeline.rules);
            self.pipeline.tracker.set_credential_files(files);
            self.pipeline.tracker.set_persistence_files(watch.persistence_files());
        }
    }

    /// A process starts a Python tree: its home may hold credential files not watched yet.
    fn discover_home(&mut self, pid: u32) {
        if let Some(watch) = &mut self.watch
            && let Some(files) = watch.discover(pid, &self.pipeline.rules)
        {
            self.pipeline.tracker.set_credential_files(files);
            self.pipeline.tracker.set_persistence_files(watch.persistence_files());
        }
    }

    /// Records dropped because their process was gone before it could be identified, as loss
    /// records and metrics, since the last call.
    fn report_unattributed(&mut self) {
        let time = rfc3339(std::time::SystemTime::now());
        let now = *self.pipeline.unattributed();
        for (hook, (&now, then)) in now.iter().zip(&mut self.unattributed_reported).enumerate() {
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
    fn sample(&mut self) {
        self.metrics.ring_buffer_fill.set(self.fill_peak);
        self.fill_peak = 0.0;
        self.metrics.tracked_processes.set(self.pipeline.tracker.table.len() as i64);
    }

    fn count_alert(&self, alert: &Alert) {
        let k8s = alert.kubernetes.as_ref();
        self.metrics.alert(alert.rule.as_str(), alert.phase.as_str(), alert.severity.as_str(), |label| {
            match label {
                AlertLabel::Namespace => k8s.and_then(|k| k.namespace.clone()),
                AlertLabel::Pod => k8s.and_then(|k| k.pod.clone()),
                AlertLabel::Distribution => alert.culprit.distribution.clone(),
                AlertLabel::CulpritKind => Some(alert.culprit.kind.as_str().to_owned()),
                AlertLabel::Party => Some(alert.culprit.party.as_str().to_owned()),
            }
        });
    }

    /// Hold and probe counts since the last drain.
    fn publish_tracker_stats(&mut self) {
        let stats = &mut self.pipeline.tracker.stats;
        for wait in stats.hold_waits_ns.drain(..) {
            self.metrics.hold_seconds.observe(wait as f64 / 1e9);
        }
        let m = &self.metrics;
        m.held.inc_by(stats.held.saturating_sub(m.held.get()));
        m.late_interpreters.inc_by(stats.late.saturating_sub(m.late_interpreters.get()));
        m.interpreter_images.set(self.kernel.probed_images() as i64);
        let failures = self.kernel.probe_failures() as u64;
        m.probe_failures.inc_by(failures.saturating_sub(m.probe_failures.get()));
    }
}

/// What a configuration compiles into besides itself: the rules, and the redactor of
/// `alerts.redact_patterns` (both checked when the file was parsed). `file` names it in errors.
fn compile(config: &Config, file: &str) -> Result<(Rules, Redactor, Policy), ConfigError> {
    let refused = |message| ConfigError { file: file.to_owned(), line: 0, column: 0, message };
    let rules = Rules::from_config(config).map_err(refused)?;
    let redactor =
        Redactor::new(config.alerts.redact_patterns.iter().map(|p| p.get_ref().as_str())).map_err(refused)?;
    let policy = Policy::compile(&config.enforcement, None).map_err(|e| refused(e.0))?;
    Ok((rules, redactor, policy))
}

/// Whether `persistence` is in dry-run or enforce somewhere: then the file watch marks its
/// targets whatever `limits.persistence_file_watch` says, user-site Python hooks included.
pub(super) fn watches_persistence(policy: &Policy) -> bool {
    policy.may(RuleId::Persistence, Mode::Enforce) || policy.may(RuleId::Persistence, Mode::DryRun)
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

/// Starts the exec watch when configured and possible, with the verdicts kept from earlier
/// runs; `None` falls back to the kernel's SIGSTOP hold, with a warning saying so.
fn start_exec_watch(
    config: &Config,
    metrics: &Metrics,
) -> (Option<ExecWatch>, Option<mpsc::UnboundedReceiver<exec_watch::Settle>>) {
    if !config.limits.exec_watch {
        return (None, None);
    }
    let path = config.limits.state_dir.join("verdicts");
    let store = VerdictStore::open(&path)
        .inspect_err(|err| {
            tracing::warn!(path = %path.display(), error = %err, "cannot keep verdicts on executables: a restart judges every executable again");
        })
        .ok();
    let remembered = store.as_ref().map_or(0, VerdictStore::len);
    match fanotify::Group::for_execs().and_then(|group| ExecWatch::start(group, metrics, store)) {
        Ok((watch, settles)) => {
            tracing::info!(
                filesystems = watch.filesystems(),
                remembered,
                "execs of unjudged files wait for their verdict"
            );
            (Some(watch), Some(settles))
        }
        Err(err) => {
            tracing::warn!(error = %err, "exec watch off (fanotify exec marks need CAP_SYS_ADMIN and FAN_OPEN_EXEC_PERM): the first run of an unseen interpreter is stopped (SIGSTOP) until judged, which an interactive shell shows as \"Stopped\"");
            (None, None)
        }
    }
}

/// The next message of an optional channel (a watch that may not run).
async fn recv<T>(channel: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match channel {
        Some(channel) => channel.recv().await,
        None => std::future::pending().await,
    }
}

/// Registers a map-backed fd with the reactor for readability.
fn readable<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` (a ring buffer map or the aya-log reader) owns its fd and keeps it open
    // and unchanged until the `AsyncFd` drops it.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(io::Error::from)
}
