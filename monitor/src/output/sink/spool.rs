//! A webhook sink's write-through spool: every record is appended here before it is sent,
//! and a persisted cursor says how far the receiver has acknowledged, so records outlive an
//! outage and a restart. Segments are files named by a growing number
//! (`000000000001.jsonl`); the cursor (`cursor`, replaced atomically) is a segment and a byte
//! offset into it.
//!
//! The spool is bounded: beyond `max_bytes` the oldest undelivered segments are deleted, the
//! records in them counted exactly, and a `spool_full` loss record is appended so the
//! receiver learns of it. When such a loss record is itself dropped, its count is carried on
//! into the next one.
//!
//! Nothing here is fsynced: the spool is for a receiver's outages and the daemon's restarts,
//! and the page cache survives the daemon crashing.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
};

use prometheus::IntGauge;
use serde::{Deserialize, Serialize};

use super::{HOOK, Shared, loss_record, own_loss};
use crate::{alert::Record, ops::metrics::stage};

/// Segments roll at this size, or at an eighth of the spool when that is smaller, so that
/// dropping the oldest segment frees a share of the spool rather than all of it.
const SEGMENT_MAX: u64 = 4 << 20;
/// Bytes read at once when collecting a batch.
const READ_CHUNK: u64 = 256 << 10;
const CURSOR: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
const SPOOL_FULL: &str = "spool_full";
const REJECTED: &str = "rejected";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Position {
    segment: u64,
    offset: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    size: u64,
}

/// The batch being sent: it starts at the cursor.
struct InFlight {
    end: Position,
    /// The bound dropped (part of) its segments: if it is not delivered, it is lost.
    orphaned: bool,
}

/// Lines read from the cursor on, to be sent together.
pub(super) struct Batch {
    pub(super) lines: Vec<Vec<u8>>,
    end: Position,
}

/// Lines leaving the spool undelivered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Dropped {
    /// Records, counted in the loss metric now.
    records: u64,
    /// Counts of dropped `spool_full` loss records, already in the metric.
    carried: u64,
    lines: u64,
}

impl Dropped {
    fn add(&mut self, other: Self) {
        self.records += other.records;
        self.carried += other.carried;
        self.lines += other.lines;
    }
}

