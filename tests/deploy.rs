//! Offline checks of everything under `deploy/`: the Kubernetes manifests, the Grafana
//! dashboard, the example configurations, and that the DaemonSet's container really starts.
//!
//! - Built-in kinds are validated by kubernetes-validate in strict mode (an unknown field
//!   fails) against the oldest and newest Kubernetes the manifests support.
//! - kubernetes-validate knows no CRDs, and the upstream CRD files are neither in this
//!   repository nor reachable from the test machines (GitHub is not), so
//!   ServiceMonitor and PrometheusRule are checked with jsonschema against
//!   `tests/schemas/monitoring.coreos.com-v1.json`: strict schemas written from
//!   prometheus-operator's API (v0.93) that list every field of the objects used, with
//!   metadata checked as Kubernetes' ObjectMeta (`tests/scripts/manifests.py`).
//! - PromQL in the dashboard and the alert rules may only name metrics that
//!   `monitor/src/ops/metrics.rs` defines, and the dashboard must show every one of them.
//! - The alert rules pass Prometheus's own `promtool check rules`, and `promtool test rules`
//!   runs `tests/prometheus/rules-test.yaml`, where every alerting rule fires on its cause
//!   and stays quiet without it (promtool is unpacked from Debian's prometheus by setup).
//! - The DaemonSet container's command and arguments, with the generated ConfigMap's file in
//!   place of its mount, must start premain, answer its probes and exit cleanly on SIGTERM
//!   within the grace period.
//!
//! YAML is read through the Python venv `cargo xtask setup` builds (PyYAML comes with
//! kubernetes-validate), found at `$PREMAIN_TOOLS_VENV`, else `venv` in setup's tools
//! directory.

