//! `network-connect` and `network-send`: internet and UNIX-socket destinations, less the
//! allowed ones, the system sockets and, during installs, the package indexes.

use std::{
    collections::HashSet,
    net::{IpAddr, ToSocketAddrs as _},
    sync::{Arc, RwLock},
};

use ipnet::IpNet;

use crate::{
    kernel::sockaddr::SockAddr,
    ops::config::{Config, Destination},
};

pub(super) struct Network {
    unix_sockets: HashSet<String>,
    destinations: Vec<Destination>,
    index_hosts: IndexHosts,
}

impl Network {
    pub(super) fn compile(config: &Config) -> Result<Self, String> {
        let mut destinations = Vec::new();
        for text in &config.allow.destinations {
            destinations.push(Destination::parse(text.get_ref())?);
        }
        Ok(Self {
            unix_sockets: config.allow.unix_sockets.iter().cloned().collect(),
            destinations,
            index_hosts: IndexHosts::resolve(&config.install.index_hosts),
        })
    }

    /// What is never alerted, whoever connects: `allow.destinations`, and (during installs)
    /// the package indexes' addresses resolved so far.
    pub(super) fn allowances(&self) -> (&[Destination], Vec<IpNet>) {
        (&self.destinations, self.index_hosts.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The destination an action reaches out to, as the alert names it; `None` for
    /// `AF_UNSPEC` (a UDP "disconnect"), other families, allowed destinations, the system
    /// sockets, and package indexes while `installing`.
    pub(super) fn target(&self, addr: &[u8], installing: bool) -> Option<String> {
        let parsed = SockAddr::parse(addr);
        let target = parsed.render();
        match (parsed.family(), parsed.ip()) {
            ("unix", _) => (!self.unix_sockets.contains(&target)).then_some(target),
            ("inet" | "inet6", Some(ip)) => {
                let port = parsed.port().unwrap_or(0);
                let allowed = self.destinations.iter().any(|d| d.matches(ip, port))
                    || (installing && self.index_hosts.contains(ip));
                (!allowed).then_some(target)
            }
            _ => None,
        }
    }
}

/// Package index addresses: literal IPs and networks at once; names are resolved in the
/// background (a slow resolver must not hold up start-up or a reload), once per compile.
#[derive(Clone, Default)]
struct IndexHosts(Arc<RwLock<Vec<IpNet>>>);

impl IndexHosts {
    fn resolve(hosts: &[String]) -> Self {
        let mut nets = Vec::new();
        let mut names = Vec::new();
        for host in hosts {
            if let Ok(net) = host.parse::<IpNet>() {
                nets.push(net);
            } else if let Ok(ip) = host.parse::<IpAddr>() {
                nets.push(IpNet::from(ip));
            } else {
                names.push(host.clone());
            }
        }
        let this = Self(Arc::new(RwLock::new(nets)));
        if !names.is_empty() {
            let shared = this.clone();
            let spawned = std::thread::Builder::new().name("resolve-index".into()).spawn(move || {
                for host in names {
                    match (host.as_str(), 443).to_socket_addrs() {
                        Ok(addrs) => {
                            let found: Vec<IpNet> = addrs.map(|a| IpNet::from(a.ip().to_canonical())).collect();
                            shared.0.write().unwrap_or_else(|p| p.into_inner()).extend(found);
                        }
                        Err(err) => tracing::warn!(host, error = %err,
                            "cannot resolve install.index_hosts entry: connections to it during installs will alert"),
                    }
                }
            });
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "cannot resolve install.index_hosts names");
            }
        }
        this
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).iter().any(|n| n.contains(&ip))
    }
}
