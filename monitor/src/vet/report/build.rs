//! Turning what a run saw (alerts, the capture, the baits) into a [`Report`] under a policy.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use super::{
    alerts::{Alert, parse_all},
    baseline::fingerprint,
    model::*,
    network::{IndexHosts, flow_host, parse_addr},
    paths::{Normaliser, canonical_name},
    policy::{Policy, RULES},
};
use crate::{
    output::time::rfc3339,
    vet::capture::{Capture, Evidence, Place, Transport},
};

/// How far apart an alert and the flow or DNS question it made may be.
const NEAR: Duration = Duration::from_secs(5);

/// What a network alert reached, as far as the capture tells.
#[derive(Clone, Debug, Default)]
struct Reached {
    flow: Option<usize>,
    dns: Option<usize>,
    host: Option<String>,
}

fn distance(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap_or_default()
}

fn same_addr(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

fn transport(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    }
}

fn phase_rank(phase: &str) -> usize {
    ["install", "startup", "import", "runtime"].iter().position(|p| *p == phase).unwrap_or(4)
}

fn rule_rank(rule: &str) -> usize {
    RULES.iter().position(|r| *r == rule).unwrap_or(RULES.len())
}

/// The last two labels of a DNS name (`*.evil.test`): a leak's name holds the value itself.
fn domain(name: &str) -> String {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    if labels.len() <= 2 { name.to_owned() } else { format!("*.{}", labels[labels.len() - 2..].join(".")) }
}

/// A finding before the policy, keyed by what makes it itself.
#[derive(Clone, Debug)]
struct Draft {
    group: GroupKey,
    rule: String,
    phase: String,
    steps: BTreeSet<usize>,
    culprit: CulpritRef,
    target: TargetRef,
    count: u64,
}

/// Which group a finding belongs to: a distribution (canonical name, display name, version)
/// or an input.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum GroupKey {
    Distribution { canonical: String, name: String, version: Option<String> },
    Input(String),
}

struct Builder<'a> {
    input: &'a Input,
    norm: Normaliser,
    index: IndexHosts,
    flow_hosts: Vec<Option<String>>,
    /// Canonical name → (name, version) of installed distributions.
    installed: BTreeMap<String, (String, String)>,
}

impl<'a> Builder<'a> {
    fn new(input: &'a Input) -> Self {
        Self {
            input,
            norm: Normaliser::new(&input.run.home, &input.run.venv),
            index: IndexHosts::new(&input.run.index_hosts),
            flow_hosts: input.capture.flows.iter().map(|f| flow_host(&f.bytes)).collect(),
            installed: input
                .installed
                .iter()
                .map(|(n, v)| (canonical_name(n), (n.clone(), v.clone())))
                .collect(),
        }
    }

    fn capture(&self) -> &Capture {
        &self.input.capture
    }

    /// The flow or DNS question a connect or send alert made: the nearest in time to the same
    /// address (a question for port 53).
    fn reached(&self, alert: &Alert, addr: &SocketAddr) -> Reached {
        let near = |at: SystemTime| alert.time.map(|t| distance(t, at)).filter(|d| *d <= NEAR);
        if addr.port() == 53 {
            // The nearest question to that resolver; else the nearest to any (every address
            // reaches the sink's resolver, which records the address asked).
            let nearest = |same_server: bool| {
                self.capture()
                    .dns
                    .iter()
                    .enumerate()
                    .filter(|(_, q)| !same_server || same_addr(&q.server, addr))
                    .filter_map(|(i, q)| near(q.at).map(|d| (d, i)))
                    .min()
                    .map(|(_, i)| i)
            };
            let best = nearest(true).or_else(|| nearest(false));
            if let Some(i) = best {
                return Reached { flow: None, dns: Some(i), host: Some(self.capture().dns[i].name.clone()) };
            }
        }
        let to_addr: Vec<usize> = (0..self.capture().flows.len())
            .filter(|&i| same_addr(&self.capture().flows[i].destination, addr))
            .collect();
        let best = to_addr
            .iter()
            .filter_map(|&i| near(self.capture().flows[i].first).map(|d| (d, i)))
            .min()
            .map(|(_, i)| i)
            .or_else(|| {
                // No time to go by: only when every flow there names the same host.
                let hosts: BTreeSet<_> = to_addr.iter().map(|&i| &self.flow_hosts[i]).collect();
                (alert.time.is_none() && hosts.len() == 1).then(|| to_addr[0])
            });
        Reached { flow: best, dns: None, host: best.and_then(|i| self.flow_hosts[i].clone()) }
    }

