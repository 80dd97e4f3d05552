//! Capacity: many interpreters at once, each making thousands of pre-main records (opens in a
//! `sitecustomize`), at paced offered rates and then as fast as they can, each step under a
//! fresh `premain run` whose stop summary counts every record decoded or lost. Then loss
//! accounting above capacity: a small ring buffer, every record printed (`--events`) and
//! counted per process here; records generated must equal records received plus records
//! premain counted lost.

use std::{
    collections::{HashMap, HashSet},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{
    Sizes,
    env::Env,
    proc::{self, Daemon, Group},
    stats::{median, round},
};

/// What the reader thread counts from premain's stdout.
#[derive(Default)]
struct Counts {
    /// Event lines per pid, and when the last one was read.
    per_pid: HashMap<u32, (u64, Instant)>,
    exited: HashSet<u32>,
    /// `send` event lines per pid (the loss-accounting run sends datagrams).
    sends: HashMap<u32, u64>,
    /// Sum of the `count` of loss records, by hook.
    lost: HashMap<String, u64>,
    lines: u64,
    last_line: Option<Instant>,
    /// When each alert line was read, with its process's pid.
    alerts: Vec<(Instant, u32)>,
}

type Shared = Arc<Mutex<Counts>>;

/// Counts a line without parsing it as JSON: at 200,000 lines/s a full parse would take a good
/// part of a core from the two that premain and the workers share.
fn count_line(counts: &Shared, line: &[u8]) {
    let now = Instant::now();
    let Ok(text) = std::str::from_utf8(line) else { return };
    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
    c.lines += 1;
    c.last_line = Some(now);
    if text.contains("\"kind\":\"event\"") {
        let Some(pid) = field_u32(text, "\"pid\":") else { return };
        let entry = c.per_pid.entry(pid).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
        if text.contains("\"hook\":\"exit\"") {
            c.exited.insert(pid);
        } else if text.contains("\"hook\":\"send\"") {
            *c.sends.entry(pid).or_default() += 1;
        }
    } else if text.contains("\"kind\":\"alert\"")
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        c.alerts.push((now, v["process"]["pid"].as_u64().unwrap_or(0) as u32));
    } else if text.contains("\"kind\":\"loss\"")
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        let hook = v["hook"].as_str().unwrap_or("?").to_owned();
        *c.lost.entry(hook).or_default() += v["count"].as_u64().unwrap_or(0);
    }
}

fn field_u32(text: &str, key: &str) -> Option<u32> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

struct Premain {
    daemon: Daemon,
    counts: Shared,
    metrics: String,
}

fn start(env: &Env, ring: Option<u32>, events: bool) -> anyhow::Result<Premain> {
    let counts: Shared = Arc::default();
    let sink = Arc::clone(&counts);
    let mut command = Command::new(&env.premain);
    command.args(["run", "--metrics-address", "127.0.0.1:0"]).env("RUST_LOG", "info");
    if events {
        command.arg("--events");
    }
    if let Some(bytes) = ring {
        command.args(["--ring-buffer-size", &bytes.to_string()]);
    }
    let mut daemon = Daemon::spawn("premain", &mut command, Box::new(move |line| count_line(&sink, line)))?;
    daemon.wait_stderr(super::proc::PREMAIN_READY, Duration::from_secs(120))?;
    let metrics = proc::metrics_address(&daemon.stderr()).context("premain's metrics address")?;
    Ok(Premain { daemon, counts, metrics })
}

