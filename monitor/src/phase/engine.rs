//! The phase engine: applies the events of tracked processes to their phase state (kept in the
//! process table, [`ProcessPhase`]) and says in which phase each action happened.

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    Basis, Context, Culprit, CulpritKind, Origin, Phase, PlantedFrame,
    loaded::Source,
    party::{self, Party},
    planted::{Entered, StackFrame},
    state::{Frame, Main, ProcessPhase, Thread},
};
use crate::{
    kernel::decode::Mark,
    process::{
        event::{Action, Event, ProcessInfo},
        table::{IdMap, Lineage, ProcessTable, Resolution},
    },
};

/// Decides whether a process is a build hook run by an installer, from what the process looks
/// like and what its ancestors ran.
pub(crate) type InstallDetector =
    Box<dyn FnMut(u32, &ProcessInfo, &dyn Fn(u32) -> Option<Lineage>) -> Option<Culprit>>;

/// Frames deeper than this are not recorded (a runaway recursion of `exec`); their returns
/// are matched by a counter so the stack stays aligned.
const MAX_FRAMES: usize = 256;

pub(crate) struct PhaseEngine {
    detect_install: InstallDetector,
    quiet: bool,
    /// `(pid, running_main_seen)` at each `cpython.run_*` audit marker.
    main_checks: Vec<(u32, bool)>,
}

impl PhaseEngine {
    pub(crate) fn new(detect_install: InstallDetector) -> Self {
        Self { detect_install, quiet: false, main_checks: Vec::new() }
    }

    /// Lets [`Self::quiet_updates`] declare processes whose code is all runtime quiet, so the
    /// kernel stops recording their opens, connects and sends (nothing they do can alert).
    pub(crate) fn with_quiet(mut self, on: bool) -> Self {
        self.quiet = on;
        self
    }

    /// The phase thread `tid` of `pid` is in now (after the events applied so far).
    pub(crate) fn context_of(&self, table: &ProcessTable, pid: u32, tid: u32) -> Context {
        context(table, pid, tid)
    }

    /// Whose code acted in `context`, which [`Self::observe`] just returned for `event`.
    pub(crate) fn party(&self, table: &ProcessTable, event: &Event, context: &Context) -> Party {
        party_of(table, event.header.pid, event.header.tid, context)
    }

    /// Applies `event` (whose process the tracker has in `table`) and returns the phase of the
    /// acting thread as it was when it acted.
    pub(crate) fn observe(&mut self, table: &mut ProcessTable, event: &Event) -> Context {
        let (pid, tid) = (event.header.pid, event.header.tid);
        if !matches!(event.action, Action::Image { .. }) && table.get(pid).is_some_and(|p| !p.phase.started) {
            // Found running at start-up, or adopted after its records were lost.
            self.start(table, pid, &event.process, None);
        }
        let acting = deferred(table, event, context(table, pid, tid));
        match &event.action {
            Action::Image { .. } => {
                // The tracker carried the state of what the process ran before over to its new
                // image: a pending process keeps the taint it was created with.
                let inherited = table.get(pid).and_then(|p| p.phase.taint.clone());
                self.start(table, pid, &event.process, inherited);
                renewed(table, pid, event.header.ktime_ns);
                return context(table, pid, tid);
            }
            Action::Exec { image: Some(image), .. } => {
                let taint = pass_on(table, pid, tid, &acting);
                self.start(table, pid, image, taint);
                renewed(table, pid, event.header.ktime_ns);
            }
            Action::Fork { child_pid, child_tid, thread } => {
                fork(table, pid, tid, *child_pid, *child_tid, *thread, &acting);
                if !*thread {
                    renewed(table, *child_pid, event.header.ktime_ns);
                }
            }
            Action::Exit { .. } => {}
            Action::Marker(mark) => {
                self.mark(table, pid, tid, mark);
                if matches!(mark, Mark::EvalEnter { .. }) {
                    renewed(table, pid, event.header.ktime_ns);
                }
            }
            Action::Open { path, result, resolution, flags, .. } => {
                if let Some(process) = table.get_mut(pid) {
                    let p = &mut process.phase;
                    if *result >= 0 && path.extension() == Some(OsStr::new("pth")) {
                        p.last_pth = Some(path.clone());
                    }
                    // What the kernel opened for reading: maybe the code a module body runs next.
                    if p.probed && *result >= 0 && *resolution == Resolution::Kernel && reads_a_file(*flags) {
                        let thread = p.threads.entry(tid).or_default();
                        let depth = thread.depth();
                        thread.loads.opened(path, depth);
                    }
                    let script = p.script.as_deref() == Some(path.as_path())
                        || p.script_real.as_deref() == Some(path.as_path());
                    if !p.probed && p.main.is_none() && script {
                        // Syscall-order fallback: the interpreter reads the script just
                        // before running it. Named as the command line names it, so that the
                        // script's own frame, if its probes are in place after all (a process
                        // resumed late), is taken for the main code it is.
                        let target = main_of(&process.argv).1;
                        p.main = Some(Main { how: "file".into(), target, tid });
                        p.main_by_fallback = true;
                    }
                }
            }
            Action::Connect { .. }
            | Action::Send { .. }
            | Action::Exec { image: None, .. }
            | Action::Memory { .. }
            | Action::Socket { .. }
            | Action::Name { .. }
            | Action::Uring { .. } => {}
        }
        acting
    }

    /// For each `cpython.run_*` audit marker read since the last call: the process, and whether
    /// `_PyInterpreterState_SetRunningMain` had marked the same moment first.
    pub(crate) fn take_main_checks(&mut self) -> Vec<(u32, bool)> {
        std::mem::take(&mut self.main_checks)
    }

    /// After [`Self::observe`] of `event`: the quiet declarations to make, as
    /// `apply(pid, generation)`. (Declarations of processes that leave the table are withdrawn
    /// by the tracker.)
    ///
    /// A declaration is safe however late it arrives: it names the generation it was made
    /// for, and the kernel renews a process's generation before any change that could make
    /// its actions matter again (exec, fork, entry of a code object), so a stale declaration
    /// never matches.
    pub(crate) fn quiet_updates(
        &mut self,
        table: &mut ProcessTable,
        event: &Event,
        mut apply: impl FnMut(u32, u64),
    ) {
        // Only these change a phase or a generation (opens change only the syscall-order
        // fallback's main, and unprobed interpreters are never quiet): every other record,
        // the bulk of them, costs nothing here.
        let can_change = matches!(
            event.action,
            Action::Image { .. }
                | Action::Exec { image: Some(_), .. }
                | Action::Fork { .. }
                | Action::Marker(_)
        );
        if !self.quiet || !can_change {
            return;
        }
        let child = match event.action {
            Action::Fork { child_pid, thread: false, .. } => Some(child_pid),
            _ => None,
        };
        for pid in std::iter::once(event.header.pid).chain(child) {
            let Some(generation) = quiet_generation(table, pid) else { continue };
            let Some(p) = table.get_mut(pid).map(|p| &mut p.phase) else { continue };
            if p.declared_quiet != Some(generation) {
                p.declared_quiet = Some(generation);
                apply(pid, generation);
            }
        }
    }

    fn start(&mut self, table: &mut ProcessTable, pid: u32, info: &ProcessInfo, taint: Option<Arc<Origin>>) {
        let install = if info.python.is_some() {
            let lineage = |p: u32| {
                table.get(p).map(|x| Lineage {
                    ppid: x.ppid,
                    exe: x.exe.clone(),
                    argv: x.argv.clone(),
                    argv_truncated: false,
                })
            };
            (self.detect_install)(pid, info, &lineage)
        } else {
            None
        };
        let Some(process) = table.get_mut(pid) else { return };
        let script = script_of(&info.argv, info.cwd.as_deref());
        process.phase = ProcessPhase {
            started: true,
            interpreter: info.python.is_some(),
            probed: info.probed,
            runtime_only: info.preexisting,
            script_real: script.as_deref().and_then(|s| std::fs::canonicalize(s).ok()),
            script,
            install,
            taint,
            ..ProcessPhase::default()
        };
    }

