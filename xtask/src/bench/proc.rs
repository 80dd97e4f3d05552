//! Child processes of the bench: long-running daemons (premain, bpftrace) that are always
//! stopped, also when the bench fails half-way, and short workloads that are timed.

use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// Called with every stdout line of a daemon (without its newline), on the reader thread.
pub(crate) type LineSink = Box<dyn FnMut(&[u8]) + Send>;

/// A daemon child. Dropping it stops it (SIGINT, then SIGKILL): a premain left running would
/// keep holding new interpreters and slow every syscall of the node.
pub(crate) struct Daemon {
    name: String,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Daemon {
    pub(crate) fn spawn(name: &str, command: &mut Command, mut on_line: LineSink) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let out = child.stdout.take().context("daemon stdout")?;
        let err = child.stderr.take().context("daemon stderr")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut readers = vec![thread::spawn(move || {
            // Large reads: under the capacity load the daemon writes tens of MB/s, and the
            // reader shares two cores with it.
            let mut reader = BufReader::with_capacity(1 << 20, out);
            let mut line = Vec::with_capacity(4096);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        on_line(&line);
                    }
                }
            }
        })];
        readers.push(thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut all = sink.lock().unwrap_or_else(|e| e.into_inner());
                all.push_str(&line);
                all.push('\n');
            }
        }));
        Ok(Self { name: name.to_owned(), child: Some(child), stderr, readers })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until stderr contains `needle`; fails if the daemon exits first.
    pub(crate) fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                thread::sleep(Duration::from_millis(100));
                bail!("{} exited ({status}) before {needle:?}; stderr:\n{}", self.name, self.stderr());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?} (no {needle:?}); stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT, then SIGKILL if it has not stopped within 20 s; returns the exit status and all
    /// of stderr once both pipes are drained.
    pub(crate) fn stop(mut self) -> anyhow::Result<(ExitStatus, String)> {
        let status = self.halt().with_context(|| format!("stopping {}", self.name))?;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Ok((status, self.stderr()))
    }

    fn halt(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        signal(child.id(), libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Ok(child.wait()?);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.halt();
        }
    }
}

pub(crate) fn signal(pid: u32, sig: i32) {
    // SAFETY: no memory is passed; signalling a pid of our own child.
    unsafe { libc::kill(pid as i32, sig) };
}

/// A process group started by the bench (a Python forking many children); the whole group is
/// killed on drop, so no child outlives a failed bench.
pub(crate) struct Group {
    pub(crate) child: Child,
}

impl Group {
    pub(crate) fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let child = command.process_group(0).spawn().context("starting a workload")?;
        Ok(Self { child })
    }

    pub(crate) fn kill(&mut self) {
        // SAFETY: no memory passed; the group is the one `spawn` created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Wall-clock and CPU (user + system, its own and its waited-for children's) time of a run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
}

/// Runs `command` to completion and returns what it cost; a failure is an error.
pub(crate) fn timed(command: &mut Command) -> anyhow::Result<Cost> {
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {command:?}"))?;
    let mut err = child.stderr.take().context("stderr")?;
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 rather than Child::wait: it also reports the child's CPU time. The child is reaped
    // here, so `child` is not waited for again.
    // SAFETY: valid out-pointers; the pid is our own unreaped child.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    let stderr = reader.join().unwrap_or_default();
    if pid < 0 {
        bail!("waiting for {command:?}: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{command:?} failed (wait status {status:#x}): {stderr}");
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Cost { wall, cpu: tv(usage.ru_utime) + tv(usage.ru_stime) })
}

/// Runs a program for its output; a failure is an error.
/// Runs `command` to success; returns its stdout.
pub(crate) fn output_of(command: &mut Command) -> anyhow::Result<String> {
    let out = command.stdin(Stdio::null()).output().with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!("{command:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).context("stdout is not UTF-8")
}

pub(crate) fn output(program: impl AsRef<OsStr>, args: &[&str]) -> anyhow::Result<String> {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            program.to_string_lossy(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, `RssAnon`, ...).
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User plus system CPU time the process has used.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm, which may itself contain spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// `GET /metrics` from premain's endpoint.
pub(crate) fn metrics(addr: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body.split_once("\r\n\r\n").map_or(body.clone(), |(_, b)| b.to_owned()))
}

/// Sum of the samples of `name` whose labels contain every one of `labels`.
pub(crate) fn metric_sum(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            (rest.is_empty() || rest.starts_with('{')).then_some((rest, value))
        })
        .filter(|(rest, _)| labels.iter().all(|want| rest.contains(want)))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// What premain's ready line holds (level and message; its counts follow): no other line of
