//! The catch-all: a BPF `sk_lookup` program attached to the sandbox's namespace that hands every
//! new TCP connection and UDP datagram, whatever its address and port, to the sink's sockets.
//!
//! sk_lookup (Linux 5.9) runs where the kernel looks up the listening socket for a packet, so one
//! listener serves all 65535 ports of every address, with no iptables/nftables rule and no
//! thousands of listeners. The program is 40 instructions, written here as bytecode and loaded
//! with bpf(2) directly: it needs no ELF, no bpf-linker and nothing from premain's kernel programs.
//!
//! Its decisions: UDP to port 53 goes to the DNS socket, TCP to port 53 to the TCP listener (the
//! sink answers DNS over TCP there); otherwise traffic to 127.0.0.0/8 and ::1 is left to the
//! ordinary lookup, so a package's own local servers keep working (and the sink's answers, sent to
//! loopback clients, are never taken back), and everything else goes to the TCP or UDP sink.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

/// Slots of the program's SOCKMAP.
pub(super) const SLOT_TCP: u32 = 0;
pub(super) const SLOT_UDP: u32 = 1;
pub(super) const SLOT_DNS: u32 = 2;

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_PROG_LOAD: i64 = 5;
const BPF_LINK_CREATE: i64 = 28;
const BPF_MAP_TYPE_SOCKMAP: u32 = 15;
const BPF_PROG_TYPE_SK_LOOKUP: u32 = 30;
const BPF_SK_LOOKUP: u32 = 36;

/// The program attached to a namespace; detached when dropped (or when the namespace ends).
#[derive(Debug)]
pub(super) struct CatchAll {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl CatchAll {
    /// Loads the program and attaches it to `netns`; sockets are put in with [`Self::redirect`].
    pub(super) fn attach(netns: BorrowedFd<'_>) -> io::Result<Self> {
        let map = bpf(
            BPF_MAP_CREATE,
            &MapCreate {
                map_type: BPF_MAP_TYPE_SOCKMAP,
                key_size: 4,
                value_size: 8,
                max_entries: 3,
                ..Default::default()
            },
        )?;
        let insns = program(map.as_raw_fd());
        let mut log = vec![0u8; 16 * 1024];
        let prog = bpf(
            BPF_PROG_LOAD,
            &ProgLoad {
                prog_type: BPF_PROG_TYPE_SK_LOOKUP,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: c"GPL".as_ptr() as u64,
                log_level: 1,
                log_size: log.len() as u32,
                log_buf: log.as_mut_ptr() as u64,
                expected_attach_type: BPF_SK_LOOKUP,
                ..Default::default()
            },
        )
        .map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            let verifier = String::from_utf8_lossy(&log[..end]);
            let last = verifier.lines().rev().find(|l| !l.is_empty()).unwrap_or("");
            io::Error::new(e.kind(), format!("loading the sk_lookup program: {e} {last}"))
        })?;
        let link = bpf(
            BPF_LINK_CREATE,
            &LinkCreate {
                prog_fd: prog.as_raw_fd() as u32,
                target_fd: netns.as_raw_fd() as u32,
                attach_type: BPF_SK_LOOKUP,
                ..Default::default()
            },
        )?;
        Ok(Self { map, _prog: prog, _link: link })
    }

    /// Sends what the program assigns to `slot` to `socket` (a listening TCP or a UDP socket).
    pub(super) fn redirect(&self, slot: u32, socket: BorrowedFd<'_>) -> io::Result<()> {
        let value = socket.as_raw_fd() as u64;
        bpf_call(
            BPF_MAP_UPDATE_ELEM,
            &MapUpdate {
                map_fd: self.map.as_raw_fd() as u32,
                key: (&raw const slot) as u64,
                value: (&raw const value) as u64,
                ..Default::default()
            },
        )
        .map(drop)
    }
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapUpdate {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// bpf(2) for a command whose answer is a new descriptor.
fn bpf<T>(cmd: i64, attr: &T) -> io::Result<OwnedFd> {
    let ret = bpf_call(cmd, attr)?;
    // SAFETY: these commands return a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

fn bpf_call<T>(cmd: i64, attr: &T) -> io::Result<i64> {
    // SAFETY: `attr` is a repr(C) prefix of `union bpf_attr` for `cmd`, alive during the call; the
    // pointers inside it (instructions, license, log, key, value) outlive the call too.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>()) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            return Err(io::Error::new(e.kind(), format!("bpf(2) needs CAP_BPF and CAP_NET_ADMIN: {e}")));
        }
        return Err(e);
    }
    Ok(ret)
}

/// One BPF instruction.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

