//! Decides from an executable file alone whether running it runs the CPython 3 interpreter.
//!
//! Names are chosen by whoever starts a program (a C program can be called `python3`, CPython
//! can be copied to `bash`), so the verdict never looks at them. It rests on what ld.so itself
//! uses: the CPython entry points exported by the executable (libpython linked in) or by the
//! `libpython3.N` it needs. Only program headers and the dynamic segment are read, not section
//! headers, because the kernel and ld.so ignore sections: stripping them must not hide Python.
//! Nothing is executed.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::BufRead;
use std::mem::size_of;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::{fs, io};

use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader, Sym};
use object::{Endian, Endianness};

/// Identity of an on-disk file, used as a cache key (the kernel gives the same key for a running
/// process's exe). `dev` is the user-space `st_dev` encoding; the kernel's `s_dev` differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Device holding the file (`st_dev`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Modification time, seconds: a file rewritten in place must be examined again.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
}

impl FileKey {
    /// Key of the file `path` names, following symlinks as exec does.
    pub fn of(path: &Path) -> io::Result<FileKey> {
        let m = fs::metadata(path)?;
        let (dev, ino, mtime_sec) = (m.dev(), m.ino(), m.mtime());
        let mtime_nsec = u32::try_from(m.mtime_nsec()).unwrap_or(0);
        Ok(FileKey { dev, ino, mtime_sec, mtime_nsec })
    }
}

/// What [`recognize`] concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Running the file runs CPython 3.
    Python(Interpreter),
    /// Anything else, CPython 2 and files that are not ELF included.
    NotPython,
}

/// A CPython 3 interpreter and where to probe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// The executable that was examined, as passed to [`recognize`].
    pub exe: PathBuf,
    /// The ELF file holding the CPython symbols, as a path this process can open: `exe`, or the
    /// libpython it loads (under `root`). `exe` with no symbols if that libpython was not found.
    pub image: PathBuf,
    /// `(major, minor)`, or `None` when no reliable source says.
    pub version: Option<(u8, u8)>,
    /// Built for the free-threaded (`t`) ABI; `false` when unknown.
    pub free_threaded: bool,
    /// File offsets in `image`, as uprobes take them, of the [`WANTED_SYMBOLS`] it exports as
    /// defined functions.
    pub symbols: BTreeMap<String, u64>,
    /// Where the stack walk finds the interpreter in `image`.
    pub runtime: Runtime,
    /// Set by the daemon once the start-up probes are attached to `image`.
    pub probed: bool,
}

/// `_PyRuntime`, the interpreter's root state, in an image: where the stack walk starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runtime {
    /// Its virtual address in the file; `None` when not exported.
    pub vaddr: Option<u64>,
    /// Virtual addresses of the functions in [`Interpreter::symbols`]: a probe's address minus
    /// its function's is where the image is loaded.
    pub functions: BTreeMap<String, u64>,
    /// The first bytes of its initial value, when the file holds them: from 3.13 on,
    /// `_Py_DebugOffsets`, the layout CPython publishes for debuggers.
    pub head: Vec<u8>,
}

/// Bytes of `_PyRuntime`'s initial value kept (3.13's `_Py_DebugOffsets` are 584).
pub const RUNTIME_HEAD: u64 = 1024;

/// CPython functions reported in [`Interpreter::symbols`] when present; older versions lack
/// some (`Py_BytesMain` and `PySys_Audit` are 3.8+, `_PyInterpreterState_SetRunningMain` 3.12+).
pub const WANTED_SYMBOLS: &[&str] = &[
    "Py_BytesMain",
    "Py_Main",
    "Py_RunMain",
    "Py_InitializeFromConfig",
    "PyImport_ImportModule",
    "PyImport_ImportModuleLevelObject",
    "PyEval_EvalCode",
    "PySys_Audit",
    "_PyInterpreterState_SetRunningMain",
];

/// Why [`recognize`] could not decide.
#[derive(Debug, thiserror::Error)]
pub enum RecognizeError {
    /// The executable could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The executable.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The executable is an ELF file but malformed or truncated.
    #[error("{} is not a valid ELF file: {reason}", path.display())]
    BadElf {
        /// The executable.
        path: PathBuf,
        /// One line saying what is wrong.
        reason: String,
    },
}

/// Interpreter entry points: the proof that an image is CPython rather than a user of it.
const ENTRY_POINTS: [&str; 2] = ["Py_BytesMain", "Py_Main"];

