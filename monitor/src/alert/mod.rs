//! Alerts (`premain.alert/v1`): one JSON line per pre-main action a rule matched, with the
//! phase, the culprit named as file, module and distribution, the process and its ancestry.
//!
//! Repeats of the same (process, rule, target) within the fold window are not printed again;
//! when the window closes, the alert is printed once more with the same `id` and its final
//! `count`, so consumers can upsert by `id`. Distinct targets are never folded together.

use std::{
    collections::HashMap,
    fs,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Map, Value, json};

use crate::{
    detect::{Hit, Rules},
    k8s::{Container, PodCache},
    kernel::sockaddr::SockAddr,
    ops::config::AlertOptions,
    phase::{Context, Culprit, CulpritKind, Origin},
    process::event::{
        Action, Clock, Event, put_argv, put_bytes, put_capture_flags, put_path, put_result, rfc3339,
    },
    process::table::{Lineage, ProcessTable},
    python::dist::{Distributions, module_name},
    python::install::read_source,
};

pub const SCHEMA: &str = "premain.alert/v1";
/// Ancestors listed at most.
const ANCESTRY_MAX: usize = 8;
/// Open fold windows at most; beyond this the oldest are closed early.
const FOLDS_MAX: usize = 16_384;

struct Fold {
    alert: Value,
    count: u64,
    opened: Instant,
}

pub struct Alerts {
    node: String,
    clock: Clock,
    window: Duration,
    ancestry_argv: bool,
    pod_labels: bool,
    pods: PodCache,
    dists: Distributions,
    folds: HashMap<(u32, &'static str, String), Fold>,
    id_prefix: String,
    next_id: u64,
    pub raised: u64,
    pub folded: u64,
}

impl Alerts {
    pub fn new(clock: Clock, options: &AlertOptions) -> Self {
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
        }
    }

    /// Pod metadata from the API server watch; `labels` copies pod labels into alerts.
    pub fn set_pods(&mut self, pods: PodCache, labels: bool) {
        self.pods = pods;
        self.pod_labels = labels;
    }

    /// The node name alerts carry.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Applies reloaded options; open fold windows keep running under the new length.
    pub fn set_options(&mut self, options: &AlertOptions) {
        self.node = node_name(&options.node_name);
        self.window = Duration::from_secs(options.fold_window_secs);
        self.ancestry_argv = options.ancestry_argv;
    }

    /// Whether an allowlist exempts this action: its executable, its culprit's files or
    /// module names, or the distribution that carries the culprit.
    pub fn exempt(&mut self, rules: &Rules, event: &Event, context: &Context) -> bool {
        let c = &context.culprit;
        let files: Vec<&Path> = [c.path.as_deref(), c.module_file.as_deref(), c.outer_module_file.as_deref()]
            .into_iter()
            .flatten()
            .chain(c.source_dir.as_deref())
            .collect();
        let modules: Vec<String> = files.iter().filter_map(|f| module_name(f)).collect();
        let mut names: Vec<&Path> = files.clone();
        names.extend(modules.iter().map(Path::new));
        let (distribution, _) = self.attribution(c);
        rules.allowed(event.process.exe.as_deref(), &names, distribution.as_deref())
    }

    /// The alert line to print now, or `None` when it folds into an open one.
    pub fn raise(
        &mut self,
        event: &Event,
        context: &Context,
        hit: Hit,
        table: &ProcessTable,
    ) -> Option<Value> {
        let key = (event.header.pid, hit.rule, hit.target.clone());
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
        let alert = self.build(&id, event, context, &hit, table);
        self.folds.insert(key, Fold { alert: alert.clone(), count: 1, opened: Instant::now() });
        Some(alert)
    }

