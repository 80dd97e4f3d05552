//! The terminal table: the verdict first, then per distribution its findings by phase, then
//! baits touched and leaked, destinations, DNS names, programs and the steps run. Colour only
//! when asked (a TTY).

use std::fmt::Write as _;

use super::model::{DistributionReport, Finding, Level, Report, Status};

struct Style {
    colour: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    fn status(&self, status: Status) -> String {
        match status {
            Status::Fail => self.paint("1;31", "FAIL"),
            Status::Pass => self.paint("1;32", "PASS"),
        }
    }

    fn level(&self, level: Level) -> String {
        let text = format!("{:<7}", level.as_str());
        match level {
            Level::Error => self.paint("31", &text),
            Level::Warning => self.paint("33", &text),
            Level::Note => self.paint("2", &text),
        }
    }
}

fn finding_line(f: &Finding) -> String {
    let mut culprit = f.culprit.path.clone().or_else(|| f.culprit.module.clone()).unwrap_or_default();
    culprit = match (f.culprit.hooks.is_empty(), culprit.is_empty()) {
        (_, true) => f.culprit.kind.clone(),
        (false, false) => format!("{culprit} ({}, {})", f.culprit.kind, f.culprit.hooks.join(", ")),
        (true, false) => format!("{culprit} ({})", f.culprit.kind),
    };
    let mut target = f.target.text.clone();
    if let Some(h) = &f.target.host {
        target.push_str(&format!(" ({h})"));
    }
    if let Some(c) = &f.target.category {
        target.push_str(&format!(" [{c}]"));
    }
    if let (Some(bait), Some(enc)) = (&f.target.bait, &f.target.encoding) {
        target = format!("{bait} -> {target} as {enc}");
    }
    let mut line = format!("{:<16} {culprit} -> {target}", f.rule);
    if f.count > 1 {
        line.push_str(&format!("  x{}", f.count));
    }
    if let Some(why) = &f.allowed {
        line.push_str(&format!("  ({why})"));
    }
    line
}

fn group(out: &mut String, s: &Style, d: &DistributionReport) {
    let count = if d.verdict.failing > 0 {
        format!(" ({} failing)", d.verdict.failing)
    } else if !d.findings.is_empty() {
        format!(" ({} allowed)", d.findings.len())
    } else {
        String::new()
    };
    let _ = writeln!(out, "{}  {}{count}", s.status(d.verdict.status), d.label());
    let mut phase = "";
    for f in &d.findings {
        if f.phase != phase {
            phase = &f.phase;
            let _ = writeln!(out, "  {phase}");
        }
        let _ = writeln!(out, "    {} {}", s.level(f.level), finding_line(f));
    }
}

