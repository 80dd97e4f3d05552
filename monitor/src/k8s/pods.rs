//! Name, namespace and labels of this node's pods, by pod UID, from a LIST and WATCH of the API
//! server.
//!
//! One task keeps the cache current; readers never wait on it, they see what is known. The watch
//! asks only for this node's pods (`fieldSelector=spec.nodeName=<node>`), so each node's load on
//! the API server is proportional to its own pods. Failures are retried with exponential backoff
//! and jitter, and a watch that ends early without an error backs off as well, so that no API
//! server answer makes a node reconnect in a tight loop.
//!
//! Deleted pods stay readable for a grace period: a process's last alerts are often raised while
//! its pod is being torn down.

use std::{
    collections::{BTreeMap, HashMap, HashSet, hash_map::RandomState},
    fmt, fs,
    hash::BuildHasher as _,
    io,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock, Weak},
    time::{Duration, Instant},
};

use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use serde::Deserialize;
use tracing::{debug, info, warn};

use crate::{
    ops::config::{self, Switch},
    ops::metrics::Metrics,
};

/// What alerts say about a pod.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PodMeta {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// This node's pods by UID. Cheap to clone; the watch stops once every clone is dropped.
#[derive(Clone, Default)]
pub(crate) struct PodCache {
    store: Arc<RwLock<Store>>,
}

impl PodCache {
    fn new(grace: Duration) -> Self {
        Self { store: Arc::new(RwLock::new(Store { grace, ..Store::default() })) }
    }

    /// The pod with this UID, or whose mirror pod this is for a static pod's config hash (the
    /// UID its cgroup is named after); also a pod deleted less than the grace period ago.
    pub(crate) fn get(&self, uid: &str) -> Option<PodMeta> {
        self.store.read().unwrap_or_else(PoisonError::into_inner).get(uid, Instant::now()).cloned()
    }

    /// Pods known and not deleted.
    pub(crate) fn len(&self) -> usize {
        self.store.read().unwrap_or_else(PoisonError::into_inner).live
    }
}

impl fmt::Debug for PodCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodCache").field("pods", &self.len()).finish()
    }
}

#[derive(Default)]
struct Store {
    pods: HashMap<String, Entry>,
    /// Static pod config hash (`kubernetes.io/config.mirror`) → mirror pod UID.
    mirrors: HashMap<String, String>,
    /// Entries not deleted.
    live: usize,
    grace: Duration,
}

struct Entry {
    meta: PodMeta,
    mirror_of: Option<String>,
    deleted: Option<Instant>,
}

/// One pod as the API server describes it, reduced to what the cache keeps.
#[derive(Debug, Clone, PartialEq)]
struct Known {
    uid: String,
    meta: PodMeta,
    mirror_of: Option<String>,
}

impl Store {
    fn get(&self, uid: &str, now: Instant) -> Option<&PodMeta> {
        let entry = self.pods.get(uid).or_else(|| self.pods.get(self.mirrors.get(uid)?))?;
        match entry.deleted {
            Some(at) if now.saturating_duration_since(at) >= self.grace => None,
            _ => Some(&entry.meta),
        }
    }

    fn upsert(&mut self, pod: Known) {
        if let Some(hash) = &pod.mirror_of {
            self.mirrors.insert(hash.clone(), pod.uid.clone());
        }
        let entry = Entry { meta: pod.meta, mirror_of: pod.mirror_of, deleted: None };
        match self.pods.insert(pod.uid, entry) {
            Some(old) => {
                if old.deleted.is_some() {
                    self.live += 1;
                }
                if let Some(hash) = old.mirror_of {
                    self.forget_mirror_if_stale(&hash);
                }
            }
            None => self.live += 1,
        }
    }

    fn delete(&mut self, uid: &str, now: Instant) {
        if let Some(entry) = self.pods.get_mut(uid)
            && entry.deleted.is_none()
        {
            entry.deleted = Some(now);
            self.live -= 1;
        }
    }

    /// Makes the cache what a fresh LIST says: pods missing from it were deleted meanwhile.
    fn replace(&mut self, pods: Vec<Known>, now: Instant) {
        let listed: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        let gone: Vec<String> =
            self.pods.keys().filter(|uid| !listed.contains(uid.as_str())).cloned().collect();
        for uid in gone {
            self.delete(&uid, now);
        }
        for pod in pods {
            self.upsert(pod);
        }
    }

    /// Drops pods deleted longer than the grace period ago.
    fn sweep(&mut self, now: Instant) {
        let grace = self.grace;
        let mut stale = Vec::new();
        self.pods.retain(|_, entry| {
            let keep = entry.deleted.is_none_or(|at| now.saturating_duration_since(at) < grace);
            if !keep && let Some(hash) = entry.mirror_of.take() {
                stale.push(hash);
            }
            keep
        });
        for hash in stale {
            self.forget_mirror_if_stale(&hash);
        }
    }

    /// Removes a mirror alias unless some entry still claims it (a recreated mirror pod).
    fn forget_mirror_if_stale(&mut self, hash: &str) {
        let claimed = self
            .mirrors
            .get(hash)
            .and_then(|uid| self.pods.get(uid))
            .is_some_and(|entry| entry.mirror_of.as_deref() == Some(hash));
        if !claimed {
            self.mirrors.remove(hash);
        }
    }
}

