//! The package index a run may reach: the URLs given (`--index-url`, `--extra-index-url`) and
//! the hosts their pages link files on (`--index-host`), checked, and what the sink needs to
//! relay connections to them ([`RelayTarget`]).
//!
//! The sandbox's pip or uv is given the URLs unchanged. Inside the namespace the sink answers
//! every DNS name with its own address, except an index host's name: that resolves to an address
//! of its own (192.0.2.2 and 2001:db8::2, then .3, ...), which the sink recognises, on the
//! index's port, as the index. An index named by an IP address, or by a name the machine's
//! `/etc/hosts` maps (the sandbox reads the same file), is recognised by that address and port.
//! Those connections, and no others, are relayed to the real index.

use std::{
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs as _},
};

/// Where an index host is: a name or an address, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// Lower case, as the URL parser puts it (IDNA applied).
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Endpoint {
    /// `host:port`, `[v6]:port`: the form the report's index hosts take.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Name(name) => write!(f, "{name}:{}", self.port),
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
        }
    }
}

/// An index URL as given, and where it points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexUrl {
    /// Passed to pip or uv unchanged (credentials in it included).
    pub url: String,
    pub endpoint: Endpoint,
}

impl IndexUrl {
    /// An `http` or `https` URL with a host; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{}: only http and https indexes can be reached", url.scheme()));
        }
        let endpoint = endpoint_of(&url)?;
        Ok(Self { url: text.to_owned(), endpoint })
    }
}

/// The command line's index options, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexOptions {
    /// `--index-url`; `None`: no index (`--no-index`, the default).
    pub index_url: Option<IndexUrl>,
    /// `--extra-index-url`s.
    pub extra_index_urls: Vec<IndexUrl>,
    /// `--index-host`s: hosts the indexes' pages link files on.
    pub index_hosts: Vec<Endpoint>,
}

