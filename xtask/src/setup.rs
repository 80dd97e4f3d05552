//! Installs the BPF toolchain on a fresh machine of this kind (Debian 12), idempotently.
//!
//! rustup's toolchains here have no `rust-src`, so `core` for `bpfel-unknown-none` comes
//! prebuilt from Debian (`libstd-rust-web-dev-bpf`, with its rustc/cargo), and bpf-linker is
//! built against Debian's LLVM 22, the LLVM of that rustc.
//!
//! It also builds the Python venv the deploy tests validate manifests with (see
//! [`tools_venv`]).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// Debian packages: Debian's BPF-capable rustc/cargo and `core`, and LLVM for bpf-linker; `curl`
/// for the scenario tests; `python3-venv` for the deploy tests' venv (Debian's python3 has no
/// `ensurepip` without it).
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "curl",
    "python3-venv",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// The deploy tests' Python tools, pinned with hashes.
const TOOLS_REQUIREMENTS: &str = "tests/requirements-deploy.txt";
/// Written into the venv once its tools are installed: a copy of the requirements it holds.
const TOOLS_STAMP: &str = "premain-requirements.txt";
/// rpds-py, a dependency of jsonschema, needs it.
const PYTHON_MIN: (u32, u32) = (3, 11);

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
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
    tools_venv(root)?;
    ensure_cargo_fuzz()?;
    eprintln!(
        "xtask: setup: toolchain present (Debian rustc for bpfel-unknown-none, bpf-linker {BPF_LINKER_VERSION}, deploy test tools, cargo-fuzz)"
    );
    Ok(())
}

/// Where the deploy tests' venv lives: `$PREMAIN_TOOLS_VENV`, else `tools/venv` in the cargo
/// target directory. tests/deploy.rs looks in the same places.
fn tools_venv_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("PREMAIN_TOOLS_VENV") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |t| root.join(t));
    target.join("tools/venv")
}

/// Builds the venv with the pinned tools of `TOOLS_REQUIREMENTS`, from scratch, whenever that
/// file differs from the copy the venv was built from: nothing in it needs to survive, and a
/// venv half-built by an interrupted run has no stamp, so it is rebuilt too.
fn tools_venv(root: &Path) -> anyhow::Result<()> {
    let venv = tools_venv_dir(root);
    let requirements_path = root.join(TOOLS_REQUIREMENTS);
    let requirements = fs::read_to_string(&requirements_path)
        .with_context(|| format!("reading {}", requirements_path.display()))?;
    let stamp = venv.join(TOOLS_STAMP);
    // The interpreter a venv links to can disappear (a pyenv version removed).
    let python_runs =
        || Command::new(venv.join("bin/python")).args(["-c", ""]).output().is_ok_and(|o| o.status.success());
    if fs::read_to_string(&stamp).is_ok_and(|s| s == requirements) && python_runs() {
        return Ok(());
    }
    let python = find_python()?;
    eprintln!("xtask: setup: building {} with {}", venv.display(), python.display());
    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    let status =
        Command::new(&python).arg("-m").arg("venv").arg(&venv).status().context("running python -m venv")?;
    if !status.success() {
        bail!("{} -m venv {} failed ({status})", python.display(), venv.display());
    }
    let status = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--require-hashes"])
        .args(["--only-binary", ":all:", "--requirement"])
        .arg(&requirements_path)
        .status()
        .context("running pip install")?;
    if !status.success() {
        bail!("pip install -r {} failed ({status})", requirements_path.display());
    }
    fs::write(&stamp, requirements).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// A Python of at least `PYTHON_MIN` that can make venvs: `$PREMAIN_PYTHON`, Debian's
/// python3, else the newest of pyenv's.
fn find_python() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("PREMAIN_PYTHON").map(PathBuf::from).into_iter().collect();
    candidates.push(PathBuf::from("/usr/bin/python3"));
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(Ok(entries)) = pyenv.map(|p| fs::read_dir(p.join("versions"))) {
        let mut versions: Vec<((u32, u32, u32), PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let mut parts = name.split('.').map(|p| p.parse::<u32>().ok());
                let version = (parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0));
                Some((version, e.path().join("bin/python3")))
            })
            .collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev().map(|(_, path)| path));
    }
    let check = format!(
        "import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= ({}, {}) else 1)",
        PYTHON_MIN.0, PYTHON_MIN.1
    );
    candidates
        .into_iter()
        .find(|python| Command::new(python).args(["-c", &check]).output().is_ok_and(|o| o.status.success()))
        .with_context(|| {
            format!(
                "no Python {}.{}+ with venv and ensurepip (tried $PREMAIN_PYTHON, /usr/bin/python3 and pyenv's): \
                 install Debian's python3-venv or set PREMAIN_PYTHON",
                PYTHON_MIN.0, PYTHON_MIN.1
            )
        })
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

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// cargo-fuzz, for the fuzz targets in `fuzz/`, and a C++ compiler for the libFuzzer they link.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if !Command::new("c++").arg("--version").output().is_ok_and(|out| out.status.success()) {
        install_packages(&["g++"])?;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let present = || {
        Command::new(&cargo).args(["fuzz", "--version"]).output().is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION)
        })
    };
    if present() {
        return Ok(());
    }
    eprintln!("xtask: setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    let status = Command::new(&cargo)
        .args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked", "--force"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() || !present() {
        bail!("cargo install cargo-fuzz {CARGO_FUZZ_VERSION} failed ({status})");
    }
    Ok(())
}
