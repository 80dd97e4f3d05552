//! `premain vet`: packages put through install, start-up and import in a sandbox no package
//! code can leave, watched by premain's own engine.
//!
//! - [`netns`]: a network namespace (loopback only, every address routed to it) and entering it;
//! - [`sink`]: the catch-all listener, DNS answerer and recorder, started inside a namespace;
//! - [`index`]: the package index a run may reach, and what the sink relays to it (`relay`);
//! - [`capture`]: what the sink recorded, and the search for a bait value in it;
//! - [`bait`]: the bait HOME and environment, values unique to the run;
//! - [`jail`]: the steps' processes: own cgroup, real homes hidden, the namespace, no root;
//! - [`observer`]: the premain that watches the run;
//! - [`installed`]: what an install added, read from disk;
//! - [`run`]: the steps, from the venv to the imports, and what they were seen doing.

pub mod bait;
pub mod capture;
mod dns;
mod encode;
pub mod index;
pub mod installed;
pub mod jail;
pub mod netns;
pub mod observer;
mod relay;
pub mod report;
mod route;
pub mod run;
pub mod sink;
mod sklookup;
#[cfg(test)]
mod tests;
mod udp;
