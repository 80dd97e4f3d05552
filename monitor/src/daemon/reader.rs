//! Draining the ring: every record through the pipeline, event lines to stdout, alerts to the
//! sinks, and when the kernel needs to wake the reader (see `pace`).

use std::{
    io::{self, Write as _},
    sync::Arc,
    time::Instant,
};

use aya::maps::{MapData, PerCpuArray, RingBuf};

use super::{
    Daemon,
    pace::{Pace, Tell},
    pipeline::Handled,
};
use crate::{
    alert::Record,
    kernel::{
        counters::{Snapshot, hook_name},
        decode::decode,
    },
    ops::metrics::stage,
    output::{event_line::event_line, time::rfc3339},
    process::event::Action,
};

/// Records handled before the loop lets its other work run.
pub(super) const DRAIN_BUDGET: usize = 8192;

/// What one drain did.
pub(super) struct Drained {
    pub(super) emptied: bool,
    records: usize,
}

/// What started a drain (the `trigger` label of `premain_reader_drains_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    Wakeup,
    Poll,
    Settle,
    Tick,
}

impl Trigger {
    pub(crate) const ALL: [Trigger; 4] = [Self::Wakeup, Self::Poll, Self::Settle, Self::Tick];

    pub(crate) fn label(self) -> &'static str {
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
pub(super) fn drain_paced(
    mut trigger: Trigger,
    pace: &mut Pace,
    ring: &mut RingBuf<MapData>,
    daemon: &mut Daemon,
) -> io::Result<bool> {
    loop {
        daemon.metrics.reader_drains.with_label_values(&[trigger.label()]).inc();
        let drained = drain(ring, daemon, DRAIN_BUDGET)?;
        if matches!(trigger, Trigger::Settle | Trigger::Tick) && drained.records > 0 {
            tracing::debug!(records = drained.records, "records found without a wake-up");
            daemon.metrics.reader_unwoken.inc_by(drained.records as u64);
        }
        let tell = pace.drained(Instant::now(), drained.emptied, drained.records);
        if !tell_kernel(pace, tell, daemon) {
            return Ok(drained.emptied);
        }
        trigger = Trigger::Poll;
    }
}

/// Carries out `tell`; returns whether the flag was just cleared, so the ring is to be
/// drained once more.
pub(super) fn tell_kernel(pace: &mut Pace, tell: Tell, daemon: &mut Daemon) -> bool {
    let busy = match tell {
        Tell::Nothing => return false,
        Tell::Busy => true,
        Tell::Idle => false,
    };
    let Err(err) = daemon.kernel.set_reader_busy(busy) else { return !busy };
    if busy {
        // Only means records keep waking the reader.
        tracing::debug!(error = %err, "cannot tell the kernel the reader is busy");
    } else {
        daemon.busy_clear_failures += 1;
        if daemon.busy_clear_failures.is_power_of_two() {
            tracing::warn!(error = %err, total = daemon.busy_clear_failures, "cannot tell the kernel to wake the reader again; polling instead");
        }
        pace.clear_failed(Instant::now());
    }
    false
}

/// Handles at most `budget` records.
pub(super) fn drain(ring: &mut RingBuf<MapData>, daemon: &mut Daemon, budget: usize) -> io::Result<Drained> {
    if let Some(fill) = &daemon.fill {
        daemon.fill_peak = daemon.fill_peak.max(fill.ratio());
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
                daemon.malformed += 1;
                daemon.metrics.lose("unknown", stage::DECODE, 1);
                if daemon.malformed.is_power_of_two() {
                    tracing::warn!(error = %err, total = daemon.malformed, "skipping malformed record");
                }
                continue;
            }
        };
        let Some(handled) = daemon.pipeline.handle(&mut daemon.kernel, record) else { continue };
        emit(daemon, &mut stdout, handled)?;
    }
    stdout.flush()?;
    daemon.publish_tracker_stats();
    Ok(Drained { emptied, records })
}

/// Writes the event line (with `--events`) and sends the alert of one handled record.
fn emit(daemon: &mut Daemon, stdout: &mut impl io::Write, handled: Handled) -> io::Result<()> {
    if matches!(handled.event.action, Action::Image { .. }) && handled.event.process.python.is_some() {
        daemon.discover_home(handled.event.header.pid);
    }
    if daemon.events {
        serde_json::to_writer(
            &mut *stdout,
            &event_line(&handled.event, handled.context.phase, &daemon.clock, &daemon.pipeline.redactor),
        )?;
        stdout.write_all(b"\n")?;
        daemon.printed += 1;
    }
    if let Some((rule, outcome)) = handled.enforced {
        daemon.metrics.enforcement.with_label_values(&[rule.as_str(), outcome.as_str()]).inc();
    }
    if let Some((rule, outcome)) = handled.overreach {
        let label = format!("{}-without-alert", outcome.as_str());
        daemon.metrics.enforcement.with_label_values(&[rule.as_str(), &label]).inc();
    }
    if let Some(alert) = handled.alert {
        daemon.count_alert(&alert);
        // Event lines already written must come first on a shared stdout.
        stdout.flush()?;
        daemon.sinks.publish(Arc::new(Record::Alert(Box::new(alert))));
    } else if handled.folded {
        daemon.metrics.alerts_folded.inc();
    } else if let Some(rule) = handled.quieted {
        daemon.metrics.application_code_quiet.with_label_values(&[rule.as_str()]).inc();
    }
    Ok(())
}

/// Emits what records that waited for a verdict came to.
pub(super) fn emit_all(daemon: &mut Daemon, all: Vec<Handled>) -> io::Result<()> {
    let stdout = io::stdout();
    let mut stdout = io::BufWriter::new(stdout.lock());
    for handled in all {
        emit(daemon, &mut stdout, handled)?;
    }
    stdout.flush()?;
    daemon.publish_tracker_stats();
    Ok(())
}

/// Publishes kernel losses since `before` as loss records and metrics, and the records each
/// hook sent.
pub(super) fn report_losses(
    counters: &PerCpuArray<MapData, u64>,
    before: &Snapshot,
    daemon: &Daemon,
) -> Snapshot {
    let now = Snapshot::read(counters);
    let metrics = &daemon.metrics;
    for hook in 0..monitor_common::HOOK_COUNT {
        let name = hook_name(hook);
        let sent = now.sent(hook).saturating_sub(before.sent(hook));
        if sent > 0 {
            metrics.events.with_label_values(&[name]).inc_by(sent);
        }
        let skipped = now.quiet(hook).saturating_sub(before.quiet(hook));
        if skipped > 0 {
            metrics.runtime_skipped.with_label_values(&[name]).inc_by(skipped);
        }
        let unread = now.read_failed(hook).saturating_sub(before.read_failed(hook));
        if unread > 0 {
            metrics.read_failures.with_label_values(&[name]).inc_by(unread);
        }
    }
    let time = rfc3339(std::time::SystemTime::now());
    for record in now.loss_records(before, &time) {
        tracing::warn!(hook = record.hook, reason = record.reason, count = record.count, "records lost");
        let stage =
            if record.reason == "ring_buffer_full" { stage::RING_BUFFER } else { stage::KERNEL_TABLE };
        metrics.lose(record.hook, stage, record.count);
        daemon.sinks.publish(Arc::new(Record::Loss(record)));
    }
    now
}