pub(super) struct Spool {
    dir: PathBuf,
    shared: Arc<Shared>,
    max_bytes: u64,
    segment_max: u64,
    /// Oldest first; the last one is being written.
    segments: VecDeque<Segment>,
    writer: File,
    bytes: u64,
    cursor: Position,
    saved: Option<Position>,
    /// Undelivered records on disk.
    pending: u64,
    inflight: Option<InFlight>,
    /// Dropped records whose loss record could not be written yet.
    unannounced: u64,
    bytes_gauge: IntGauge,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, resuming from its cursor.
    pub(super) fn open(dir: &Path, max_bytes: u64, shared: Arc<Shared>) -> io::Result<Self> {
        fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| n.strip_suffix(".jsonl")).and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                found.push(Segment { id, size: entry.metadata()?.len() });
            }
        }
        found.sort_unstable_by_key(|s| s.id);
        let saved = read_cursor(dir)?;
        // A new segment is started on every open: the last one may end in a cut-off line.
        let next = found.last().map_or(1, |s| s.id + 1).max(saved.map_or(1, |c| c.segment + 1));
        let writer = create_segment(dir, next)?;
        found.push(Segment { id: next, size: 0 });
        let mut spool = Self {
            bytes_gauge: shared.metrics.sink_spool_bytes.with_label_values(&[&shared.name]),
            dir: dir.to_owned(),
            shared,
            max_bytes,
            segment_max: (max_bytes / 8).clamp(1, SEGMENT_MAX),
            bytes: found.iter().map(|s| s.size).sum(),
            cursor: saved.unwrap_or(Position { segment: found[0].id, offset: 0 }),
            segments: found.into(),
            writer,
            saved,
            pending: 0,
            inflight: None,
            unannounced: 0,
        };
        spool.prune()?;
        let mut from = spool.cursor;
        let mut pending = 0;
        for segment in &spool.segments {
            let offset = if segment.id == from.segment { from.offset } else { 0 };
            pending += whole_lines(&spool.read_range(segment.id, offset, segment.size)?).count() as u64;
            from = Position::default();
        }
        spool.pending = pending;
        spool.publish();
        Ok(spool)
    }

    #[cfg(test)]
    fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends lines (each ends in a newline), then keeps the spool within its bound. On
    /// failure, says how many lines were appended.
    pub(super) fn append(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        for (written, line) in lines.iter().enumerate() {
            self.append_line(line).map_err(|e| (written, e))?;
        }
        let result = self.settle(Dropped::default()).map_err(|e| (lines.len(), e));
        self.publish();
        result
    }

    /// Up to `max` lines from the cursor on; they become the batch in flight.
    pub(super) fn read_batch(&mut self, max: usize) -> io::Result<Batch> {
        let mut lines = Vec::new();
        let mut pos = self.cursor;
        // `prune` keeps the cursor in an existing segment.
        let mut index = self.segments.iter().position(|s| s.id == pos.segment).unwrap_or_default();
        while lines.len() < max && index < self.segments.len() {
            let Segment { id, size } = self.segments[index];
            let last = index + 1 == self.segments.len();
            if pos.offset >= size {
                if last {
                    break;
                }
                index += 1;
                pos = Position { segment: self.segments[index].id, offset: 0 };
                continue;
            }
            let remaining = size - pos.offset;
            let mut want = remaining.min(READ_CHUNK);
            let taken = loop {
                let chunk = self.read_range(id, pos.offset, pos.offset + want)?;
                let taken = take_lines(&chunk, max - lines.len(), &mut lines);
                if taken > 0 || want == remaining {
                    break taken;
                }
                // One line longer than a chunk.
                want = remaining;
            };
            if taken == 0 {
                if last {
                    break;
                }
                tracing::warn!(sink = %self.shared.name, segment = id, "skipping a cut-off record at the end of a spool segment");
                pos.offset = size;
                continue;
            }
            pos.offset += taken;
        }
        self.inflight = (!lines.is_empty()).then_some(InFlight { end: pos, orphaned: false });
        Ok(Batch { lines, end: pos })
    }

    /// Whether the bound dropped part of the batch in flight while it was being sent.
    pub(super) fn orphaned(&self) -> bool {
        self.inflight.as_ref().is_some_and(|f| f.orphaned)
    }

    /// The receiver took `batch`.
    pub(super) fn ack(&mut self, batch: &Batch) -> io::Result<()> {
        self.pass(batch);
        let result = self.prune();
        self.publish();
        result
    }

    /// The batch in flight was orphaned by the bound and could not be delivered: it is lost
    /// like the rest of what the bound dropped.
    pub(super) fn abandon(&mut self, batch: &Batch) -> io::Result<()> {
        self.pass(batch);
        let dropped = self.classify(&batch.lines);
        let result = self.prune().and_then(|()| self.settle(dropped));
        self.publish();
        result
    }

    /// The receiver refused `batch` for its content: it is dropped, counted and announced
    /// (unless it was only this sink's loss records, which would be refused forever).
    pub(super) fn reject(&mut self, batch: &Batch) -> io::Result<()> {
        self.pass(batch);
        let n = batch.lines.len() as u64;
        self.shared.metrics.lose(HOOK, stage::SINK, n);
        let only_losses = batch.lines.iter().all(|l| own_loss(l, &self.shared.name).is_some());
        let mut result = self.prune();
        if !only_losses && result.is_ok() {
            let loss =
                self.shared.encode(&Record::Loss(loss_record(&self.shared.name, stage::SINK, REJECTED, n)));
            result = self.append_line(&loss).and_then(|()| self.settle(Dropped::default()));
        }
        self.publish();
        result
    }

    /// Moves the cursor past a batch that leaves the spool.
    fn pass(&mut self, batch: &Batch) {
        self.inflight = None;
        self.pending = self.pending.saturating_sub(batch.lines.len() as u64);
        self.cursor = self.cursor.max(batch.end);
    }

    fn append_line(&mut self, line: &[u8]) -> io::Result<()> {
        let last = self.segments.back().expect("the segment being written");
        if last.size > 0 && last.size + line.len() as u64 > self.segment_max {
            let id = last.id + 1;
            self.writer = create_segment(&self.dir, id)?;
            self.segments.push_back(Segment { id, size: 0 });
        }
        let last = self.segments.back_mut().expect("the segment being written");
        if let Err(err) = self.writer.write_all(line) {
            // Cut off a partly written line so that the spool holds whole lines only.
            let _ = self.writer.set_len(last.size);
            return Err(err);
        }
        last.size += line.len() as u64;
        self.bytes += line.len() as u64;
        self.pending += 1;
        Ok(())
    }

    /// Drops the oldest segments while the spool is over its bound (never the one being
    /// written), counting what they held, and appends the loss record announcing it plus
    /// `dropped`. Repeats when that record takes the spool over the bound again.
    fn settle(&mut self, mut dropped: Dropped) -> io::Result<()> {
        loop {
            let mut failed = None;
            while self.bytes > self.max_bytes && self.segments.len() > 1 {
                match self.drop_oldest() {
                    Ok(more) => dropped.add(more),
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
            }
            if dropped.records > 0 {
                self.shared.metrics.lose(HOOK, stage::SINK, dropped.records);
            }
            // Kept until a loss record says it, even across failures.
            self.unannounced += dropped.records + dropped.carried;
            dropped = Dropped::default();
            if let Some(err) = failed {
                return Err(err);
            }
            if self.unannounced == 0 {
                break;
            }
            let loss = loss_record(&self.shared.name, stage::SINK, SPOOL_FULL, self.unannounced);
            self.append_line(&self.shared.encode(&Record::Loss(loss)))?;
            self.unannounced = 0;
        }
        self.prune()
    }

    fn drop_oldest(&mut self) -> io::Result<Dropped> {
        let Segment { id, size } = self.segments[0];
        let mut from = match id.cmp(&self.cursor.segment) {
            std::cmp::Ordering::Less => size,
            std::cmp::Ordering::Equal => self.cursor.offset,
            std::cmp::Ordering::Greater => 0,
        };
        // What of the segment is in flight is not counted here: the sender learns that it
        // was orphaned, and counts it if it cannot deliver it after all.
        if let Some(flight) = &mut self.inflight {
            let flight_end = match flight.end.segment.cmp(&id) {
                std::cmp::Ordering::Greater => size,
                std::cmp::Ordering::Equal => flight.end.offset,
                std::cmp::Ordering::Less => from,
            };
            if flight_end > from {
                flight.orphaned = true;
                from = flight_end;
            }
        }
        let dropped = if from < size { self.classify_range(id, from, size)? } else { Dropped::default() };
        fs::remove_file(self.segment_path(id)).or_else(ignore_missing)?;
        self.segments.pop_front();
        self.bytes -= size;
        self.pending = self.pending.saturating_sub(dropped.lines);
        if self.cursor.segment <= id {
            self.cursor = Position { segment: self.segments[0].id, offset: 0 };
        }
        Ok(dropped)
    }

    fn classify_range(&self, id: u64, from: u64, to: u64) -> io::Result<Dropped> {
        let bytes = self.read_range(id, from, to)?;
        let lines: Vec<&[u8]> = whole_lines(&bytes).collect();
        Ok(self.classify(&lines))
    }

    fn classify(&self, lines: &[impl AsRef<[u8]>]) -> Dropped {
        let mut dropped = Dropped::default();
        for line in lines {
            dropped.lines += 1;
            match own_loss(line.as_ref(), &self.shared.name) {
                Some((reason, count)) if reason == SPOOL_FULL => dropped.carried += count,
                _ => dropped.records += 1,
            }
        }
        dropped
    }

    /// Points the cursor into an existing segment, deletes the segments wholly delivered and
    /// saves the cursor when it moved.
    fn prune(&mut self) -> io::Result<()> {
        match self.segments.iter().find(|s| s.id >= self.cursor.segment) {
            Some(s) if s.id == self.cursor.segment => self.cursor.offset = self.cursor.offset.min(s.size),
            Some(s) => self.cursor = Position { segment: s.id, offset: 0 },
            None => unreachable!("the segment being written is newer than the cursor"),
        }
        while self.segments.len() > 1 {
            let Segment { id, size } = self.segments[0];
            if id == self.cursor.segment && self.cursor.offset < size {
                break;
            }
            fs::remove_file(self.segment_path(id)).or_else(ignore_missing)?;
            self.segments.pop_front();
            self.bytes -= size;
            if self.cursor.segment == id {
                self.cursor = Position { segment: self.segments[0].id, offset: 0 };
            }
        }
        if self.saved != Some(self.cursor) {
            let tmp = self.dir.join(CURSOR_TMP);
            fs::write(&tmp, serde_json::to_vec(&self.cursor).map_err(io::Error::other)?)?;
            fs::rename(&tmp, self.dir.join(CURSOR))?;
            self.saved = Some(self.cursor);
        }
        Ok(())
    }

    fn publish(&self) {
        self.shared.spooled.store(self.pending, Ordering::Relaxed);
        self.bytes_gauge.set(self.undelivered_bytes() as i64);
    }

    /// Bytes from the cursor on: what the receiver has not acknowledged yet (the segment
    /// being written also holds delivered records until it rolls).
    fn undelivered_bytes(&self) -> u64 {
        let from_cursor: u64 =
            self.segments.iter().filter(|s| s.id >= self.cursor.segment).map(|s| s.size).sum();
        from_cursor.saturating_sub(self.cursor.offset)
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:012}.jsonl"))
    }

    fn read_range(&self, id: u64, from: u64, to: u64) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; to.saturating_sub(from) as usize];
        if !bytes.is_empty() {
            File::open(self.segment_path(id))?.read_exact_at(&mut bytes, from)?;
        }
        Ok(bytes)
    }
}

