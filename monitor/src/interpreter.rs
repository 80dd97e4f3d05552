//! Decides from an executable file alone whether running it runs the CPython 3 interpreter.
//!
//! File names are chosen by whoever starts the program (a C program can be called `python3`,
//! CPython can be copied to `bash`), so the verdict never looks at names. It comes from what
//! the dynamic linker itself uses: the exported CPython entry points, found either in the
//! executable (libpython linked statically) or in the `libpython3.N` it needs. Files are only
//! read, never executed. Only program headers and the dynamic segment are used, not section
//! headers, because the kernel and ld.so ignore sections: stripping or corrupting them must
//! not hide an interpreter.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::{fs, io};

use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, GnuHashTable, HashTable, ProgramHeader, Sym};
use object::{Endian, Endianness, ReadRef};

/// Identity of an on-disk file, used as a cache key (the kernel gives the same key for a running
/// process's exe).
///
/// `dev` is `st_dev` as user space sees it (glibc `makedev` encoding); an eBPF program reading
/// `inode->i_sb->s_dev` gets the kernel encoding (`major << 20 | minor`) and must convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Device holding the file.
    pub dev: u64,
    /// Inode number on that device.
    pub ino: u64,
    /// Modification time, seconds part: part of the key so a file rewritten in place is
    /// examined again.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nsec: u32,
}

impl FileKey {
    /// Key of the file `path` names, following symlinks (a venv's `bin/python` keys as its
    /// target, like the kernel's exe of a process started through it).
    pub fn of(path: &Path) -> io::Result<FileKey> {
        let m = fs::metadata(path)?;
        Ok(FileKey {
            dev: m.dev(),
            ino: m.ino(),
            mtime_sec: m.mtime(),
            mtime_nsec: u32::try_from(m.mtime_nsec()).unwrap_or(0),
        })
    }
}

/// What [`recognize`] concluded about an executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Running the file runs CPython 3.
    Python(Interpreter),
    /// Anything else, including CPython 2 and files that are not ELF.
    NotPython,
}

/// A CPython 3 interpreter and where its probe points are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// The executable that was examined, as passed to [`recognize`].
    pub exe: PathBuf,
    /// The ELF file holding the CPython symbols, openable from this process: the executable
    /// itself, or the libpython it loads (under `root`). Equal to `exe`, with no symbols, when
    /// the needed libpython could not be found.
    pub image: PathBuf,
    /// `(major, minor)`, or `None` when no reliable source says.
    pub version: Option<(u8, u8)>,
    /// Built with the free-threaded (`t`) ABI; `false` when unknown.
    pub free_threaded: bool,
    /// File offsets in `image` (what uprobes take) of the [`WANTED_SYMBOLS`] it exports as
    /// defined functions.
    pub symbols: BTreeMap<String, u64>,
}

/// CPython functions whose file offsets [`Interpreter::symbols`] reports when present. Several
/// are missing from older versions (`Py_BytesMain` and `PySys_Audit` appeared in 3.8,
/// `_PyInterpreterState_SetRunningMain` in 3.12).
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
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The executable starts like an ELF file but is malformed or truncated.
    #[error("{} is not a valid ELF file: {reason}", path.display())]
    BadElf {
        /// The file.
        path: PathBuf,
        /// One line saying what is wrong.
        reason: String,
    },
}

/// Only the interpreter's own entry points count as proof: programs that embed Python (gdb,
/// vim) need libpython too, but programs that merely call into it have no reason to export
/// these from their own image.
const ENTRY_POINTS: [&str; 2] = ["Py_BytesMain", "Py_Main"];