/// Why the pod watch cannot run. One line, naming the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error(
        "kubernetes.enabled is on but no API server is known: set kubernetes.api_server, or run in a cluster (KUBERNETES_SERVICE_HOST is unset)"
    )]
    NoApiServer,
    #[error("kubernetes.api_server {0:?} is not an http:// or https:// URL")]
    BadApiServer(String),
    #[error(
        "kubernetes: this node's name is unknown: set kubernetes.node_name, or NODE_NAME (from the pod's spec.nodeName)"
    )]
    NoNodeName,
    #[error("kubernetes.ca_file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error(
        "kubernetes.api_server {0} is https but there is no CA to check it with: set kubernetes.ca_file to the cluster CA"
    )]
    NoCa(String),
    #[error("kubernetes: building the HTTP client failed: {0}")]
    Client(String),
    #[error("kubernetes: the pod watch must be started inside the tokio runtime")]
    NoRuntime,
}

/// Where and as whom to watch pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchOptions {
    /// `http(s)://host[:port]`, no trailing slash.
    pub api_server: String,
    pub node_name: String,
    /// Read again before every request: projected service account tokens rotate.
    pub token_file: Option<PathBuf>,
    /// PEM bundle of the CAs the API server's certificate is checked against (https).
    pub ca_file: Option<PathBuf>,
}

impl WatchOptions {
    /// The watch the configuration asks for: `None` when off, or `auto` outside a cluster.
    ///
    /// An empty `token_file` or `ca_file`, or one that does not exist, is not used: an explicit
    /// `http://` API server (`kubectl proxy`) needs neither. An https server without a CA is an
    /// error.
    pub(crate) fn resolve(cfg: &config::Kubernetes) -> Result<Option<Self>, K8sError> {
        Self::resolve_with(cfg, |name| std::env::var(name).ok(), hostname)
    }

    fn resolve_with(
        cfg: &config::Kubernetes,
        env: impl Fn(&str) -> Option<String>,
        hostname: impl FnOnce() -> Option<String>,
    ) -> Result<Option<Self>, K8sError> {
        let env = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if cfg.enabled == Switch::Off {
            return Ok(None);
        }
        let configured = cfg.api_server.get_ref().trim();
        let service_host = env("KUBERNETES_SERVICE_HOST");
        let api_server = if !configured.is_empty() {
            configured.trim_end_matches('/').to_owned()
        } else if let Some(host) = service_host {
            let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
            // An IPv6 service address needs brackets in a URL.
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        } else if cfg.enabled == Switch::Auto {
            return Ok(None);
        } else {
            return Err(K8sError::NoApiServer);
        };
        let https = api_server.starts_with("https://");
        let rest = api_server.strip_prefix("https://").or_else(|| api_server.strip_prefix("http://"));
        if rest.is_none_or(|host| host.is_empty() || host.contains(['?', '#'])) {
            return Err(K8sError::BadApiServer(api_server));
        }
        let node_name = Some(cfg.node_name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .or_else(|| env("NODE_NAME"))
            .or_else(hostname)
            .ok_or(K8sError::NoNodeName)?;
        let existing = |path: &Path| (!path.as_os_str().is_empty() && path.exists()).then(|| path.to_owned());
        let ca_file = existing(&cfg.ca_file);
        if https && ca_file.is_none() {
            return Err(K8sError::NoCa(api_server));
        }
        Ok(Some(Self { api_server, node_name, token_file: existing(&cfg.token_file), ca_file }))
    }
}

fn hostname() -> Option<String> {
    crate::process::procfs::hostname()
}

/// Timings of the watch; tests shorten them.
#[derive(Debug, Clone)]
struct Tuning {
    /// How long a deleted pod stays readable.
    grace: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    /// A watch that lasted this long was healthy: its end resets the backoff and it is
    /// reconnected at once. Shorter watches back off, error or not.
    healthy_after: Duration,
    /// Asked of the API server; it ends each watch after about this long.
    watch_timeout: Duration,
    page_limit: u32,
    /// A whole LIST page, body included.
    list_timeout: Duration,
    /// Use `HTTPS_PROXY` and friends, as client-go does.
    env_proxy: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
            watch_timeout: Duration::from_secs(300),
            page_limit: 500,
            list_timeout: Duration::from_secs(60),
            env_proxy: true,
        }
    }
}

/// Starts watching this node's pods on the current tokio runtime and returns the cache it fills.
///
/// The cache starts empty and fills once the first LIST answers; failures are retried for as
/// long as a clone of the cache exists, counted in `kubernetes_watch_errors` and logged.
pub(crate) fn spawn_watch(opts: WatchOptions, metrics: Metrics) -> Result<PodCache, K8sError> {
    spawn_tuned(opts, metrics, Tuning::default())
}

fn spawn_tuned(opts: WatchOptions, metrics: Metrics, tuning: Tuning) -> Result<PodCache, K8sError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| K8sError::NoRuntime)?;
    let client = http_client(&opts, &tuning)?;
    let cache = PodCache::new(tuning.grace);
    let watcher = Watcher { store: Arc::downgrade(&cache.store), client, opts, metrics, tuning };
    runtime.spawn(watcher.run());
    Ok(cache)
}

fn http_client(opts: &WatchOptions, tuning: &Tuning) -> Result<reqwest::Client, K8sError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &opts.ca_file {
        let ca_error = |reason: String| K8sError::Ca { path: path.clone(), reason };
        let pem = fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ca_error(format!("not a PEM certificate bundle: {e}")))?;
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ca_error("holds no certificate".into()));
        }
    }
    if opts.api_server.starts_with("https://") && roots.is_empty() {
        return Err(K8sError::NoCa(opts.api_server.clone()));
    }
    // reqwest is built without a default crypto provider; installing one process-wide would be
    // a side effect on every other TLS user, so the configuration names its own.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| K8sError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("premain/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Duration::from_secs(30));
    if !tuning.env_proxy {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| K8sError::Client(error_chain(&e)))
}

