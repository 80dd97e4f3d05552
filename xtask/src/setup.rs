//! Installs the BPF toolchain on a fresh machine of this kind (Debian 12), idempotently.
//!
//! rustup's toolchains here have no `rust-src`, so `core` for `bpfel-unknown-none` comes
//! prebuilt from Debian (`libstd-rust-web-dev-bpf`, with its rustc/cargo), and bpf-linker is
//! built against Debian's LLVM 22, the LLVM of that rustc.
//!
//! It also provides every program the test suite runs ([`PROGRAMS`]): Debian packages, tools
//! unpacked from Debian packages into `target/tools/bin` (promtool, kubectl), the Python venv
//! the deploy tests validate manifests with ([`tools_venv`]), and pinned wheels the scenario
//! tests install from ([`wheelhouse`]) and the real applications of `tests/apps.rs` are built
//! from ([`apps_wheelhouse`]), the installers `tests/installers.rs` runs
//! ([`installers_wheelhouse`]), the real packages `tests/vet.rs` vets ([`vet_packages`]) and
//! the SARIF schema it validates vet's reports against ([`sarif_schema`]).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// Debian packages: Debian's BPF-capable rustc/cargo and `core`, and LLVM for bpf-linker;
/// `python3-venv` for the deploy tests' venv (Debian's python3 has no `ensurepip` without it);
/// `libpython3-dev` for the C extension the identity tests build with Debian's python3; and
/// the packages of [`PROGRAMS`].
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "python3-venv",
    "libpython3-dev",
];

/// Where a program the tests run comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum From {
    /// A Debian package setup installs.
    Package(&'static str),
    /// Unpacked from this Debian package into `target/tools/bin`, without installing it: the
    /// package would bring a service (prometheus) or a distribution-wide command.
    Unpacked(&'static str),
    /// Every machine of this kind has it (coreutils, util-linux, binutils with gcc, Python).
    Machine,
}

/// Every program a test runs (checked by `tests::every_program_a_test_runs_is_provided`).
pub(crate) const PROGRAMS: &[(&str, From)] = &[
    ("bpftool", From::Package("bpftool")),
    ("curl", From::Package("curl")),
    ("openssl", From::Package("openssl")),
    ("pahole", From::Package("dwarves")),
    ("promtool", From::Unpacked("prometheus")),
    ("kubectl", From::Unpacked("kubernetes-client")),
    // pip's builds of a C extension run it (tests/identity.rs).
    ("gcc", From::Package("gcc")),
    // A build's setup.py runs it, whose recipe shell is part of the build (tests/identity.rs).
    ("make", From::Package("make")),
    // setuptools-scm reads the version of the app's repository from git (tests/apps.rs).
    ("git", From::Package("git")),
    ("python3", From::Machine),
    // Debian's own CPython, statically linked, with its own sitecustomize.
    ("python3.11", From::Machine),
    ("sh", From::Machine),
    ("bash", From::Machine),
    ("cat", From::Machine),
    ("true", From::Machine),
    ("uname", From::Machine),
    // Run by start-up code and main to show which execs are killed (tests/enforce.rs).
    ("id", From::Machine),
    ("env", From::Machine),
    ("setpriv", From::Machine),
    ("unshare", From::Machine),
    ("mount", From::Machine),
    ("nm", From::Machine),
    ("readelf", From::Machine),
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
    let wanted: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .chain(PROGRAMS.iter().filter_map(|(_, from)| match from {
            From::Package(package) => Some(*package),
            _ => None,
        }))
        .collect();
    let missing = missing_packages(&wanted)?;
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
    unpack_tools(root)?;
    wheelhouse(root)?;
    apps_wheelhouse(root)?;
    installers_wheelhouse(root)?;
    vet_packages(root)?;
    sarif_schema(root)?;
    ensure_cargo_fuzz()?;
    check_programs(root)?;
    eprintln!(
        "xtask: setup: toolchain present (Debian rustc for bpfel-unknown-none, bpf-linker {BPF_LINKER_VERSION}, cargo-fuzz) and every program the tests run"
    );
    Ok(())
}

/// `target/tools` (or `$CARGO_TARGET_DIR/tools`): what setup builds for the tests.
pub(crate) fn tools_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |t| root.join(t));
    target.join("tools")
}

