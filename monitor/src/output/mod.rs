//! Where records go: event lines, the sinks alerts and loss records are delivered to, and the
//! JSON forms they share.

pub mod event_line;
pub mod json;
pub mod sink;
pub mod time;