#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("reading the token {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("{}", error_chain(.0))]
    Http(#[from] reqwest::Error),
    #[error("the API server answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the API server's answer does not parse: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the API server's pod list has no resourceVersion")]
    NoVersion,
    #[error("the watch sent nothing for {0:?}")]
    Idle(Duration),
    #[error("a watch event is longer than {MAX_EVENT} bytes")]
    TooLong,
}

/// Far above any pod object (etcd refuses values over 1.5 MiB).
const MAX_EVENT: usize = 16 << 20;

/// How a watch connection ended, when not by an error.
enum WatchEnd {
    /// The server closed the stream.
    Closed,
    /// `410 Gone`: the resourceVersion is too old to resume from; list again.
    Expired,
    /// Every clone of the cache was dropped.
    Dropped,
}

struct Watcher {
    store: Weak<RwLock<Store>>,
    client: reqwest::Client,
    opts: WatchOptions,
    metrics: Metrics,
    tuning: Tuning,
}

impl Watcher {
    async fn run(self) {
        let mut backoff = Backoff::new(self.tuning.backoff_min, self.tuning.backoff_max);
        let mut version: Option<String> = None;
        let mut first_list = true;
        loop {
            if self.store.strong_count() == 0 {
                return;
            }
            let Some(from) = version.as_mut() else {
                match self.list().await {
                    Ok(Some((listed, pods))) => {
                        let message = "kubernetes: listed this node's pods";
                        if first_list {
                            info!(node = %self.opts.node_name, pods, "{message}");
                        } else {
                            debug!(node = %self.opts.node_name, pods, "{message}");
                        }
                        first_list = false;
                        version = Some(listed);
                    }
                    Ok(None) => return,
                    Err(error) => self.failed(&error, &mut backoff).await,
                }
                continue;
            };
            let started = Instant::now();
            let end = self.watch(from).await;
            let healthy = started.elapsed() >= self.tuning.healthy_after;
            if healthy {
                backoff.reset();
            }
            match end {
                Ok(WatchEnd::Dropped) => return,
                Ok(WatchEnd::Closed) => {}
                Ok(WatchEnd::Expired) => {
                    debug!("kubernetes: pod watch expired, listing again");
                    version = None;
                }
                Err(error) => {
                    self.failed(&error, &mut backoff).await;
                    continue;
                }
            }
            if !healthy {
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }

    async fn failed(&self, error: &WatchError, backoff: &mut Backoff) {
        self.metrics.kubernetes_watch_errors.inc();
        let delay = backoff.next_delay();
        warn!(api_server = %self.opts.api_server, "kubernetes pod watch: {error}; retrying in {delay:.1?}");
        tokio::time::sleep(delay).await;
    }

    /// Lists this node's pods, page by page, into the cache. The resourceVersion to watch from
    /// and the pod count, or `None` once the cache is dropped.
    async fn list(&self) -> Result<Option<(String, usize)>, WatchError> {
        let mut pods = Vec::new();
        let mut next = String::new();
        let version = loop {
            let mut url = format!("{}&limit={}", self.pods_url(), self.tuning.page_limit);
            if !next.is_empty() {
                url = format!("{url}&continue={}", encode(&next));
            }
            let response = self.get(&url, Some(self.tuning.list_timeout)).await?;
            let page: PodList = serde_json::from_slice(&response.bytes().await?)?;
            pods.extend(page.items.into_iter().filter_map(|pod| pod.metadata.known()));
            match page.metadata.next {
                Some(token) if !token.is_empty() => next = token,
                _ => {
                    break page
                        .metadata
                        .resource_version
                        .filter(|v| !v.is_empty())
                        .ok_or(WatchError::NoVersion)?;
                }
            }
        };
        let count = pods.len();
        if !self.update(|store| store.replace(pods, Instant::now())) {
            return Ok(None);
        }
        Ok(Some((version, count)))
    }

    /// Applies watch events from `version` on, keeping `version` at the last one seen.
    async fn watch(&self, version: &mut String) -> Result<WatchEnd, WatchError> {
        let url = format!(
            "{}&watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={}",
            self.pods_url(),
            encode(version),
            self.tuning.watch_timeout.as_secs().max(1)
        );
        let mut response = match self.get(&url, None).await {
            Err(WatchError::Status { status: 410, .. }) => return Ok(WatchEnd::Expired),
            other => other?,
        };
        // The server ends the watch after `timeoutSeconds`; silence well past that is a dead
        // connection that TCP has not noticed.
        let idle = self.tuning.watch_timeout + Duration::from_secs(60);
        let mut buffer = Vec::new();
        loop {
            let chunk =
                tokio::time::timeout(idle, response.chunk()).await.map_err(|_| WatchError::Idle(idle))??;
            let Some(chunk) = chunk else { break };
            buffer.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = buffer[start..].iter().position(|&b| b == b'\n') {
                let line = &buffer[start..start + end];
                start += end + 1;
                if let Some(end) = self.apply(line, version)? {
                    return Ok(end);
                }
            }
            buffer.drain(..start);
            if buffer.len() > MAX_EVENT {
                return Err(WatchError::TooLong);
            }
        }
        match self.apply(&buffer, version)? {
            Some(end) => Ok(end),
            None => Ok(WatchEnd::Closed),
        }
    }

    /// One line of the watch stream. `Some` ends the watch.
    fn apply(&self, line: &[u8], version: &mut String) -> Result<Option<WatchEnd>, WatchError> {
        if line.trim_ascii().is_empty() {
            return Ok(None);
        }
        let event: WatchEvent = serde_json::from_slice(line)?;
        let applied = match event.kind.as_str() {
            "ADDED" | "MODIFIED" | "DELETED" => {
                let pod: Pod = serde_json::from_value(event.object)?;
                if let Some(v) = pod.metadata.resource_version.clone().filter(|v| !v.is_empty()) {
                    *version = v;
                }
                let deleted = event.kind == "DELETED";
                match pod.metadata.known() {
                    Some(pod) if deleted => self.update(|store| store.delete(&pod.uid, Instant::now())),
                    Some(pod) => self.update(|store| store.upsert(pod)),
                    None => true,
                }
            }
            "BOOKMARK" => {
                let pod: Pod = serde_json::from_value(event.object)?;
                if let Some(v) = pod.metadata.resource_version.filter(|v| !v.is_empty()) {
                    *version = v;
                }
                // Bookmarks arrive about once a minute even on a quiet node: a chance to drop
                // pods whose grace period is over.
                self.update(|_| {})
            }
            "ERROR" => {
                let status: Status = serde_json::from_value(event.object)?;
                if status.code == 410 {
                    return Ok(Some(WatchEnd::Expired));
                }
                return Err(WatchError::Status { status: status.code, message: status.describe() });
            }
            _ => true,
        };
        Ok((!applied).then_some(WatchEnd::Dropped))
    }

    /// Runs `change` on the cache, drops expired pods and updates the gauge; false once the cache
    /// is dropped.
    fn update(&self, change: impl FnOnce(&mut Store)) -> bool {
        let Some(store) = self.store.upgrade() else { return false };
        let mut store = store.write().unwrap_or_else(PoisonError::into_inner);
        change(&mut store);
        store.sweep(Instant::now());
        self.metrics.pods_known.set(i64::try_from(store.live).unwrap_or(i64::MAX));
        true
    }

    fn pods_url(&self) -> String {
        let selector = format!("spec.nodeName={}", self.opts.node_name);
        format!("{}/api/v1/pods?fieldSelector={}", self.opts.api_server, encode(&selector))
    }

    async fn get(&self, url: &str, timeout: Option<Duration>) -> Result<reqwest::Response, WatchError> {
        let mut request = self.client.get(url).header(reqwest::header::ACCEPT, "application/json");
        if let Some(path) = &self.opts.token_file {
            let token = fs::read_to_string(path)
                .map_err(|source| WatchError::Token { path: path.clone(), source })?;
            let token = token.trim();
            if token.is_empty() {
                return Err(WatchError::EmptyToken(path.clone()));
            }
            request = request.bearer_auth(token);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        let message = match serde_json::from_slice::<Status>(&body) {
            Ok(status) => status.describe(),
            Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        };
        Err(WatchError::Status { status: status.as_u16(), message })
    }
}

/// Exponential backoff with jitter, so that nodes failing together do not retry together.
struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), attempt: 0 }
    }

    /// The n-th delay lies in [max(min, b/2), b] for b = min(min·2ⁿ, max).
    fn next_delay(&mut self) -> Duration {
        let base = self.min.saturating_mul(1 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(0.5 + 0.5 * unit_random()).max(self.min)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Uniform in [0, 1); only for jitter.
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(Instant::now()) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(rename = "continue")]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: ObjectMeta,
}

