//! Wall-clock overhead: each workload without tracing, under the floor, under premain and under
//! the peer, interleaved round by round (the tracer order rotates each round, so a slow spell
//! of the shared machine does not always land on the same tracer).

use std::{collections::HashMap, process::Command};

use serde_json::{Map, Value, json};

use super::{
    Sizes,
    env::Env,
    proc,
    stats::{median, round, summary},
    tracer::{self, Config},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Workload {
    Storm,
    Startup,
    /// In a venv whose start-up hooks run no code: premain stops recording the process once its
    /// main code runs.
    Runtime,
    /// The same in the venv with `.pth` import lines: code-running start-up hooks keep the
    /// process recorded (their planted code may act later; see "Runtime code is not recorded").
    RuntimeHooked,
}

impl Workload {
    pub(crate) const ALL: [Self; 4] = [Self::Storm, Self::Startup, Self::Runtime, Self::RuntimeHooked];

    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Storm => "storm",
            Self::Startup => "startup",
            Self::Runtime => "runtime",
            Self::RuntimeHooked => "runtime_hooked",
        }
    }

    fn describe(self, env: &Env, sizes: &Sizes) -> String {
        match self {
            Self::Storm => format!(
                "compiled C loop (not Python): {} open/close of one file, then {} TCP connects refused by a closed 127.0.0.1 port; seconds per run (median of {} runs per sample)",
                sizes.storm_opens, sizes.storm_connects, sizes.reps
            ),
            Self::Startup => format!(
                "{} -c '{}' in a venv with {} .pth files; seconds per start (median of {} starts in a row per sample)",
                env.python.version,
                super::env::STARTUP_IMPORTS,
                env.pth_files,
                sizes.startup_runs
            ),
            Self::Runtime => format!(
                "one {} process in a venv without code-running start-up hooks: {} function-local imports of a cached module, then {} open()s of one file; seconds per run (median of {} runs per sample)",
                env.python.version, sizes.runtime_imports, sizes.runtime_opens, sizes.reps
            ),
            Self::RuntimeHooked => format!(
                "the runtime workload in the venv of the start-up workload, whose {} `.pth` import lines are code-running start-up hooks (the process stays recorded after main)",
                super::env::PTH_IMPORTS
            ),
        }
    }
}

/// One sample: the median wall-clock and CPU seconds of a few back-to-back runs.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
}

/// Samples by workload and tracer, in round order.
type Samples = HashMap<(Workload, Config), Vec<Sample>>;

pub(crate) fn measure(env: &Env, sizes: &Sizes) -> anyhow::Result<Value> {
    let mut samples: Samples = HashMap::new();
    let mut first_runs: HashMap<Config, Vec<f64>> = HashMap::new();
    let mut warm_runs: HashMap<Config, Vec<f64>> = HashMap::new();
    let mut tracer_out: HashMap<Config, Vec<Value>> = HashMap::new();
    let mut foreign: Vec<Value> = Vec::new();
    let mut busy_shares: HashMap<Config, Vec<f64>> = HashMap::new();
    for round in 0..sizes.rounds {
        let mut order = Config::ALL;
        order.rotate_left(round % Config::ALL.len());
        for config in order {
            let before = proc::wait_quiet(sizes.quiet_wait);
            let running = tracer::start(env, config)?;
            let load = proc::OtherLoad::start(&running.pid().into_iter().collect::<Vec<_>>());
            // The first run of an interpreter after premain starts waits until premain has
            // judged it and attached its probes: timed separately, and kept out of the samples.
            let first = python_pass(env, &env.python.path)?.wall.as_secs_f64();
            let warm = python_pass(env, &env.python.path)?.wall.as_secs_f64();
            first_runs.entry(config).or_default().push(first);
            warm_runs.entry(config).or_default().push(warm);
            python_pass(env, &env.venv_python)?;
            python_pass(env, &env.plain_python)?;
            proc::timed(Command::new(&env.storm).arg(&env.data).args(["10", "1"]))?;
            let mut line = format!("xtask: bench: round {}/{} {:>8}:", round + 1, sizes.rounds, config.key());
            for workload in Workload::ALL {
                let sample = run(env, sizes, workload)?;
                samples.entry((workload, config)).or_default().push(sample);
                line.push_str(&format!(" {} {:.1} ms", workload.key(), sample.wall * 1e3));
            }
            let others_load = load.share();
            busy_shares.entry(config).or_default().push(others_load);
            line.push_str(&format!(" [others {:.0}% of the CPUs]", others_load * 100.0));
            let mut others = proc::foreign_tracers(&running.pid().into_iter().collect::<Vec<_>>());
            others.extend(before);
            others.sort();
            others.dedup();
            if !others.is_empty() {
                line.push_str(&format!(" (other tracers running: {})", others.join(" ")));
                foreign.push(json!({ "round": round + 1, "tracer": config.key(), "others": others }));
            }
            let stopped = running.stop()?;
            tracer_out.entry(config).or_default().push(json!({
                "lines_printed": stopped.lines,
                "records_decoded": stopped.records,
                "records_lost": stopped.lost,
            }));
            eprintln!("{line}");
        }
    }
    let mut out = Map::new();
    for workload in Workload::ALL {
        out.insert(workload.key().into(), workload_report(env, sizes, workload, &samples));
    }
    let holds: Map<String, Value> = Config::ALL
        .iter()
        .map(|c| {
            let (first, warm) = (&first_runs[c], &warm_runs[c]);
            (c.key().to_owned(), json!({ "first_run_s": summary(first), "second_run_s": summary(warm) }))
        })
        .collect();
    out.insert(
        "first_run".into(),
        json!({
            "what": format!("`{} -c pass` right after the tracer is ready (the first exec of an interpreter premain has not judged waits until it is judged), then again", env.python.version),
            "by_tracer": holds,
        }),
    );
    out.insert(
        "other_load".into(),
        json!({
            "what": "share of all CPUs' time used by other processes (not the bench, its workloads or the tracer) while each tracer's workloads ran",
            "by_tracer": Config::ALL.iter().map(|c| (c.key().to_owned(), summary(&busy_shares[c]))).collect::<Map<_, _>>(),
        }),
    );
    out.insert(
        "other_tracers".into(),
        json!({
            "what": "premain or bpftrace processes the bench did not start, seen around a sample: they slow the same syscalls and trace the same interpreters",
            "samples": foreign,
        }),
    );
    out.insert(
        "tracer_output".into(),
        Value::Object(Config::ALL.iter().map(|c| (c.key().to_owned(), json!(tracer_out[c]))).collect()),
    );
    Ok(Value::Object(out))
}