/// Examine an executable. `root` is the filesystem root to resolve absolute library paths under
/// (normally "/"; for a process in a container the caller passes /proc/<pid>/root).
///
/// Pass `exe` as a path under `root` so that `$ORIGIN` resolves as in the container. CPython 2
/// is `NotPython`: it lacks the hooks the monitor probes. Programs that embed CPython by
/// linking libpython (gdb) are `Python`. Needing `libpython3*.so*` makes a file `Python` even
/// when no library ld.so would accept is found (then `image == exe`, no symbols): the program
/// cannot run unless ld.so found one, maybe via `LD_LIBRARY_PATH` which is invisible here, so
/// a missing or decoy library must not hide a real interpreter.
pub fn recognize(exe: &Path, root: &Path) -> Result<Verdict, RecognizeError> {
    let source = FileSource::open(exe).map_err(|source| RecognizeError::Io { path: exe.into(), source })?;
    let Some(info) =
        examine_source(&source).map_err(|reason| RecognizeError::BadElf { path: exe.into(), reason })?
    else {
        return Ok(Verdict::NotPython);
    };
    let python = |image: PathBuf, (minor, free_threaded): Abi, symbols, runtime| {
        let (exe, version) = (exe.into(), minor.map(|minor| (3, minor)));
        Verdict::Python(Interpreter { exe, image, version, free_threaded, symbols, runtime, probed: false })
    };
    if let Some(abi) = info.abi {
        return Ok(python(exe.into(), abi, info.symbols, info.runtime));
    }
    let libpython = info.needed.iter().find_map(|n| Some((n, libpython3_abi(n.rsplit('/').next()?)?)));
    let Some((needed, abi)) = libpython else {
        return Ok(Verdict::NotPython);
    };
    // ld.so searches only for bare names; one with a slash is used as it is.
    let dirs = if needed.contains('/') { vec![PathBuf::new()] } else { search_dirs(&info, exe, root) };
    for dir in dirs {
        let Some(host) = resolve_in(root, &dir.join(needed)).map(|lib| root.join(lib)) else {
            continue;
        };
        // Like ld.so, pass over files it would reject (not ELF, another class or machine).
        let Ok(Ok(lib)) = FileSource::open(&host).map(|source| parse_elf(&source)) else {
            continue;
        };
        if (lib.is64, lib.machine) == (info.is64, info.machine) && lib.is_interpreter() {
            return Ok(python(host, abi, lib.symbols, lib.runtime));
        }
    }
    Ok(python(exe.into(), abi, BTreeMap::new(), Runtime::default()))
}

/// The part of [`recognize`] that reads nothing but the executable's bytes (and so can be
/// fuzzed): `None` if they are not ELF, else the ELF file with, for an interpreter, its ABI.
pub fn examine(data: &[u8]) -> Result<Option<ElfInfo>, String> {
    examine_source(&Memory(data))
}

fn examine_source(source: &dyn Source) -> Result<Option<ElfInfo>, String> {
    // For scripts the kernel runs (and reports) the `#!` interpreter, so only ELF matters.
    if source.bytes(0, 4).ok().as_deref() != Some(&elf::ELFMAG[..]) {
        return Ok(None);
    }
    let mut info = parse_elf(source)?;
    info.abi = info.is_interpreter().then(|| static_abi(source, &info));
    Ok(Some(info))
}

/// Where an ELF file's bytes come from. Only the ranges the verdict needs are read: headers,
/// the dynamic segment, its strings, hash table and symbols, and (for a statically linked
/// interpreter whose version is not exported) the loaded segments' strings.
trait Source {
    /// The `len` bytes at `offset`; an error if the file has fewer.
    fn bytes(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, String>;
    fn len(&self) -> u64;
}

/// One read at most this long: the parts of an ELF file the verdict reads are small, so a
/// larger one means a hostile length field.
const READ_MAX: u64 = 64 << 20;

/// Bytes already in memory.
struct Memory<'a>(&'a [u8]);