#[derive(Deserialize, Default)]
struct ObjectMeta {
    uid: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<Annotations>,
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

#[derive(Deserialize, Default)]
struct Annotations {
    /// Set on a static pod's mirror: the UID the kubelet runs the static pod under.
    #[serde(rename = "kubernetes.io/config.mirror")]
    mirror: Option<String>,
}

impl ObjectMeta {
    fn known(self) -> Option<Known> {
        let uid = self.uid.filter(|uid| !uid.is_empty())?;
        let mirror_of =
            self.annotations.and_then(|a| a.mirror).filter(|hash| !hash.is_empty() && *hash != uid);
        Some(Known {
            uid,
            meta: PodMeta {
                name: self.name.unwrap_or_default(),
                namespace: self.namespace.unwrap_or_default(),
                labels: self.labels.unwrap_or_default(),
            },
            mirror_of,
        })
    }
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: serde_json::Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    code: u16,
    reason: String,
    message: String,
}

impl Status {
    fn describe(&self) -> String {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{}: {}", self.reason, self.message),
            (false, true) => self.reason.clone(),
            _ => self.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader},
        process::{Child, Stdio},
    };

    use serde_json::{Value, json};
    use toml::Spanned;

    use super::*;

    const NODE: &str = "node-a";
    const STANDIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/k8s/apiserver_standin.py");
    /// Only a bound on failure: the machine is shared and may be slow.
    const PATIENCE: Duration = Duration::from_secs(60);

    fn tuning() -> Tuning {
        Tuning {
            grace: Duration::from_millis(300),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            // Every watch in a test is short: each end backs off.
            healthy_after: Duration::from_secs(3600),
            watch_timeout: Duration::from_secs(300),
            page_limit: 500,
            list_timeout: Duration::from_secs(30),
            env_proxy: false,
        }
    }

    fn metrics() -> Metrics {
        // The watch's warnings, shown with a failing test's output.
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        Metrics::new(&[], 10)
    }

