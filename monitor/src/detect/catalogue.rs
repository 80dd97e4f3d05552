//! The built-in lists the rules start from: the credential catalogue, the programs and sockets
//! that are not pre-main code reaching out, the build toolchain of installs. The configuration extends or replaces them.

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
/// `ctypes.util.find_library` runs `ldconfig -p`); pip and many libraries trigger them. By
/// absolute path: `/bin` and `/sbin` for systems whose `/usr` is not merged; Ubuntu's
/// `ldconfig` is a script that runs `ldconfig.real`.
pub(crate) const BENIGN_PROGRAMS: &[&str] = &[
    "/usr/bin/uname",
    "/bin/uname",
    "/usr/sbin/ldconfig",
    "/sbin/ldconfig",
    "/usr/sbin/ldconfig.real",
    "/sbin/ldconfig.real",
];

/// The build toolchain a package build runs (setup.py's `build_ext`, PEP 517 backends such as
/// meson-python, scikit-build, maturin): compiler drivers and what they run, assemblers,
/// linkers, archivers, build systems, `pkg-config`, code generators, version control (asked
/// for versions by setuptools-scm), Rust's compiler. Exec'd during `install` only, these are
/// expected. Absolute path globs (`*` stays within one directory; `{a,b}` lists, `{,x}`
/// includes the name without `x`), matched against the path run and the file it leads to,
/// so that Debian's `cc` -> `/etc/alternatives/cc` -> `gcc` -> `gcc-12` ->
/// `x86_64-linux-gnu-gcc-12` matches by either end. Shells are not here: a build's `sh -c`
/// can run anything, and what it runs is the alert.
pub(crate) const TOOLCHAIN: &[&str] = &[
    // Compiler drivers: plain, versioned (gcc-12) and target-prefixed (x86_64-linux-gnu-gcc-12).
    "/usr/bin/{cc,c++,cpp,gcc,g++,gfortran,clang,clang++}{,-[0-9]*}",
    "/usr/bin/*-linux*-{cpp,gcc,g++,gfortran}{,-[0-9]*}",
    "/usr/lib/llvm-*/bin/{clang,clang++,clang-[0-9]*}",
    // What gcc runs: the compilers proper, its link wrapper, link-time optimization.
    "/usr/{lib,libexec}/gcc/*/*/{cc1,cc1plus,f951,collect2,lto1,lto-wrapper}",
    // Assemblers, linkers, archivers and binary tools (binutils, gold, lld, gcc's and LLVM's
    // archiver wrappers).
    "/usr/bin/{as,ld,ld.bfd,ld.gold,ld.lld,gold,lld,ar,ranlib,strip,nm,objcopy,objdump,readelf}",
    "/usr/bin/*-linux*-{as,ld,ld.bfd,ld.gold,gold,ar,ranlib,strip,nm,objcopy,objdump,readelf}",
    "/usr/bin/{gcc,llvm}-{ar,nm,ranlib}{,-[0-9]*}",
    "/usr/lib/llvm-*/bin/{ld.lld,lld,llvm-ar,llvm-nm,llvm-ranlib,llvm-strip}",
    // Build systems, compiler flags, code generators, binary patching, compiler caches.
    "/usr/bin/{make,gmake,cmake,ninja,meson,pkg-config,pkgconf,swig,patchelf,ccache}",
    "/usr/bin/*-linux*-pkg-config",
    "/usr/bin/swig[0-9]*",
    // Version control and Rust extensions (setuptools-rust, maturin).
    "/usr/bin/{git,hg,cargo,rustc}",
    // The same installed by the administrator (a newer git, a compiler built from source):
    // still root-owned system files, which is what allowing by identity checks.
    "/usr/local/bin/{cc,c++,gcc,g++,clang,clang++,make,cmake,ninja,meson,pkg-config,git,hg,cargo,rustc}",
];

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