/// Unpacks the [`From::Unpacked`] programs' packages (`apt-get download`, `dpkg -x`) and puts
/// their `usr/bin/<program>` in `target/tools/bin`.
fn unpack_tools(root: &Path) -> anyhow::Result<()> {
    let bin = tools_dir(root).join("bin");
    for (program, from) in PROGRAMS {
        let From::Unpacked(package) = from else { continue };
        let dest = bin.join(program);
        if Command::new(&dest).arg("--help").output().is_ok_and(|o| o.status.success()) {
            continue;
        }
        eprintln!("xtask: setup: unpacking {program} from Debian's {package}");
        let scratch = tools_dir(root).join(format!("unpack-{package}"));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let status = Command::new("apt-get")
            // The download lands in a directory of root's: no sandbox user.
            .args(["-o", "APT::Sandbox::User=root", "download", package])
            .current_dir(&scratch)
            .status()
            .context("running apt-get download")?;
        if !status.success() {
            bail!("apt-get download {package} failed ({status}); is apt-get update needed?");
        }
        let deb = fs::read_dir(&scratch)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {package} left no .deb"))?;
        let tree = scratch.join("tree");
        let status =
            Command::new("dpkg").arg("-x").arg(&deb).arg(&tree).status().context("running dpkg -x")?;
        if !status.success() {
            bail!("dpkg -x {} failed ({status})", deb.display());
        }
        fs::create_dir_all(&bin)?;
        fs::copy(tree.join("usr/bin").join(program), &dest)
            .with_context(|| format!("{package} has no usr/bin/{program}"))?;
        fs::remove_dir_all(&scratch)?;
    }
    Ok(())
}

/// Wheels pinned with hashes in `tests/requirements-wheels.txt`, downloaded into
/// `target/tools/wheelhouse` for tests that install packages with no index.
const WHEELS_REQUIREMENTS: &str = "tests/requirements-wheels.txt";
/// The real applications of `tests/apps.rs` and their whole dependency closure, downloaded into
/// `target/tools/apps-wheelhouse` for each of [`APPS_PYTHONS`].
const APPS_REQUIREMENTS: &str = "tests/requirements-apps.txt";
/// The CPython versions the application corpus runs on (tests/apps.rs uses Debian's 3.11 and
/// pyenv's 3.12); their binary wheels are pinned in [`APPS_REQUIREMENTS`].
const APPS_PYTHONS: &[&str] = &["3.11", "3.12"];
/// The installers of `tests/installers.rs` (poetry, pdm, pipx, hatch) and their whole dependency
/// closure, for CPython 3.11, downloaded into `target/tools/installers-wheelhouse`.
const INSTALLERS_REQUIREMENTS: &str = "tests/requirements-installers.txt";
/// What the real-package run of `tests/vet.rs` adds to the apps wheelhouse (requests, numpy),
/// for [`VET_PYTHON`], downloaded into `target/tools/vet-wheelhouse`.
const VET_REQUIREMENTS: &str = "tests/requirements-vet.txt";
/// Real sdists that run builds in vet's sandbox, downloaded into `target/tools/vet-sdists`.
const VET_SDISTS: &str = "tests/requirements-vet-sdists.txt";
/// The CPython the real-package run of `tests/vet.rs` vets with.
const VET_PYTHON: &str = "3.12";

/// What a download keeps of a pinned release.
#[derive(Clone, Copy)]
enum Dists {
    Wheels,
    /// Sdists only, each without its dependencies: built later, by the test that needs them.
    Sdists,
}

fn wheelhouse(root: &Path) -> anyhow::Result<()> {
    // Only the wheels listed: the scenario tests install each with `--no-deps`.
    download(root, WHEELS_REQUIREMENTS, "wheelhouse", Dists::Wheels, &[None], &["--no-deps"])
}

fn apps_wheelhouse(root: &Path) -> anyhow::Result<()> {
    let versions: Vec<Option<&str>> = APPS_PYTHONS.iter().copied().map(Some).collect();
    // With dependencies: under --require-hashes pip fails on any dependency not pinned in the
    // file, so the closure the apps install with no index is known to be complete.
    download(root, APPS_REQUIREMENTS, "apps-wheelhouse", Dists::Wheels, &versions, &[])
}

fn installers_wheelhouse(root: &Path) -> anyhow::Result<()> {
    // With dependencies, as for the apps: the closure the tests install with no index is known
    // to be complete. For 3.11 whatever the tools venv runs: the tests run the installers on
    // Debian's CPython 3.11.
    download(root, INSTALLERS_REQUIREMENTS, "installers-wheelhouse", Dists::Wheels, &[Some("3.11")], &[])
}

fn vet_packages(root: &Path) -> anyhow::Result<()> {
    // With dependencies, as for the apps: the closure is known to be complete.
    download(root, VET_REQUIREMENTS, "vet-wheelhouse", Dists::Wheels, &[Some(VET_PYTHON)], &[])?;
    download(root, VET_SDISTS, "vet-sdists", Dists::Sdists, &[None], &["--no-deps"])
}

