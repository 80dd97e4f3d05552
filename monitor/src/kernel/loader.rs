//! Loads the embedded kernel programs, configures them for this kernel and attaches them.

use aya::{
    EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSock, CgroupSockAddr, ProgramError, RawTracePoint, TracePoint, UProbe,
    },
};
use monitor_common::{
    CONTROL, COUNTERS, EVENTS, JUDGED, KernelOffsets, NET_ALLOW, NET_GUARD, OFFSETS,
    PROGRAMS as ALLOWED_PROGRAMS, QUIET, SELF_TGID, STACK_PROGRAMS, TRACKED, VERDICTS,
};

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
    for program in super::probes::programs() {
        let probe: &mut UProbe = program_mut(ebpf, program)?.try_into().map_err(refused(program))?;
        probe.load().map_err(refused(program))?;
    }
    // Before the syscall programs that tail-call it.
    if let Err(err) = load_stack_walk(ebpf) {
        tracing::warn!(error = %err, "no Python stacks: the kernel refused the stack walk");
    }
    let mut attached = 0;
    for &(program, attach) in PROGRAMS.iter().filter(|(program, _)| ia32 || !IA32.contains(program)) {
        let prog = program_mut(ebpf, program)?;
        match attach {
            Attach::TracePoint { category, name } => {
                let tp: &mut TracePoint = prog.try_into().map_err(refused(program))?;
                tp.load().map_err(refused(program))?;
                tp.attach(category, name).map_err(refused(program))?;
            }
            Attach::Raw { name, .. } => {
                let raw: &mut RawTracePoint = prog.try_into().map_err(refused(program))?;
                raw.load().map_err(refused(program))?;
                raw.attach(name).map_err(refused(program))?;
            }
        }
        tracing::debug!(program, "attached");
        attached += 1;
    }
    if !ia32 {
        match attach_sock(ebpf) {
            Ok(n) => attached += n,
            // What they add is narrow (32-bit connects and sends); premain runs without it.
            Err(err) => tracing::warn!(error = %err, "32-bit connects, sends and raw sockets are not seen"),
        }
    }
    Ok(attached)
}

/// The stack walk (`python_stack`, then `python_frame` per frame): verified now, never
/// attached, put where the syscall entries tail-call it. Without it they go on without stacks.
fn load_stack_walk(ebpf: &mut aya::Ebpf) -> Result<(), StartError> {
    let mut fds = Vec::new();
    for program in STACK_WALK {
        let walk: &mut TracePoint = program_mut(ebpf, program)?.try_into().map_err(refused(program))?;
        walk.load().map_err(refused(program))?;
        fds.push(
            walk.fd().map_err(refused(program))?.try_clone().map_err(|e| StartError::Load(e.to_string()))?,
        );
    }
    let map = ebpf
        .map_mut(STACK_PROGRAMS)
        .ok_or_else(|| StartError::Load(format!("map {STACK_PROGRAMS} missing from the object")))?;
    let mut programs = ProgramArray::try_from(map).map_err(|e| StartError::Load(e.to_string()))?;
    for (slot, fd) in fds.iter().enumerate() {
        programs.set(slot as u32, fd, 0).map_err(|e| StartError::Load(e.to_string()))?;
    }
    Ok(())
}

/// The stack walk's programs, in their `STACK_PROGRAMS` slots.
pub(crate) const STACK_WALK: [&str; 2] = ["python_stack", "python_frame"];

fn attach_sock(ebpf: &mut aya::Ebpf) -> Result<usize, StartError> {
    let root = crate::process::procfs::cgroup2_mount()
        .ok_or_else(|| StartError::Load("no cgroup v2 hierarchy is mounted".into()))?;
    for &program in SOCK {
        let sock: &mut CgroupSockAddr = program_mut(ebpf, program)?.try_into().map_err(refused(program))?;
        sock.load().map_err(refused(program))?;
        let cgroup = std::fs::File::open(root)
            .map_err(|err| StartError::Load(format!("{}: {err}", root.display())))?;
        sock.attach(cgroup, CgroupAttachMode::Single).map_err(refused(program))?;
        tracing::debug!(program, cgroup = %root.display(), "attached");
    }
    let program = SOCK_CREATE;
    let create: &mut CgroupSock = program_mut(ebpf, program)?.try_into().map_err(refused(program))?;
    create.load().map_err(refused(program))?;
    let cgroup =
        std::fs::File::open(root).map_err(|err| StartError::Load(format!("{}: {err}", root.display())))?;
    create.attach(cgroup, CgroupAttachMode::Single).map_err(refused(program))?;
    tracing::debug!(program, cgroup = %root.display(), "attached");
    Ok(SOCK.len() + 1)
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
