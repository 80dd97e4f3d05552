//! The rules: which actions of pre-main code are alerts. The phase decides *whether* an action
//! can alert (never in `runtime`); the rules decide *which* actions do.

pub mod catalogue;
mod rule;

pub use rule::{RuleId, Severity};

use std::{
    collections::HashSet,
    net::{IpAddr, ToSocketAddrs as _},
    path::Path,
    sync::{Arc, RwLock},
};

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::IpNet;

use self::catalogue::{CREDENTIALS, NOT_CREDENTIALS};
use crate::{
    kernel::sockaddr::SockAddr,
    ops::config::{Config, Destination, RuleOptions},
    process::event::Action,
};

/// What matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub rule: RuleId,
    pub severity: Severity,
    /// What the action touched, the folding key with the process and rule.
    pub target: String,
    /// The catalogue entry, for credential reads.
    pub category: Option<String>,
}

/// The rule set in force: compiled from the configuration, replaced whole on reload.
pub struct Rules {
    credentials: GlobSet,
    categories: Vec<String>,
    not_credentials: GlobSet,
    options: RuleOptions,
    programs: HashSet<String>,
    unix_sockets: HashSet<String>,
    destinations: Vec<Destination>,
    culprits: GlobSet,
    distributions: HashSet<String>,
    exes: GlobSet,
    index_hosts: IndexHosts,
}

impl Rules {
    /// The built-in rule set (an empty configuration).
    pub fn defaults() -> Self {
        Self::from_config(&Config::default()).expect("the defaults compile")
    }