impl Source for Memory<'_> {
    fn bytes(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, String> {
        let end = offset.checked_add(len).filter(|end| *end <= self.len());
        let range = end.map(|end| offset as usize..end as usize);
        range.and_then(|r| self.0.get(r)).map(Cow::Borrowed).ok_or_else(|| past_end(offset, len))
    }

    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

/// A file read range by range (`pread`), never mapped: a file truncated while it is read
/// gives a short read, not a `SIGBUS`.
struct FileSource {
    file: fs::File,
    len: u64,
}

impl FileSource {
    fn open(path: &Path) -> io::Result<Self> {
        let file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl Source for FileSource {
    fn bytes(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, String> {
        use std::os::unix::fs::FileExt as _;
        if offset.checked_add(len).is_none_or(|end| end > self.len) || len > READ_MAX {
            return Err(past_end(offset, len));
        }
        let mut buf = vec![0; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| format!("reading {len} bytes at {offset:#x}: {e}"))?;
        Ok(Cow::Owned(buf))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

fn past_end(offset: u64, len: u64) -> String {
    format!("{len} bytes at {offset:#x} are past the end of the file")
}

/// Minor version (major is 3) if known, and whether the ABI is free-threaded.
type Abi = (Option<u8>, bool);

/// ABI of a library named like `libpython3.11.so.1.0`, `libpython3.6m.so` or
/// `libpython3.13t.so`; `None` unless the name matches `libpython3*.so*`.
fn libpython3_abi(name: &str) -> Option<Abi> {
    let rest = name.strip_prefix("libpython3")?;
    let head = &rest.as_bytes()[..rest.find(".so")?];
    // Also reached by `libpython3.so`, the stable-ABI forwarder, which names no version.
    let (minor, flags) = split_minor(head.strip_prefix(b".").unwrap_or_default());
    let known = flags.iter().all(u8::is_ascii_lowercase);
    Some(if known { (minor, flags.contains(&b't')) } else { (None, false) })
}

/// Leading decimal minor version, and what follows it.
fn split_minor(s: &[u8]) -> (Option<u8>, &[u8]) {
    let (digits, rest) = s.split_at(s.iter().take_while(|b| b.is_ascii_digit()).count());
    let minor = digits.iter().try_fold(0u8, |n, d| n.checked_mul(10)?.checked_add(d - b'0'));
    (minor.filter(|_| !digits.is_empty()), rest)
}

/// ABI of an image with libpython linked in, where no file name can be trusted.
///
/// 3.11+ exports `Py_Version` (`PY_VERSION_HEX`), which is exact. The bare `PY_VERSION`
/// string ("3.10.13") is not reliable: linkers merge it into longer strings ending the same
/// way (pyenv's libpython keeps only "/root/.pyenv/versions/3.10.13"). So older versions rely
/// on the cache tag "cpython-3N" (sysmodule.c) and the extension suffix
/// ".cpython-3N<abiflags>-<platform>.so" (dynload_shlib.c), believed only when each occurs
/// once and they agree. The suffix is also the only record of the `t` ABI in such an image.
fn static_abi(source: &dyn Source, info: &ElfInfo) -> Abi {
    // PY_VERSION_HEX is 0xMMmmppLS: major, minor, patch, release level and serial.
    let exact = info.py_version.filter(|v| v >> 24 == 3).map(|v| (v >> 16) as u8);
    // Free-threaded builds exist from 3.13 on: an exact older version needs no string search.
    if exact.is_some_and(|minor| minor < 13) {
        return (exact, false);
    }
    let (mut tags, mut suffixes) = (BTreeSet::new(), BTreeSet::new());
    for load in &info.loads {
        scan_segment(source, load, &mut |window, dash| {
            let head = &window[..dash];
            let Some(head) = head.strip_suffix(b"cpython") else { return };
            let tail = window[dash + 1..].split(|&b| b == 0).next().unwrap_or_default();
            let (Some(minor), flags) = split_minor(tail.strip_prefix(b"3").unwrap_or_default()) else {
                return;
            };
            let starts_string = |s: &[u8]| s.last().is_none_or(|&c| c == 0);
            let dash = flags.iter().position(|&b| b == b'-');
            if flags.is_empty() && starts_string(head) {
                tags.insert(minor);
            } else if let (Some(head), Some(dash)) = (head.strip_suffix(b"."), dash)
                && starts_string(head)
                && flags[..dash].iter().all(u8::is_ascii_lowercase)
            {
                suffixes.insert((minor, flags[..dash].contains(&b't')));
            }
        });
    }
    let strings = match (tags.len(), suffixes.pop_first()) {
        (1, Some(suffix)) if suffixes.is_empty() && tags.contains(&suffix.0) => Some(suffix),
        _ => None,
    };
    let minor = exact.or(strings.map(|(minor, _)| minor));
    (minor, strings.is_some_and(|(m, t)| t && Some(m) == minor))
}

/// Calls `found(window, at)` for every `-` in the segment's file bytes, read in chunks: the
/// window holds the bytes around it (at least [`LOOK_BEHIND`] before and [`LOOK_AHEAD`]
/// after, where the segment has them) and `at` is the dash's index in it.
fn scan_segment(source: &dyn Source, load: &Load, found: &mut dyn FnMut(&[u8], usize)) {
    const CHUNK: u64 = 1 << 20;
    const LOOK_BEHIND: u64 = 16;
    const LOOK_AHEAD: u64 = 64;
    let (start, end) = (load.1, load.1 + load.2);
    let mut at = start;
    while at < end {
        let from = at.saturating_sub(LOOK_BEHIND).max(start);
        let to = (at + CHUNK + LOOK_AHEAD).min(end);
        let Ok(window) = source.bytes(from, to - from) else { return };
        let scan_end = ((at + CHUNK).min(end) - from) as usize;
        let mut pos = (at - from) as usize;
        // Hopping between '-' (memchr in skip_until) is 10x faster than splitting at NULs.
        let mut rest: &[u8] = &window[pos..scan_end];
        while let Ok(n @ 1..) = rest.skip_until(b'-') {
            pos += n;
            if window[pos - 1] == b'-' {
                found(&window, pos - 1);
            }
        }
        at += CHUNK;
    }
}

/// Directories ld.so would search for `exe`'s libraries, as paths inside `root`. Left out:
/// LD_LIBRARY_PATH (not visible here), ld.so.cache (built from the same ld.so.conf), hwcaps
/// subdirectories, and `include` lines other than the usual /etc/ld.so.conf.d/*.conf.
fn search_dirs(info: &ElfInfo, exe: &Path, root: &Path) -> Vec<PathBuf> {
    // ld.so takes $ORIGIN from /proc/self/exe: the real file's directory, past any symlink.
    let origin = || {
        let abs = std::path::absolute(exe).ok()?;
        let real = match abs.strip_prefix(root) {
            Ok(inside) => Path::new("/").join(resolve_in(root, inside)?),
            Err(_) => fs::canonicalize(&abs).ok()?,
        };
        Some(real.parent()?.to_str()?.to_owned())
    };
    let mut dirs = Vec::new();
    // DT_RPATH counts only without DT_RUNPATH (LD_LIBRARY_PATH would come between them).
    let path = info.runpath.as_ref().or(info.rpath.as_ref());
    for dir in path.iter().flat_map(|p| p.split(':')) {
        if !dir.contains("ORIGIN") {
            dirs.push(PathBuf::from(dir));
        } else if let Some(o) = origin() {
            dirs.push(dir.replace("${ORIGIN}", &o).replace("$ORIGIN", &o).into());
        }
    }
    let mut confs: Vec<_> = fs::read_dir(root.join("etc/ld.so.conf.d"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "conf"))
        .collect();
    confs.sort();
    for conf in std::iter::once(root.join("etc/ld.so.conf")).chain(confs) {
        let text = fs::read_to_string(conf).unwrap_or_default();
        for line in text.lines().map(|l| l.split('#').next().unwrap_or_default().trim()) {
            dirs.extend(line.starts_with('/').then(|| PathBuf::from(line)));
        }
    }
    let multiarch = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"];
    let defaults = ["/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib"];
    dirs.extend(multiarch.into_iter().chain(defaults).map(PathBuf::from));
    dirs.retain(|d| d.is_absolute());
    dirs
}

/// Resolves `path` (as seen inside `root`) following every symlink inside `root`, as for a
/// process whose root it is: opening `root/path` would follow absolute links on the host.
/// Returns the path relative to `root`; `None` if a component is missing or links loop.
fn resolve_in(root: &Path, path: &Path) -> Option<PathBuf> {
    // Owned, reversed components; ".." cannot be a Normal name, so it marks ParentDir.
    let push = |todo: &mut Vec<OsString>, path: &Path| {
        todo.extend(path.components().rev().filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        }))
    };
    let (mut done, mut todo, mut links) = (PathBuf::new(), Vec::new(), 0);
    push(&mut todo, path);
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let next = done.join(name);
        let host = root.join(&next);
        if !fs::symlink_metadata(&host).ok()?.file_type().is_symlink() {
            done = next;
            continue;
        }
        links += 1;
        let target = fs::read_link(&host).ok().filter(|_| links <= 40)?;
        if target.is_absolute() {
            done = PathBuf::new();
        }
        push(&mut todo, &target);
    }
    Some(done)
}

/// The file-backed part of a PT_LOAD segment: virtual address, file offset, size.
struct Load(u64, u64, u64);

/// What [`recognize`] needs from one ELF file.
#[derive(Default)]
pub struct ElfInfo {
    machine: u16,
    is64: bool,
    loads: Vec<Load>,
    needed: Vec<String>,
    rpath: Option<String>,
    runpath: Option<String>,
    /// Exported [`WANTED_SYMBOLS`] functions, at file offsets.
    symbols: BTreeMap<String, u64>,
    /// Where `_PyRuntime` is.
    runtime: Runtime,
    /// Value of the exported `Py_Version` (PY_VERSION_HEX).
    py_version: Option<u64>,
    /// Set by [`examine`] for an interpreter: what [`static_abi`] finds.
    abi: Option<Abi>,
}

impl ElfInfo {
    /// The [`WANTED_SYMBOLS`] exported as functions, at file offsets.
    pub fn symbols(&self) -> &BTreeMap<String, u64> {
        &self.symbols
    }

    /// For an interpreter, `(3, minor)` if known.
    pub fn version(&self) -> Option<(u8, u8)> {
        self.abi?.0.map(|minor| (3, minor))
    }

    fn is_interpreter(&self) -> bool {
        ENTRY_POINTS.iter().any(|n| self.symbols.contains_key(*n))
    }

    /// File offset of virtual address `vaddr`, and where its segment's file data ends.
    fn file_offset(&self, vaddr: u64) -> Option<(u64, u64)> {
        // Checked because vaddr fields are not bounded by the file size.
        self.loads.iter().find_map(|l| {
            let delta = vaddr.checked_sub(l.0).filter(|d| *d < l.2)?;
            Some((l.1 + delta, l.1 + l.2))
        })
    }

    /// `len` file bytes at virtual address `vaddr`, all inside its segment; `None` when they
    /// are not there.
    fn at_vaddr<'a>(&self, source: &'a dyn Source, vaddr: u64, len: u64) -> Option<Cow<'a, [u8]>> {
        let (start, end) = self.file_offset(vaddr)?;
        (len <= end - start).then(|| source.bytes(start, len).ok()).flatten()
    }
}

// Dynamic tags, compared with raw words (object's DT_* constants changed type in 0.39).
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
const DT_GNU_HASH: u64 = 0x6fff_fef5;

fn parse_elf(source: &dyn Source) -> Result<ElfInfo, String> {
    // e_ident[EI_CLASS] picks the layout; FileHeader::parse checks the rest of e_ident.
    match source.bytes(4, 1).map(|b| b[0]) {
        Ok(elf::ELFCLASS32) => parse_as::<FileHeader32<Endianness>>(source),
        Ok(elf::ELFCLASS64) => parse_as::<FileHeader64<Endianness>>(source),
        _ => Err("unknown ELF class".into()),
    }
}

fn parse_as<E: FileHeader<Endian = Endianness>>(source: &dyn Source) -> Result<ElfInfo, String> {
    let header_bytes = source.bytes(0, size_of::<E>() as u64)?;
    let header = E::parse(&*header_bytes).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let mut info = ElfInfo::default();
    (info.machine, info.is64) = (header.e_machine(endian), header.is_type_64());
    let entry = u64::from(header.e_phentsize(endian));
    if header.e_phnum(endian) > 0 && entry != size_of::<E::ProgramHeader>() as u64 {
        return Err(format!("program header entries of {entry} bytes"));
    }
    let count = u64::from(header.e_phnum(endian));
    let table = source.bytes(header.e_phoff(endian).into(), count * entry)?;
    let headers: &[E::ProgramHeader] =
        object::pod::slice_from_all_bytes(&table).map_err(|()| "misaligned program headers")?;
    let mut dynamic = Cow::Borrowed(&[][..]);
    for ph in headers {
        let (kind, offset, size): (u32, u64, u64) =
            (ph.p_type(endian), ph.p_offset(endian).into(), ph.p_filesz(endian).into());
        if kind == elf::PT_LOAD || kind == elf::PT_DYNAMIC {
            // An empty segment (all .bss) maps nothing of the file, wherever it says it starts.
            if size > 0 && offset.checked_add(size).is_none_or(|end| end > source.len()) {
                return Err(format!("segment at {offset:#x} is past the end of the file"));
            }
            match kind {
                elf::PT_DYNAMIC => dynamic = source.bytes(offset, size)?,
                // No file bytes (all .bss): nothing of the file to map.
                _ if size == 0 => {}
                _ => info.loads.push(Load(ph.p_vaddr(endian).into(), offset, size)),
            }
        }
    }
    let width = if info.is64 { 8 } else { 4 };
    let word = |b: &[u8]| {
        let fold = |acc: u64, &byte: &u8| acc << 8 | u64::from(byte);
        match endian.is_little_endian() {
            true => b.iter().rev().fold(0, fold),
            false => b.iter().fold(0, fold),
        }
    };
    let (mut tags, mut needed) = (BTreeMap::new(), Vec::new());
    for entry in dynamic.chunks_exact(2 * width) {
        match (word(&entry[..width]), word(&entry[width..])) {
            (DT_NULL, _) => break,
            (DT_NEEDED, name) => needed.push(name),
            (tag, value) => _ = tags.insert(tag, value),
        }
    }
    let Some(&strtab) = tags.get(&DT_STRTAB) else {
        return match needed.is_empty() {
            true => Ok(info), // nothing to link, nothing exported
            false => Err("DT_NEEDED without DT_STRTAB".into()),
        };
    };
    let Some((strtab_at, segment_end)) = info.file_offset(strtab) else {
        return Err("DT_STRTAB is outside the file".into());
    };
    let strsz = tags.get(&DT_STRSZ).map_or(u64::MAX, |&n| n).min(segment_end - strtab_at);
    let strtab = source.bytes(strtab_at, strsz)?;
    let string = |offset: u64| -> Result<&[u8], String> {
        let s = strtab.get(offset as usize..).unwrap_or_default();
        let end = s.iter().position(|&b| b == 0);
        Ok(&s[..end.ok_or("string outside DT_STRTAB or unterminated")?])
    };
    let text = |offset: &u64| string(*offset).map(|s| String::from_utf8_lossy(s).into_owned());
    info.needed = needed.iter().map(text).collect::<Result<_, _>>()?;
    info.rpath = tags.get(&DT_RPATH).map(text).transpose()?;
    info.runpath = tags.get(&DT_RUNPATH).map(text).transpose()?;

    // ld.so finds symbols only through a hash table, so its length bounds what is exported.
    let count = if let Some(&at) = tags.get(&DT_GNU_HASH) {
        gnu_hash_symbols(source, &info, at, width as u64, word)?
    } else if let Some(&at) = tags.get(&DT_HASH) {
        // nbucket, nchain: there are nchain symbols.
        let words = info.at_vaddr(source, at, 8).ok_or("dynamic tag 0x4 is outside the file")?;
        word(&words[4..8])
    } else {
        0
    };
    let Some(&symtab) = tags.get(&DT_SYMTAB).filter(|_| count > 0) else {
        return Ok(info);
    };
    let entry = size_of::<E::Sym>() as u64;
    let symbols = count
        .checked_mul(entry)
        .and_then(|len| info.at_vaddr(source, symtab, len))
        .ok_or("dynamic symbols are misaligned or past the end of the file")?;
    let symbols: &[E::Sym] =
        object::pod::slice_from_all_bytes(&symbols).map_err(|()| "misaligned symbols")?;
    for sym in symbols {
        if sym.st_shndx(endian) == elf::SHN_UNDEF || sym.st_bind() == elf::STB_LOCAL {
            continue;
        }
        let name = string(sym.st_name(endian).into())?;
        let vaddr = sym.st_value(endian).into();
        let wanted = WANTED_SYMBOLS.iter().find(|w| w.as_bytes() == name);
        if let (Some(wanted), elf::STT_FUNC) = (wanted, sym.st_type()) {
            if let Some((offset, _)) = info.file_offset(vaddr) {
                info.symbols.insert(wanted.to_string(), offset);
                info.runtime.functions.insert(wanted.to_string(), vaddr);
            }
        } else if name == b"Py_Version" && sym.st_type() == elf::STT_OBJECT {
            info.py_version = info.at_vaddr(source, vaddr, width as u64).map(|b| word(&b));
        } else if name == b"_PyRuntime" && sym.st_type() == elf::STT_OBJECT {
            info.runtime.vaddr = Some(vaddr);
            // Initialised data is in the file; `.bss` (3.8, 3.9) is not, and needs none.
            if let Some((start, end)) = info.file_offset(vaddr) {
                let len = RUNTIME_HEAD.min(end - start);
                info.runtime.head = source.bytes(start, len).map(|b| b.into_owned()).unwrap_or_default();
            }
        }
    }
    Ok(info)
}

/// The number of dynamic symbols a `DT_GNU_HASH` table covers: past the highest bucket's
/// first symbol, the chain runs until an entry with its low bit set. Read a part at a time.
fn gnu_hash_symbols(
    source: &dyn Source,
    info: &ElfInfo,
    at: u64,
    width: u64,
    word: impl Fn(&[u8]) -> u64,
) -> Result<u64, String> {
    let outside = || "dynamic tag 0x6ffffef5 is outside the file".to_owned();
    let header = info.at_vaddr(source, at, 16).ok_or_else(outside)?;
    let (nbuckets, base, bloom) = (word(&header[0..4]), word(&header[4..8]), word(&header[8..12]));
    let buckets_at =
        at.checked_add(16).and_then(|a| a.checked_add(bloom.checked_mul(width)?)).ok_or_else(outside)?;
    let buckets =
        nbuckets.checked_mul(4).and_then(|len| info.at_vaddr(source, buckets_at, len)).ok_or_else(outside)?;
    let Some(last) = buckets.chunks_exact(4).map(&word).max().filter(|&m| m != 0) else {
        return Ok(0);
    };
    // Every symbol takes at least 16 bytes of the file (a 32-bit `Elf32_Sym`).
    if last < base || (last + 1) * 16 > source.len() {
        return Err("DT_GNU_HASH's first symbol index is out of range".into());
    }
    let chains_at = buckets_at + nbuckets * 4;
    let mut index = last;
    loop {
        let entry = info.at_vaddr(source, chains_at + (index - base) * 4, 4).ok_or_else(outside)?;
        if word(&entry) & 1 == 1 {
            return Ok(index + 1);
        }
        index += 1;
        if (index + 1) * 16 > source.len() {
            return Err("DT_GNU_HASH's chain runs past the symbols the file can hold".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const DEBIAN: &str = "/usr/bin/python3.11";

    /// A directory under the temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("interp-{}-{name}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// `bin/python3.N` of every pyenv CPython 3, with the version its directory names.
    fn pyenv_pythons() -> Vec<(PathBuf, (u8, u8))> {
        let found = crate::testing::pyenv_pythons();
        if found.is_empty() {
            crate::testing::cannot_run("no pyenv CPython on this machine");
        }
        found
    }

    /// The newest pyenv CPython 3.`minor`.
    fn pyenv_python(minor: u8) -> Option<PathBuf> {
        let found = pyenv_pythons().into_iter().rev().find(|(_, v)| *v == (3, minor)).map(|(exe, _)| exe);
        if found.is_none() {
            crate::testing::cannot_run(&format!("no pyenv CPython 3.{minor} on this machine"));
        }
        found
    }

    fn verdict(exe: &Path) -> Verdict {
        recognize(exe, Path::new("/")).unwrap()
    }

    /// Recognizes `exe` as `version` and checks its probe points lie on code.
    fn check(exe: &Path, root: &Path, version: (u8, u8)) -> Interpreter {
        let interp = match recognize(exe, root) {
            Ok(Verdict::Python(interp)) => interp,
            other => panic!("{exe:?}: {other:?}"),
        };
        assert_eq!(interp.version, Some(version), "{interp:?}");
        let image = fs::read(&interp.image).unwrap();
        let mut wanted = vec!["Py_Main", "PyImport_ImportModule", "PyEval_EvalCode"];
        if version >= (3, 8) {
            wanted.extend(["Py_BytesMain", "PySys_Audit"]);
        }
        for name in wanted {
            let offset = interp.symbols.get(name).copied().expect(name) as usize;
            let code = image.get(offset..offset + 16).expect("offset inside the image");
            assert!(code.iter().any(|&b| b != 0), "{name} at {offset:#x} in {interp:?}");
        }
        interp
    }

    #[test]
    fn every_cpython3_here_is_python() {
        let mut pythons = pyenv_pythons();
        pythons.extend(Path::new(DEBIAN).exists().then(|| (DEBIAN.into(), (3, 11))));
        for (exe, version) in pythons {
            let interp = check(&exe, Path::new("/"), version);
            assert!(!interp.free_threaded);
            eprintln!("{} -> {} {version:?}", exe.display(), interp.image.display());
        }
    }

    /// Counts the bytes a judgment reads.
    struct Counting(FileSource, std::cell::Cell<u64>);

    impl Source for Counting {
        fn bytes(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, String> {
            self.1.set(self.1.get() + len);
            self.0.bytes(offset, len)
        }
        fn len(&self) -> u64 {
            self.0.len()
        }
    }

    #[test]
    fn judging_reads_a_small_part_of_the_file() {
        let mut pythons = pyenv_pythons();
        pythons.extend(Path::new(DEBIAN).exists().then(|| (DEBIAN.into(), (3, 11))));
        // From 3.13 on a statically linked build is searched for the free-threaded ABI's
        // strings; before 3.11 one exports no version. Dynamically linked ones (pyenv's) never.
        for (exe, version) in pythons {
            let interp = check(&exe, Path::new("/"), version);
            let exe_source = Counting(FileSource::open(&exe).unwrap(), Default::default());
            examine_source(&exe_source).unwrap().expect("ELF");
            let (mut read, mut size) = (exe_source.1.get(), exe_source.len());
            if interp.image != exe {
                let lib = Counting(FileSource::open(&interp.image).unwrap(), Default::default());
                parse_elf(&lib).unwrap();
                (read, size) = (read + lib.1.get(), size + lib.len());
            }
            assert!(read * 10 < size, "{exe:?}: read {read} of {size} bytes");
        }
    }

    #[test]
    fn version_strings_agree_with_library_names() {
        let mut images: Vec<PathBuf> = vec![DEBIAN.into()];
        for (exe, version) in pyenv_pythons() {
            images.push(check(&exe, Path::new("/"), version).image);
        }
        for image in images.iter().filter(|p| p.exists()) {
            let data = fs::read(image).unwrap();
            let mut info = parse_elf(&Memory(&data)).unwrap();
            let name = image.file_name().unwrap().to_str().unwrap();
            let expected = libpython3_abi(name).unwrap_or((Some(11), false));
            assert_eq!(static_abi(&Memory(&data), &info), expected, "{image:?}");
            info.py_version = None; // the fallback alone must agree too
            assert_eq!(static_abi(&Memory(&data), &info), expected, "{image:?} strings only");
        }
    }

    #[test]
    fn library_names() {
        assert_eq!(libpython3_abi("libpython3.11.so.1.0"), Some((Some(11), false)));
        assert_eq!(libpython3_abi("libpython3.6m.so.1.0"), Some((Some(6), false)));
        assert_eq!(libpython3_abi("libpython3.13t.so"), Some((Some(13), true)));
        assert_eq!(libpython3_abi("libpython3.so"), Some((None, false)));
        assert_eq!(libpython3_abi("libpython2.7.so.1.0"), None);
        assert_eq!(libpython3_abi("libpython3.11.a"), None);
    }

    #[test]
    fn offset_matches_nm_and_readelf() {
        if !Path::new(DEBIAN).exists() {
            return crate::testing::cannot_run(&format!("no {DEBIAN}"));
        }
        let run = |mut tool: Command, args: &[&str]| {
            let out = tool.args(args).arg(DEBIAN).output().expect("runs");
            assert!(out.status.success(), "{tool:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let nm = run(crate::testing::program("nm"), &["-D", "--defined-only"]);
        let readelf = run(crate::testing::program("readelf"), &["-lW"]);
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        let line = nm.lines().find(|l| l.ends_with(" T Py_BytesMain")).unwrap();
        let vaddr = hex(line.split(' ').next().unwrap());
        let fields = readelf.lines().map(|l| l.split_whitespace().collect::<Vec<_>>());
        let (offset, start, _) = fields
            .filter(|f| f.first() == Some(&"LOAD"))
            .map(|f| (hex(f[1]), hex(f[2]), hex(f[4])))
            .find(|&(_, start, size)| (start..start + size).contains(&vaddr))
            .unwrap();
        let Verdict::Python(interp) = verdict(Path::new(DEBIAN)) else { panic!() };
        assert_eq!(interp.symbols["Py_BytesMain"], offset + vaddr - start);
        assert_ne!(start, offset, "non-PIE: the conversion is not the identity");
    }

    #[test]
    fn venv_symlink_is_python() {
        let Some(base) = pyenv_python(12) else { return };
        let dir = Scratch::new("venv");
        let venv = dir.0.join("venv");
        let made = Command::new(base).args(["-m", "venv", "--without-pip"]).arg(&venv).status();
        assert!(made.unwrap().success());
        let exe = venv.join("bin/python");
        assert!(fs::symlink_metadata(&exe).unwrap().file_type().is_symlink());
        assert_eq!(check(&exe, Path::new("/"), (3, 12)).exe, exe);
        let target = fs::canonicalize(&exe).unwrap();
        assert_eq!(FileKey::of(&exe).unwrap(), FileKey::of(&target).unwrap());
    }

    #[test]
    fn names_do_not_matter() {
        let dir = Scratch::new("names");
        let copy = |from: &str, to: &str| {
            let dest = dir.0.join(to);
            let _ = fs::remove_file(&dest);
            fs::copy(from, &dest).ok().map(|_| dest)
        };
        let Some(pyenv_311) = pyenv_python(11) else { return };
        for from in [pyenv_311.to_str().unwrap(), DEBIAN] {
            let bash = copy(from, "bash").unwrap_or_else(|| panic!("cannot copy {from}"));
            check(&bash, Path::new("/"), (3, 11));
        }
        assert_eq!(verdict(&copy("/bin/true", "python3").unwrap()), Verdict::NotPython);
        let script = dir.0.join("python3");
        for text in ["#!/bin/sh\nexec /usr/bin/python3.11 \"$@\"\n", ""] {
            fs::write(&script, text).unwrap();
            assert_eq!(verdict(&script), Verdict::NotPython);
        }
        // CPython 2 lacks the hooks premain probes; this machine kind may have one.
        let python2 = Path::new("/root/.pyenv/versions/2.7.18/bin/python2.7");
        if python2.exists() {
            assert_eq!(verdict(python2), Verdict::NotPython);
        }
    }

    #[test]
    fn libraries_resolve_inside_root() {
        let Some(python) = pyenv_python(13) else { return };
        let prefix = python.parent().and_then(Path::parent).unwrap();
        let lib = &prefix.join("lib/libpython3.13.so.1.0");
        // A container where the RUNPATH (the host's pyenv) is missing and libpython sits in a
        // default directory behind an absolute symlink.
        let root = Scratch::new("root");
        for dir in ["usr/bin", "usr/lib", "opt"] {
            fs::create_dir_all(root.0.join(dir)).unwrap();
        }
        let exe = root.0.join("usr/bin/python3");
        fs::copy(&python, &exe).unwrap();
        let Verdict::Python(interp) = recognize(&exe, &root.0).unwrap() else { panic!() };
        assert_eq!((&interp.image, interp.symbols.len()), (&exe, 0), "libpython not there yet");
        let placed = root.0.join("opt/libpython3.13.so.1.0");
        fs::hard_link(lib, &placed).or_else(|_| fs::copy(lib, &placed).map(drop)).unwrap();
        let link = root.0.join("usr/lib/libpython3.13.so.1.0");
        std::os::unix::fs::symlink("/opt/libpython3.13.so.1.0", link).unwrap();
        assert_eq!(check(&exe, &root.0, (3, 13)).image, placed);
        // A DT_NEEDED with a slash is loaded from that path, not searched for.
        let mut bytes = fs::read(&exe).unwrap();
        let at = bytes.windows(20).position(|w| w == b"libpython3.13.so.1.0").unwrap();
        bytes[at..at + 20].copy_from_slice(b"/o/libpython3.13.so\0");
        fs::write(&exe, bytes).unwrap();
        fs::create_dir(root.0.join("o")).unwrap();
        fs::rename(&placed, root.0.join("o/libpython3.13.so")).unwrap();
        assert_eq!(check(&exe, &root.0, (3, 13)).image, root.0.join("o/libpython3.13.so"));
    }

    #[test]
    fn gnu_hash_symbol_base_near_u32_max_is_an_error() {
        // Found by `cargo xtask fuzz elf`: the chain walk overflowed (a panic in debug builds).
        let bytes = include_bytes!("../../../fuzz/regressions/elf/gnu-hash-symbol-base-overflow");
        let e = examine(bytes).err().expect("refused");
        assert!(e.contains("DT_GNU_HASH"), "{e}");
    }

    #[test]
    fn empty_load_segment_at_a_wild_offset_maps_nothing() {
        // Found by `cargo xtask fuzz elf`: the version string search sliced at that offset.
        let bytes = include_bytes!("../../../fuzz/regressions/elf/empty-load-segment-far-offset");
        let info = examine(bytes).expect("valid").expect("ELF");
        assert!(info.loads.iter().all(|l| l.2 > 0 && l.1 + l.2 <= bytes.len() as u64));
    }

    #[test]
    fn broken_elf_is_an_error_not_a_panic() {
        let Ok(real) = fs::read(DEBIAN) else {
            return crate::testing::cannot_run(&format!("no {DEBIAN}"));
        };
        let dir = Scratch::new("broken");
        let file = dir.0.join("python3");
        let mut cases = vec![real[..64].to_vec(), real[..4096].to_vec()];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..64 {
            let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
            bytes.extend((0..4096).map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            }));
            cases.push(bytes);
        }
        for (i, bytes) in cases.iter().enumerate() {
            fs::write(&file, bytes).unwrap();
            match recognize(&file, Path::new("/")) {
                Err(e @ RecognizeError::BadElf { .. }) if i < 2 => eprintln!("{e}"),
                Err(RecognizeError::BadElf { .. }) => {}
                other => panic!("case {i}: {other:?}"),
            }
        }
    }
}