use std::{
    collections::{BTreeMap, BTreeSet},
    env, fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{Premain, TempDir, premain_binary, workspace_root};
use serde_json::{Value, json};

/// The oldest Kubernetes the manifests support (securityContext.appArmorProfile is GA in
/// 1.30) and the newest the pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// Metric names PromQL may use besides premain's own: Prometheus's scrape health.
const FOREIGN_METRICS: [&str; 1] = ["up"];
/// Labels every premain_alerts_total series has, and those Prometheus adds to every target
/// (`node` from the ServiceMonitor's relabeling).
const ALERT_BASE_LABELS: [&str; 6] = ["rule", "phase", "severity", "job", "instance", "node"];
/// What the downward API gives NODE_NAME in the run below.
const TEST_NODE_NAME: &str = "premain-deploy-test-node";
/// What the container runtime sets besides the container's env: the Debian image's PATH and
/// root's HOME. The kubelet's KUBERNETES_SERVICE_* variables are left out, so `[kubernetes]
/// enabled = "auto"` stays off here: there is no API server to watch.
const RUNTIME_ENV: [(&str, &str); 2] =
    [("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), ("HOME", "/root")];
const CRD_GROUP: &str = "monitoring.coreos.com/";

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

fn kube_dir() -> PathBuf {
    deploy_dir().join("kubernetes")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The venv of `cargo xtask setup` (the same places `xtask/src/setup.rs` builds it in).
fn venv() -> PathBuf {
    let dir = env::var_os("PREMAIN_TOOLS_VENV")
        .map_or_else(|| integration_tests::tools_dir().join("venv"), PathBuf::from);
    assert!(
        dir.join("bin/python").is_file() && dir.join("bin/kubernetes-validate").is_file(),
        "the deploy tests' Python tools are missing from {}: run `cargo xtask setup`",
        dir.display()
    );
    dir
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn manifests_py(args: &[&str]) -> Output {
    let script = integration_tests::script("manifests.py");
    let mut all = vec![script.to_str().expect("UTF-8 path")];
    all.extend(args);
    run(&venv().join("bin/python"), &all)
}

/// The YAML documents of `path`.
fn yaml(path: &Path) -> Vec<Value> {
    let out = manifests_py(&["yaml2json", path.to_str().expect("UTF-8 path")]);
    assert!(out.status.success(), "parsing {}: {}", path.display(), text(&out));
    match serde_json::from_slice(&out.stdout).expect("yaml2json prints JSON") {
        Value::Array(docs) => docs,
        other => panic!("yaml2json printed {other}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map_or_else(Vec::new, |a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
}

fn kustomization() -> Value {
    yaml(&kube_dir().join("kustomization.yaml")).remove(0)
}

/// The files `kustomization.yaml` lists as resources, with their documents.
fn resources() -> Vec<(PathBuf, Vec<Value>)> {
    strings(&kustomization()["resources"])
        .into_iter()
        .map(|name| {
            let path = kube_dir().join(name);
            let docs = yaml(&path);
            (path, docs)
        })
        .collect()
}

/// The one ConfigMap the kustomization generates: its name, key and source file.
fn generated_config() -> (String, String, PathBuf) {
    let generators = kustomization()["configMapGenerator"].as_array().cloned().unwrap_or_default();
    assert_eq!(generators.len(), 1, "one configMapGenerator (premain's config)");
    let name = generators[0]["name"].as_str().expect("generator name").to_owned();
    let files = strings(&generators[0]["files"]);
    assert_eq!(files.len(), 1, "the config generator holds one file");
    // `key=path` names the key explicitly; otherwise the key is the file name.
    let (key, file) = files[0].split_once('=').map_or_else(
        || {
            (
                Path::new(&files[0]).file_name().expect("file name").to_string_lossy().into_owned(),
                files[0].clone(),
            )
        },
        |(k, f)| (k.to_owned(), f.to_owned()),
    );
    (name, key, kube_dir().join(file))
}

fn daemonset() -> Value {
    let (_, docs) = resources()
        .into_iter()
        .find(|(_, docs)| docs.iter().any(|d| d["kind"] == "DaemonSet"))
        .expect("a DaemonSet among the resources");
    docs.into_iter().find(|d| d["kind"] == "DaemonSet").expect("DaemonSet")
}

fn premain_container(pod: &Value) -> &Value {
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "the premain container only");
    &containers[0]
}

fn config_toml(path: &Path) -> toml::Table {
    read(path).parse().unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

/// `deploy/premain.toml` with its optional settings (`#key = ...` lines) uncommented.
fn example_config_uncommented() -> String {
    read(&deploy_dir().join("premain.toml"))
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The metric names `monitor/src/ops/metrics.rs` registers, with the registry's prefix; a
/// histogram appears as its `_bucket`, `_sum` and `_count` series.
fn defined_metrics() -> BTreeSet<String> {
    let source = read(&workspace_root().join("monitor/src/ops/metrics.rs"));
    let prefix = source
        .split_once("Registry::new_custom(Some(\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(prefix, _)| prefix.to_owned())
        .expect("metrics.rs names the registry prefix in Registry::new_custom");
    let literal_after = |call: &str| -> Vec<String> {
        source
            .match_indices(call)
            .filter_map(|(at, _)| {
                let rest = source[at + call.len()..].trim_start().strip_prefix('"')?;
                let name = &rest[..rest.find('"')?];
                let valid = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                valid.then(|| format!("{prefix}_{name}"))
            })
            .collect()
    };
    let mut names = BTreeSet::new();
    for call in
        ["Opts::new(", "counter(", "counter_vec(", "gauge(", "gauge_vec(", "Gauge::new(", "IntGauge::new("]
    {
        // `HistogramOpts::new(` contains `Opts::new(`: histograms are handled below.
        names.extend(literal_after(call));
    }
    for histogram in literal_after("HistogramOpts::new(") {
        names.remove(&histogram);
        names.extend(["bucket", "sum", "count"].map(|suffix| format!("{histogram}_{suffix}")));
    }
    assert!(
        names.contains(&format!("{prefix}_alerts_total")),
        "scanning metrics.rs found no {prefix}_alerts_total (the scanner needs updating): {names:?}"
    );
    names
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Punct(char),
}

/// PromQL tokens, less what cannot name a metric: strings, label matchers, ranges, numbers,
/// durations and Grafana variables.
fn promql_tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let skip_string = |i: &mut usize, quote: char| {
        *i += 1;
        while *i < chars.len() && chars[*i] != quote {
            *i += if chars[*i] == '\\' && quote != '`' { 2 } else { 1 };
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => skip_string(&mut i, c),
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    if matches!(chars[i], '"' | '\'' | '`') {
                        let quote = chars[i];
                        skip_string(&mut i, quote);
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_{}".contains(chars[i])) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            c if c.is_whitespace() => i += 1,
            c => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    tokens
}

/// Keywords that take a parenthesised list of label names.
const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Operators and aggregations (`sum by (x) (...)` puts no parenthesis after `sum`).
const KEYWORDS: [&str; 21] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names `expr` selects.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    let tokens = promql_tokens(expr);
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Token::Ident(name) = &tokens[i] {
            let call = tokens.get(i + 1) == Some(&Token::Punct('('));
            if call && GROUPING.contains(&name.as_str()) {
                while i < tokens.len() && tokens[i] != Token::Punct(')') {
                    i += 1;
                }
            } else if !call && !KEYWORDS.contains(&name.to_lowercase().as_str()) {
                names.insert(name.clone());
            }
        }
        i += 1;
    }
    names
}

/// The labels of every `by (...)` clause of `expr`.
fn by_labels(expr: &str) -> BTreeSet<String> {
    let tokens = promql_tokens(expr);
    let mut labels = BTreeSet::new();
    for (i, token) in tokens.iter().enumerate() {
        if *token == Token::Ident("by".into()) && tokens.get(i + 1) == Some(&Token::Punct('(')) {
            for inner in &tokens[i + 2..] {
                match inner {
                    Token::Ident(label) => {
                        labels.insert(label.clone());
                    }
                    Token::Punct(')') => break,
                    Token::Punct(_) => {}
                }
            }
        }
    }
    labels
}

/// The metric a Grafana `label_values(selector, label)` variable query selects; other queries
/// are PromQL.
fn grafana_query_metrics(query: &str) -> BTreeSet<String> {
    match query.trim().strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
        Some(args) => promql_metrics(args.rsplit_once(',').map_or(args, |(selector, _)| selector)),
        None => promql_metrics(query),
    }
}

/// Names `exprs` use that metrics.rs does not define.
fn unknown_metrics<'a>(exprs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let defined = defined_metrics();
    let mut unknown = Vec::new();
    for expr in exprs {
        for name in promql_metrics(expr) {
            if !defined.contains(&name) && !FOREIGN_METRICS.contains(&name.as_str()) {
                unknown.push(format!("{name} (in {expr})"));
            }
        }
    }
    unknown
}

/// Labels of premain_alerts_total the DaemonSet's configuration provides.
fn alert_labels_available() -> BTreeSet<String> {
    let (_, _, config) = generated_config();
    let config = config_toml(&config);
    let optional = config.get("metrics").and_then(|m| m.get("alert_labels")).and_then(|l| l.as_array());
    let optional = optional.into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned));
    ALERT_BASE_LABELS.iter().map(|l| (*l).to_owned()).chain(optional).collect()
}

/// Expressions grouping premain_alerts_total by a label the DaemonSet's config does not add.
fn missing_alert_labels<'a>(exprs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let available = alert_labels_available();
    exprs
        .into_iter()
        .filter(|expr| promql_metrics(expr).contains("premain_alerts_total"))
        .flat_map(|expr| {
            by_labels(expr)
                .into_iter()
                .filter(|l| !available.contains(l))
                .map(move |l| format!("{l} (in {expr})"))
        })
        .collect()
}

fn kubernetes_validate(files: &[PathBuf], version: &str) -> Output {
    let mut args = vec!["--strict", "--kubernetes-version", version];
    args.extend(files.iter().map(|f| f.to_str().expect("UTF-8 path")));
    run(&venv().join("bin/kubernetes-validate"), &args)
}

fn write_json(dir: &TempDir, name: &str, docs: &[Value]) -> PathBuf {
    // YAML is a superset of JSON: one document per file.
    assert_eq!(docs.len(), 1);
    dir.file(name, &serde_json::to_string_pretty(&docs[0]).expect("JSON"))
}

#[test]
fn builtin_kinds_validate_strictly_against_pinned_kubernetes() {
    let dir = TempDir::new("deploy-validate");
    let mut files = Vec::new();
    let mut documents = 0;
    for (path, docs) in resources() {
        if docs.iter().all(|d| !d["apiVersion"].as_str().unwrap_or("").starts_with(CRD_GROUP)) {
            documents += docs.len();
            files.push(path);
        }
    }
    // The ConfigMap kustomize generates, as it generates it (name hash aside).
    let (name, key, source) = generated_config();
    let namespace = kustomization()["namespace"].clone();
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace}, "data": {key: read(&source)}});
    files.push(write_json(&dir, "configmap.json", &[configmap]));
    documents += 1;
    for version in KUBERNETES_VERSIONS {
        let out = kubernetes_validate(&files, version);
        let report = text(&out);
        println!("kubernetes {version}:\n{report}");
        assert!(out.status.success(), "kubernetes-validate --strict failed against {version}:\n{report}");
        let passed = report.lines().filter(|l| l.contains(" passed for resource ")).count();
        assert_eq!(passed, documents, "every document must be checked against {version}:\n{report}");
    }
    // The validator must reject what the API server would: an unknown field, deep down.
    let mut broken = daemonset();
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privilegd"] = json!(false);
    let broken = write_json(&dir, "broken.json", &[broken]);
    let out = kubernetes_validate(&[broken], KUBERNETES_VERSIONS[0]);
    assert!(!out.status.success(), "strict validation let an unknown field through:\n{}", text(&out));
}

#[test]
fn prometheus_operator_kinds_validate_strictly() {
    let schema = integration_tests::workspace_root().join("tests/schemas/monitoring.coreos.com-v1.json");
    let files: Vec<PathBuf> = resources()
        .into_iter()
        .filter(|(_, docs)| {
            docs.iter().any(|d| d["apiVersion"].as_str().unwrap_or("").starts_with(CRD_GROUP))
        })
        .map(|(path, _)| path)
        .collect();
    let kinds: BTreeSet<String> =
        files.iter().flat_map(|f| yaml(f)).filter_map(|d| d["kind"].as_str().map(str::to_owned)).collect();
    assert_eq!(kinds, BTreeSet::from(["PrometheusRule".into(), "ServiceMonitor".into()]));
    let validate = |files: &[PathBuf]| {
        let mut args = vec!["crd-validate", schema.to_str().expect("UTF-8"), KUBERNETES_VERSIONS[0]];
        args.extend(files.iter().map(|f| f.to_str().expect("UTF-8 path")));
        manifests_py(&args)
    };
    let out = validate(&files);
    println!("{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));

    let dir = TempDir::new("deploy-crd");
    for (path, docs) in resources() {
        let Some(mut doc) =
            docs.into_iter().find(|d| d["apiVersion"].as_str().unwrap_or("").starts_with(CRD_GROUP))
        else {
            continue;
        };
        let spec = doc["spec"].as_object_mut().expect("spec");
        let first = spec.keys().next().expect("a spec field").clone();
        spec.insert(format!("{first}x"), spec[&first].clone());
        let broken = write_json(&dir, "broken.json", &[doc]);
        let out = validate(&[broken]);
        assert!(!out.status.success(), "{}: an unknown spec field passed:\n{}", path.display(), text(&out));
    }
}

#[test]
fn kustomization_covers_every_manifest() {
    let kustomization = kustomization();
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    let (generator, key, config) = generated_config();
    let mut on_disk = BTreeSet::new();
    for entry in fs::read_dir(kube_dir()).expect("deploy/kubernetes") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if (name.ends_with(".yaml") || name.ends_with(".yml")) && name != "kustomization.yaml" {
            on_disk.insert(name);
        }
    }
    assert_eq!(listed, on_disk, "kustomization.yaml must list exactly the manifests of deploy/kubernetes");
    assert!(config.is_file(), "the configMapGenerator file {} is missing", config.display());

    let namespace = kustomization["namespace"].as_str().expect("kustomization namespace");
    let mut kinds = BTreeMap::new();
    for (path, docs) in resources() {
        for doc in docs {
            let kind = doc["kind"].as_str().expect("kind").to_owned();
            let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
            let ns = doc["metadata"]["namespace"].as_str();
            match kind.as_str() {
                "Namespace" => assert_eq!(name, namespace, "{}", path.display()),
                "ClusterRole" | "ClusterRoleBinding" => assert_eq!(ns, None, "{}", path.display()),
                _ => assert_eq!(ns, Some(namespace), "{} {kind}/{name}", path.display()),
            }
            if kind == "ClusterRoleBinding" {
                for subject in doc["subjects"].as_array().expect("subjects") {
                    assert_eq!(subject["namespace"].as_str(), Some(namespace), "{}", path.display());
                }
            }
            kinds.insert(kind, doc);
        }
    }
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} among the resources");
    }
    let pod = &kinds["DaemonSet"]["spec"]["template"]["spec"];
    let container = premain_container(pod);
    let config_volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"]["name"] == generator.as_str())
        .unwrap_or_else(|| panic!("no DaemonSet volume uses the generated ConfigMap {generator}"));
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == config_volume["name"])
        .expect("the config volume is mounted");
    let config_path = format!("{}/{key}", mount["mountPath"].as_str().expect("mountPath"));
    assert!(
        strings(&container["args"]).contains(&config_path),
        "the container's args must name the mounted config {config_path}"
    );
    let image = container["image"].as_str().expect("image");
    let image_name = image.rsplit_once(':').map_or(image, |(n, _)| n);
    for entry in kustomization["images"].as_array().into_iter().flatten() {
        assert_eq!(
            entry["name"].as_str(),
            Some(image_name),
            "kustomization images must name the container image"
        );
    }
    assert_eq!(pod["serviceAccountName"], kinds["ServiceAccount"]["metadata"]["name"]);
    let service = &kinds["Service"];
    let selector = &kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"];
    for (label, value) in selector.as_object().expect("ServiceMonitor selector") {
        assert_eq!(
            &service["metadata"]["labels"][label], value,
            "the ServiceMonitor must select the Service"
        );
    }
    for (label, value) in service["spec"]["selector"].as_object().expect("Service selector") {
        assert_eq!(&pod_labels(&kinds["DaemonSet"])[label], value, "the Service must select premain's pods");
    }
    let port_names: Vec<&Value> =
        service["spec"]["ports"].as_array().expect("ports").iter().map(|p| &p["name"]).collect();
    for endpoint in kinds["ServiceMonitor"]["spec"]["endpoints"].as_array().expect("endpoints") {
        assert!(
            port_names.contains(&&endpoint["port"]),
            "the ServiceMonitor's port must be a Service port name"
        );
    }

    // kubectl's own kustomize (Debian's, unpacked by setup): the generated ConfigMap must carry the
    // file byte for byte, under the name the DaemonSet then refers to.
    let out = Command::new(integration_tests::tool("kubectl"))
        .arg("kustomize")
        .arg(kube_dir())
        .output()
        .expect("run kubectl kustomize");
    assert!(out.status.success(), "kubectl kustomize failed: {}", text(&out));
    let dir = TempDir::new("deploy-kustomize");
    let rendered = dir.file("rendered.yaml", &String::from_utf8(out.stdout).expect("UTF-8"));
    let docs = yaml(&rendered);
    let configmap = docs.iter().find(|d| d["kind"] == "ConfigMap").expect("a generated ConfigMap");
    assert_eq!(configmap["data"][&key].as_str(), Some(read(&config).as_str()));
    let daemonset = docs.iter().find(|d| d["kind"] == "DaemonSet").expect("DaemonSet");
    let volumes = daemonset["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes");
    assert!(volumes.iter().any(|v| v["configMap"]["name"] == configmap["metadata"]["name"]));
}

