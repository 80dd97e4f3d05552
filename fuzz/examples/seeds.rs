//! Writes the committed seed corpora, `corpus/<target>/seed-*`: one valid input of each kind,
//! so that the fuzzers start past the first checks instead of guessing magic numbers.
//!
//! Run from `fuzz/` after a record layout or config key changes:
//! `cargo run --example seeds [-- path/to/premain.toml]` (default `../deploy/premain.toml`,
//! skipped when absent). The records are built from `monitor-common`'s own types so that they
//! follow its layout.

use std::{
    fs,
    mem::{offset_of, size_of},
    path::{Path, PathBuf},
};

use monitor::{kernel::sockaddr::SockAddr, ops::config::Config, python::interpreter::examine};
use monitor_common::{
    ARGS_MAX, COMM_LEN, ConnectRecord, REQUESTED_MAX, ExeKey, ExecRecord, ExitRecord, FLAG_HELD, ForkRecord,
    MARK_EVAL_ENTER, MARK_EVAL_EXIT, MARK_MAIN, MARK_NAME_MAX, MARK_TEXT_MAX, MarkerRecord, NameRecord,
    OpenRecord, PATH_MAX, RECORD_CONNECT, RECORD_EXEC_FAILED, RECORD_EXIT, RECORD_FORK, RECORD_IMAGE,
    RECORD_MARKER, RECORD_NAME, RECORD_OPEN, RECORD_SEND, RECORD_SOCKET, RECORD_TARGET, RecordHeader,
    SOCKADDR_MAX, SYSCALL_EXECVE, SYSCALL_OPENAT2, SYSCALL_PROCESS_VM_READV, SYSCALL_SYMLINKAT, SocketRecord,
    TargetRecord, FRAME_TABLE_UNREADABLE, RECORD_STACK, STACK_FRAMES_MAX, STACK_OK, STACK_TABLE_MAX,
    STACK_TAIL_MAX, StackFrame, StackRecord,
};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let premain_toml = std::env::args_os()
        .nth(1)
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/premain.toml"), PathBuf::from);
    let mut configs = config_seeds();
    match fs::read_to_string(&premain_toml) {
        Ok(text) => configs.push(("premain-toml", every_setting(&text))),
        Err(e) => eprintln!("seeds: no {} ({e}): skipped", premain_toml.display()),
    }
    let sets = [
        ("decode", record_seeds()),
        ("sockaddr", sockaddr_seeds()),
        ("config", configs.into_iter().map(|(n, t)| (n, t.into_bytes())).collect()),
        ("elf", elf_seeds()),
    ];
    for (target, seeds) in sets {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        for (name, bytes) in seeds {
            check(target, name, &bytes);
            let path = dir.join(format!("seed-{name}"));
            fs::write(&path, &bytes).expect("seed written");
            println!("{} ({} bytes)", path.display(), bytes.len());
        }
    }
}

type Seeds = Vec<(&'static str, Vec<u8>)>;

/// A seed is only worth its place if it reaches past the parser's first checks as intended.
fn check(target: &str, name: &str, bytes: &[u8]) {
    let ok = match target {
        "decode" => monitor::kernel::decode::decode(bytes).is_ok(),
        "sockaddr" => {
            let other = matches!(SockAddr::parse(bytes), SockAddr::Other { .. });
            other == (name == "netlink")
        }
        "config" => {
            let text = std::str::from_utf8(bytes).expect("UTF-8");
            Config::parse("seed.toml", text).is_ok() != name.starts_with("bad-")
        }
        "elf" => match (name, examine(bytes)) {
            ("script", Ok(None)) => true,
            ("python-linked-32", Ok(Some(info))) => info.symbols().is_empty(),
            (_, Ok(Some(info))) => {
                let want =
                    [("python-static-hash", 11), ("python-static-gnu-hash", 13), ("python-big-endian", 12)];
                let minor = want.iter().find(|(n, _)| *n == name).map(|&(_, minor)| (3, minor));
                info.version() == minor && !info.symbols().is_empty()
            }
            _ => false,
        },
        _ => unreachable!("no target {target}"),
    };
    assert!(ok, "seed {target}/{name} does not do what it is for");
}

/// The first `len` bytes of a record, as the kernel sends only the part in use.
fn bytes_of<T: aya::Pod>(value: &T, len: usize) -> Vec<u8> {
    // SAFETY: `T: Pod` has no padding or invalid bytes, and the slice covers exactly `value`.
    let all = unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) };
    all[..len].to_vec()
}

