//! Alerts (`premain.alert/v1`): one per pre-main action a rule matched, with the phase, the
//! culprit named as file, module and distribution, the process and its ancestry.
//!
//! Repeats of the same (process, rule, target) within the fold window are not sent again;
//! when the window closes, the alert is sent once more with the same `id` and its final
//! `count`, so consumers can upsert by `id`. Distinct targets are never folded together.

mod model;

use std::{
    collections::HashMap,
    os::unix::ffi::OsStrExt as _,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

pub(crate) use model::*;

use crate::{
    detect::{Hit, RuleId, Rules, socket_family, socket_type},
    enforce::Enforcement,
    k8s::{Container, PodCache},
    kernel::sockaddr::SockAddr,
    ops::config::{AlertOptions, ApplicationCode},
    output::{
        json::{Argv, Capture, Outcome, Text},
        redact::Redactor,
        time::{Clock, rfc3339},
    },
    phase::{Context, Culprit, CulpritKind, Origin, party},
    process::{
        event::{Action, Event, open_syscall, uring_opcode},
        table::{Lineage, ProcessTable},
    },
    python::{
        dist::{Distributions, module_name},
        install::read_source,
        stack::{PyStack, StackError},
    },
};

/// Ancestors listed at most.
const ANCESTRY_MAX: usize = 8;
/// Open fold windows at most; beyond this the oldest are closed early.
const FOLDS_MAX: usize = 16_384;

struct Fold {
    alert: Alert,
    count: u64,
    opened: Instant,
}

pub(crate) struct Alerts {
    node: String,
    clock: Clock,
    window: Duration,
    ancestry_argv: bool,
    pod_labels: bool,
    pods: PodCache,
    dists: Distributions,
    /// By (pid, process start, rule, target).
    /// By process (pid, start), rule, target, whether the action succeeded (a read that got
    /// through after refused or failed tries is an alert of its own, not a repeat of them) and
    /// culprit (the same connect made by a `.pth` and then by a module is two findings).
    folds: HashMap<FoldKey, Fold>,
    id_prefix: String,
    next_id: u64,
    pub raised: u64,
    pub folded: u64,
    /// What the application's own module-level code raises (`alerts.application_code`).
    pub application_code: ApplicationCode,
}

impl Alerts {
    pub(crate) fn new(clock: Clock, options: &AlertOptions) -> Self {
        let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            node: node_name(&options.node_name),
            clock,
            window: Duration::from_secs(options.fold_window_secs),
            ancestry_argv: options.ancestry_argv,
            pod_labels: true,
            pods: PodCache::default(),
            dists: Distributions::new(),
            folds: HashMap::new(),
            id_prefix: format!("{:x}{:05x}", started.as_secs(), std::process::id() & 0xfffff),
            next_id: 0,
            raised: 0,
            folded: 0,
            application_code: options.application_code,
        }
    }

    /// Pod metadata from the API server watch; `labels` copies pod labels into alerts.
    /// The pod `uid` names, when the watch knows it.
    pub(crate) fn pod(&self, uid: &str) -> Option<crate::k8s::PodMeta> {
        self.pods.get(uid)
    }

    pub(crate) fn set_pods(&mut self, pods: PodCache, labels: bool) {
        self.pods = pods;
        self.pod_labels = labels;
    }

    /// The node name alerts carry.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Applies reloaded options; open fold windows keep running under the new length.
    pub(crate) fn set_options(&mut self, options: &AlertOptions) {
        self.node = node_name(&options.node_name);
        self.window = Duration::from_secs(options.fold_window_secs);
        self.ancestry_argv = options.ancestry_argv;
        self.application_code = options.application_code;
    }

    /// Whether an allowlist exempts this action: its executable, its culprit's files or
    /// module names, or the distribution that carries the culprit.
    pub(crate) fn exempt(&mut self, rules: &Rules, event: &Event, context: &Context) -> bool {
        let (any, by_distribution) = rules.exempts();
        if !any {
            return false;
        }
        let c = &context.culprit;
        let files: Vec<&Path> = [c.path.as_deref(), c.module_file.as_deref(), c.outer_module_file.as_deref()]
            .into_iter()
            .flatten()
            .chain(c.source_dir.as_deref())
            .collect();
        let modules: Vec<String> = files.iter().filter_map(|f| module_name(f)).collect();
        let mut names: Vec<&Path> = files.clone();
        names.extend(modules.iter().map(Path::new));
        let distribution = if by_distribution { self.attribution(c).0 } else { None };
        rules.allowed(event.process.exe.as_deref(), &names, distribution.as_deref())
    }

    /// The alert line to print now, or `None` when it folds into an open one. Every command
    /// line in it goes through `redactor`.
    pub(crate) fn raise(
        &mut self,
        event: &Event,
        context: &Context,
        hit: Hit,
        enforcement: Option<Enforcement>,
        table: &ProcessTable,
        redactor: &Redactor,
    ) -> Option<Alert> {
        let culprit = &context.culprit;
        let key = FoldKey {
            pid: event.header.pid,
            start_ns: event.header.start_ns,
            rule: hit.rule,
            target: hit.target.clone(),
            succeeded: succeeded(&event.action),
            culprit: (
                culprit.kind,
                culprit.path.clone(),
                culprit.module_file.clone(),
                culprit.planted.is_some(),
            ),
        };
        if let Some(fold) = self.folds.get_mut(&key)
            && fold.opened.elapsed() < self.window
        {
            fold.count += 1;
            self.folded += 1;
            return None;
        }
        if self.folds.len() >= FOLDS_MAX {
            // Rare; close everything rather than grow without bound (repeat counts of the
            // closed windows are lost, the alerts themselves were printed).
            self.folds.clear();
        }
        self.next_id += 1;
        self.raised += 1;
        let id = format!("{}-{:x}", self.id_prefix, self.next_id);
        let mut alert = self.build(&id, event, context, &hit, table, redactor);
        alert.enforcement = enforcement;
        self.folds.insert(key, Fold { alert: alert.clone(), count: 1, opened: Instant::now() });
        Some(alert)
    }

    /// Closes the windows that have expired; returns the updated alerts of those with repeats.
    pub(crate) fn expire(&mut self, all: bool) -> Vec<Alert> {
        let window = self.window;
        let mut out = Vec::new();
        self.folds.retain(|_, fold| {
            if !all && fold.opened.elapsed() < window {
                return true;
            }
            if fold.count > 1 {
                let mut alert = fold.alert.clone();
                alert.count = fold.count;
                alert.folded = Some(true);
                alert.window_seconds = Some(window.as_secs_f64());
                out.push(alert);
            }
            false
        });
        out
    }

    fn build(
        &mut self,
        id: &str,
        event: &Event,
        context: &Context,
        hit: &Hit,
        table: &ProcessTable,
        redactor: &Redactor,
    ) -> Alert {
        let h = &event.header;
        let p = &event.process;
        let process = ProcessView {
            pid: h.pid,
            tid: h.tid,
            ppid: h.ppid,
            exe: Text::path("exe", p.exe.as_deref()),
            cmdline: Argv::new("cmdline", &p.argv, redactor),
            cmdline_truncated: p.argv_truncated.then_some(true),
            uid: h.uid,
            gid: h.gid,
            comm: Text::new("comm", &h.comm),
            python: p.python.clone(),
            cgroup_id: h.cgroup_id,
            start_time: (p.started_ns > 0).then(|| rfc3339(self.clock.wall(p.started_ns))),
            ancestry: ancestry(h.ppid, table, self.ancestry_argv, redactor),
        };
        let inherited_from = context.inherited_from.as_deref().map(|o| self.origin(o, redactor));
        let stack = event.stack.as_deref();
        Alert {
            kind: Kind,
            schema: SCHEMA,
            id: id.to_owned(),
            time: rfc3339(self.clock.wall(h.ktime_ns)),
            node: self.node.clone(),
            rule: hit.rule,
            severity: hit.severity,
            phase: context.phase,
            phase_basis: context.basis,
            deferred: deferred(context).then_some(true),
            culprit: self.culprit(&context.culprit),
            process,
            action: action_view(&event.action, hit, h.flags, redactor),
            stack: stack.map(|s| self.frames(s)).unwrap_or_default(),
            stack_truncated: stack.is_some_and(|s| s.truncated).then_some(true),
            stack_error: stack.map_or(Some(StackError::Missing), |s| s.error).map(StackError::as_str),
            stack_inherited_from: stack.and_then(|s| s.inherited_from),
            inherited_from,
            container: p.container.as_ref().map(|c| ContainerView { id: c.id.clone(), runtime: c.runtime }),
            kubernetes: self.kubernetes(p.container.as_ref()),
            enforcement: None,
            count: 1,
            folded: None,
            window_seconds: None,
        }
    }

    /// Pod identity: the UID from the cgroup at once, name, namespace and labels when the
    /// watch knows the pod (never waited for).
    fn kubernetes(&self, container: Option<&Container>) -> Option<KubernetesView> {
        let uid = container.and_then(|c| c.pod_uid.as_deref())?;
        let pod = self.pods.get(uid);
        Some(KubernetesView {
            pod_uid: uid.to_owned(),
            pod: pod.as_ref().map(|p| p.name.clone()),
            namespace: pod.as_ref().map(|p| p.namespace.clone()),
            labels: pod.filter(|_| self.pod_labels).map(|p| p.labels),
        })
    }

    /// An alert's frames, each with the distribution whose RECORD lists its file.
    fn frames(&mut self, stack: &PyStack) -> Vec<FrameView> {
        stack
            .frames
            .iter()
            .map(|f| FrameView {
                function: f.function.clone(),
                file: f.file.clone(),
                line: f.line,
                distribution: f
                    .file
                    .starts_with('/')
                    .then(|| self.dists.owner(Path::new(&f.file)))
                    .flatten()
                    .map(|d| d.name),
            })
            .collect()
    }

    fn origin(&mut self, origin: &Origin, redactor: &Redactor) -> OriginView {
        OriginView {
            pid: origin.pid,
            tid: origin.tid,
            exe: Text::path("exe", origin.exe.as_deref()),
            cmdline: Argv::new("cmdline", &origin.argv, redactor),
            phase: origin.phase,
            culprit: self.culprit(&origin.culprit),
        }
    }

    fn culprit(&mut self, c: &Culprit) -> CulpritView {
        let (distribution, version) = self.attribution(c);
        let outer_differs = c.outer_module_file.is_some() && c.outer_module_file != c.module_file;
        CulpritView {
            kind: c.kind,
            party: c.party.unwrap_or_else(|| party::of_culprit(c)),
            path: Text::path("path", c.path.as_deref()),
            module: c.module_file.as_deref().and_then(module_name),
            module_path: c.module_file.as_deref().map(|f| Text::path("module_path", Some(f))),
            outermost_module: outer_differs.then(|| c.outer_module_file.as_deref().and_then(module_name)),
            distribution,
            version,
            filename_unreadable: c.filename_unreadable.then_some(true),
            filename_mismatch: (c.claimed_file.is_some() || c.outer_claimed_file.is_some()).then_some(true),
            claimed_filename: c.claimed_file.as_deref().map(|f| Text::path("claimed_filename", Some(f))),
            outermost_claimed_filename: c
                .outer_claimed_file
                .as_deref()
                .map(|f| Text::path("outermost_claimed_filename", Some(f))),
            hook: c.hook.clone(),
            backend: c.backend.clone(),
            installer: c.installer.clone(),
            source_dir: c.source_dir.as_deref().map(|d| Text::path("source_dir", Some(d))),
            planted_frame: c.planted.as_ref().map(|f| PlantedFrameView {
                function: f.function.clone(),
                file: f.file.clone(),
                line: f.line,
            }),
        }
    }

    /// The distribution (name, version) that carries the culprit's code.
    fn attribution(&mut self, c: &Culprit) -> (Option<String>, Option<String>) {
        match c.kind {
            CulpritKind::Setup | CulpritKind::BuildBackend => {
                let source = c.source_dir.as_deref().map(read_source).unwrap_or_default();
                (source.name, source.version)
            }
            _ => {
                // The file that carries the code: the .pth or customize file, else the module.
                let owner = [c.path.as_deref(), c.module_file.as_deref(), c.outer_module_file.as_deref()]
                    .into_iter()
                    .flatten()
                    .find_map(|f| self.dists.owner(f));
                (owner.as_ref().map(|d| d.name.clone()), owner.map(|d| d.version))
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FoldKey {
    pid: u32,
    start_ns: u64,
    rule: RuleId,
    target: String,
    succeeded: bool,
    /// Kind, file, module, and whether it is planted code acting after main (see
    /// `Culprit::planted`).
    culprit: (CulpritKind, Option<std::path::PathBuf>, Option<std::path::PathBuf>, bool),
}

/// Whether code a start-up hook planted acted after main, in the acting thread or in the
/// creator it inherited its phase from.
fn deferred(context: &Context) -> bool {
    context.culprit.planted.is_some()
        || context.inherited_from.as_ref().is_some_and(|o| o.culprit.planted.is_some())
}

/// The configured name, else `$NODE_NAME` (the downward API in a DaemonSet), else the hostname.
fn node_name(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| crate::process::procfs::hostname().unwrap_or_default())
}

fn ancestry(mut ppid: u32, table: &ProcessTable, with_argv: bool, redactor: &Redactor) -> Vec<AncestorView> {
    let mut out = Vec::new();
    while ppid > 0 && out.len() < ANCESTRY_MAX {
        let known = table.get(ppid).map(|p| Lineage {
            ppid: p.ppid,
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            argv_truncated: p.argv_truncated,
        });
        let Some(Lineage { ppid: next, exe, argv, argv_truncated }) = known.or_else(|| Lineage::read(ppid))
        else {
            break;
        };
        out.push(AncestorView {
            pid: ppid,
            exe: Text::path("exe", exe.as_deref()),
            cmdline: with_argv.then(|| Argv::new("cmdline", &argv, redactor)),
            cmdline_truncated: (with_argv && argv_truncated).then_some(true),
        });
        if next == ppid {
            break;
        }
        ppid = next;
    }
    out
}

/// The caller's sockaddr of a rewritten destination, rendered; `None` when it could not be
/// read (or the destination was not rewritten).
pub(crate) fn requested_addr(requested: Option<&[u8]>) -> Option<String> {
    requested.filter(|r| !r.is_empty()).map(|r| SockAddr::parse(r).render())
}

/// Whether the kernel carried the action out (a result of 0 or more).
fn succeeded(action: &Action) -> bool {
    match action {
        Action::Open { result, .. }
        | Action::Connect { result, .. }
        | Action::Send { result, .. }
        | Action::Exec { result, .. }
        | Action::Memory { result, .. }
        | Action::Socket { result, .. }
        | Action::Name { result, .. } => *result >= 0,
        Action::Uring { .. }
        | Action::Image { .. }
        | Action::Fork { .. }
        | Action::Exit { .. }
        | Action::Marker(_) => true,
    }
}

/// The action as the alert states it; a path or argv the kernel cut is flagged as in events.
fn action_view(action: &Action, hit: &Hit, flags: u32, redactor: &Redactor) -> ActionView {
    let (kind, target, result) = match action {
        Action::Open { path, requested, flags, resolution, result, syscall, file, alias_of, .. } => (
            ActionKind::Open,
            Target::File {
                path: Text::new("path", path.as_os_str().as_bytes()),
                requested: requested.as_ref().map(|r| Text::new("requested", r.as_os_str().as_bytes())),
                path_resolution: resolution.as_str(),
                syscall: open_syscall(*syscall),
                dev: file.map(|f| f.dev_text()),
                ino: file.map(|f| f.ino),
                alias_of: alias_of.as_ref().map(|a| Text::new("alias_of", a.as_os_str().as_bytes())),
                flags: *flags,
                category: hit.category.clone(),
            },
            *result,
        ),
        Action::Memory { target_pid, via, path, result } => (
            ActionKind::ProcessMemory,
            Target::Process {
                target_pid: *target_pid,
                via,
                path: path.as_ref().map(|p| Text::new("path", p.as_os_str().as_bytes())),
            },
            *result,
        ),
        Action::Socket { family, sock_type, protocol, result } => (
            ActionKind::Socket,
            Target::Socket {
                family: socket_family(*family),
                socket_type: socket_type(*sock_type),
                protocol: *protocol,
            },
            *result,
        ),
        Action::Uring { opcode } => (ActionKind::IoUring, Target::Uring { opcode: uring_opcode(*opcode) }, 0),
        Action::Name { op, path, old, syscall, result } => (
            match *op {
                "link" => ActionKind::Link,
                "symlink" => ActionKind::Symlink,
                _ => ActionKind::Rename,
            },
            Target::Name {
                path: Text::new("path", path.as_os_str().as_bytes()),
                old: Text::new("old", old.as_os_str().as_bytes()),
                syscall,
                category: hit.category.clone(),
            },
            *result,
        ),
        Action::Connect { addr, requested, result, .. } | Action::Send { addr, requested, result, .. } => {
            let parsed = SockAddr::parse(addr);
            let kind =
                if matches!(action, Action::Send { .. }) { ActionKind::Send } else { ActionKind::Connect };
            (
                kind,
                Target::Address {
                    addr: parsed.render(),
                    family: parsed.family(),
                    port: parsed.port(),
                    requested: requested_addr(requested.as_deref()),
                    destination_rewritten: requested.is_some().then_some(true),
                },
                *result,
            )
        }
        Action::Exec { path, argv, result, .. } => (
            ActionKind::Exec,
            Target::Program {
                path: Text::new("path", path.as_os_str().as_bytes()),
                argv: Argv::new("argv", argv, redactor),
            },
            *result,
        ),
        Action::Image { .. } | Action::Fork { .. } | Action::Exit { .. } | Action::Marker(_) => {
            unreachable!("no rule matches images, forks, exits or markers")
        }
    };
    ActionView { kind, target, outcome: Outcome::of(result), capture: Capture::of(flags) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::decode::Header,
        phase::Phase,
        process::{event::ProcessInfo, table::Process, table::Resolution},
    };

    fn open(pid: u32, path: &str) -> Event {
        let header = Header {
            ktime_ns: 1,
            cgroup_id: 0,
            start_ns: 0,
            pid,
            tid: pid,
            ppid: 0,
            uid: 0,
            gid: 0,
            flags: 0,
            comm: Vec::new(),
        };
        let action = Action::Open {
            path: path.into(),
            resolution: Resolution::Absolute,
            requested: None,
            syscall: monitor_common::SYSCALL_OPENAT,
            file: None,
            alias_of: None,
            dirfd: -100,
            flags: 0,
            mode: 0,
            result: 3,
        };
        Event {
            header,
            process: ProcessInfo { python: Some("3.12".into()), ..ProcessInfo::default() },
            action,
            stack: None,
        }
    }

    #[test]
    fn a_rewritten_destination_names_the_kernels_and_the_callers() {
        let mut alerts = Alerts::new(Clock::new(), &AlertOptions::default());
        let rules = Rules::defaults();
        let table = ProcessTable::new(8);
        let context = Context { phase: Phase::Startup, ..Context::runtime() };
        let sockaddr = |ip: [u8; 4], port: u16| {
            let mut v = 2u16.to_ne_bytes().to_vec();
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&ip);
            v.extend_from_slice(&[0; 8]);
            v
        };
        let mut raise = |pid: u32, requested: Option<Vec<u8>>| {
            let mut event = open(pid, "/h/.netrc");
            event.action =
                Action::Connect { addr: sockaddr([127, 0, 0, 1], 4444), requested, fd: 3, result: 0 };
            let hit = rules.evaluate(&event, false, &table).expect("a connect");
            serde_json::to_value(
                alerts.raise(&event, &context, hit, None, &table, &Redactor::default()).unwrap(),
            )
            .unwrap()
        };
        let action = raise(7, Some(sockaddr([192, 0, 2, 1], 9)))["action"].clone();
        assert_eq!(action["addr"], "127.0.0.1:4444");
        assert_eq!(action["port"], 4444);
        assert_eq!(action["requested"], "192.0.2.1:9");
        assert_eq!(action["destination_rewritten"], true);
        let action = raise(8, Some(Vec::new()))["action"].clone();
        assert_eq!(
            (action["requested"].is_null(), &action["destination_rewritten"]),
            (true, &serde_json::json!(true))
        );
        let action = raise(9, None)["action"].clone();
        assert!(action.get("requested").is_none() && action.get("destination_rewritten").is_none());
    }

    #[test]
    fn repeats_fold_and_distinct_targets_do_not() {
        let options = AlertOptions { fold_window_secs: 60, ..AlertOptions::default() };
        let mut alerts = Alerts::new(Clock::new(), &options);
        let rules = Rules::defaults();
        let table = ProcessTable::new(8);
        let context = Context { phase: Phase::Startup, ..Context::runtime() };
        let mut raise = |pid, path| {
            let event = open(pid, path);
            let hit = rules.evaluate(&event, false, &table).expect("a credential");
            alerts.raise(&event, &context, hit, None, &table, &Redactor::default())
        };
        let first = raise(7, "/h/.netrc").expect("first alert printed");
        assert!(raise(7, "/h/.netrc").is_none(), "a repeat folds");
        assert!(raise(7, "/h/.pypirc").is_some(), "another target is another alert");
        assert!(raise(8, "/h/.netrc").is_some(), "another process is another alert");
        let mut reused = open(7, "/h/.netrc");
        reused.header.start_ns = 99;
        let hit = rules.evaluate(&reused, false, &table).expect("a credential");
        assert!(
            alerts.raise(&reused, &context, hit, None, &table, &Redactor::default()).is_some(),
            "a new process with a reused pid is another alert"
        );
        let first = serde_json::to_value(&first).unwrap();
        assert_eq!(first["schema"], SCHEMA);
        assert_eq!(first["phase"], "startup");
        assert_eq!(first["action"]["category"], "netrc");
        let closed: Vec<serde_json::Value> =
            alerts.expire(true).iter().map(|a| serde_json::to_value(a).unwrap()).collect();
        assert_eq!(closed.len(), 1, "only the folded alert is printed again");
        assert_eq!(
            (closed[0]["id"].clone(), closed[0]["count"].clone()),
            (first["id"].clone(), serde_json::json!(2))
        );
    }

    #[test]
    fn planted_code_acting_after_main_is_a_deferred_alert_of_its_hook_apart_from_its_start_up_ones() {
        let options = AlertOptions { fold_window_secs: 60, ..AlertOptions::default() };
        let mut alerts = Alerts::new(Clock::new(), &options);
        let rules = Rules::defaults();
        let table = ProcessTable::new(8);
        let hook = Culprit {
            kind: CulpritKind::Pth,
            path: Some("/v/site-packages/aaa.pth".into()),
            ..Culprit::default()
        };
        let at_startup = Context { phase: Phase::Startup, culprit: hook.clone(), ..Context::runtime() };
        let planted = crate::phase::PlantedFrame {
            function: "<lambda>".into(),
            file: "<string>".into(),
            line: Some(1),
        };
        let deferred = Context {
            phase: Phase::Startup,
            culprit: Culprit { planted: Some(planted), ..hook },
            ..Context::runtime()
        };
        let event = open(7, "/h/.netrc");
        let mut raise = |context: &Context| {
            let hit = rules.evaluate(&event, false, &table).expect("a credential");
            alerts
                .raise(&event, context, hit, None, &table, &Redactor::default())
                .map(|a| serde_json::to_value(a).unwrap())
        };
        let first = raise(&at_startup).expect("the start-up alert");
        assert!(first.get("deferred").is_none() && first["culprit"].get("planted_frame").is_none());
        let later = raise(&deferred).expect("the same read by planted code later is another finding");
        assert_eq!(later["deferred"], true);
        assert_eq!(later["phase"], "startup");
        assert_eq!(later["culprit"]["path"], "/v/site-packages/aaa.pth");
        assert_eq!(
            later["culprit"]["planted_frame"],
            serde_json::json!({"function": "<lambda>", "file": "<string>", "line": 1})
        );
        assert!(raise(&deferred).is_none(), "its repeat folds");
    }

    #[test]
    fn a_cut_path_is_flagged_in_the_alert() {
        let mut alerts = Alerts::new(Clock::new(), &AlertOptions::default());
        let rules = Rules::defaults();
        let table = ProcessTable::new(8);
        let mut event = open(9, "/h/.gnupg/aaaa");
        event.header.flags = monitor_common::FLAG_PATH_TRUNCATED;
        let context = Context { phase: Phase::Startup, ..Context::runtime() };
        let hit = rules.evaluate(&event, false, &table).expect("a credential");
        let alert = serde_json::to_value(
            alerts.raise(&event, &context, hit, None, &table, &Redactor::default()).expect("an alert"),
        )
        .unwrap();
        assert_eq!(alert["action"]["truncated"], serde_json::json!(["path"]));
        assert!(alert["action"].get("read_failed").is_none());
    }

    #[test]
    fn every_command_line_of_an_alert_is_redacted() {
        let argv = |a: &[&str]| a.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let mut alerts = Alerts::new(Clock::new(), &AlertOptions::default());
        let rules = Rules::defaults();
        let mut table = ProcessTable::new(8);
        table.insert(Process {
            pid: 5,
            argv: argv(&["bash", "-c", "python3 app.py", "--db-password=FAKEparent"]),
            ..Process::default()
        });
        let mut event = open(9, "/h/.netrc");
        event.header.ppid = 5;
        event.process.argv = argv(&["python3", "app.py", "--token", "FAKEchild"]);
        event.action = Action::Exec {
            path: "/usr/bin/curl".into(),
            resolution: Resolution::Absolute,
            argv: argv(&["curl", "-uFAKE", "https://u:FAKEurl@h/"]),
            result: 0,
            file: None,
            image: None,
        };
        let origin = Origin {
            pid: 4,
            tid: 4,
            exe: None,
            argv: argv(&["python3", "-c", "x", "API_KEY=FAKEorigin"]),
            phase: Phase::Startup,
            culprit: Culprit::default(),
        };
        let context =
            Context { phase: Phase::Startup, inherited_from: Some(origin.into()), ..Context::runtime() };
        let hit = rules.evaluate(&event, false, &table).expect("an exec");
        let redactor = Redactor::new(["-u(?P<secret>.+)"]).unwrap();
        let alert = alerts.raise(&event, &context, hit, None, &table, &redactor).expect("an alert");
        let alert = serde_json::to_value(alert).unwrap();
        assert!(!alert.to_string().contains("FAKE"), "{alert}");
        for (object, key) in [
            (&alert["process"], "cmdline"),
            (&alert["process"]["ancestry"][0], "cmdline"),
            (&alert["inherited_from"], "cmdline"),
            (&alert["action"], "argv"),
        ] {
            assert_eq!(object[format!("{key}_redacted")], true, "{key} of {object}");
        }
        assert_eq!(alert["process"]["cmdline"][3], "***REDACTED***");
        assert_eq!(
            alert["action"]["argv"],
            serde_json::json!(["curl", "-u***REDACTED***", "https://u:***REDACTED***@h/"])
        );
    }
}
