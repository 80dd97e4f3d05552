//! `premain run`: start-up checks, load and attach, then the event loop until a signal.

use std::{
    io::{self, Write as _},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval, sleep},
};

use crate::{
    alert::Alerts,
    btf::Btf,
    counters::Snapshot,
    decode::decode,
    error::StartError,
    event::{Clock, rfc3339},
    install,
    loader::{self, KernelMaps},
    offsets,
    phase::{Phase, PhaseEngine},
    preflight,
    rules::Rules,
    seed,
    tracker::{Tracker, judge_from_proc},
};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Print every event of a tracked process as a JSON line on stdout.
    pub events: bool,
    /// Ring buffer size in bytes (a power of two, at least one page).
    pub ring_buffer_bytes: u32,
    /// Processes remembered at most.
    pub max_processes: usize,
    /// Test hook: wait this long after `ready` before reading records.
    pub stall_reader: Option<Duration>,
    /// Repeats of an alert within this window are folded into it.
    pub fold_window: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("--ring-buffer-size must be a power of two of at least 4096 bytes, not {0}")]
    RingSize(u32),
    #[error("event loop failed: {0}")]
    Io(#[from] io::Error),
}

pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    if !opts.ring_buffer_bytes.is_power_of_two() || opts.ring_buffer_bytes < 4096 {
        return Err(RunError::RingSize(opts.ring_buffer_bytes));
    }
    preflight::check_privileges()?;
    preflight::check_btf()?;
    let tracefs = preflight::tracefs()?;
    preflight::check_tracepoints(&tracefs, &loader::tracepoints())?;
    preflight::raise_memlock();
    let btf = Btf::from_sys_fs().map_err(StartError::from)?;
    let offsets = offsets::resolve(&btf, &tracefs)?;
    drop(btf);

    // A premain killed while holding processes left them stopped: nothing else resumes them.
    crate::hold::release_orphans();
    let mut kernel = loader::load(&offsets, opts.ring_buffer_bytes)?;
    let attached = loader::attach_all(&mut kernel)?;
    let loader::Kernel { events, maps, counters, logger } = kernel;
    if let Some(logger) = logger {
        tokio::spawn(pump_kernel_log(logger));
    }
    let mut tracker: Tracker<KernelMaps> = Tracker::new(maps, Box::new(judge_from_proc), opts.max_processes);
    let adopted = seed::seed(&mut tracker);
    // From now on a process starting an executable never seen waits (stopped) until it is
    // judged, so that a new CPython has its probes before it runs a line.
    if let Err(err) = tracker.kernel().set_hold(true) {
        tracing::warn!(error = %err, "cannot hold unseen executables: their first start-up may be phased from syscalls only");
    }
    tracing::info!(
        programs = attached,
        preexisting = adopted,
        interpreters = tracker.kernel().probes.images(),
        "ready: all programs attached"
    );

    // Counters start at zero when the maps are created: everything counted from here on is
    // reported, including what is lost while the reader is not yet running.
    let mut last_counts = Snapshot::default();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    if let Some(stall) = opts.stall_reader {
        tokio::select! {
            () = sleep(stall) => {}
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    }

    let clock = Clock::new();
    let mut ring = readable(events)?;
    let mut out = Output {
        events: opts.events,
        clock,
        malformed: 0,
        printed: 0,
        engine: PhaseEngine::new(install::detector()),
        rules: Rules::defaults(),
        alerts: Alerts::new(clock, opts.fold_window),
    };
    let mut ticker = interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut tracker, &mut out)?;
                // AsyncFd is edge-triggered: clear only once drained.
                guard.clear_ready();
            }
            _ = ticker.tick() => {
                last_counts = report_losses(&counters, &last_counts)?;
                print_lines(&out.alerts.expire(false))?;
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    let swept = tracker.sweep();
                    if swept > 0 {
                        tracing::debug!(swept, "forgot processes whose exit was not seen");
                    }
                    out.engine.sweep(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Stop holding, detach so nothing new arrives, then take what is left in the ring: that
    // resumes any process still held.
    let _ = tracker.kernel().set_hold(false);
    tracker.kernel().probes.unload();
    drain(ring.get_mut(), &mut tracker, &mut out)?;
    print_lines(&out.alerts.expire(true))?;
    let final_counts = report_losses(&counters, &last_counts)?;
    let lost: u64 = (0..monitor_common::HOOK_COUNT).map(|h| final_counts.lost(h)).sum();
    tracing::info!(
        records = tracker.stats.records,
        events = out.printed,
        alerts = out.alerts.raised,
        folded = out.alerts.folded,
        malformed = out.malformed,
        lost,
        not_python = tracker.stats.dropped_not_python,
        unjudged = tracker.stats.unjudged,
        "stopped"
    );
    Ok(())
}

struct Output {
    events: bool,
    clock: Clock,
    malformed: u64,
    printed: u64,
    engine: PhaseEngine,
    rules: Rules,
    alerts: Alerts,
}

fn print_lines(lines: &[serde_json::Value]) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let stdout = io::stdout();
    let mut stdout = io::BufWriter::new(stdout.lock());
    for line in lines {
        serde_json::to_writer(&mut stdout, line)?;
        stdout.write_all(b"\n")?;
    }
    stdout.flush()
}

fn drain(ring: &mut RingBuf<MapData>, tracker: &mut Tracker<KernelMaps>, out: &mut Output) -> io::Result<()> {
    let stdout = io::stdout();
    let mut stdout = io::BufWriter::new(stdout.lock());
    while let Some(item) = ring.next() {
        let decoded = decode(&item);
        drop(item);
        let record = match decoded {
            Ok(record) => record,
            Err(err) => {
                out.malformed += 1;
                if out.malformed.is_power_of_two() {
                    tracing::warn!(error = %err, total = out.malformed, "skipping malformed record");
                }
                continue;
            }
        };
        let Some(event) = tracker.handle(record) else { continue };
        let context = out.engine.observe(&event);
        if out.events {
            let mut line = event.to_json(&out.clock);
            if let serde_json::Value::Object(obj) = &mut line {
                obj.insert("phase".into(), serde_json::json!(context.phase.as_str()));
            }
            serde_json::to_writer(&mut stdout, &line)?;
            stdout.write_all(b"\n")?;
            out.printed += 1;
        }
        if context.phase == Phase::Runtime {
            continue;
        }
        let Some(hit) = out.rules.evaluate(&event.action) else { continue };
        if let Some(alert) = out.alerts.raise(&event, &context, hit, &tracker.table) {
            serde_json::to_writer(&mut stdout, &alert)?;
            stdout.write_all(b"\n")?;
        }
    }
    stdout.flush()
}

fn report_losses(counters: &aya::maps::PerCpuArray<MapData, u64>, before: &Snapshot) -> io::Result<Snapshot> {
    let now = Snapshot::read(counters);
    let time = rfc3339(std::time::SystemTime::now());
    let records = now.loss_records(before, &time);
    if !records.is_empty() {
        let stdout = io::stdout();
        let mut stdout = stdout.lock();
        for record in &records {
            tracing::warn!(hook = %record["hook"], reason = %record["reason"], count = %record["count"], "records lost");
            serde_json::to_writer(&mut stdout, record)?;
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
    }
    Ok(now)
}

async fn pump_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    let Ok(mut fd) = readable(logger) else { return };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else { return };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

/// Registers a map-backed fd with the reactor for readability.
fn readable<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` (a ring buffer map or the aya-log reader) owns its fd and keeps it open
    // and unchanged until the `AsyncFd` drops it.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(io::Error::from)
}