fn header(kind: u32, size: usize) -> RecordHeader {
    let mut comm = [0u8; COMM_LEN];
    comm[..7].copy_from_slice(b"python3");
    RecordHeader {
        kind,
        size: size as u32,
        ktime_ns: 1_000_000,
        cgroup_id: 4242,
        start_ns: 900_000,
        pid: 100,
        tid: 101,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        flags: 0,
        comm,
    }
}

fn record_seeds() -> Seeds {
    let mut seeds = Seeds::new();

    let kpath = b"/home/user/.aws/credentials";
    let path = b"/proc/self/cwd/credentials";
    let len = offset_of!(OpenRecord, tail) + kpath.len() + path.len();
    let mut open = Box::new(OpenRecord {
        header: header(RECORD_OPEN, len),
        result: 3,
        dev: 254 << 20,
        ino: 77,
        dirfd: -100,
        open_flags: 0,
        mode: 0,
        syscall: SYSCALL_OPENAT2,
        resolve: 0,
        path_len: path.len() as u32,
        kpath_len: kpath.len() as u32,
        nlink: 2,
        file_mode: 0o100600,
        _pad: 0,
        tail: [0; 2 * PATH_MAX],
    });
    open.tail[..kpath.len()].copy_from_slice(kpath);
    open.tail[kpath.len()..kpath.len() + path.len()].copy_from_slice(path);
    seeds.push(("open", bytes_of(&*open, len)));

    let target = TargetRecord {
        header: header(RECORD_TARGET, size_of::<TargetRecord>()),
        result: 15,
        syscall: SYSCALL_PROCESS_VM_READV,
        target_pid: 4321,
        request: 0,
        _pad: 0,
    };
    seeds.push(("target", bytes_of(&target, size_of::<TargetRecord>())));
    let socket = SocketRecord {
        header: header(RECORD_SOCKET, size_of::<SocketRecord>()),
        result: 3,
        family: 17,
        sock_type: 3,
        protocol: 768,
        _pad: 0,
    };
    seeds.push(("socket", bytes_of(&socket, size_of::<SocketRecord>())));
    let (base, old, new) = (b"/home/user".as_slice(), b".evil_rc".as_slice(), b".bashrc".as_slice());
    let len = offset_of!(NameRecord, tail) + base.len() + old.len() + new.len();
    let mut name = Box::new(NameRecord {
        header: header(RECORD_NAME, len),
        result: 0,
        syscall: SYSCALL_SYMLINKAT,
        olddirfd: -100,
        newdirfd: -100,
        flags: 0,
        base_len: base.len() as u32,
        old_len: old.len() as u32,
        new_len: new.len() as u32,
        opcode: 0,
        tail: [0; 3 * PATH_MAX],
    });
    name.tail[..base.len()].copy_from_slice(base);
    name.tail[base.len()..base.len() + old.len()].copy_from_slice(old);
    name.tail[base.len() + old.len()..base.len() + old.len() + new.len()].copy_from_slice(new);
    seeds.push(("name", bytes_of(&*name, len)));

    for (name, kind, addr) in [
        ("connect-inet", RECORD_CONNECT, sockaddr_seeds()[0].1.clone()),
        ("send-inet6", RECORD_SEND, sockaddr_seeds()[1].1.clone()),
        ("connect-unix", RECORD_CONNECT, sockaddr_seeds()[3].1.clone()),
    ] {
        let mut connect = ConnectRecord {
            header: header(kind, size_of::<ConnectRecord>()),
            result: -115,
            fd: 5,
            addr_len: addr.len() as u32,
            addr: [0; SOCKADDR_MAX],
            requested: [0; REQUESTED_MAX],
        };
        connect.addr[..addr.len()].copy_from_slice(&addr);
        seeds.push((name, bytes_of(&connect, size_of::<ConnectRecord>())));
    }

    for (name, kind, result, filename, args) in [
        ("image", RECORD_IMAGE, 0, &b"/usr/bin/python3"[..], &b"python3\0-m\0pip\0install\0x\0"[..]),
        ("exec-failed", RECORD_EXEC_FAILED, -2, b"/usr/local/bin/curl", b"curl\0-s\0http://x"),
    ] {
        let len = offset_of!(ExecRecord, filename) + filename.len();
        let mut exec = ExecRecord {
            header: header(kind, len),
            result,
            exe: ExeKey { dev: 8 << 20 | 1, ino: 1234, mtime_sec: 1_700_000_000, mtime_nsec: 5, _pad: 0 },
            old_pid: 100,
            tracking: 1,
            dirfd: -100,
            exec_flags: 0,
            argc: args.split(|&b| b == 0).count() as u32,
            args_len: args.len() as u32,
            filename_len: filename.len() as u32,
            syscall: SYSCALL_EXECVE,
            args: [0; ARGS_MAX],
            filename: [0; PATH_MAX],
        };
        exec.header.flags = if kind == RECORD_IMAGE { FLAG_HELD } else { 0 };
        exec.args[..args.len()].copy_from_slice(args);
        exec.filename[..filename.len()].copy_from_slice(filename);
        seeds.push((name, bytes_of(&exec, len)));
    }

    let fork = ForkRecord {
        header: header(RECORD_FORK, size_of::<ForkRecord>()),
        child_pid: 102,
        child_tid: 102,
        is_thread: 0,
        tracking: 1,
        child_start_ns: 950_000,
    };
    seeds.push(("fork", bytes_of(&fork, size_of::<ForkRecord>())));
    let exit = ExitRecord { header: header(RECORD_EXIT, size_of::<ExitRecord>()), exit_code: 256, _pad: 0 };
    seeds.push(("exit", bytes_of(&exit, size_of::<ExitRecord>())));

    let wide: Vec<u8> = "pkg.mod\0".chars().flat_map(|c| (c as u32).to_ne_bytes()).collect();
    // `co_filename`s of the three compact `str` kinds, as CPython stores their characters.
    let ucs2: Vec<u8> = "/venv/site-packages/злой/__init__.py".encode_utf16().flat_map(u16::to_ne_bytes).collect();
    let ucs4: Vec<u8> = "/venv/site-packages/🐍.py".chars().flat_map(|c| (c as u32).to_ne_bytes()).collect();
    for (name, marker, event, format, text_kind, text) in [
        ("marker-main-module", MARK_MAIN, &b"cpython.run_module"[..], u32::from(b'u'), 0, &wide[..]),
        ("marker-main-file", MARK_MAIN, b"cpython.run_file", u32::from(b'O'), 1, b"/srv/app/main.py"),
        ("marker-eval-enter", MARK_EVAL_ENTER, b"", 0, 1, b"/venv/lib/site-packages/evil.pth"),
        ("marker-eval-enter-latin1", MARK_EVAL_ENTER, b"", 0, 1, b"/venv/site-packages/\xe9vil.py"),
        ("marker-eval-enter-ucs2", MARK_EVAL_ENTER, b"", 0, 2, &ucs2[..]),
        ("marker-eval-enter-ucs4", MARK_EVAL_ENTER, b"", 0, 4, &ucs4[..]),
        ("marker-eval-exit", MARK_EVAL_EXIT, b"", 0, 0, b""),
    ] {
        let len = offset_of!(MarkerRecord, text) + text.len();
        let mut record = MarkerRecord {
            header: header(RECORD_MARKER, len),
            marker,
            format,
            text_len: text.len() as u32,
            text_kind,
            name: [0; MARK_NAME_MAX],
            text: [0; MARK_TEXT_MAX],
        };
        record.name[..event.len()].copy_from_slice(event);
        record.text[..text.len()].copy_from_slice(text);
        seeds.push((name, bytes_of(&record, len)));
    }

    // A walked stack: a function in a UCS-2 named file with its line table, and the module
    // body below it sharing the file name.
    let mut tail = Vec::new();
    let mut put = |bytes: &[u8]| {
        tail.extend_from_slice(bytes);
        ((tail.len() - bytes.len()) as u16, bytes.len() as u16)
    };
    let (name_off, name_len) = put(b"steal");
    let (file_off, file_len) = put(&ucs2);
    let (table_off, table_len) = put(&[0xf0, 0x03, 0x01, 0x01, 0x01, 0xd8]);
    let (module_off, module_len) = put(b"<module>");
    let mut stack = Box::new(StackRecord {
        header: header(RECORD_STACK, 0),
        syscall: SYSCALL_OPENAT2,
        status: STACK_OK,
        frame_count: 2,
        tail_len: tail.len() as u32,
        truncated: 0,
        image: 0,
        next: 0,
        last_file: 0,
        frames: [StackFrame::default(); STACK_FRAMES_MAX],
        tail: [0; STACK_TAIL_MAX + STACK_TABLE_MAX],
    });
    let file = |frame: StackFrame| StackFrame { file_off, file_len, file_kind: 2, ..frame };
    stack.frames[0] = file(StackFrame {
        code: 0x7f00_0000_1000,
        globals: 0x7f00_0000_2000,
        instr: 0x7f00_0000_10c8,
        firstlineno: 12,
        name_off,
        name_len,
        name_kind: 1,
        table_off,
        table_len,
        table_size: u32::from(table_len),
        ..StackFrame::default()
    });
    stack.frames[1] = file(StackFrame {
        code: 0x7f00_0000_3000,
        name_off: module_off,
        name_len: module_len,
        name_kind: 1,
        flags: FRAME_TABLE_UNREADABLE,
        ..StackFrame::default()
    });
    stack.tail[..tail.len()].copy_from_slice(&tail);
    let len = offset_of!(StackRecord, tail) + tail.len();
    stack.header.size = len as u32;
    seeds.push(("stack", bytes_of(&*stack, len)));
    seeds
}

