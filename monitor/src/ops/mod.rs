//! Operating premain: the configuration file, Prometheus metrics, the health endpoints and the
//! node-wide single-instance lock.

pub mod config;
pub(crate) mod endpoints;
pub mod instance;
pub(crate) mod metrics;