    fn group_of(&self, alert: &Alert) -> GroupKey {
        match alert.culprit.distribution.as_deref().filter(|d| !d.is_empty()) {
            Some(name) => self.distribution_key(name, alert.culprit.version.as_deref()),
            None => GroupKey::Input(self.input_label(alert.step)),
        }
    }

    fn distribution_key(&self, name: &str, version: Option<&str>) -> GroupKey {
        let canonical = canonical_name(name);
        match self.installed.get(&canonical) {
            Some((n, v)) if version.is_none_or(|version| version == v) => {
                GroupKey::Distribution { canonical, name: n.clone(), version: Some(v.clone()) }
            }
            _ => GroupKey::Distribution {
                canonical,
                name: name.to_owned(),
                version: version.map(str::to_owned),
            },
        }
    }

    /// What a finding no distribution owns came from: the install step's target, or the inputs.
    fn input_label(&self, step: usize) -> String {
        match self.input.steps.get(step) {
            Some(Step { kind: StepKind::Install, target: Some(t), .. }) => t.clone(),
            _ => self.input.run.inputs.join(" "),
        }
    }

    fn culprit(&self, alert: &Alert) -> CulpritRef {
        let c = &alert.culprit;
        CulpritRef {
            kind: c.kind.clone(),
            party: c.party.clone(),
            path: alert.culprit_file().map(|p| self.norm.path(p, c.source_dir.as_deref())),
            module: c.module.clone(),
            hooks: c.hook.iter().cloned().collect(),
        }
    }

    fn target(&self, kind: TargetKind, text: String) -> TargetRef {
        TargetRef { kind, text, host: None, category: None, bait: None, encoding: None }
    }

    /// The finding an alert makes, or `None` for traffic to the package index (a connection
    /// the sink relayed to it, or one its address, name, SNI or `Host` names).
    fn draft(&self, alert: &Alert) -> Option<(Draft, Reached)> {
        let a = &alert.action;
        let path = |p: &Option<String>| p.as_deref().map(|p| self.norm.path(p, None)).unwrap_or_default();
        let mut reached = Reached::default();
        let target = match a.kind.as_str() {
            "connect" | "send" => {
                let addr_text = a.addr.clone().unwrap_or_default();
                match parse_addr(&addr_text) {
                    Some(addr) => {
                        reached = self.reached(alert, &addr);
                        let relayed = reached.flow.is_some_and(|i| self.capture().flows[i].relayed.is_some());
                        let host_allowed =
                            reached.host.as_deref().is_some_and(|h| self.index.allows(h, Some(addr.port())));
                        let dns_allowed =
                            reached.dns.is_some_and(|i| self.index.allows(&self.capture().dns[i].name, None));
                        if relayed || self.index.allows_addr(&addr) || host_allowed || dns_allowed {
                            return None;
                        }
                        let mut t = if reached.dns.is_some() {
                            self.target(TargetKind::DnsName, addr_text)
                        } else {
                            self.target(TargetKind::Destination, addr_text)
                        };
                        t.host = reached.host.clone();
                        t
                    }
                    None if a.family.as_deref() == Some("unix") => {
                        self.target(TargetKind::Destination, format!("unix:{}", path(&a.addr)))
                    }
                    None => self.target(TargetKind::Destination, addr_text),
                }
            }
            "exec" => self.target(TargetKind::Program, path(&a.path)),
            "process-memory" => {
                let via = a.via.clone().unwrap_or_else(|| "unknown".into());
                let text = match &a.path {
                    Some(_) => format!("{} ({via})", path(&a.path)),
                    None => format!("another process ({via})"),
                };
                self.target(TargetKind::Process, text)
            }
            "socket" => self.target(TargetKind::Socket, a.socket.clone().unwrap_or_else(|| "raw".into())),
            "io-uring" => self.target(TargetKind::IoUring, a.opcode.clone().unwrap_or_else(|| "ring".into())),
            _ => {
                let mut t = self.target(TargetKind::File, path(&a.path));
                t.category = a.category.clone();
                t
            }
        };
        let draft = Draft {
            group: self.group_of(alert),
            rule: alert.rule.clone(),
            phase: alert.phase.clone(),
            steps: BTreeSet::from([alert.step]),
            culprit: self.culprit(alert),
            target,
            count: alert.count,
        };
        Some((draft, reached))
    }