fn sockaddr_seeds() -> Seeds {
    let family = |f: u16| f.to_ne_bytes().to_vec();
    let mut inet = family(2);
    inet.extend(443u16.to_be_bytes());
    inet.extend([93, 184, 216, 34]);
    inet.extend([0; 8]);
    let inet6 = |ip: [u8; 16]| {
        let mut v = family(10);
        v.extend(53u16.to_be_bytes());
        v.extend([0; 4]);
        v.extend(ip);
        v.extend(2u32.to_ne_bytes());
        v
    };
    let mut mapped = [0u8; 16];
    mapped[10..12].copy_from_slice(&[0xff, 0xff]);
    mapped[12..].copy_from_slice(&[10, 0, 0, 1]);
    let mut unix = family(1);
    unix.extend(b"/run/user/0/bus\0");
    let mut abstract_ = family(1);
    abstract_.extend(b"\0/tmp/.X11-unix/X0");
    let mut netlink = family(16);
    netlink.extend([0; 10]);
    vec![
        ("inet", inet),
        ("inet6", inet6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
        ("inet6-mapped", inet6(mapped)),
        ("unix", unix),
        ("unix-abstract", abstract_),
        ("unix-unnamed", family(1)),
        ("unspec", [0u8; 16].to_vec()),
        ("netlink", netlink),
    ]
}

fn config_seeds() -> Vec<(&'static str, String)> {
    [
        ("empty", ""),
        (
            "rules",
            "[limits]\nring_buffer_size = 4096\n\n[alerts]\nfold_window_secs = 0\nnode_name = \"n1\"\n\n\
             [rules.program-exec]\nenabled = false\n[rules.credential-read]\nseverity = \"medium\"\n",
        ),
        (
            "lists",
            "[credentials]\nreplace_defaults = true\nexclude = [\"**/b.key\", \"/x/{a,b}/[!c]*\"]\n\
             [[credentials.paths]]\ncategory = \"corp\"\nglob = \"**/*.key\"\n\n[allow]\n\
             culprits = [\"**/_virtualenv.pth\"]\ndistributions = [\"Foo_Bar\"]\n\
             destinations = [\"10.0.0.0/8:443\", \"[fd00::/8]:53\", \"*:9000\", \"::1\"]\n\
             exes = [\"/opt/tool/bin/*\"]\nprograms = [\"uname\"]\nunix_sockets = []\n\n\
             [install]\nindex_hosts = [\"192.0.2.0/24\", \"2001:db8::1\"]\n",
        ),
        (
            "sinks",
            "[metrics]\naddress = \"[::1]:9464\"\nalert_labels = [\"namespace\", \"pod\"]\n\n\
             [kubernetes]\nenabled = \"on\"\napi_server = \"https://10.0.0.1:6443\"\n\n\
             [[sinks]]\ntype = \"stdout\"\nformat = \"falco\"\n\n[[sinks]]\ntype = \"file\"\n\
             path = \"/var/log/premain/alerts.jsonl\"\nmax_bytes = 4096\nfsync = \"always\"\n\n\
             [[sinks]]\ntype = \"webhook\"\nurl = \"http://alerts:8080/in\"\n\
             headers = { Authorization = \"Bearer x\" }\nbatch_max = 1\n\n[shutdown]\n\
             drain_deadline_secs = 0\n",
        ),
        ("bad-glob", "[credentials]\nexclude = [\"ok\", \"a[\"]\n"),
        ("bad-destination", "[allow]\ndestinations = [\"10.0.0.0/33\"]\n"),
        ("bad-webhook", "[alerts]\n[[sinks]]\ntype = \"webhook\"\nurl = \"ftp://x\"\n"),
        ("bad-type", "[limits]\nmax_processes = \"many\"\n"),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.to_owned()))
    .collect()
}

