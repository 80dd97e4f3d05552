//! Loads the embedded kernel programs, configures them for this kernel and attaches them.

use aya::{
    EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSock, CgroupSockAddr, Program, ProgramError, RawTracePoint, TracePoint,
        cgroup_sock::CgroupSockLink, cgroup_sock_addr::CgroupSockAddrLink,
    },
};
use monitor_common::{
    CONTROL, COUNTERS, EVENTS, JUDGED, KernelOffsets, NET_ALLOW, NET_GUARD, OFFSETS,
    PROGRAMS as ALLOWED_PROGRAMS, QUIET, SELF_TGID, TRACKED, VERDICTS,
};

use std::sync::{Mutex, PoisonError};

use super::{control::KernelControl, error::StartError, guard::GuardMaps};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));

#[derive(Clone, Copy, Debug)]
pub(crate) enum Attach {
    TracePoint {
        category: &'static str,
        name: &'static str,
    },
    /// Raw tracepoints receive the tracepoint's C arguments (task pointers for fork).
    Raw {
        category: &'static str,
        name: &'static str,
    },
}

/// Every program in the object and where it attaches. Lifecycle hooks come first so that a
/// process is classified before its syscalls can be seen.
pub(crate) const PROGRAMS: &[(&str, Attach)] = &[
    ("exec_image", Attach::TracePoint { category: "sched", name: "sched_process_exec" }),
    ("process_fork", Attach::Raw { category: "sched", name: "sched_process_fork" }),
    ("process_exit", Attach::TracePoint { category: "sched", name: "sched_process_exit" }),
    ("exec_enter_execve", Attach::TracePoint { category: "syscalls", name: "sys_enter_execve" }),
    ("exec_exit_execve", Attach::TracePoint { category: "syscalls", name: "sys_exit_execve" }),
    ("exec_enter_execveat", Attach::TracePoint { category: "syscalls", name: "sys_enter_execveat" }),
    ("exec_exit_execveat", Attach::TracePoint { category: "syscalls", name: "sys_exit_execveat" }),
    ("file_enter_openat", Attach::TracePoint { category: "syscalls", name: "sys_enter_openat" }),
    ("file_exit_openat", Attach::TracePoint { category: "syscalls", name: "sys_exit_openat" }),
    ("file_enter_openat2", Attach::TracePoint { category: "syscalls", name: "sys_enter_openat2" }),
    ("file_exit_openat2", Attach::TracePoint { category: "syscalls", name: "sys_exit_openat2" }),
    ("net_enter_connect", Attach::TracePoint { category: "syscalls", name: "sys_enter_connect" }),
    ("net_exit_connect", Attach::TracePoint { category: "syscalls", name: "sys_exit_connect" }),
    ("net_enter_sendto", Attach::TracePoint { category: "syscalls", name: "sys_enter_sendto" }),
    ("net_exit_sendto", Attach::TracePoint { category: "syscalls", name: "sys_exit_sendto" }),
    ("net_enter_sendmsg", Attach::TracePoint { category: "syscalls", name: "sys_enter_sendmsg" }),
    ("net_exit_sendmsg", Attach::TracePoint { category: "syscalls", name: "sys_exit_sendmsg" }),
    ("file_enter_open", Attach::TracePoint { category: "syscalls", name: "sys_enter_open" }),
    ("file_exit_open", Attach::TracePoint { category: "syscalls", name: "sys_exit_open" }),
    ("file_enter_creat", Attach::TracePoint { category: "syscalls", name: "sys_enter_creat" }),
    ("file_exit_creat", Attach::TracePoint { category: "syscalls", name: "sys_exit_creat" }),
    (
        "file_enter_open_by_handle_at",
        Attach::TracePoint { category: "syscalls", name: "sys_enter_open_by_handle_at" },
    ),
    (
        "file_exit_open_by_handle_at",
        Attach::TracePoint { category: "syscalls", name: "sys_exit_open_by_handle_at" },
    ),
    ("net_enter_sendmmsg", Attach::TracePoint { category: "syscalls", name: "sys_enter_sendmmsg" }),
    ("net_exit_sendmmsg", Attach::TracePoint { category: "syscalls", name: "sys_exit_sendmmsg" }),
    ("net_enter_socket", Attach::TracePoint { category: "syscalls", name: "sys_enter_socket" }),
    ("net_exit_socket", Attach::TracePoint { category: "syscalls", name: "sys_exit_socket" }),
    (
        "target_enter_process_vm_readv",
        Attach::TracePoint { category: "syscalls", name: "sys_enter_process_vm_readv" },
    ),
    (
        "target_exit_process_vm_readv",
        Attach::TracePoint { category: "syscalls", name: "sys_exit_process_vm_readv" },
    ),
    (
        "target_enter_process_vm_writev",
        Attach::TracePoint { category: "syscalls", name: "sys_enter_process_vm_writev" },
    ),
    (
        "target_exit_process_vm_writev",
        Attach::TracePoint { category: "syscalls", name: "sys_exit_process_vm_writev" },
    ),
    ("target_enter_ptrace", Attach::TracePoint { category: "syscalls", name: "sys_enter_ptrace" }),
    ("target_exit_ptrace", Attach::TracePoint { category: "syscalls", name: "sys_exit_ptrace" }),
    ("names_enter_rename", Attach::TracePoint { category: "syscalls", name: "sys_enter_rename" }),
    ("names_exit_rename", Attach::TracePoint { category: "syscalls", name: "sys_exit_rename" }),
    ("names_enter_renameat", Attach::TracePoint { category: "syscalls", name: "sys_enter_renameat" }),
    ("names_exit_renameat", Attach::TracePoint { category: "syscalls", name: "sys_exit_renameat" }),
    ("names_enter_renameat2", Attach::TracePoint { category: "syscalls", name: "sys_enter_renameat2" }),
    ("names_exit_renameat2", Attach::TracePoint { category: "syscalls", name: "sys_exit_renameat2" }),
    ("names_enter_link", Attach::TracePoint { category: "syscalls", name: "sys_enter_link" }),
    ("names_exit_link", Attach::TracePoint { category: "syscalls", name: "sys_exit_link" }),
    ("names_enter_linkat", Attach::TracePoint { category: "syscalls", name: "sys_enter_linkat" }),
    ("names_exit_linkat", Attach::TracePoint { category: "syscalls", name: "sys_exit_linkat" }),
    ("names_enter_symlink", Attach::TracePoint { category: "syscalls", name: "sys_enter_symlink" }),
    ("names_exit_symlink", Attach::TracePoint { category: "syscalls", name: "sys_exit_symlink" }),
    ("names_enter_symlinkat", Attach::TracePoint { category: "syscalls", name: "sys_enter_symlinkat" }),
    ("names_exit_symlinkat", Attach::TracePoint { category: "syscalls", name: "sys_exit_symlinkat" }),
    ("uring_create", Attach::TracePoint { category: "io_uring", name: "io_uring_create" }),
    ("uring_submit", Attach::TracePoint { category: "io_uring", name: "io_uring_submit_req" }),
    ("uring_complete", Attach::TracePoint { category: "io_uring", name: "io_uring_complete" }),
    ("compat_enter", Attach::Raw { category: "raw_syscalls", name: "sys_enter" }),
    ("compat_exit", Attach::Raw { category: "raw_syscalls", name: "sys_exit" }),
];

