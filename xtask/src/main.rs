//! Contributor tasks: `cargo xtask setup | build | run | test | lint | fuzz | bench`.

mod bench;
mod fuzz;
mod setup;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "premain's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building premain needs (idempotent; quick when all is present).
    Setup,
    /// Set up, then build `target/release/premain` with its kernel programs embedded.
    Build,
    /// Set up, build, and run premain as root (default arguments: `run --events`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, lint, build, and run every test: unit tests, then the root-only integration
    /// tests against the real kernel and every CPython on the machine.
    Test {
        /// Skip the formatting and clippy checks.
        #[arg(long)]
        no_lint: bool,
        /// Only run tests whose name contains this.
        filter: Option<String>,
    },
    /// `cargo fmt --check` and `cargo clippy -D warnings` on the host crates.
    Lint,
    /// Set up, replay the fuzz regressions, and fuzz TARGET (default: every target) for SECS each.
    Fuzz {
        target: Option<String>,
        #[arg(long, default_value_t = fuzz::DEFAULT_SECS)]
        secs: u64,
    },
    /// Set up, build, and measure overhead (next to bpftrace), capacity, alert latency and memory
    /// (as root); writes target/bench/report.json and report.md.
    Bench(bench::Options),
}

fn main() -> anyhow::Result<()> {
    let root = workspace_root()?;
    match Cli::parse().task {
        Task::Setup => setup::run(&root),
        Task::Build => {
            setup::run(&root)?;
            build(&root)
        }
        Task::Run { args } => {
            setup::run(&root)?;
            build(&root)?;
            let args = if args.is_empty() { vec!["run".into(), "--events".into()] } else { args };
            let status = Command::new(root.join("target/release/premain"))
                .args(&args)
                .status()
                .context("starting premain")?;
            if !status.success() {
                bail!("premain exited with {status}");
            }
            Ok(())
        }
        Task::Test { no_lint, filter } => {
            setup::run(&root)?;
            if !no_lint {
                lint(&root)?;
            }
            build(&root)?;
            test(&root, filter.as_deref())?;
            // A filter picks tests; the fuzz targets are not among them.
            if filter.is_none() { fuzz::run(&root, None, fuzz::TEST_SECS, true) } else { Ok(()) }
        }
        Task::Lint => lint(&root),
        Task::Fuzz { target, secs } => {
            setup::run(&root)?;
            fuzz::run(&root, target.as_deref(), secs, false)
        }
        Task::Bench(opts) => {
            setup::run(&root)?;
            setup::bench_tools()?;
            build(&root)?;
            bench::run(&root, &opts)
        }
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest.parent().context("xtask/ has no parent")?.to_path_buf())
}

/// Host crates only: `monitor-ebpf` is built by `monitor/build.rs` for the BPF target.
const HOST: [&str; 3] = ["--workspace", "--exclude", "monitor-ebpf"];

pub(crate) fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(cargo).current_dir(root).args(args).status().context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn build(root: &Path) -> anyhow::Result<()> {
    cargo(root, &["build", "--release", "--package", "monitor"])
}

fn lint(root: &Path) -> anyhow::Result<()> {
    cargo(root, &["fmt", "--all", "--", "--check"])?;
    let mut args = vec!["clippy", "--release", "--all-targets"];
    args.extend(HOST);
    args.extend(["--", "-D", "warnings"]);
    cargo(root, &args)
}

/// Runs `cargo test ...`, echoing its output, and returns the `(passed, failed)` totals of
/// its `test result:` lines.
fn cargo_test(root: &Path, args: &[&str], skips: &Path) -> anyhow::Result<(u64, u64)> {
    use std::io::{BufRead as _, BufReader};
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut child = Command::new(cargo)
        .current_dir(root)
        .args(args)
        .env("PREMAIN_TOOLS", setup::tools_dir(root))
        .env("PREMAIN_SKIP_LOG", skips)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().context("cargo stdout")?).lines() {
        let line = line.context("reading cargo output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count_before(rest, " passed");
            failed += count_before(rest, " failed");
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status}): {passed} passed, {failed} failed", args.join(" "));
    }
    Ok((passed, failed))
}

/// In `ok. 42 passed; 0 failed; ...`, the number before `word`.
fn count_before(text: &str, word: &str) -> u64 {
    text.split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(word.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn test(root: &Path, filter: Option<&str>) -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!("the integration tests load eBPF programs: run `cargo xtask test` as root");
    }
    // A test that cannot run its check fails; with PREMAIN_TEST_ALLOW_SKIP=1 (never set by
    // CI) it passes instead and says so here, in the closing summary.
    let skips = setup::tools_dir(root).join("skipped-tests.txt");
    let _ = std::fs::remove_file(&skips);
    // --no-fail-fast: one failing suite must not hide the results of the ones after it.
    let mut unit = vec!["test", "--release", "--no-fail-fast"];
    unit.extend(HOST);
    unit.extend(["--exclude", "integration-tests"]);
    if let Some(filter) = filter {
        unit.push(filter);
    }
    let unit_result = cargo_test(root, &unit, &skips);
    // One test at a time: they share the kernel's tracepoints. --show-output lists the
    // interpreters each test exercised.
    let mut integration = vec!["test", "--release", "--no-fail-fast", "--package", "integration-tests"];
    if let Some(filter) = filter {
        integration.push(filter);
    }
    integration.extend(["--", "--test-threads=1", "--show-output"]);
    let int_result = cargo_test(root, &integration, &skips);
    let skipped = std::fs::read_to_string(&skips).unwrap_or_default();
    if !skipped.is_empty() {
        println!("xtask: skipped (PREMAIN_TEST_ALLOW_SKIP is set):\n{skipped}");
    }
    let ((unit_passed, unit_failed), (int_passed, int_failed)) = (unit_result?, int_result?);
    println!(
        "unit tests: {unit_passed} passed, {unit_failed} failed; integration tests: {int_passed} passed, {int_failed} failed"
    );
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        unit_passed + int_passed,
        unit_failed + int_failed,
        skipped.lines().count()
    );
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn parses_libtest_summaries() {
        let line = "ok. 42 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 2.12s";
        assert_eq!((count_before(line, " passed"), count_before(line, " failed")), (42, 3));
        assert_eq!(count_before("FAILED. 1 passed; 2 failed; 0 ignored", " failed"), 2);
    }
}