/// `deploy/premain.toml` without its prose and with every optional setting (`#key`) uncommented.
fn every_setting(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.strip_prefix('#') {
            Some(setting) if !setting.is_empty() && !setting.starts_with([' ', '#']) => setting,
            Some(_) => continue,
            None => line,
        };
        if !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A small ELF file of either class and byte order: one PT_LOAD over the whole file (at an
/// address other than its offset, so the offset conversion matters), a PT_DYNAMIC, a hash
/// table, dynamic symbols and strings.
struct ElfSpec {
    is64: bool,
    little: bool,
    gnu_hash: bool,
    /// `(name, STT_*)`; all global and defined, except names starting with `!` (undefined).
    symbols: &'static [(&'static str, u8)],
    needed: &'static [&'static str],
    runpath: Option<&'static str>,
    /// Bytes anywhere in the segment (version strings).
    extra: &'static [u8],
    py_version: u32,
}

struct Out {
    bytes: Vec<u8>,
    little: bool,
}

impl Out {
    fn put(&mut self, value: u64, width: usize) {
        let all = if self.little { value.to_le_bytes() } else { value.to_be_bytes() };
        let bytes = if self.little { &all[..width] } else { &all[8 - width..] };
        self.bytes.extend_from_slice(bytes);
    }

    fn align(&mut self, to: usize) {
        while !self.bytes.len().is_multiple_of(to) {
            self.bytes.push(0);
        }
    }
}

