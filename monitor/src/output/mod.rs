//! Where records go: event lines, the sinks alerts and loss records are delivered to, and the
//! JSON forms they share, in which command lines are redacted.

pub(crate) mod event_line;
pub(crate) mod json;
pub(crate) mod redact;
pub(crate) mod sink;
pub(crate) mod time;
