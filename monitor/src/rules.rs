//! Default rules: which actions of pre-main code are alerts. The phase decides *whether* an
//! action can alert (never in `runtime`); the rules decide *which* actions do.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{event::Action, sockaddr::SockAddr};

pub const CREDENTIAL_READ: &str = "credential-read";
pub const NETWORK_CONNECT: &str = "network-connect";
pub const NETWORK_SEND: &str = "network-send";
pub const PROGRAM_EXEC: &str = "program-exec";

/// `(rule, severity)` of the default rule set.
pub const DEFAULT_RULES: &[(&str, &str)] = &[
    (CREDENTIAL_READ, "critical"),
    (NETWORK_CONNECT, "high"),
    (NETWORK_SEND, "high"),
    (PROGRAM_EXEC, "high"),
];

/// Credential files: `(catalogue entry, glob)`. `**/` matches any home directory, including
/// ones outside `/home` (containers, CI runners, temporary HOMEs).
pub const CREDENTIALS: &[(&str, &str)] = &[
    ("aws", "**/.aws/credentials"),
    ("aws", "**/.aws/config"),
    ("aws", "**/.aws/sso/cache/*"),
    ("gcloud", "**/.config/gcloud/**"),
    ("azure", "**/.azure/**"),
    ("ssh-private-key", "**/.ssh/id_*"),
    ("ssh-private-key", "**/.ssh/*_key"),
    ("ssh-private-key", "/etc/ssh/ssh_host_*_key"),
    ("kubeconfig", "**/.kube/config"),
    ("kubeconfig", "/etc/kubernetes/*.conf"),
    ("kubernetes-token", "/var/run/secrets/kubernetes.io/serviceaccount/*"),
    ("kubernetes-token", "/run/secrets/kubernetes.io/serviceaccount/*"),
    ("kubernetes-token", "/var/run/secrets/eks.amazonaws.com/serviceaccount/*"),
    ("docker-auth", "**/.docker/config.json"),
    ("registry-auth", "**/.config/containers/auth.json"),
    ("registry-auth", "/run/containers/*/auth.json"),
    ("netrc", "**/.netrc"),
    ("pypirc", "**/.pypirc"),
    ("git-credentials", "**/.git-credentials"),
    ("git-credentials", "**/.config/git/credentials"),
    ("npmrc", "**/.npmrc"),
    ("github-cli", "**/.config/gh/hosts.yml"),
    ("vault-token", "**/.vault-token"),
    ("terraform", "**/.terraform.d/credentials.tfrc.json"),
    ("dotenv", "**/.env"),
    ("dotenv", "**/.env.*"),
    ("gnupg", "**/.gnupg/**"),
    ("process-environ", "/proc/*/environ"),
    ("process-environ", "/proc/*/task/*/environ"),
    ("shadow", "/etc/shadow"),
    ("shadow", "/etc/gshadow"),
    ("browser-store", "**/.mozilla/firefox/*/logins.json"),
    ("browser-store", "**/.mozilla/firefox/*/key4.db"),
    ("browser-store", "**/.mozilla/firefox/*/cookies.sqlite"),
    ("browser-store", "**/.config/google-chrome/*/Login Data"),
    ("browser-store", "**/.config/google-chrome/*/Cookies"),
    ("browser-store", "**/.config/chromium/*/Login Data"),
    ("browser-store", "**/.config/chromium/*/Cookies"),
    ("browser-store", "**/.config/BraveSoftware/Brave-Browser/*/Login Data"),
    ("wallet", "**/.bitcoin/wallet.dat"),
    ("wallet", "**/.bitcoin/wallets/**"),
    ("wallet", "**/.electrum/wallets/*"),
    ("wallet", "**/.ethereum/keystore/*"),
    ("wallet", "**/.config/solana/id.json"),
    ("wallet", "**/.config/Exodus/exodus.wallet/**"),
];

/// Programs the standard library runs on its own at import time (`platform` runs `uname -p`,
/// `ctypes.util.find_library` runs `ldconfig -p`); pip and many libraries trigger them.
pub const BENIGN_PROGRAMS: &[&str] = &["uname", "ldconfig", "ldconfig.real"];

/// Never credentials even when a pattern above matches.
const NOT_CREDENTIALS: &[&str] = &["**/*.pub", "**/.env.example", "**/.env.sample", "**/.gnupg/*.conf"];

/// What matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub rule: &'static str,
    pub severity: &'static str,
    /// What the action touched, the folding key with the process and rule.
    pub target: String,
    /// The catalogue entry, for credential reads.
    pub category: Option<&'static str>,
}

pub struct Rules {
    credentials: GlobSet,
    not_credentials: GlobSet,
}

impl Rules {
    pub fn defaults() -> Self {
        let build = |patterns: &mut dyn Iterator<Item = &str>| {
            let mut builder = GlobSetBuilder::new();
            for pattern in patterns {
                // The catalogue is compiled in and covered by a test.
                builder.add(Glob::new(pattern).expect("valid built-in glob"));
            }
            builder.build().expect("valid built-in glob set")
        };
        Self {
            credentials: build(&mut CREDENTIALS.iter().map(|(_, g)| *g)),
            not_credentials: build(&mut NOT_CREDENTIALS.iter().copied()),
        }
    }