/// Examine an executable. `root` is the filesystem root to resolve absolute library paths under
/// (normally "/"; for a process in a container the caller passes /proc/<pid>/root).
///
/// `$ORIGIN` is resolved inside `root` when `exe` is a path under `root`, otherwise with the
/// host's view of `exe`. CPython 2 is `NotPython`: it has neither the probe points nor the
/// audit hooks the monitor relies on. A file needing `libpython3*.so*` is `Python` even if no
/// library that ld.so would accept is found, with `image == exe` and no symbols: the program
/// could not be running without ld.so having found one, possibly through `LD_LIBRARY_PATH`
/// which this function cannot see, so the need alone is strong evidence, and answering
/// `NotPython` would let a decoy library hide a real interpreter from the monitor.
pub fn recognize(exe: &Path, root: &Path) -> Result<Verdict, RecognizeError> {
    let data = fs::read(exe).map_err(|source| RecognizeError::Io { path: exe.into(), source })?;
    // The kernel runs scripts through their `#!` interpreter, so only an ELF can be the image.
    if !data.starts_with(&elf::ELFMAG) {
        return Ok(Verdict::NotPython);
    }
    let info = parse_elf(&data).map_err(|reason| RecognizeError::BadElf { path: exe.into(), reason })?;
    let python = |image: PathBuf, abi: Abi, symbols| {
        Verdict::Python(Interpreter {
            exe: exe.into(),
            image,
            version: abi.minor.map(|minor| (3, minor)),
            free_threaded: abi.flags.contains('t'),
            symbols,
        })
    };
    if info.is_interpreter() {
        let abi = static_abi(&data, &info);
        return Ok(python(exe.into(), abi, info.symbols));
    }
    let Some((needed, abi)) = info.needed.iter().find_map(|n| Some((n, libpython3_abi(n)?))) else {
        return Ok(Verdict::NotPython);
    };
    for dir in search_dirs(&info, origin(exe, root).as_deref(), root) {
        let Some(lib) = resolve_in(root, &dir.join(needed)) else { continue };
        let host = root.join(lib.strip_prefix("/").unwrap_or(&lib));
        // Like ld.so, pass over whatever it could not load (other class or machine, not ELF).
        let Ok(bytes) = fs::read(&host) else { continue };
        let Ok(lib_info) = parse_elf(&bytes) else { continue };
        if lib_info.is64 == info.is64 && lib_info.machine == info.machine && lib_info.is_interpreter() {
            return Ok(python(host, abi, lib_info.symbols));
        }
    }
    Ok(python(exe.into(), abi, BTreeMap::new()))
}

/// ABI facts from a name or from strings in the image.
#[derive(Debug, Default, PartialEq)]
struct Abi {
    minor: Option<u8>,
    /// Python's `sys.abiflags`: `t` free-threaded, `d` debug, `m` pymalloc before 3.8.
    flags: String,
}

/// ABI of a library named like `libpython3.11.so.1.0`, `libpython3.6m.so` or
/// `libpython3.13t.so`; `None` if the name is not `libpython3*.so*` (CPython 2 included).
fn libpython3_abi(name: &str) -> Option<Abi> {
    let rest = name.strip_prefix("libpython3")?;
    let head = &rest[..rest.find(".so")?];
    // `libpython3.so` is the stable-ABI forwarder and says nothing about the version.
    let Some(tail) = head.strip_prefix('.') else { return Some(Abi::default()) };
    let (minor, flags) = split_minor(tail.as_bytes());
    let flags = std::str::from_utf8(flags).ok().filter(|f| f.bytes().all(|b| b.is_ascii_lowercase()));
    match (minor, flags) {
        (Some(minor), Some(flags)) => Some(Abi { minor: Some(minor), flags: flags.into() }),
        _ => Some(Abi::default()),
    }
}

/// Leading decimal minor version and what follows it.
fn split_minor(s: &[u8]) -> (Option<u8>, &[u8]) {
    let end = s.iter().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    let minor = std::str::from_utf8(&s[..end]).ok().and_then(|d| d.parse().ok());
    (minor.filter(|_| end > 0 && end <= 3), &s[end..])
}