    fn mark(&mut self, table: &mut ProcessTable, pid: u32, tid: u32, mark: &Mark) {
        let Some(process) = table.get_mut(pid) else { return };
        let argv = &process.argv;
        let p = &mut process.phase;
        match mark {
            Mark::Main { how, target } => {
                // The interpreter's own word beats the syscall-order guess.
                if p.main.is_none() || p.main_by_fallback {
                    p.main = Some(Main { how: how.clone(), target: target.clone(), tid });
                    p.main_by_fallback = false;
                }
                self.main_checks.push((pid, p.running_main_seen));
            }
            Mark::RunningMain => {
                if p.main.is_none() {
                    let (how, target) = main_of(argv);
                    p.main = Some(Main { how: how.to_owned(), target, tid });
                }
                p.running_main_seen = true;
            }
            Mark::EvalEnter { filename, globals } => {
                let file = filename.as_deref().map(|f| PathBuf::from(OsStr::from_bytes(f)));
                let thread = p.threads.entry(tid).or_default();
                if thread.frames.len() >= MAX_FRAMES {
                    thread.unrecorded += 1;
                    return;
                }
                let top = !p.main_frame_seen && thread.frames.is_empty();
                let main_how = p.main.as_ref().filter(|m| top && m.tid == tid).map(|m| (m, m.how.as_str()));
                // A file name that could not be read (not a compact `str`): such a frame is still
                // a module body (else module-level code would pass for runtime code), unless it
                // is the user's code: right after the marker, a script, command or stdin is the
                // first frame; a `-m` run's first frames may be its package or its main module,
                // which only the name could tell apart.
                let main = main_how
                    .is_some_and(|(m, how)| file.as_deref().map_or(how != "module", |f| is_main_code(m, f)));
                let module = match &file {
                    None => !main && main_how.is_none_or(|(_, how)| how != "module"),
                    Some(file) => is_module_body(file),
                };
                p.main_frame_seen |= main;
                // The user's main code is not checked: only a module body's file names a
                // culprit. `<string>` and `<frozen os>` name no file.
                let checked = module
                    && !main
                    && file.as_deref().is_none_or(|f| !f.as_os_str().as_bytes().starts_with(b"<"));
                let depth = thread.depth();
                let source =
                    if checked { thread.loads.take(depth, file.as_deref()) } else { Source::Claimed };
                thread.frames.push(Frame { claim: file, source, main, module, globals: *globals });
                plant(p, tid);
            }
            Mark::EvalExit => {
                if let Some(thread) = p.threads.get_mut(&tid) {
                    if thread.unrecorded > 0 {
                        thread.unrecorded -= 1;
                    } else {
                        thread.frames.pop();
                    }
                    let depth = thread.depth();
                    thread.loads.returned_to(depth);
                }
            }
        }
    }
}

/// The phase of an action whose stack holds a frame of code a start-up hook planted, when it
/// would be `runtime` (or the application's own import-time code): the hook's `startup`, with
/// that frame named. Else `acting`, the phase of the acting thread.
fn deferred(table: &ProcessTable, event: &Event, acting: Context) -> Context {
    let Some(stack) = event.stack.as_deref() else { return acting };
    let (pid, tid) = (event.header.pid, event.header.tid);
    let Some(p) = table.get(pid).map(|p| &p.phase) else { return acting };
    // A descendant's stack is its Python ancestor's, whose memory the addresses are of.
    if !p.planted.hooked() || stack.inherited_from.is_some() || acting.inherited_from.is_some() {
        return acting;
    }
    let pertinent = match acting.phase {
        Phase::Runtime => true,
        Phase::Import => party_of(table, pid, tid, &acting).is_own(),
        Phase::Install | Phase::Startup => false,
    };
    if !pertinent || matches!(event.action, Action::Marker(_) | Action::Exit { .. } | Action::Image { .. }) {
        return acting;
    }
    let frames = stack.frames.iter().map(|f| StackFrame {
        globals: f.globals,
        file: f.file.as_bytes(),
        function: &f.function,
    });
    let Some(found) = p.planted.find(frames, read_pth) else { return acting };
    let frame = &stack.frames[found.index];
    let planted =
        PlantedFrame { function: frame.function.clone(), file: frame.file.clone(), line: frame.line };
    Context {
        phase: Phase::Startup,
        culprit: Culprit { planted: Some(planted), ..found.culprit },
        inherited_from: None,
        basis: Basis::Probes,
    }
}

/// The text of a `.pth` file, to tell which of several hooks defined a function (a `.pth`
/// is a few lines; a longer one is read in part).
fn read_pth(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut text = Vec::new();
    std::fs::File::open(path).ok()?.take(64 * 1024).read_to_end(&mut text).ok()?;
    Some(text)
}

/// Tells the planted code of `p` of the code object thread `tid` just entered, when a start-up
/// hook runs it: during start-up, or on a thread a hook started.
fn plant(p: &mut ProcessPhase, tid: u32) {
    let Some(thread) = p.threads.get(&tid) else { return };
    let Some((new, outer)) = thread.frames.split_last() else { return };
    let hook = |c: &Culprit| {
        matches!(c.kind, CulpritKind::Pth | CulpritKind::Sitecustomize | CulpritKind::Usercustomize)
    };
    let culprit = match &thread.taint {
        Some(origin) if origin.phase == Phase::Startup && hook(&origin.culprit) => origin.culprit.clone(),
        _ if p.main.is_none() && p.taint.is_none() => startup_culprit(&thread.frames, p.last_pth.as_deref()),
        _ => return,
    };
    let outer: Vec<(u64, Option<&Path>)> =
        outer.iter().rev().map(|f| (f.globals, f.claim.as_deref())).collect();
    let entered =
        Entered { globals: new.globals, claim: new.claim.as_deref(), file: new.file(), module: new.module };
    p.planted.entered(&entered, &culprit, &outer);
}

/// The kernel renewed the generation of `pid` with the record read at `ktime_ns`.
fn renewed(table: &mut ProcessTable, pid: u32, ktime_ns: u64) {
    if let Some(p) = table.get_mut(pid).map(|p| &mut p.phase) {
        p.generation = Some(ktime_ns);
        p.declared_quiet = None;
    }
}

/// The generation at which everything `pid` does is runtime: every thread it is known to
/// have, and any new one, would act in `runtime`.
fn quiet_generation(table: &ProcessTable, pid: u32) -> Option<u64> {
    let p = &table.get(pid)?.phase;
    let generation = p.generation?;
    // Without probes, module-level code at run time cannot be told apart; code start-up hooks
    // ran may run again, and its actions must reach the engine with their stacks.
    if p.interpreter && (!p.probed || p.planted.hooked()) {
        return None;
    }
    let runtime = |tid: u32| context(table, pid, tid).phase == Phase::Runtime;
    // Thread id 0 stands for a thread without a recorded stack or taint of its own.
    (runtime(0) && p.threads.keys().all(|tid| runtime(*tid))).then_some(generation)
}

/// What a creator in `context` passes on to a thread, child or new image: its origin
/// when in a pre-main phase.
fn pass_on(table: &ProcessTable, pid: u32, tid: u32, context: &Context) -> Option<Arc<Origin>> {
    if context.phase == Phase::Runtime {
        return None;
    }
    if let Some(origin) = &context.inherited_from {
        return Some(origin.clone());
    }
    let p = table.get(pid);
    Some(Arc::new(Origin {
        pid,
        tid,
        exe: p.and_then(|p| p.exe.clone()),
        argv: p.map(|p| p.argv.clone()).unwrap_or_default(),
        phase: context.phase,
        culprit: Culprit { party: Some(party_of(table, pid, tid, context)), ..context.culprit.clone() },
    }))
}