/// A worker making `records` opens of the data file, or datagrams to `udp_port` on loopback,
/// beginning at `start_ns` (`CLOCK_MONOTONIC`) if given.
fn worker(env: &Env, records: u64, rate: f64, udp_port: Option<u16>, start_ns: Option<u64>) -> Command {
    let mut command = env.python_command(&env.python.path);
    command
        .args(["-c", "pass"])
        .env("PYTHONPATH", env.script("capacity"))
        // No __pycache__ written into the source tree, and the same opens on every run.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("BENCH_MARKER", &env.data)
        .env("BENCH_OPENS", records.to_string())
        .env("BENCH_RATE", rate.to_string())
        .env("BENCH_UDP_PORT", udp_port.unwrap_or(0).to_string())
        .env("BENCH_START_NS", start_ns.unwrap_or(0).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Waits until every pid's exit record has been read, or nothing has arrived for `quiet`.
fn settle(counts: &Shared, pids: &[u32], quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        thread::sleep(Duration::from_millis(50));
        let c = counts.lock().unwrap_or_else(|e| e.into_inner());
        if pids.iter().all(|p| c.exited.contains(p)) {
            return;
        }
        if c.last_line.is_some_and(|t| t.elapsed() > quiet) || Instant::now() > deadline {
            return;
        }
    }
}

/// Records one worker makes with none of its own (interpreter start-up, markers, exit), from a
/// few runs alone under `premain --events`; they must agree for the accounting to be exact.
fn calibrate(env: &Env, premain: &Premain, udp_port: Option<u16>) -> anyhow::Result<Vec<u64>> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let mut child = worker(env, 0, 0.0, udp_port, None).spawn().context("starting a worker")?;
        let pid = child.id();
        child.wait()?;
        settle(&premain.counts, &[pid], Duration::from_secs(3), Duration::from_secs(10));
        let c = premain.counts.lock().unwrap_or_else(|e| e.into_inner());
        runs.push(c.per_pid.get(&pid).map_or(0, |e| e.0));
    }
    Ok(runs)
}

/// An interpreter waiting, still in its start-up (a `sitecustomize`), for a line on stdin before
/// it reads a fake `~/.netrc`: its alert is decoded after every record already in the ring,
/// which tells when premain has caught up without printing every record.
struct Sentinel {
    child: Child,
}

