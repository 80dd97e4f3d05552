//! Kubernetes identity end to end: a Python run inside real cgroups laid out the way each
//! container runtime lays them out is reported with its container id and pod UID, and with the
//! pod's name, namespace and labels from a local stand-in of the API server.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command},
};

use integration_tests::{Bait, Premain, eventually, pyenv_python, workspace_root};
use serde_json::{Value, json};

const NODE: &str = "node-a";
const TOKEN: &str = "fake-token-for-tests";

/// The cgroup v2 mount, if this machine has one we may create cgroups in.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root = mounts.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })?;
    let probe = root.join("premain-probe");
    fs::create_dir(&probe).ok()?;
    fs::remove_dir(&probe).ok()?;
    Some(root)
}

/// A cgroup path made for the test, removed (leaf first) on drop.
struct Cgroup {
    created: Vec<PathBuf>,
    leaf: PathBuf,
}

impl Cgroup {
    fn create(root: &Path, relative: &str) -> Self {
        let mut created = Vec::new();
        let mut path = root.to_path_buf();
        for part in relative.trim_start_matches('/').split('/') {
            path.push(part);
            if !path.exists() {
                fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
                created.push(path.clone());
            }
        }
        Self { created, leaf: path }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

struct ApiServer {
    child: Child,
    _stdin: ChildStdin,
    url: String,
}

impl ApiServer {
    fn start() -> Self {
        let mut command = Command::new(integration_tests::tool("python3"));
        command
            .arg(workspace_root().join("tests/k8s/apiserver_standin.py"))
            .args(["--node", NODE, "--token", TOKEN]);
        let (child, stdin, port) = integration_tests::spawn_listener(command, "the API server stand-in");
        Self { child, _stdin: stdin, url: format!("http://127.0.0.1:{port}") }
    }

    fn add_pod(&self, uid: &str, name: &str, namespace: &str, node: &str) {
        let body = json!({"uid": uid, "name": name, "namespace": namespace, "node": node,
                          "labels": {"app": name}})
        .to_string();
        let out = Command::new(integration_tests::tool("curl"))
            .args(["-sf", "-X", "POST", "--data", &body, &format!("{}/_pods", self.url)])
            .output()
            .expect("curl");
        assert!(out.status.success(), "adding pod {name}");
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(runtime, container cgroup under the root, pod uid)` for each layout.
fn layouts() -> Vec<(&'static str, String, String)> {
    let id = |n: u8| format!("{:02x}", n).repeat(32);
    let uid = |n: u8| format!("{n:08x}-1111-2222-3333-444455556666");
    let systemd = |n: u8, scope: &str| {
        let u = uid(n).replace('-', "_");
        format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/{scope}-{}.scope",
            id(n)
        )
    };
    vec![
        ("containerd", systemd(1, "cri-containerd"), uid(1)),
        ("cri-o", systemd(2, "crio"), uid(2)),
        ("docker", systemd(3, "docker"), uid(3)),
        ("containerd", format!("kubepods/burstable/pod{}/{}", uid(4), id(4)), uid(4)),
    ]
}

#[test]
fn alerts_name_container_and_pod_for_each_runtime_layout() {
    let Some(root) = cgroup2_root() else {
        return integration_tests::cannot_run("no writable cgroup v2 hierarchy on this machine");
    };
    let python = pyenv_python();
    let bait = Bait::create();
    let api = ApiServer::start();
    let token = bait.dir.file("token", TOKEN);
    let config = bait.dir.file(
        "premain.toml",
        &format!(
            "[kubernetes]\nenabled = \"on\"\nnode_name = \"{NODE}\"\napi_server = \"{}\"\ntoken_file = {:?}\n\
             ca_file = \"\"\n[metrics]\nalert_labels = [\"namespace\"]\n",
            api.url,
            token.to_str().unwrap()
        ),
    );
    let layouts = layouts();
    // The last pod is unknown to the API server: its alert still carries the pod UID.
    for (i, (_, _, uid)) in layouts.iter().enumerate().take(layouts.len() - 1) {
        api.add_pod(uid, &format!("app-{i}"), "shop", NODE);
    }
    api.add_pod("99999999-1111-2222-3333-444455556666", "elsewhere", "shop", "node-b");
    let premain =
        Premain::start_alerts(&["--config", config.to_str().unwrap(), "--metrics-address", "127.0.0.1:0"]);
    eventually("the pod cache filled", || premain.metric("premain_kubernetes_pods") == 3.0);

    for (i, (runtime, relative, uid)) in layouts.iter().enumerate() {
        let cgroup = Cgroup::create(&root, relative);
        // Join the cgroup, then exec the interpreter: what a container runtime does.
        let script = format!("echo $$ > {}/cgroup.procs && exec \"$0\" -c pass", cgroup.leaf.display());
        let status = Command::new(integration_tests::tool("sh"))
            .args(["-c", &script])
            .arg(&python.path)
            .env("HOME", bait.dir.path().join("home"))
            .env("PYTHONPATH", bait.dir.path().join("site"))
            .status()
            .expect("run python in the cgroup");
        assert!(status.success());
        let alert = premain.wait_for(&format!("alert from the {runtime} layout"), |v| {
            v["kind"] == "alert" && v["kubernetes"]["pod_uid"] == uid.as_str()
        });
        let id = relative.rsplit('/').next().unwrap();
        let id = id.trim_end_matches(".scope").rsplit('-').next().unwrap();
        assert_eq!(alert["container"], json!({"id": id, "runtime": runtime}), "{relative}");
        if i < layouts.len() - 1 {
            let k8s = &alert["kubernetes"];
            assert_eq!(
                (k8s["pod"].clone(), k8s["namespace"].clone()),
                (json!(format!("app-{i}")), json!("shop"))
            );
            assert_eq!(k8s["labels"]["app"], format!("app-{i}"));
        } else {
            assert_eq!(
                alert["kubernetes"],
                json!({"pod_uid": uid}),
                "unknown pod: UID only, never held back"
            );
        }
        drop(cgroup);
    }
    let series = r#"premain_alerts_total{namespace="shop",phase="startup",rule="credential-read",severity="critical"}"#;
    eventually("alerts by namespace", || premain.metric(series) >= 3.0);
    assert_eq!(premain.metric("premain_kubernetes_watch_errors_total"), 0.0);
    let alerts: Vec<Value> = premain.alerts();
    assert!(alerts.iter().all(|a| a["kubernetes"]["pod"] != "elsewhere"));
    let (status, _) = premain.stop();
    assert!(status.success());
}

#[test]
fn an_unreachable_api_server_is_retried_with_backoff_and_alerts_still_flow() {
    let python = pyenv_python();
    let bait = Bait::create();
    // A port nothing listens on (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = bait.dir.file(
        "premain.toml",
        &format!(
            "[kubernetes]\nenabled = \"on\"\nnode_name = \"{NODE}\"\napi_server = \"http://127.0.0.1:{port}\"\n\
             token_file = \"\"\nca_file = \"\"\n"
        ),
    );
    let premain = Premain::start_alerts(&["--config", config.to_str().unwrap()]);
    eventually("watch errors counted", || premain.metric("premain_kubernetes_watch_errors_total") >= 1.0);
    let pid = bait.run(&python);
    integration_tests::alert_of(&premain, pid, &bait.netrc());
    // Backoff: a handful of attempts in the first seconds, not a tight loop.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let errors = premain.metric("premain_kubernetes_watch_errors_total");
    assert!(errors <= 5.0, "{errors} attempts in ~3 s");
    let (status, _) = premain.stop();
    assert!(status.success());
}
