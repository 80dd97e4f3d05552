//! The built-in lists the rules start from: the credential catalogue, the programs and sockets
//! that are not pre-main code reaching out. The configuration extends or replaces them.

/// Credential files: `(catalogue entry, glob)`. `**/` matches any home directory, including
/// ones outside `/home` (containers, CI runners, temporary HOMEs).
pub(crate) const CREDENTIALS: &[(&str, &str)] = &[
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
pub(crate) const BENIGN_PROGRAMS: &[&str] = &["uname", "ldconfig", "ldconfig.real"];

/// Never credentials even when a pattern above matches.
pub(crate) const NOT_CREDENTIALS: &[&str] =
    &["**/*.pub", "**/.env.example", "**/.env.sample", "**/.gnupg/*.conf"];

/// Local sockets the C library and logging use on behalf of any program (user and host
/// lookups, syslog): not the program reaching out.
pub(crate) const SYSTEM_SOCKETS: &[&str] = &[
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
