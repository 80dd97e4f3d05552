//! Minimal reader of the running kernel's BTF (`/sys/kernel/btf/vmlinux`) that answers "at which
//! byte offset does member X live in struct S". The eBPF programs cannot use CO-RE, so userspace
//! looks the offsets up here at load time and hands them to the programs.
//!
//! Format: <https://docs.kernel.org/bpf/btf.html>. The kernel writes BTF in its own byte order,
//! which is ours since we only read the running kernel's BTF; a byte-swapped magic is rejected.
//! Everything is bounds-checked: garbage input yields `Err`, never a panic or a hang.

use std::{collections::HashMap, fs, io, ops::Range, path::PathBuf};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const MAGIC: u16 = 0xeb9f;
/// Fixed part of `struct btf_header`; a larger `hdr_len` (fields appended by a newer kernel) is
/// accepted and the extra fields ignored, as they cannot move the sections we read.
const HDR_MIN: usize = 24;
/// Size of `struct btf_type` and of `struct btf_member`.
const REC: usize = 12;
/// Bounds anonymous-member nesting and typedef chains, which garbage input can make cyclic.
const MAX_DEPTH: u32 = 32;
/// Bounds member visits per lookup: acyclic but fanned-out garbage could otherwise take
/// exponential time. Real lookups visit a few hundred members.
const MAX_VISITS: u32 = 1 << 20;

// BTF_KIND_* from include/uapi/linux/btf.h; kind 0 only stands for `void` (type id 0) here.
const INT: u32 = 1;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const TYPE_TAG: u32 = 18;

macro_rules! bad {
    ($($fmt:tt)*) => { BtfError::Malformed(format!($($fmt)*)) };
}

/// Errors from loading BTF or looking up members.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The kernel exposes no BTF (built without `CONFIG_DEBUG_INFO_BTF`) or it is unreadable.
    #[error("kernel BTF not available at {}", path.display())]
    NotAvailable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not BTF at all, or BTF of the other byte order.
    #[error("bad BTF magic {0:#06x}, expected {MAGIC:#06x} in native byte order")]
    BadMagic(u16),
    /// Truncated or inconsistent data; the text says what and where.
    #[error("malformed BTF: {0}")]
    Malformed(String),
    /// No struct (nor, failing that, union) of that name with at least one member.
    #[error("no struct `{0}` with members in BTF")]
    NoSuchStruct(String),
    #[error("struct `{strukt}` has no member `{member}`")]
    NoSuchMember { strukt: String, member: String },
    /// A dotted path continues past a member that is not a struct or union.
    #[error("`{strukt}.{member}` is not a struct or union, cannot look inside it")]
    NotComposite { strukt: String, member: String },
    /// The member is narrower than its type or not byte-aligned; the eBPF side reads whole
    /// fields only. `bits` is the bitfield width, 0 if it is merely misaligned.
    #[error("`{strukt}.{member}` is a bitfield (bit offset {bit_offset}, {bits} bits)")]
    Bitfield { strukt: String, member: String, bit_offset: u64, bits: u32 },
}

fn u32_at(data: &[u8], off: usize) -> Result<u32, BtfError> {
    match data.get(off..off.saturating_add(4)) {
        Some(&[a, b, c, d]) => Ok(u32::from_ne_bytes([a, b, c, d])),
        _ => Err(bad!("read at byte {off} past the end")),
    }
}

/// Bytes of data after a `struct btf_type` of this kind; `None` for kinds we do not know, since
/// without their size the rest of the section cannot be walked.
fn trailing(kind: u32, vlen: usize) -> Option<usize> {
    match kind {
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        2 | 7..=12 | 16 | 18 => Some(0),
        1 | 14 | 17 => Some(4), // INT (encoding), VAR (linkage), DECL_TAG (index)
        3 => Some(12),          // ARRAY: struct btf_array
        4 | 5 | 15 | 19 => Some(vlen * 12), // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => Some(vlen * 8), // ENUM, FUNC_PROTO
        _ => None,
    }
}