/// Downloads the wheels or sdists of `requirements` into `target/tools/<into>` with the tools
/// venv's pip (for each of `versions`, a target CPython other than the venv's own when given),
/// unless the directory's stamp is a copy of that file: a change to it, or an interrupted
/// download (no stamp), downloads them all again into an emptied directory.
fn download(
    root: &Path,
    requirements: &str,
    into: &str,
    dists: Dists,
    versions: &[Option<&str>],
    extra: &[&str],
) -> anyhow::Result<()> {
    let dir = tools_dir(root).join(into);
    let requirements_path = root.join(requirements);
    let text = fs::read_to_string(&requirements_path)
        .with_context(|| format!("reading {}", requirements_path.display()))?;
    let stamp = dir.join(TOOLS_STAMP);
    if fs::read_to_string(&stamp).is_ok_and(|s| s == text) {
        return Ok(());
    }
    let venv = tools_venv_dir(root);
    let _ = fs::remove_dir_all(&dir);
    for version in versions {
        eprintln!(
            "xtask: setup: downloading the pinned {} of {requirements}{}",
            match dists {
                Dists::Wheels => "wheels",
                Dists::Sdists => "sdists",
            },
            version.map(|v| format!(" for CPython {v}")).unwrap_or_default()
        );
        let mut pip = Command::new(venv.join("bin/python"));
        pip.args(["-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--require-hashes"])
            .args(extra)
            .args(match dists {
                Dists::Wheels => ["--only-binary", ":all:"],
                Dists::Sdists => ["--no-binary", ":all:"],
            })
            .arg("--dest")
            .arg(&dir);
        if let Some(version) = version {
            pip.args(["--python-version", version]);
        }
        let status =
            pip.arg("--requirement").arg(&requirements_path).status().context("running pip download")?;
        if !status.success() {
            bail!("pip download -r {} failed ({status})", requirements_path.display());
        }
    }
    fs::write(&stamp, text).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// The OASIS SARIF 2.1.0 JSON schema (`rtm.5`, the one GitHub code scanning takes), as
/// Microsoft's `jest-sarif` package on npm ships it: the package and the file in it are pinned
/// by hash. `tests/vet.rs` validates vet's SARIF against it.
const SARIF_PACKAGE: &str = "@microsoft/jest-sarif@1.0.0-beta.0";
const SARIF_PACKAGE_SHA256: &str = "748e2c3d1a842e7bb258416685c7ea3a0da40005b72267b2052c2856d48ad102";
const SARIF_MEMBER: &str = "package/lib/schemas/sarif-2.1.0-rtm.5.json";
const SARIF_SCHEMA_SHA256: &str = "2d99159ae54a3eea97f81781cff48780548657c35949f4b7f25e99a2ba4de4f8";

/// Puts the SARIF schema at `target/tools/sarif/sarif-2.1.0-rtm.5.json`, fetched with npm
/// (`npm pack`, no scripts run) unless a file with its hash is already there.
fn sarif_schema(root: &Path) -> anyhow::Result<()> {
    let dir = tools_dir(root).join("sarif");
    let name = SARIF_MEMBER.rsplit('/').next().unwrap_or(SARIF_MEMBER);
    let schema = dir.join(name);
    if schema.is_file() && sha256(&schema)? == SARIF_SCHEMA_SHA256 {
        return Ok(());
    }
    eprintln!("xtask: setup: fetching the SARIF 2.1.0 schema ({SARIF_PACKAGE} from npm)");
    let scratch = dir.join("pack");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let status = Command::new("npm")
        .args(["pack", "--ignore-scripts", "--silent", "--pack-destination"])
        .arg(&scratch)
        .arg(SARIF_PACKAGE)
        .current_dir(&scratch)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running npm pack (the machine's Node.js npm fetches the SARIF schema)")?;
    if !status.success() {
        bail!("npm pack {SARIF_PACKAGE} failed ({status})");
    }
    let tarball = fs::read_dir(&scratch)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .with_context(|| format!("npm pack {SARIF_PACKAGE} left no tarball"))?;
    let got = sha256(&tarball)?;
    if got != SARIF_PACKAGE_SHA256 {
        bail!("{SARIF_PACKAGE}: sha256 {got}, pinned {SARIF_PACKAGE_SHA256}");
    }
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&scratch)
        .arg(SARIF_MEMBER)
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("{SARIF_PACKAGE} has no {SARIF_MEMBER} ({status})");
    }
    let got = sha256(&scratch.join(SARIF_MEMBER))?;
    if got != SARIF_SCHEMA_SHA256 {
        bail!("{SARIF_MEMBER} of {SARIF_PACKAGE}: sha256 {got}, pinned {SARIF_SCHEMA_SHA256}");
    }
    fs::rename(scratch.join(SARIF_MEMBER), &schema)
        .with_context(|| format!("writing {}", schema.display()))?;
    fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// The SHA-256 of a file, by coreutils' `sha256sum`.
fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("running sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {} failed ({})", path.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Fails when a program of [`PROGRAMS`] cannot be run, naming it and where it should come from.
fn check_programs(root: &Path) -> anyhow::Result<()> {
    let bin = tools_dir(root).join("bin");
    let mut missing = Vec::new();
    for (program, from) in PROGRAMS {
        let found = match from {
            From::Unpacked(_) => bin.join(program).is_file(),
            From::Package(_) | From::Machine => on_path(program),
        };
        if !found {
            missing.push(format!("{program} ({from:?})"));
        }
    }
    if !missing.is_empty() {
        bail!("programs the tests run are missing after setup: {}", missing.join(", "));
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(program).is_file())
}

/// Where the deploy tests' venv lives: `$PREMAIN_TOOLS_VENV`, else `tools/venv` in the cargo
/// target directory. tests/deploy.rs looks in the same places.
fn tools_venv_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("PREMAIN_TOOLS_VENV") {
        return PathBuf::from(dir);
    }
    tools_dir(root).join("venv")
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

fn missing_packages<'a>(wanted: &[&'a str]) -> anyhow::Result<Vec<&'a str>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(wanted)
        .output()
        .context("running dpkg-query: this setup needs a Debian machine")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with("install ok installed"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    Ok(wanted.iter().copied().filter(|p| !installed.contains(p)).collect())
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

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        fs,
        path::{Path, PathBuf},
    };

    use super::PROGRAMS;

    /// Source files of the tests: the integration tests and their scripts, and the daemon's
    /// unit tests (which live next to its code).
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "py") {
                out.push(path);
            }
        }
    }

    /// The programs `text` runs: `Command::new("x")`, `tool("x")`, `program("x")`,
    /// `run_ok("x", ...)` and copies of `/bin/x` in Rust; `subprocess.*(["x", ...])` and
    /// `shutil.which("x")` in Python. Paths count by their file name.
    fn spawned(text: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut take = |literal: &str| {
            let name = literal.rsplit('/').next().unwrap_or(literal);
            if !name.is_empty() && !name.contains(['{', ' ', '$']) {
                found.insert(name.to_owned());
            }
        };
        for prefix in ["Command::new(\"", "tool(\"", "program(\"", "run_ok(\"", "shutil.which(\""] {
            for (at, _) in text.match_indices(prefix) {
                let rest = &text[at + prefix.len()..];
                take(&rest[..rest.find('"').unwrap_or(0)]);
            }
        }
        for (at, _) in text.match_indices("fs::copy(\"") {
            let rest = &text[at + "fs::copy(\"".len()..];
            let literal = &rest[..rest.find('"').unwrap_or(0)];
            if ["/bin/", "/usr/bin/", "/sbin/", "/usr/sbin/"].iter().any(|d| literal.starts_with(d)) {
                take(literal);
            }
        }
        for (at, _) in text.match_indices("subprocess.") {
            let rest = &text[at..];
            let Some(open) = rest.find('(') else { continue };
            let args = rest[open + 1..].trim_start().strip_prefix('[').map(str::trim_start);
            let Some(args) = args.map(|a| a.strip_prefix('b').unwrap_or(a)) else { continue };
            if let Some(quoted) = args.strip_prefix('"').or_else(|| args.strip_prefix('\'')) {
                take(&quoted[..quoted.find(['"', '\'']).unwrap_or(0)]);
            }
        }
        found
    }

    #[test]
    fn every_program_a_test_runs_is_provided() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        sources(&root.join("tests"), &mut files);
        sources(&root.join("monitor/src"), &mut files);
        let provided: BTreeSet<&str> = PROGRAMS.iter().map(|(name, _)| *name).collect();
        let mut missing = Vec::new();
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for program in spawned(&text) {
                if !provided.contains(program.as_str()) {
                    missing.push(format!("{program} ({})", file.strip_prefix(root).unwrap().display()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "tests run programs `cargo xtask setup` does not provide (PROGRAMS): {missing:?}"
        );
    }

    #[test]
    fn the_scan_finds_spawned_programs() {
        let rust = r#"Command::new("bpftool"); tool("curl"); run_ok("/bin/cat", &[]); fs::copy("/usr/bin/python3.11", x); Command::new(&py.path)"#;
        let python = "subprocess.run(\n    [b\"/bin/true\", x])\nsubprocess.Popen(['/usr/bin/env'])\nshutil.which(\"curl\")";
        let found: Vec<String> = spawned(rust).into_iter().chain(spawned(python)).collect();
        assert_eq!(found, ["bpftool", "cat", "curl", "python3.11", "curl", "env", "true"]);
    }
}
