//! The sandbox of `premain vet` (issue 14), the network half: a throwaway network namespace in
//! which package code runs, and a sink in it that takes every connection, datagram and DNS
//! question, so what a package tries to send can be searched for the run's bait values.
//!
//! - [`netns`]: the namespace (loopback only, every address routed to it) and entering it;
//! - [`sink`]: the catch-all listener, DNS answerer and recorder, started inside a namespace;
//! - [`capture`]: what the sink recorded, and the search for a bait value in it.
//!
//! Not wired into the CLI yet: `premain vet` will start both before any package code runs.

pub mod capture;
mod dns;
mod encode;
pub mod netns;
pub mod report;
mod route;
pub mod sink;
mod sklookup;
#[cfg(test)]
mod tests;
mod udp;