/// ABI of an executable with libpython linked in, where no file name can be trusted.
///
/// 3.11+ exports `Py_Version` (`PY_VERSION_HEX`), which is exact. Older ones only have
/// strings: the bare `PY_VERSION` ("3.10.13") is unreliable because linkers merge it into
/// longer strings that end the same way (pyenv's libpython keeps only
/// "/root/.pyenv/versions/3.10.13"), so this uses the cache tag "cpython-3N" (sysmodule.c)
/// and the extension suffix ".cpython-3N<abiflags>-<platform>.so" (dynload_shlib.c), and
/// believes them only when each occurs once and they agree. The suffix is also the only
/// place a static binary records the `t` ABI.
fn static_abi(data: &[u8], info: &ElfInfo) -> Abi {
    let (mut tags, mut suffixes) = (BTreeSet::new(), BTreeSet::new());
    for load in &info.loads {
        let bytes = &data[load.offset as usize..(load.offset + load.size) as usize];
        for s in bytes.split(|&b| b == 0) {
            if let Some(rest) = s.strip_prefix(b"cpython-3") {
                if let (Some(minor), []) = split_minor(rest) {
                    tags.insert(minor);
                }
            } else if let Some(rest) = s.strip_prefix(b".cpython-3") {
                let (minor, rest) = split_minor(rest);
                let flags_end = rest.iter().position(|b| !b.is_ascii_lowercase()).unwrap_or(0);
                if let (Some(minor), Some(b'-')) = (minor, rest.get(flags_end)) {
                    let flags = String::from_utf8_lossy(&rest[..flags_end]).into_owned();
                    suffixes.insert((minor, flags));
                }
            }
        }
    }
    let from_strings = match (tags.first(), suffixes.first()) {
        (Some(tag), Some((minor, flags))) if tags.len() == 1 && suffixes.len() == 1 && tag == minor => {
            Some(Abi { minor: Some(*minor), flags: flags.clone() })
        }
        _ => None,
    };
    let exact = info.py_version_hex.filter(|hex| hex >> 24 == 3).map(|hex| (hex >> 16) as u8);
    match (exact, from_strings) {
        (Some(minor), Some(abi)) if abi.minor == Some(minor) => abi,
        (Some(minor), _) => Abi { minor: Some(minor), flags: String::new() },
        (None, abi) => abi.unwrap_or_default(),
    }
}

/// The in-`root` directory of the executable's real file, which ld.so substitutes for
/// `$ORIGIN` (it reads /proc/self/exe, so symlinks such as a venv's `bin/python` are resolved).
fn origin(exe: &Path, root: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(exe).ok()?;
    let real = match abs.strip_prefix(root) {
        Ok(inside) => resolve_in(root, &Path::new("/").join(inside))?,
        Err(_) => fs::canonicalize(&abs).ok()?,
    };
    real.parent().map(Path::to_path_buf)
}

/// Directories ld.so would search for the executable's libraries, as paths inside `root`.
/// Skipped: LD_LIBRARY_PATH (not visible here), ld.so.cache (built from the same ld.so.conf
/// directories), glibc-hwcaps subdirectories, and `include` lines other than the standard
/// /etc/ld.so.conf.d/*.conf.
fn search_dirs(info: &ElfInfo, origin: Option<&Path>, root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // ld.so ignores DT_RPATH when DT_RUNPATH is present; LD_LIBRARY_PATH would go between.
    for dir in info.runpath.iter().chain(&info.rpath).take(1).flat_map(|p| p.split(':')) {
        if dir.contains("ORIGIN") {
            let Some(origin) = origin.and_then(Path::to_str) else { continue };
            dirs.push(dir.replace("${ORIGIN}", origin).replace("$ORIGIN", origin).into());
        } else if !dir.is_empty() {
            dirs.push(dir.into());
        }
    }
    let mut confs = vec![root.join("etc/ld.so.conf")];
    if let Ok(entries) = fs::read_dir(root.join("etc/ld.so.conf.d")) {
        let mut more: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        more.retain(|p| p.extension().is_some_and(|e| e == "conf"));
        more.sort();
        confs.extend(more);
    }
    for conf in confs {
        let text = fs::read_to_string(conf).unwrap_or_default();
        for line in text.lines().map(|l| l.split('#').next().unwrap_or("").trim()) {
            if line.starts_with('/') {
                dirs.push(line.into());
            }
        }
    }
    let defaults = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"];
    dirs.extend(defaults.iter().chain(&["/lib64", "/usr/lib64", "/usr/local/lib"]).map(PathBuf::from));
    dirs
}

/// Resolves `path` (absolute, as seen inside `root`) with every symlink followed inside `root`,
/// as for a process whose root is `root`. Opening `root/path` directly would follow absolute
/// symlinks from the host's root instead. `None` if something is missing or loops.
fn resolve_in(root: &Path, path: &Path) -> Option<PathBuf> {
    let push_all = |todo: &mut Vec<OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(s) => todo.push(s.to_owned()),
                Component::ParentDir => todo.push("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    };
    let (mut done, mut todo, mut links) = (PathBuf::from("/"), Vec::new(), 0);
    push_all(&mut todo, path);
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&part);
        let host = root.join(next.strip_prefix("/").ok()?);
        if !fs::symlink_metadata(&host).ok()?.file_type().is_symlink() {
            done = next;
            continue;
        }
        links += 1;
        let target = fs::read_link(&host).ok().filter(|_| links <= 40)?;
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        push_all(&mut todo, &target);
    }
    Some(done)
}