/// Tracepoints that must exist in tracefs (the raw one is checked there too).
pub(crate) fn tracepoints() -> Vec<(&'static str, &'static str)> {
    PROGRAMS
        .iter()
        .map(|(_, attach)| match *attach {
            Attach::TracePoint { category, name } => (category, name),
            Attach::Raw { category, name } => (category, name),
        })
        .collect()
}

pub(crate) struct Kernel {
    pub events: RingBuf<MapData>,
    pub control: KernelControl,
    pub counters: PerCpuArray<MapData, u64>,
    /// Kernel-side log records; `None` when the object has no log statements.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// Loads the object and creates its maps, without attaching anything.
pub(crate) fn load(offsets: &KernelOffsets, ring_buffer_bytes: u32) -> Result<Kernel, StartError> {
    if OBJECT.is_empty() {
        return Err(StartError::EmptyObject);
    }
    let self_tgid = std::process::id();
    let mut ebpf = EbpfLoader::new()
        .override_global(SELF_TGID, &self_tgid, true)
        .override_global(OFFSETS, offsets, true)
        .map_max_entries(EVENTS, ring_buffer_bytes)
        .load(OBJECT)
        .map_err(|err| StartError::Load(one_line(&err.to_string())))?;
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => Some(logger),
        Err(err) => {
            tracing::debug!(error = %err, "no kernel-side logging");
            None
        }
    };
    let mut take = |name: &str| {
        ebpf.take_map(name).ok_or_else(|| StartError::Load(format!("map {name} missing from the object")))
    };
    let events = RingBuf::try_from(take(EVENTS)?).map_err(|e| StartError::Load(e.to_string()))?;
    let tracked_map = take(TRACKED)?;
    // A second handle on the same map, for threads that only read it.
    let tracked_fd = match &tracked_map {
        aya::maps::Map::HashMap(data) => std::os::fd::AsFd::as_fd(data.fd()).try_clone_to_owned().ok(),
        _ => None,
    };
    let tracked = HashMap::try_from(tracked_map).map_err(|e| StartError::Load(e.to_string()))?;
    let verdicts = HashMap::try_from(take(VERDICTS)?).map_err(|e| StartError::Load(e.to_string()))?;
    let counters = PerCpuArray::try_from(take(COUNTERS)?).map_err(|e| StartError::Load(e.to_string()))?;
    let control = Array::try_from(take(CONTROL)?).map_err(|e| StartError::Load(e.to_string()))?;
    let quiet = HashMap::try_from(take(QUIET)?).map_err(|e| StartError::Load(e.to_string()))?;
    let guard = GuardMaps {
        guard: HashMap::try_from(take(NET_GUARD)?).map_err(|e| StartError::Load(e.to_string()))?,
        judged: HashMap::try_from(take(JUDGED)?).map_err(|e| StartError::Load(e.to_string()))?,
        allow: Array::try_from(take(NET_ALLOW)?).map_err(|e| StartError::Load(e.to_string()))?,
        programs: HashMap::try_from(take(ALLOWED_PROGRAMS)?).map_err(|e| StartError::Load(e.to_string()))?,
        listed: Vec::new(),
    };
    let control = KernelControl::new(ebpf, tracked, tracked_fd, verdicts, control, quiet, guard);
    Ok(Kernel { events, control, counters, logger })
}

