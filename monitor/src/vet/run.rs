//! One `premain vet` run: the sandbox is built, premain starts watching, and the packages are
//! put through every phase they can act in, each step a sandboxed process of its own:
//!
//! 1. `prepare`: the venv is created (the installer's own code only) while premain starts;
//! 2. `install`: pip or uv installs the inputs (every build hook runs here). Downloads reach
//!    the sandbox as files (`--find-links`, wheel and sdist paths, project directories), copied
//!    into the run's directory, and, when the run is given an index, from that index alone,
//!    through the sink's relay (see [`super::index`]); with none, pip or uv gets `--no-index`;
//! 3. `startup`: `python -c pass`, so `.pth` lines and customize hooks run;
//! 4. `import`: each top-level module of each distribution the install added, in its own
//!    interpreter with a timeout;
//! 5. `script` (with `--scripts`): each console script with `--help`.
//!
//! A last sandboxed process execs a program no one else runs: its alert tells that premain
//! has handled everything before it. What the run saw ([`Facts`]) is what a report is made of.

use std::{
    ffi::OsString,
    fs::{self, File},
    io,
    os::unix::fs::{PermissionsExt as _, chown},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use super::{
    bait::{self, Bait},
    capture::Capture,
    index::{self, IndexOptions, RelayTarget},
    installed::{self, Installed},
    jail::{Cell, Jail, SANDBOX_GID, SANDBOX_UID},
    netns::NetNs,
    observer::Observer,
    sink::{Sink, SinkConfig},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Installer {
    Pip,
    Uv,
}

impl Installer {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "pip" => Ok(Self::Pip),
            "uv" => Ok(Self::Uv),
            other => Err(format!("unknown installer {other:?}: pip or uv")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VetOptions {
    /// Requirement specs, wheel or sdist files, project directories.
    pub inputs: Vec<String>,
    /// Requirements files (`-r`).
    pub requirements: Vec<PathBuf>,
    /// The CPython to vet with; `python3` on `PATH` when absent.
    pub python: Option<PathBuf>,
    pub installer: Installer,
    /// Where `uv` is, for `--installer uv` (`uv` on `PATH` when absent).
    pub uv: Option<PathBuf>,
    pub find_links: Vec<PathBuf>,
    /// The package index: its URLs are passed to pip or uv unchanged, and its endpoints (the
    /// file hosts' too) are relayed to; none: no index (`--no-index`).
    pub index: IndexOptions,
    pub scripts: bool,
    pub install_timeout: Duration,
    pub step_timeout: Duration,
    /// How long what a step left running (a detached child) may go on after the step's own
    /// process exited, before it is killed.
    pub linger: Duration,
    /// More variables for every step (`NAME=VALUE`), after the bait ones.
    pub env: Vec<(String, String)>,
    /// premain's configuration for the run (its rules and allowlists).
    pub config: Option<PathBuf>,
    /// Keep the run's directory (venv, bait HOME, logs) instead of removing it.
    pub keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Prepare,
    Install,
    Startup,
    Import,
    Script,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub kind: StepKind,
    /// The module imported or the script run.
    pub target: Option<String>,
    #[serde(skip)]
    pub cgroup_id: u64,
    #[serde(with = "system_time")]
    pub started: SystemTime,
    #[serde(with = "system_time")]
    pub ended: SystemTime,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// What the step printed (stdout and stderr), for a reviewer to read.
    pub log: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PythonInfo {
    pub path: PathBuf,
    pub version: String,
    pub prefix: PathBuf,
}

/// Everything one run saw.
#[derive(Debug)]
pub struct Facts {
    pub python: PythonInfo,
    pub installer: Installer,
    pub inputs: Vec<String>,
    pub requirements: Vec<PathBuf>,
    /// The index endpoints relayed (`host:port`); empty: no index.
    pub index_hosts: Vec<String>,
    pub workdir: PathBuf,
    pub home: PathBuf,
    pub venv: PathBuf,
    pub started: SystemTime,
    pub steps: Vec<Step>,
    /// Why the install failed, with its log's last lines: nothing after it ran.
    pub install_failed: Option<String>,
    /// The distributions the install added.
    pub installed: Vec<Installed>,
    /// premain's alerts of the sandbox's processes, with the index of the step that raised it.
    pub alerts: Vec<(usize, Value)>,
    pub baits: Vec<Bait>,
    pub capture: Capture,
}

/// Runs the whole vet; the run's directory is removed unless `opts.keep`.
pub fn run(opts: &VetOptions) -> Result<Facts> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "premain vet needs root: it loads premain's eBPF programs and builds the sandbox (run it with sudo)"
        );
    }
    if opts.inputs.is_empty() && opts.requirements.is_empty() {
        bail!(
            "nothing to vet: give package specs, a requirements file, wheel or sdist files, or a project directory"
        );
    }
    let python = python_info(opts.python.as_deref())?;
    let uv = match opts.installer {
        Installer::Uv => Some(find_program(opts.uv.as_deref(), "uv")?),
        Installer::Pip => None,
    };
    let relay = relay_targets(opts)?;
    let token = token()?;
    let workdir = std::env::temp_dir().join(format!("premain-vet-{token}"));
    fs::create_dir(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let result = in_workdir(opts, &python, uv.as_deref(), relay, &token, &workdir);
    if !opts.keep {
        let _ = fs::remove_dir_all(&workdir);
    }
    result
}

/// The index endpoints the sink relays to, resolved now, on the host: the sandbox reaches
/// these addresses and no others for the whole run.
fn relay_targets(opts: &VetOptions) -> Result<Vec<RelayTarget>> {
    let targets = index::plan(&opts.index.endpoints(), index::resolve)
        .map_err(|e| anyhow!("the package index: {e}"))?;
    for t in &targets {
        tracing::info!(index = %t.label, upstream = ?t.upstream, "vet: the package index is relayed");
    }
    Ok(targets)
}

fn in_workdir(
    opts: &VetOptions,
    python: &PythonInfo,
    uv: Option<&Path>,
    relay: Vec<RelayTarget>,
    token: &str,
    workdir: &Path,
) -> Result<Facts> {
    fs::set_permissions(workdir, fs::Permissions::from_mode(0o700))?;
    chown(workdir, Some(SANDBOX_UID), Some(SANDBOX_GID))?;
    let sandbox_dir = |name: &str| -> Result<PathBuf> {
        let dir = workdir.join(name);
        fs::create_dir(&dir)?;
        chown(&dir, Some(SANDBOX_UID), Some(SANDBOX_GID))?;
        Ok(dir)
    };
    let logs = workdir.join("logs");
    fs::create_dir(&logs)?;
    let tmp = sandbox_dir("tmp")?;
    let home = workdir.join("home");
    let baits = bait::plant(&home, token, SANDBOX_UID, SANDBOX_GID).context("planting the bait HOME")?;
    let staged = sandbox_dir("inputs")?;
    let inputs = stage_inputs(&opts.inputs, &opts.requirements, &staged)?;
    // Copied too: the sandbox user may not be able to read them where they are.
    let mut find_links = Vec::new();
    for (i, links) in opts.find_links.iter().enumerate() {
        if !links.is_dir() {
            bail!("--find-links {}: not a directory", links.display());
        }
        let dest = staged.join(format!("links-{i}"));
        copy_tree(links, &dest).with_context(|| format!("copying {} into the sandbox", links.display()))?;
        chown_tree(&dest)?;
        find_links.push(dest);
    }
    let venv = workdir.join("venv");

    let netns = NetNs::new()?;
    let index_hosts: Vec<String> = relay.iter().map(|t| t.label.clone()).collect();
    let sink =
        Sink::start(&netns, SinkConfig { relay, ..SinkConfig::default() }).context("starting the sink")?;
    let mut reveal: Vec<PathBuf> = vec![python.prefix.clone()];
    if let Some(uv) = uv {
        reveal.extend(uv.parent().map(Path::to_path_buf));
    }
    let mut jail = Jail::new(token, workdir, netns, &reveal)?;
    // premain loads its programs while the venv is made: the venv's creation runs no package
    // code (it is left out of the report), the install is the first step that does.
    let mut observer = Observer::spawn(opts.config.as_deref())?;
    let started = SystemTime::now();

    let mut env: Vec<(OsString, OsString)> = vec![
        ("HOME".into(), home.clone().into()),
        ("USER".into(), "nobody".into()),
        ("LOGNAME".into(), "nobody".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TMPDIR".into(), tmp.clone().into()),
        ("PATH".into(), format!("{}/bin:/usr/local/bin:/usr/bin:/bin", venv.display()).into()),
        ("PIP_NO_INPUT".into(), "1".into()),
        ("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()),
        // Bytecode is written at import instead: compiling all of pip at the venv's creation
        // takes most of a run's time.
        ("PIP_NO_COMPILE".into(), "1".into()),
        ("UV_CACHE_DIR".into(), workdir.join("tmp/uv-cache").into()),
        ("UV_NO_CONFIG".into(), "1".into()),
    ];
    env.extend(bait::environment(&baits).map(|(k, v)| (k.into(), v.into())));
    env.extend(opts.env.iter().map(|(k, v)| (k.into(), v.into())));
    let mut run =
        Runner { jail: &mut jail, env, logs, linger: opts.linger, steps: Vec::new(), cells: Vec::new() };

    let venv_python = venv.join("bin/python");
    let prepare = match uv {
        Some(uv) => {
            let mut c = vec![uv.as_os_str().to_owned(), "venv".into(), "--python".into()];
            c.extend([python.path.clone().into(), venv.clone().into()]);
            c
        }
        None => vec![python.path.clone().into(), "-m".into(), "venv".into(), venv.clone().into()],
    };
    run.step(StepKind::Prepare, None, &prepare, opts.install_timeout)?;
    observer.wait_ready()?;
    tracing::info!(python = %python.path.display(), version = %python.version, "vet: the monitor is watching");
    if !venv_python.exists() {
        bail!(
            "the venv could not be created with {} (see {})",
            python.path.display(),
            run.last_log().display()
        );
    }
    let before: Vec<String> = installed::scan(&venv).into_iter().map(|d| d.name).collect();

    let mut install: Vec<OsString> = match uv {
        Some(uv) => vec![
            uv.as_os_str().to_owned(),
            "pip".into(),
            "install".into(),
            "--python".into(),
            venv_python.clone().into(),
        ],
        None => vec![
            venv_python.clone().into(),
            "-m".into(),
            "pip".into(),
            "install".into(),
            "--no-cache-dir".into(),
        ],
    };
    match &opts.index.index_url {
        Some(url) => {
            install.extend(["--index-url".into(), url.url.clone().into()]);
            for extra in &opts.index.extra_index_urls {
                install.extend(["--extra-index-url".into(), extra.url.clone().into()]);
            }
        }
        None => install.push("--no-index".into()),
    }
    for links in find_links {
        install.push("--find-links".into());
        install.push(links.into());
    }
    install.extend(inputs);
    run.step(StepKind::Install, None, &install, opts.install_timeout)?;
    let done = run.steps.last().expect("the install step");
    // A payload that breaks its own build is still what it did: the steps after are skipped,
    // and the caller decides what a failed install with or without findings means.
    let install_failed = (done.exit_code != Some(0)).then(|| {
        let how =
            if done.timed_out { "timed out".to_owned() } else { format!("failed ({:?})", done.exit_code) };
        let log = fs::read_to_string(&done.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("the install {how}; its last lines:\n{}", tail.join("\n"))
    });
    let installed: Vec<Installed> = if install_failed.is_some() {
        Vec::new()
    } else {
        installed::scan(&venv).into_iter().filter(|d| !before.contains(&d.name)).collect()
    };
    if install_failed.is_none() {
        run.step(
            StepKind::Startup,
            None,
            &[venv_python.clone().into(), "-c".into(), "pass".into()],
            opts.step_timeout,
        )?;
    }
    let mut modules: Vec<&str> =
        installed.iter().flat_map(|d| d.modules.iter().map(String::as_str)).collect();
    modules.sort_unstable();
    modules.dedup();
    for module in modules {
        let argv = vec![venv_python.clone().into(), "-c".into(), format!("import {module}").into()];
        run.step(StepKind::Import, Some(module), &argv, opts.step_timeout)?;
    }
    if opts.scripts {
        for script in installed.iter().flat_map(|d| &d.scripts) {
            let argv = vec![venv.join("bin").join(script).into(), "--help".into()];
            run.step(StepKind::Script, Some(script), &argv, opts.step_timeout)?;
        }
    }
    run.end_marker(&observer, python, workdir, token)?;

    let Runner { steps, cells, .. } = run;
    tracing::info!("vet: every step's alerts are in; stopping the monitor");
    let alerts = observer.stop();
    tracing::info!("vet: the monitor stopped");
    drop(cells);
    let capture = sink.stop();
    drop(jail);
    let alerts = alerts
        .into_iter()
        .filter_map(|a| {
            let id = a["process"]["cgroup_id"].as_u64()?;
            let step = steps.iter().position(|s| s.cgroup_id == id)?;
            Some((step, a))
        })
        .collect();
    Ok(Facts {
        python: python.clone(),
        installer: opts.installer,
        inputs: opts.inputs.clone(),
        requirements: opts.requirements.clone(),
        index_hosts,
        workdir: workdir.to_path_buf(),
        home,
        venv,
        started,
        steps,
        install_failed,
        installed,
        alerts,
        baits,
        capture,
    })
}

struct Runner<'a> {
    jail: &'a mut Jail,
    env: Vec<(OsString, OsString)>,
    logs: PathBuf,
    linger: Duration,
    steps: Vec<Step>,
    /// Kept until premain has stopped: a cgroup removed earlier could have its id reused.
    cells: Vec<Cell>,
}

impl Runner<'_> {
    fn step(
        &mut self,
        kind: StepKind,
        target: Option<&str>,
        argv: &[OsString],
        timeout: Duration,
    ) -> Result<()> {
        let name = format!("{kind:?}-{}", target.unwrap_or("")).to_lowercase();
        tracing::info!(step = %name.trim_end_matches('-'), "vet step");
        let cell = self.jail.cell(&name)?;
        let log = self.logs.join(format!("{:03}-{name}.log", self.steps.len() + 1));
        let out = File::create(&log)?;
        let mut command = self.jail.command(&cell, &argv[0]);
        command
            .args(&argv[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let started = SystemTime::now();
        let (exit_code, timed_out) = run_bounded(&mut command, &cell, timeout)
            .with_context(|| format!("running the {name} step ({})", argv[0].to_string_lossy()))?;
        // What the step left running (a detached payload) may act a while, then ends.
        cell.wait_empty(self.linger);
        cell.kill();
        self.steps.push(Step {
            kind,
            target: target.map(str::to_owned),
            cgroup_id: cell.id,
            started,
            ended: SystemTime::now(),
            exit_code,
            timed_out,
            log,
        });
        self.cells.push(cell);
        Ok(())
    }

    fn last_log(&self) -> &Path {
        self.steps.last().map_or(Path::new(""), |s| &s.log)
    }

    /// Runs, in the sandbox, an interpreter whose `sitecustomize` execs a copy of `/bin/true`
    /// made for this run, and waits for premain's alert of that exec: premain handles records
    /// in the order they were made, so every earlier step's alerts have been printed by then.
    fn end_marker(
        &mut self,
        observer: &Observer,
        python: &PythonInfo,
        workdir: &Path,
        token: &str,
    ) -> Result<()> {
        let dir = workdir.join("tmp/end");
        fs::create_dir_all(dir.join("site"))?;
        let program = dir.join(format!("premain-vet-end-{token}"));
        fs::copy("/bin/true", &program).context("copying /bin/true for the end marker")?;
        fs::write(
            dir.join("site/sitecustomize.py"),
            format!("import subprocess\nsubprocess.run([{:?}])\n", program.display().to_string()),
        )?;
        for path in [&dir, &dir.join("site"), &dir.join("site/sitecustomize.py"), &program] {
            chown(path, Some(SANDBOX_UID), Some(SANDBOX_GID))?;
        }
        let cell = self.jail.cell("end")?;
        let mut command = self.jail.command(&cell, &python.path);
        command
            .args(["-c", "pass"])
            .env("PYTHONPATH", dir.join("site"))
            .env("HOME", dir.as_os_str())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        run_bounded(&mut command, &cell, Duration::from_secs(60))?;
        let path = program.to_string_lossy().into_owned();
        observer.wait_for(Duration::from_secs(30), |a| {
            a["rule"] == "program-exec" && a["action"]["path"] == path.as_str()
        })?;
        self.cells.push(cell);
        Ok(())
    }
}

/// Runs `command` and waits for it at most `timeout`; then everything in `cell` is killed.
fn run_bounded(command: &mut Command, cell: &Cell, timeout: Duration) -> io::Result<(Option<i32>, bool)> {
    let mut child = command.spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status.code(), false));
        }
        if Instant::now() > deadline {
            cell.kill();
            let _ = child.kill();
            let status = child.wait()?;
            return Ok((status.code(), true));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The interpreter's real path, version and prefix, asked of it in isolated mode without
/// `site` (no `.pth` file, no customize hook, nothing from the environment runs).
fn python_info(python: Option<&Path>) -> Result<PythonInfo> {
    let program = find_program(python, "python3")?;
    let output = Command::new(&program)
        .args(["-I", "-S", "-c", "import sys; print(sys.executable); print(sys.base_prefix); print('%d.%d.%d' % sys.version_info[:3])"])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    match (output.status.success(), lines.next(), lines.next(), lines.next()) {
        (true, Some(exe), Some(prefix), Some(version)) => Ok(PythonInfo {
            path: fs::canonicalize(exe).unwrap_or_else(|_| PathBuf::from(exe)),
            prefix: PathBuf::from(prefix),
            version: version.to_owned(),
        }),
        _ => bail!("{} is not a CPython that premain vet can use", program.display()),
    }
}

/// `given`, or `name` on `PATH`.
fn find_program(given: Option<&Path>, name: &str) -> Result<PathBuf> {
    if let Some(path) = given
        && path.components().count() > 1
    {
        return fs::canonicalize(path).with_context(|| format!("{}", path.display()));
    }
    let name = given.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
        .and_then(|p| fs::canonicalize(p).ok())
        .ok_or_else(|| anyhow!("{} was not found on PATH", name.display()))
}

/// Copies the inputs that are files or directories into the run (the sandbox user can read
/// them there, and a build writes into its own copy); specs are passed as they are.
/// Requirements files become `-r FILE` (the files they name by relative path are not copied:
/// give them as inputs).
fn stage_inputs(inputs: &[String], requirements: &[PathBuf], into: &Path) -> Result<Vec<OsString>> {
    let mut args = Vec::new();
    let all = requirements
        .iter()
        .map(|r| (true, r.to_string_lossy().into_owned()))
        .chain(inputs.iter().map(|i| (false, i.clone())));
    for (i, (requirement, input)) in all.enumerate() {
        let input = &input;
        let path = Path::new(input);
        if requirement && !path.is_file() {
            bail!("{input}: no such requirements file");
        }
        if !path.exists() {
            if input.contains('/') {
                bail!("{input}: no such file or directory");
            }
            args.push(input.into());
            continue;
        }
        let name = path.file_name().ok_or_else(|| anyhow!("{input}: not a file or directory name"))?;
        let dest = into.join(format!("{i}")).join(name);
        fs::create_dir_all(dest.parent().unwrap_or(into))?;
        copy_tree(path, &dest).with_context(|| format!("copying {input} into the sandbox"))?;
        chown_tree(&into.join(format!("{i}")))?;
        if requirement {
            args.push("-r".into());
        }
        args.push(dest.into());
    }
    Ok(args)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)
    } else {
        fs::copy(from, to).map(drop)
    }
}

fn chown_tree(path: &Path) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(SANDBOX_UID), Some(SANDBOX_GID))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path())?;
        }
    }
    Ok(())
}