    /// The catalogue entry `path` belongs to.
    pub fn credential(&self, path: &Path) -> Option<&'static str> {
        if self.not_credentials.is_match(path) {
            return None;
        }
        let first = *self.credentials.matches(path).first()?;
        Some(CREDENTIALS[first].0)
    }

    /// The rule an action of pre-main code breaks, if any.
    pub fn evaluate(&self, action: &Action) -> Option<Hit> {
        let hit = |rule: &'static str, target: String, category| Hit {
            rule,
            severity: severity(rule),
            target,
            category,
        };
        match action {
            Action::Open { path, flags, .. } => {
                const O_ACCMODE: u32 = 3;
                const O_WRONLY: u32 = 1;
                if flags & O_ACCMODE == O_WRONLY {
                    return None;
                }
                let category = self.credential(path)?;
                Some(hit(CREDENTIAL_READ, path.to_string_lossy().into_owned(), Some(category)))
            }
            Action::Connect { addr, .. } => {
                network_target(addr).map(|target| hit(NETWORK_CONNECT, target, None))
            }
            Action::Send { addr, .. } => network_target(addr).map(|target| hit(NETWORK_SEND, target, None)),
            Action::Exec { path, result, .. } => {
                // A PATH search tries every directory: the misses are not programs run.
                const ENOENT: i64 = 2;
                const ENOTDIR: i64 = 20;
                if *result == -ENOENT || *result == -ENOTDIR {
                    return None;
                }
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if BENIGN_PROGRAMS.contains(&name.as_str()) {
                    return None;
                }
                Some(hit(PROGRAM_EXEC, path.to_string_lossy().into_owned(), None))
            }
            Action::Image { .. } | Action::Fork { .. } | Action::Exit { .. } | Action::Marker(_) => None,
        }
    }
}

fn severity(rule: &str) -> &'static str {
    DEFAULT_RULES.iter().find(|(r, _)| *r == rule).map_or("high", |(_, s)| s)
}

/// Local sockets the C library and logging use on behalf of any program (user and host
/// lookups, syslog): not the program reaching out.
pub const SYSTEM_SOCKETS: &[&str] = &[
    "/var/run/nscd/socket",
    "/run/nscd/socket",
    "/var/lib/sss/pipes/nss",
    "/dev/log",
    "/run/systemd/journal/socket",
    "/run/systemd/journal/dev-log",
    "/run/systemd/userdb/io.systemd.DynamicUser",
    "/run/systemd/userdb/io.systemd.Multiplexer",
    "/run/systemd/userdb/io.systemd.NameServiceSwitch",
];

/// Internet and UNIX-socket destinations; `AF_UNSPEC` (a UDP "disconnect"), other families
/// and the [`SYSTEM_SOCKETS`] are not network activity.
fn network_target(addr: &[u8]) -> Option<String> {
    let parsed = SockAddr::parse(addr);
    let target = parsed.render();
    let wanted =
        matches!(parsed.family(), "inet" | "inet6" | "unix") && !SYSTEM_SOCKETS.contains(&target.as_str());
    wanted.then_some(target)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::process::Resolution;

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
        let hit = rules.evaluate(&open("/h/.netrc", 0)).unwrap();
        assert_eq!((hit.rule, hit.severity, hit.category), (CREDENTIAL_READ, "critical", Some("netrc")));
        assert!(rules.evaluate(&open("/h/.netrc", 2)).is_some());
        assert!(rules.evaluate(&open("/h/.netrc", 1 | 0o100)).is_none());
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
        assert_eq!(rules.evaluate(&exec("/usr/bin/curl", 0)).unwrap().rule, PROGRAM_EXEC);
        assert!(rules.evaluate(&exec("/usr/bin/curl", -13)).is_some());
        assert!(rules.evaluate(&exec("/usr/local/bin/curl", -2)).is_none());
        assert!(rules.evaluate(&exec("/usr/bin/uname", 0)).is_none());
    }

    #[test]
    fn network_families() {
        let rules = Rules::defaults();
        let v4 = [2u8, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
        let hit = rules.evaluate(&Action::Connect { addr: v4.clone(), fd: 3, result: 0 }).unwrap();
        assert_eq!((hit.rule, hit.target.as_str()), (NETWORK_CONNECT, "127.0.0.1:8080"));
        assert_eq!(rules.evaluate(&Action::Send { addr: v4, fd: 3, result: 5 }).unwrap().rule, NETWORK_SEND);
        let unspec = [0u8; 16].to_vec();
        assert!(rules.evaluate(&Action::Connect { addr: unspec, fd: 3, result: 0 }).is_none());
        let mut nscd = vec![1u8, 0];
        nscd.extend_from_slice(b"/var/run/nscd/socket\0");
        assert!(rules.evaluate(&Action::Connect { addr: nscd.clone(), fd: 3, result: -2 }).is_none());
        nscd.truncate(2);
        nscd.extend_from_slice(b"/run/user/0/evil.sock\0");
        assert!(rules.evaluate(&Action::Connect { addr: nscd, fd: 3, result: -2 }).is_some());
    }
}