fn elf(spec: &ElfSpec) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const DYN_COUNT: u64 = 9;
    let w = if spec.is64 { 8 } else { 4 };
    let (ehsize, phsize, symsize): (usize, u64, usize) = if spec.is64 { (64, 56, 24) } else { (52, 32, 16) };

    // Strings first: everything else points into them.
    let mut strtab = vec![0u8];
    let name_at = |s: &str, strtab: &mut Vec<u8>| {
        let at = strtab.len() as u64;
        strtab.extend_from_slice(s.as_bytes());
        strtab.push(0);
        at
    };
    let sym_names: Vec<u64> =
        spec.symbols.iter().map(|(n, _)| name_at(n.trim_start_matches('!'), &mut strtab)).collect();
    let needed: Vec<u64> = spec.needed.iter().map(|n| name_at(n, &mut strtab)).collect();
    let runpath = spec.runpath.map(|r| name_at(r, &mut strtab));

    let nsyms = spec.symbols.len() as u64 + 1;
    let phoff = ehsize as u64;
    let dynamic = phoff + 2 * phsize;
    let dyn_len = (DYN_COUNT + needed.len() as u64) * 2 * w as u64;
    let hash = dynamic + dyn_len;
    let hash_len = if spec.gnu_hash { 16 + w as u64 + 4 + 4 * (nsyms - 1) } else { 8 + 4 + 4 * nsyms };
    let symtab = (hash + hash_len).next_multiple_of(8);
    let strtab_at = symtab + nsyms * symsize as u64;
    let data = strtab_at + strtab.len() as u64;
    let code = (data + w as u64 + spec.extra.len() as u64).next_multiple_of(16);
    let end = code + 16 * spec.symbols.len() as u64;

    let mut o = Out { bytes: Vec::new(), little: spec.little };
    // e_ident, then the header proper.
    o.bytes.extend_from_slice(b"\x7fELF");
    o.bytes.extend([if spec.is64 { 2 } else { 1 }, if spec.little { 1 } else { 2 }, 1, 0]);
    o.bytes.extend([0; 8]);
    o.put(2, 2); // ET_EXEC
    o.put(if spec.is64 { 62 } else { 3 }, 2); // EM_X86_64 / EM_386
    o.put(1, 4);
    o.put(BASE + code, w); // e_entry
    o.put(phoff, w);
    o.put(0, w); // no section headers: the reader must not need them
    o.put(0, 4);
    o.put(ehsize as u64, 2);
    o.put(phsize, 2);
    o.put(2, 2);
    o.put(0, 2);
    o.put(0, 2);
    o.put(0, 2);
    assert_eq!(o.bytes.len(), ehsize);

    // Program headers; the field order differs between the classes.
    for (kind, offset, size, flags) in [(1u64, 0, end, 5u64), (2, dynamic, dyn_len, 6)] {
        if spec.is64 {
            o.put(kind, 4);
            o.put(flags, 4);
            o.put(offset, 8);
            o.put(BASE + offset, 8);
            o.put(BASE + offset, 8);
            o.put(size, 8);
            o.put(size, 8);
            o.put(0x1000, 8);
        } else {
            o.put(kind, 4);
            o.put(offset, 4);
            o.put(BASE + offset, 4);
            o.put(BASE + offset, 4);
            o.put(size, 4);
            o.put(size, 4);
            o.put(flags, 4);
            o.put(0x1000, 4);
        }
    }

    for &name in &needed {
        o.put(1, w); // DT_NEEDED
        o.put(name, w);
    }
    let hash_tag = if spec.gnu_hash { 0x6fff_fef5 } else { 4 };
    // DT_RUNPATH, else DT_DEBUG: the same number of entries either way.
    let runpath_tag = if runpath.is_some() { 29 } else { 21 };
    for (tag, value) in [
        (hash_tag, BASE + hash),
        (5, BASE + strtab_at),
        (6, BASE + symtab),
        (10, strtab.len() as u64),
        (11, symsize as u64),
        (runpath_tag, runpath.unwrap_or(0)),
        (30, 0),          // DT_FLAGS
        (0x6fff_fffb, 1), // DT_FLAGS_1: DF_1_NOW
        (0, 0),
    ] {
        o.put(tag, w);
        o.put(value, w);
    }

    if spec.gnu_hash {
        // One bucket holding every symbol from index 1; the last chain entry ends the chain.
        o.put(1, 4);
        o.put(1, 4);
        o.put(1, 4);
        o.put(6, 4);
        o.put(u64::MAX, w);
        o.put(1, 4);
        for i in 1..nsyms {
            o.put(if i + 1 == nsyms { 0x1234_5679 } else { 0x1234_5678 }, 4);
        }
    } else {
        o.put(1, 4);
        o.put(nsyms, 4);
        o.put(if nsyms > 1 { 1 } else { 0 }, 4);
        for i in 0..nsyms {
            o.put(if i == 0 || i + 1 == nsyms { 0 } else { i + 1 }, 4);
        }
    }
    o.align(8);
    assert_eq!(o.bytes.len() as u64, symtab);

    o.bytes.extend(vec![0; symsize]);
    for (i, ((name, kind), &at)) in spec.symbols.iter().zip(&sym_names).enumerate() {
        let undefined = name.starts_with('!');
        let (value, size) = match *kind {
            1 => (BASE + data, w as u64), // STT_OBJECT: Py_Version, an `unsigned long`
            _ => (BASE + code + 16 * i as u64, 16),
        };
        let (value, shndx) = if undefined { (0, 0) } else { (value, 1) };
        let info = 1 << 4 | *kind as u64; // STB_GLOBAL
        if spec.is64 {
            o.put(at, 4);
            o.put(info, 1);
            o.put(0, 1);
            o.put(shndx, 2);
            o.put(value, 8);
            o.put(size, 8);
        } else {
            o.put(at, 4);
            o.put(value, 4);
            o.put(size, 4);
            o.put(info, 1);
            o.put(0, 1);
            o.put(shndx, 2);
        }
    }
    assert_eq!(o.bytes.len() as u64, strtab_at);
    o.bytes.extend_from_slice(&strtab);
    o.put(spec.py_version.into(), w);
    o.bytes.extend_from_slice(spec.extra);
    o.align(16);
    for _ in spec.symbols {
        // `endbr64; push rbp; ...; ret`: not run, but probes must land on non-zero bytes.
        o.bytes.extend_from_slice(&[0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3]);
        o.align(16);
    }
    assert_eq!(o.bytes.len() as u64, end);
    o.bytes
}