fn pod_labels(daemonset: &Value) -> &Value {
    &daemonset["spec"]["template"]["metadata"]["labels"]
}

#[test]
fn daemonset_fits_the_config_and_the_daemon() {
    let daemonset = daemonset();
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = premain_container(pod);
    let (_, _, config_path) = generated_config();
    let config = config_toml(&config_path);

    assert_eq!(pod["hostPID"], true, "the kernel reports host PIDs");
    let security = &container["securityContext"];
    assert_ne!(security["privileged"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    let added = strings(&security["capabilities"]["add"]);
    // What the preflight check refuses to start without (monitor/src/kernel/preflight.rs).
    for cap in ["BPF", "PERFMON", "SYS_PTRACE"] {
        assert!(added.iter().any(|a| a == cap), "capability {cap} missing: {added:?}");
    }
    assert!(added.iter().any(|a| a == "SYS_ADMIN"), "the credential file watch needs SYS_ADMIN (fanotify)");

    let drain =
        config.get("shutdown").and_then(|s| s.get("drain_deadline_secs")).and_then(|d| d.as_integer());
    let drain = drain.unwrap_or(10);
    let grace = pod["terminationGracePeriodSeconds"].as_i64().expect("terminationGracePeriodSeconds");
    assert!(grace > drain, "terminationGracePeriodSeconds {grace} must exceed drain_deadline_secs {drain}");

    // The probes reach the address the config listens on.
    let address =
        config.get("metrics").and_then(|m| m.get("address")).and_then(|a| a.as_str()).expect("address");
    let address: SocketAddr = address.parse().expect("metrics.address is IP:port");
    assert!(
        address.ip().is_unspecified(),
        "the kubelet and Prometheus connect to the pod's IP, not loopback"
    );
    assert_eq!(metrics_port(container), address.port());

    let env = container["env"].as_array().expect("env");
    assert!(
        env.iter()
            .any(|e| e["name"] == "NODE_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"),
        "NODE_NAME must come from spec.nodeName"
    );

    // Everything premain writes must be on a writable volume: the root filesystem is not.
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    let volumes = pod["volumes"].as_array().expect("volumes");
    for mount in mounts {
        assert!(volumes.iter().any(|v| v["name"] == mount["name"]), "no volume for mount {mount}");
    }
    let sinks = config.get("sinks").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    let mut written = vec!["/var/lib/premain/spool".to_owned(), "/run/premain/premain.lock".to_owned()];
    for sink in &sinks {
        for key in ["spool_dir", "path"] {
            written.extend(sink.get(key).and_then(|v| v.as_str()).map(str::to_owned));
        }
    }
    for path in written {
        assert!(
            mounts.iter().any(|m| m["readOnly"] != true
                && path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap_or("/nowhere")))),
            "{path} is not on a writable volume (readOnlyRootFilesystem)"
        );
    }
}