/// Parsed BTF: the raw blob plus indexes, so lookups need not rescan ~150k types.
pub(crate) struct Btf {
    data: Vec<u8>,
    strs: Range<usize>,
    /// Byte offset in `data` of each type record, indexed by type id (id 0, `void`, has none).
    types: Vec<usize>,
    /// Struct and union names -> type ids in id order. Names are not unique: FWDs aside, a kernel
    /// can carry distinct same-named structs from different compilation units.
    composites: HashMap<String, Vec<u32>>,
}

/// A decoded `struct btf_type`; the default value is `void`.
#[derive(Clone, Copy, Default)]
struct Ty {
    off: usize,
    name_off: u32,
    kind: u32,
    kflag: bool,
    vlen: usize,
    size_or_type: u32,
}

/// A member found by a lookup: bit offset, type id, bitfield width (0 = not a bitfield).
#[derive(Clone, Copy)]
struct Found {
    bits: u64,
    ty: u32,
    bitfield: u32,
}

impl Btf {
    /// Reads the running kernel's BTF from sysfs.
    pub(crate) fn from_sys_fs() -> Result<Btf, BtfError> {
        Btf::from_file(VMLINUX)
    }

    fn from_file(path: &str) -> Result<Btf, BtfError> {
        let data = fs::read(path).map_err(|source| BtfError::NotAvailable { path: path.into(), source })?;
        Btf::parse(data)
    }

    /// Validates the header and walks the whole type section up front, so that later lookups
    /// only meet bad data inside records (dangling ids, bad names), which they report as errors.
    pub(crate) fn parse(data: Vec<u8>) -> Result<Btf, BtfError> {
        if data.len() < HDR_MIN {
            return Err(bad!("header truncated: {} bytes", data.len()));
        }
        let magic = u16::from_ne_bytes([data[0], data[1]]);
        if magic != MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        if data[2] != 1 {
            return Err(bad!("unsupported version {}", data[2]));
        }
        let field = |off| u32_at(&data, off).map(|v| v as usize);
        let hdr_len = field(4)?;
        if hdr_len < HDR_MIN {
            return Err(bad!("hdr_len {hdr_len} < {HDR_MIN}"));
        }
        let section = |what, off: usize, len: usize| match hdr_len.checked_add(off) {
            Some(s) if s.checked_add(len).is_some_and(|e| e <= data.len()) => Ok(s..s + len),
            _ => Err(bad!("{what} section at {off}+{len} overruns the blob")),
        };
        let type_sec = section("type", field(8)?, field(12)?)?;
        let strs = section("string", field(16)?, field(20)?)?;
        // A final NUL guarantees every name lookup finds its terminator.
        if data[strs.clone()].last() != Some(&0) {
            return Err(bad!("string section empty or not NUL-terminated"));
        }
        let mut btf = Btf { data, strs, types: vec![usize::MAX], composites: HashMap::new() };
        let mut pos = type_sec.start;
        while pos < type_sec.end {
            let id = btf.types.len() as u32;
            if type_sec.end - pos < REC {
                return Err(bad!("type id {id} at byte {pos}: record truncated"));
            }
            btf.types.push(pos);
            let t = btf.ty(id)?;
            let extra = trailing(t.kind, t.vlen)
                .ok_or_else(|| bad!("type id {id} at byte {pos}: unknown kind {}", t.kind))?;
            pos += REC + extra; // no overflow: pos <= data.len() and extra < 1 MiB
            if pos > type_sec.end {
                return Err(bad!("type id {id}: its data runs past the type section"));
            }
            if matches!(t.kind, STRUCT | UNION) && t.name_off != 0 {
                let name = btf.name(t.name_off)?.to_owned();
                btf.composites.entry(name).or_default().push(id);
            }
        }
        Ok(btf)
    }

    /// Byte offset of `path` ("real_parent", "i_mtime.tv_sec", dotted for nested named members)
    /// inside `struct_name`. As in C, members of anonymous struct/union members count as direct
    /// members. Bitfields and misaligned members are an error, not a rounded offset.
    pub(crate) fn member_offset(&self, struct_name: &str, path: &str) -> Result<u32, BtfError> {
        let found = self.resolve(struct_name, path)?;
        // Without kind_flag, a bitfield shows only in its INT's encoding: nr_bits, bit offset.
        let t = self.ty(self.strip_modifiers(found.ty)?)?;
        let enc = (t.kind == INT).then(|| u32_at(&self.data, t.off + REC)).transpose()?;
        let full = t.size_or_type.saturating_mul(8);
        let narrow = enc.filter(|e| e & 0xff != full || (e >> 16) & 0xff != 0);
        if found.bitfield != 0 || found.bits % 8 != 0 || narrow.is_some() {
            return Err(BtfError::Bitfield {
                strukt: struct_name.into(),
                member: path.into(),
                bit_offset: found.bits,
                bits: narrow.map_or(found.bitfield, |e| e & 0xff),
            });
        }
        u32::try_from(found.bits / 8).map_err(|_| bad!("{struct_name}.{path} beyond 4 GiB"))
    }

