//! What the workloads need: the interpreter, a venv with many `.pth` files, the compiled
//! syscall storm, the rendered bpftrace scripts, all under a work directory removed at the end.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::proc;

/// Stdlib modules a typical tool imports at start-up.
pub(crate) const STARTUP_IMPORTS: &str = "import argparse, base64, collections, dataclasses, datetime, decimal, \
     email.parser, hashlib, json, logging, pathlib, re, shutil, socket, subprocess, tempfile, threading, \
     typing, urllib.request";

/// `.pth` files in the venv: editable-install style path lines, and some that run an import
/// line as setuptools' `distutils-precedence.pth` does.
const PTH_PATHS: usize = 30;
pub(crate) const PTH_IMPORTS: usize = 4;

/// A CPython the Python workloads run.
#[derive(Debug, Clone)]
pub(crate) struct Python {
    pub(crate) path: PathBuf,
    /// `3.12.1`.
    pub(crate) version: String,
    pub(crate) minor: u8,
    /// The file holding `PySys_Audit` (libpython or the executable), as premain sees it.
    pub(crate) image: PathBuf,
}

/// Removed (recursively) on drop, also when the bench fails.
pub(crate) struct WorkDir(pub(crate) PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct Env {
    pub(crate) root: PathBuf,
    pub(crate) premain: PathBuf,
    pub(crate) python: Python,
    pub(crate) venv_python: PathBuf,
    /// A venv of `python` with no `.pth` file: the runtime workload's, whose start-up hooks run
    /// no code (the base interpreter's site-packages may hold code-running `.pth` files).
    pub(crate) plain_python: PathBuf,
    pub(crate) storm: PathBuf,
    /// A small file the workloads open.
    pub(crate) data: PathBuf,
    pub(crate) floor_script: PathBuf,
    pub(crate) peer_script: PathBuf,
    pub(crate) bpftrace_version: String,
    pub(crate) pth_files: usize,
    pub(crate) work: WorkDir,
}

impl Env {
    pub(crate) fn prepare(
        root: &Path,
        premain: Option<&Path>,
        python: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let premain = premain.map_or_else(|| root.join("target/release/premain"), Path::to_path_buf);
        if !premain.is_file() {
            bail!("{} is missing: build it first (cargo xtask build)", premain.display());
        }
        let work = root.join("target/bench/work");
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let work = WorkDir(work);
        let dir = work.0.clone();

        let python = match python {
            Some(path) => inspect(&premain, path)?,
            None => find_python(&premain)?,
        };
        let data = dir.join("data.txt");
        fs::write(&data, "bench\n")?;

        let storm = dir.join("storm");
        let gcc = Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&storm)
            .arg(root.join("bench/storm.c"))
            .status()
            .context("running gcc")?;
        if !gcc.success() {
            bail!("gcc bench/storm.c failed ({gcc})");
        }

        let venv_python = make_venv(&python, &dir)?;
        let plain_python = plain_venv(&python, &dir)?;
        let floor_script = root.join("bench/floor.bt");
        let peer_script = dir.join("peer.bt");
        let template = fs::read_to_string(root.join("bench/peer.bt")).context("reading bench/peer.bt")?;
        let (co_filename, str_data) = layout(python.minor);
        fs::write(
            &peer_script,
            template
                .replace("@LIBPYTHON@", &python.image.to_string_lossy())
                .replace("@CO_FILENAME@", &co_filename.to_string())
                .replace("@STR_DATA@", &str_data.to_string()),
        )?;
        let bpftrace_version = proc::output("bpftrace", &["--version"])
            .context("bpftrace is needed for the floor and the peer (cargo xtask setup installs it)")?
            .trim()
            .to_owned();
        Ok(Self {
            root: root.to_path_buf(),
            premain,
            python,
            venv_python,
            plain_python,
            storm,
            data,
            floor_script,
            peer_script,
            bpftrace_version,
            pth_files: PTH_PATHS + PTH_IMPORTS,
            work,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.work.0
    }

    pub(crate) fn script(&self, name: &str) -> PathBuf {
        self.root.join("bench").join(name)
    }

    /// A Python command with the caller's Python environment variables cleared.
    pub(crate) fn python_command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        for var in ["PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE", "PYTHONUSERBASE"]
        {
            command.env_remove(var);
        }
        command
    }
}

/// Byte offsets of `co_filename` in a code object and of the characters of a compact ASCII
/// `str`, as premain's probes use them (monitor/src/kernel/probes.rs) for a non-free-threaded build.
fn layout(minor: u8) -> (u32, u32) {
    let co_filename = if minor <= 10 { 104 } else { 112 };
    let str_data = if minor <= 11 { 48 } else { 40 };
    (co_filename, str_data)
}

/// The newest pyenv CPython 3.12 (else 3.13, 3.11): Debian's python3.11 would shadow a
/// `sitecustomize` on PYTHONPATH with its own, which the capacity and alert workloads use.
fn find_python(premain: &Path) -> anyhow::Result<Python> {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let versions = home.join(".pyenv/versions");
    for minor in [12u8, 13, 11] {
        let mut found: Vec<PathBuf> = fs::read_dir(&versions)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("3.{minor}.")) && !n.ends_with('t'))
            })
            .map(|p| p.join(format!("bin/python3.{minor}")))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(path) = found.pop() {
            return inspect(premain, &path);
        }
    }
    bail!("no pyenv CPython 3.11-3.13 under {}: pass --python PATH", versions.display())
}

