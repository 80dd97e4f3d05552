//! Faults: premain killed with SIGKILL under load and restarted, kernel ring buffer overflow
//! accounted for exactly, and premain's own activity (sinks, webhook, /proc reads) never
//! recorded, even when premain is started by a Python process; no syscall left in flight in
//! the kernel by a process killed after premain stopped tracking it.
//!
//! Every premain started here is a [`Premain`], stopped on drop on every path; every workload
//! process is killed on drop.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, UdpSocket},
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    Bait, Premain, Python, TempDir, alert_of, eventually, http_get, pyenv_python, script,
};
use serde_json::{Value, json};

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `/proc/<pid>/stat` state letter (`T` for stopped).
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The BPF programs, links and maps a process holds, from its fd table.
#[derive(Debug, Default, Clone)]
struct BpfObjects {
    progs: BTreeSet<u64>,
    links: BTreeSet<u64>,
    maps: BTreeSet<u64>,
}

impl BpfObjects {
    fn of(pid: i32) -> Self {
        let mut found = Self::default();
        for entry in fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo").flatten() {
            let Ok(text) = fs::read_to_string(entry.path()) else { continue };
            let field = |name: &str| {
                text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok())
            };
            // A link's fdinfo names its program too: links first.
            if let Some(id) = field("link_id:") {
                found.links.insert(id);
            } else if let Some(id) = field("map_id:") {
                found.maps.insert(id);
            } else if let Some(id) = field("prog_id:") {
                found.progs.insert(id);
            }
        }
        found
    }

    /// Those of these objects the kernel still has.
    fn still_live(&self) -> BpfObjects {
        let live = |kind: &str, mine: &BTreeSet<u64>| {
            let now = bpftool_ids(kind);
            mine.iter().copied().filter(|id| now.contains_key(id)).collect()
        };
        BpfObjects {
            progs: live("prog", &self.progs),
            links: live("link", &self.links),
            maps: live("map", &self.maps),
        }
    }

    fn is_empty(&self) -> bool {
        self.progs.is_empty() && self.links.is_empty() && self.maps.is_empty()
    }
}

/// `bpftool <kind> show -j`: id → name (programs and maps) or type (links).
fn bpftool_ids(kind: &str) -> BTreeMap<u64, String> {
    let out = Command::new(integration_tests::tool("bpftool"))
        .args([kind, "show", "-j"])
        .output()
        .expect("run bpftool");
    assert!(out.status.success(), "bpftool {kind} show: {}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|o| {
            let name = o.get("name").or_else(|| o.get("type")).and_then(Value::as_str).unwrap_or("");
            (o["id"].as_u64().expect("an id"), name.to_owned())
        })
        .collect()
}

/// The keys (tgids) of premain's `TRACKED` kernel map.
fn tracked_in_kernel(objects: &BpfObjects) -> BTreeSet<u32> {
    map_keys(objects, "TRACKED")
}

/// The `u32` keys of premain's kernel map `name`.
fn map_keys(objects: &BpfObjects, name: &str) -> BTreeSet<u32> {
    let maps = bpftool_ids("map");
    let id = objects
        .maps
        .iter()
        .find(|id| maps.get(id).is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("premain holds its {name} map"));
    let out = Command::new(integration_tests::tool("bpftool"))
        .args(["map", "dump", "id", &id.to_string(), "-j"])
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    entries
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            let bytes: Vec<u8> = e["key"]
                .as_array()
                .expect("key bytes")
                .iter()
                .map(|b| u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
                .collect();
            u32::from_le_bytes(bytes[..4].try_into().unwrap())
        })
        .collect()
}

/// Entries under /sys/fs/bpf (pinned objects), recursively.
fn pinned() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            out.insert(entry.path().display().to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(Path::new("/sys/fs/bpf"), &mut out);
    out
}