    /// Whether `struct_name` has a (possibly nested-anonymous) member called `member`; dotted
    /// paths work as in `member_offset`. Bitfields count: they exist, they are just not readable.
    #[cfg(test)]
    pub(crate) fn has_member(&self, struct_name: &str, member: &str) -> bool {
        self.resolve(struct_name, member).is_ok()
    }

    fn resolve(&self, strukt: &str, path: &str) -> Result<Found, BtfError> {
        let no_member = || BtfError::NoSuchMember { strukt: strukt.into(), member: path.into() };
        let mut cur = self.find_struct(strukt)?;
        let (mut bits, mut found, mut visits) = (0, None::<Found>, 0);
        for (i, comp) in path.split('.').enumerate() {
            if let Some(prev) = found {
                cur = self.strip_modifiers(prev.ty)?;
                if !matches!(self.ty(cur)?.kind, STRUCT | UNION) {
                    let member = path.split('.').take(i).collect::<Vec<_>>().join(".");
                    return Err(BtfError::NotComposite { strukt: strukt.into(), member });
                }
            }
            let f = self.find_member(cur, comp, 0, &mut visits)?;
            let f = f.filter(|_| !comp.is_empty()).ok_or_else(no_member)?;
            bits += f.bits;
            found = Some(f);
        }
        found.map(|f| Found { bits, ..f }).ok_or_else(no_member)
    }

    /// First STRUCT with members, skipping forward declarations and empty same-named structs;
    /// falls back to a UNION so `union bpf_attr`-style types work too.
    fn find_struct(&self, name: &str) -> Result<u32, BtfError> {
        let ids = self.composites.get(name).map_or(&[][..], Vec::as_slice);
        for want in [STRUCT, UNION] {
            for &id in ids {
                let t = self.ty(id)?;
                if t.kind == want && t.vlen > 0 {
                    return Ok(id);
                }
            }
        }
        Err(BtfError::NoSuchStruct(name.into()))
    }

    /// Looks `name` up among the members of struct/union `id`, descending into anonymous
    /// struct/union members; the bit offset returned is relative to `id`.
    fn find_member(&self, id: u32, name: &str, depth: u32, visits: &mut u32) -> FindResult {
        if depth > MAX_DEPTH {
            return Err(bad!("anonymous members nested too deep in type id {id}"));
        }
        let t = self.ty(id)?;
        for m in (1..=t.vlen).map(|i| t.off + REC * i) {
            *visits += 1;
            if *visits > MAX_VISITS {
                return Err(bad!("member search in type id {id} takes too long"));
            }
            let [name_off, ty, raw] = [0, 4, 8].map(|o| u32_at(&self.data, m + o));
            let (name_off, ty, raw) = (name_off?, ty?, raw?);
            // With kind_flag set, `offset` packs bitfield_size << 24 | bit_offset.
            let bitfield = if t.kflag { raw >> 24 } else { 0 };
            let bits = u64::from(raw & if t.kflag { 0xff_ffff } else { u32::MAX });
            if name_off == 0 {
                let inner = self.strip_modifiers(ty)?;
                if matches!(self.ty(inner)?.kind, STRUCT | UNION)
                    && let Some(f) = self.find_member(inner, name, depth + 1, visits)?
                {
                    let bits = bits + f.bits;
                    return Ok(Some(Found { bits, ..f }));
                }
            } else if self.name(name_off)? == name {
                return Ok(Some(Found { bits, ty, bitfield }));
            }
        }
        Ok(None)
    }