/// Programs attached only with `limits.ia32_syscalls`: they run on every syscall of the node.
pub(crate) const IA32: &[&str] = &["compat_enter", "compat_exit"];

/// Programs on the cgroup v2 root that see the 32-bit connects and addressed sends the
/// raw-syscall programs would, at no cost to other syscalls: attached when those are not.
const SOCK: &[&str] = &["sock_connect4", "sock_connect6", "sock_sendmsg4", "sock_sendmsg6"];
/// The same for 32-bit creations of raw IPv4 and IPv6 sockets.
const SOCK_CREATE: &str = "sock_create";

/// Loads into the kernel (verifier) and attaches every tracepoint program, and without
/// `ia32` the cgroup programs ([`SOCK`]). Links are owned by the object:
/// [`KernelControl::unload`] detaches everything.
pub(crate) fn attach_all(kernel: &mut Kernel, ia32: bool) -> Result<usize, StartError> {
    let ebpf = kernel.control.ebpf_mut().ok_or_else(|| StartError::Load("programs unloaded".into()))?;
    // The CPython probes are verified now and attached per interpreter image later.
    let mut wanted: Vec<&str> = super::probes::programs().collect();
    let tracepoints = PROGRAMS.iter().filter(|(program, _)| ia32 || !IA32.contains(program));
    wanted.extend(tracepoints.clone().map(|(program, _)| *program));
    if !ia32 {
        wanted.extend(SOCK.iter().copied().chain([SOCK_CREATE]));
    }
    let sock_unverified = verify(ebpf, &wanted)?;
    let mut attached = 0;
    for &(program, attach) in tracepoints {
        let prog = program_mut(ebpf, program)?;
        match attach {
            Attach::TracePoint { category, name } => {
                let tp: &mut TracePoint = prog.try_into().map_err(refused(program))?;
                tp.attach(category, name).map_err(refused(program))?;
            }
            Attach::Raw { name, .. } => {
                let raw: &mut RawTracePoint = prog.try_into().map_err(refused(program))?;
                raw.attach(name).map_err(refused(program))?;
            }
        }
        tracing::debug!(program, "attached");
        attached += 1;
    }
    if !ia32 {
        match sock_unverified.map_or_else(|| attach_sock(ebpf), Err) {
            Ok(links) => {
                attached += links.len();
                kernel.control.keep_cgroup_links(links);
            }
            // What they add is narrow (32-bit connects and sends); premain runs without it.
            Err(err) => tracing::warn!(error = %err, "32-bit connects, sends and raw sockets are not seen"),
        }
    }
    Ok(attached)
}

