//! The rules: which actions of pre-main code are alerts. The phase decides *whether* an action
//! can alert (never in `runtime`); the rules decide *which* actions do. One file per rule
//! family: `credential` (credential-read), `network` (network-connect, network-send),
//! `program` (program-exec), `persistence`, and process-memory and raw-socket here; `allow` holds the allowlists that exempt a process or culprit
//! from all of them, `identity` what an exec'd program really is, `catalogue` the built-in
//! lists.

mod allow;
pub(crate) mod catalogue;
mod credential;
pub(crate) mod identity;
pub(crate) mod locate;
mod network;
mod persistence;
mod program;
mod rule;

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

pub(crate) use self::program::glob as program_glob;
pub use self::rule::{RuleId, Severity};
use self::{
    allow::Allow,
    credential::Catalogue,
    network::Network,
    persistence::Targets,
    program::{Exec, Programs},
};
use crate::{
    ops::config::{Config, RuleOptions},
    process::{
        event::{Action, Event},
        table::ProcessTable,
    },
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
    options: RuleOptions,
    credentials: Catalogue,
    network: Network,
    programs: Programs,
    persistence: Targets,
    allow: Allow,
    program_globs: (Vec<String>, Vec<String>),
}

impl Rules {
    /// The built-in rule set (an empty configuration).
    pub fn defaults() -> Self {
        Self::from_config(&Config::default()).expect("the defaults compile")
    }