/// The newline-terminated lines of `bytes` (a cut-off last line is not a record).
fn whole_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|b| *b == b'\n').filter(|l| l.ends_with(b"\n"))
}

/// Moves whole lines from the start of `chunk` into `lines`, at most `max`; returns the bytes
/// taken.
fn take_lines(chunk: &[u8], max: usize, lines: &mut Vec<Vec<u8>>) -> u64 {
    let mut taken = 0;
    for line in chunk.split_inclusive(|b| *b == b'\n').take(max) {
        if !line.ends_with(b"\n") {
            break;
        }
        lines.push(line.to_vec());
        taken += line.len();
    }
    taken as u64
}

fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o640).open(dir.join(format!("{id:012}.jsonl")))
}

fn read_cursor(dir: &Path) -> io::Result<Option<Position>> {
    match fs::read(dir.join(CURSOR)) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(position) => Ok(Some(position)),
            Err(err) => {
                // Replaced atomically, so only tampering gets here: resend from the oldest.
                tracing::warn!(dir = %dir.display(), error = %err, "unreadable spool cursor; resending the whole spool");
                Ok(None)
            }
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

fn ignore_missing(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(err) }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        ops::metrics::Metrics,
        output::sink::test_support::{TempDir, alert_json, seq, webhook_sink},
    };

    fn shared(metrics: &Metrics) -> Arc<Shared> {
        Arc::new(Shared::new(&webhook_sink("http://127.0.0.1:9/", Path::new("/"), 10, 1), metrics, "n"))
    }

    fn line(record: &Value) -> Vec<u8> {
        let mut line = record.to_string().into_bytes();
        line.push(b'\n');
        line
    }

    fn parse(batch: &Batch) -> Vec<Value> {
        batch.lines.iter().map(|l| serde_json::from_slice(l).unwrap()).collect()
    }

    #[test]
    fn resumes_from_the_cursor() {
        let dir = TempDir::new("spool-resume");
        let metrics = Metrics::new(&[], 10);
        let mut spool = Spool::open(dir.path(), 1 << 20, shared(&metrics)).unwrap();
        spool.append(&(0..10).map(|i| line(&alert_json(i))).collect::<Vec<_>>()).unwrap();
        let batch = spool.read_batch(4).unwrap();
        assert_eq!(parse(&batch).iter().map(seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        spool.ack(&batch).unwrap();
        let unacked = spool.read_batch(3).unwrap();
        assert_eq!(unacked.lines.len(), 3);
        assert_eq!(spool.pending(), 6);
        drop(spool);

        let mut spool = Spool::open(dir.path(), 1 << 20, shared(&metrics)).unwrap();
        assert_eq!(spool.pending(), 6);
        spool.append(&[line(&alert_json(10))]).unwrap();
        let batch = spool.read_batch(100).unwrap();
        assert_eq!(parse(&batch).iter().map(seq).collect::<Vec<_>>(), (4..=10).collect::<Vec<_>>());
        spool.ack(&batch).unwrap();
        assert_eq!(spool.pending(), 0);
        assert_eq!(spool.segments.len(), 1, "delivered segments are deleted: {:?}", spool.segments);
    }

    #[test]
    fn the_bound_drops_the_oldest_and_counts_exactly() {
        let dir = TempDir::new("spool-bound");
        let metrics = Metrics::new(&[], 10);
        let max_bytes = 4096;
        let mut spool = Spool::open(dir.path(), max_bytes, shared(&metrics)).unwrap();
        let total = 200;
        for i in 0..total {
            spool.append(&[line(&alert_json(i))]).unwrap();
            assert!(spool.bytes <= max_bytes + spool.segment_max + 1024, "{} bytes", spool.bytes);
        }
        let lost = metrics.lost.with_label_values(&[HOOK, stage::SINK]).get();
        let batch = spool.read_batch(usize::MAX).unwrap();
        let records = parse(&batch);
        let alerts = records.iter().filter(|r| r["kind"] == "alert").count() as u64;
        let announced: u64 =
            records.iter().filter(|r| r["kind"] == "loss").map(|r| r["count"].as_u64().unwrap()).sum();
        assert!(lost > 0 && alerts > 0);
        assert_eq!(alerts + lost, total, "every record is in the spool or counted");
        assert_eq!(announced, lost, "the loss records left announce every dropped record");
        let kept: Vec<u64> = records.iter().filter(|r| r["kind"] == "alert").map(seq).collect();
        assert_eq!(kept, (total - alerts..total).collect::<Vec<_>>(), "the newest are kept");
        assert_eq!(spool.pending(), records.len() as u64);
        let on_disk: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, spool.bytes);
        assert_eq!(metrics.sink_spool_bytes.with_label_values(&["hook"]).get(), on_disk as i64);
    }

    #[test]
    fn a_batch_in_flight_is_not_counted_twice() {
        let dir = TempDir::new("spool-inflight");
        let metrics = Metrics::new(&[], 10);
        let mut spool = Spool::open(dir.path(), 4096, shared(&metrics)).unwrap();
        spool.append(&[line(&alert_json(0)), line(&alert_json(1))]).unwrap();
        let flight = spool.read_batch(2).unwrap();
        for i in 2..100 {
            spool.append(&[line(&alert_json(i))]).unwrap();
        }
        assert!(spool.orphaned());
        let lost = metrics.lost.with_label_values(&[HOOK, stage::SINK]).get();
        // Delivered after all: the two count as delivered, not lost.
        spool.ack(&flight).unwrap();
        assert_eq!(metrics.lost.with_label_values(&[HOOK, stage::SINK]).get(), lost);
        let rest = parse(&spool.read_batch(usize::MAX).unwrap());
        let alerts = rest.iter().filter(|r| r["kind"] == "alert").count() as u64;
        assert_eq!(alerts + lost + 2, 100);
        assert!(rest.iter().filter(|r| r["kind"] == "alert").all(|r| seq(r) >= 2), "{rest:?}");

        // Not delivered: the two are lost too, and announced.
        let flight = spool.read_batch(2).unwrap();
        for i in 100..200 {
            spool.append(&[line(&alert_json(i))]).unwrap();
        }
        assert!(spool.orphaned());
        spool.abandon(&flight).unwrap();
        let lost = metrics.lost.with_label_values(&[HOOK, stage::SINK]).get();
        let rest = parse(&spool.read_batch(usize::MAX).unwrap());
        let alerts = rest.iter().filter(|r| r["kind"] == "alert").count() as u64;
        let announced: u64 =
            rest.iter().filter(|r| r["kind"] == "loss").map(|r| r["count"].as_u64().unwrap()).sum();
        assert_eq!(alerts + lost + 2, 200, "{rest:?}");
        assert_eq!(announced, lost, "{rest:?}");
    }

    #[test]
    fn rejected_batches_are_announced_once() {
        let dir = TempDir::new("spool-reject");
        let metrics = Metrics::new(&[], 10);
        let mut spool = Spool::open(dir.path(), 1 << 20, shared(&metrics)).unwrap();
        spool.append(&[line(&alert_json(0)), line(&alert_json(1))]).unwrap();
        let batch = spool.read_batch(10).unwrap();
        spool.reject(&batch).unwrap();
        let batch = spool.read_batch(10).unwrap();
        let records = parse(&batch);
        assert_eq!(records.len(), 1);
        assert_eq!((&records[0]["reason"], &records[0]["count"]), (&json!("rejected"), &json!(2)));
        spool.reject(&batch).unwrap();
        assert!(
            spool.read_batch(10).unwrap().lines.is_empty(),
            "a refused loss record is not announced again"
        );
        assert_eq!(metrics.lost.with_label_values(&[HOOK, stage::SINK]).get(), 3);
    }
}