    /// Follows typedefs and qualifiers, which do not change layout, to the underlying type.
    fn strip_modifiers(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_DEPTH {
            let t = self.ty(id)?;
            if !matches!(t.kind, TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG) {
                return Ok(id);
            }
            id = t.size_or_type;
        }
        Err(bad!("typedef/qualifier chain too long at type id {id}"))
    }

    fn ty(&self, id: u32) -> Result<Ty, BtfError> {
        if id == 0 {
            return Ok(Ty::default());
        }
        let Some(&off) = self.types.get(id as usize) else {
            return Err(bad!("type id {id} out of range"));
        };
        let info = u32_at(&self.data, off + 4)?;
        Ok(Ty {
            off,
            name_off: u32_at(&self.data, off)?,
            kind: (info >> 24) & 0x1f,
            kflag: info >> 31 == 1,
            vlen: (info & 0xffff) as usize,
            size_or_type: u32_at(&self.data, off + 8)?,
        })
    }

    fn name(&self, off: u32) -> Result<&str, BtfError> {
        let strs = &self.data[self.strs.clone()];
        let tail = strs.get(off as usize..).unwrap_or_default();
        // parse() ensured the section ends in NUL, so only an out-of-range offset finds none.
        let end = tail.iter().position(|&b| b == 0);
        let end = end.ok_or_else(|| bad!("name offset {off} outside the string section"))?;
        std::str::from_utf8(&tail[..end]).map_err(|_| bad!("name at {off} is not UTF-8"))
    }
}