/// The container port the probes use.
fn metrics_port(container: &Value) -> u16 {
    let probe_port = &container["readinessProbe"]["httpGet"]["port"];
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(&container[probe]["httpGet"]["port"], probe_port, "{probe} must use the metrics port");
    }
    let ports = container["ports"].as_array().expect("ports");
    let port = match probe_port {
        Value::String(name) => {
            ports.iter().find(|p| p["name"] == name.as_str()).expect("named port")["containerPort"].clone()
        }
        number => number.clone(),
    };
    u16::try_from(port.as_u64().expect("port number")).expect("port")
}

#[test]
fn dashboard_parses_and_uses_existing_metrics() {
    let path = deploy_dir().join("grafana/premain-dashboard.json");
    let dashboard: Value = serde_json::from_str(&read(&path)).expect("the dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_u64().expect("schemaVersion") >= 36);
    let variables = dashboard["templating"]["list"].as_array().expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a ${{datasource}} variable of type prometheus"
    );
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "duplicate panel id {}", panel["id"]);
        assert!(panel["gridPos"].is_object(), "panel {} has no gridPos", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    let mut queries = Vec::new();
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let query = variable["query"]["query"].as_str().or(variable["query"].as_str()).expect("query");
        queries.push(query.to_owned());
    }
    let defined = defined_metrics();
    let mut unknown = unknown_metrics(exprs.iter().map(String::as_str));
    for query in &queries {
        let names = grafana_query_metrics(query);
        unknown
            .extend(names.into_iter().filter(|n| !defined.contains(n)).map(|n| format!("{n} (in {query})")));
    }
    assert!(unknown.is_empty(), "the dashboard uses metrics premain does not define: {unknown:#?}");

    let used: BTreeSet<String> = exprs.iter().flat_map(|e| promql_metrics(e)).collect();
    let missing: Vec<&String> = defined.iter().filter(|m| !used.contains(*m)).collect();
    assert!(missing.is_empty(), "the dashboard shows none of: {missing:?}");
    let labels = missing_alert_labels(exprs.iter().map(String::as_str));
    assert!(labels.is_empty(), "add these to metrics.alert_labels in the DaemonSet's config: {labels:#?}");
}