// Opcodes (class | op | source).
const MOV_X: u8 = 0xbf;
const MOV_K: u8 = 0xb7;
const ADD_K: u8 = 0x07;
const AND_K: u8 = 0x57;
const LDX_W: u8 = 0x61;
const STX_W: u8 = 0x63;
const LD_DW: u8 = 0x18;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;
// Helpers.
const MAP_LOOKUP_ELEM: i32 = 1;
const SK_RELEASE: i32 = 86;
const SK_ASSIGN: i32 = 124;
// Offsets in `struct bpf_sk_lookup`.
const FAMILY: i16 = 8;
const PROTOCOL: i16 = 12;
const LOCAL_IP4: i16 = 40;
const LOCAL_IP6: i16 = 44;
const LOCAL_PORT: i16 = 60;

/// The program (see the module comment); jump offsets count instructions after the jump.
fn program(map: i32) -> Vec<Insn> {
    // Addresses are in network order in the context: compare them as the host loads them.
    let first_octet = u32::from_ne_bytes([0xff, 0, 0, 0]) as i32;
    let loopback_net = u32::from_ne_bytes([127, 0, 0, 0]) as i32;
    let ip6_last_one = u32::from_ne_bytes([0, 0, 0, 1]) as i32;
    let slot = |s: u32| s as i32;
    vec![
        /* 0 */ insn(MOV_X, 6, 1, 0, 0),
        /* 1 */ insn(LDX_W, 2, 6, PROTOCOL, 0),
        /* 2 */ insn(LDX_W, 3, 6, LOCAL_PORT, 0),
        /* 3 */ insn(MOV_K, 4, 0, 0, slot(SLOT_TCP)),
        /* 4 */ insn(JEQ_K, 2, 0, 1, libc::IPPROTO_TCP), // -> 6
        /* 5 */ insn(MOV_K, 4, 0, 0, slot(SLOT_UDP)),
        /* 6 */ insn(JNE_K, 3, 0, 3, 53), // not DNS -> 10
        /* 7 */ insn(JEQ_K, 4, 0, 16, slot(SLOT_TCP)), // DNS over TCP: the listener -> 24
        /* 8 */ insn(MOV_K, 4, 0, 0, slot(SLOT_DNS)),
        /* 9 */ insn(JA, 0, 0, 14, 0), // -> 24
        /* 10 */ insn(LDX_W, 2, 6, FAMILY, 0),
        /* 11 */ insn(JNE_K, 2, 0, 4, libc::AF_INET), // -> 16
        /* 12 */ insn(LDX_W, 3, 6, LOCAL_IP4, 0),
        /* 13 */ insn(AND_K, 3, 0, 0, first_octet),
        /* 14 */ insn(JEQ_K, 3, 0, 23, loopback_net), // 127/8 -> 38
        /* 15 */ insn(JA, 0, 0, 8, 0), // -> 24
        /* 16 */ insn(LDX_W, 3, 6, LOCAL_IP6, 0),
        /* 17 */ insn(JNE_K, 3, 0, 6, 0), // -> 24
        /* 18 */ insn(LDX_W, 3, 6, LOCAL_IP6 + 4, 0),
        /* 19 */ insn(JNE_K, 3, 0, 4, 0), // -> 24
        /* 20 */ insn(LDX_W, 3, 6, LOCAL_IP6 + 8, 0),
        /* 21 */ insn(JNE_K, 3, 0, 2, 0), // -> 24
        /* 22 */ insn(LDX_W, 3, 6, LOCAL_IP6 + 12, 0),
        /* 23 */ insn(JEQ_K, 3, 0, 14, ip6_last_one), // ::1 -> 38
        /* 24 */ insn(STX_W, 10, 4, -4, 0),
        /* 25 */ insn(LD_DW, 1, PSEUDO_MAP_FD, 0, map),
        /* 26 */ insn(0, 0, 0, 0, 0),
        /* 27 */ insn(MOV_X, 2, 10, 0, 0),
        /* 28 */ insn(ADD_K, 2, 0, 0, -4),
        /* 29 */ insn(CALL, 0, 0, 0, MAP_LOOKUP_ELEM),
        /* 30 */ insn(JEQ_K, 0, 0, 7, 0), // empty slot -> 38
        /* 31 */ insn(MOV_X, 7, 0, 0, 0),
        /* 32 */ insn(MOV_X, 1, 6, 0, 0),
        /* 33 */ insn(MOV_X, 2, 7, 0, 0),
        /* 34 */ insn(MOV_K, 3, 0, 0, 0),
        /* 35 */ insn(CALL, 0, 0, 0, SK_ASSIGN),
        /* 36 */ insn(MOV_X, 1, 7, 0, 0),
        /* 37 */ insn(CALL, 0, 0, 0, SK_RELEASE),
        /* 38 */ insn(MOV_K, 0, 0, 0, 1), // SK_PASS: assigned, or left to the ordinary lookup
        /* 39 */ insn(EXIT, 0, 0, 0, 0),
    ]
}