type FindResult = Result<Option<Found>, BtfError>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Stdio;

    /// A BTF of `structs`, each `(name, members)`, members 8 bytes apart: 8-byte integers, or
    /// `member:other` for one of the other structs (whose first 8 bytes it then holds).
    pub(crate) fn synthetic(structs: &[(&str, &[&str])]) -> Btf {
        let mut b = Builder(vec![], vec![0]);
        b.ty("long", INT << 24, 8, &[], &[1 << 24 | 64]); // 1; the structs follow from 2
        let id = |name: &str| structs.iter().position(|(n, _)| *n == name).expect("a struct") as u32 + 2;
        for (name, members) in structs {
            let members: Vec<(&str, u32, u32)> = members
                .iter()
                .enumerate()
                .map(|(i, m)| match m.split_once(':') {
                    Some((m, ty)) => (m, id(ty), i as u32 * 64),
                    None => (*m, 1, i as u32 * 64),
                })
                .collect();
            b.ty(name, STRUCT << 24, 8 * members.len() as u32, &members, &[]);
        }
        Btf::parse(b.build()).expect("synthetic BTF")
    }

    /// Assembles a BTF blob from words; type ids follow `ty` call order from 1.
    struct Builder(Vec<u32>, Vec<u8>);

    type Members<'a> = &'a [(&'a str, u32, u32)];

    impl Builder {
        /// `info`: kind << 24 | kind_flag << 31, vlen is added; `extra`: e.g. an INT's encoding.
        fn ty(&mut self, name: &str, info: u32, st: u32, members: Members, extra: &[u32]) {
            let words = [self.s(name), info | members.len() as u32, st];
            self.0.extend(words);
            for &(n, t, off) in members {
                let n = self.s(n);
                self.0.extend([n, t, off]);
            }
            self.0.extend(extra);
        }

        fn s(&mut self, name: &str) -> u32 {
            let off = self.1.len() as u32;
            self.1.extend(name.bytes().chain([0]));
            if name.is_empty() { 0 } else { off }
        }

        fn build(&self) -> Vec<u8> {
            let (tl, sl) = (self.0.len() as u32 * 4, self.1.len() as u32);
            let hdr = [u32::from(MAGIC) | 1 << 16, 24, 0, tl, tl, sl];
            let words = hdr.iter().chain(&self.0).flat_map(|w| w.to_ne_bytes());
            words.chain(self.1.iter().copied()).collect()
        }
    }

    fn sample() -> Vec<u8> {
        let outer = [("first", 3, 0), ("", 4, 32), ("flags", 3, 3 << 24 | 64)];
        let outer = [&outer[..], &[("odd", 3, 68), ("tail", 7, 128)]].concat();
        let mut b = Builder(vec![], vec![0]);
        b.ty("outer", 7 << 24, 0, &[], &[]); // 1: FWD, to be skipped
        b.ty("outer", STRUCT << 24, 0, &[], &[]); // 2: empty same-named struct, skipped too
        b.ty("int", INT << 24, 4, &[], &[1 << 24 | 32]); // 3: signed, 32 bits
        b.ty("", UNION << 24, 4, &[("u_a", 3, 0), ("u_b", 3, 0)], &[]); // 4
        b.ty("pair", STRUCT << 24, 8, &[("x", 3, 0), ("y", 3, 32)], &[]); // 5
        b.ty("pair_t", TYPEDEF << 24, 5, &[], &[]); // 6
        b.ty("", CONST << 24, 6, &[], &[]); // 7
        b.ty("outer", 1 << 31 | STRUCT << 24, 24, &outer, &[]); // 8, with kind_flag
        b.ty("int3", INT << 24, 4, &[], &[3]); // 9: 3 bits, a bitfield without kind_flag
        b.ty("plain", STRUCT << 24, 4, &[("narrow", 9, 0)], &[]); // 10
        b.build()
    }

    #[test]
    fn synthetic_lookups() {
        let btf = Btf::parse(sample()).unwrap();
        for case in "first:0 u_a:4 u_b:4 tail:16 tail.x:16 tail.y:20".split(' ') {
            let (path, want) = case.split_once(':').unwrap();
            assert_eq!(btf.member_offset("outer", path).unwrap().to_string(), want, "{path}");
        }
        assert_eq!(btf.member_offset("pair", "y").unwrap(), 4);
        assert!(btf.has_member("outer", "u_b") && btf.has_member("outer", "flags"));
        assert!(!btf.has_member("outer", "nope") && !btf.has_member("nope", "x"));
        let errors = [
            ("outer.flags", "bitfield (bit offset 64, 3 bits)"),
            ("outer.odd", "bitfield (bit offset 68, 0 bits)"),
            ("plain.narrow", "bitfield (bit offset 0, 3 bits)"),
            ("outer.tail.z", "has no member `tail.z`"),
            ("outer.", "has no member ``"),
            ("outer.tail..x", "has no member `tail..x`"),
            ("outer.first.x", "`outer.first` is not a struct"),
            ("pair_t.x", "no struct `pair_t`"),
        ];
        for (case, want) in errors {
            let (s, path) = case.split_once('.').unwrap();
            let err = btf.member_offset(s, path).unwrap_err().to_string();
            assert!(err.contains(want), "{case}: {err}");
        }
        let err = btf.member_offset("outer", "flags").unwrap_err();
        assert!(matches!(err, BtfError::Bitfield { bits: 3, .. }));
    }

    #[test]
    fn synthetic_garbage() {
        let good = sample();
        for len in 0..good.len() {
            let res = Btf::parse(good[..len].to_vec());
            assert!(res.is_err(), "{len}-byte prefix");
        }
        let parse_err = |patch: fn(&mut Vec<u8>)| {
            let mut blob = good.clone();
            patch(&mut blob);
            Btf::parse(blob).err().unwrap().to_string()
        };
        assert!(parse_err(|b| b.swap(0, 1)).starts_with("bad BTF magic 0x9feb"));
        assert!(parse_err(|b| b[24 + 7] = 25).contains("unknown kind 25")); // kind of type 1
        // A self-referencing typedef, and a struct containing itself anonymously.
        let mut b = Builder(vec![], vec![0]);
        b.ty("loop", TYPEDEF << 24, 1, &[], &[]);
        b.ty("s", STRUCT << 24, 4, &[("", 2, 0), ("", 1, 0)], &[]);
        let res = Btf::parse(b.build()).unwrap().member_offset("s", "x");
        assert!(matches!(res, Err(BtfError::Malformed(_))));
        let err = Btf::from_file("/nonexistent/vmlinux").err().unwrap().to_string();
        assert_eq!(err, "kernel BTF not available at /nonexistent/vmlinux");
    }

    /// Random blobs and random byte flips of a valid one: any outcome but a panic or hang is fine.
    #[test]
    fn fuzz_no_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let good = sample();
        for round in 0..20_000 {
            let noise: Vec<u8> = (0..rnd() % 300).map(|_| rnd() as u8).collect();
            let mut blob = match round % 3 {
                0 => noise,
                1 => [&good[..8], &noise].concat(), // gets past the magic check
                _ => good.clone(),
            };
            for _ in 0..rnd() % 5 {
                let i = rnd() as usize % blob.len().max(1);
                if let Some(b) = blob.get_mut(i) {
                    *b = rnd() as u8;
                }
            }
            if let Ok(btf) = Btf::parse(blob) {
                for path in ["first", "u_a", "tail.y", "flags", "narrow", "x"] {
                    for s in ["outer", "pair", "plain"] {
                        let _ = (btf.member_offset(s, path), btf.has_member(s, path));
                    }
                }
            }
        }
    }

    fn kernel() -> Option<Btf> {
        if !std::path::Path::new(VMLINUX).exists() {
            crate::testing::cannot_run(&format!("no {VMLINUX} (kernel without CONFIG_DEBUG_INFO_BTF)"));
            return None;
        }
        Some(Btf::from_sys_fs().expect("parse kernel BTF"))
    }

    /// The fields the monitor reads. 6.7+ replaced `struct timespec64 i_mtime` with
    /// `i_mtime_sec` and `i_mtime_nsec`.
    fn fields(btf: &Btf) -> Vec<(&'static str, &'static str)> {
        let mtime = match btf.has_member("inode", "i_mtime_sec") {
            true => "inode.i_mtime_sec inode.i_mtime_nsec",
            false => "inode.i_mtime.tv_sec inode.i_mtime.tv_nsec",
        };
        "task_struct.tgid task_struct.pid task_struct.real_parent task_struct.mm \
         task_struct.start_time mm_struct.exe_file mm_struct.arg_start mm_struct.arg_end \
         file.f_inode inode.i_ino inode.i_sb super_block.s_dev"
            .split_whitespace()
            .chain(mtime.split_whitespace())
            .filter_map(|f| f.split_once('.'))
            .collect()
    }

    #[test]
    fn kernel_offsets() {
        let Some(btf) = kernel() else { return };
        for (s, m) in fields(&btf) {
            let off = btf.member_offset(s, m).unwrap_or_else(|e| panic!("{e}"));
            let size = btf.ty(btf.find_struct(s).unwrap()).unwrap().size_or_type;
            assert!(off < size, "{s}.{m} at {off} outside {size}-byte struct");
            eprintln!("{s}.{m} = {off}");
        }
        let err = btf.member_offset("task_struct", "no_such_field");
        assert!(matches!(err, Err(BtfError::NoSuchMember { .. })));
        assert!(!btf.has_member("no_such_struct_xyz", "x"));
        let data = fs::read(VMLINUX).unwrap();
        let lens = (0..64).chain((64..data.len()).step_by(data.len() / 97));
        for len in lens.chain([data.len() - 1]) {
            let res = Btf::parse(data[..len].to_vec());
            assert!(res.is_err(), "{len}-byte prefix");
        }
    }

    /// Independent check against pahole's reading of the same BTF. pahole prints absolute
    /// offsets, also for members of anonymous structs/unions (`__i_nlink` is in one at 72).
    #[test]
    fn kernel_matches_pahole() {
        let Some(btf) = kernel() else { return };
        let mut fields = fields(&btf);
        if btf.has_member("inode", "__i_nlink") {
            fields.push(("inode", "__i_nlink"));
        }
        for (s, m) in fields.into_iter().filter(|(_, m)| !m.contains('.')) {
            let out =
                crate::testing::program("pahole").args(["-C", s, VMLINUX]).stderr(Stdio::null()).output();
            let out = match out {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
                other => panic!("pahole -C {s}: {other:?}"),
            };
            // Member lines look like "\tpid_t  pid;  /*  1264  4 */" (bitfields "/* 8: 0  4 */").
            let want = out.lines().find_map(|l| {
                let (decl, rest) = l.split_once(';')?;
                let name = decl.split_whitespace().last()?.trim_start_matches('*');
                let off = rest.trim().strip_prefix("/*")?.split_whitespace().next()?;
                (name == m).then(|| off.trim_end_matches(':').parse::<u32>().ok())?
            });
            let got = btf.member_offset(s, m).unwrap();
            assert_eq!(Some(got), want, "{s}.{m} vs pahole");
        }
    }
}