#[test]
fn prometheus_rules_use_existing_metrics() {
    let rule_doc = resources()
        .into_iter()
        .flat_map(|(_, docs)| docs)
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let mut exprs = Vec::new();
    let mut names = BTreeSet::new();
    for group in rule_doc["spec"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr").to_owned();
            assert!(!promql_metrics(&expr).is_empty(), "{expr} selects no metric");
            exprs.push(expr);
            let Some(alert) = rule["alert"].as_str() else { continue };
            assert!(names.insert(alert.to_owned()), "alert {alert} defined twice");
            let severity = rule["labels"]["severity"].as_str().unwrap_or("");
            assert!(["critical", "warning", "info"].contains(&severity), "{alert}: severity {severity:?}");
            for annotation in ["summary", "description"] {
                assert!(rule["annotations"][annotation].is_string(), "{alert} has no {annotation}");
            }
        }
    }
    let unknown = unknown_metrics(exprs.iter().map(String::as_str));
    assert!(unknown.is_empty(), "the rules use metrics premain does not define: {unknown:#?}");
    let labels = missing_alert_labels(exprs.iter().map(String::as_str));
    assert!(labels.is_empty(), "add these to metrics.alert_labels in the DaemonSet's config: {labels:#?}");
}

/// The PrometheusRule's groups as a Prometheus rule file, with the unit tests of
/// `tests/prometheus/rules-test.yaml` next to it.
fn rule_files(dir: &TempDir) -> (PathBuf, PathBuf) {
    let docs = yaml(&kube_dir().join("prometheusrule.yaml"));
    let rules = dir.file("rules.json", &docs[0]["spec"].to_string());
    let tests = workspace_root().join("tests/prometheus/rules-test.yaml");
    let copy = dir.path().join("rules-test.yaml");
    fs::copy(&tests, &copy).expect("copy the rule tests");
    (rules, copy)
}

