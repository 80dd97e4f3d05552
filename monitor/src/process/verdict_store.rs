//! Verdicts on executables kept on disk, so that a restarted premain lets every file it judged
//! before run without reading its ELF again. A file is known by its device and inode, and by
//! its size, mtime and ctime: any write (or `touch`, `chmod`, a new file reusing the inode)
//! changes one of them, and the file is judged again.
//!
//! One line per verdict, appended as they come: `dev ino size mtime.ns ctime.ns python|other`.
//! A line that does not read so (a torn last write, a hand edit) is skipped and counted.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Verdicts kept at most; the file starts over beyond (it is a cache).
const MAX: usize = 65_536;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    pub(crate) fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

pub(crate) struct VerdictStore {
    path: PathBuf,
    verdicts: HashMap<FileId, bool>,
    file: Option<File>,
}

impl VerdictStore {
    /// The verdicts kept in `path` (none if it does not exist yet); later ones are appended.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            // Not UTF-8: not written by premain; start over.
            Err(err) if err.kind() == io::ErrorKind::InvalidData => String::new(),
            Err(err) => return Err(err),
        };
        let (verdicts, skipped) = parse(&text);
        if skipped > 0 {
            tracing::warn!(path = %path.display(), skipped, "verdict file lines unreadable; those files are judged again");
        }
        let mut store = Self { path: path.to_owned(), verdicts, file: None };
        // Rewritten when it holds repeats or unreadable lines, so it does not only grow.
        if skipped > 0 || text.lines().count() != store.verdicts.len() || store.verdicts.len() > MAX {
            if store.verdicts.len() > MAX {
                store.verdicts.clear();
            }
            store.rewrite()?;
        }
        store.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
        Ok(store)
    }

    pub(crate) fn get(&self, id: &FileId) -> Option<bool> {
        self.verdicts.get(id).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.verdicts.len()
    }

    /// Keeps a verdict; a failure to write only costs a judgment after a restart.
    pub(crate) fn put(&mut self, id: FileId, python: bool) {
        if self.verdicts.get(&id) == Some(&python) {
            return;
        }
        if self.verdicts.len() >= MAX {
            self.verdicts.clear();
            if let Err(err) = self.rewrite() {
                tracing::debug!(error = %err, "cannot start the verdict file over");
            }
        }
        self.verdicts.insert(id, python);
        if let Some(file) = &mut self.file
            && let Err(err) = file.write_all(line(&id, python).as_bytes())
        {
            tracing::debug!(error = %err, "cannot keep a verdict");
        }
    }

    fn rewrite(&mut self) -> io::Result<()> {
        let text: String = self.verdicts.iter().map(|(id, &python)| line(id, python)).collect();
        let tmp = self.path.with_extension("tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &self.path)?;
        if self.file.is_some() {
            self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        }
        Ok(())
    }
}

fn line(id: &FileId, python: bool) -> String {
    let FileId { dev, ino, size, mtime, ctime } = id;
    let verdict = if python { "python" } else { "other" };
    format!("{dev} {ino} {size} {}.{} {}.{} {verdict}\n", mtime.0, mtime.1, ctime.0, ctime.1)
}

/// The verdicts in `text` (the last one wins for a file listed twice), and how many lines
/// were unreadable.
fn parse(text: &str) -> (HashMap<FileId, bool>, usize) {
    let mut verdicts = HashMap::new();
    let mut skipped = 0;
    for entry in text.lines() {
        match parse_line(entry) {
            Some((id, python)) => _ = verdicts.insert(id, python),
            None => skipped += 1,
        }
    }
    (verdicts, skipped)
}

fn parse_line(entry: &str) -> Option<(FileId, bool)> {
    let mut fields = entry.split(' ');
    let mut number = || fields.next()?.parse::<u64>().ok();
    let (dev, ino, size) = (number()?, number()?, number()?);
    let mut time = || {
        let (sec, nsec) = fields.next()?.split_once('.')?;
        Some((sec.parse().ok()?, nsec.parse().ok()?))
    };
    let (mtime, ctime) = (time()?, time()?);
    let python = match fields.next()? {
        "python" => true,
        "other" => false,
        _ => return None,
    };
    fields.next().is_none().then_some((FileId { dev, ino, size, mtime, ctime }, python))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64) -> FileId {
        FileId { dev: 2049, ino, size: 4096, mtime: (1_700_000_000, 5), ctime: (1_700_000_001, 0) }
    }

    #[test]
    fn lines_read_back_as_written() {
        let text = line(&id(1), true) + &line(&id(2), false);
        let (verdicts, skipped) = parse(&text);
        assert_eq!((verdicts.get(&id(1)), verdicts.get(&id(2)), skipped), (Some(&true), Some(&false), 0));
    }

    #[test]
    fn unreadable_lines_are_skipped_and_counted() {
        let text = format!(
            "{}1 2 3 4.5 6.7 maybe\n1 2 3 4.5 6.7 python extra\n1 2\nnot numbers at all\n{}",
            line(&id(1), true),
            // A torn last write.
            &line(&id(2), false)[..10]
        );
        let (verdicts, skipped) = parse(&text);
        assert_eq!((verdicts.len(), skipped), (1, 5));
    }

    #[test]
    fn verdicts_survive_a_reopen_and_a_changed_file_is_unknown() {
        let dir = std::env::temp_dir().join(format!("premain-verdicts-{}", std::process::id()));
        let path = dir.join("verdicts");
        let mut store = VerdictStore::open(&path).expect("opens");
        store.put(id(1), true);
        store.put(id(2), false);
        store.put(id(2), true);
        drop(store);
        let store = VerdictStore::open(&path).expect("reopens");
        assert_eq!((store.get(&id(1)), store.get(&id(2)), store.len()), (Some(true), Some(true), 2));
        let touched = FileId { mtime: (1_700_000_002, 0), ..id(1) };
        assert_eq!(store.get(&touched), None);
        // The repeated line was compacted away on reopen.
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
        fs::remove_dir_all(dir).unwrap();
    }
}