impl Sentinel {
    fn spawn(env: &Env) -> anyhow::Result<Self> {
        use std::io::BufRead as _;
        let home = env.dir().join("home");
        std::fs::create_dir_all(&home)?;
        std::fs::write(home.join(".netrc"), "machine example.invalid login bench password fake\n")?;
        let mut child = env
            .python_command(&env.python.path)
            .args(["-c", "pass"])
            .env("PYTHONPATH", env.script("alert"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("BENCH_WAIT_STDIN", "1")
            .env("HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the sentinel")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("sentinel stdout")?).read_line(&mut line)?;
        if line.trim() != "waiting" {
            bail!("the sentinel interpreter did not start");
        }
        Ok(Self { child })
    }

    /// Lets it read the credential; returns when its alert was read.
    fn release(mut self, counts: &Shared, limit: Duration) -> anyhow::Result<Instant> {
        use std::io::Write as _;
        let pid = self.child.id();
        self.child.stdin.take().context("sentinel stdin")?.write_all(b"go\n")?;
        self.child.wait()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some((at, _)) =
                counts.lock().unwrap_or_else(|e| e.into_inner()).alerts.iter().find(|(_, p)| *p == pid)
            {
                return Ok(*at);
            }
            if Instant::now() > deadline {
                bail!("no alert from the sentinel interpreter (pid {pid}) within {limit:?}");
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CLOCK_MONOTONIC` now, the clock Python's `time.monotonic_ns` reads.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Time the workers' interpreters get to start before they all begin at once.
const START_MARGIN: Duration = Duration::from_millis(1500);

fn median_u64(values: &[u64]) -> u64 {
    median(&values.iter().map(|&v| v as f64).collect::<Vec<_>>()) as u64
}

/// Peak VmRSS of `pid` while the returned guard lives.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = proc::status_kib(pid, "VmRSS") {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(25));
            }
        });
        Self { stop, peak, handle: Some(handle) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// One throughput step: `workers` interpreters at once, each making `opens` records on top of
/// the `base` its start-up makes, under a fresh `premain run` (no --events: what is measured
/// is decoding, phasing and rule evaluation, as deployed). Every record premain decodes or
/// counts lost is in its stop summary; the decode window ends when a sentinel's alert, queued
/// behind the workers' records, has been read.
fn throughput(env: &Env, sizes: &Sizes, rate: f64, opens: u64, base: u64) -> anyhow::Result<Value> {
    let premain = start(env, None, false)?;
    let pid = premain.daemon.pid();
    let sentinel = Sentinel::spawn(env)?;
    let rss = RssSampler::start(pid);
    let load = proc::OtherLoad::start(&[pid]);
    let cpu_before = proc::cpu_time(pid).unwrap_or_default();
    let workers = sizes.capacity_workers;
    let (t0, start_ns) = (Instant::now() + START_MARGIN, monotonic_ns() + START_MARGIN.as_nanos() as u64);
    let children: Vec<Child> = (0..workers)
        .map(|_| {
            worker(env, opens, rate / workers as f64, None, Some(start_ns))
                .spawn()
                .context("starting a worker")
        })
        .collect::<anyhow::Result<_>>()?;
    for mut child in children {
        child.wait()?;
    }
    let generation = Instant::now().saturating_duration_since(t0).as_secs_f64();
    let caught_up = sentinel.release(&premain.counts, Duration::from_secs(60))?;
    let window = caught_up.saturating_duration_since(t0).as_secs_f64();
    let cpu = proc::cpu_time(pid).unwrap_or_default().saturating_sub(cpu_before).as_secs_f64();
    let others = load.share();
    let rss_peak = rss.finish();
    let hwm = proc::status_kib(pid, "VmHWM");
    let fill = proc::metric_sum(&proc::metrics(&premain.metrics)?, "premain_ring_buffer_fill_ratio", &[]);
    let (_, stderr) = premain.daemon.stop()?;
    let decoded = proc::summary_field(&stderr, "records").context("premain's stop summary")?;
    let lost = proc::summary_field(&stderr, "lost").context("premain's stop summary")?;
    let generated = (base + opens) * workers as u64;
    // Rates count the opens, made together from t0 on; start-up records come before t0.
    let opened = opens * workers as u64;
    let decoded_opens = decoded.min(generated).saturating_sub(base * workers as u64);
    let label = if rate > 0.0 { format!("{:.0}k/s", rate / 1e3) } else { "unpaced".into() };
    eprintln!(
        "xtask: bench: capacity {label}: {workers} workers x {opens} opens: {opened} opens in {generation:.2} s ({:.0}/s), all records decoded by {window:.2} s ({:.0} opens/s); decoded {decoded} of {generated}, lost {lost}, premain CPU {:.2} us/record",
        opened as f64 / generation,
        decoded_opens as f64 / window,
        cpu * 1e6 / decoded.max(1) as f64
    );
    Ok(json!({
        "step": label,
        "workers": workers,
        "opens_per_worker": opens,
        "offered_rate": if rate > 0.0 { json!(rate) } else { json!("unpaced") },
        "records_generated": generated,
        "records_decoded": decoded,
        "records_lost": lost,
        "other_records": decoded as i64 + lost as i64 - generated as i64,
        "opens": opened,
        "generation_s": round(generation),
        "generation_rate": round(opened as f64 / generation),
        "decode_window_s": round(window),
        "decoded_rate": round(decoded_opens as f64 / window),
        "ring_fill_peak_last_tick": round(fill),
        "daemon_cpu_s": round(cpu),
        "daemon_cpu_us_per_record": round(cpu * 1e6 / decoded.max(1) as f64),
        "daemon_rss_peak_kib": rss_peak,
        "daemon_vm_hwm_kib": hwm,
        "other_load": round(others),
    }))
}

/// Above capacity: a ring of a few pages, the workers sending datagrams to a loopback socket
/// nobody reads, under `premain run --events` with every line counted per pid. Few other
/// processes on a node send to an explicit address, so the `send` hook's loss counter is the
/// workers' alone, and the accounting is exact even on a shared machine (premain counts
/// losses per hook, not per process).
fn overflow(env: &Env, sizes: &Sizes, port: u16, base: u64) -> anyhow::Result<Value> {
    let port = Some(port);
    let premain = start(env, Some(sizes.accounting_ring), true)?;
    let (workers, sends) = (sizes.capacity_workers, sizes.capacity_unpaced_opens);
    let t0 = Instant::now();
    let children: Vec<Child> = (0..workers)
        .map(|_| worker(env, sends, 0.0, port, None).spawn().context("starting a worker"))
        .collect::<anyhow::Result<_>>()?;
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    for mut child in children {
        child.wait()?;
    }
    let generation = t0.elapsed().as_secs_f64();
    settle(&premain.counts, &pids, Duration::from_secs(3), Duration::from_secs(60));
    let counts = Arc::clone(&premain.counts);
    // Stopping reports the losses not yet reported and drains the ring.
    let (_, stderr) = premain.daemon.stop()?;
    let c = counts.lock().unwrap_or_else(|e| e.into_inner());
    let received: u64 = pids.iter().filter_map(|p| c.per_pid.get(p)).map(|e| e.0).sum();
    let received_sends: u64 = pids.iter().filter_map(|p| c.sends.get(p)).sum();
    let foreign_sends: u64 = c.sends.iter().filter(|(p, _)| !pids.contains(p)).map(|(_, n)| n).sum();
    let lost_sends = c.lost.get("send").copied().unwrap_or(0);
    let lost: u64 = c.lost.values().sum();
    let generated_sends = sends * workers as u64;
    let generated = (base + sends) * workers as u64;
    eprintln!(
        "xtask: bench: capacity overflow: {workers} workers x {sends} datagrams in {generation:.2} s: send records generated {generated_sends}, received {received_sends}, counted lost {lost_sends}"
    );
    Ok(json!({
        "workers": workers,
        "sends_per_worker": sends,
        "ring_buffer_bytes": sizes.accounting_ring,
        "send_accounting": {
            "generated": generated_sends,
            "received": received_sends,
            "lost": lost_sends,
            "unaccounted": generated_sends as i64 - received_sends as i64 - lost_sends as i64,
            "foreign_received": foreign_sends,
            "note": "records of a worker whose exec record was lost and which was gone before premain read its other records count as lost (stage unattributed), so unaccounted should be 0",
        },
        "all_hooks": {
            "generated_by_workers": generated,
            "received_from_workers": received,
            "lost_all_processes": lost,
            "lost_by_hook": c.lost,
            "unaccounted": generated as i64 - received as i64 - lost as i64,
        },
        "generation_s": round(generation),
        "daemon_summary": summary_of(&stderr),
    }))
}

pub(crate) fn measure(env: &Env, sizes: &Sizes) -> anyhow::Result<Value> {
    // premain judges the executables of interpreters already running when it starts: with this
    // one asleep, no worker is ever held, and no warm-up run adds records to a step.
    let mut judged = Group::spawn(
        env.python_command(&env.python.path)
            .args(["-c", "import time; time.sleep(3600)"])
            .stdin(Stdio::null()),
    )?;
    thread::sleep(Duration::from_millis(300));
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").context("binding the datagram sink")?;
    let port = sink.local_addr()?.port();
    let (calibration, calibration_sends) = {
        let premain = start(env, None, true)?;
        let runs = calibrate(env, &premain, None)?;
        let sends = calibrate(env, &premain, Some(port))?;
        premain.daemon.stop()?;
        (runs, sends)
    };
    if calibration.windows(2).any(|w| w[0] != w[1]) {
        eprintln!("xtask: bench: capacity: worker start-up records vary between runs: {calibration:?}");
    }
    let base = median_u64(&calibration);
    if base == 0 {
        bail!("premain printed no records of the capacity workers");
    }
    let mut steps = Vec::new();
    for &rate in &sizes.capacity_rates {
        let opens = (rate * sizes.capacity_secs / sizes.capacity_workers as f64) as u64;
        steps.push(throughput(env, sizes, rate, opens, base)?);
    }
    steps.push(throughput(env, sizes, 0.0, sizes.capacity_unpaced_opens, base)?);
    let overflow = overflow(env, sizes, port, median_u64(&calibration_sends))?;
    drop(sink);
    judged.kill();
    let rss_peak = steps.iter().filter_map(|s| s["daemon_rss_peak_kib"].as_u64()).max();
    Ok(json!({
        "what": format!(
            "{} {} interpreters started at once; once all are up, each opens a file thousands of times from its sitecustomize (pre-main), all beginning at the same instant, paced to an offered total rate or unpaced; a fresh `premain run` per step, records decoded and lost from its stop summary; decoded_rate: opens per second from that instant until a sentinel alert queued behind them is read",
            sizes.capacity_workers, env.python.version
        ),
        "records_per_worker_without_opens": calibration,
        "records_per_worker_without_sends": calibration_sends,
        "start_margin_s": START_MARGIN.as_secs_f64(),
        "steps": steps,
        "rss_peak_kib": rss_peak,
        "overflow": overflow,
    }))
}

fn summary_of(stderr: &str) -> Value {
    let field = |k| proc::summary_field(stderr, k);
    json!({
        "records": field("records"),
        "events": field("events"),
        "lost": field("lost"),
        "not_python": field("not_python"),
        "unjudged": field("unjudged"),
    })
}