fn elf_seeds() -> Seeds {
    const FUNC: u8 = 2;
    const OBJECT: u8 = 1;
    const VERSION_STRINGS: &[u8] = b"\0cpython-311\0.cpython-311-x86_64-linux-gnu.so\0";
    let specs = [
        (
            "python-static-hash",
            ElfSpec {
                is64: true,
                little: true,
                gnu_hash: false,
                symbols: &[
                    ("Py_BytesMain", FUNC),
                    ("Py_Main", FUNC),
                    ("PyEval_EvalCode", FUNC),
                    ("PySys_Audit", FUNC),
                    ("Py_Version", OBJECT),
                    ("!malloc", FUNC),
                ],
                needed: &["libc.so.6"],
                runpath: None,
                extra: VERSION_STRINGS,
                py_version: 0x030b_07f0,
            },
        ),
        (
            "python-static-gnu-hash",
            ElfSpec {
                is64: true,
                little: true,
                gnu_hash: true,
                symbols: &[("Py_BytesMain", FUNC), ("PyImport_ImportModule", FUNC), ("!free", FUNC)],
                needed: &[],
                runpath: None,
                extra: b"\0cpython-313\0.cpython-313t-x86_64-linux-gnu.so\0",
                py_version: 0,
            },
        ),
        (
            "python-linked-32",
            ElfSpec {
                is64: false,
                little: true,
                gnu_hash: true,
                symbols: &[("main", FUNC), ("!Py_BytesMain", FUNC)],
                needed: &["libpython3.11.so.1.0", "libc.so.6"],
                runpath: Some("$ORIGIN/../lib:/opt/python/lib"),
                extra: b"",
                py_version: 0,
            },
        ),
        (
            "python-big-endian",
            ElfSpec {
                is64: true,
                little: false,
                gnu_hash: false,
                symbols: &[("Py_Main", FUNC), ("Py_Version", OBJECT)],
                needed: &[],
                runpath: None,
                extra: VERSION_STRINGS,
                py_version: 0x030c_00f0,
            },
        ),
    ];
    let mut seeds = Seeds::new();
    for (name, spec) in specs {
        seeds.push((name, elf(&spec)));
    }
    // A shebang script: not ELF at all.
    seeds.push(("script", b"#!/usr/bin/python3\nprint('hi')\n".to_vec()));
    seeds
}
