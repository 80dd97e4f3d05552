//! Builds `monitor-ebpf` for `bpfel-unknown-none` and leaves the object in `OUT_DIR`, where
//! `loader.rs` embeds it.
//!
//! The BPF target needs a prebuilt `core`, which rustup cannot provide here (no `rust-src`), so
//! this uses Debian's rustc/cargo (packages `rustc-web`, `cargo-web`, `libstd-rust-web-dev-bpf`)
//! rather than aya-build, which insists on `-Z build-std` whenever `RUSTC_BOOTSTRAP` is set.
//! `cargo xtask setup` installs all of it.

use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

const BPF_TARGET: &str = "bpfel-unknown-none";
const PACKAGE: &str = "monitor-ebpf";
/// Overrides for where Debian's BPF-capable toolchain lives.
const BPF_RUSTC: &str = "PREMAIN_BPF_RUSTC";
const BPF_CARGO: &str = "PREMAIN_BPF_CARGO";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir.parent().context("monitor/ has no parent")?;
    for dir in ["monitor-ebpf/src", "monitor-ebpf/Cargo.toml", "monitor-common/src", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    for var in [BPF_RUSTC, BPF_CARGO] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    // The host compiler's version, for `premain_build_info{rustc}`.
    let host_rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    if let Ok(out) = Command::new(host_rustc).arg("--version").output() {
        let version = String::from_utf8_lossy(&out.stdout);
        let version = version.split_whitespace().nth(1).unwrap_or("unknown");
        println!("cargo:rustc-env=PREMAIN_RUSTC={version}");
    }

    let rustc = env::var_os(BPF_RUSTC).map_or_else(|| PathBuf::from("/usr/bin/rustc"), PathBuf::from);
    let cargo = env::var_os(BPF_CARGO).map_or_else(|| PathBuf::from("/usr/bin/cargo"), PathBuf::from);
    let sysroot_core = Path::new("/usr/lib/rustlib").join(BPF_TARGET);
    if !rustc.exists() || (env::var_os(BPF_RUSTC).is_none() && !sysroot_core.exists()) {
        bail!(
            "no Rust toolchain for {BPF_TARGET} ({} or {} missing): run `cargo xtask setup`",
            rustc.display(),
            sysroot_core.display()
        );
    }
    let linker = find_bpf_linker()
        .context("bpf-linker not found on PATH or in ~/.cargo/bin: run `cargo xtask setup`")?;
    println!("cargo:rerun-if-changed={}", linker.display());

    // A separate target dir: the outer cargo holds the lock on the workspace's.
    let target_dir = out_dir.join("ebpf-target");
    let mut path = OsString::from(linker.parent().context("bpf-linker path")?);
    path.push(":");
    path.push(env::var_os("PATH").unwrap_or_default());
    let rustflags = ["--cfg=bpf_target_arch=\"x86_64\"", "-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f");

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "--package", PACKAGE, "--bins", "--release", "--target", BPF_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC", &rustc)
        // aya-ebpf uses #![feature]; Debian's compiler is a stable one.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("PATH", path);
    // The outer build's settings must not leak into the BPF build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key.starts_with("RUSTUP_")
            || key.starts_with("RUSTC_WRAPPER")
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    // aya-build's flags: `--btf` makes bpf-linker emit the BTF that ring buffers and globals need.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    let output = cmd.output().with_context(|| format!("running {}", cargo.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
        bail!("building {PACKAGE} failed ({}); see the warnings above", output.status);
    }
    let object = target_dir.join(BPF_TARGET).join("release").join(PACKAGE);
    fs::copy(&object, out_dir.join(PACKAGE)).with_context(|| format!("copying {}", object.display()))?;
    Ok(())
}

fn find_bpf_linker() -> Option<PathBuf> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .chain(cargo_home.map(|home| home.join("bin")))
        .map(|dir| dir.join("bpf-linker"))
        .find(|candidate| candidate.is_file())
}
