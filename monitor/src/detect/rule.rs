//! Rule identifiers and severities, shared by the configuration, the rules, alerts, metrics
//! and the sinks.

use serde::{Deserialize, Serialize};

/// A rule: what kind of pre-main action an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    /// An open for reading of a file in the credential catalogue.
    CredentialRead,
    /// `connect` to an internet or UNIX address.
    NetworkConnect,
    /// `sendto`/`sendmsg` to an explicit address.
    NetworkSend,
    /// An exec of a program.
    ProgramExec,
    /// Reading or writing another process's memory, or taking hold of it with ptrace.
    ProcessMemory,
    /// Writing where code is run again later: shell start-up files, services, cron, `.pth`...
    Persistence,
    /// Creating a raw or packet socket.
    RawSocket,
    /// io_uring use whose target the request does not tell (the ring's creation, requests
    /// other than opens, connects, sendmsgs and sockets).
    IoUring,
}

impl RuleId {
    pub const ALL: [RuleId; 8] = [
        Self::CredentialRead,
        Self::NetworkConnect,
        Self::NetworkSend,
        Self::ProgramExec,
        Self::ProcessMemory,
        Self::Persistence,
        Self::RawSocket,
        Self::IoUring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CredentialRead => "credential-read",
            Self::NetworkConnect => "network-connect",
            Self::NetworkSend => "network-send",
            Self::ProgramExec => "program-exec",
            Self::ProcessMemory => "process-memory",
            Self::Persistence => "persistence",
            Self::RawSocket => "raw-socket",
            Self::IoUring => "io-uring",
        }
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_forms() {
        for rule in RuleId::ALL {
            assert_eq!(serde_json::to_value(rule).unwrap(), serde_json::json!(rule.as_str()));
        }
        assert_eq!(serde_json::to_value(Severity::Critical).unwrap(), serde_json::json!("critical"));
    }
}
