//! The cargo-fuzz targets in `fuzz/`: a short run of each in `cargo xtask test`, longer ones
//! with `cargo xtask fuzz`.
//!
//! cargo-fuzz's sanitizer and coverage flags are nightly-only; `RUSTC_BOOTSTRAP=1` lets the
//! stable toolchain take them, as for the eBPF build (monitor/build.rs keeps them out of it).
//! Every run first replays `fuzz/regressions/<target>/`, the inputs that once crashed, then
//! fuzzes from the seeds in `fuzz/corpus/<target>/` (where libFuzzer also keeps what it finds),
//! with the dictionary `fuzz/dicts/<target>.dict` if there is one.

use std::{
    ffi::OsString,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

/// A target and the largest input worth trying: each covers its parser's biggest real input.
pub(crate) const TARGETS: &[(&str, usize)] = &[
    // `monitor_common::RECORD_MAX` (a rename/link record) is 12,400 bytes.
    ("decode", 16384),
    // `sockaddr_storage` is 128 bytes.
    ("sockaddr", 256),
    ("config", 8192),
    ("elf", 8192),
];
/// Seconds per target in `cargo xtask test`.
pub(crate) const TEST_SECS: u64 = 20;
/// Seconds per target of `cargo xtask fuzz` without `--secs`.
pub(crate) const DEFAULT_SECS: u64 = 300;
/// An input that takes longer than this is a hang, reported as a crash.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// Replays the regressions of `only` (else of every target) and fuzzes each for `secs`.
///
/// `in_test` is for `cargo xtask test`: libFuzzer's output is shown only when it fails, and
/// each run starts from the committed seeds alone and throws away what it finds, so that it
/// takes the same time on every machine (a corpus grown by long runs can take minutes to load).
pub(crate) fn run(root: &Path, only: Option<&str>, secs: u64, in_test: bool) -> anyhow::Result<()> {
    let targets: Vec<(&str, usize)> = match only {
        Some(name) => match TARGETS.iter().find(|(t, _)| *t == name) {
            Some(&target) => vec![target],
            None => bail!(
                "no fuzz target {name:?}; the targets are {}",
                TARGETS.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            ),
        },
        None => TARGETS.to_vec(),
    };
    let fuzz_dir = root.join("fuzz");
    // One build for all targets; the runs below then only check it is current.
    cargo_fuzz(root, &["build".into(), "--fuzz-dir".into(), fuzz_dir.clone().into()], false)?;
    let mut ran = Vec::new();
    for &(target, max_len) in &targets {
        let regressions = regressions(&fuzz_dir, target)?;
        if !regressions.is_empty() {
            let mut args = run_args(&fuzz_dir, target);
            args.extend(regressions.iter().map(|p| p.clone().into_os_string()));
            args.extend(["--".into(), format!("-timeout={INPUT_TIMEOUT_SECS}").into()]);
            cargo_fuzz(root, &args, in_test)
                .with_context(|| format!("fuzz target {target}: a regression input fails again"))?;
        }

        let seeds = fuzz_dir.join("corpus").join(target);
        // libFuzzer adds what it finds to the first directory and only reads the others.
        let corpus = if in_test { fuzz_dir.join("target/test-corpus").join(target) } else { seeds.clone() };
        if in_test && corpus.exists() {
            fs::remove_dir_all(&corpus).with_context(|| format!("removing {}", corpus.display()))?;
        }
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let mut args = run_args(&fuzz_dir, target);
        args.push(corpus.into());
        if in_test {
            args.push(seeds.into());
        }
        let regressions_dir = fuzz_dir.join("regressions").join(target);
        if regressions_dir.is_dir() {
            args.push(regressions_dir.into());
        }
        args.extend(
            [
                "--".into(),
                format!("-max_total_time={secs}"),
                format!("-max_len={max_len}"),
                format!("-timeout={INPUT_TIMEOUT_SECS}"),
                "-print_final_stats=1".into(),
            ]
            .map(OsString::from),
        );
        let dict = fuzz_dir.join("dicts").join(format!("{target}.dict"));
        if dict.is_file() {
            // Tokens a byte-level mutator would hardly guess (key names, for the config).
            let mut flag = OsString::from("-dict=");
            flag.push(&dict);
            args.push(flag);
        }
        let started = Instant::now();
        let runs = cargo_fuzz(root, &args, in_test).with_context(|| {
            format!(
                "fuzz target {target} failed: the input is in fuzz/artifacts/{target}/; after the fix, \
                 keep it (`cargo fuzz tmin` shrinks it) in fuzz/regressions/{target}/"
            )
        })?;
        let took = started.elapsed().as_secs();
        let runs = runs.map_or_else(|| "? runs".to_owned(), |n| format!("{n} runs"));
        eprintln!(
            "xtask: fuzz: {target}: {took} s, {runs}, {} regression inputs replayed: no crash",
            regressions.len()
        );
        ran.push(format!("{target} ({took} s)"));
    }
    println!("xtask: fuzz targets run: {}", ran.join(", "));
    Ok(())
}

fn run_args(fuzz_dir: &Path, target: &str) -> Vec<OsString> {
    vec!["run".into(), "--fuzz-dir".into(), fuzz_dir.into(), target.into()]
}

/// The files in `fuzz/regressions/<target>/`, sorted.
fn regressions(fuzz_dir: &Path, target: &str) -> anyhow::Result<Vec<PathBuf>> {
    let dir = fuzz_dir.join("regressions").join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `cargo fuzz ARGS`; returns the executions libFuzzer reported, if it did. With `quiet`,
/// its output is held back and shown only on failure.
fn cargo_fuzz(root: &Path, args: &[OsString], quiet: bool) -> anyhow::Result<Option<u64>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    eprintln!("xtask: cargo fuzz {}", shown.join(" "));
    let mut child = Command::new(cargo)
        .current_dir(root)
        .arg("fuzz")
        .args(args)
        .env("RUSTC_BOOTSTRAP", "1")
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo fuzz (`cargo xtask setup` installs it)")?;
    let (mut held, mut runs) = (Vec::new(), None);
    for line in BufReader::new(child.stderr.take().context("cargo fuzz stderr")?).lines() {
        let line = line.context("reading cargo fuzz output")?;
        // `-print_final_stats=1` ends with `stat::number_of_executed_units: N`.
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            runs = n.trim().parse().ok();
        }
        if quiet {
            held.push(line);
        } else {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    if !status.success() {
        for line in &held {
            eprintln!("{line}");
        }
        bail!("cargo fuzz {} failed ({status})", shown.join(" "));
    }
    Ok(runs)
}