impl IndexOptions {
    /// The options as given; the error names the option and the value at fault.
    pub fn from_args(
        no_index: bool,
        index_url: Option<&str>,
        extra_index_urls: &[String],
        index_hosts: &[String],
    ) -> Result<Self, String> {
        let url =
            |option: &str, text: &str| IndexUrl::parse(text).map_err(|e| format!("{option} {text}: {e}"));
        let index_url = index_url.map(|u| url("--index-url", u)).transpose()?;
        let given_more = !(extra_index_urls.is_empty() && index_hosts.is_empty());
        if no_index && (index_url.is_some() || given_more) {
            return Err("--no-index excludes --index-url, --extra-index-url and --index-host".into());
        }
        if index_url.is_none() && given_more {
            return Err(
                "--extra-index-url and --index-host need --index-url: vet reaches no index it is not given"
                    .into(),
            );
        }
        Ok(Self {
            index_url,
            extra_index_urls: extra_index_urls
                .iter()
                .map(|u| url("--extra-index-url", u))
                .collect::<Result<_, _>>()?,
            index_hosts: index_hosts
                .iter()
                .map(|h| parse_host(h).map_err(|e| format!("--index-host {h}: {e}")))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Every endpoint to relay: the indexes', then the file hosts'.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.index_url
            .iter()
            .chain(&self.extra_index_urls)
            .map(|u| u.endpoint.clone())
            .chain(self.index_hosts.iter().cloned())
            .collect()
    }
}

/// `HOST`, `HOST:PORT`, `[V6]:PORT` (port 443 when absent) or an `http(s)` URL's host and port.
pub fn parse_host(text: &str) -> Result<Endpoint, String> {
    if text.contains("://") {
        return IndexUrl::parse(text).map(|u| u.endpoint);
    }
    if text.is_empty() || text.contains(['/', '@', '?', '#']) {
        return Err("not a HOST or HOST:PORT".into());
    }
    let url = url::Url::parse(&format!("https://{text}")).map_err(|e| format!("not a HOST[:PORT] ({e})"))?;
    endpoint_of(&url)
}

fn endpoint_of(url: &url::Url) -> Result<Endpoint, String> {
    let host = match url.host() {
        Some(url::Host::Domain(name)) if !name.is_empty() => {
            Host::Name(name.trim_end_matches('.').to_owned())
        }
        Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
        _ => return Err("no host".into()),
    };
    let port = url.port_or_known_default().ok_or("no port")?;
    if port == 0 {
        return Err("port 0".into());
    }
    Ok(Endpoint { host, port })
}

/// One index endpoint as the sink sees it: connections to any of `catch` are relayed to
/// `upstream`, dialled from the host's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayTarget {
    /// `host:port` (the report's index host).
    pub label: String,
    /// The host name whose DNS questions get `answer_v4`/`answer_v6`; `None` for an address.
    pub name: Option<String>,
    pub answer_v4: Ipv4Addr,
    pub answer_v6: Ipv6Addr,
    /// Destinations (address and port) inside the namespace that are this endpoint.
    pub catch: Vec<SocketAddr>,
    /// Where the endpoint really is (resolved once, on the host, before anything runs).
    pub upstream: Vec<SocketAddr>,
}

/// How many named index hosts get an address of their own (192.0.2.2 to 192.0.2.254).
const MAX_NAMED: usize = 253;

/// The relay targets of `endpoints` (duplicates once), each name resolved with `resolve` (the
/// host's resolver in vet; a fixed one in tests). A name that does not resolve is an error.
pub fn plan(
    endpoints: &[Endpoint],
    resolve: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>>,
) -> Result<Vec<RelayTarget>, String> {
    let mut targets: Vec<RelayTarget> = Vec::new();
    let mut named = 0;
    for endpoint in endpoints {
        let label = endpoint.to_string();
        if targets.iter().any(|t| t.label == label) {
            continue;
        }
        let port = endpoint.port;
        let target = match &endpoint.host {
            Host::Ip(ip) => {
                let addr = SocketAddr::new(ip.to_canonical(), port);
                RelayTarget {
                    label,
                    name: None,
                    answer_v4: Ipv4Addr::UNSPECIFIED,
                    answer_v6: Ipv6Addr::UNSPECIFIED,
                    catch: vec![addr],
                    upstream: vec![addr],
                }
            }
            Host::Name(name) => {
                if named == MAX_NAMED {
                    return Err(format!("more than {MAX_NAMED} index hosts"));
                }
                named += 1;
                let upstream: Vec<SocketAddr> = resolve(name, port)
                    .map_err(|e| format!("{name} does not resolve: {e}"))?
                    .into_iter()
                    .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
                    .collect();
                if upstream.is_empty() {
                    return Err(format!("{name} does not resolve to any address"));
                }
                let n = (named + 1) as u8;
                let answer_v4 = Ipv4Addr::new(192, 0, 2, n);
                let answer_v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n));
                let mut catch =
                    vec![SocketAddr::new(answer_v4.into(), port), SocketAddr::new(answer_v6.into(), port)];
                // The name's own addresses too: the sandbox resolves a name /etc/hosts maps
                // (localhost, a mirror pinned there) to them without asking the sink.
                catch.extend(upstream.iter().filter(|a| !catch.contains(a)).copied().collect::<Vec<_>>());
                RelayTarget { label, name: Some(name.clone()), answer_v4, answer_v6, catch, upstream }
            }
        };
        targets.push(target);
    }
    Ok(targets)
}