    /// A directory removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("premain-k8s-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// `tests/k8s/apiserver_standin.py`, killed when dropped.
    struct StandIn {
        child: Child,
        url: String,
        control: reqwest::Client,
    }

    impl StandIn {
        fn start(token: &str, tls: Option<(&Path, &Path, &Path)>) -> Self {
            let mut command = crate::testing::program("python3");
            command.arg(STANDIN).args(["--node", NODE, "--token", token]);
            if let Some((cert, key, _)) = tls {
                command.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            let spawned =
                command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn();
            let mut child = spawned.unwrap_or_else(|e| panic!("starting python3 {STANDIN}: {e}"));
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            let Ok(port) = line.trim().parse::<u16>() else {
                let _ = child.kill();
                panic!("the stand-in printed {line:?} instead of its port");
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://127.0.0.1:{port}");
            let opts = WatchOptions {
                api_server: url.clone(),
                node_name: NODE.into(),
                token_file: None,
                ca_file: tls.map(|(_, _, ca)| ca.to_owned()),
            };
            let control = http_client(&opts, &tuning()).unwrap();
            Self { child, url, control }
        }

        fn options(&self, token_file: &Path) -> WatchOptions {
            WatchOptions {
                api_server: self.url.clone(),
                node_name: NODE.into(),
                token_file: Some(token_file.to_owned()),
                ca_file: None,
            }
        }

        async fn post(&self, path: &str, body: Value) {
            let response =
                self.control.post(format!("{}{path}", self.url)).body(body.to_string()).send().await;
            let status = response.unwrap().status();
            assert!(status.is_success(), "POST {path}: {status}");
        }

        async fn pod(&self, uid: &str, name: &str, node: &str, labels: Value) {
            let pod = json!({"uid": uid, "name": name, "namespace": "ns", "node": node, "labels": labels});
            self.post("/_pods", pod).await;
        }

        async fn silent_pod(&self, uid: &str) {
            self.post("/_pods", json!({"uid": uid, "name": uid, "namespace": "ns", "silent": true})).await;
        }

        async fn delete(&self, uid: &str, silent: bool) {
            let query = if silent { "?silent=1" } else { "" };
            let response = self.control.delete(format!("{}/_pods/{uid}{query}", self.url)).send().await;
            let status = response.unwrap().status();
            assert!(status.is_success(), "DELETE {uid}: {status}");
        }

        /// Every API request so far, oldest first.
        async fn requests(&self) -> Vec<Value> {
            let response = self.control.get(format!("{}/_requests", self.url)).send().await.unwrap();
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
        }

        async fn lists(&self) -> Vec<Value> {
            self.requests().await.into_iter().filter(|r| !is_watch(r)).collect()
        }

        async fn watches(&self) -> Vec<Value> {
            self.requests().await.into_iter().filter(is_watch).collect()
        }
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn is_watch(request: &Value) -> bool {
        request["query"]["watch"] == "1"
    }

    async fn wait_until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !ready().await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Seconds between successive requests.
    fn gaps(requests: &[Value]) -> Vec<f64> {
        requests.windows(2).map(|w| w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap()).collect()
    }

    /// The least each successive delay of `tuning()`'s backoff can be, in seconds.
    const BACKOFF_FLOORS: [f64; 4] = [0.1, 0.1, 0.2, 0.4];

    #[tokio::test]
    async fn lists_both_pages_of_this_nodes_pods_only() {
        let scratch = Scratch::new("list");
        let api = StandIn::start("t1", None);
        for (uid, node) in [("uid-a1", NODE), ("uid-a2", NODE), ("uid-a3", NODE), ("uid-b1", "node-b")] {
            api.pod(uid, uid, node, json!({"app": uid})).await;
        }
        let metrics = metrics();
        let token = scratch.write("token", "t1\n");
        let cache = spawn_tuned(api.options(&token), metrics.clone(), tuning()).unwrap();
        wait_until("the list is in the cache", async || cache.len() == 3).await;

        let expected =
            PodMeta { name: "uid-a2".into(), namespace: "ns".into(), labels: labels(&[("app", "uid-a2")]) };
        assert_eq!(cache.get("uid-a2"), Some(expected));
        assert_eq!(cache.get("uid-b1"), None);
        assert_eq!(metrics.pods_known.get(), 3);

        wait_until("the watch starts", async || !api.watches().await.is_empty()).await;
        let lists = api.lists().await;
        assert_eq!(lists.len(), 2, "a page of two pods, then the rest: {lists:?}");
        assert!(lists[0]["query"].get("continue").is_none());
        assert!(lists[1]["query"]["continue"].as_str().is_some_and(|c| !c.is_empty()));
        for request in api.requests().await {
            assert_eq!(request["query"]["fieldSelector"], "spec.nodeName=node-a", "{request}");
            assert_eq!(request["auth"], "Bearer t1", "{request}");
            assert_eq!(request["status"], 200, "{request}");
        }
        assert!(lists.iter().all(|l| l["query"]["limit"] == "500"));
        let watch = &api.watches().await[0];
        assert_eq!(watch["query"]["allowWatchBookmarks"], "true");
        assert_eq!(watch["query"]["timeoutSeconds"], "300");
        // Four pods were added from resourceVersion 100: the watch resumes where the list ended.
        assert_eq!(watch["query"]["resourceVersion"], "104");
        assert_eq!(metrics.kubernetes_watch_errors.get(), 0);
    }

    #[tokio::test]
    async fn follows_watch_events() {
        let scratch = Scratch::new("events");
        let api = StandIn::start("t1", None);
        api.pod("uid-1", "web", NODE, json!({"app": "web"})).await;
        let metrics = metrics();
        let token = scratch.write("token", "t1");
        let cache = spawn_tuned(api.options(&token), metrics.clone(), tuning()).unwrap();
        wait_until("the list is in the cache", async || cache.len() == 1).await;
        wait_until("the watch starts", async || !api.watches().await.is_empty()).await;

        api.pod("uid-2", "worker", NODE, json!({})).await;
        wait_until("an added pod is known", async || cache.get("uid-2").is_some()).await;
        api.pod("uid-elsewhere", "other", "node-b", json!({})).await;

        api.pod("uid-1", "web", NODE, json!({"app": "web", "version": "2"})).await;
        let relabelled = labels(&[("app", "web"), ("version", "2")]);
        wait_until("a label change is seen", async || cache.get("uid-1").unwrap().labels == relabelled).await;

        // A static pod runs under its config hash; the API server knows its mirror.
        let mirror = json!({"uid": "uid-mirror", "name": "etcd-node-a", "namespace": "kube-system",
            "annotations": {"kubernetes.io/config.mirror": "6c5d5e8b1e4b6b2a8e4b8a1f5c2d3e4f"}});
        api.post("/_pods", mirror).await;
        wait_until("a mirror pod is known", async || cache.len() == 3).await;
        assert_eq!(cache.get("6c5d5e8b1e4b6b2a8e4b8a1f5c2d3e4f").unwrap().name, "etcd-node-a");

        api.delete("uid-2", false).await;
        wait_until("a deleted pod leaves the count", async || cache.len() == 2).await;
        assert_eq!(metrics.pods_known.get(), 2);
        wait_until("a deleted pod is forgotten after the grace period", async || {
            cache.get("uid-2").is_none()
        })
        .await;
        assert!(cache.get("uid-1").is_some());
        assert_eq!(cache.get("uid-elsewhere"), None);
        assert_eq!(api.lists().await.len(), 1, "events need no list");
        assert_eq!(metrics.kubernetes_watch_errors.get(), 0);
    }

    #[tokio::test]
    async fn lists_again_after_410_gone() {
        // "event": an ERROR event with code 410 in the stream; "status": the stream ends and
        // the reconnect is answered with HTTP 410.
        for mode in ["event", "status"] {
            let scratch = Scratch::new(&format!("gone-{mode}"));
            let api = StandIn::start("t1", None);
            api.pod("uid-1", "one", NODE, json!({})).await;
            api.pod("uid-2", "two", NODE, json!({})).await;
            let metrics = metrics();
            let token = scratch.write("token", "t1");
            let cache = spawn_tuned(api.options(&token), metrics.clone(), tuning()).unwrap();
            wait_until("the list is in the cache", async || cache.len() == 2).await;
            wait_until("the watch starts", async || !api.watches().await.is_empty()).await;

            // Changes whose events the client never sees, then history compacted past it.
            api.silent_pod("uid-3").await;
            api.delete("uid-1", true).await;
            api.post("/_expire", json!({"mode": mode})).await;

            wait_until("the relist adds the pod missed", async || cache.get("uid-3").is_some()).await;
            wait_until("the relist drops the pod missed", async || cache.get("uid-1").is_none()).await;
            assert_eq!(cache.len(), 2);
            let requests = api.requests().await;
            assert_eq!(requests.iter().filter(|r| !is_watch(r)).count(), 2, "{mode}: {requests:?}");
            if mode == "status" {
                assert!(requests.iter().any(|r| is_watch(r) && r["status"] == 410), "{requests:?}");
            }
            assert_eq!(metrics.kubernetes_watch_errors.get(), 0, "{mode}: 410 is routine");
        }
    }

    #[tokio::test]
    async fn backs_off_on_server_errors() {
        let scratch = Scratch::new("backoff");
        let api = StandIn::start("t1", None);
        api.pod("uid-1", "one", NODE, json!({})).await;
        api.post("/_fail", json!({"status": 500, "count": 4})).await;
        let metrics = metrics();
        let token = scratch.write("token", "t1");
        let cache = spawn_tuned(api.options(&token), metrics.clone(), tuning()).unwrap();
        wait_until("the list succeeds after the failures", async || cache.len() == 1).await;

        assert_eq!(metrics.kubernetes_watch_errors.get(), 4);
        let lists = api.lists().await;
        let statuses: Vec<_> = lists.iter().map(|r| r["status"].as_u64().unwrap()).collect();
        assert_eq!(statuses, [500, 500, 500, 500, 200], "one request per attempt");
        for (gap, floor) in gaps(&lists).into_iter().zip(BACKOFF_FLOORS) {
            assert!(gap >= floor, "retried after {gap:.3}s, sooner than {floor}s: {lists:?}");
        }
    }

    #[tokio::test]
    async fn watches_that_end_at_once_back_off() {
        let scratch = Scratch::new("short");
        let api = StandIn::start("t1", None);
        api.post("/_short_watches", json!({"on": true})).await;
        let metrics = metrics();
        let token = scratch.write("token", "t1");
        let _cache = spawn_tuned(api.options(&token), metrics.clone(), tuning()).unwrap();
        wait_until("five watches", async || api.watches().await.len() >= 5).await;

        let watches = api.watches().await;
        for (gap, floor) in gaps(&watches).into_iter().zip(BACKOFF_FLOORS) {
            assert!(gap >= floor, "reconnected after {gap:.3}s, sooner than {floor}s: {watches:?}");
        }
        assert_eq!(metrics.kubernetes_watch_errors.get(), 0, "an empty watch is not an error");
    }

    #[tokio::test]
    async fn reads_the_token_again_on_each_connect() {
        let scratch = Scratch::new("token");
        let api = StandIn::start("t1", None);
        api.pod("uid-1", "one", NODE, json!({})).await;
        let metrics = metrics();
        let token = scratch.write("token", "stale");
        let cache = spawn_tuned(api.options(&token), metrics.clone(), tuning()).unwrap();
        wait_until("a refused token is counted", async || metrics.kubernetes_watch_errors.get() >= 1).await;
        assert_eq!(api.requests().await[0]["status"], 401);
        fs::write(&token, "t1\n").unwrap();
        wait_until("the fixed token is used", async || cache.len() == 1).await;
        wait_until("the watch starts", async || !api.watches().await.is_empty()).await;

        // Rotation: the old token stops working; the next connection must read the new one.
        fs::write(&token, "t2\n").unwrap();
        api.post("/_token", json!({"token": "t2"})).await;
        let rotated = api.requests().await.len();
        api.post("/_expire", json!({"mode": "event"})).await;
        api.pod("uid-2", "two", NODE, json!({})).await;
        wait_until("the pod added after rotation is known", async || cache.get("uid-2").is_some()).await;

        let after = api.requests().await.split_off(rotated);
        assert!(!after.is_empty());
        for request in &after {
            assert_eq!(request["auth"], "Bearer t2", "{request}");
            assert_eq!(request["status"], 200, "{request}");
        }
    }

    /// Runs `openssl` with `args` in `dir`.
    fn openssl(dir: &Path, args: &[&str]) {
        let status = crate::testing::program("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let status = status.unwrap_or_else(|e| panic!("openssl: {e}"));
        assert!(status.success(), "openssl {args:?}: {status}");
    }

    /// A CA, and a certificate for 127.0.0.1 it signed, under `prefix`.
    fn certificates(scratch: &Scratch, prefix: &str) {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca_key = format!("{prefix}ca.key");
        let ca = format!("{prefix}ca.pem");
        let key = format!("{prefix}server.key");
        let csr = format!("{prefix}server.csr");
        let cert = format!("{prefix}server.pem");
        scratch.write(
            "ext.cnf",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        );
        let dir = &scratch.0;
        openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", "/CN=premain test CA"],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]].concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
    }

    #[tokio::test]
    async fn https_checked_against_the_cluster_ca() {
        let scratch = Scratch::new("https");
        certificates(&scratch, "");
        certificates(&scratch, "other-");
        let dir = &scratch.0;
        let tls = (&*dir.join("server.pem"), &*dir.join("server.key"), &*dir.join("ca.pem"));
        let api = StandIn::start("t1", Some(tls));
        api.pod("uid-1", "one", NODE, json!({})).await;
        let token = scratch.write("token", "t1");

        let trusting = WatchOptions { ca_file: Some(dir.join("ca.pem")), ..api.options(&token) };
        let cache = spawn_tuned(trusting, metrics(), tuning()).unwrap();
        wait_until("the list arrives over https", async || cache.len() == 1).await;

        let metrics = metrics();
        let distrusting = WatchOptions { ca_file: Some(dir.join("other-ca.pem")), ..api.options(&token) };
        let cache = spawn_tuned(distrusting, metrics.clone(), tuning()).unwrap();
        wait_until("a server the CA did not sign is refused", async || {
            metrics.kubernetes_watch_errors.get() >= 1
        })
        .await;
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn grace_keeps_deleted_pods_readable() {
        let mut store = Store { grace: Duration::from_secs(60), ..Store::default() };
        let t0 = Instant::now();
        let pod = |uid: &str| Known {
            uid: uid.into(),
            meta: PodMeta { name: uid.into(), namespace: "ns".into(), labels: BTreeMap::new() },
            mirror_of: None,
        };
        store.upsert(pod("a"));
        store.upsert(pod("b"));
        store.delete("a", t0);
        store.delete("a", t0 + Duration::from_secs(30));
        assert_eq!(store.live, 1);
        assert!(store.get("a", t0 + Duration::from_secs(59)).is_some(), "still in its grace period");
        assert!(store.get("a", t0 + Duration::from_secs(60)).is_none());
        store.sweep(t0 + Duration::from_secs(59));
        assert!(store.pods.contains_key("a"));
        store.sweep(t0 + Duration::from_secs(61));
        assert!(!store.pods.contains_key("a"));
        assert_eq!(store.live, 1);

        // A relist marks what it lacks deleted and revives what it has.
        store.delete("b", t0);
        store.replace(vec![pod("b"), pod("c")], t0);
        assert_eq!(store.live, 2);
        assert!(store.get("b", t0 + Duration::from_secs(3600)).is_some());
        store.replace(vec![pod("c")], t0);
        assert_eq!(store.live, 1);
        assert!(store.get("b", t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn mirror_pods_answer_for_their_static_pod() {
        let mut store = Store { grace: Duration::from_secs(1), ..Store::default() };
        let t0 = Instant::now();
        let mirror = |uid: &str| Known {
            uid: uid.into(),
            meta: PodMeta { name: "etcd".into(), namespace: "kube-system".into(), labels: BTreeMap::new() },
            mirror_of: Some("hash".into()),
        };
        store.upsert(mirror("m1"));
        assert_eq!(store.get("hash", t0).unwrap().name, "etcd");
        // The kubelet recreates a mirror pod under a new UID; the old one's deletion must not
        // take the alias with it.
        store.upsert(mirror("m2"));
        store.delete("m1", t0);
        store.sweep(t0 + Duration::from_secs(2));
        assert!(store.get("hash", t0 + Duration::from_secs(2)).is_some());
        store.delete("m2", t0);
        store.sweep(t0 + Duration::from_secs(2));
        assert!(store.get("hash", t0 + Duration::from_secs(2)).is_none());
        assert!(store.mirrors.is_empty());
    }

    #[test]
    fn backoff_grows_to_the_cap_and_never_below_the_floor() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let mut backoff = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        for (n, delay) in delays.iter().enumerate() {
            let base = min.saturating_mul(1 << n).min(max);
            assert!(*delay >= (base / 2).max(min) && *delay <= base, "delay {n}: {delay:?}");
        }
        assert!(delays[11] >= Duration::from_secs(30));
        backoff.reset();
        assert_eq!(backoff.next_delay(), min);
    }

    fn kubernetes(enabled: Switch, api_server: &str) -> config::Kubernetes {
        config::Kubernetes {
            enabled,
            api_server: Spanned::new(0..0, api_server.into()),
            ..config::Kubernetes::default()
        }
    }

    #[test]
    fn resolve() {
        let scratch = Scratch::new("resolve");
        let ca = scratch.write("ca.crt", "");
        let token = scratch.write("token", "t");
        let in_cluster = |name: &str| match name {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("6443".to_owned()),
            "NODE_NAME" => Some("node-7".to_owned()),
            _ => None,
        };
        let outside = |_: &str| None;
        let host = || Some("host-1".to_owned());
        let resolve = |cfg: &config::Kubernetes, env: &dyn Fn(&str) -> Option<String>| {
            WatchOptions::resolve_with(cfg, env, host)
        };

        assert_eq!(resolve(&kubernetes(Switch::Off, "http://x"), &in_cluster).unwrap(), None);
        assert_eq!(resolve(&kubernetes(Switch::Auto, ""), &outside).unwrap(), None);

        let mut cfg = kubernetes(Switch::Auto, "");
        cfg.ca_file = ca.clone();
        cfg.token_file = token.clone();
        let opts = resolve(&cfg, &in_cluster).unwrap().unwrap();
        assert_eq!(
            opts,
            WatchOptions {
                api_server: "https://10.96.0.1:6443".into(),
                node_name: "node-7".into(),
                token_file: Some(token.clone()),
                ca_file: Some(ca.clone()),
            }
        );
        let v6 = |name: &str| (name == "KUBERNETES_SERVICE_HOST").then(|| "fd00::1".to_owned());
        let opts = resolve(&cfg, &v6).unwrap().unwrap();
        assert_eq!(opts.api_server, "https://[fd00::1]:443");
        assert_eq!(opts.node_name, "host-1", "the hostname when nothing else names the node");
        cfg.node_name = "configured".into();
        assert_eq!(resolve(&cfg, &in_cluster).unwrap().unwrap().node_name, "configured");

        // Out of cluster through `kubectl proxy`: no token or CA needed, none found.
        let opts = resolve(&kubernetes(Switch::On, "http://127.0.0.1:8001/"), &outside).unwrap().unwrap();
        assert_eq!(opts.api_server, "http://127.0.0.1:8001");
        assert_eq!((opts.token_file, opts.ca_file), (None, None));

        assert!(matches!(resolve(&kubernetes(Switch::On, ""), &outside), Err(K8sError::NoApiServer)));
        assert!(matches!(
            resolve(&kubernetes(Switch::On, "10.0.0.1:6443"), &outside),
            Err(K8sError::BadApiServer(_))
        ));
        assert!(matches!(
            resolve(&kubernetes(Switch::On, "https://10.0.0.1"), &outside),
            Err(K8sError::NoCa(_))
        ));
        let nameless = WatchOptions::resolve_with(&kubernetes(Switch::On, "http://x"), outside, || None);
        assert!(matches!(nameless, Err(K8sError::NoNodeName)));
    }

    #[test]
    fn ca_file_must_hold_certificates() {
        let scratch = Scratch::new("ca");
        let opts = |ca: PathBuf| WatchOptions {
            api_server: "https://127.0.0.1:6443".into(),
            node_name: NODE.into(),
            token_file: None,
            ca_file: Some(ca),
        };
        for (text, reason) in [("", "holds no certificate"), ("-----BEGIN CERTIFICATE-----\nzz", "not a PEM")]
        {
            let error = http_client(&opts(scratch.write("ca.crt", text)), &tuning()).unwrap_err();
            assert!(error.to_string().contains(reason), "{error}");
        }
        let error = http_client(&opts(scratch.0.join("missing")), &tuning()).unwrap_err();
        assert!(matches!(error, K8sError::Ca { .. }), "{error}");
    }

    #[test]
    fn needs_a_runtime() {
        let opts = WatchOptions {
            api_server: "http://127.0.0.1:1".into(),
            node_name: NODE.into(),
            token_file: None,
            ca_file: None,
        };
        assert!(matches!(spawn_watch(opts, metrics()), Err(K8sError::NoRuntime)));
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("spec.nodeName=node-a"), "spec.nodeName%3Dnode-a");
        assert_eq!(encode("eyJ2Ijo+/=="), "eyJ2Ijo%2B%2F%3D%3D");
    }
}
