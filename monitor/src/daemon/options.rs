//! What `premain run` is asked to do, and the configuration it runs with.

use std::{io, path::PathBuf, time::Duration};

use crate::{
    k8s::K8sError,
    kernel::error::StartError,
    ops::{
        config::{Config, ConfigError},
        instance::LockError,
    },
    output::sink::SinkError,
};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The configuration file; none runs with the defaults.
    pub config: Option<PathBuf>,
    /// Command-line values that win over the file's (at start and on every reload).
    pub overrides: Overrides,
    /// Print every event of a tracked process as a JSON line on stdout.
    pub events: bool,
    /// Test hook: wait this long after `ready` before reading records.
    pub stall_reader: Option<Duration>,
    /// Test hook: take this long before deciding each open the credential file watch asks
    /// about (a loop too busy to answer in time).
    pub stall_decisions: Option<Duration>,
    /// The node-wide single-instance lock.
    pub lock_file: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub ring_buffer_size: Option<u32>,
    pub max_processes: Option<usize>,
    pub fold_window_secs: Option<u64>,
    pub metrics_address: Option<String>,
    /// `--mode`: every rule's mode, before the file's refinements.
    pub mode: Option<crate::enforce::Mode>,
    pub state_dir: Option<PathBuf>,
}

impl Overrides {
    pub(super) fn apply(&self, config: &mut Config) {
        if let Some(size) = self.ring_buffer_size {
            config.limits.ring_buffer_size = toml::Spanned::new(0..0, size);
        }
        if let Some(max) = self.max_processes {
            config.limits.max_processes = max;
        }
        if let Some(secs) = self.fold_window_secs {
            config.alerts.fold_window_secs = secs;
        }
        if let Some(dir) = &self.state_dir {
            config.limits.state_dir = dir.clone();
        }
        if let Some(mode) = self.mode {
            config.enforcement.mode = mode;
        }
        if let Some(address) = &self.metrics_address {
            config.metrics.address = toml::Spanned::new(0..0, address.clone());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("--ring-buffer-size must be a power of two of at least 4096 bytes, not {0}")]
    RingSize(u32),
    #[error("--metrics-address must be IP:PORT (or empty to turn the endpoint off), not {0:?}")]
    MetricsAddress(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Kubernetes(K8sError),
    #[error("cannot listen on metrics.address {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("event loop failed: {0}")]
    Io(#[from] io::Error),
    #[error("enforce mode needs the credential file watch to deny credential reads: {0}")]
    Enforce(String),
    #[error("the guard cannot be set up: {0}")]
    Guard(String),
}

/// Reads the configuration the daemon would run with.
pub fn configuration(opts: &RunOptions) -> Result<Config, RunError> {
    let mut config = match &opts.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    opts.overrides.apply(&mut config);
    let ring = *config.limits.ring_buffer_size.get_ref();
    if !ring.is_power_of_two() || ring < 4096 {
        return Err(RunError::RingSize(ring));
    }
    if let Some(address) = &opts.overrides.metrics_address
        && !address.is_empty()
        && config.metrics.socket_addr().is_none()
    {
        return Err(RunError::MetricsAddress(address.clone()));
    }
    Ok(config)
}