    /// Closes the windows that have expired; returns the updated alerts of those with repeats.
    pub fn expire(&mut self, all: bool) -> Vec<Value> {
        let window = self.window;
        let mut out = Vec::new();
        self.folds.retain(|_, fold| {
            if !all && fold.opened.elapsed() < window {
                return true;
            }
            if fold.count > 1
                && let Value::Object(obj) = &mut fold.alert
            {
                obj.insert("count".into(), json!(fold.count));
                obj.insert("folded".into(), json!(true));
                obj.insert("window_seconds".into(), json!(window.as_secs_f64()));
                out.push(fold.alert.clone());
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
    ) -> Value {
        let h = &event.header;
        let mut process = Map::new();
        process.insert("pid".into(), json!(h.pid));
        process.insert("tid".into(), json!(h.tid));
        process.insert("ppid".into(), json!(h.ppid));
        put_path(&mut process, "exe", event.process.exe.as_deref());
        put_argv(&mut process, "cmdline", &event.process.argv);
        if event.process.argv_truncated {
            process.insert("cmdline_truncated".into(), json!(true));
        }
        process.insert("uid".into(), json!(h.uid));
        process.insert("gid".into(), json!(h.gid));
        put_bytes(&mut process, "comm", &h.comm);
        process.insert("python".into(), json!(event.process.python));
        process.insert("cgroup_id".into(), json!(h.cgroup_id));
        process.insert(
            "start_time".into(),
            if event.process.started_ns > 0 {
                json!(rfc3339(self.clock.wall(event.process.started_ns)))
            } else {
                Value::Null
            },
        );
        process.insert("ancestry".into(), ancestry(h.ppid, table, self.ancestry_argv));

        let inherited = context.inherited_from.as_deref().map(|o| self.origin(o));
        json!({
            "kind": "alert",
            "schema": SCHEMA,
            "id": id,
            "time": rfc3339(self.clock.wall(h.ktime_ns)),
            "node": self.node,
            "rule": hit.rule,
            "severity": hit.severity,
            "phase": context.phase.as_str(),
            "phase_basis": context.basis,
            "culprit": self.culprit(&context.culprit),
            "process": Value::Object(process),
            "action": action_json(&event.action, hit, h.flags),
            "inherited_from": inherited,
            "container": event.process.container.as_ref().map(|c| json!({"id": c.id, "runtime": c.runtime})),
            "kubernetes": self.kubernetes(event.process.container.as_ref()),
            "count": 1,
        })
    }

    /// Pod identity: the UID from the cgroup at once, name, namespace and labels when the
    /// watch knows the pod (never waited for).
    fn kubernetes(&self, container: Option<&Container>) -> Value {
        let Some(uid) = container.and_then(|c| c.pod_uid.as_deref()) else { return Value::Null };
        let mut obj = Map::new();
        obj.insert("pod_uid".into(), json!(uid));
        if let Some(pod) = self.pods.get(uid) {
            obj.insert("pod".into(), json!(pod.name));
            obj.insert("namespace".into(), json!(pod.namespace));
            if self.pod_labels {
                obj.insert("labels".into(), json!(pod.labels));
            }
        }
        Value::Object(obj)
    }

    fn origin(&mut self, origin: &Origin) -> Value {
        let mut obj = Map::new();
        obj.insert("pid".into(), json!(origin.pid));
        obj.insert("tid".into(), json!(origin.tid));
        put_path(&mut obj, "exe", origin.exe.as_deref());
        put_argv(&mut obj, "cmdline", &origin.argv);
        obj.insert("phase".into(), json!(origin.phase.as_str()));
        obj.insert("culprit".into(), self.culprit(&origin.culprit));
        Value::Object(obj)
    }

    fn culprit(&mut self, c: &Culprit) -> Value {
        let mut obj = Map::new();
        obj.insert("kind".into(), json!(c.kind.as_str()));
        put_path(&mut obj, "path", c.path.as_deref());
        let module = c.module_file.as_deref().and_then(module_name);
        obj.insert("module".into(), json!(module));
        if let Some(file) = &c.module_file {
            put_path(&mut obj, "module_path", Some(file));
        }
        if c.outer_module_file.is_some() && c.outer_module_file != c.module_file {
            obj.insert(
                "outermost_module".into(),
                json!(c.outer_module_file.as_deref().and_then(module_name)),
            );
        }
        let (distribution, version) = self.attribution(c);
        obj.insert("distribution".into(), json!(distribution));
        obj.insert("version".into(), json!(version));
        for (key, value) in [("hook", &c.hook), ("backend", &c.backend), ("installer", &c.installer)] {
            if let Some(v) = value {
                obj.insert(key.into(), json!(v));
            }
        }
        if let Some(dir) = &c.source_dir {
            put_path(&mut obj, "source_dir", Some(dir));
        }
        Value::Object(obj)
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

/// The configured name, else `$NODE_NAME` (the downward API in a DaemonSet), else the hostname.
fn node_name(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default()
    })
}

fn ancestry(mut ppid: u32, table: &ProcessTable, with_argv: bool) -> Value {
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
        let mut obj = Map::new();
        obj.insert("pid".into(), json!(ppid));
        put_path(&mut obj, "exe", exe.as_deref());
        if with_argv {
            put_argv(&mut obj, "cmdline", &argv);
            if argv_truncated {
                obj.insert("cmdline_truncated".into(), json!(true));
            }
        }
        out.push(Value::Object(obj));
        if next == ppid {
            break;
        }
        ppid = next;
    }
    Value::Array(out)
}

/// The action as the alert states it; a path or argv the kernel cut is flagged as in events.
fn action_json(action: &Action, hit: &Hit, flags: u32) -> Value {
    let mut obj = Map::new();
    match action {
        Action::Open { path, flags, resolution, result: r, .. } => {
            obj.insert("type".into(), json!("open"));
            put_path(&mut obj, "path", Some(path));
            obj.insert("path_resolution".into(), json!(resolution.as_str()));
            obj.insert("flags".into(), json!(flags));
            obj.insert("category".into(), json!(hit.category));
            put_result(&mut obj, *r);
        }
        Action::Connect { addr, result: r, .. } | Action::Send { addr, result: r, .. } => {
            let parsed = SockAddr::parse(addr);
            obj.insert(
                "type".into(),
                json!(if matches!(action, Action::Send { .. }) { "send" } else { "connect" }),
            );
            obj.insert("addr".into(), json!(parsed.render()));
            obj.insert("family".into(), json!(parsed.family()));
            obj.insert("port".into(), json!(parsed.port()));
            put_result(&mut obj, *r);
        }
        Action::Exec { path, argv, result: r, .. } => {
            obj.insert("type".into(), json!("exec"));
            put_path(&mut obj, "path", Some(path));
            put_argv(&mut obj, "argv", argv);
            put_result(&mut obj, *r);
        }
        Action::Image { .. } | Action::Fork { .. } | Action::Exit { .. } | Action::Marker(_) => {}
    }
    put_capture_flags(&mut obj, flags);
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::decode::Header,
        phase::{Phase, PhaseEngine},
        process::event::ProcessInfo,
        process::table::Resolution,
    };

    fn open(pid: u32, path: &str) -> Event {
        let header = Header {
            ktime_ns: 1,
            cgroup_id: 0,
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
            dirfd: -100,
            flags: 0,
            mode: 0,
            result: 3,
        };
        Event {
            header,
            process: ProcessInfo { python: Some("3.12".into()), ..ProcessInfo::default() },
            action,
        }
    }

    #[test]
    fn repeats_fold_and_distinct_targets_do_not() {
        let options = AlertOptions { fold_window_secs: 60, ..AlertOptions::default() };
        let mut alerts = Alerts::new(Clock::new(), &options);
        let rules = Rules::defaults();
        let table = ProcessTable::new(8);
        let context = Context {
            phase: Phase::Startup,
            ..PhaseEngine::new(Box::new(|_, _, _| None)).observe(&open(1, "/x"))
        };
        let mut raise = |pid, path| {
            let event = open(pid, path);
            let hit = rules.evaluate(&event.action, false).expect("a credential");
            alerts.raise(&event, &context, hit, &table)
        };
        let first = raise(7, "/h/.netrc").expect("first alert printed");
        assert!(raise(7, "/h/.netrc").is_none(), "a repeat folds");
        assert!(raise(7, "/h/.pypirc").is_some(), "another target is another alert");
        assert!(raise(8, "/h/.netrc").is_some(), "another process is another alert");
        assert_eq!(first["schema"], SCHEMA);
        assert_eq!(first["phase"], "startup");
        assert_eq!(first["action"]["category"], "netrc");
        let closed = alerts.expire(true);
        assert_eq!(closed.len(), 1, "only the folded alert is printed again");
        assert_eq!(
            (closed[0]["id"].clone(), closed[0]["count"].clone()),
            (first["id"].clone(), serde_json::json!(2))
        );
    }

    #[test]
    fn a_cut_path_is_flagged_in_the_alert() {
        let mut alerts = Alerts::new(Clock::new(), &AlertOptions::default());
        let rules = Rules::defaults();
        let table = ProcessTable::new(8);
        let mut event = open(9, "/h/.gnupg/aaaa");
        event.header.flags = monitor_common::FLAG_PATH_TRUNCATED;
        let context =
            Context { phase: Phase::Startup, ..PhaseEngine::new(Box::new(|_, _, _| None)).observe(&event) };
        let hit = rules.evaluate(&event.action, false).expect("a credential");
        let alert = alerts.raise(&event, &context, hit, &table).expect("an alert");
        assert_eq!(alert["action"]["truncated"], serde_json::json!(["path"]));
        assert!(alert["action"].get("read_failed").is_none());
    }
}
