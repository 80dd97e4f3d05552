//! Placeholder until the sinks branch lands: stdout only.

use std::{sync::Arc, time::Duration};

use crate::{config, metrics::Metrics};

#[derive(Debug, thiserror::Error)]
#[error("sink {0}: not supported yet")]
pub struct SinkError(String);

pub struct Sinks;

#[derive(Debug, Default)]
pub struct ShutdownReport;

impl Sinks {
    pub fn start(sinks: &[config::Sink], _: usize, _: &Metrics, _: &str) -> Result<Self, SinkError> {
        if let Some(s) = sinks.iter().find(|s| s.kind() != "stdout") {
            return Err(SinkError(s.name().to_owned()));
        }
        Ok(Self)
    }

    pub fn publish(&self, record: Arc<serde_json::Value>) {
        println!("{record}");
    }

    pub async fn shutdown(self, _: Duration) -> ShutdownReport {
        ShutdownReport
    }
}
