//! Alert latency: interpreters whose `sitecustomize` reads a (fake) `~/.netrc`, started at a
//! steady pace while a tracked Python makes a steady background of records. Latency is the
//! wall-clock time the bench reads the alert line minus the alert's `time`, which premain
//! takes from the kernel's timestamp of the open (both clocks are this machine's).

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{
    Sizes,
    env::Env,
    proc::{self, Daemon, Group},
    stats::{quantile, round},
};

type Alerts = Arc<Mutex<Vec<(SystemTime, String)>>>;

pub(crate) fn measure(env: &Env, sizes: &Sizes) -> anyhow::Result<Value> {
    let home = env.dir().join("home");
    std::fs::create_dir_all(&home)?;
    std::fs::write(home.join(".netrc"), "machine example.invalid login bench password fake\n")?;
    let alerts: Alerts = Arc::default();
    let sink = Arc::clone(&alerts);
    let mut command = Command::new(&env.premain);
    command.args(["run", "--metrics-address", "127.0.0.1:0"]).env("RUST_LOG", "info");
    let mut premain = Daemon::spawn(
        "premain",
        &mut command,
        Box::new(move |line| {
            let now = SystemTime::now();
            let line = String::from_utf8_lossy(line);
            if line.contains("\"kind\":\"alert\"") {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push((now, line.into_owned()));
            }
        }),
    )?;
    premain.wait_stderr(super::proc::PREMAIN_READY, Duration::from_secs(120))?;
    let bait = |command: &mut Command| {
        command
            .args(["-c", "pass"])
            .env("PYTHONPATH", env.script("alert"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    // The first run is held until judged: not a latency sample.
    let mut warm = env.python_command(&env.python.path);
    bait(&mut warm);
    warm.status().context("warm-up run")?;

    let seconds = sizes.latency_alerts as f64 * sizes.latency_interval.as_secs_f64() + 2.0;
    let mut load = Group::spawn(
        env.python_command(&env.python.path)
            .arg(env.script("paced_opens.py"))
            .arg(&env.data)
            .arg(sizes.latency_load_rate.to_string())
            .arg(seconds.to_string()),
    )?;
    thread::sleep(Duration::from_millis(500));
    let cpu_before = proc::cpu_time(premain.pid()).unwrap_or_default();
    let other_load = proc::OtherLoad::start(&[premain.pid(), load.child.id()]);
    let started = Instant::now();
    let mut runs: Vec<Child> = Vec::new();
    for i in 0..sizes.latency_alerts {
        let mut command = env.python_command(&env.python.path);
        bait(&mut command);
        runs.push(command.spawn().context("starting an alerting interpreter")?);
        let next = started + sizes.latency_interval * (i as u32 + 1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let pids: Vec<u32> = runs.iter().map(Child::id).collect();
    for mut run in runs {
        run.wait()?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let ours = |all: &[(SystemTime, String)]| -> Vec<(SystemTime, Value)> {
        all.iter()
            .filter_map(|(at, line)| Some((*at, serde_json::from_str::<Value>(line).ok()?)))
            .filter(|(_, v)| v["process"]["pid"].as_u64().is_some_and(|p| pids.contains(&(p as u32))))
            .filter(|(_, v)| v["folded"] != true)
            .collect()
    };
    while ours(&alerts.lock().unwrap_or_else(|e| e.into_inner())).len() < pids.len()
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
    let cpu = proc::cpu_time(premain.pid()).unwrap_or_default().saturating_sub(cpu_before);
    let others = other_load.share();
    let elapsed = started.elapsed();
    load.kill();
    let metrics_addr = proc::metrics_address(&premain.stderr());
    let lost = metrics_addr
        .and_then(|a| proc::metrics(&a).ok())
        .map(|m| proc::metric_sum(&m, "premain_events_lost_total", &[]));
    let (_, stderr) = premain.stop()?;
    let got = ours(&alerts.lock().unwrap_or_else(|e| e.into_inner()));
    let latencies_ms: Vec<f64> = got
        .iter()
        .filter_map(|(at, v)| {
            let t = parse_rfc3339(v["time"].as_str()?)?;
            Some(match at.duration_since(t) {
                Ok(d) => d.as_secs_f64() * 1e3,
                Err(e) => -e.duration().as_secs_f64() * 1e3,
            })
        })
        .collect();
    let rules: Vec<String> = {
        let mut r: Vec<String> =
            got.iter().filter_map(|(_, v)| v["rule"].as_str().map(str::to_owned)).collect();
        r.sort();
        r.dedup();
        r
    };
    eprintln!(
        "xtask: bench: latency: {} alerts of {} runs, p50 {:.2} ms, p99 {:.2} ms",
        latencies_ms.len(),
        pids.len(),
        quantile(&latencies_ms, 0.5),
        quantile(&latencies_ms, 0.99)
    );
    Ok(json!({
        "what": format!(
            "{} runs of {} -c pass, one every {} ms, whose sitecustomize reads a fake ~/.netrc; meanwhile a tracked Python opens a file {}/s; latency = time the bench reads the alert line - the alert's time (the kernel timestamp of the open)",
            sizes.latency_alerts, env.python.version, sizes.latency_interval.as_millis(), sizes.latency_load_rate
        ),
        "runs": pids.len(),
        "alerts": latencies_ms.len(),
        "rules": rules,
        "p50_ms": round(quantile(&latencies_ms, 0.5)),
        "p90_ms": round(quantile(&latencies_ms, 0.9)),
        "p99_ms": round(quantile(&latencies_ms, 0.99)),
        "max_ms": round(quantile(&latencies_ms, 1.0)),
        "min_ms": round(quantile(&latencies_ms, 0.0)),
        "samples_ms": latencies_ms.iter().map(|v| (v * 100.0).round() / 100.0).collect::<Vec<_>>(),
        "background_rate": sizes.latency_load_rate,
        "daemon_cpu_share": round(cpu.as_secs_f64() / elapsed.as_secs_f64()),
        "other_load": round(others),
        "records_lost": lost,
        "records_decoded": proc::summary_field(&stderr, "records"),
    }))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, as premain writes it).
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos: u64 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?) + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_premain_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000000Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00.000001Z"),
            Some(UNIX_EPOCH + Duration::from_micros(951_782_400_000_001))
        );
        assert_eq!(
            parse_rfc3339("2026-11-21T23:59:59.000000Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_305_599))
        );
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