    /// Compiles the rule part of `config` (already validated by [`Config::parse`]).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut entries: Vec<(String, String)> = Vec::new();
        if !config.credentials.replace_defaults {
            entries.extend(CREDENTIALS.iter().map(|(c, g)| ((*c).to_owned(), (*g).to_owned())));
        }
        entries
            .extend(config.credentials.paths.iter().map(|p| (p.category.clone(), p.glob.get_ref().clone())));
        let exclude = NOT_CREDENTIALS
            .iter()
            .map(|g| (*g).to_owned())
            .chain(config.credentials.exclude.iter().map(|g| g.get_ref().clone()));
        let allow = &config.allow;
        let mut destinations = Vec::new();
        for text in &allow.destinations {
            destinations.push(Destination::parse(text.get_ref())?);
        }
        Ok(Self {
            credentials: glob_set(entries.iter().map(|(_, g)| g.as_str()))?,
            categories: entries.into_iter().map(|(c, _)| c).collect(),
            not_credentials: glob_set(exclude.collect::<Vec<_>>().iter().map(String::as_str))?,
            options: config.rules.clone(),
            programs: allow.programs.iter().cloned().collect(),
            unix_sockets: allow.unix_sockets.iter().cloned().collect(),
            destinations,
            culprits: glob_set(allow.culprits.iter().map(|g| g.get_ref().as_str()))?,
            distributions: allow.distributions.iter().map(|d| normalize_distribution(d)).collect(),
            exes: glob_set(allow.exes.iter().map(|g| g.get_ref().as_str()))?,
            index_hosts: IndexHosts::resolve(&config.install.index_hosts),
        })
    }

    /// The rules that can raise alerts, with their severities.
    pub fn enabled(&self) -> impl Iterator<Item = (RuleId, Severity)> + '_ {
        RuleId::ALL
            .into_iter()
            .map(|rule| (rule, self.options.get(rule)))
            .filter(|(_, o)| o.enabled)
            .map(|(r, o)| (r, o.severity))
    }

    /// The catalogue entry `path` belongs to.
    pub fn credential(&self, path: &Path) -> Option<&str> {
        if self.not_credentials.is_match(path) {
            return None;
        }
        let first = *self.credentials.matches(path).first()?;
        Some(self.categories[first].as_str())
    }

    /// The rule an action of pre-main code breaks, if any. `installing` tells that the code
    /// runs as part of a package installation, where the package index is expected traffic.
    pub fn evaluate(&self, action: &Action, installing: bool) -> Option<Hit> {
        let (rule, target, category) = match action {
            Action::Open { path, flags, .. } => {
                const O_ACCMODE: u32 = 3;
                const O_WRONLY: u32 = 1;
                if flags & O_ACCMODE == O_WRONLY {
                    return None;
                }
                let category = self.credential(path)?.to_owned();
                (RuleId::CredentialRead, path.to_string_lossy().into_owned(), Some(category))
            }
            Action::Connect { addr, .. } => {
                (RuleId::NetworkConnect, self.network_target(addr, installing)?, None)
            }
            Action::Send { addr, .. } => (RuleId::NetworkSend, self.network_target(addr, installing)?, None),
            Action::Exec { path, result, .. } => {
                // A PATH search tries every directory: the misses are not programs run.
                const ENOENT: i64 = 2;
                const ENOTDIR: i64 = 20;
                if *result == -ENOENT || *result == -ENOTDIR {
                    return None;
                }
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if self.programs.contains(&name) {
                    return None;
                }
                (RuleId::ProgramExec, path.to_string_lossy().into_owned(), None)
            }
            Action::Image { .. } | Action::Fork { .. } | Action::Exit { .. } | Action::Marker(_) => {
                return None;
            }
        };
        let option = self.options.get(rule);
        option.enabled.then_some(Hit { rule, severity: option.severity, target, category })
    }

    /// Whether the allowlists exempt this action's process or culprit: `exe` is the acting
    /// executable, `culprit_files` the culprit's files and module names, `distribution` the
    /// package that carries the culprit.
    pub fn allowed(&self, exe: Option<&Path>, culprit_files: &[&Path], distribution: Option<&str>) -> bool {
        exe.is_some_and(|e| self.exes.is_match(e))
            || culprit_files.iter().any(|f| self.culprits.is_match(f))
            || distribution.is_some_and(|d| self.distributions.contains(&normalize_distribution(d)))
    }

    /// Internet and UNIX-socket destinations; `AF_UNSPEC` (a UDP "disconnect"), other
    /// families, allowed destinations and the system sockets are not network activity.
    fn network_target(&self, addr: &[u8], installing: bool) -> Option<String> {
        let parsed = SockAddr::parse(addr);
        let target = parsed.render();
        match (parsed.family(), parsed.ip()) {
            ("unix", _) => (!self.unix_sockets.contains(&target)).then_some(target),
            ("inet" | "inet6", Some(ip)) => {
                let port = parsed.port().unwrap_or(0);
                let allowed = self.destinations.iter().any(|d| d.matches(ip, port))
                    || (installing && self.index_hosts.contains(ip));
                (!allowed).then_some(target)
            }
            _ => None,
        }
    }
}

fn glob_set<'a>(patterns: impl Iterator<Item = &'a str>) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(Glob::new(pattern).map_err(|e| format!("bad glob {pattern:?}: {}", e.kind()))?);
    }
    builder.build().map_err(|e| e.to_string())
}