    /// The step running at `at`.
    fn step_at(&self, at: SystemTime) -> Option<usize> {
        self.input.steps.iter().position(|s| s.started <= at && at <= s.ended)
    }
}

/// Merges drafts that are the same finding (same group, rule, phase, culprit and target).
fn merge(drafts: Vec<Draft>) -> Vec<Draft> {
    let mut out: Vec<Draft> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for d in drafts {
        let c = &d.culprit;
        let key = format!(
            "{:?}|{}|{}|{}|{:?}|{:?}|{:?}",
            d.group, d.rule, d.phase, c.kind, c.path, c.module, d.target
        );
        match index.get(&key) {
            Some(&i) => {
                out[i].count += d.count;
                out[i].steps.extend(d.steps);
                for hook in d.culprit.hooks {
                    if !out[i].culprit.hooks.contains(&hook) {
                        out[i].culprit.hooks.push(hook);
                    }
                }
            }
            None => {
                index.insert(key, out.len());
                out.push(d);
            }
        }
    }
    out
}

impl Report {
    /// The report of a run under `policy`.
    pub fn build(input: &Input, policy: &Policy) -> Report {
        let b = Builder::new(input);
        let alerts = parse_all(&input.alerts);
        let mut drafts = Vec::new();
        // Per alert, what its network action reached (for attributing leaks).
        let mut reached: Vec<(usize, Reached)> = Vec::new();
        for (i, alert) in alerts.iter().enumerate() {
            if let Some((draft, r)) = b.draft(alert) {
                drafts.push(draft);
                reached.push((i, r));
            }
        }

        // Baits: who touched each, where its value went.
        let mut baits = Vec::new();
        let mut extra_destinations: BTreeSet<String> = BTreeSet::new();
        let mut leaked_flows = BTreeSet::new();
        let mut leaked_dns = BTreeSet::new();
        for bait in &input.baits {
            let (kind, name, category) = match &bait.kind {
                BaitKind::File { category, path } => {
                    ("file", b.norm.path(&path.to_string_lossy(), None), Some(category.clone()))
                }
                BaitKind::Env { name } => ("env", name.clone(), None),
            };
            let mut touched: Vec<Touch> = Vec::new();
            if kind == "file" {
                for alert in alerts.iter().filter(|a| a.rule == "credential-read") {
                    let hits = [&alert.action.path, &alert.action.alias_of]
                        .into_iter()
                        .flatten()
                        .any(|p| b.norm.path(p, None) == name);
                    if !hits {
                        continue;
                    }
                    let culprit = b.culprit(alert).path;
                    let (distribution, version) = match b.group_of(alert) {
                        GroupKey::Distribution { name, version, .. } => (Some(name), version),
                        GroupKey::Input(_) => (None, None),
                    };
                    match touched.iter_mut().find(|t| {
                        t.distribution == distribution && t.phase == alert.phase && t.culprit == culprit
                    }) {
                        Some(t) => t.count += alert.count,
                        None => touched.push(Touch {
                            distribution,
                            version,
                            phase: alert.phase.clone(),
                            culprit,
                            count: alert.count,
                        }),
                    }
                }
            }
            let mut leaked = Vec::new();
            // One place, one leak: the first form found (raw before encoded ones).
            let mut evidences = input.capture.contains(bait.value.as_bytes());
            let mut places = Vec::new();
            evidences.retain(|e| {
                let place = match &e.place {
                    Place::Flow { flow, .. } => (0, *flow),
                    Place::DnsName { query, .. } => (1, *query),
                };
                let new = !places.contains(&place);
                places.push(place);
                new
            });
            for evidence in evidences {
                let (leak, drafts_of_leak) = leak(&b, &alerts, &reached, &name, &evidence);
                match evidence.place {
                    Place::Flow { flow, .. } => leaked_flows.insert(flow),
                    Place::DnsName { query, .. } => leaked_dns.insert(query),
                };
                if !leaked.contains(&leak) {
                    leaked.push(leak);
                }
                drafts.extend(drafts_of_leak);
            }
            baits.push(BaitReport { kind: kind.into(), name, category, touched, leaked });
        }

        // Destinations: the capture's, then addresses only alerts name.
        let mut destinations: BTreeMap<(String, String), Destination> = BTreeMap::new();
        for (i, flow) in input.capture.flows.iter().enumerate() {
            let key = (transport(flow.transport).to_owned(), flow.destination.to_string());
            let d = destinations.entry(key.clone()).or_insert_with(|| Destination {
                transport: key.0.clone(),
                address: key.1.clone(),
                hosts: Vec::new(),
                flows: 0,
                bytes: 0,
                index: true,
                relayed: false,
                leaked: false,
            });
            d.flows += 1;
            d.bytes += flow.received;
            d.leaked |= leaked_flows.contains(&i);
            if let Some(h) = &b.flow_hosts[i]
                && !d.hosts.contains(h)
            {
                d.hosts.push(h.clone());
            }
            let host_ok =
                b.flow_hosts[i].as_deref().is_some_and(|h| b.index.allows(h, Some(flow.destination.port())));
            d.relayed |= flow.relayed.is_some();
            d.index &= flow.relayed.is_some() || b.index.allows_addr(&flow.destination) || host_ok;
        }
        for alert in &alerts {
            let a = &alert.action;
            if !matches!(a.kind.as_str(), "connect" | "send") {
                continue;
            }
            let Some(addr) = &a.addr else { continue };
            let known = destinations.values().any(|d| d.address == *addr)
                || parse_addr(addr).is_some_and(|s| {
                    destinations.values().any(|d| parse_addr(&d.address).is_some_and(|x| same_addr(&x, &s)))
                });
            if !known {
                extra_destinations.insert(if a.family.as_deref() == Some("unix") {
                    format!("unix:{}", b.norm.path(addr, None))
                } else {
                    addr.clone()
                });
            }
        }
        let mut destinations: Vec<Destination> = destinations.into_values().collect();
        for d in &mut destinations {
            d.hosts.sort();
        }
        for addr in extra_destinations {
            let (transport, address) = match addr.strip_prefix("unix:") {
                Some(path) => ("unix", path.to_owned()),
                None => ("unknown", addr.clone()),
            };
            let index = parse_addr(&address).is_some_and(|s| b.index.allows_addr(&s));
            destinations.push(Destination {
                transport: transport.into(),
                address,
                hosts: Vec::new(),
                flows: 0,
                bytes: 0,
                index,
                relayed: false,
                leaked: false,
            });
        }

        let mut dns: BTreeMap<String, DnsName> = BTreeMap::new();
        for (i, q) in input.capture.dns.iter().enumerate() {
            let name = q.name.to_ascii_lowercase();
            let d = dns.entry(name.clone()).or_insert_with(|| DnsName {
                index: b.index.allows(&name, None),
                name,
                queries: 0,
                leaked: false,
            });
            d.queries += 1;
            d.leaked |= leaked_dns.contains(&i);
        }

        // Programs run.
        let mut programs: BTreeMap<String, ProgramRun> = BTreeMap::new();
        for alert in alerts.iter().filter(|a| a.action.kind == "exec") {
            let path = alert.action.path.as_deref().map(|p| b.norm.path(p, None)).unwrap_or_default();
            let p = programs.entry(path.clone()).or_insert_with(|| ProgramRun {
                path,
                argv: alert
                    .action
                    .argv
                    .iter()
                    .map(|a| if a.starts_with('/') { b.norm.path(a, None) } else { a.clone() })
                    .collect(),
                distributions: Vec::new(),
                phases: Vec::new(),
                count: 0,
            });
            p.count += alert.count;
            if let GroupKey::Distribution { name, .. } = b.group_of(alert)
                && !p.distributions.contains(&name)
            {
                p.distributions.push(name);
            }
            if !p.phases.contains(&alert.phase) {
                p.phases.push(alert.phase.clone());
            }
        }

        for p in programs.values_mut() {
            p.distributions.sort();
            p.phases.sort_by_key(|p| phase_rank(p));
        }

        // Groups: every installed distribution, then those only findings name.
        let mut groups: BTreeMap<GroupKey, Vec<Finding>> = BTreeMap::new();
        for (canonical, (name, version)) in &b.installed {
            groups
                .entry(GroupKey::Distribution {
                    canonical: canonical.clone(),
                    name: name.clone(),
                    version: Some(version.clone()),
                })
                .or_default();
        }
        for d in merge(drafts) {
            let (canonical, name) = match &d.group {
                GroupKey::Distribution { canonical, name, .. } => (canonical.as_str(), Some(name.as_str())),
                GroupKey::Input(_) => ("", None),
            };
            let Some(level) = policy.level_for(name, &d.rule) else { continue };
            let allowed = policy.excuse(name, &d.rule, level);
            let fingerprint = fingerprint(canonical, &d.rule, &d.phase, d.culprit.path.as_deref(), &d.target);
            groups.entry(d.group).or_default().push(Finding {
                rule: d.rule,
                level,
                fails: allowed.is_none(),
                allowed,
                phase: d.phase,
                steps: d.steps.into_iter().collect(),
                culprit: d.culprit,
                target: d.target,
                count: d.count,
                fingerprint,
            });
        }
        let distributions = groups
            .into_iter()
            .map(|(key, mut findings)| {
                sort_findings(&mut findings);
                let (name, version, input) = match key {
                    GroupKey::Distribution { name, version, .. } => (Some(name), version, None),
                    GroupKey::Input(i) => (None, None, Some(i)),
                };
                DistributionReport { verdict: verdict(&findings), name, version, input, findings }
            })
            .collect();

        let mut report = Report {
            schema: SCHEMA.into(),
            run: RunSummary {
                python: PythonSummary {
                    version: input.run.python_version.clone(),
                    path: input.run.python_path.to_string_lossy().into_owned(),
                },
                installer: input.run.installer.clone(),
                inputs: input.run.inputs.clone(),
                index_hosts: input.run.index_hosts.clone(),
                started: rfc3339(input.run.started),
            },
            verdict: Verdict { status: Status::Pass, failing: 0, passing: 0 },
            steps: input
                .steps
                .iter()
                .enumerate()
                .map(|(index, s)| StepSummary {
                    index,
                    kind: s.kind,
                    target: s.target.clone(),
                    exit_code: s.exit_code,
                    timed_out: s.timed_out,
                    seconds: s.seconds,
                })
                .collect(),
            distributions,
            baits,
            destinations,
            dns: dns.into_values().collect(),
            programs: programs.into_values().collect(),
            policy: policy.summary(),
            baseline: None,
        };
        report.recompute_verdict();
        report
    }