/// premain's has it.
pub(crate) const PREMAIN_READY: &str = " INFO premain ready ";

/// The `address=IP:PORT` premain logged for its metrics endpoint.
pub(crate) fn metrics_address(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|l| l.contains("serving /metrics"))?;
    let at = line.find("address=")? + "address=".len();
    Some(line[at..].split_whitespace().next()?.to_owned())
}

/// The `key=value` number of premain's stop summary (`records=`, `lost=`, ...).
pub(crate) fn summary_field(stderr: &str, key: &str) -> Option<u64> {
    let line = stderr.lines().rev().find(|l| l.contains("stopped reading"))?;
    let needle = format!(" {key}=");
    let at = line.find(&needle)? + needle.len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// One BPF map premain holds open, from `/proc/<pid>/fdinfo`.
#[derive(Debug, Clone)]
pub(crate) struct MapInfo {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) map_type: u64,
    pub(crate) max_entries: u64,
    pub(crate) memlock: u64,
}

pub(crate) fn bpf_maps(pid: u32) -> Vec<MapInfo> {
    let names = map_names();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return Vec::new() };
    let mut maps: Vec<MapInfo> = fds
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .filter_map(|info| {
            let field = |key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let id = field("map_id")?;
            Some(MapInfo {
                id,
                name: names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()).unwrap_or_default(),
                map_type: field("map_type")?,
                max_entries: field("max_entries")?,
                memlock: field("memlock")?,
            })
        })
        .collect();
    maps.sort_by_key(|m| m.id);
    maps.dedup_by_key(|m| m.id);
    maps
}

fn map_names() -> Vec<(u64, String)> {
    let Ok(text) = output("bpftool", &["-j", "map", "show"]) else { return Vec::new() };
    let Ok(serde_json::Value::Array(maps)) = serde_json::from_str(&text) else { return Vec::new() };
    maps.iter()
        .filter_map(|m| Some((m["id"].as_u64()?, m["name"].as_str().unwrap_or_default().to_owned())))
        .collect()
}

/// Entries in a BPF hash map right now (`bpftool map dump`).
pub(crate) fn map_entries(id: u64) -> Option<usize> {
    let text = output("bpftool", &["-j", "map", "dump", "id", &id.to_string()]).ok()?;
    match serde_json::from_str(&text).ok()? {
        serde_json::Value::Array(entries) => Some(entries.len()),
        _ => None,
    }
}

/// premain and bpftrace processes on the node other than `ours`: their programs slow the same
/// syscalls, and they trace the bench's Python processes too.
pub(crate) fn foreign_tracers(ours: &[u32]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !ours.contains(pid) && *pid != std::process::id())
        .filter_map(|pid| {
            let comm = read_trimmed(format!("/proc/{pid}/comm"));
            matches!(comm.as_str(), "premain" | "bpftrace").then(|| format!("{comm}({pid})"))
        })
        .collect();
    found.sort();
    found
}

/// Busy and total jiffies of all CPUs so far (`/proc/stat`).
pub(crate) fn cpu_jiffies() -> (u64, u64) {
    let stat = read_trimmed("/proc/stat");
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Share of the machine's CPU time that was busy between two `cpu_jiffies` readings.
pub(crate) fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 { 0.0 } else { after.0.saturating_sub(before.0) as f64 / total as f64 }
}

/// CPU time of the bench and of the children it has waited for.
pub(crate) fn own_cpu() -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN]
        .into_iter()
        .map(|who| {
            // SAFETY: all-zero is a valid rusage.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: valid out-pointer.
            unsafe { libc::getrusage(who, &mut usage) };
            tv(usage.ru_utime) + tv(usage.ru_stime)
        })
        .sum()
}