/// The machine's own resolver (vet's, in the host's namespace).
pub fn resolve(name: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in (name, port).to_socket_addrs()? {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_urls_are_http_or_https_with_a_host() {
        let u = IndexUrl::parse("https://user:secret@Mirror.Example/simple/").unwrap();
        assert_eq!(u.url, "https://user:secret@Mirror.Example/simple/", "passed on unchanged");
        assert_eq!(u.endpoint.to_string(), "mirror.example:443", "no credentials in the label");
        let u = IndexUrl::parse("http://127.0.0.1:8080/simple").unwrap();
        assert_eq!(u.endpoint, Endpoint { host: Host::Ip("127.0.0.1".parse().unwrap()), port: 8080 });
        assert_eq!(
            IndexUrl::parse("http://[::1]:3141/root/pypi/").unwrap().endpoint.to_string(),
            "[::1]:3141"
        );
        assert_eq!(IndexUrl::parse("http://pypi.example/").unwrap().endpoint.port, 80);
        for bad in [
            "pypi.org/simple",
            "file:///srv/simple",
            "ftp://x/simple",
            "https://",
            "http://x:0/",
            "http://x:99999/",
        ] {
            assert!(IndexUrl::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(
            IndexUrl::parse("ftp://x/").unwrap_err(),
            "ftp: only http and https indexes can be reached"
        );
    }

    #[test]
    fn the_index_options_go_together() {
        let none = IndexOptions::from_args(true, None, &[], &[]).unwrap();
        assert_eq!(none, IndexOptions::default(), "--no-index is the default");
        let all = IndexOptions::from_args(
            false,
            Some("http://127.0.0.1:8080/simple/"),
            &["https://extra.example/simple".into()],
            &["files.example".into()],
        )
        .unwrap();
        let labels: Vec<String> = all.endpoints().iter().map(ToString::to_string).collect();
        assert_eq!(labels, ["127.0.0.1:8080", "extra.example:443", "files.example:443"]);
        let err = |no_index, url: Option<&str>, extra: &[&str], hosts: &[&str]| {
            let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            let hosts: Vec<String> = hosts.iter().map(|s| (*s).to_owned()).collect();
            IndexOptions::from_args(no_index, url, &extra, &hosts).unwrap_err()
        };
        assert_eq!(
            err(false, Some("pypi.org/simple"), &[], &[]),
            "--index-url pypi.org/simple: not a URL (relative URL without a base)"
        );
        assert!(err(true, Some("https://x/"), &[], &[]).starts_with("--no-index excludes"));
        assert!(err(false, None, &["https://x/"], &[]).contains("need --index-url"));
        assert!(err(false, None, &[], &["files.example"]).contains("need --index-url"));
        assert_eq!(
            err(false, Some("https://x/"), &["ftp://y/"], &[]),
            "--extra-index-url ftp://y/: ftp: only http and https indexes can be reached"
        );
        assert_eq!(
            err(false, Some("https://x/"), &[], &["a/b"]),
            "--index-host a/b: not a HOST or HOST:PORT"
        );
        for e in [err(false, Some("http://x:99999/"), &[], &[]), err(false, Some("https://"), &[], &[])] {
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn index_hosts_take_a_port_or_443() {
        assert_eq!(parse_host("files.pythonhosted.org").unwrap().to_string(), "files.pythonhosted.org:443");
        assert_eq!(parse_host("files.example:8443").unwrap().to_string(), "files.example:8443");
        assert_eq!(parse_host("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert_eq!(parse_host("http://files.example/x").unwrap().to_string(), "files.example:80");
        for bad in ["", "a/b", "x:y", "u@x", "x:0"] {
            assert!(parse_host(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn each_named_host_gets_an_address_of_its_own_and_addresses_are_themselves() {
        let endpoints = [
            IndexUrl::parse("https://pypi.example/simple").unwrap().endpoint,
            parse_host("files.example").unwrap(),
            IndexUrl::parse("http://127.0.0.1:8080/simple").unwrap().endpoint,
            IndexUrl::parse("https://pypi.example/other").unwrap().endpoint,
        ];
        let fake = |name: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
            match name {
                "pypi.example" => Ok(vec![SocketAddr::new("203.0.113.7".parse().unwrap(), port)]),
                "files.example" => Ok(vec![SocketAddr::new("::ffff:203.0.113.8".parse().unwrap(), port)]),
                _ => Err(io::Error::other("unknown")),
            }
        };
        let targets = plan(&endpoints, fake).unwrap();
        let labels: Vec<&str> = targets.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["pypi.example:443", "files.example:443", "127.0.0.1:8080"], "duplicates once");
        let addrs = |v: &[SocketAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(addrs(&targets[0].catch), ["192.0.2.2:443", "[2001:db8::2]:443", "203.0.113.7:443"]);
        assert_eq!(addrs(&targets[1].catch), ["192.0.2.3:443", "[2001:db8::3]:443", "203.0.113.8:443"]);
        assert_eq!(addrs(&targets[1].upstream), ["203.0.113.8:443"], "mapped addresses as IPv4");
        assert_eq!(targets[1].name.as_deref(), Some("files.example"));
        assert_eq!(targets[2].name, None);
        assert_eq!(addrs(&targets[2].catch), ["127.0.0.1:8080"]);
        assert_eq!(addrs(&targets[2].upstream), ["127.0.0.1:8080"]);
        let unknown = plan(&[parse_host("nowhere.example").unwrap()], fake).unwrap_err();
        assert_eq!(unknown, "nowhere.example does not resolve: unknown");
    }
}
