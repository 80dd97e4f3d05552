//! The file sink: JSON lines appended to a file that is rotated by size (`path.1` is the
//! newest rotated file, `path.N` the oldest kept).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::writer::LineTarget;
use crate::ops::config::Fsync;

pub(super) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    fsync: Fsync,
    interval: Duration,
    /// `None` after a failed write: reopened (and its directory recreated) on the next one.
    file: Option<File>,
    size: u64,
    /// Written and not yet synced.
    dirty: bool,
    last_sync: Instant,
}

impl RotatingFile {
    pub(super) fn open(
        path: &Path,
        max_bytes: u64,
        keep: u32,
        fsync: Fsync,
        interval: Duration,
    ) -> io::Result<Self> {
        let mut file = Self {
            path: path.to_owned(),
            max_bytes,
            keep,
            fsync,
            interval,
            file: None,
            size: 0,
            dirty: false,
            last_sync: Instant::now(),
        };
        file.reopen()?;
        Ok(file)
    }

    fn reopen(&mut self) -> io::Result<&mut File> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o640).open(&self.path)?;
        self.size = file.metadata()?.len();
        Ok(self.file.insert(file))
    }

    fn rotated(&self, k: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{k}"));
        name.into()
    }

    /// `path.(k)` → `path.(k+1)` from the oldest kept down, `path` → `path.1`, anything
    /// beyond `keep` deleted, then a fresh `path`.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.take()
            && self.dirty
            && self.fsync != Fsync::Never
        {
            // The rotated file is not written again: make it durable now.
            file.sync_data()?;
            self.dirty = false;
        }
        self.remove_beyond_keep()?;
        if self.keep == 0 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            for k in (1..self.keep).rev() {
                fs::rename(self.rotated(k), self.rotated(k + 1)).or_else(ignore_missing)?;
            }
            fs::rename(&self.path, self.rotated(1)).or_else(ignore_missing)?;
        }
        self.reopen()?;
        Ok(())
    }

    /// Rotated files numbered beyond `keep` (left by a configuration that kept more).
    fn remove_beyond_keep(&self) -> io::Result<()> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else { return Ok(()) };
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let mut prefix = name.to_owned();
        prefix.push(".");
        let prefix = prefix.as_encoded_bytes();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let entry_name = entry.file_name();
            let number = entry_name
                .as_encoded_bytes()
                .strip_prefix(prefix)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<u32>().ok());
            if number.is_some_and(|n| n > self.keep) {
                fs::remove_file(entry.path()).or_else(ignore_missing)?;
            }
        }
        Ok(())
    }

    fn sync_now(&mut self) -> io::Result<()> {
        if let Some(file) = &self.file
            && self.dirty
        {
            file.sync_data()?;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }
}

fn ignore_missing(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(err) }
}

impl LineTarget for RotatingFile {
    fn write(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        let mut next = 0;
        let mut chunk = Vec::new();
        while next < lines.len() {
            let first = next;
            if self.file.is_none() {
                self.reopen().map_err(|e| (first, e))?;
            }
            let max_bytes = self.max_bytes;
            let fits = |size: u64, len: usize| size + len as u64 <= max_bytes;
            if self.size > 0 && !fits(self.size, lines[next].len()) {
                self.rotate().map_err(|e| (first, e))?;
            }
            // As many lines as fit; a single line longer than `max_bytes` gets a file alone.
            chunk.clear();
            while next < lines.len()
                && (chunk.is_empty() || fits(self.size + chunk.len() as u64, lines[next].len()))
            {
                chunk.extend_from_slice(&lines[next]);
                next += 1;
            }
            let file = self.file.as_mut().expect("opened above");
            if let Err(err) = file.write_all(&chunk) {
                // Cut off a partly written line so the retry does not leave half a line.
                let _ = file.set_len(self.size);
                self.file = None;
                return Err((first, err));
            }
            self.size += chunk.len() as u64;
            self.dirty = true;
        }
        Ok(())
    }

    fn sync(&mut self, closing: bool) -> io::Result<()> {
        match self.fsync {
            Fsync::Always => self.sync_now(),
            Fsync::Interval if closing || self.last_sync.elapsed() >= self.interval => self.sync_now(),
            Fsync::Interval | Fsync::Never => Ok(()),
        }
    }

    fn next_sync(&self) -> Option<Instant> {
        (self.fsync == Fsync::Interval && self.dirty).then(|| self.last_sync + self.interval)
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt as _, time::Duration};

    use super::*;
    use crate::{
        ops::metrics::Metrics,
        output::sink::{Sinks, test_support::*},
    };

    #[tokio::test]
    async fn rotates_by_size_keeping_every_line_whole() {
        for fsync in [Fsync::Always, Fsync::Interval, Fsync::Never] {
            let dir = TempDir::new("rotate");
            let path = dir.path().join("nested/dir/alerts.jsonl");
            let keep = 3;
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            // Left by an earlier configuration that kept more.
            for k in [4, 5] {
                fs::write(dir.path().join(format!("nested/dir/alerts.jsonl.{k}")), "old\n").unwrap();
            }
            let max_bytes = 4096;
            let mut sink = file_sink(&path, max_bytes, keep);
            if let crate::ops::config::Sink::File { fsync: f, fsync_interval_ms, .. } = &mut sink {
                *f = fsync;
                *fsync_interval_ms = 10;
            }
            let metrics = Metrics::new(&[], 10);
            let sinks = Sinks::start(&[sink], 1024, &metrics, "node-1").unwrap();
            let total = 300;
            for i in 0..total {
                sinks.publish(record(i));
            }
            let report = sinks.shutdown(Duration::from_secs(60)).await;
            assert!(report.is_complete(), "{fsync:?}: {report:?}");

            let names: Vec<PathBuf> = std::iter::once(path.clone())
                .chain((1..=keep + 2).map(|k| dir.path().join(format!("nested/dir/alerts.jsonl.{k}"))))
                .collect();
            for (k, name) in names.iter().enumerate() {
                assert_eq!(name.exists(), k <= keep as usize, "{fsync:?}: {}", name.display());
            }
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o037, 0, "{mode:o}");
            // Oldest first: the sequence numbers run on without a gap up to the last record.
            let mut seqs = Vec::new();
            for name in names[..=keep as usize].iter().rev() {
                let size = fs::metadata(name).unwrap().len();
                assert!(size <= max_bytes, "{fsync:?}: {} has {size} bytes", name.display());
                seqs.extend(read_lines(name).iter().map(seq));
            }
            let first = seqs[0];
            assert!(first > 0, "the oldest records were rotated away");
            assert_eq!(seqs, (first..total).collect::<Vec<_>>(), "{fsync:?}");
            assert_eq!(metrics.delivery_failures.with_label_values(&["file"]).get(), 0);
        }
    }

    #[test]
    fn a_failed_write_leaves_no_partial_line() {
        let dir = TempDir::new("partial");
        let path = dir.path().join("a.jsonl");
        let mut file = RotatingFile::open(&path, 1 << 20, 1, Fsync::Never, Duration::ZERO).unwrap();
        file.write(&[b"{\"a\":1}\n".to_vec()]).unwrap();
        // A directory in the way of the reopen makes the next write fail.
        file.file = None;
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = file.write(&[b"{\"a\":2}\n".to_vec()]).unwrap_err();
        assert_eq!(err.0, 0);
        fs::remove_dir(&path).unwrap();
        file.write(&[b"{\"a\":2}\n".to_vec()]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":2}\n");
    }
}