    /// Compiles the rule part of `config` (already validated by [`Config::parse`]).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(Self {
            options: config.rules.clone(),
            credentials: Catalogue::compile(&config.credentials)?,
            network: Network::compile(config)?,
            programs: Programs::compile(
                &config.allow.programs.iter().map(|p| p.get_ref().as_str()).collect::<Vec<_>>(),
                &config.install.toolchain.iter().map(|p| p.get_ref().as_str()).collect::<Vec<_>>(),
            )?,
            persistence: Targets::new(),
            allow: Allow::compile(&config.allow)?,
            program_globs: (
                config.allow.programs.iter().map(|p| p.get_ref().clone()).collect(),
                config.install.toolchain.iter().map(|p| p.get_ref().clone()).collect(),
            ),
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
        self.credentials.category(path)
    }

    /// The catalogued credential files that exist under `places`.
    pub(crate) fn locate_credentials<'a>(
        &self,
        places: impl Iterator<Item = &'a locate::Place>,
    ) -> Vec<locate::Found> {
        locate::locate(&self.credentials, places)
    }

    /// The persistence target files the file watch marks that exist under `places` (see
    /// [`persistence::Targets::marked_patterns`]); user-site `.pth` and customize files only
    /// with `python_hooks`.
    pub(crate) fn locate_persistence<'a>(
        &self,
        places: impl Iterator<Item = &'a locate::Place>,
        python_hooks: bool,
    ) -> Vec<locate::Found> {
        locate::locate(&locate::TargetFiles { targets: &self.persistence, python_hooks }, places)
    }

    /// The persistence directories that exist under `places`, where a new file is a target.
    pub(crate) fn locate_persistence_dirs<'a>(
        &self,
        places: impl Iterator<Item = &'a locate::Place>,
    ) -> Vec<locate::Found> {
        let dirs: Vec<&str> = self.persistence.directories().collect();
        locate::locate_dirs(&dirs, places)
    }

    /// The persistence category of `path`, if it is a target.
    pub(crate) fn persistence_target(&self, path: &Path) -> Option<&'static str> {
        self.persistence.category(path)
    }

    /// The rule an event of pre-main code breaks, if any. `installing` tells that the code
    /// runs as part of a package installation, where the package index and the build
    /// toolchain are expected; `table` knows the acting process's ancestors.
    pub fn evaluate(&self, event: &Event, installing: bool, table: &ProcessTable) -> Option<Hit> {
        let (rule, target, category) = match &event.action {
            Action::Open { path, flags, alias_of, .. } => {
                let credential = self
                    .credentials
                    .read(path, *flags)
                    .or_else(|| alias_of.as_deref().and_then(|a| self.credentials.read(a, *flags)));
                if let Some(category) = credential {
                    (RuleId::CredentialRead, path.to_string_lossy().into_owned(), Some(category.to_owned()))
                } else if persistence::writes(*flags)
                    && let Some(category) = self.persistence.category(path)
                {
                    (RuleId::Persistence, path.to_string_lossy().into_owned(), Some(category.to_owned()))
                } else {
                    return None;
                }
            }
            Action::Name { path, .. } => {
                let category = self.persistence.category(path)?;
                (RuleId::Persistence, path.to_string_lossy().into_owned(), Some(category.to_owned()))
            }
            Action::Memory { target_pid, .. } => (RuleId::ProcessMemory, format!("pid {target_pid}"), None),
            // One alert per process: what the ring is used for is not known.
            Action::Uring { .. } => (RuleId::IoUring, "io_uring".to_owned(), None),
            // Netlink talks to the kernel only (glibc's getaddrinfo opens a raw NETLINK_ROUTE
            // socket for every lookup): nothing leaves the machine through it.
            Action::Socket { family: AF_NETLINK, .. } => return None,
            Action::Socket { family, sock_type, .. } => {
                (RuleId::RawSocket, format!("{} {}", socket_family(*family), socket_type(*sock_type)), None)
            }
            Action::Connect { addr, .. } => {
                (RuleId::NetworkConnect, self.network.target(addr, installing)?, None)
            }
            Action::Send { addr, .. } => (RuleId::NetworkSend, self.network.target(addr, installing)?, None),
            Action::Exec { path, resolution, result, file, .. } => {
                let exec = Exec { path, resolution: *resolution, result: *result, installing };
                let (pid, ppid) = (event.header.pid, event.header.ppid);
                let system_file =
                    |path: &Path| identity::system_program(table, pid, ppid, path, file.as_ref());
                if !self.programs.run(&exec, system_file) {
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

    /// Destinations never alerted (`allow.destinations`), and package index networks (alerted
    /// outside installs only).
    pub(crate) fn network_allowances(&self) -> (&[crate::ops::config::Destination], Vec<ipnet::IpNet>) {
        self.network.allowances()
    }

    /// The globs of `allow.programs` and `install.toolchain`.
    pub(crate) fn program_globs(&self) -> (&[String], &[String]) {
        (&self.program_globs.0, &self.program_globs.1)
    }

    /// A destination no allowlist covers (`installing` or not), as a raw `sockaddr`: the
    /// address of the network actions the guard asks the rules about. `None` when every
    /// candidate is allowed (then so is, in practice, everything).
    pub(crate) fn unallowed_destination(&self, installing: bool) -> Option<Vec<u8>> {
        // TEST-NET-1, TEST-NET-3 and the IPv6 documentation prefix, port 9 (discard).
        let v4 = |a: [u8; 4]| {
            let mut s = vec![2, 0, 0, 9];
            s.extend(a);
            s.extend([0; 8]);
            s
        };
        let mut v6 = vec![10, 0, 0, 9, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8];
        v6.extend([0; 11]);
        v6.extend([1, 0, 0, 0, 0]);
        [v4([192, 0, 2, 1]), v4([203, 0, 113, 1]), v6]
            .into_iter()
            .find(|addr| self.network.target(addr, installing).is_some())
    }

    /// Whether some allowlist exempts processes or culprits (else [`Self::allowed`] is false),
    /// and whether by distribution.
    pub fn exempts(&self) -> (bool, bool) {
        (self.allow.any(), self.allow.by_distribution())
    }

    /// Whether the allowlists exempt this action's process or culprit: `exe` is the acting
    /// executable, `culprit_files` the culprit's files and module names, `distribution` the
    /// package that carries the culprit.
    pub fn allowed(&self, exe: Option<&Path>, culprit_files: &[&Path], distribution: Option<&str>) -> bool {
        self.allow.allowed(exe, culprit_files, distribution)
    }
}

const AF_NETLINK: u32 = 16;

/// `AF_*` names of the families a raw socket is made in.
/// An open with `flags` can change the file: written, created or truncated.
pub(crate) fn open_writes(flags: u32) -> bool {
    persistence::writes(flags)
}

pub(crate) fn socket_family(family: u32) -> &'static str {
    match family {
        2 => "inet",
        10 => "inet6",
        17 => "packet",
        16 => "netlink",
        _ => "other",
    }
}

pub(crate) fn socket_type(sock_type: u32) -> &'static str {
    match sock_type {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        5 => "seqpacket",
        10 => "packet",
        _ => "other",
    }
}

fn glob_set<'a>(patterns: impl Iterator<Item = &'a str>) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(Glob::new(pattern).map_err(|e| format!("bad glob {pattern:?}: {}", e.kind()))?);
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{
        kernel::decode::Header,
        process::{event::ProcessInfo, table::Resolution},
    };

    /// The rule `action` by this process breaks (exec'd paths are looked up from its root).
    fn check(rules: &Rules, action: Action, installing: bool) -> Option<Hit> {
        rules.evaluate(&ev(action), installing, &ProcessTable::new(8))
    }

    fn ev(action: Action) -> Event {
        let pid = std::process::id();
        let header = Header {
            ktime_ns: 0,
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
        Event { header, process: ProcessInfo::default(), action, stack: None }
    }

    fn open(path: &str, flags: u32) -> Action {
        Action::Open {
            path: PathBuf::from(path),
            resolution: Resolution::Absolute,
            requested: None,
            syscall: monitor_common::SYSCALL_OPENAT,
            file: None,
            alias_of: None,
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
        let hit = check(&rules, open("/h/.netrc", 0), false).unwrap();
        assert_eq!(
            (hit.rule, hit.severity, hit.category),
            (RuleId::CredentialRead, Severity::Critical, Some("netrc".into()))
        );
        assert!(check(&rules, open("/h/.netrc", 2), false).is_some());
        assert!(check(&rules, open("/h/.netrc", 1 | 0o100), false).is_none());
    }

    #[test]
    fn a_hard_link_to_a_credential_is_that_credential() {
        let rules = Rules::defaults();
        let mut action = open("/tmp/w/innocent", 0);
        assert!(check(&rules, action.clone(), false).is_none());
        if let Action::Open { alias_of, .. } = &mut action {
            *alias_of = Some(PathBuf::from("/h/.aws/credentials"));
        }
        let hit = check(&rules, action, false).expect("the linked credential");
        assert_eq!(
            (hit.rule, hit.category.as_deref(), hit.target.as_str()),
            (RuleId::CredentialRead, Some("aws"), "/tmp/w/innocent")
        );
    }

    #[test]
    fn persistence_targets_are_writes_to_where_code_runs_later() {
        let rules = Rules::defaults();
        const APPEND: u32 = 0o1 | 0o100 | 0o2000;
        for (path, category) in [
            ("/home/a/.bashrc", "shell-rc"),
            ("/root/.profile", "shell-rc"),
            ("/etc/profile.d/x.sh", "shell-rc"),
            ("/home/a/.ssh/authorized_keys", "ssh-authorized-keys"),
            ("/home/a/.config/systemd/user/evil.service", "systemd-unit"),
            ("/etc/systemd/system/multi-user.target.wants/x.service", "systemd-unit"),
            ("/var/spool/cron/crontabs/root", "cron"),
            ("/etc/cron.d/x", "cron"),
            ("/home/a/.config/autostart/x.desktop", "xdg-autostart"),
            ("/v/lib/python3.12/site-packages/evil.pth", "python-pth"),
            ("/usr/lib/python3/dist-packages/evil.pth", "python-pth"),
            ("/v/lib/python3.12/site-packages/sitecustomize.py", "python-customize"),
            ("/etc/ld.so.preload", "ld-preload"),
        ] {
            let hit = check(&rules, open(path, APPEND), false).unwrap_or_else(|| panic!("{path}"));
            assert_eq!((hit.rule, hit.category.as_deref()), (RuleId::Persistence, Some(category)), "{path}");
            assert!(check(&rules, open(path, 0), false).is_none(), "reading {path}");
        }
        for path in [
            "/home/a/notes.txt",
            "/src/build/lib/evil.pth",
            "/home/a/.bashrc.bak",
            "/tmp/pip-build-env-x/site/__pycache__/sitecustomize.cpython-38.pyc",
        ] {
            assert!(check(&rules, open(path, APPEND), false).is_none(), "{path}");
        }
        let rename = Action::Name {
            op: "rename",
            path: PathBuf::from("/v/site-packages/x.pth"),
            old: PathBuf::from(".evil.tmp"),
            syscall: "io_uring",
            result: 0,
        };
        assert_eq!(check(&rules, rename, false).unwrap().category.as_deref(), Some("python-pth"));
    }

    #[test]
    fn memory_and_raw_sockets() {
        let rules = Rules::defaults();
        let memory = Action::Memory { target_pid: 7, via: "process_vm_readv", path: None, result: 15 };
        let hit = check(&rules, memory, false).unwrap();
        assert_eq!(
            (hit.rule, hit.severity, hit.target.as_str()),
            (RuleId::ProcessMemory, Severity::Critical, "pid 7")
        );
        let raw = Action::Socket { family: 17, sock_type: 3, protocol: 768, result: 3 };
        let hit = check(&rules, raw.clone(), false).unwrap();
        assert_eq!((hit.rule, hit.target.as_str()), (RuleId::RawSocket, "packet raw"));
        let netlink = Action::Socket { family: 16, sock_type: 3, protocol: 0, result: 3 };
        assert!(check(&rules, netlink, false).is_none(), "getaddrinfo's netlink socket is not a raw socket");
        let disabled = configured("[rules.raw-socket]\nenabled = false\n");
        assert!(check(&disabled, raw, false).is_none());
    }

    fn exec(path: &str, result: i64) -> Action {
        Action::Exec {
            path: PathBuf::from(path),
            resolution: Resolution::Absolute,
            argv: Vec::new(),
            result,
            file: None,
            image: None,
        }
    }

    #[test]
    fn exec_rule_skips_path_search_misses_and_stdlib_helpers() {
        let rules = Rules::defaults();
        assert_eq!(check(&rules, exec("/usr/bin/curl", 0), false).unwrap().rule, RuleId::ProgramExec);
        assert!(check(&rules, exec("/usr/bin/curl", -13), false).is_some());
        assert!(check(&rules, exec("/usr/local/bin/curl", -2), false).is_none());
        assert!(check(&rules, exec("/usr/bin/uname", 0), false).is_none());
        assert!(check(&rules, exec("/bin/uname", 0), false).is_none());
        let hit = check(&rules, exec("/tmp/x/uname", 0), false).expect("a program called uname");
        assert_eq!(hit.target, "/tmp/x/uname");
    }

    #[test]
    fn the_build_toolchain_runs_during_installs_only() {
        let rules = Rules::defaults();
        assert!(check(&rules, exec("/usr/bin/gcc", 0), true).is_none());
        assert!(check(&rules, exec("/usr/bin/gcc", 0), false).is_some());
        assert!(check(&rules, exec("/bin/sh", 0), true).is_some());
        let replaced = configured("[install]\ntoolchain = [\"/usr/bin/make\"]\n");
        assert!(check(&replaced, exec("/usr/bin/gcc", 0), true).is_some());
        let allowed = configured("[allow]\nprograms = [\"/usr/bin/g*\"]\n");
        assert!(check(&allowed, exec("/usr/bin/gcc", 0), false).is_none(), "allowed in every phase");
        assert!(check(&allowed, exec("/usr/bin/uname", 0), false).is_some(), "the list replaces the default");
    }

    #[test]
    fn network_families() {
        let rules = Rules::defaults();
        let v4 = [2u8, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
        let hit =
            check(&rules, Action::Connect { addr: v4.clone(), requested: None, fd: 3, result: 0 }, false)
                .unwrap();
        assert_eq!((hit.rule, hit.target.as_str()), (RuleId::NetworkConnect, "127.0.0.1:8080"));
        assert_eq!(
            check(&rules, Action::Send { addr: v4, requested: None, fd: 3, result: 5 }, false).unwrap().rule,
            RuleId::NetworkSend
        );
        let unspec = [0u8; 16].to_vec();
        assert!(
            check(&rules, Action::Connect { addr: unspec, requested: None, fd: 3, result: 0 }, false)
                .is_none()
        );
        let mut nscd = vec![1u8, 0];
        nscd.extend_from_slice(b"/var/run/nscd/socket\0");
        assert!(
            check(&rules, Action::Connect { addr: nscd.clone(), requested: None, fd: 3, result: -2 }, false)
                .is_none()
        );
        nscd.truncate(2);
        nscd.extend_from_slice(b"/run/user/0/evil.sock\0");
        assert!(
            check(&rules, Action::Connect { addr: nscd, requested: None, fd: 3, result: -2 }, false)
                .is_some()
        );
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
        assert!(check(&rules, exec("/usr/bin/curl", 0), false).is_none());
        assert_eq!(check(&rules, open("/h/.netrc", 0), false).unwrap().severity, Severity::Medium);
    }

    #[test]
    fn destinations_and_index_hosts() {
        let v4 = |ip: [u8; 4], port: u16| {
            let mut v = vec![2u8, 0];
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&ip);
            v.extend_from_slice(&[0; 8]);
            Action::Connect { addr: v, requested: None, fd: 3, result: 0 }
        };
        let rules = configured(
            "[allow]\ndestinations = [\"10.0.0.0/8:443\"]\n[install]\nindex_hosts = [\"192.0.2.0/24\"]\n",
        );
        assert!(check(&rules, v4([10, 1, 1, 1], 443), false).is_none());
        assert!(check(&rules, v4([10, 1, 1, 1], 80), false).is_some());
        assert!(check(&rules, v4([192, 0, 2, 7], 443), true).is_none(), "the index during an install");
        assert!(check(&rules, v4([192, 0, 2, 7], 443), false).is_some(), "the index from other code");
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