fn fork(
    table: &mut ProcessTable,
    pid: u32,
    tid: u32,
    child_pid: u32,
    child_tid: u32,
    thread: bool,
    context: &Context,
) {
    let taint = pass_on(table, pid, tid, context);
    let Some(parent) = table.get_mut(pid).map(|p| &mut p.phase) else { return };
    if thread {
        parent.threads.insert(child_tid, Thread { taint, ..Thread::default() });
        return;
    }
    // The child continues the parent's interpreter from inside the creating thread.
    let inside = parent.threads.get(&tid).cloned().unwrap_or_default();
    let mut child = ProcessPhase {
        threads: IdMap::default(),
        taint,
        generation: None,
        declared_quiet: None,
        ..parent.clone()
    };
    if let Some(main) = &mut child.main {
        main.tid = child_tid;
    }
    child.threads.insert(child_tid, Thread { taint: None, ..inside });
    if let Some(process) = table.get_mut(child_pid) {
        process.phase = child;
    }
}

fn context(table: &ProcessTable, pid: u32, tid: u32) -> Context {
    let Some(p) = table.get(pid).map(|p| &p.phase) else { return Context::runtime() };
    let thread = p.threads.get(&tid);
    if let Some(origin) = p.taint.as_ref().or_else(|| thread.and_then(|t| t.taint.as_ref())) {
        return Context {
            phase: origin.phase,
            culprit: origin.culprit.clone(),
            inherited_from: Some(origin.clone()),
            basis: if p.probed || !p.interpreter { Basis::Probes } else { Basis::SyscallOrder },
        };
    }
    if let Some(culprit) = &p.install {
        return Context {
            phase: Phase::Install,
            culprit: culprit.clone(),
            inherited_from: None,
            basis: Basis::Lineage,
        };
    }
    if !p.interpreter || p.runtime_only {
        return Context::runtime();
    }
    let basis = if p.probed { Basis::Probes } else { Basis::SyscallOrder };
    let frames = thread.map(|t| t.frames.as_slice()).unwrap_or(&[]);
    if p.main.is_none() {
        return Context {
            phase: Phase::Startup,
            culprit: startup_culprit(frames, p.last_pth.as_deref()),
            inherited_from: None,
            basis,
        };
    }
    let mut modules = above_main(frames).iter().filter(|f| f.module);
    let Some(outer) = modules.next() else {
        return Context { basis, ..Context::runtime() };
    };
    let inner = modules.next_back().unwrap_or(outer);
    Context {
        phase: Phase::Import,
        culprit: Culprit {
            kind: CulpritKind::Module,
            path: inner.file().map(Path::to_path_buf),
            ..modules_of(inner, outer)
        },
        inherited_from: None,
        basis,
    }
}

/// The frames entered by the user's main code. A `__main__.py` only ever runs as main code
/// (`-m`, `runpy.run_module` in launchers such as pip's `__pip-runner__.py`): what it calls is
/// not import-time code.
fn above_main(frames: &[Frame]) -> &[Frame] {
    match frames.iter().rposition(|f| f.main || module_file_is(f.file(), "__main__")) {
        Some(i) => &frames[i + 1..],
        None => frames,
    }
}

/// Whose code acted in `context`, the context of thread `tid` of `pid` now: for module-level
/// code, every module body running decides (see [`party`]).
fn party_of(table: &ProcessTable, pid: u32, tid: u32, context: &Context) -> Party {
    if let Some(origin) = &context.inherited_from {
        return origin.culprit.party.unwrap_or_else(|| party::of_culprit(&origin.culprit));
    }
    match context.phase {
        Phase::Import => {
            let frames = table
                .get(pid)
                .and_then(|p| p.phase.threads.get(&tid))
                .map(|t| t.frames.as_slice())
                .unwrap_or(&[]);
            party::of_module_bodies(above_main(frames))
        }
        Phase::Runtime => Party::Unknown,
        Phase::Install | Phase::Startup => party::of_culprit(&context.culprit),
    }
}

/// `<string>` (an `exec` of source text), `<stdin>` and the like are not modules; frozen
/// modules (`<frozen os>`) are.
fn is_module_body(file: &Path) -> bool {
    let bytes = file.as_os_str().as_bytes();
    !bytes.is_empty() && (!bytes.starts_with(b"<") || bytes.starts_with(b"<frozen "))
}

/// The module files of a culprit whose innermost and outermost module bodies are `inner`
/// and `outer`.
fn modules_of(inner: &Frame, outer: &Frame) -> Culprit {
    Culprit {
        module_file: inner.file().map(Path::to_path_buf),
        outer_module_file: outer.file().map(Path::to_path_buf),
        filename_unreadable: inner.claim.is_none(),
        claimed_file: inner.false_claim().map(Path::to_path_buf),
        outer_claimed_file: (!std::ptr::eq(inner, outer))
            .then(|| outer.false_claim().map(Path::to_path_buf))
            .flatten(),
        ..Culprit::default()
    }
}

/// Whether `file` is module `stem`'s source or its sourceless bytecode.
fn module_file_is(file: Option<&Path>, stem: &str) -> bool {
    file.is_some_and(|f| {
        f.file_stem() == Some(OsStr::new(stem))
            && matches!(f.extension().and_then(OsStr::to_str), Some("py" | "pyc"))
    })
}

/// An open for reading only, and not of a directory.
fn reads_a_file(flags: u32) -> bool {
    const O_ACCMODE: u32 = 3;
    const O_DIRECTORY: u32 = 0o200_000;
    flags & O_ACCMODE == 0 && flags & O_DIRECTORY == 0
}

fn startup_culprit(frames: &[Frame], last_pth: Option<&Path>) -> Culprit {
    // The module bodies from frame `i` up.
    let modules_above = |i: usize| {
        let mut above = frames[i..].iter().filter(|f| f.module);
        let outer = above.next()?;
        Some(modules_of(above.next_back().unwrap_or(outer), outer))
    };
    for (i, f) in frames.iter().enumerate() {
        for (name, kind) in
            [("sitecustomize", CulpritKind::Sitecustomize), ("usercustomize", CulpritKind::Usercustomize)]
        {
            if module_file_is(f.file(), name) {
                let path = f.file().map(Path::to_path_buf);
                return Culprit { kind, path, ..modules_above(i).unwrap_or_default() };
            }
        }
    }
    // `site` runs a `.pth` line with `exec(line)`: a `<string>` frame.
    let pth_line = frames.iter().position(|f| f.claim.as_deref() == Some(Path::new("<string>")));
    if let (Some(i), Some(pth)) = (pth_line, last_pth) {
        return Culprit {
            kind: CulpritKind::Pth,
            path: Some(pth.to_path_buf()),
            ..modules_above(i).unwrap_or_default()
        };
    }
    match modules_above(0) {
        Some(modules) => Culprit { kind: CulpritKind::Module, path: modules.module_file.clone(), ..modules },
        None => Culprit::default(),
    }
}

/// Whether a module body entered at depth 0 right after the main marker is the user's code.
fn is_main_code(main: &Main, file: &Path) -> bool {
    let bytes = file.as_os_str().as_bytes();
    match main.how.as_str() {
        // No command line to go by: the first frame at the top after the marker.
        "unknown" => true,
        "command" => bytes == b"<string>",
        "stdin" => bytes == b"<stdin>",
        "file" => {
            bytes == main.target.as_slice()
                || (!main.target.is_empty()
                    && file.file_name() == Path::new(OsStr::from_bytes(&main.target)).file_name())
        }
        "module" => {
            let target = String::from_utf8_lossy(&main.target).replace('.', "/");
            let text = file.to_string_lossy();
            text.ends_with(&format!("/{target}.py"))
                || text.ends_with(&format!("/{target}/__main__.py"))
                || (target == "__main__" && text.ends_with("__main__.py"))
        }
        _ => false,
    }
}

