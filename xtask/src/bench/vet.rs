//! `premain vet`'s cost: vetting a set of real packages (flask with its dependencies and
//! psutil, from the apps wheelhouse) against doing the same work by hand without premain: a
//! venv, `pip install` of the same set from the same wheelhouse, `python -c pass` and one
//! interpreter per top-level module imported (the modules vet imported). Rounds alternate the
//! two; medians of wall time.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Sizes, env::Env, stats::round};

const PACKAGES: [&str; 2] = ["flask", "psutil"];

pub(crate) fn measure(env: &Env, sizes: &Sizes) -> anyhow::Result<Value> {
    let wheels = crate::setup::tools_dir(&env.root).join("apps-wheelhouse");
    if !wheels.is_dir() {
        bail!("{} is missing: run cargo xtask setup", wheels.display());
    }
    let rounds = sizes.reps;
    let (mut vet_s, mut plain_s) = (Vec::new(), Vec::new());
    let mut modules: Vec<String> = Vec::new();
    for round in 0..rounds {
        let started = Instant::now();
        let out = Command::new(&env.premain)
            .args(["vet", "--format", "json", "--python"])
            .arg(&env.python.path)
            .arg("--find-links")
            .arg(&wheels)
            .args(PACKAGES)
            .output()
            .context("running premain vet")?;
        vet_s.push(started.elapsed().as_secs_f64());
        let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!("premain vet printed no report: {}", String::from_utf8_lossy(&out.stderr))
        })?;
        if report["verdict"]["status"] != "pass" {
            bail!("premain vet did not pass the bench's benign set: {}", report["verdict"]);
        }
        modules = report["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["kind"] == "import")
            .filter_map(|s| s["target"].as_str().map(str::to_owned))
            .collect();
        let dir = env.dir().join(format!("vet-plain-{round}"));
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        plain(env, &dir, &wheels, &modules)?;
        plain_s.push(started.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "xtask: bench: vet round {}: premain vet {:.1} s, by hand without premain {:.1} s",
            round + 1,
            vet_s[round],
            plain_s[round]
        );
    }
    let (vet, by_hand) = (median(&mut vet_s), median(&mut plain_s));
    Ok(json!({
        "what": format!(
            "`premain vet --find-links apps-wheelhouse {}` (sandbox, its own premain started and stopped, bait HOME, install without bytecode compilation, start-up, {} imports each in its own interpreter, report) against the same by hand without premain (venv, pip install as it compiles by default, python -c pass, the same imports); median wall time of {rounds} alternating rounds",
            PACKAGES.join(" "),
            modules.len()
        ),
        "vet_s": round(vet),
        "by_hand_s": round(by_hand),
        "ratio": round(vet / by_hand),
        "modules": modules,
    }))
}

fn plain(env: &Env, dir: &Path, wheels: &Path, modules: &[String]) -> anyhow::Result<()> {
    let run = |command: &mut Command, what: &str| -> anyhow::Result<()> {
        let status = command.status().with_context(|| what.to_owned())?;
        if !status.success() {
            bail!("{what} failed: {status}");
        }
        Ok(())
    };
    run(env.python_command(&env.python.path).arg("-m").arg("venv").arg(dir), "python -m venv")?;
    let python = dir.join("bin/python");
    run(
        env.python_command(&python)
            .args(["-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-index", "--find-links"])
            .arg(wheels)
            .args(PACKAGES),
        "pip install",
    )?;
    run(env.python_command(&python).args(["-c", "pass"]), "python -c pass")?;
    for module in modules {
        run(env.python_command(&python).args(["-c", &format!("import {module}")]), "an import")?;
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
