//! The four ways each overhead workload runs: without tracing, under the floor (a filter-only
//! bpftrace program), under premain, and under the peer (bpftrace doing premain's work).

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;

use super::{env::Env, proc::Daemon};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Config {
    Without,
    Floor,
    Premain,
    Peer,
}

impl Config {
    pub(crate) const ALL: [Self; 4] = [Self::Without, Self::Floor, Self::Premain, Self::Peer];

    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Without => "without",
            Self::Floor => "floor",
            Self::Premain => "premain",
            Self::Peer => "peer",
        }
    }
}

const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// bpftrace's own notice (meant for its test harness) that every probe is attached.
const BPFTRACE_ATTACHED: &str = "__BPFTRACE_NOTIFY_PROBES_ATTACHED";

pub(crate) struct Running {
    daemon: Option<Daemon>,
    lines: Arc<AtomicU64>,
}

pub(crate) struct Stopped {
    /// Lines the tracer printed on stdout (peer records, premain alerts).
    pub(crate) lines: u64,
    /// premain's stop summary: records decoded.
    pub(crate) records: Option<u64>,
    pub(crate) lost: Option<u64>,
}

pub(crate) fn start(env: &Env, config: Config) -> anyhow::Result<Running> {
    start_with(env, config, &[])
}

/// [`start`], with more arguments to `premain run`.
pub(crate) fn start_with(env: &Env, config: Config, extra: &[&str]) -> anyhow::Result<Running> {
    let lines = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&lines);
    let sink = Box::new(move |_: &[u8]| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let daemon = match config {
        Config::Without => None,
        Config::Floor | Config::Peer => {
            let script = if config == Config::Floor { &env.floor_script } else { &env.peer_script };
            let mut command = Command::new("bpftrace");
            // Line-buffered, as an operator watching for alerts would run it.
            command
                .args(["-B", "line"])
                .arg(script)
                .env("BPFTRACE_STRLEN", "200")
                .env(BPFTRACE_ATTACHED, "1");
            let mut daemon = Daemon::spawn(&format!("bpftrace ({})", config.key()), &mut command, sink)?;
            daemon.wait_stderr(BPFTRACE_ATTACHED, READY_TIMEOUT)?;
            Some(daemon)
        }
        Config::Premain => {
            let mut command = Command::new(&env.premain);
            command.args(["run", "--metrics-address", "127.0.0.1:0"]).args(extra).env("RUST_LOG", "info");
            let mut daemon = Daemon::spawn("premain", &mut command, sink)?;
            daemon.wait_stderr(super::proc::PREMAIN_READY, READY_TIMEOUT)?;
            Some(daemon)
        }
    };
    Ok(Running { daemon, lines })
}

impl Running {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    pub(crate) fn stop(mut self) -> anyhow::Result<Stopped> {
        let Some(daemon) = self.daemon.take() else {
            return Ok(Stopped { lines: 0, records: None, lost: None });
        };
        let (_status, stderr) = daemon.stop().context("stopping a tracer")?;
        Ok(Stopped {
            lines: self.lines.load(Ordering::Relaxed),
            records: super::proc::summary_field(&stderr, "records"),
            lost: super::proc::summary_field(&stderr, "lost"),
        })
    }
}
