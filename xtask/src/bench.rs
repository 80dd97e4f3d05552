//! `cargo xtask bench`: premain's overhead next to a floor and a peer (bpftrace), its capacity,
//! alert latency and memory. Prints a table and writes `target/bench/report.json` and
//! `target/bench/report.md`. Missing a target is a finding, not a failure: the task fails only
//! when the bench could not run.

mod capacity;
mod enforce;
mod env;
mod first_run;
mod latency;
mod memory;
mod overhead;
mod proc;
mod report;
mod stats;
mod tracer;
mod vet;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

#[derive(clap::Args)]
pub(crate) struct Options {
    /// Rounds of the overhead measurement [default: 9, or 3 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Fewer rounds and smaller loads (about 3 minutes instead of about 10).
    #[arg(long)]
    quick: bool,
    /// Run only these parts.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Part>,
    /// The CPython the Python workloads run [default: the newest pyenv 3.12].
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Measure this premain binary instead of target/release/premain (to compare builds).
    #[arg(long, value_name = "PATH")]
    premain: Option<PathBuf>,
    /// Before each overhead sample and each other part, wait up to this long for other premain
    /// or bpftrace processes (other people's tests) to stop and for the CPUs to be mostly idle;
    /// samples taken with other tracers running are marked.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    quiet_wait: u64,
    /// The most all those waits may take together.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    quiet_budget: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Overhead,
    Capacity,
    Latency,
    Memory,
    FirstRun,
    Enforce,
    Vet,
}

/// How much each part does.
pub(crate) struct Sizes {
    rounds: usize,
    /// Runs per sample of the storm and runtime workloads (their median is the sample).
    reps: usize,
    storm_opens: u64,
    storm_connects: u64,
    startup_runs: usize,
    runtime_imports: u64,
    runtime_opens: u64,
    capacity_workers: usize,
    /// Offered total rates (records/s) of the paced capacity steps.
    capacity_rates: Vec<f64>,
    capacity_secs: f64,
    capacity_unpaced_opens: u64,
    /// Ring buffer bytes of the loss-accounting run.
    accounting_ring: u32,
    latency_alerts: usize,
    latency_interval: Duration,
    latency_load_rate: u64,
    sleepers: usize,
    churn: usize,
    /// Fresh interpreters whose first run is timed, per tracer.
    first_runs: usize,
    quiet_wait: Duration,
}

impl Sizes {
    fn new(quick: bool, rounds: Option<usize>, quiet_wait: u64) -> Self {
        Self {
            rounds: rounds.unwrap_or(if quick { 3 } else { 9 }).max(1),
            reps: 3,
            storm_opens: 300_000,
            storm_connects: 20_000,
            startup_runs: if quick { 10 } else { 20 },
            runtime_imports: 1_000_000,
            runtime_opens: 30_000,
            capacity_workers: if quick { 8 } else { 16 },
            capacity_rates: if quick { vec![250e3] } else { vec![100e3, 200e3, 250e3, 300e3, 400e3] },
            capacity_secs: if quick { 1.0 } else { 2.0 },
            capacity_unpaced_opens: if quick { 10_000 } else { 20_000 },
            accounting_ring: 64 * 1024,
            latency_alerts: if quick { 50 } else { 200 },
            latency_interval: Duration::from_millis(50),
            latency_load_rate: 20_000,
            sleepers: 1_000,
            churn: if quick { 20_000 } else { 100_000 },
            first_runs: if quick { 5 } else { 15 },
            quiet_wait: Duration::from_secs(quiet_wait),
        }
    }
}