/// Runs the verifier on each program of `wanted`, on as many threads as there are CPUs: it is
/// most of premain's start-up, and each program's verification is independent. Attaching
/// comes after, in [`PROGRAMS`]' order. A failure stops the start, except the cgroup
/// programs' ([`SOCK`]), which is returned: premain runs without them.
fn verify(ebpf: &mut aya::Ebpf, wanted: &[&str]) -> Result<Option<StartError>, StartError> {
    let programs: Vec<(&str, &mut Program)> =
        ebpf.programs_mut().filter(|(name, _)| wanted.contains(name)).collect();
    if let Some(program) = wanted.iter().find(|w| !programs.iter().any(|(name, _)| name == *w)) {
        return Err(StartError::Load(format!("program {program} missing from the object")));
    }
    let queue = Mutex::new(programs);
    let failures: Mutex<Vec<StartError>> = Mutex::default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    // Its own statement: the queue stays locked only while taking one.
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
                    let Some((name, program)) = next else { break };
                    if let Err(err) = load_program(program).map_err(refused(name)) {
                        failures.lock().unwrap_or_else(PoisonError::into_inner).push(err);
                    }
                }
            });
        }
    });
    let (sock, fatal): (Vec<StartError>, Vec<StartError>) =
        failures.into_inner().unwrap_or_else(PoisonError::into_inner).into_iter().partition(|err| {
            matches!(err, StartError::Program { program, .. } if SOCK.contains(&program.as_str()) || program == SOCK_CREATE)
        });
    match fatal.into_iter().next() {
        Some(err) => Err(err),
        None => Ok(sock.into_iter().next()),
    }
}

fn load_program(program: &mut Program) -> Result<(), ProgramError> {
    match program {
        Program::TracePoint(p) => p.load(),
        Program::RawTracePoint(p) => p.load(),
        Program::UProbe(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::CgroupSock(p) => p.load(),
        _ => Err(ProgramError::UnexpectedProgramType),
    }
}

fn attach_sock(ebpf: &mut aya::Ebpf) -> Result<CgroupLinks, StartError> {
    let root = crate::process::procfs::cgroup2_mount()
        .ok_or_else(|| StartError::Load("no cgroup v2 hierarchy is mounted".into()))?;
    let open = || std::fs::File::open(root).map_err(|err| StartError::Load(format!("{}: {err}", root.display())));
    let mut links = CgroupLinks::default();
    for &program in SOCK {
        let sock: &mut CgroupSockAddr = program_mut(ebpf, program)?.try_into().map_err(refused(program))?;
        let link = sock.attach(open()?, CgroupAttachMode::Single).map_err(refused(program))?;
        links.addr.push(sock.take_link(link).map_err(refused(program))?);
        tracing::debug!(program, cgroup = %root.display(), "attached");
    }
    let program = SOCK_CREATE;
    let create: &mut CgroupSock = program_mut(ebpf, program)?.try_into().map_err(refused(program))?;
    let link = create.attach(open()?, CgroupAttachMode::Single).map_err(refused(program))?;
    links.create = Some(create.take_link(link).map_err(refused(program))?);
    tracing::debug!(program, cgroup = %root.display(), "attached");
    Ok(links)
}

/// The cgroup programs' links, owned apart from their programs: a cgroup takes one program of
/// each of their kinds, so at the stop they are detached (at once: no grace period for them)
/// before the node's lock lets another premain attach its own.
#[derive(Default)]
pub(crate) struct CgroupLinks {
    addr: Vec<CgroupSockAddrLink>,
    create: Option<CgroupSockLink>,
}

impl CgroupLinks {
    fn len(&self) -> usize {
        self.addr.len() + usize::from(self.create.is_some())
    }
}

fn program_mut<'a>(
    ebpf: &'a mut aya::Ebpf,
    program: &str,
) -> Result<&'a mut aya::programs::Program, StartError> {
    ebpf.program_mut(program)
        .ok_or_else(|| StartError::Load(format!("program {program} missing from the object")))
}

fn refused(program: &str) -> impl Fn(ProgramError) -> StartError + '_ {
    move |err| StartError::Program { program: program.to_owned(), reason: program_error(&err) }
}

/// The verifier log is long; the operator gets its last meaningful line, the full text goes
/// to the debug log.
fn program_error(err: &ProgramError) -> String {
    if let ProgramError::LoadError { io_error, verifier_log } = err {
        let log = verifier_log.to_string();
        tracing::debug!(%log, "verifier log");
        let last =
            log.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with("processed")).unwrap_or("");
        return format!("{io_error} (verifier: {})", last.trim());
    }
    // The errno is in the error's source (`bpf_link_create` failed: Invalid argument).
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    one_line(&text)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
