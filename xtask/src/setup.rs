//! Installs the BPF toolchain on a fresh machine of this kind (Debian 12), idempotently.
//!
//! rustup's toolchains here have no `rust-src`, so `core` for `bpfel-unknown-none` comes
//! prebuilt from Debian (`libstd-rust-web-dev-bpf`, with its rustc/cargo), and bpf-linker is
//! built against Debian's LLVM 22, the LLVM of that rustc.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

/// Debian packages: Debian's BPF-capable rustc/cargo and `core`, and LLVM for bpf-linker; `curl`
/// for the scenario tests.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "curl",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub(crate) fn run() -> anyhow::Result<()> {
    let missing = missing_packages()?;
    if !missing.is_empty() {
        install_packages(&missing)?;
    }
    let linker = bpf_linker_path();
    if !bpf_linker_ok(&linker) {
        install_bpf_linker()?;
        if !bpf_linker_ok(&linker) {
            bail!(
                "bpf-linker {BPF_LINKER_VERSION} still not usable at {} after installing it",
                linker.display()
            );
        }
    }
    if !PathBuf::from("/usr/lib/rustlib/bpfel-unknown-none").is_dir() {
        bail!(
            "Debian's BPF core is missing (/usr/lib/rustlib/bpfel-unknown-none) although libstd-rust-web-dev-bpf is installed"
        );
    }
    eprintln!(
        "xtask: setup: toolchain present (Debian rustc for bpfel-unknown-none, bpf-linker {BPF_LINKER_VERSION})"
    );
    Ok(())
}

fn missing_packages() -> anyhow::Result<Vec<&'static str>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(PACKAGES)
        .output()
        .context("running dpkg-query: this setup needs a Debian machine")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with("install ok installed"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    Ok(PACKAGES.iter().copied().filter(|p| !installed.contains(p)).collect())
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { super::libc_geteuid() == 0 }
}

fn install_packages(packages: &[&str]) -> anyhow::Result<()> {
    if !is_root() {
        bail!("Debian packages missing ({}): run `cargo xtask setup` as root", packages.join(" "));
    }
    eprintln!("xtask: setup: installing {}", packages.join(" "));
    let update = Command::new("apt-get").arg("update").status().context("running apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed ({update})");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", packages.join(" "));
    }
    Ok(())
}

/// What only `cargo xtask bench` needs: bpftrace (the floor and the peer) and gcc (the
/// syscall storm), from Debian.
pub(crate) fn bench_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = [("bpftrace", "bpftrace"), ("gcc", "gcc")]
        .into_iter()
        .filter(|(program, _)| Command::new(program).arg("--version").output().is_err())
        .map(|(_, package)| package)
        .collect();
    if missing.is_empty() { Ok(()) } else { install_packages(&missing) }
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn bpf_linker_path() -> PathBuf {
    cargo_home().join("bin/bpf-linker")
}

fn bpf_linker_ok(path: &PathBuf) -> bool {
    Command::new(path).arg("--version").output().is_ok_and(|out| {
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    })
}

fn install_bpf_linker() -> anyhow::Result<()> {
    eprintln!("xtask: setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (takes a few minutes)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed ({status})");
    }
    Ok(())
}