/// PyPI's name normalization (PEP 503): case-insensitive, runs of `-_.` are one `-`.
pub fn normalize_distribution(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Package index addresses: literal IPs and networks at once; names are resolved in the
/// background (a slow resolver must not hold up start-up or a reload), once per compile.
#[derive(Clone, Default)]
struct IndexHosts(Arc<RwLock<Vec<IpNet>>>);

impl IndexHosts {
    fn resolve(hosts: &[String]) -> Self {
        let mut nets = Vec::new();
        let mut names = Vec::new();
        for host in hosts {
            if let Ok(net) = host.parse::<IpNet>() {
                nets.push(net);
            } else if let Ok(ip) = host.parse::<IpAddr>() {
                nets.push(IpNet::from(ip));
            } else {
                names.push(host.clone());
            }
        }
        let this = Self(Arc::new(RwLock::new(nets)));
        if !names.is_empty() {
            let shared = this.clone();
            let spawned = std::thread::Builder::new().name("resolve-index".into()).spawn(move || {
                for host in names {
                    match (host.as_str(), 443).to_socket_addrs() {
                        Ok(addrs) => {
                            let found: Vec<IpNet> = addrs.map(|a| IpNet::from(a.ip().to_canonical())).collect();
                            shared.0.write().unwrap_or_else(|p| p.into_inner()).extend(found);
                        }
                        Err(err) => tracing::warn!(host, error = %err,
                            "cannot resolve install.index_hosts entry: connections to it during installs will alert"),
                    }
                }
            });
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "cannot resolve install.index_hosts names");
            }
        }
        this
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::process::table::Resolution;

    fn open(path: &str, flags: u32) -> Action {
        Action::Open {
            path: PathBuf::from(path),
            resolution: Resolution::Absolute,
            dirfd: -100,
            flags,
            mode: 0,
            result: 3,
        }
    }

    #[test]
    fn credential_catalogue() {
        let rules = Rules::defaults();
        for (path, category) in [
            ("/tmp/x/home/.aws/credentials", "aws"),
            ("/root/.ssh/id_ed25519", "ssh-private-key"),
            ("/home/a/.kube/config", "kubeconfig"),
            ("/var/run/secrets/kubernetes.io/serviceaccount/token", "kubernetes-token"),
            ("/proc/self/environ", "process-environ"),
            ("/srv/app/.env", "dotenv"),
            ("/home/a/.config/gcloud/application_default_credentials.json", "gcloud"),
            ("/home/a/.gnupg/private-keys-v1.d/AB.key", "gnupg"),
            ("/home/a/.config/google-chrome/Default/Login Data", "browser-store"),
        ] {
            assert_eq!(rules.credential(Path::new(path)), Some(category), "{path}");
        }
        for path in [
            "/root/.ssh/id_ed25519.pub",
            "/root/.ssh/known_hosts",
            "/etc/hosts",
            "/srv/.env.example",
            "/srv/environ",
        ] {
            assert_eq!(rules.credential(Path::new(path)), None, "{path}");
        }
    }

    #[test]
    fn reads_alert_writes_do_not() {
        let rules = Rules::defaults();
        let hit = rules.evaluate(&open("/h/.netrc", 0), false).unwrap();
        assert_eq!(
            (hit.rule, hit.severity, hit.category),
            (RuleId::CredentialRead, Severity::Critical, Some("netrc".into()))
        );
        assert!(rules.evaluate(&open("/h/.netrc", 2), false).is_some());
        assert!(rules.evaluate(&open("/h/.netrc", 1 | 0o100), false).is_none());
    }

    #[test]
    fn exec_rule_skips_path_search_misses_and_stdlib_helpers() {
        let rules = Rules::defaults();
        let exec = |path: &str, result| Action::Exec {
            path: PathBuf::from(path),
            argv: Vec::new(),
            result,
            image: None,
        };
        assert_eq!(rules.evaluate(&exec("/usr/bin/curl", 0), false).unwrap().rule, RuleId::ProgramExec);
        assert!(rules.evaluate(&exec("/usr/bin/curl", -13), false).is_some());
        assert!(rules.evaluate(&exec("/usr/local/bin/curl", -2), false).is_none());
        assert!(rules.evaluate(&exec("/usr/bin/uname", 0), false).is_none());
    }

    #[test]
    fn network_families() {
        let rules = Rules::defaults();
        let v4 = [2u8, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
        let hit = rules.evaluate(&Action::Connect { addr: v4.clone(), fd: 3, result: 0 }, false).unwrap();
        assert_eq!((hit.rule, hit.target.as_str()), (RuleId::NetworkConnect, "127.0.0.1:8080"));
        assert_eq!(
            rules.evaluate(&Action::Send { addr: v4, fd: 3, result: 5 }, false).unwrap().rule,
            RuleId::NetworkSend
        );
        let unspec = [0u8; 16].to_vec();
        assert!(rules.evaluate(&Action::Connect { addr: unspec, fd: 3, result: 0 }, false).is_none());
        let mut nscd = vec![1u8, 0];
        nscd.extend_from_slice(b"/var/run/nscd/socket\0");
        assert!(rules.evaluate(&Action::Connect { addr: nscd.clone(), fd: 3, result: -2 }, false).is_none());
        nscd.truncate(2);
        nscd.extend_from_slice(b"/run/user/0/evil.sock\0");
        assert!(rules.evaluate(&Action::Connect { addr: nscd, fd: 3, result: -2 }, false).is_some());
    }

    fn configured(text: &str) -> Rules {
        Rules::from_config(&Config::parse("t.toml", text).expect("valid")).expect("compiles")
    }

    #[test]
    fn catalogue_extends_and_replaces() {
        let extended = configured("[[credentials.paths]]\ncategory = \"corp\"\nglob = \"/etc/corp/*.key\"\n");
        assert_eq!(extended.credential(Path::new("/etc/corp/a.key")), Some("corp"));
        assert_eq!(extended.credential(Path::new("/h/.netrc")), Some("netrc"));
        let replaced = configured(
            "[credentials]\nreplace_defaults = true\nexclude = [\"**/b.key\"]\n[[credentials.paths]]\ncategory = \"corp\"\nglob = \"**/*.key\"\n",
        );
        assert_eq!(replaced.credential(Path::new("/h/.netrc")), None);
        assert_eq!(replaced.credential(Path::new("/x/a.key")), Some("corp"));
        assert_eq!(replaced.credential(Path::new("/x/b.key")), None);
    }

    #[test]
    fn rule_options_disable_and_reweigh() {
        let rules = configured(
            "[rules.program-exec]\nenabled = false\n[rules.credential-read]\nseverity = \"medium\"\n",
        );
        let exec =
            Action::Exec { path: PathBuf::from("/usr/bin/curl"), argv: Vec::new(), result: 0, image: None };
        assert!(rules.evaluate(&exec, false).is_none());
        assert_eq!(rules.evaluate(&open("/h/.netrc", 0), false).unwrap().severity, Severity::Medium);
    }

    #[test]
    fn destinations_and_index_hosts() {
        let v4 = |ip: [u8; 4], port: u16| {
            let mut v = vec![2u8, 0];
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&ip);
            v.extend_from_slice(&[0; 8]);
            Action::Connect { addr: v, fd: 3, result: 0 }
        };
        let rules = configured(
            "[allow]\ndestinations = [\"10.0.0.0/8:443\"]\n[install]\nindex_hosts = [\"192.0.2.0/24\"]\n",
        );
        assert!(rules.evaluate(&v4([10, 1, 1, 1], 443), false).is_none());
        assert!(rules.evaluate(&v4([10, 1, 1, 1], 80), false).is_some());
        assert!(rules.evaluate(&v4([192, 0, 2, 7], 443), true).is_none(), "the index during an install");
        assert!(rules.evaluate(&v4([192, 0, 2, 7], 443), false).is_some(), "the index from other code");
    }

    #[test]
    fn allowlists() {
        let rules = configured(
            "[allow]\nexes = [\"/opt/tool/bin/*\"]\nculprits = [\"**/_virtualenv.pth\"]\ndistributions = [\"Foo_Bar\"]\n",
        );
        assert!(rules.allowed(Some(Path::new("/opt/tool/bin/python3")), &[], None));
        assert!(rules.allowed(None, &[Path::new("/v/site-packages/_virtualenv.pth")], None));
        assert!(rules.allowed(None, &[], Some("foo.bar")));
        assert!(!rules.allowed(Some(Path::new("/usr/bin/python3")), &[Path::new("/x.pth")], Some("foo")));
    }
}
