//! The first run of an interpreter premain has never judged: its exec waits until premain has
//! judged the file and attached its probes. Each sample makes a fresh `venv --copies` (a new
//! interpreter file), times `python -c pass` from it, then again (warm, let through by an
//! ignore mark); the same without premain shows what a first run costs anyway. Measured for
//! the bench's CPython (pyenv's, a small executable over a `libpython` whose probes the first
//! sample's run attached) and for the system's `/usr/bin/python3` (Debian's: one static
//! executable, so each fresh copy is read whole and gets probes of its own).

use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{
    Sizes,
    env::Env,
    proc,
    stats::{median, round, summary},
    tracer::{self, Config},
};

/// The system's interpreter, measured besides the bench's when it is another file.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

pub(crate) fn measure(env: &Env, sizes: &Sizes) -> anyhow::Result<Value> {
    let mut out = json!({
        "what": format!(
            "`python -c pass` from a `python -m venv --copies` made just before (a file premain has never judged), then again; {} samples; extra: first minus warm, per sample",
            sizes.first_runs
        ),
        "by_tracer": of(env, sizes, &env.python.path)?,
        "python": env.python.path,
    });
    let system = Path::new(SYSTEM_PYTHON);
    let same = |a: &Path, b: &Path| std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok();
    if system.exists() && !same(system, &env.python.path) {
        out["system"] = json!({ "python": system, "by_tracer": of(env, sizes, system)? });
    }
    Ok(out)
}

/// First and warm runs of fresh copies of `base`, without premain and under it.
fn of(env: &Env, sizes: &Sizes, base: &Path) -> anyhow::Result<Value> {
    let mut by = serde_json::Map::new();
    for config in [Config::Without, Config::Premain] {
        let running = tracer::start(env, config)?;
        let (mut first, mut warm) = (Vec::new(), Vec::new());
        for i in 0..sizes.first_runs {
            let venv = env.dir().join(format!("first-run-{}-{i}", config.key()));
            fresh_venv(env, base, &venv)?;
            let python = venv.join("bin/python");
            first.push(pass(env, &python)?);
            warm.push(pass(env, &python)?);
            std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
        }
        running.stop()?;
        let extra: Vec<f64> = first.iter().zip(&warm).map(|(f, w)| f - w).collect();
        eprintln!(
            "xtask: bench: first run of {} {:>8}: {:.1} ms, warm {:.1} ms (medians)",
            base.display(),
            config.key(),
            median(&first) * 1e3,
            median(&warm) * 1e3
        );
        by.insert(
            config.key().into(),
            json!({
                "first_run_s": summary(&first),
                "warm_run_s": summary(&warm),
                "extra_s": summary(&extra),
                "extra_median_s": round(median(&extra)),
            }),
        );
    }
    Ok(Value::Object(by))
}

/// A new venv whose interpreter is a copy: a file no one has run yet.
fn fresh_venv(env: &Env, base: &Path, venv: &Path) -> anyhow::Result<()> {
    let status = env
        .python_command(base)
        .args(["-m", "venv", "--copies", "--without-pip"])
        .arg(venv)
        .status()
        .context("creating a --copies venv")?;
    if !status.success() {
        bail!("{} -m venv --copies failed ({status})", base.display());
    }
    Ok(())
}

fn pass(env: &Env, python: &Path) -> anyhow::Result<f64> {
    Ok(proc::timed(env.python_command(python).args(["-c", "pass"]))?.wall.as_secs_f64())
}