fn workload_report(env: &Env, sizes: &Sizes, workload: Workload, samples: &Samples) -> Value {
    let wall = |c: Config| samples[&(workload, c)].iter().map(|s| s.wall).collect::<Vec<_>>();
    let cpu = |c: Config| samples[&(workload, c)].iter().map(|s| s.cpu).collect::<Vec<_>>();
    let (base, base_cpu) = (wall(Config::Without), cpu(Config::Without));
    let mut by = Map::new();
    for config in Config::ALL {
        let (s, c) = (wall(config), cpu(config));
        let mut entry = summary(&s);
        entry["cpu"] = summary(&c);
        if config != Config::Without {
            // Ratio of medians (the headline), and the same-round ratios for the spread.
            let paired: Vec<f64> = s.iter().zip(&base).map(|(x, b)| x / b).collect();
            entry["ratio"] = round(median(&s) / median(&base));
            entry["paired_ratio"] = summary(&paired);
            entry["cpu_ratio"] = round(median(&c) / median(&base_cpu));
        }
        by.insert(config.key().into(), entry);
    }
    json!({
        "what": workload.describe(env, sizes),
        "unit": "s (each sample: the median of a few runs back to back; cpu: the workload's own user + system time)",
        "by_tracer": by,
    })
}

fn run(env: &Env, sizes: &Sizes, workload: Workload) -> anyhow::Result<Sample> {
    let (reps, mut command) = match workload {
        Workload::Storm => {
            let mut c = Command::new(&env.storm);
            c.arg(&env.data).arg(sizes.storm_opens.to_string()).arg(sizes.storm_connects.to_string());
            (sizes.reps, c)
        }
        Workload::Startup => {
            let mut c = env.python_command(&env.venv_python);
            c.args(["-c", super::env::STARTUP_IMPORTS]);
            (sizes.startup_runs, c)
        }
        Workload::Runtime | Workload::RuntimeHooked => {
            let python = if workload == Workload::Runtime { &env.plain_python } else { &env.venv_python };
            let mut c = env.python_command(python);
            c.arg(env.script("runtime.py"))
                .arg(&env.data)
                .arg(sizes.runtime_imports.to_string())
                .arg(sizes.runtime_opens.to_string());
            (sizes.reps, c)
        }
    };
    let mut wall = Vec::with_capacity(reps);
    let mut cpu = Vec::with_capacity(reps);
    for _ in 0..reps {
        let cost = proc::timed(&mut command)?;
        wall.push(cost.wall.as_secs_f64());
        cpu.push(cost.cpu.as_secs_f64());
    }
    Ok(Sample { wall: median(&wall), cpu: median(&cpu) })
}

fn python_pass(env: &Env, python: &std::path::Path) -> anyhow::Result<proc::Cost> {
    proc::timed(env.python_command(python).args(["-c", "pass"]))
}
