//! Enforcement's cost: how long an open of a watched credential file and a loopback connect
//! take from Python, by start-up code (`sitecustomize`: pre-main, denied under enforce) and by
//! main code (runtime: allowed; the open still waits for premain's answer, as under observe),
//! without premain, under `premain run` (observe) and under `premain run --mode enforce`, side
//! by side. Each interpreter times its own calls with `perf_counter_ns`; p50 and p99 over the
//! runs. The compiled storm (opens, then refused connects: not Python) runs under each too: the
//! network guard's cgroup programs run on every connect of the node.

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
import socket
_t = time.perf_counter_ns()
try:
    socket.create_connection(("127.0.0.1", int(os.environ["BENCH_PORT"]))).close()
    _r = "connected"
except OSError:
    _r = "denied"
print("startup-connect", time.perf_counter_ns() - _t, _r)
"#;

const MAIN: &str = r#"
import os, time
t = time.perf_counter_ns()
open(os.path.expanduser("~/.aws/credentials")).close()
print("runtime", time.perf_counter_ns() - t, "read")
import socket
t = time.perf_counter_ns()
socket.create_connection(("127.0.0.1", int(os.environ["BENCH_PORT"]))).close()
print("runtime-connect", time.perf_counter_ns() - t, "connected")
"#;

const KINDS: [&str; 4] = ["startup", "runtime", "startup-connect", "runtime-connect"];

pub(crate) fn measure(env: &Env, sizes: &Sizes) -> anyhow::Result<Value> {
    let dir = env.dir().join("enforce");
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".aws")).context("bait home")?;
    std::fs::write(home.join(".aws/credentials"), "[default]\naws_access_key_id = AKIABENCHFAKE\n")?;
    std::fs::create_dir_all(dir.join("site"))?;
    std::fs::write(dir.join("site/sitecustomize.py"), SITECUSTOMIZE)?;
    let runs = sizes.startup_runs * 2;
    // Accepts and drops every connection, for as long as the bench runs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bench listener")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let mut by = serde_json::Map::new();
    for (key, config, extra) in [
        ("without", Config::Without, &[][..]),
        ("observe", Config::Premain, &[][..]),
        ("enforce", Config::Premain, &["--mode", "enforce"][..]),
    ] {
        let running = tracer::start_with(env, config, extra)?;
        let mut timings = std::collections::BTreeMap::<&str, Vec<f64>>::new();
        let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
        for _ in 0..runs {
            let mut command = env.python_command(&env.python.path);
            command
                .args(["-c", MAIN])
                .env("HOME", &home)
                .env("PYTHONPATH", dir.join("site"))
                .env("BENCH_PORT", port.to_string());
            let out = proc::output_of(&mut command).context("a timed open")?;
            for line in out.lines() {
                let mut words = line.split_whitespace();
                let (Some(kind), Some(ns), Some(outcome)) = (words.next(), words.next(), words.next()) else {
                    bail!("unexpected output of the timed calls: {line:?}");
                };
                let Some(kind) = KINDS.into_iter().find(|k| *k == kind) else {
                    bail!("unexpected output of the timed calls: {line:?}");
                };
                let us = ns.parse::<f64>().context("nanoseconds")? / 1e3;
                timings.entry(kind).or_default().push(us);
                *outcomes.entry(format!("{kind} {outcome}")).or_default() += 1;
            }
        }
        let mut storm = Vec::new();
        for _ in 0..sizes.reps {
            let mut c = std::process::Command::new(&env.storm);
            c.arg(&env.data).arg(sizes.storm_opens.to_string()).arg(sizes.storm_connects.to_string());
            storm.push(proc::timed(&mut c)?.wall.as_secs_f64() * 1e3);
        }
        running.stop()?;
        for kind in KINDS {
            let got = timings.get(kind).map_or(0, Vec::len);
            if got != runs {
                bail!("{key}: {got} `{kind}` timings of {runs} runs");
            }
        }
        let stats =
            |v: &[f64]| json!({ "p50_us": round(quantile(v, 0.5)), "p99_us": round(quantile(v, 0.99)) });
        let t = |k: &str| &timings[k][..];
        eprintln!(
            "xtask: bench: enforcement {key:>8}: open start-up p50 {:.0} µs p99 {:.0} µs, runtime p50 {:.0} µs p99 {:.0} µs; connect start-up p50 {:.0} µs p99 {:.0} µs, runtime p50 {:.0} µs p99 {:.0} µs; storm {:.1} ms",
            quantile(t("startup"), 0.5),
            quantile(t("startup"), 0.99),
            quantile(t("runtime"), 0.5),
            quantile(t("runtime"), 0.99),
            quantile(t("startup-connect"), 0.5),
            quantile(t("startup-connect"), 0.99),
            quantile(t("runtime-connect"), 0.5),
            quantile(t("runtime-connect"), 0.99),
            quantile(&storm, 0.5),
        );
        by.insert(
            key.into(),
            json!({
                "startup": stats(t("startup")),
                "runtime": stats(t("runtime")),
                "startup_connect": stats(t("startup-connect")),
                "runtime_connect": stats(t("runtime-connect")),
                "storm_ms": round(quantile(&storm, 0.5)),
                "outcomes": outcomes,
            }),
        );
    }
    Ok(json!({
        "what": format!(
            "an open of a watched credential file (`~/.aws/credentials` in a bait HOME) and a connect to a loopback listener, timed inside the interpreter: by `sitecustomize` (start-up: denied under enforce) and by main (runtime: allowed); {runs} runs each; and the compiled storm (median of {} runs, ms); without premain, under premain (observe) and under `--mode enforce`", sizes.reps
        ),
        "by_mode": by,
    }))
}