pub(crate) fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads eBPF programs: run `cargo xtask bench` as root");
    }
    let started = Instant::now();
    let sizes = Sizes::new(opts.quick, opts.rounds, opts.quiet_wait);
    let wants = |part| opts.only.is_empty() || opts.only.contains(&part);
    proc::set_quiet_budget(Duration::from_secs(if opts.quick {
        opts.quiet_budget.min(60)
    } else {
        opts.quiet_budget
    }));
    let env = env::Env::prepare(root, opts.premain.as_deref(), opts.python.as_deref())?;
    let mut report = Map::new();
    report.insert("schema".into(), json!("premain.bench/v1"));
    report.insert("date".into(), json!(now_utc()));
    report.insert("quick".into(), json!(opts.quick));
    report.insert("machine".into(), machine());
    report.insert("premain".into(), premain_version(root, &env.premain));
    report.insert(
        "python".into(),
        json!({
            "version": env.python.version,
            "path": env.python.path,
            "image": env.python.image,
            "venv_pth_files": env.pth_files,
        }),
    );
    report.insert("bpftrace".into(), json!(env.bpftrace_version));
    report.insert(
        "peer".into(),
        json!({
            "floor_script": "bench/floor.bt",
            "peer_script": "bench/peer.bt",
            "what": "floor: a program with a never-true predicate on sys_enter/exit_openat and sys_enter/exit_connect. \
                     peer: bpftrace on premain's hooks (sys_enter/exit of openat, openat2, connect, sendto, sendmsg, execve, execveat; \
                     sched_process_exec/fork/exit; uprobes on the workloads' libpython PySys_Audit (filtered to cpython.run_*) and \
                     PyEval_EvalCode entry (co_filename) and return), tracking processes whose comm starts with `python` and their \
                     forks in a map, printing one line per record (-B line) to a pipe the bench drains",
        }),
    );
    if wants(Part::Overhead) {
        report.insert("overhead".into(), overhead::measure(&env, &sizes).context("overhead")?);
    }
    if wants(Part::Capacity) {
        proc::wait_quiet(sizes.quiet_wait);
        report.insert("capacity".into(), capacity::measure(&env, &sizes).context("capacity")?);
    }
    if wants(Part::Latency) {
        proc::wait_quiet(sizes.quiet_wait);
        report.insert("latency".into(), latency::measure(&env, &sizes).context("alert latency")?);
    }
    if wants(Part::FirstRun) {
        proc::wait_quiet(sizes.quiet_wait);
        report.insert("first_run".into(), first_run::measure(&env, &sizes).context("first run")?);
    }
    if wants(Part::Enforce) {
        proc::wait_quiet(sizes.quiet_wait);
        report.insert("enforce".into(), enforce::measure(&env, &sizes).context("enforce")?);
    }
    if wants(Part::Vet) {
        proc::wait_quiet(sizes.quiet_wait);
        report.insert("vet".into(), vet::measure(&env, &sizes).context("vet")?);
    }
    if wants(Part::Memory) {
        proc::wait_quiet(sizes.quiet_wait);
        report.insert("memory".into(), memory::measure(&env, &sizes).context("memory")?);
    }
    report.insert("load_average_end".into(), json!(proc::read_trimmed("/proc/loadavg")));
    report.insert("duration_s".into(), json!(started.elapsed().as_secs()));
    let mut report = Value::Object(report);
    report["targets"] = report::targets(&report);
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let markdown = report::markdown(&report);
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("{markdown}");
    println!("xtask: bench: wrote {} and report.md", out.join("report.json").display());
    Ok(())
}

fn now_utc() -> String {
    proc::output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn machine() -> Value {
    let cpuinfo = proc::read_trimmed("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()));
    let meminfo = proc::read_trimmed("/proc/meminfo");
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<u64>().ok());
    json!({
        "kernel": proc::read_trimmed("/proc/sys/kernel/osrelease"),
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "mem_total_kib": mem_kib,
        "os": proc::read_trimmed("/etc/os-release").lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned())),
        "load_average_start": proc::read_trimmed("/proc/loadavg"),
    })
}

fn premain_version(root: &Path, binary: &Path) -> Value {
    let git = |args: &[&str]| {
        proc::output("git", &[&["-C", &root.to_string_lossy()], args].concat())
            .map(|s| s.trim().to_owned())
            .ok()
    };
    json!({
        "commit": git(&["rev-parse", "HEAD"]),
        "dirty": git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        "branch": git(&["rev-parse", "--abbrev-ref", "HEAD"]),
        "binary": binary,
    })
}