/// Checks that premain's objects are loaded, under the program names monitor-ebpf defines.
fn check_loaded(label: &str, objects: &BpfObjects) {
    let progs = bpftool_ids("prog");
    let names: BTreeSet<&str> =
        objects.progs.iter().filter_map(|id| progs.get(id)).map(String::as_str).collect();
    for expected in [
        "file_enter_openat",
        "file_exit_openat",
        "net_enter_connect",
        "exec_image",
        "process_fork",
        "process_exit",
        "python_audit",
    ] {
        assert!(names.contains(expected), "[{label}] {expected} not among premain's programs: {names:?}");
    }
    assert!(!objects.links.is_empty() && !objects.maps.is_empty(), "[{label}] {objects:?}");
    let live = objects.still_live();
    assert_eq!(live.progs.len(), objects.progs.len(), "[{label}] bpftool lists every program it holds");
    assert_eq!(live.links.len(), objects.links.len(), "[{label}] bpftool lists every link it holds");
}

/// Waits (bounded) until the kernel has released every object in `objects`.
fn check_released(label: &str, objects: &BpfObjects) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = objects.still_live();
        if live.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{label}] kernel objects left behind after premain exited: {live:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn python_cmd(python: &Python) -> Command {
    let mut cmd = Command::new(&python.path);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// Events of `pids` (as `pid`) in `events`.
fn events_of<'a>(events: &'a [Value], pids: &BTreeSet<u32>) -> Vec<&'a Value> {
    events.iter().filter(|e| e["pid"].as_u64().is_some_and(|p| pids.contains(&(p as u32)))).collect()
}

