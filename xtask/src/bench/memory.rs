//! Memory: premain's RSS idle, with a thousand tracked processes, and after a hundred thousand
//! short-lived ones have come and gone (its process table must shrink back); the kernel
//! memory of its BPF maps.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{
    Sizes,
    env::Env,
    proc::{self, Daemon, Group},
    stats::round,
};

struct Premain {
    daemon: Daemon,
    metrics: String,
}

impl Premain {
    fn gauge(&self, name: &str) -> anyhow::Result<f64> {
        Ok(proc::metric_sum(&proc::metrics(&self.metrics)?, name, &[]))
    }

    fn tracked(&self) -> anyhow::Result<u64> {
        Ok(self.gauge("premain_tracked_processes")? as u64)
    }

    fn lost(&self) -> anyhow::Result<u64> {
        Ok(self.gauge("premain_events_lost_total")? as u64)
    }

    /// Polls the tracked-process gauge (updated once a second) until `done` or `limit`.
    fn wait_tracked(&self, limit: Duration, done: impl Fn(u64) -> bool) -> anyhow::Result<(u64, Duration)> {
        let start = Instant::now();
        loop {
            let n = self.tracked()?;
            if done(n) || start.elapsed() > limit {
                return Ok((n, start.elapsed()));
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn rss(&self) -> Value {
        let pid = self.daemon.pid();
        let kib = |f| proc::status_kib(pid, f);
        json!({
            "vm_rss_kib": kib("VmRSS"),
            "rss_anon_kib": kib("RssAnon"),
            "rss_file_kib": kib("RssFile"),
            "vm_hwm_kib": kib("VmHWM"),
        })
    }

    /// Entries in the kernel's tracked-process map.
    fn kernel_tracked(&self) -> Option<usize> {
        let id = proc::bpf_maps(self.daemon.pid()).into_iter().find(|m| m.name == "TRACKED")?.id;
        proc::map_entries(id)
    }
}

pub(crate) fn measure(env: &Env, sizes: &Sizes) -> anyhow::Result<Value> {
    let mut command = Command::new(&env.premain);
    command.args(["run", "--metrics-address", "127.0.0.1:0"]).env("RUST_LOG", "info");
    let mut daemon = Daemon::spawn("premain", &mut command, Box::new(|_| {}))?;
    daemon.wait_stderr(super::proc::PREMAIN_READY, Duration::from_secs(120))?;
    let metrics = proc::metrics_address(&daemon.stderr()).context("premain's metrics address")?;
    let premain = Premain { daemon, metrics };
    // A few ticks for the gauges, and for start-up allocations to settle.
    thread::sleep(Duration::from_secs(3));
    let idle_tracked = premain.tracked()?;
    let idle = premain.rss();
    let maps = proc::bpf_maps(premain.daemon.pid());
    let map_total: u64 = maps.iter().map(|m| m.memlock).sum();
    let idle_kernel_tracked = premain.kernel_tracked();

    // A thousand tracked processes: forked children of one interpreter, all asleep.
    let n = sizes.sleepers;
    let mut sleepers = Group::spawn(
        env.python_command(&env.python.path)
            .arg(env.script("sleepers.py"))
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let out = sleepers.child.stdout.take().context("sleepers stdout")?;
    let mut ready = String::new();
    BufReader::new(out).read_line(&mut ready)?;
    if ready.trim() != "ready" {
        bail!("sleepers.py did not start its {n} children");
    }
    let want = idle_tracked + n as u64;
    let (with_sleepers, _) = premain.wait_tracked(Duration::from_secs(30), |t| t >= want)?;
    // Settle: the table and the allocator after the burst of fork records.
    thread::sleep(Duration::from_secs(2));
    let loaded = premain.rss();
    let loaded_kernel_tracked = premain.kernel_tracked();
    sleepers.kill();
    let (after_sleepers, _) = premain.wait_tracked(Duration::from_secs(30), |t| t <= idle_tracked)?;
    eprintln!(
        "xtask: bench: memory: idle {} KiB ({idle_tracked} tracked), with {n} sleepers {} KiB ({with_sleepers} tracked)",
        idle["vm_rss_kib"], loaded["vm_rss_kib"]
    );

    // Churn: short-lived processes; the table must come back to its idle size.
    let lost_before = premain.lost()?;
    let churn_start = Instant::now();
    let mut churn = Group::spawn(
        env.python_command(&env.python.path)
            .arg(env.script("churn.py"))
            .arg(sizes.churn.to_string())
            .arg("32")
            .stdin(Stdio::null()),
    )?;
    let mut peak_tracked = 0;
    while churn.child.try_wait()?.is_none() {
        peak_tracked = peak_tracked.max(premain.tracked()?);
        thread::sleep(Duration::from_millis(500));
    }
    let churn_secs = churn_start.elapsed().as_secs_f64();
    let base = after_sleepers.min(idle_tracked);
    // premain forgets processes whose exit it never saw on a 10 s sweep: allow two.
    let (after_churn, back_in) = premain.wait_tracked(Duration::from_secs(25), |t| t <= base)?;
    let churned = premain.rss();
    let churn_lost = premain.lost()?.saturating_sub(lost_before);
    let after_kernel_tracked = premain.kernel_tracked();
    let (_, stderr) = premain.daemon.stop()?;
    eprintln!(
        "xtask: bench: memory: {} processes in {churn_secs:.1} s; tracked {base} -> peak {peak_tracked} -> {after_churn} ({:.1} s after), RSS {} KiB",
        sizes.churn,
        back_in.as_secs_f64(),
        churned["vm_rss_kib"]
    );
    Ok(json!({
        "idle": { "tracked": idle_tracked, "kernel_tracked_entries": idle_kernel_tracked, "rss": idle },
        "sleepers": {
            "what": format!("{n} forked children of one {} process, asleep", env.python.version),
            "tracked": with_sleepers,
            "kernel_tracked_entries": loaded_kernel_tracked,
            "rss": loaded,
            "tracked_after_exit": after_sleepers,
        },
        "churn": {
            "what": format!("{} children forked by one {} process, each exiting at once (at most 32 alive)", sizes.churn, env.python.version),
            "processes": sizes.churn,
            "seconds": round(churn_secs),
            "tracked_before": base,
            "tracked_peak_sampled": peak_tracked,
            "tracked_after": after_churn,
            "returned_to_idle": after_churn <= base,
            "seconds_to_return": round(back_in.as_secs_f64()),
            "kernel_tracked_entries_after": after_kernel_tracked,
            "records_lost": churn_lost,
            "rss": churned,
        },
        "kernel_maps": {
            "memlock_total_bytes": map_total,
            "maps": maps.iter().map(|m| json!({
                "name": m.name, "type": m.map_type, "max_entries": m.max_entries, "memlock_bytes": m.memlock,
            })).collect::<Vec<_>>(),
        },
        "daemon_records": proc::summary_field(&stderr, "records"),
    }))
}