/// How much of the machine others used over a stretch: all busy CPU time minus the bench's,
/// its waited-for children's and that of `running` (the tracer, a background load), as a share
/// of all the CPUs' time.
pub(crate) struct OtherLoad {
    jiffies: (u64, u64),
    own: Duration,
    running: Vec<(u32, Duration)>,
}

impl OtherLoad {
    pub(crate) fn start(running: &[u32]) -> Self {
        Self {
            jiffies: cpu_jiffies(),
            own: own_cpu(),
            running: running.iter().map(|&pid| (pid, cpu_time(pid).unwrap_or_default())).collect(),
        }
    }

    pub(crate) fn share(&self) -> f64 {
        let now = cpu_jiffies();
        let total = now.1.saturating_sub(self.jiffies.1);
        if total == 0 {
            return 0.0;
        }
        // SAFETY: no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let busy = now.0.saturating_sub(self.jiffies.0) as f64 / hz;
        let running: Duration = self
            .running
            .iter()
            .map(|&(pid, before)| cpu_time(pid).unwrap_or_default().saturating_sub(before))
            .sum();
        let ours = own_cpu().saturating_sub(self.own) + running;
        ((busy - ours.as_secs_f64()) / (total as f64 / hz)).clamp(0.0, 1.0)
    }
}

/// Most of the machine the bench may find busy before a sample (others compiling, say).
const QUIET_BUSY: f64 = 0.25;

/// What is left of the bench's whole budget for waiting for a quiet machine, in milliseconds:
/// on a machine busy all along, the bench runs anyway, in bounded time.
static QUIET_BUDGET_MS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn set_quiet_budget(budget: Duration) {
    QUIET_BUDGET_MS.store(budget.as_millis() as u64, Ordering::Relaxed);
}

/// Waits up to `limit` (and what is left of the budget) for other tracers (another premain
/// under test, a bpftrace) to go away and for the machine to be mostly idle; returns the
/// tracers still there.
pub(crate) fn wait_quiet(limit: Duration) -> Vec<String> {
    let started = Instant::now();
    let budget = Duration::from_millis(QUIET_BUDGET_MS.load(Ordering::Relaxed));
    let deadline = started + limit.min(budget);
    let spend = || {
        let ms = started.elapsed().as_millis() as u64;
        let _ = QUIET_BUDGET_MS
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(ms)));
    };
    let mut announced = false;
    loop {
        let before = cpu_jiffies();
        thread::sleep(Duration::from_millis(500));
        let busy = busy_share(before, cpu_jiffies());
        let others = foreign_tracers(&[]);
        if (others.is_empty() && busy <= QUIET_BUSY) || Instant::now() > deadline {
            spend();
            return others;
        }
        if !announced {
            eprintln!(
                "xtask: bench: waiting up to {limit:?} for a quiet machine ({:.0}% busy; other tracers: {})",
                busy * 100.0,
                if others.is_empty() { "none".to_owned() } else { others.join(" ") }
            );
            announced = true;
        }
    }
}

pub(crate) fn read_trimmed(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_match_labels() {
        let text = "# HELP x\npremain_events_total{hook=\"open\"} 5\npremain_events_total{hook=\"exec\"} 2\n\
                    premain_events_lost_total{hook=\"open\",stage=\"ring_buffer\"} 7\npremain_tracked_processes 3\n";
        assert_eq!(metric_sum(text, "premain_events_total", &[]), 7.0);
        assert_eq!(metric_sum(text, "premain_events_total", &["hook=\"open\""]), 5.0);
        assert_eq!(metric_sum(text, "premain_events_lost_total", &["stage=\"ring_buffer\""]), 7.0);
        assert_eq!(metric_sum(text, "premain_tracked_processes", &[]), 3.0);
    }

    #[test]
    fn summary_fields() {
        let err = "x\n2026 INFO stopped reading; delivering queued alerts records=85702 events=85413 lost=75680 not_python=264\n";
        assert_eq!(summary_field(err, "records"), Some(85702));
        assert_eq!(summary_field(err, "lost"), Some(75680));
        assert_eq!(summary_field(err, "alerts"), None);
    }
}
