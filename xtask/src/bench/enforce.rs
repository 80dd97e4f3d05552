//! Enforcement's cost: how long an open of a watched credential file takes from Python, by
//! start-up code (`sitecustomize`: pre-main, denied under enforce) and by main code (runtime:
//! allowed, but the open still waits for premain's answer, as under observe), without premain,
//! under `premain run` (observe) and under `premain run --mode enforce`, side by side. Each
//! interpreter times its own `open()` with `perf_counter_ns`; p50 and p99 over the runs.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{
    Sizes,
    env::Env,
    proc,
    stats::{quantile, round},
    tracer::{self, Config},
};

const SITECUSTOMIZE: &str = r#"
import os, time
_t = time.perf_counter_ns()
try:
    open(os.path.expanduser("~/.aws/credentials")).close()
    _r = "read"
except OSError:
    _r = "denied"
print("startup", time.perf_counter_ns() - _t, _r)
"#;

const MAIN: &str = r#"
import os, time
t = time.perf_counter_ns()
open(os.path.expanduser("~/.aws/credentials")).close()
print("runtime", time.perf_counter_ns() - t, "read")
"#;

pub(crate) fn measure(env: &Env, sizes: &Sizes) -> anyhow::Result<Value> {
    let dir = env.dir().join("enforce");
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".aws")).context("bait home")?;
    std::fs::write(home.join(".aws/credentials"), "[default]\naws_access_key_id = AKIABENCHFAKE\n")?;
    std::fs::create_dir_all(dir.join("site"))?;
    std::fs::write(dir.join("site/sitecustomize.py"), SITECUSTOMIZE)?;
    let runs = sizes.startup_runs * 2;
    let mut by = serde_json::Map::new();
    for (key, config, extra) in [
        ("without", Config::Without, &[][..]),
        ("observe", Config::Premain, &[][..]),
        ("enforce", Config::Premain, &["--mode", "enforce"][..]),
    ] {
        let running = tracer::start_with(env, config, extra)?;
        let (mut startup, mut runtime) = (Vec::new(), Vec::new());
        let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
        for _ in 0..runs {
            let mut command = env.python_command(&env.python.path);
            command.args(["-c", MAIN]).env("HOME", &home).env("PYTHONPATH", dir.join("site"));
            let out = proc::output_of(&mut command).context("a timed open")?;
            for line in out.lines() {
                let mut words = line.split_whitespace();
                let (Some(kind), Some(ns), Some(outcome)) = (words.next(), words.next(), words.next()) else {
                    bail!("unexpected output of the timed open: {line:?}");
                };
                let us = ns.parse::<f64>().context("nanoseconds")? / 1e3;
                if kind == "startup" {
                    startup.push(us)
                } else {
                    runtime.push(us)
                }
                *outcomes.entry(format!("{kind} {outcome}")).or_default() += 1;
            }
        }
        running.stop()?;
        if startup.len() != runs || runtime.len() != runs {
            bail!("{key}: {} start-up and {} runtime timings of {runs} runs", startup.len(), runtime.len());
        }
        let stats =
            |v: &[f64]| json!({ "p50_us": round(quantile(v, 0.5)), "p99_us": round(quantile(v, 0.99)) });
        eprintln!(
            "xtask: bench: watched open {key:>8}: start-up p50 {:.0} µs p99 {:.0} µs, runtime p50 {:.0} µs p99 {:.0} µs",
            quantile(&startup, 0.5),
            quantile(&startup, 0.99),
            quantile(&runtime, 0.5),
            quantile(&runtime, 0.99)
        );
        by.insert(
            key.into(),
            json!({ "startup": stats(&startup), "runtime": stats(&runtime), "outcomes": outcomes }),
        );
    }
    Ok(json!({
        "what": format!(
            "an open of a watched credential file (`~/.aws/credentials` in a bait HOME) timed inside the interpreter: by `sitecustomize` (start-up: denied under enforce) and by main (runtime: allowed); {runs} runs each, without premain, under premain (observe) and under `--mode enforce`"
        ),
        "by_mode": by,
    }))
}