impl Report {
    /// The table a reviewer reads in a minute; `colour` for a terminal.
    pub fn to_table(&self, colour: bool) -> String {
        let s = Style { colour };
        let mut out = String::new();
        let failing: Vec<String> = self
            .distributions
            .iter()
            .filter(|d| d.verdict.status == Status::Fail)
            .map(|d| d.label())
            .collect();
        let summary = match self.verdict.status {
            Status::Fail => format!("{} failing finding(s) in {}", self.verdict.failing, failing.join(", ")),
            Status::Pass if self.verdict.passing > 0 => {
                format!("no failing findings ({} allowed)", self.verdict.passing)
            }
            Status::Pass => "no findings".to_owned(),
        };
        let policy = self.policy.file.as_deref().unwrap_or("default policy");
        let _ = writeln!(
            out,
            "{}  premain vet: {summary} [{policy}, fail on {}]",
            s.status(self.verdict.status),
            self.policy.fail_on.as_str()
        );
        let _ = writeln!(
            out,
            "      {} | python {} ({}) | {}",
            self.run.inputs.join(" "),
            self.run.python.version,
            self.run.python.path,
            self.run.installer
        );
        if let Some(b) = &self.baseline {
            let _ = writeln!(
                out,
                "      new against {} ({}): {} known finding(s) left out",
                b.file.as_deref().unwrap_or("baseline"),
                b.distributions.join(", "),
                b.known
            );
        }

        let mut clean = Vec::new();
        let mut shown: Vec<&DistributionReport> =
            self.distributions.iter().filter(|d| !d.findings.is_empty()).collect();
        shown.sort_by_key(|d| d.verdict.status == Status::Pass);
        for d in &self.distributions {
            if d.findings.is_empty() {
                clean.push(d.label());
            }
        }
        for d in shown {
            out.push('\n');
            group(&mut out, &s, d);
        }
        if !clean.is_empty() {
            let _ = writeln!(out, "\nno findings: {}", clean.join(", "));
        }

        if !self.baits.is_empty() {
            let _ = writeln!(out, "\nbaits");
            for b in &self.baits {
                let name = match &b.category {
                    Some(c) => format!("{} [{c}]", b.name),
                    None => format!("${}", b.name),
                };
                let touched: Vec<String> = b
                    .touched
                    .iter()
                    .map(|t| {
                        let who = match (&t.distribution, &t.version) {
                            (Some(d), Some(v)) => format!("{d} {v}"),
                            (Some(d), None) => d.clone(),
                            _ => t.culprit.clone().unwrap_or_else(|| "unknown".into()),
                        };
                        format!("{who} ({})", t.phase)
                    })
                    .collect();
                let mut line = format!("  {name}");
                if !touched.is_empty() {
                    line.push_str(&format!("  read by {}", touched.join(", ")));
                }
                for l in &b.leaked {
                    let whom = if l.distributions.is_empty() {
                        String::new()
                    } else {
                        format!(" by {}", l.distributions.join(", "))
                    };
                    let place = l
                        .host
                        .as_deref()
                        .map_or_else(|| l.destination.clone(), |h| format!("{} {h}", l.destination));
                    line.push_str(&format!(
                        "  {} {place} as {}{whom}",
                        s.paint("1;31", "LEAKED to"),
                        l.encoding
                    ));
                }
                if b.touched.is_empty() && b.leaked.is_empty() {
                    line.push_str("  untouched");
                }
                let _ = writeln!(out, "{line}");
            }
        }
        if !self.destinations.is_empty() {
            let _ = writeln!(out, "\ndestinations");
            for d in &self.destinations {
                let hosts =
                    if d.hosts.is_empty() { String::new() } else { format!(" {}", d.hosts.join(", ")) };
                let flows = if d.flows > 0 {
                    format!("  {} flow(s), {} bytes", d.flows, d.bytes)
                } else {
                    String::new()
                };
                let mark = match (d.leaked, d.index, d.relayed) {
                    (true, _, _) => format!("  {}", s.paint("1;31", "LEAKED")),
                    (false, true, true) => "  (index, relayed)".into(),
                    (false, true, false) => "  (index)".into(),
                    _ => String::new(),
                };
                let _ = writeln!(out, "  {} {}{hosts}{flows}{mark}", d.transport, d.address);
            }
        }
        let names: Vec<String> = self
            .dns
            .iter()
            .map(|n| {
                let mark = if n.leaked {
                    " LEAKED"
                } else if n.index {
                    " (index)"
                } else {
                    ""
                };
                format!("{}{mark}", n.name)
            })
            .collect();
        if !names.is_empty() {
            let _ = writeln!(out, "\ndns: {}", names.join(", "));
        }
        if !self.programs.is_empty() {
            let _ = writeln!(out, "\nprograms");
            for p in &self.programs {
                let by = if p.distributions.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", p.distributions.join(", "))
                };
                let times = if p.count > 1 { format!(" x{}", p.count) } else { String::new() };
                let _ =
                    writeln!(out, "  {}{by} ({}){times}: {}", p.path, p.phases.join(", "), p.argv.join(" "));
            }
        }
        let _ = writeln!(out, "\nsteps");
        for st in &self.steps {
            let exit = match (st.timed_out, st.exit_code) {
                (true, _) => "timed out".to_owned(),
                (false, Some(c)) => format!("exit {c}"),
                (false, None) => "killed".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {} {} {}  {exit}, {:.1} s",
                st.index,
                st.kind.as_str(),
                st.target.as_deref().unwrap_or(""),
                st.seconds
            );
        }
        out
    }
}