    /// The run's verdict from its distributions' findings (after filtering, for a baseline).
    pub(crate) fn recompute_verdict(&mut self) {
        for d in &mut self.distributions {
            d.verdict = verdict(&d.findings);
        }
        let all: Vec<Finding> = self.distributions.iter().flat_map(|d| d.findings.iter().cloned()).collect();
        self.verdict = verdict(&all);
    }
}

fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (phase_rank(&a.phase), rule_rank(&a.rule), &a.culprit.path, &a.target.text, &a.fingerprint).cmp(&(
            phase_rank(&b.phase),
            rule_rank(&b.rule),
            &b.culprit.path,
            &b.target.text,
            &b.fingerprint,
        ))
    });
}

pub(crate) fn verdict(findings: &[Finding]) -> Verdict {
    let failing = findings.iter().filter(|f| f.fails).count();
    Verdict {
        status: if failing > 0 { Status::Fail } else { Status::Pass },
        failing,
        passing: findings.len() - failing,
    }
}

/// One place a bait value was found, and the `exfiltration` findings it makes.
fn leak(
    b: &Builder<'_>,
    alerts: &[Alert],
    reached: &[(usize, Reached)],
    bait: &str,
    evidence: &Evidence,
) -> (Leak, Vec<Draft>) {
    let capture = b.capture();
    let (channel, destination, host, at, by_reach): (_, String, Option<String>, SystemTime, Vec<usize>) =
        match &evidence.place {
            Place::Flow { flow, destination, .. } => {
                let f = &capture.flows[*flow];
                (
                    "flow",
                    format!("{} {destination}", transport(f.transport)),
                    b.flow_hosts[*flow].clone(),
                    f.first,
                    reached.iter().filter(|(_, r)| r.flow == Some(*flow)).map(|(i, _)| *i).collect(),
                )
            }
            Place::DnsName { query, name, .. } => {
                let q = &capture.dns[*query];
                (
                    "dns",
                    format!("{} {}", transport(q.transport), q.server),
                    Some(name.clone()),
                    q.at,
                    reached.iter().filter(|(_, r)| r.dns == Some(*query)).map(|(i, _)| *i).collect(),
                )
            }
        };
    let step = b.step_at(at);
    // Whose: the alerts that made this flow or question; else the network alerts of the step
    // running then; else its other alerts; else the distribution the step names.
    // Only alerts that are findings: a connect to the index blames no one.
    let in_step = |network: bool| -> Vec<usize> {
        reached
            .iter()
            .map(|(i, _)| *i)
            .filter(|&i| Some(alerts[i].step) == step)
            .filter(|&i| !network || matches!(alerts[i].action.kind.as_str(), "connect" | "send"))
            .collect()
    };
    let mut culprits = by_reach;
    if culprits.is_empty() {
        culprits = in_step(true);
    }
    if culprits.is_empty() {
        culprits = in_step(false);
    }
    let encoding = serde_json::to_value(evidence.encoding)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut target = b.target(
        if channel == "dns" { TargetKind::DnsName } else { TargetKind::Destination },
        match &evidence.place {
            Place::DnsName { name, .. } => domain(name),
            Place::Flow { destination, .. } => destination.to_string(),
        },
    );
    target.host = if channel == "dns" { None } else { host.clone() };
    target.bait = Some(bait.to_owned());
    target.encoding = Some(encoding.clone());
    let phase_of_step = step.and_then(|s| b.input.steps.get(s)).map(|s| match s.kind {
        StepKind::Install => "install",
        StepKind::Startup => "startup",
        StepKind::Import => "import",
        StepKind::Script => "runtime",
    });
    let mut drafts: Vec<Draft> = Vec::new();
    for &i in &culprits {
        let alert = &alerts[i];
        let group = b.group_of(alert);
        if drafts.iter().any(|d| d.group == group) {
            continue;
        }
        drafts.push(Draft {
            group,
            rule: "exfiltration".into(),
            phase: alert.phase.clone(),
            steps: step.into_iter().collect(),
            culprit: b.culprit(alert),
            target: target.clone(),
            count: 1,
        });
    }
    if drafts.is_empty() {
        let group = match step.and_then(|s| b.input.steps.get(s)).and_then(|s| s.target.as_deref()) {
            Some(t) if b.installed.contains_key(&canonical_name(t)) => b.distribution_key(t, None),
            _ => GroupKey::Input(step.map_or_else(|| b.input.run.inputs.join(" "), |s| b.input_label(s))),
        };
        drafts.push(Draft {
            group,
            rule: "exfiltration".into(),
            phase: phase_of_step.unwrap_or("unknown").into(),
            steps: step.into_iter().collect(),
            culprit: CulpritRef {
                kind: "unknown".into(),
                party: None,
                path: None,
                module: None,
                hooks: Vec::new(),
            },
            target,
            count: 1,
        });
    }
    let distributions = drafts
        .iter()
        .filter_map(|d| match &d.group {
            GroupKey::Distribution { name, .. } => Some(name.clone()),
            GroupKey::Input(_) => None,
        })
        .collect();
    (Leak { channel: channel.into(), destination, host, encoding, step, distributions }, drafts)
}