/// A PT_LOAD segment's file-backed part.
struct Load {
    vaddr: u64,
    offset: u64,
    size: u64,
}

/// What [`recognize`] needs from one ELF file.
#[derive(Default)]
struct ElfInfo {
    machine: u16,
    is64: bool,
    loads: Vec<Load>,
    needed: Vec<String>,
    rpath: Option<String>,
    runpath: Option<String>,
    /// Wanted functions that the file exports, at file offsets.
    symbols: BTreeMap<String, u64>,
    py_version_hex: Option<u64>,
}

impl ElfInfo {
    fn is_interpreter(&self) -> bool {
        ENTRY_POINTS.iter().any(|name| self.symbols.contains_key(*name))
    }

    /// File offset of virtual address `vaddr`, and of the end of its segment's file data.
    fn file_offset(&self, vaddr: u64) -> Option<(u64, u64)> {
        // Checked: vaddr fields are not bounded by the file size, so sums could overflow.
        let (load, delta) =
            self.loads.iter().find_map(|l| Some((l, vaddr.checked_sub(l.vaddr).filter(|d| *d < l.size)?)))?;
        Some((load.offset + delta, load.offset + load.size))
    }

    /// The file bytes from virtual address `vaddr` to the end of its segment.
    fn mapped<'a>(&self, data: &'a [u8], vaddr: u64) -> Option<&'a [u8]> {
        let (start, end) = self.file_offset(vaddr)?;
        data.get(start as usize..end as usize)
    }
}

// Dynamic tags, spelled out because their type changed between object 0.36 and 0.39.
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
const DT_GNU_HASH: u64 = 0x6fff_fef5;

fn parse_elf(data: &[u8]) -> Result<ElfInfo, String> {
    // e_ident[EI_CLASS] selects the layout; FileHeader::parse checks the rest of e_ident.
    match data.get(4) {
        Some(&elf::ELFCLASS32) => parse_as::<FileHeader32<Endianness>>(data),
        Some(&elf::ELFCLASS64) => parse_as::<FileHeader64<Endianness>>(data),
        _ => Err("unknown ELF class".into()),
    }
}