/// 16 random hex digits.
fn token() -> Result<String> {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer we pass.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        bail!("getrandom failed: {}", io::Error::last_os_error());
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

mod system_time {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()))
    }
}

impl Facts {
    /// What the report is built from: the package steps (the venv's creation runs no package
    /// code and is left out) and the alerts they raised.
    pub fn report_input(&self) -> super::report::Input {
        use super::report as r;
        let mut index = vec![None; self.steps.len()];
        let mut steps = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let kind = match step.kind {
                StepKind::Prepare => continue,
                StepKind::Install => r::StepKind::Install,
                StepKind::Startup => r::StepKind::Startup,
                StepKind::Import => r::StepKind::Import,
                StepKind::Script => r::StepKind::Script,
            };
            index[i] = Some(steps.len());
            steps.push(r::Step {
                kind,
                target: step.target.clone(),
                exit_code: step.exit_code,
                timed_out: step.timed_out,
                seconds: step.ended.duration_since(step.started).map_or(0.0, |d| d.as_secs_f64()),
                started: step.started,
                ended: step.ended,
            });
        }
        let baits = self
            .baits
            .iter()
            .map(|b| r::Bait {
                kind: match &b.kind {
                    bait::BaitKind::File { category, path } => {
                        r::BaitKind::File { category: (*category).to_owned(), path: path.clone() }
                    }
                    bait::BaitKind::Env { name } => r::BaitKind::Env { name: (*name).to_owned() },
                },
                value: b.value.clone(),
            })
            .collect();
        let mut inputs: Vec<String> =
            self.requirements.iter().map(|p| format!("-r {}", p.display())).collect();
        inputs.extend(self.inputs.iter().cloned());
        r::Input {
            run: r::RunFacts {
                python_version: self.python.version.clone(),
                python_path: self.python.path.clone(),
                installer: match self.installer {
                    Installer::Pip => "pip".into(),
                    Installer::Uv => "uv".into(),
                },
                inputs,
                // The endpoints relayed: nothing else was reachable.
                index_hosts: self.index_hosts.clone(),
                home: self.home.clone(),
                venv: self.venv.clone(),
                started: self.started,
            },
            steps,
            installed: self.installed.iter().map(|d| (d.name.clone(), d.version.clone())).collect(),
            alerts: self.alerts.iter().filter_map(|(i, a)| Some((index[*i]?, a.clone()))).collect(),
            baits,
            capture: self.capture.clone(),
        }
    }
}
