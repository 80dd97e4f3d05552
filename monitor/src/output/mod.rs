//! Where records go: the sinks alerts and loss records are delivered to.

pub mod sink;