#[test]
fn prometheus_rules_pass_promtool_and_each_alert_has_a_unit_test() {
    let dir = TempDir::new("promtool");
    let (rules, tests) = rule_files(&dir);
    let promtool = integration_tests::tool("promtool");
    let out = run(&promtool, &["check", "rules", rules.to_str().unwrap()]);
    assert!(out.status.success(), "promtool check rules: {}", text(&out));
    let out = run(&promtool, &["test", "rules", tests.to_str().unwrap()]);
    assert!(out.status.success(), "promtool test rules: {}", text(&out));
    // Every alerting rule is shown firing by some test.
    let cases = yaml(&tests);
    let firing: BTreeSet<String> = cases[0]["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|group| group["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .filter(|case| case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|case| case["alertname"].as_str().map(str::to_owned))
        .collect();
    let docs = yaml(&kube_dir().join("prometheusrule.yaml"));
    let alerts: BTreeSet<String> = docs[0]["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    let untested: Vec<&String> = alerts.difference(&firing).collect();
    assert!(untested.is_empty(), "alerting rules no unit test shows firing: {untested:?}");
}

#[test]
fn promql_scanner() {
    let expr = r#"sum by (namespace, rule) (increase(premain_alerts_total{rule!="a{b}"}[10m]) > 0
        or (premain_x unless premain_x offset 10m)) > 0 and on(node) group_left(le) up == 1"#;
    assert_eq!(
        promql_metrics(expr),
        BTreeSet::from(["premain_alerts_total".into(), "premain_x".into(), "up".into()])
    );
    assert_eq!(by_labels(expr), BTreeSet::from(["namespace".into(), "rule".into()]));
    let q =
        r#"histogram_quantile(0.99, sum(rate(a_bucket{i=~"$instance"}[$__rate_interval])) by (le)) / 1e3"#;
    assert_eq!(promql_metrics(q), BTreeSet::from(["a_bucket".into()]));
    assert_eq!(
        grafana_query_metrics(r#"label_values(b{job=~"$job"}, instance)"#),
        BTreeSet::from(["b".into()])
    );
}

/// Keys of every `Deserialize` struct and enum variant in config.rs (serde renames and the
/// sink `type` tag applied).
fn config_rs_keys() -> BTreeSet<String> {
    let source = read(&workspace_root().join("monitor/src/ops/config.rs"));
    let mut keys = BTreeSet::new();
    let mut deserialize = false;
    let mut depth = 0usize;
    let mut rename: Option<String> = None;
    for line in source.lines() {
        let line = line.trim();
        if depth == 0 {
            if line.starts_with("#[derive(") {
                deserialize = line.contains("Deserialize");
            }
            if deserialize && line.starts_with("#[serde(") && line.contains("tag = \"") {
                let tag = line.split("tag = \"").nth(1).and_then(|t| t.split('"').next()).expect("tag");
                keys.insert(tag.to_owned());
            }
            if deserialize
                && (line.starts_with("pub struct ") || line.starts_with("pub enum "))
                && line.ends_with('{')
            {
                depth = 1;
            }
            continue;
        }
        if line.starts_with("//") {
            continue;
        }
        if line.starts_with("#[serde(") && line.contains("rename = \"") {
            rename = line.split("rename = \"").nth(1).and_then(|r| r.split('"').next()).map(str::to_owned);
            continue;
        }
        let field = line.strip_prefix("pub ").unwrap_or(line);
        if let Some((name, _)) = field.split_once(": ")
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            keys.insert(rename.take().unwrap_or_else(|| name.to_owned()));
        }
        depth += line.matches('{').count();
        depth -= line.matches('}').count();
        if depth == 0 {
            deserialize = false;
        }
    }
    keys
}

fn toml_keys(table: &toml::Table, into: &mut BTreeSet<String>) {
    for (key, value) in table {
        into.insert(key.clone());
        match value {
            toml::Value::Table(t) => toml_keys(t, into),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        toml_keys(t, into);
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn example_config_documents_every_key() {
    let wanted = config_rs_keys();
    assert!(
        wanted.contains("ring_buffer_size") && wanted.contains("credential-read") && wanted.contains("type")
    );
    let text = example_config_uncommented();
    let table: toml::Table =
        text.parse().unwrap_or_else(|e| panic!("premain.toml, uncommented, is not TOML: {e}"));
    let mut documented = BTreeSet::new();
    toml_keys(&table, &mut documented);
    let missing: Vec<&String> = wanted.difference(&documented).collect();
    assert!(missing.is_empty(), "deploy/premain.toml does not document: {missing:?}");
}

fn check_config(path: &Path) {
    let out = Command::new(premain_binary()).arg("check-config").arg(path).output().expect("run premain");
    assert!(
        out.status.success(),
        "premain check-config {} failed ({}): {}",
        path.display(),
        out.status,
        text(&out)
    );
}

#[test]
fn example_configs_pass_check_config() {
    check_config(&deploy_dir().join("premain.toml"));
    let dir = TempDir::new("deploy-config");
    check_config(&dir.file("premain-uncommented.toml", &example_config_uncommented()));
    check_config(&generated_config().2);
    // The check must be able to fail, or passing it says nothing.
    let bogus = dir.file("bogus.toml", "[metrics]\nadress = \"0.0.0.0:9464\"\n");
    let out = Command::new(premain_binary()).arg("check-config").arg(&bogus).output().expect("run premain");
    assert!(!out.status.success(), "check-config accepted an unknown key: {}", text(&out));
}

fn effective(path: &Path) -> String {
    let out = Command::new(premain_binary())
        .args(["check-config", "--print"])
        .arg(path)
        .output()
        .expect("run premain");
    assert!(out.status.success(), "check-config --print {}: {}", path.display(), text(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The values deploy/premain.toml sets are the defaults it claims they are, and what
/// `check-config --print` writes reads back the same.
#[test]
fn example_config_values_are_the_defaults_and_print_round_trips() {
    let dir = TempDir::new("deploy-print");
    let defaults = effective(&dir.file("empty.toml", ""));
    assert_eq!(
        effective(&deploy_dir().join("premain.toml")),
        defaults,
        "deploy/premain.toml differs from the defaults"
    );
    for printed in [defaults.clone(), effective(&generated_config().2)] {
        let again = effective(&dir.file("printed.toml", &printed));
        assert_eq!(again, printed, "check-config --print does not read back the same");
    }
    // The comparison can fail: one value off the default shows.
    let changed = dir.file("changed.toml", "[limits]\nqueue_capacity = 4095\n");
    assert_ne!(effective(&changed), defaults);
}

/// `GET path` on loopback, `None` while nothing answers (the caller polls).
fn try_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // HTTP/1.0: the server closes the connection after a body that is never chunked.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// How long the kubelet lets a probe fail before it acts.
fn probe_budget(probe: &Value) -> Duration {
    let field = |name: &str, default: u64| probe[name].as_u64().unwrap_or(default);
    let period = field("periodSeconds", 10);
    Duration::from_secs(field("initialDelaySeconds", 0) + period * field("failureThreshold", 3))
}

#[test]
fn daemonset_container_runs_with_configmap_config() {
    integration_tests::require_root();
    let daemonset = daemonset();
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = premain_container(pod);
    let (generator, key, config) = generated_config();

    // The image runs `command` if the container sets one, else the Containerfile's ENTRYPOINT;
    // either must be the premain binary, which here is the one under test.
    let entrypoint = read(&deploy_dir().join("Containerfile"))
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .map(|e| strings(&serde_json::from_str(e).expect("ENTRYPOINT in exec form")))
        .expect("the Containerfile has an ENTRYPOINT");
    let command = if container["command"].is_array() { strings(&container["command"]) } else { entrypoint };
    assert_eq!(command, ["/usr/bin/premain"], "the container must run the premain binary");

    // What the kubelet's ConfigMap volume does: every key of the generated ConfigMap becomes a
    // file under the mount path. Here a temporary directory stands in for the mount path,
    // holding the same bytes; that path is the only change made to the arguments.
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"]["name"] == generator.as_str())
        .expect("the config volume");
    let mount_path = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .and_then(|m| m["mountPath"].as_str())
        .expect("the config volume's mount path")
        .trim_end_matches('/')
        .to_owned();
    let dir = TempDir::new("deploy-configmap");
    fs::copy(&config, dir.path().join(&key)).expect("copy the config");
    let mounted = dir.path().to_str().expect("UTF-8").to_owned();
    let args: Vec<String> = strings(&container["args"])
        .into_iter()
        .map(|arg| match arg.strip_prefix(&mount_path) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{mounted}{rest}"),
            _ => arg,
        })
        .collect();
    assert!(
        args.iter().any(|a| a.starts_with(&mounted)),
        "the args name no file of the config mount: {args:?}"
    );
    let container_env = container["env"].as_array().into_iter().flatten().map(|e| {
        let name = e["name"].as_str().expect("env name").to_owned();
        let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::String(field)) if field == "spec.nodeName" => TEST_NODE_NAME.to_owned(),
            _ => panic!("env {name}: only literal values and spec.nodeName are reproduced here"),
        };
        (name, value)
    });
    let env: Vec<(String, String)> =
        RUNTIME_ENV.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).chain(container_env).collect();

    let port = metrics_port(container);
    // premain listens where the ConfigMap says (all interfaces); another process on that port
    // would answer in its place.
    drop(TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        panic!("port {port} is taken ({e}): stop whatever listens there (another premain?) and rerun")
    }));
    println!("running {} {}", premain_binary().display(), args.join(" "));
    let mut premain = Premain::spawn_exact(&args, &env);
    let started = Instant::now();
    let budget = probe_budget(&container["startupProbe"]);
    let mut wait_for = |path: &str| {
        loop {
            if let Some(status) = premain.exit_status() {
                thread::sleep(Duration::from_millis(100));
                panic!("premain exited ({status}) before {path} answered; stderr:\n{}", premain.stderr());
            }
            if let Some((200, _)) = try_get(port, path) {
                return;
            }
            assert!(
                started.elapsed() < budget,
                "{path} did not answer 200 within the startup probe's {budget:?}; stderr:\n{}",
                premain.stderr()
            );
            thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("/healthz");
    wait_for("/readyz");
    println!("healthy and ready after {:?}", started.elapsed());

    let (status, metrics) = try_get(port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    for line in [
        "premain_ready 1",
        "premain_build_info{",
        "premain_tracked_processes ",
        "premain_ring_buffer_fill_ratio ",
    ] {
        assert!(metrics.contains(line), "/metrics has no {line:?}:\n{metrics}");
    }
    let defined = defined_metrics();
    for line in metrics.lines().filter(|l| l.starts_with("premain_")) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(defined.contains(name), "/metrics serves {name}, which the metrics.rs scan does not find");
    }

    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30));
    let stopping = Instant::now();
    let (status, stderr) = premain.stop_within(libc::SIGTERM, grace);
    println!("stopped {:?} after SIGTERM with {status}", stopping.elapsed());
    assert_eq!(status.code(), Some(0), "premain must exit 0 on SIGTERM; stderr:\n{stderr}");
}