fn inspect(premain: &Path, path: &Path) -> anyhow::Result<Python> {
    let path = path.to_string_lossy().into_owned();
    let text = proc::output(premain, &["interpreter", &path])?;
    let info: serde_json::Value = serde_json::from_str(text.trim()).context("premain interpreter output")?;
    if info["python"] != true {
        bail!("{path} is not a CPython premain recognises");
    }
    let version =
        proc::output(&path, &["-c", "import platform; print(platform.python_version())"])?.trim().to_owned();
    let minor = version.split('.').nth(1).and_then(|m| m.parse().ok()).context("python version")?;
    Ok(Python {
        path: PathBuf::from(&path),
        version,
        minor,
        image: PathBuf::from(info["image"].as_str().context("interpreter image")?),
    })
}

/// A venv of `python` with no `.pth` file; returns its interpreter.
fn plain_venv(python: &Python, dir: &Path) -> anyhow::Result<PathBuf> {
    let venv = dir.join("plain-venv");
    let status = Command::new(&python.path)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .context("creating the plain venv")?;
    if !status.success() {
        bail!("{} -m venv failed ({status})", python.path.display());
    }
    Ok(venv.join("bin/python"))
}

/// A venv of `python` with `PTH_PATHS + PTH_IMPORTS` `.pth` files; returns its interpreter.
fn make_venv(python: &Python, dir: &Path) -> anyhow::Result<PathBuf> {
    let venv = dir.join("venv");
    let status = Command::new(&python.path)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .context("creating the venv")?;
    if !status.success() {
        bail!("{} -m venv failed ({status})", python.path.display());
    }
    let site = venv.join(format!("lib/python3.{}/site-packages", python.minor));
    for i in 0..PTH_PATHS {
        let target = dir.join(format!("pth/src{i:02}"));
        fs::create_dir_all(target.join(format!("bench_pkg{i:02}")))?;
        fs::write(target.join(format!("bench_pkg{i:02}/__init__.py")), "")?;
        fs::write(site.join(format!("bench_editable_{i:02}.pth")), format!("{}\n", target.display()))?;
    }
    for i in 0..PTH_IMPORTS {
        fs::write(
            site.join(format!("bench_hook_{i:02}.pth")),
            format!("import os; os.environ.setdefault('BENCH_PTH_{i:02}', '1')\n"),
        )?;
    }
    Ok(venv.join("bin/python"))
}