fn parse_as<E: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<ElfInfo, String> {
    let header = E::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let mut info =
        ElfInfo { machine: header.e_machine(endian), is64: header.is_type_64(), ..Default::default() };
    let mut dynamic: &[u8] = &[];
    for ph in header.program_headers(endian, data).map_err(|e| e.to_string())? {
        let (kind, offset) = (ph.p_type(endian), ph.p_offset(endian).into());
        if kind != elf::PT_LOAD && kind != elf::PT_DYNAMIC {
            continue;
        }
        let bytes = ph
            .data(endian, data)
            .map_err(|()| format!("segment at {offset:#x} extends past the end of the file"))?;
        if kind == elf::PT_DYNAMIC {
            dynamic = bytes;
        } else {
            info.loads.push(Load { vaddr: ph.p_vaddr(endian).into(), offset, size: bytes.len() as u64 });
        }
    }
    let width = if info.is64 { 8 } else { 4 };
    let word = |b: &[u8]| {
        let mut buf = [0; 8];
        if endian.is_little_endian() {
            buf[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(buf)
        } else {
            buf[8 - b.len()..].copy_from_slice(b);
            u64::from_be_bytes(buf)
        }
    };
    let mut tags: BTreeMap<u64, u64> = BTreeMap::new();
    let mut needed = Vec::new();
    for entry in dynamic.chunks_exact(2 * width) {
        let (tag, value) = (word(&entry[..width]), word(&entry[width..]));
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(value),
            _ => {
                tags.insert(tag, value);
            }
        }
    }
    let Some(&strtab) = tags.get(&DT_STRTAB) else {
        return match needed.is_empty() {
            true => Ok(info), // nothing to link: exports nothing
            false => Err("dynamic segment has DT_NEEDED but no DT_STRTAB".into()),
        };
    };
    let strsz = tags.get(&DT_STRSZ).copied().unwrap_or(u64::MAX);
    let strtab = info.mapped(data, strtab).ok_or("DT_STRTAB is outside the file")?;
    let strtab = &strtab[..strtab.len().min(strsz as usize)];
    let string = |offset: u64| -> Result<&[u8], String> {
        let s = strtab.get(offset as usize..).ok_or("string offset outside DT_STRTAB")?;
        Ok(&s[..s.iter().position(|&b| b == 0).ok_or("unterminated string in DT_STRTAB")?])
    };
    let text = |offset: u64| string(offset).map(|s| String::from_utf8_lossy(s).into_owned());
    info.needed = needed.into_iter().map(text).collect::<Result<_, _>>()?;
    info.rpath = tags.get(&DT_RPATH).map(|&o| text(o)).transpose()?;
    info.runpath = tags.get(&DT_RUNPATH).map(|&o| text(o)).transpose()?;

    // ld.so only finds symbols through a hash table, so its length bounds what is exported.
    let table = |tag| {
        tags.get(&tag)
            .map(|&a| info.mapped(data, a).ok_or(format!("dynamic tag {tag:#x} is outside the file")))
    };
    let count = if let Some(bytes) = table(DT_GNU_HASH) {
        let hash = GnuHashTable::<E>::parse(endian, bytes?).map_err(|e| e.to_string())?;
        hash.symbol_table_length(endian).unwrap_or(0)
    } else if let Some(bytes) = table(DT_HASH) {
        HashTable::<E>::parse(endian, bytes?).map_err(|e| e.to_string())?.symbol_table_length()
    } else {
        0
    };
    let (Some(&symtab), true) = (tags.get(&DT_SYMTAB), count > 0) else { return Ok(info) };
    let (symtab, _) = info.file_offset(symtab).ok_or("DT_SYMTAB is outside the file")?;
    let symbols: &[E::Sym] = data
        .read_slice_at(symtab, count as usize)
        .map_err(|()| "dynamic symbol table is misaligned or extends past the end of the file")?;
    for sym in symbols {
        if sym.st_shndx(endian) == elf::SHN_UNDEF || sym.st_bind() == elf::STB_LOCAL {
            continue;
        }
        let name = string(sym.st_name(endian).into())?;
        let vaddr: u64 = sym.st_value(endian).into();
        let is_func = sym.st_type() == elf::STT_FUNC;
        if let Some(&wanted) = WANTED_SYMBOLS.iter().find(|w| is_func && w.as_bytes() == name) {
            if let Some((offset, _)) = info.file_offset(vaddr) {
                info.symbols.insert(wanted.into(), offset);
            }
        } else if name == b"Py_Version" && sym.st_type() == elf::STT_OBJECT {
            info.py_version_hex = info.mapped(data, vaddr).and_then(|b| b.get(..width)).map(word);
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("interp-test-{}-{n}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const DEBIAN: &str = "/usr/bin/python3.11";

    /// `bin/python3.N` of every pyenv CPython 3, with the version its directory names.
    fn pyenv_pythons() -> Vec<(PathBuf, (u8, u8))> {
        let Ok(entries) = fs::read_dir("/root/.pyenv/versions") else { return vec![] };
        let mut found: Vec<_> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let mut parts = name.strip_prefix("3.")?.split('.');
                let minor: u8 = parts.next()?.parse().ok()?;
                let exe = e.path().join(format!("bin/python3.{minor}"));
                exe.exists().then_some((exe, (3, minor)))
            })
            .collect();
        found.sort_by_key(|(_, v)| *v);
        found
    }

    fn python(exe: &Path) -> Interpreter {
        match recognize(exe, Path::new("/")) {
            Ok(Verdict::Python(interp)) => interp,
            other => panic!("{}: expected Python, got {other:?}", exe.display()),
        }
    }

    fn assert_not_python(exe: &Path) {
        assert_eq!(recognize(exe, Path::new("/")).unwrap(), Verdict::NotPython, "{}", exe.display());
    }

    /// Checks version and that the probe points exist and point at code.
    fn check(interp: &Interpreter, version: (u8, u8)) {
        assert_eq!(interp.version, Some(version), "{interp:?}");
        let image = fs::read(&interp.image).unwrap();
        let mut wanted = vec!["Py_Main", "PyImport_ImportModule", "PyEval_EvalCode"];
        if version >= (3, 8) {
            wanted.extend(["Py_BytesMain", "PySys_Audit"]);
        }
        for name in wanted {
            let offset = *interp.symbols.get(name).unwrap_or_else(|| panic!("{name} missing: {interp:?}"));
            let code = image.get(offset as usize..offset as usize + 16).expect("offset inside the image");
            assert!(code.iter().any(|&b| b != 0), "{name} at {offset:#x} is zeros");
        }
    }

    #[test]
    fn every_cpython3_on_the_machine_is_python() {
        for (exe, version) in pyenv_pythons() {
            let interp = python(&exe);
            check(&interp, version);
            assert!(interp.image.to_string_lossy().contains(&format!("libpython3.{}", version.1)));
            assert!(!interp.free_threaded);
            eprintln!("ok {} -> {} {version:?}", exe.display(), interp.image.display());
        }
        if Path::new(DEBIAN).exists() {
            let interp = python(Path::new(DEBIAN));
            check(&interp, (3, 11));
            assert_eq!(interp.image, Path::new(DEBIAN));
            eprintln!("ok {DEBIAN} (static libpython) {:?}", interp.version);
        }
    }

    #[test]
    fn version_strings_agree_with_library_names() {
        let mut images: Vec<PathBuf> = vec![DEBIAN.into()];
        for (exe, _) in pyenv_pythons() {
            images.push(python(&exe).image);
        }
        for image in images.iter().filter(|p| p.exists()) {
            let data = fs::read(image).unwrap();
            let mut info = parse_elf(&data).unwrap();
            let name = image.file_name().unwrap().to_string_lossy();
            let expected = libpython3_abi(&name).unwrap_or(Abi { minor: Some(11), flags: String::new() });
            assert_eq!(static_abi(&data, &info), expected, "{}", image.display());
            info.py_version_hex = None; // the string fallback alone must agree too
            assert_eq!(static_abi(&data, &info), expected, "{} (strings only)", image.display());
        }
    }

    #[test]
    fn library_names() {
        let abi = |minor, flags: &str| Some(Abi { minor, flags: flags.into() });
        assert_eq!(libpython3_abi("libpython3.11.so.1.0"), abi(Some(11), ""));
        assert_eq!(libpython3_abi("libpython3.6m.so.1.0"), abi(Some(6), "m"));
        assert_eq!(libpython3_abi("libpython3.13t.so"), abi(Some(13), "t"));
        assert_eq!(libpython3_abi("libpython3.so"), abi(None, ""));
        assert_eq!(libpython3_abi("libpython2.7.so.1.0"), None);
        assert_eq!(libpython3_abi("libpython3.11.a"), None);
    }

    #[test]
    fn offset_matches_nm_and_readelf() {
        let run = |tool: &str, args: &[&str]| {
            Command::new(tool).args(args).output().ok().filter(|o| o.status.success())
        };
        let (Some(nm), Some(readelf)) =
            (run("nm", &["-D", "--defined-only", DEBIAN]), run("readelf", &["-lW", DEBIAN]))
        else {
            eprintln!("skipped: nm/readelf or {DEBIAN} missing");
            return;
        };
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        let nm = String::from_utf8(nm.stdout).unwrap();
        let line = nm.lines().find(|l| l.ends_with(" T Py_BytesMain")).unwrap();
        let vaddr = hex(line.split(' ').next().unwrap());
        let readelf = String::from_utf8(readelf.stdout).unwrap();
        let expected = readelf
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.first() == Some(&"LOAD"))
            .map(|f| (hex(f[1]), hex(f[2]), hex(f[4])))
            .find(|&(_, v, size)| (v..v + size).contains(&vaddr))
            .map(|(offset, v, _)| offset + vaddr - v)
            .unwrap();
        assert_eq!(python(Path::new(DEBIAN)).symbols["Py_BytesMain"], expected);
        assert_ne!(expected, vaddr, "non-PIE, so the conversion is not the identity");
    }

    #[test]
    fn venv_symlink_is_python() {
        let base = Path::new("/root/.pyenv/versions/3.12.1/bin/python3");
        if !base.exists() {
            eprintln!("skipped: {} missing", base.display());
            return;
        }
        let dir = Scratch::new();
        let venv = dir.0.join("venv");
        let status = Command::new(base).args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap();
        assert!(status.success());
        let exe = venv.join("bin/python");
        assert!(fs::symlink_metadata(&exe).unwrap().file_type().is_symlink());
        let interp = python(&exe);
        check(&interp, (3, 12));
        assert_eq!(interp.exe, exe);
        assert_eq!(FileKey::of(&exe).unwrap(), FileKey::of(&fs::canonicalize(&exe).unwrap()).unwrap());
    }

    #[test]
    fn names_do_not_matter() {
        let dir = Scratch::new();
        let copy = |from: &str, to: &str| {
            let dest = dir.0.join(to);
            let _ = fs::remove_file(&dest);
            fs::copy(from, &dest).ok().map(|_| dest)
        };
        for (from, version) in [("/root/.pyenv/versions/3.11.7/bin/python3.11", (3, 11)), (DEBIAN, (3, 11))] {
            if let Some(bash) = copy(from, "bash") {
                check(&python(&bash), version);
            }
        }
        assert_not_python(&copy("/bin/true", "python3").unwrap());
        let script = dir.0.join("python3");
        fs::write(&script, "#!/bin/sh\nexec /usr/bin/python3.11 \"$@\"\n").unwrap();
        assert_not_python(&script);
        fs::write(&script, "").unwrap();
        assert_not_python(&script);
        let py2 = Path::new("/root/.pyenv/versions/2.7.18/bin/python2.7");
        if py2.exists() {
            assert_not_python(py2);
        }
    }

    #[test]
    fn libraries_resolve_inside_root() {
        let exe = Path::new("/root/.pyenv/versions/3.13.0/bin/python3.13");
        let lib = Path::new("/root/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0");
        if !lib.exists() {
            eprintln!("skipped: {} missing", lib.display());
            return;
        }
        // A container whose libpython sits in a default directory behind an absolute symlink;
        // its RUNPATH (the host's pyenv) does not exist inside it.
        let root = Scratch::new();
        for dir in ["usr/bin", "usr/lib", "opt/py", "etc"] {
            fs::create_dir_all(root.0.join(dir)).unwrap();
        }
        let inner = root.0.join("usr/bin/python3");
        fs::copy(exe, &inner).unwrap();
        let interp = match recognize(&inner, &root.0).unwrap() {
            Verdict::Python(interp) => interp,
            other => panic!("{other:?}"),
        };
        assert_eq!((interp.image == inner, interp.symbols.len(), interp.version), (true, 0, Some((3, 13))));
        let placed = root.0.join("opt/py/libpython3.13.so.1.0");
        fs::hard_link(lib, &placed).or_else(|_| fs::copy(lib, &placed).map(drop)).unwrap();
        std::os::unix::fs::symlink(
            "/opt/py/libpython3.13.so.1.0",
            root.0.join("usr/lib/libpython3.13.so.1.0"),
        )
        .unwrap();
        let Verdict::Python(interp) = recognize(&inner, &root.0).unwrap() else { panic!() };
        assert_eq!(interp.image, placed);
        check(&interp, (3, 13));
    }

    #[test]
    fn broken_elf_is_an_error_not_a_panic() {
        let Ok(real) = fs::read(DEBIAN) else {
            eprintln!("skipped: {DEBIAN} missing");
            return;
        };
        let dir = Scratch::new();
        let file = dir.0.join("python3");
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        let mut cases = vec![real[..64].to_vec(), real[..4096].to_vec()];
        for _ in 0..50 {
            let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
            bytes.extend(random(4096));
            cases.push(bytes);
        }
        for (i, bytes) in cases.iter().enumerate() {
            fs::write(&file, bytes).unwrap();
            match recognize(&file, Path::new("/")) {
                Err(RecognizeError::BadElf { reason, .. }) if i < 2 => eprintln!("truncated: {reason}"),
                Err(RecognizeError::BadElf { .. }) => {}
                other => panic!("case {i}: {other:?}"),
            }
        }
        // Corrupt the real binary's tables in place rather than at the front.
        for round in 0..200 {
            let mut bytes = real.clone();
            for _ in 0..8 {
                let at = u64::from_le_bytes(random(8).try_into().unwrap()) as usize % 0x4000;
                bytes[at] = random(1)[0];
            }
            fs::write(&file, &bytes).unwrap();
            let _ =
                recognize(&file, Path::new("/")).map_err(|e| assert!(!e.to_string().is_empty(), "{round}"));
        }
    }
}