#[test]
fn sigkill_under_load_then_restart_leaves_nothing_behind_and_survivors_are_runtime() {
    let python = pyenv_python();
    eprintln!("python: {} ({})", python.label, python.path.display());
    let pinned_before = pinned();
    let bait = Bait::create();
    let dir = TempDir::new("sigkill");
    let target = dir.file("load-target", "x\n");
    let stop = dir.path().join("stop");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();

    // The SIGSTOP hold (the exec watch's fallback) is what a killed premain can leave behind.
    let fallback = dir.file("fallback.toml", "[limits]\nexec_watch = false\n");
    let first = Premain::start(&["--config", fallback.to_str().unwrap()]);
    let first_objects = BpfObjects::of(first.pid());
    check_loaded("first premain", &first_objects);

    // Load: two Pythons opening a file in a loop and forking now and then.
    let workers: Vec<Proc> = (0..2)
        .map(|_| {
            Proc(
                python_cmd(&python)
                    .arg(script("load_worker.py"))
                    .args([target.as_os_str(), stop.as_os_str()])
                    .spawn()
                    .expect("spawn worker"),
            )
        })
        .collect();
    // A Python held in start-up (its sitecustomize waits) when premain dies.
    let site = dir.path().join("site");
    fs::create_dir_all(&site).unwrap();
    fs::copy(script("waiting_sitecustomize.py"), site.join("sitecustomize.py")).unwrap();
    let waiting = dir.path().join("waiting");
    let go = dir.path().join("go");
    let mut survivor = Proc(
        python_cmd(&python)
            .args(["-c", "pass"])
            .env("HOME", bait.dir.path().join("home"))
            .env("PYTHONPATH", &site)
            .env("PREMAIN_WAITING", &waiting)
            .env("PREMAIN_GO", &go)
            .env("PREMAIN_PORT", port.to_string())
            .spawn()
            .expect("spawn survivor"),
    );
    let survivor_pid = survivor.pid();
    eventually("the survivor waiting in its sitecustomize", || waiting.exists());
    let w = first.wait_for("the survivor's start-up open under the first premain", |v| {
        v["hook"] == "open" && v["pid"] == survivor_pid && v["path"] == waiting.to_str().unwrap()
    });
    assert_eq!(w["phase"], "startup", "the survivor is pre-main when premain dies: {w}");
    for worker in &workers {
        let pid = worker.pid();
        first.wait_for("worker load", |v| v["hook"] == "open" && v["pid"] == pid);
    }
    // New interpreter files, each held until judged: one may be stopped when premain dies.
    let fresh_loop = Proc(
        Command::new(integration_tests::tool("sh"))
            .args([
                "-c",
                r#"i=0; while [ $i -lt 8 ]; do i=$((i+1)); f="$1/python3-fresh-$i";
                   cp /usr/bin/python3.11 "$f" && "$f" -c pass || exit 1; rm -f "$f"; done"#,
                "sh",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn fresh loop"),
    );
    first.wait_for("a fresh interpreter held by the first premain", |v| {
        v["hook"] == "image" && v["path"].as_str().is_some_and(|p| p.contains("python3-fresh-"))
    });

    // premain hangs (SIGSTOP, as a watchdog would find it) while a new interpreter starts:
    // that one is held for good, until a premain resumes it.
    first.signal(libc::SIGSTOP);
    let frozen_copy = dir.path().join("python3-frozen");
    fs::copy("/usr/bin/python3.11", &frozen_copy).unwrap();
    let mut frozen =
        Proc(Command::new(&frozen_copy).args(["-c", "pass"]).stdin(Stdio::null()).spawn().expect("spawn"));
    eventually("the new interpreter held by the hung premain", || state(frozen.pid()) == Some('T'));
    let (status, _) = first.stop_with(libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    let mut held_at_kill: Vec<u32> =
        fs::read_to_string(format!("/proc/{0}/task/{0}/children", fresh_loop.pid()))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| state(*p) == Some('T'))
            .collect();
    held_at_kill.push(frozen.pid());
    eprintln!("processes held (stopped) when the first premain was killed: {held_at_kill:?}");
    check_released("first premain, SIGKILL", &first_objects);
    assert_eq!(state(frozen.pid()), Some('T'), "held until a premain resumes it");

    let second = Premain::start(&[]);
    let second_objects = BpfObjects::of(second.pid());
    check_loaded("second premain", &second_objects);
    // Nothing stays stopped: the fresh loop runs to its end, the workers keep running.
    let mut fresh_loop = fresh_loop;
    // Bounded generously: other premains on a shared machine may hold these runs too.
    let deadline = Instant::now() + Duration::from_secs(300);
    let loop_status = loop {
        if let Some(status) = fresh_loop.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the fresh-interpreter loop is stuck (a process left stopped?)");
        thread::sleep(Duration::from_millis(100));
    };
    assert!(loop_status.success(), "{loop_status}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let frozen_status = loop {
        if let Some(status) = frozen.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the process held when premain was killed is still stopped");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(frozen_status.success(), "{frozen_status}");
    eprintln!(
        "second premain resumed orphaned holds: {}",
        second.stderr().contains("resumed processes a previous premain left stopped")
    );
    for pid in &held_at_kill {
        assert_ne!(state(*pid), Some('T'), "pid {pid} is still stopped");
    }
    for worker in &workers {
        assert_ne!(state(worker.pid()), Some('T'), "worker {} stopped", worker.pid());
    }

    // The survivor now does what pre-main code does; premain started after it: runtime.
    fs::write(&go, "").unwrap();
    let status = survivor.0.wait().unwrap();
    assert!(status.success(), "{status}");
    second.wait_exit(survivor_pid);
    let worker_pids: BTreeSet<u32> = workers.iter().map(Proc::pid).collect();
    for pid in &worker_pids {
        second.wait_for("worker load under the second premain", |v| v["hook"] == "open" && v["pid"] == *pid);
    }
    let events = second.events();
    let netrc = bait.netrc();
    let reads: Vec<&Value> = events
        .iter()
        .filter(|e| e["pid"] == survivor_pid && e["hook"] == "open" && e["path"] == netrc.to_str().unwrap())
        .collect();
    assert_eq!(reads.len(), 2, "both credential reads are recorded: {reads:#?}");
    let connect = events
        .iter()
        .find(|e| e["pid"] == survivor_pid && e["hook"] == "connect" && e["port"] == port)
        .unwrap_or_else(|| panic!("the survivor's connect is recorded"));
    let child_exec = events
        .iter()
        .find(|e| e["ppid"] == survivor_pid && e["hook"] == "exec" && e["path"] == "/bin/true")
        .unwrap_or_else(|| panic!("the survivor's child's exec is recorded"));
    let child_pid = child_exec["pid"].as_u64().unwrap() as u32;
    for e in reads.iter().chain([&connect, &child_exec]) {
        assert_eq!(e["phase"], "runtime", "a survivor acts at runtime: {e}");
    }
    for e in reads.iter().chain([&connect]) {
        assert_eq!((e["preexisting"].clone(), e["tracking"].clone()), (json!(true), json!("python")), "{e}");
    }
    let mut survivors: BTreeSet<u32> = worker_pids.clone();
    survivors.extend([survivor_pid, child_pid]);
    let survivor_events = events_of(&events, &survivors);
    assert!(!survivor_events.is_empty());
    for e in &survivor_events {
        assert_eq!(e["phase"], "runtime", "{e}");
    }
    for e in events_of(&events, &worker_pids) {
        assert_eq!(e["preexisting"], true, "{e}");
    }
    // Children the workers forked after the restart inherit runtime.
    let forked: Vec<&Value> = events
        .iter()
        .filter(|e| e["ppid"].as_u64().is_some_and(|p| worker_pids.contains(&(p as u32))))
        .collect();
    for e in &forked {
        assert_eq!(e["phase"], "runtime", "{e}");
    }

    // Control: a Python started now is pre-main as usual, and alerts.
    let pid = bait.run(&python);
    let alert = alert_of(&second, pid, &netrc);
    assert_eq!((alert["phase"].as_str(), alert["rule"].as_str()), (Some("startup"), Some("credential-read")));
    // Alerts leave in record order: any alert of the survivors would be out by now.
    let survivor_alerts: Vec<Value> = second
        .alerts()
        .into_iter()
        .filter(|a| {
            let pid = a["process"]["pid"].as_u64().unwrap_or(0) as u32;
            survivors.contains(&pid)
                || a["process"]["ppid"].as_u64().is_some_and(|p| survivors.contains(&(p as u32)))
        })
        .collect();
    assert!(survivor_alerts.is_empty(), "survivors raised alerts: {survivor_alerts:#?}");

    fs::write(&stop, "").unwrap();
    for mut worker in workers {
        assert!(worker.0.wait().unwrap().success());
    }
    let (status, stderr) = second.stop();
    assert!(status.success(), "{status}\n{stderr}");
    check_released("second premain, SIGINT", &second_objects);
    let pinned_after = pinned();
    assert!(
        pinned_after.is_subset(&pinned_before),
        "new pinned objects: {pinned_after:?} vs {pinned_before:?}"
    );
    drop(listener);
}

/// A Python that opens a file and sends datagrams exactly when told (`exact_burst.py`).
struct Burst {
    child: Proc,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Burst {
    fn start(python: &Python, target: &Path, count: u64, port: u16, sentinel_port: u16) -> Self {
        let mut child = Command::new(&python.path)
            .arg(script("exact_burst.py"))
            .arg(target)
            .args([count.to_string(), port.to_string(), sentinel_port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn burst");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut burst = Self { child: Proc(child), stdin, stdout };
        burst.expect("ready");
        burst
    }

    fn expect(&mut self, word: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read burst");
        assert_eq!(line.trim(), word, "exact_burst.py step");
    }

    fn tell(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }
}

/// Sum of the counts of `hook`'s kernel loss records (the burst process is known from the
/// start, so its records can only be lost in the kernel; `daemon` losses are other processes').
fn lost_in_records(lines: &[Value], hook: &str) -> u64 {
    lines
        .iter()
        .filter(|v| v["kind"] == "loss" && v["hook"] == hook && v["stage"] == "kernel")
        .map(|v| v["count"].as_u64().expect("count"))
        .sum()
}

fn lost_in_metrics(premain: &Premain, hook: &str) -> u64 {
    ["ring_buffer", "kernel_table"]
        .iter()
        .map(|stage| {
            premain.metric(&format!(r#"premain_events_lost_total{{hook="{hook}",stage="{stage}"}}"#)) as u64
        })
        .sum()
}

/// One run; returns a report and the hooks where more records were counted lost than made,
/// which only other tracked processes (other users' Pythons on this machine, whose records
/// share the ring and the per-hook counters) can cause, each with whether any sign of other
/// tracked processes was seen. Fewer fails the test at once: records vanished without a loss
/// record.
fn exact_loss_attempt(python: &Python, count: u64) -> (String, Vec<(&'static str, bool)>) {
    let dir = TempDir::new("exact-loss");
    let target = dir.file("burst-target", "x\n");
    let sentinel = dir.file("burst-target.sentinel", "x\n");
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sentinel_sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (port, sentinel_port) =
        (sink.local_addr().unwrap().port(), sentinel_sink.local_addr().unwrap().port());
    // Started before premain: a preexisting Python. Its executable is judged at start-up and
    // it has no start-up records of its own, so the only records it makes are the ones
    // counted here.
    let mut burst = Burst::start(python, &target, count, port, sentinel_port);
    let pid = burst.child.pid();
    let premain = Premain::start(&["--ring-buffer-size", "4096", "--debug-stall-reader-ms", "1000"]);
    burst.tell("go");
    burst.expect("done");
    // The reader runs once the first losses are reported.
    premain.wait_for("the first loss record", |v| v["kind"] == "loss");
    // Sentinel rounds until one of each is in: records of a process arrive in order, so every
    // earlier record of the burst has then been read or counted lost. (The one-page ring is
    // shared with every Python on the machine: a sentinel can be lost too; each round counts.)
    let sentinel_path = sentinel.to_str().unwrap();
    let sentinel_addr = format!("127.0.0.1:{sentinel_port}");
    let mut rounds = 0u64;
    let seen = |hook: &str, key: &str, value: &str| {
        premain.events().iter().any(|e| e["pid"] == pid && e["hook"] == hook && e[key] == value)
    };
    loop {
        rounds += 1;
        burst.tell("s");
        burst.expect("sentinel");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline
            && !(seen("open", "path", sentinel_path) && seen("send", "addr", &sentinel_addr))
        {
            thread::sleep(Duration::from_millis(100));
        }
        if seen("open", "path", sentinel_path) && seen("send", "addr", &sentinel_addr) {
            break;
        }
        assert!(rounds < 20, "no sentinel got through in {rounds} rounds");
    }
    // Losses are reported on the next 1 s tick: wait until the send losses (no other process
    // on the machine is expected to send datagrams to an explicit address) have not moved for
    // a while, and the records and the metrics agree for both hooks at that moment. Other
    // Pythons' open records may keep being lost meanwhile, so the open count is taken as a
    // consistent snapshot rather than waited to stand still.
    let mut last_send = u64::MAX;
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    let settled = loop {
        let before = premain.lines();
        let metrics = (lost_in_metrics(&premain, "open"), lost_in_metrics(&premain, "send"));
        let after = premain.lines();
        let counted = |lines: &[Value]| (lost_in_records(lines, "open"), lost_in_records(lines, "send"));
        let consistent = counted(&before) == counted(&after) && metrics == counted(&after);
        let send = counted(&after).1;
        if send != last_send {
            last_send = send;
            since = Instant::now();
        } else if consistent && since.elapsed() > Duration::from_millis(2500) {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "loss records {:?} and metrics {metrics:?} never settled",
            counted(&after)
        );
        thread::sleep(Duration::from_millis(200));
    };
    burst.tell("x");
    let (status, stderr, all_lines) = premain.stop_lines();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("lost="), "{stderr}");

    let events: Vec<&Value> = settled.iter().filter(|v| v["kind"] == "event" && v["pid"] == pid).collect();
    let losses: Vec<&Value> =
        settled.iter().filter(|v| v["kind"] == "loss" && v["stage"] == "kernel").collect();
    for loss in &losses {
        assert!(loss["count"].as_u64().unwrap() > 0, "{loss}");
        let reason = loss["reason"].as_str().unwrap();
        assert!(["ring_buffer_full", "syscall_table_full", "tracked_table_full"].contains(&reason), "{loss}");
    }
    // Other tracked processes' records share the ring and the per-hook loss counters.
    // Signs of them over premain's whole run: their events, losses on hooks the burst
    // process never uses, or losses of records whose process was gone before it was identified.
    let others = all_lines
        .iter()
        .filter(|v| {
            (v["kind"] == "event" && v["pid"] != pid)
                || (v["kind"] == "loss" && v["hook"] != "open" && v["hook"] != "send")
                || (v["kind"] == "loss" && v["stage"] != "kernel")
        })
        .count();
    let mut report = Vec::new();
    let mut disturbed = Vec::new();
    for (hook, key, burst_value, sentinel_value) in [
        ("open", "path", target.to_str().unwrap().to_owned(), sentinel_path.to_owned()),
        ("send", "addr", format!("127.0.0.1:{port}"), sentinel_addr.clone()),
    ] {
        let of_hook: Vec<&&Value> = events.iter().filter(|e| e["hook"] == hook).collect();
        let received = of_hook.iter().filter(|e| e[key] == burst_value.as_str()).count() as u64;
        let sentinels = of_hook.iter().filter(|e| e[key] == sentinel_value.as_str()).count() as u64;
        assert_eq!(
            received + sentinels,
            of_hook.len() as u64,
            "{hook}: the burst process made records it was not told to"
        );
        let generated = count + rounds;
        let lost = lost_in_records(&settled, hook);
        let line = format!(
            "{hook}: generated {generated} ({count} + {rounds} sentinels), received {} ({received} + \
             {sentinels} sentinels), counted lost {lost}",
            received + sentinels
        );
        eprintln!("{line}");
        assert!(
            received + sentinels + lost >= generated,
            "records vanished without a loss record: {line}\nloss records: {losses:#?}"
        );
        if received + sentinels + lost > generated {
            // Only records of other processes can be counted beyond ours.
            eprintln!("{hook}: more counted lost than made; {others} signs of other tracked processes");
            disturbed.push((hook, others > 0));
        }
        report.push(line);
    }
    assert!(lost_in_records(&settled, "open") > 0, "a 4096-byte ring and a stalled reader must overflow");
    drop((sink, sentinel_sink));
    (report.join("; "), disturbed)
}

#[test]
fn ring_buffer_overflow_accounts_for_every_record_exactly() {
    let python = pyenv_python();
    eprintln!("python: {} ({})", python.label, python.path.display());
    const COUNT: u64 = 2000;
    const ATTEMPTS: u32 = 3;
    let (mut send_exact, mut open_explained) = (false, false);
    for attempt in 1..=ATTEMPTS {
        let (report, disturbed) = exact_loss_attempt(&python, COUNT);
        if disturbed.is_empty() {
            eprintln!("exact on attempt {attempt}: {report}");
            return;
        }
        send_exact |= !disturbed.iter().any(|(hook, _)| *hook == "send");
        open_explained |= disturbed.iter().all(|(hook, seen)| *hook != "open" || *seen);
        eprintln!(
            "attempt {attempt}: more counted lost than made (other tracked processes?) {disturbed:?}: {report}"
        );
    }
    // A machine shared with other users' Pythons: their lost opens are counted with ours, so
    // the open hook can only be bounded here (it is exact on a quiet machine, as in CI). The
    // send hook, which nothing else uses, must still have been exact once, and an open excess
    // must have come with other tracked processes in sight at least once.
    assert!(send_exact, "the send hook was never exact in {ATTEMPTS} attempts");
    assert!(open_explained, "open losses exceeded what was made with no other tracked process in sight");
    eprintln!("open hook: exact accounting needs a quiet machine; bounded (received + lost >= made) here");
}

fn webhook_receiver() -> (Proc, ChildStdin, String) {
    let mut command = Command::new(integration_tests::tool("python3"));
    command.arg(script("webhook_receiver.py"));
    let (child, stdin, port) = integration_tests::spawn_listener(command, "the webhook receiver");
    (Proc(child), stdin, format!("127.0.0.1:{port}"))
}

/// Runs premain (directly or under a Python launcher) with a file sink and a webhook sink,
/// drives alerts through both, and checks premain never recorded itself.
fn check_self_protection(label: &str, launcher: Option<&Python>) {
    let python = pyenv_python();
    let bait = Bait::create();
    let (receiver, _receiver_stdin, addr) = webhook_receiver();
    let out = bait.dir.path().join("alerts.jsonl");
    let spool = bait.dir.path().join("spool");
    let config = bait.dir.file(
        "premain.toml",
        &format!(
            "[alerts]\nfold_window_secs = 0\n[[sinks]]\ntype = \"stdout\"\n\
             [[sinks]]\ntype = \"file\"\npath = {:?}\nfsync = \"always\"\nmax_bytes = 4096\nkeep = 2\n\
             [[sinks]]\ntype = \"webhook\"\nname = \"soc\"\nurl = \"http://{addr}/alerts\"\nbatch_max = 2\n\
             batch_wait_ms = 20\nspool_dir = {:?}\n",
            out.to_str().unwrap(),
            spool.to_str().unwrap()
        ),
    );
    let args = ["--config", config.to_str().unwrap()];
    let premain = match launcher {
        Some(py) => Premain::start_via(&[py.path.as_os_str(), script("launch.py").as_os_str()], &args),
        None => Premain::start(&args),
    };
    let me = premain.daemon_pid() as u32;
    if launcher.is_some() {
        assert_ne!(me, premain.pid() as u32, "[{label}] premain runs as the launcher's child");
    }
    let objects = BpfObjects::of(me as i32);
    // Control: a Python premain has nothing to do with is tracked.
    let sleeper = Proc(python_cmd(&python).args(["-c", "import time; time.sleep(120)"]).spawn().unwrap());
    let mut pids = Vec::new();
    for _ in 0..6 {
        let pid = bait.run(&python);
        alert_of(&premain, pid, &bait.netrc());
        pids.push(pid);
        // Premain's own reads: metrics, a reload of its configuration.
        assert_eq!(http_get(&premain.metrics_address(), "/metrics").0, 200);
    }
    premain.signal(libc::SIGHUP);
    eventually("the reload", || premain.stderr().contains("configuration reloaded"));
    eventually("alerts in the file sink (rotated)", || {
        out.exists() && out.with_extension("jsonl.1").exists()
    });
    let received = || -> Vec<Value> { serde_json::from_str(&http_get(&addr, "/_received").1).unwrap() };
    eventually("alerts delivered to the webhook", || received().len() >= pids.len());
    let sleeper_pid = sleeper.pid();
    premain.wait_for("the control sleeper's events", |v| v["pid"] == sleeper_pid);
    let tracked = tracked_in_kernel(&objects);
    assert!(!tracked.contains(&me), "[{label}] premain ({me}) is in its own TRACKED map");
    assert!(tracked.contains(&sleeper_pid), "[{label}] the control Python is tracked: {tracked:?}");
    assert!(tracked.contains(&receiver.pid()), "[{label}] the receiver (a Python) is tracked: {tracked:?}");
    if launcher.is_some() {
        assert!(tracked.contains(&(premain.pid() as u32)), "[{label}] the Python launcher is tracked");
    }
    // Once the last bait's exit is in, everything before it has been handled.
    premain.wait_exit(*pids.last().unwrap());
    let events = premain.events();
    let mine: Vec<&Value> = events.iter().filter(|e| e["pid"] == me || e["ppid"] == me).collect();
    assert!(mine.is_empty(), "[{label}] premain recorded itself: {mine:#?}");
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let leaks: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["port"] == port
                || e["path"].as_str().is_some_and(|p| {
                    p.starts_with(out.to_str().unwrap())
                        || p.starts_with(spool.to_str().unwrap())
                        || p == config.to_str().unwrap()
                })
        })
        .collect();
    assert!(leaks.is_empty(), "[{label}] premain's sinks or config reads were recorded: {leaks:#?}");
    let about_me: Vec<Value> = premain.alerts().into_iter().filter(|a| a["process"]["pid"] == me).collect();
    assert!(about_me.is_empty(), "[{label}] {about_me:#?}");
    drop(sleeper);
    let (status, stderr) = premain.stop();
    assert!(status.success(), "[{label}] {status}\n{stderr}");
    check_released(label, &objects);
    drop(receiver);
}

#[test]
fn premain_never_records_itself_and_still_tracks_other_pythons() {
    let python = pyenv_python();
    eprintln!("python: {} ({})", python.label, python.path.display());
    check_self_protection("started directly", None);
    // Started by a Python supervisor, premain descends from a tracked Python.
    check_self_protection("started by a Python launcher", Some(&python));
}

/// A syscall saved while its process was tracked (here as pending: an executable premain had
/// not judged yet) is dropped at its exit even after the daemon stopped tracking the process
/// (judged not Python), including when a SIGKILL ends it: the interrupted syscall still passes
/// its exit tracepoint on the way to the signal. An exit that skipped untracked processes
/// would leak the entry, and every syscall exit on the node would then look itself up among
/// the syscalls in flight.
#[test]
fn a_syscall_saved_while_pending_is_dropped_at_its_exit_after_the_process_is_untracked() {
    let dir = TempDir::new("inflight");
    // The exec watch judges a new file before its exec completes, so that nothing runs pending:
    // pending comes back without it (and for an exec it did not decide in time).
    let config = dir.file("fallback.toml", "[limits]\nexec_watch = false\n");
    let premain = Premain::start(&["--config", config.to_str().unwrap()]);
    let objects = BpfObjects::of(premain.pid());
    let mut exercised = 0;
    let mut attempts = 0;
    // Whether the copy reaches the FIFO before premain has judged it is a race, won about
    // half the time here; losing it only costs a retry.
    for attempt in 0..40 {
        attempts += 1;
        // A fresh copy is an executable premain has not judged: tracked as pending from its exec.
        let exe = dir.path().join(format!("reader{attempt}"));
        fs::copy("/bin/cat", &exe).unwrap();
        let fifo = dir.path().join(format!("fifo{attempt}"));
        let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0, "mkfifo");
        // Opening a FIFO nobody writes to blocks inside openat.
        let reader = Proc(Command::new(&exe).arg(&fifo).stdin(Stdio::null()).spawn().unwrap());
        let pid = reader.pid();
        let blocked_while_pending = {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let in_flight = map_keys(&objects, "SYSCALLS").contains(&pid);
                let tracked = tracked_in_kernel(&objects).contains(&pid);
                if in_flight && !tracked {
                    break true; // Saved while pending, then judged: the case under test.
                }
                if !in_flight && !tracked && state(pid) == Some('S') {
                    break false; // Judged before it reached the FIFO: nothing was saved.
                }
                if Instant::now() > deadline {
                    break false;
                }
                thread::sleep(Duration::from_millis(20));
            }
        };
        drop(reader); // SIGKILL inside openat, and reaped.
        if !blocked_while_pending {
            continue;
        }
        exercised += 1;
        eventually("the killed thread's saved syscall to be dropped", || {
            !map_keys(&objects, "SYSCALLS").contains(&pid)
        });
        if exercised == 2 {
            break;
        }
    }
    assert!(
        exercised > 0,
        "none of {attempts} attempts blocked in openat before premain judged its executable"
    );
    eprintln!("{exercised} of {attempts} attempts blocked in openat while pending");
    let (status, _) = premain.stop();
    assert!(status.success());
}