/// The script of `python [options] script.py ...`, made absolute.
fn script_of(argv: &[Vec<u8>], cwd: Option<&Path>) -> Option<PathBuf> {
    let ("file", script) = main_of(argv) else { return None };
    let path = Path::new(OsStr::from_bytes(&script));
    Some(match cwd {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    })
}

/// What a CPython command line runs, as the `cpython.run_*` audit event would name it:
/// `command` (`-c`), `module` (`-m`), `file` or `stdin`, and its argument; `unknown` without
/// an argv.
fn main_of(argv: &[Vec<u8>]) -> (&'static str, Vec<u8>) {
    if argv.is_empty() {
        return ("unknown", Vec::new());
    }
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_slice() {
            b"-" => return ("stdin", Vec::new()),
            b"--check-hash-based-pycs" => {
                args.next();
            }
            a if a.starts_with(b"--") => {}
            [b'-', flags @ ..] => {
                // A cluster of one-letter options (`-Bc`, `-Wd`, `-Im`): the first that takes
                // a value takes the rest of the cluster, or else the next argument.
                for (i, flag) in flags.iter().enumerate() {
                    if matches!(flag, b'c' | b'm' | b'W' | b'X') {
                        let rest = &flags[i + 1..];
                        let value = if rest.is_empty() {
                            args.next().cloned().unwrap_or_default()
                        } else {
                            rest.to_vec()
                        };
                        match flag {
                            b'c' => return ("command", value),
                            b'm' => return ("module", value),
                            _ => break,
                        }
                    }
                }
            }
            script => return ("file", script.to_vec()),
        }
    }
    ("stdin", Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::decode::Header;

    fn info(python: bool) -> ProcessInfo {
        ProcessInfo {
            ppid: 1,
            exe: Some("/usr/bin/python3".into()),
            argv: vec![b"python3".to_vec(), b"app.py".to_vec()],
            python: python.then(|| "3.12".to_owned()),
            probed: true,
            cwd: Some("/srv".into()),
            ..ProcessInfo::default()
        }
    }

    fn ev(pid: u32, tid: u32, action: Action) -> Event {
        let header = Header {
            ktime_ns: 0,
            cgroup_id: 0,
            start_ns: 0,
            pid,
            tid,
            ppid: 1,
            uid: 0,
            gid: 0,
            flags: 0,
            comm: Vec::new(),
        };
        Event { header, process: info(true), action, stack: None }
    }

    /// The engine with the process table as the tracker keeps it: the tracker has a process in
    /// the table before the engine sees its events, carries its phase over an exec, adds forked
    /// children, and removes a process after its exit (withdrawing a quiet declaration).
    struct Engine {
        engine: PhaseEngine,
        table: ProcessTable,
        withdrawn: Vec<u32>,
    }

    impl Engine {
        fn with_quiet(mut self, on: bool) -> Self {
            self.engine = self.engine.with_quiet(on);
            self
        }

        fn observe(&mut self, event: &Event) -> Context {
            let pid = event.header.pid;
            let entry = |info: &ProcessInfo, phase| crate::process::table::Process {
                pid,
                ppid: info.ppid,
                exe: info.exe.clone(),
                argv: info.argv.clone(),
                cwd: info.cwd.clone(),
                phase,
                ..Default::default()
            };
            match &event.action {
                Action::Image { .. } => {
                    let phase = self.table.remove(pid).map(|p| p.phase).unwrap_or_default();
                    self.table.insert(entry(&event.process, phase));
                }
                Action::Exec { image: Some(image), .. } => {
                    let phase = self.table.remove(pid).map(|p| p.phase).unwrap_or_default();
                    self.table.insert(entry(image, phase));
                }
                _ if self.table.get(pid).is_none() => {
                    self.table.insert(entry(&event.process, ProcessPhase::default()));
                }
                _ => {}
            }
            if let Action::Fork { child_pid, thread: false, .. } = event.action {
                let child = self.table.get(pid).map(|p| p.child(child_pid, 0, p.tracking));
                self.table.insert(child.expect("parent in the table"));
            }
            let context = self.engine.observe(&mut self.table, event);
            if matches!(event.action, Action::Exit { .. })
                && self.table.remove(pid).is_some_and(|p| p.phase.declared_quiet().is_some())
            {
                self.withdrawn.push(pid);
            }
            context
        }

        fn quiet_updates(&mut self, event: &Event, mut apply: impl FnMut(u32, Option<u64>)) {
            for pid in self.withdrawn.drain(..) {
                apply(pid, None);
            }
            self.engine.quiet_updates(&mut self.table, event, |pid, generation| apply(pid, Some(generation)));
        }

        fn take_main_checks(&mut self) -> Vec<(u32, bool)> {
            self.engine.take_main_checks()
        }
    }

    fn engine() -> Engine {
        Engine {
            engine: PhaseEngine::new(Box::new(|_, _, _| None)),
            table: ProcessTable::new(1000),
            withdrawn: Vec::new(),
        }
    }

    fn image(e: &mut Engine, pid: u32) {
        e.observe(&ev(pid, pid, Action::Image { path: "/usr/bin/python3".into(), argv: Vec::new() }));
    }

    fn enter(e: &mut Engine, pid: u32, tid: u32, file: &str) {
        e.observe(&ev(
            pid,
            tid,
            Action::Marker(Mark::EvalEnter { filename: Some(file.as_bytes().to_vec()), globals: 0 }),
        ));
    }

    /// A module body the interpreter loaded from `file` (opened just before), as it does.
    fn load(e: &mut Engine, pid: u32, tid: u32, file: &str) {
        open(e, pid, tid, file);
        enter(e, pid, tid, file);
    }

    /// A code object whose `co_filename` could not be read.
    fn enter_unnamed(e: &mut Engine, pid: u32, tid: u32) {
        e.observe(&ev(pid, tid, Action::Marker(Mark::EvalEnter { filename: None, globals: 0 })));
    }

    fn exit(e: &mut Engine, pid: u32, tid: u32) {
        e.observe(&ev(pid, tid, Action::Marker(Mark::EvalExit)));
    }

    fn main(e: &mut Engine, pid: u32, how: &str, target: &str) {
        let mark = Mark::Main { how: how.into(), target: target.as_bytes().to_vec() };
        e.observe(&ev(pid, pid, Action::Marker(mark)));
    }

    fn open(e: &mut Engine, pid: u32, tid: u32, path: &str) -> Context {
        let action = Action::Open {
            path: path.into(),
            requested: None,
            resolution: Resolution::Kernel,
            dirfd: -100,
            flags: 0,
            mode: 0,
            result: 3,
            syscall: monitor_common::SYSCALL_OPENAT,
            file: None,
            alias_of: None,
        };
        e.observe(&ev(pid, tid, action))
    }

    fn fork(e: &mut Engine, pid: u32, tid: u32, child: u32, thread: bool) {
        e.observe(&ev(pid, tid, Action::Fork { child_pid: child, child_tid: child, thread }));
    }

    /// Feeds `action` at time `t` and returns the quiet declarations it led to.
    fn step(e: &mut Engine, pid: u32, tid: u32, t: u64, action: Action) -> Vec<(u32, Option<u64>)> {
        let mut event = ev(pid, tid, action);
        event.header.ktime_ns = t;
        e.observe(&event);
        let mut out = Vec::new();
        e.quiet_updates(&event, |pid, generation| out.push((pid, generation)));
        out
    }

    fn enter_at(e: &mut Engine, pid: u32, tid: u32, t: u64, file: &str) -> Vec<(u32, Option<u64>)> {
        step(
            e,
            pid,
            tid,
            t,
            Action::Marker(Mark::EvalEnter { filename: Some(file.as_bytes().to_vec()), globals: 0 }),
        )
    }

    fn quiet_engine() -> Engine {
        engine().with_quiet(true)
    }

    fn image_at(e: &mut Engine, pid: u32, t: u64) -> Vec<(u32, Option<u64>)> {
        step(e, pid, pid, t, Action::Image { path: "/usr/bin/python3".into(), argv: Vec::new() })
    }

    #[test]
    fn quiet_is_declared_once_main_runs_and_renewed_after_each_import() {
        let mut e = quiet_engine();
        assert_eq!(image_at(&mut e, 10, 1), [], "start-up is never quiet");
        assert_eq!(enter_at(&mut e, 10, 10, 2, "/usr/lib/python3.12/site.py"), []);
        assert_eq!(step(&mut e, 10, 10, 3, Action::Marker(Mark::EvalExit)), []);
        let main_mark = Mark::Main { how: "file".into(), target: b"app.py".to_vec() };
        // The last generation the kernel gave is the site module's entry.
        assert_eq!(step(&mut e, 10, 10, 4, Action::Marker(main_mark)), [(10, Some(2))]);
        assert_eq!(enter_at(&mut e, 10, 10, 5, "app.py"), [(10, Some(5))], "the main code is runtime");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
        // A module body at run time: not quiet until it returns.
        assert_eq!(enter_at(&mut e, 10, 10, 6, "/venv/site-packages/pkg/__init__.py"), []);
        assert_eq!(step(&mut e, 10, 10, 7, Action::Marker(Mark::EvalExit)), [(10, Some(6))]);
        // Nothing new to declare.
        assert_eq!(step(&mut e, 10, 10, 8, Action::Marker(Mark::EvalExit)), []);
        // Exit withdraws the declaration.
        assert_eq!(step(&mut e, 10, 10, 9, Action::Exit { status: 0 }), [(10, None)]);
    }

    #[test]
    fn a_thread_started_by_module_code_keeps_its_process_recorded() {
        let mut e = quiet_engine();
        image_at(&mut e, 10, 1);
        main(&mut e, 10, "file", "app.py");
        enter_at(&mut e, 10, 10, 2, "app.py");
        assert_eq!(enter_at(&mut e, 10, 10, 3, "/venv/site-packages/evil.py"), []);
        let spawn = Action::Fork { child_pid: 10, child_tid: 11, thread: true };
        assert_eq!(step(&mut e, 10, 10, 4, spawn), []);
        // The module body returned, but its thread still acts for it.
        assert_eq!(step(&mut e, 10, 10, 5, Action::Marker(Mark::EvalExit)), []);
        assert_eq!(open(&mut e, 10, 11, "/x").phase, Phase::Import);
    }

    #[test]
    fn children_forked_by_runtime_code_are_quiet_from_their_own_generation() {
        let mut e = quiet_engine();
        image_at(&mut e, 10, 1);
        main(&mut e, 10, "command", "");
        assert_eq!(enter_at(&mut e, 10, 10, 2, "<string>"), [(10, Some(2))]);
        let child = Action::Fork { child_pid: 20, child_tid: 20, thread: false };
        assert_eq!(step(&mut e, 10, 10, 3, child), [(20, Some(3))]);
        // A child forked during start-up is not.
        image_at(&mut e, 30, 4);
        let child = Action::Fork { child_pid: 31, child_tid: 31, thread: false };
        assert_eq!(step(&mut e, 30, 30, 5, child), []);
    }

    #[test]
    fn unprobed_interpreters_and_disabled_quiet_never_declare() {
        let mut e = quiet_engine();
        let mut event = ev(10, 10, Action::Image { path: "/usr/bin/python3".into(), argv: Vec::new() });
        event.process.probed = false;
        event.header.ktime_ns = 1;
        e.observe(&event);
        main(&mut e, 10, "file", "app.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
        let mut out = Vec::new();
        e.quiet_updates(&ev(10, 10, Action::Marker(Mark::EvalExit)), |p, g| out.push((p, g)));
        assert_eq!(out, []);

        let mut e = engine();
        image_at(&mut e, 10, 1);
        main(&mut e, 10, "command", "");
        assert_eq!(enter_at(&mut e, 10, 10, 2, "<string>"), []);
    }

    /// The party of what thread `tid` of `pid` does now, as the pipeline asks for it.
    fn party_now(e: &mut Engine, pid: u32, tid: u32, path: &str) -> Party {
        let event = ev(pid, tid, Action::Exit { status: 0 });
        let context = open(e, pid, tid, path);
        e.engine.party(&e.table, &event, &context)
    }

    #[test]
    fn module_level_code_is_the_applications_only_when_every_module_body_is() {
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "file", "/srv/app/manage.py");
        enter(&mut e, 10, 10, "/srv/app/manage.py");
        load(&mut e, 10, 10, "/srv/app/settings.py");
        assert_eq!(party_now(&mut e, 10, 10, "/srv/app/.env"), Party::Application);
        // settings.py imports a dependency whose body writes a module into the project and
        // imports it.
        load(&mut e, 10, 10, "/venv/lib/python3.12/site-packages/dep/__init__.py");
        assert_eq!(party_now(&mut e, 10, 10, "/x"), Party::ThirdParty);
        load(&mut e, 10, 10, "/srv/app/planted.py");
        assert_eq!(party_now(&mut e, 10, 10, "/x"), Party::ThirdParty);
        // What a thread or a child of the application's module-level code does is still its.
        exit(&mut e, 10, 10);
        exit(&mut e, 10, 10);
        fork(&mut e, 10, 10, 11, false);
        let inherited = open(&mut e, 11, 11, "/x");
        assert_eq!(inherited.phase, Phase::Import);
        assert_eq!(
            e.engine.party(&e.table, &ev(11, 11, Action::Exit { status: 0 }), &inherited),
            Party::Application
        );
    }

    #[test]
    fn pth_line_is_startup_with_the_pth_as_culprit() {
        let mut e = engine();
        image(&mut e, 10);
        enter(&mut e, 10, 10, "<frozen site>");
        open(&mut e, 10, 10, "/venv/site-packages/aaa.pth");
        enter(&mut e, 10, 10, "<string>");
        load(&mut e, 10, 10, "/venv/site-packages/evil.py");
        let c = open(&mut e, 10, 10, "/home/u/.aws/credentials");
        assert_eq!(c.phase, Phase::Startup);
        assert_eq!(c.culprit.kind, CulpritKind::Pth);
        assert_eq!(c.culprit.path.as_deref(), Some(Path::new("/venv/site-packages/aaa.pth")));
        assert_eq!(c.culprit.module_file.as_deref(), Some(Path::new("/venv/site-packages/evil.py")));
        assert!(c.inherited_from.is_none());
    }

    const SITE: u64 = 0x7f00_1000;
    const EVIL: u64 = 0x7f00_2000;
    const APP: u64 = 0x7f00_3000;

    fn enter_in(e: &mut Engine, pid: u32, tid: u32, file: &str, globals: u64) {
        let mark = Mark::EvalEnter { filename: Some(file.as_bytes().to_vec()), globals };
        e.observe(&ev(pid, tid, Action::Marker(mark)));
    }

    /// An open by thread `tid` of `pid` whose Python stack is `frames` (innermost first:
    /// function, file, globals).
    fn open_in(e: &mut Engine, pid: u32, tid: u32, path: &str, frames: &[(&str, &str, u64)]) -> Context {
        let action = Action::Open {
            path: path.into(),
            requested: None,
            resolution: Resolution::Kernel,
            dirfd: -100,
            flags: 0,
            mode: 0,
            result: 3,
            syscall: monitor_common::SYSCALL_OPENAT,
            file: None,
            alias_of: None,
        };
        let mut event = ev(pid, tid, action);
        event.stack = Some(Arc::new(stack(frames)));
        e.observe(&event)
    }

    fn stack(frames: &[(&str, &str, u64)]) -> crate::python::stack::PyStack {
        let frames = frames
            .iter()
            .enumerate()
            .map(|(i, (function, file, globals))| crate::python::stack::Frame {
                function: (*function).to_owned(),
                file: (*file).to_owned(),
                line: Some(i as u32 + 1),
                code: 0x1000 + i as u64,
                globals: *globals,
            })
            .collect();
        crate::python::stack::PyStack { frames, ..Default::default() }
    }

    /// A start-up whose `.pth` line imports `evil` (in a namespace of its own) and runs code
    /// in `site`'s namespace, then main.
    fn hooked(e: &mut Engine, pid: u32) {
        image(e, pid);
        enter_in(e, pid, pid, "/usr/lib/python3.12/encodings/__init__.py", 0x10);
        exit(e, pid, pid);
        enter_in(e, pid, pid, "<frozen site>", SITE);
        open(e, pid, pid, "/venv/site-packages/aaa_evil.pth");
        enter_in(e, pid, pid, "<string>", SITE);
        open(e, pid, pid, "/venv/site-packages/evil.py");
        enter_in(e, pid, pid, "/venv/site-packages/evil.py", EVIL);
        exit(e, pid, pid);
        exit(e, pid, pid);
        exit(e, pid, pid);
        main(e, pid, "file", "/srv/app.py");
        enter_in(e, pid, pid, "/srv/app.py", APP);
    }

    #[test]
    fn code_a_pth_line_planted_is_the_hooks_startup_when_it_acts_after_main() {
        let mut e = engine();
        hooked(&mut e, 10);
        // The application's own runtime code: runtime.
        let c = open_in(&mut e, 10, 10, "/x", &[("main", "/srv/app.py", APP)]);
        assert_eq!((c.phase, c.culprit.planted), (Phase::Runtime, None));
        // A patched json.loads of evil's, called by the application.
        let c = open_in(
            &mut e,
            10,
            10,
            "/home/u/.aws/credentials",
            &[("steal", "/venv/site-packages/evil.py", EVIL), ("<module>", "/srv/app.py", APP)],
        );
        assert_eq!((c.phase, c.culprit.kind), (Phase::Startup, CulpritKind::Pth));
        assert_eq!(c.culprit.path.as_deref(), Some(Path::new("/venv/site-packages/aaa_evil.pth")));
        assert_eq!(c.culprit.module_file.as_deref(), Some(Path::new("/venv/site-packages/evil.py")));
        let planted = c.culprit.planted.expect("the planted frame");
        assert_eq!(
            (planted.function.as_str(), planted.file.as_str(), planted.line),
            ("steal", "/venv/site-packages/evil.py", Some(1))
        );
        // An atexit lambda of the line itself, after main returned; site's own code is not it.
        exit(&mut e, 10, 10);
        let c = open_in(&mut e, 10, 10, "/x", &[("<lambda>", "<string>", SITE)]);
        assert_eq!(c.phase, Phase::Startup);
        assert_eq!(c.culprit.planted.map(|f| f.function), Some("<lambda>".to_owned()));
        let c = open_in(&mut e, 10, 10, "/x", &[("getsitepackages", "<frozen site>", SITE)]);
        assert_eq!(c.phase, Phase::Runtime);
        // A third party's module body: its own import alert, not the hook's.
        enter_in(&mut e, 10, 10, "/venv/site-packages/other.py", 0x99);
        let c = open_in(&mut e, 10, 10, "/x", &[("f", "/venv/site-packages/evil.py", EVIL)]);
        assert_eq!((c.phase, c.culprit.planted), (Phase::Import, None));
        exit(&mut e, 10, 10);
        // The application's own module body calling planted code: the hook's.
        open(&mut e, 10, 10, "/srv/settings.py");
        enter_in(&mut e, 10, 10, "/srv/settings.py", 0x98);
        let c = open_in(&mut e, 10, 10, "/x", &[("f", "/venv/site-packages/evil.py", EVIL)]);
        assert_eq!(c.phase, Phase::Startup);
    }

    #[test]
    fn what_planted_code_starts_after_main_keeps_the_hooks_phase() {
        let mut e = engine();
        hooked(&mut e, 10);
        let mut spawn = ev(10, 10, Action::Fork { child_pid: 10, child_tid: 11, thread: true });
        spawn.stack = Some(Arc::new(stack(&[("start", "/venv/site-packages/evil.py", EVIL)])));
        e.observe(&spawn);
        let c = open(&mut e, 10, 11, "/x");
        assert_eq!((c.phase, c.culprit.kind), (Phase::Startup, CulpritKind::Pth));
        let origin = c.inherited_from.expect("inherited");
        assert_eq!(origin.culprit.planted.as_ref().map(|f| f.function.as_str()), Some("start"));
        // A thread the application starts is runtime.
        fork(&mut e, 10, 10, 12, true);
        assert_eq!(open(&mut e, 10, 12, "/x").phase, Phase::Runtime);
    }

    #[test]
    fn a_process_whose_hooks_ran_code_stays_recorded_and_one_whose_did_not_is_quiet() {
        let mut e = quiet_engine();
        image_at(&mut e, 10, 1);
        step(
            &mut e,
            10,
            10,
            2,
            Action::Marker(Mark::EvalEnter { filename: Some(b"<frozen site>".to_vec()), globals: SITE }),
        );
        open(&mut e, 10, 10, "/venv/site-packages/distutils-precedence.pth");
        step(
            &mut e,
            10,
            10,
            3,
            Action::Marker(Mark::EvalEnter { filename: Some(b"<string>".to_vec()), globals: SITE }),
        );
        step(&mut e, 10, 10, 4, Action::Marker(Mark::EvalExit));
        step(&mut e, 10, 10, 5, Action::Marker(Mark::EvalExit));
        let main_mark = Mark::Main { how: "file".into(), target: b"app.py".to_vec() };
        assert_eq!(step(&mut e, 10, 10, 6, Action::Marker(main_mark.clone())), []);
        assert_eq!(enter_at(&mut e, 10, 10, 7, "app.py"), []);
        // Its forked child too (a copy of its memory, planted code included).
        assert_eq!(step(&mut e, 10, 10, 8, Action::Fork { child_pid: 20, child_tid: 20, thread: false }), []);
        // A `.pth` of paths only runs no code; Debian's sitecustomize is the interpreter's.
        image_at(&mut e, 30, 1);
        enter_at(&mut e, 30, 30, 2, "/usr/lib/python3.11/encodings/__init__.py");
        step(&mut e, 30, 30, 3, Action::Marker(Mark::EvalExit));
        enter_at(&mut e, 30, 30, 4, "<frozen site>");
        open(&mut e, 30, 30, "/venv/site-packages/paths.pth");
        load(&mut e, 30, 30, "/usr/lib/python3.11/sitecustomize.py");
        step(&mut e, 30, 30, 5, Action::Marker(Mark::EvalExit));
        step(&mut e, 30, 30, 6, Action::Marker(Mark::EvalExit));
        assert!(matches!(step(&mut e, 30, 30, 7, Action::Marker(main_mark))[..], [(30, Some(_))]));
    }

    #[test]
    fn frames_whose_file_name_was_not_read_still_count() {
        let mut e = engine();
        // A script importing a module, neither of whose names could be read: the script is
        // still main code and the module still an import, whose name is said to be unreadable.
        image(&mut e, 10);
        main(&mut e, 10, "file", "/srv/app.py");
        enter_unnamed(&mut e, 10, 10);
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
        enter_unnamed(&mut e, 10, 10);
        let c = open(&mut e, 10, 10, "/x");
        assert_eq!((c.phase, c.culprit.kind), (Phase::Import, CulpritKind::Module));
        assert_eq!((c.culprit.path, c.culprit.module_file), (None, None));
        assert!(c.culprit.filename_unreadable);
        // `-m`: an unnamed top-level frame may be the main module itself: not an import.
        image(&mut e, 11);
        main(&mut e, 11, "module", "app");
        enter_unnamed(&mut e, 11, 11);
        assert_eq!(open(&mut e, 11, 11, "/x").phase, Phase::Runtime);
        // Before main, unnamed frames are start-up modules.
        image(&mut e, 12);
        enter_unnamed(&mut e, 12, 12);
        let c = open(&mut e, 12, 12, "/x");
        assert_eq!((c.phase, c.culprit.kind), (Phase::Startup, CulpritKind::Module));
        assert!(c.culprit.filename_unreadable);
        // An empty name is a name: `compile(source, "", "exec")`, not a module body.
        image(&mut e, 13);
        main(&mut e, 13, "file", "/srv/app.py");
        enter(&mut e, 13, 13, "/srv/app.py");
        enter(&mut e, 13, 13, "");
        assert_eq!(open(&mut e, 13, 13, "/x").phase, Phase::Runtime);
    }

    #[test]
    fn a_module_is_the_file_the_interpreter_loaded_not_the_one_it_claims() {
        let site = "/venv/lib/python3.12/site-packages";
        let requests = format!("{site}/requests/__init__.py");
        let forged = format!("{site}/evilpkg/__init__.pyc");
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "file", "/srv/app.py");
        load(&mut e, 10, 10, "/srv/app.py");
        // The real `requests`, from its bytecode cache: what it claims.
        open(&mut e, 10, 10, &format!("{site}/requests/__pycache__/__init__.cpython-312.pyc"));
        enter(&mut e, 10, 10, &requests);
        let c = open(&mut e, 10, 10, "/x");
        assert_eq!(c.culprit.module_file.as_deref(), Some(Path::new(&requests)));
        assert_eq!(c.culprit.claimed_file, None);
        exit(&mut e, 10, 10);
        // A sourceless `.pyc` of another package compiled as `requests/__init__.py`.
        open(&mut e, 10, 10, &forged);
        enter(&mut e, 10, 10, &requests);
        let c = open(&mut e, 10, 10, "/home/u/.aws/credentials");
        assert_eq!((c.phase, c.culprit.kind), (Phase::Import, CulpritKind::Module));
        assert_eq!(c.culprit.path.as_deref(), Some(Path::new(&forged)));
        assert_eq!(c.culprit.module_file.as_deref(), Some(Path::new(&forged)));
        assert_eq!(c.culprit.claimed_file.as_deref(), Some(Path::new(&requests)));
        // Inside it, code compiled in memory with `requests`' name was loaded from no file:
        // only the body that ran it is named.
        enter(&mut e, 10, 10, &requests);
        let c = open(&mut e, 10, 10, "/x");
        assert_eq!((c.culprit.path, c.culprit.module_file), (None, None));
        assert_eq!(c.culprit.claimed_file.as_deref(), Some(Path::new(&requests)));
        assert_eq!(c.culprit.outer_module_file.as_deref(), Some(Path::new(&forged)));
        assert_eq!(c.culprit.outer_claimed_file.as_deref(), Some(Path::new(&requests)));
        // What a thread opened does not name another thread's module bodies.
        exit(&mut e, 10, 10);
        exit(&mut e, 10, 10);
        fork(&mut e, 10, 10, 11, true);
        open(&mut e, 10, 11, &format!("{site}/other.py"));
        enter(&mut e, 10, 10, &format!("{site}/other.py"));
        let c = open(&mut e, 10, 10, "/x");
        assert_eq!(c.culprit.module_file, None);
    }

    #[test]
    fn a_claimed_name_does_not_make_main_code_or_a_customize_module() {
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "file", "/srv/app.py");
        load(&mut e, 10, 10, "/srv/app.py");
        // A sourceless `.pyc` claiming to be a package's `__main__.py` is no launcher's main
        // module: its code is still module-level code.
        open(&mut e, 10, 10, "/site/evil/__init__.pyc");
        enter(&mut e, 10, 10, "/site/pkg/__main__.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Import);
        // A sourceless `sitecustomize.pyc` is a sitecustomize, named by the file that ran, and
        // an unreadable name by the file opened for it.
        image(&mut e, 20);
        open(&mut e, 20, 20, "/site/sitecustomize.pyc");
        enter(&mut e, 20, 20, "/build/sitecustomize.py");
        let c = open(&mut e, 20, 20, "/x");
        assert_eq!(c.culprit.kind, CulpritKind::Sitecustomize);
        assert_eq!(c.culprit.path.as_deref(), Some(Path::new("/site/sitecustomize.pyc")));
        assert_eq!(c.culprit.claimed_file.as_deref(), Some(Path::new("/build/sitecustomize.py")));
        open(&mut e, 20, 20, "/site/w.pyc");
        enter_unnamed(&mut e, 20, 20);
        let c = open(&mut e, 20, 20, "/x");
        assert_eq!(c.culprit.module_file.as_deref(), Some(Path::new("/site/w.pyc")));
        assert!(c.culprit.filename_unreadable && c.culprit.claimed_file.is_none());
    }

    #[test]
    fn sitecustomize_wins_over_an_earlier_pth() {
        let mut e = engine();
        image(&mut e, 10);
        open(&mut e, 10, 10, "/venv/site-packages/paths.pth");
        enter(&mut e, 10, 10, "<frozen site>");
        load(&mut e, 10, 10, "/venv/site-packages/sitecustomize.py");
        let c = open(&mut e, 10, 10, "/etc/shadow");
        assert_eq!((c.phase, c.culprit.kind), (Phase::Startup, CulpritKind::Sitecustomize));
    }

    #[test]
    fn main_script_is_runtime_and_its_imports_are_import() {
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "file", "app.py");
        enter(&mut e, 10, 10, "app.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
        load(&mut e, 10, 10, "/venv/site-packages/pkg/__init__.py");
        load(&mut e, 10, 10, "/venv/site-packages/pkg/sub.py");
        let c = open(&mut e, 10, 10, "/x");
        assert_eq!(c.phase, Phase::Import);
        assert_eq!(c.culprit.module_file.as_deref(), Some(Path::new("/venv/site-packages/pkg/sub.py")));
        assert_eq!(
            c.culprit.outer_module_file.as_deref(),
            Some(Path::new("/venv/site-packages/pkg/__init__.py"))
        );
        exit(&mut e, 10, 10);
        exit(&mut e, 10, 10);
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
        // exec() of text inside main code is not an import.
        enter(&mut e, 10, 10, "<string>");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
    }

    #[test]
    fn dash_m_package_init_is_import_and_main_module_is_runtime() {
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "module", "app");
        enter(&mut e, 10, 10, "/usr/lib/python3.12/runpy.py");
        exit(&mut e, 10, 10);
        enter(&mut e, 10, 10, "/srv/app/__init__.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Import);
        exit(&mut e, 10, 10);
        enter(&mut e, 10, 10, "/srv/app/__main__.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
    }

    #[test]
    fn a_launcher_running_a_main_module_is_not_an_import() {
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "file", "/x/pip/__pip-runner__.py");
        enter(&mut e, 10, 10, "/x/pip/__pip-runner__.py");
        load(&mut e, 10, 10, "/x/pip/__main__.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
        enter(&mut e, 10, 10, "/x/pip/_internal/cli/main.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Import);
    }

    #[test]
    fn thread_started_at_import_keeps_import_after_main_began() {
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "command", "import pkg");
        enter(&mut e, 10, 10, "<string>");
        enter(&mut e, 10, 10, "/site/pkg/__init__.py");
        fork(&mut e, 10, 10, 11, true);
        exit(&mut e, 10, 10);
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
        let c = open(&mut e, 10, 11, "/x");
        assert_eq!(c.phase, Phase::Import);
        let origin = c.inherited_from.expect("inherited");
        assert_eq!((origin.pid, origin.tid), (10, 10));
        // A thread started at runtime is runtime.
        fork(&mut e, 10, 10, 12, true);
        assert_eq!(open(&mut e, 10, 12, "/x").phase, Phase::Runtime);
    }

    #[test]
    fn taint_survives_fork_exec_of_anything_and_a_new_interpreters_own_phases() {
        let mut e = engine();
        image(&mut e, 10);
        open(&mut e, 10, 10, "/site/evil.pth");
        enter(&mut e, 10, 10, "<string>");
        fork(&mut e, 10, 10, 20, false);
        // The child execs another interpreter, which reaches its main code.
        let exec = Action::Exec {
            path: "/usr/bin/python3".into(),
            resolution: crate::process::table::Resolution::Absolute,
            argv: Vec::new(),
            result: 0,
            file: None,
            image: Some(Box::new(info(true))),
        };
        e.observe(&ev(20, 20, exec));
        main(&mut e, 20, "file", "app.py");
        enter(&mut e, 20, 20, "app.py");
        let c = open(&mut e, 20, 20, "/x");
        assert_eq!((c.phase, c.culprit.kind), (Phase::Startup, CulpritKind::Pth));
        assert_eq!(c.inherited_from.as_ref().unwrap().pid, 10);
        // Its own child, a non-Python program, too.
        fork(&mut e, 20, 20, 30, false);
        let sh = Action::Exec {
            path: "/bin/sh".into(),
            resolution: crate::process::table::Resolution::Absolute,
            argv: Vec::new(),
            result: 0,
            file: None,
            image: Some(Box::new(info(false))),
        };
        e.observe(&ev(30, 30, sh));
        let c = open(&mut e, 30, 30, "/x");
        assert_eq!(c.phase, Phase::Startup);
        assert_eq!(c.inherited_from.as_ref().unwrap().pid, 10);
    }

    #[test]
    fn children_of_runtime_code_are_clean_and_preexisting_processes_are_runtime() {
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "command", "x");
        enter(&mut e, 10, 10, "<string>");
        fork(&mut e, 10, 10, 20, false);
        assert_eq!(open(&mut e, 20, 20, "/x").phase, Phase::Runtime);
        let mut old = ev(40, 40, Action::Image { path: "/usr/bin/python3".into(), argv: Vec::new() });
        old.process.preexisting = true;
        e.observe(&old);
        assert_eq!(open(&mut e, 40, 40, "/x").phase, Phase::Runtime);
    }

    #[test]
    fn unprobed_interpreters_fall_back_to_the_script_open() {
        let mut e = engine();
        let mut img = ev(10, 10, Action::Image { path: "/usr/bin/python3".into(), argv: Vec::new() });
        img.process.probed = false;
        e.observe(&img);
        let c = open(&mut e, 10, 10, "/x");
        assert_eq!((c.phase, c.basis), (Phase::Startup, Basis::SyscallOrder));
        open(&mut e, 10, 10, "/srv/app.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
    }

    #[test]
    fn a_late_launcher_run_is_phased_by_its_markers_once_they_come() {
        // A console script whose interpreter ran before its probes were attached (resumed by a
        // job-control shell): the fallback sets main at the script's open, then the markers
        // of the probes attached meanwhile come in.
        let launched = |e: &mut Engine, pid: u32| {
            let mut img = ev(pid, pid, Action::Image { path: "/venv/bin/python".into(), argv: Vec::new() });
            img.process.probed = false;
            img.process.argv =
                vec![b"/venv/bin/python".to_vec(), b"/venv/bin/gunicorn".to_vec(), b"app:app".to_vec()];
            img.process.cwd = Some("/srv".into());
            e.observe(&img);
            open(e, pid, pid, "/venv/bin/gunicorn");
        };
        let mut e = engine();
        launched(&mut e, 10);
        enter(&mut e, 10, 10, "/venv/bin/gunicorn");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime, "the script's own frame is main code");
        load(&mut e, 10, 10, "/srv/app.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Import);
        exit(&mut e, 10, 10);
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
        // The audit marker, when it does come after the guess, names main instead.
        let mut e = engine();
        launched(&mut e, 11);
        main(&mut e, 11, "file", "/venv/bin/gunicorn");
        enter(&mut e, 11, 11, "/venv/bin/gunicorn");
        assert_eq!(open(&mut e, 11, 11, "/x").phase, Phase::Runtime);
        load(&mut e, 11, 11, "/srv/app.py");
        assert_eq!(open(&mut e, 11, 11, "/x").phase, Phase::Import);
    }

    #[test]
    fn returns_beyond_the_recorded_depth_keep_the_stack_aligned() {
        let mut e = engine();
        image(&mut e, 10);
        main(&mut e, 10, "command", "x");
        enter(&mut e, 10, 10, "<string>");
        load(&mut e, 10, 10, "/site/deep.py");
        for _ in 0..MAX_FRAMES + 40 {
            enter(&mut e, 10, 10, "/site/deeper.py");
        }
        for _ in 0..MAX_FRAMES + 40 {
            exit(&mut e, 10, 10);
        }
        let c = open(&mut e, 10, 10, "/x");
        assert_eq!(c.culprit.module_file.as_deref(), Some(Path::new("/site/deep.py")));
        exit(&mut e, 10, 10);
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
    }

    #[test]
    fn script_detection() {
        let argv = |a: &[&str]| a.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let cwd = Some(Path::new("/w"));
        assert_eq!(script_of(&argv(&["py", "-u", "a.py", "-c"]), cwd), Some("/w/a.py".into()));
        assert_eq!(script_of(&argv(&["py", "-W", "ignore", "/x/b.py"]), cwd), Some("/x/b.py".into()));
        assert_eq!(script_of(&argv(&["py", "-c", "pass"]), cwd), None);
        assert_eq!(script_of(&argv(&["py", "-Im", "json.tool"]), cwd), None);
    }

    #[test]
    fn command_lines_say_what_runs_as_the_audit_event_would() {
        let argv = |a: &[&str]| a.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let main = |a: &[&str]| {
            let (how, target) = main_of(&argv(a));
            (how, String::from_utf8(target).unwrap())
        };
        assert_eq!(main(&["py", "-c", "print(1)", "x"]), ("command", "print(1)".into()));
        assert_eq!(main(&["py", "-Bcpass"]), ("command", "pass".into()));
        assert_eq!(main(&["py", "-Wd", "-X", "dev", "-Im", "json.tool"]), ("module", "json.tool".into()));
        assert_eq!(
            main(&["py", "-W", "ignore", "--check-hash-based-pycs", "always", "a.py"]),
            ("file", "a.py".into())
        );
        assert_eq!(main(&["py", "-u", "-"]), ("stdin", String::new()));
        assert_eq!(main(&["py", "-i"]), ("stdin", String::new()));
        assert_eq!(main(&["py", "--version", "s.py", "-c"]), ("file", "s.py".into()));
        assert_eq!(main(&[]), ("unknown", String::new()));
    }

    #[test]
    fn running_main_marks_main_from_the_command_line_and_is_checked_against_the_audit_event() {
        let mut e = engine();
        image(&mut e, 10);
        e.observe(&ev(10, 10, Action::Marker(Mark::RunningMain)));
        enter(&mut e, 10, 10, "/srv/app.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime, "app.py is the main code");
        enter(&mut e, 10, 10, "/srv/lib.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Import);
        main(&mut e, 10, "file", "app.py");
        image(&mut e, 20);
        main(&mut e, 20, "file", "app.py");
        assert_eq!(e.take_main_checks(), [(10, true), (20, false)]);
        assert_eq!(e.take_main_checks(), []);
    }

    #[test]
    fn without_an_argv_the_first_top_level_frame_after_running_main_is_main() {
        let mut e = engine();
        let mut event = ev(10, 10, Action::Image { path: "/usr/bin/python3".into(), argv: Vec::new() });
        event.process.argv.clear();
        e.observe(&event);
        e.observe(&ev(10, 10, Action::Marker(Mark::RunningMain)));
        enter(&mut e, 10, 10, "/srv/whatever.py");
        assert_eq!(open(&mut e, 10, 10, "/x").phase, Phase::Runtime);
    }
}
