//! Which container, and which Kubernetes pod, a process runs in, read from its cgroup path.
//!
//! Runtimes and the kubelet name cgroups after the container id and the pod UID, so the path is
//! enough; no runtime socket is asked. The layouts recognised, by cgroup driver:
//!
//! - systemd: `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid, `-` as `_`>.slice/`
//!   then `cri-containerd-<id>.scope`, `crio-<id>.scope` or `docker-<id>.scope` (cri-dockerd).
//!   Guaranteed pods have no QoS level (`kubepods-pod<uid>.slice`); kind's kubelet adds a
//!   `kubelet.slice/kubelet-` prefix. Outside Kubernetes: `/system.slice/docker-<id>.scope`,
//!   podman's `libpod-<id>.scope`, nerdctl's `nerdctl-<id>.scope`.
//! - cgroupfs: `/kubepods/<qos>/pod<uid>/<id>` (`/kubepods/pod<uid>/<id>` when guaranteed), CRI-O's
//!   `crio-<id>`, Docker's `/docker/<id>`, podman's `libpod-<id>`.
//! - containerd configured for systemd cgroups but running runc without `--systemd-cgroup` leaves
//!   the unparsed `<pod slice>:cri-containerd:<id>` as one path component.
//!
//! Paths can be nested (kind or Docker-in-Docker nodes: `/docker/<node>/kubepods/...`, or
//! `/system.slice/docker-<node>.scope/kubelet.slice/...`); the innermost container is the one the
//! process runs in. They can also continue below the container (crun's `.../crio-<id>.scope/container`
//! sub-cgroup, systemd inside a container), and start with `..` when read from another cgroup
//! namespace; neither changes the answer.
//!
//! `crio-conmon-<id>.scope` and `libpod-conmon-<id>.scope` hold conmon, the runtime's monitor
//! for the container, which runs host code outside the container: such a process is reported as
//! in no container, so its alerts are not attributed to the workload.

/// A container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// `containerd`, `cri-o`, `docker` or `podman`. A bare id under a cgroupfs pod cgroup is
    /// `containerd`: CRI-O prefixes its ids even there, and Docker's shim left the kubelet in 1.24.
    pub runtime: &'static str,
    /// The full container id: 64 lowercase hex digits.
    pub id: String,
    /// The UID of the pod the container belongs to: a dashed UUID, or for a static pod the
    /// kubelet's 32-hex-digit config hash (its mirror pod carries it in the
    /// `kubernetes.io/config.mirror` annotation).
    pub pod_uid: Option<String>,
}

/// The container one cgroup path names, if any.
pub(crate) fn parse(path: &str) -> Option<Container> {
    let mut pod_uid = None;
    let mut found = None;
    let mut previous = "";
    for component in path.split('/') {
        match classify(component, previous) {
            Component::Pod(uid) => pod_uid = Some(uid),
            Component::Container { runtime, id, pod } => {
                // A pod named in the same component (the unparsed systemd form) is the tightest.
                let pod = pod.or_else(|| pod_uid.clone());
                found = Some(Container { runtime, id: id.to_owned(), pod_uid: pod });
            }
            Component::Conmon => found = None,
            Component::Other => {}
        }
        previous = component;
    }
    found
}

/// The container a process runs in, from the whole of `/proc/<pid>/cgroup`.
///
/// Each line is `hierarchy:controllers:path`; a cgroup v2 host has one `0::` line, a v1 or hybrid
/// host one line per hierarchy. Controllers can disagree (containerd's unparsed systemd form shows
/// up in some v1 hierarchies only), so a line that also names the pod wins over one that does not.
pub(crate) fn from_proc_cgroup(text: &str) -> Option<Container> {
    let mut fallback = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(_), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        match parse(path) {
            Some(container) if container.pod_uid.is_some() => return Some(container),
            Some(container) => {
                fallback.get_or_insert(container);
            }
            None => {}
        }
    }
    fallback
}

/// The container process `pid` runs in; `None` for host processes and for processes already gone.
pub(crate) fn of_pid(pid: u32) -> Option<Container> {
    from_proc_cgroup(&crate::process::procfs::cgroup(pid)?)
}

enum Component<'a> {
    Pod(String),
    Container { runtime: &'static str, id: &'a str, pod: Option<String> },
    Conmon,
    Other,
}

/// Scope prefixes of the systemd driver (and CRI-O's and podman's cgroupfs names), by runtime.
const PREFIXES: [(&str, &str); 5] = [
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("docker-", "docker"),
    ("libpod-", "podman"),
    ("nerdctl-", "containerd"),
];

/// The `<prefix>` of containerd's unparsed `<slice>:<prefix>:<id>` form, by runtime.
const UNPARSED: [(&str, &str); 3] =
    [("cri-containerd", "containerd"), ("crio", "cri-o"), ("docker", "docker")];

fn classify<'a>(component: &'a str, previous: &str) -> Component<'a> {
    if let Some((slice, rest)) = component.split_once(':') {
        let Some((prefix, id)) = rest.split_once(':') else { return Component::Other };
        let Some(&(_, runtime)) = UNPARSED.iter().find(|(p, _)| *p == prefix) else {
            return Component::Other;
        };
        if !is_container_id(id) {
            return Component::Other;
        }
        return Component::Container { runtime, id, pod: slice_pod_uid(slice) };
    }
    let name = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in PREFIXES {
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        if rest.starts_with("conmon-") {
            return Component::Conmon;
        }
        if is_container_id(rest) {
            return Component::Container { runtime, id: rest, pod: None };
        }
    }
    if let Some(uid) = slice_pod_uid(component).or_else(|| cgroupfs_pod_uid(component)) {
        return Component::Pod(uid);
    }
    // Bare ids are only trusted where a runtime puts them, so that an unrelated 64-hex-digit
    // cgroup name elsewhere is not taken for a container.
    if is_container_id(component) {
        if previous == "docker" {
            return Component::Container { runtime: "docker", id: component, pod: None };
        }
        if cgroupfs_pod_uid(previous).is_some() {
            return Component::Container { runtime: "containerd", id: component, pod: None };
        }
    }
    Component::Other
}

/// `kubepods-burstable-pod<uid>.slice` (any prefix ending in `-pod`) with `_` for `-` in the uid.
fn slice_pod_uid(component: &str) -> Option<String> {
    let name = component.strip_suffix(".slice")?;
    let (_, uid) = name.rsplit_once("-pod")?;
    let uid = uid.replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// `pod<uid>`.
fn cgroupfs_pod_uid(component: &str) -> Option<String> {
    let uid = component.strip_prefix("pod")?;
    is_pod_uid(uid).then(|| uid.to_owned())
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

/// A dashed UUID (API server pods) or 32 hex digits (static pods).
fn is_pod_uid(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.len() {
        32 => bytes.iter().copied().all(is_lower_hex),
        36 => bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { is_lower_hex(b) }),
        _ => false,
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "9e073649debeec6d511391c9ec7627ee67ce3a3fb508b0fa0437a97f8e58ba98";
    const OUTER: &str = "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970";
    const UID: &str = "019c1fe8-0d92-4aa0-b61c-4df58bdde71c";
    const UID_: &str = "019c1fe8_0d92_4aa0_b61c_4df58bdde71c";

    fn container(runtime: &'static str, id: &str, pod_uid: Option<&str>) -> Option<Container> {
        Some(Container { runtime, id: id.into(), pod_uid: pod_uid.map(Into::into) })
    }

    #[test]
    fn systemd_driver() {
        for (qos_slice, pod_slice) in [
            ("kubepods-burstable.slice/", format!("kubepods-burstable-pod{UID_}.slice")),
            ("kubepods-besteffort.slice/", format!("kubepods-besteffort-pod{UID_}.slice")),
            ("", format!("kubepods-pod{UID_}.slice")),
        ] {
            let base = format!("/kubepods.slice/{qos_slice}{pod_slice}");
            assert_eq!(
                parse(&format!("{base}/cri-containerd-{ID}.scope")),
                container("containerd", ID, Some(UID))
            );
            assert_eq!(parse(&format!("{base}/crio-{ID}.scope")), container("cri-o", ID, Some(UID)));
            assert_eq!(parse(&format!("{base}/docker-{ID}.scope")), container("docker", ID, Some(UID)));
        }
    }

    #[test]
    fn crun_subgroup_below_the_scope() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope/container"
        );
        assert_eq!(parse(&path), container("cri-o", ID, Some(UID)));
    }

    #[test]
    fn conmon_is_not_the_container() {
        let pod = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        assert_eq!(parse(&format!("{pod}/crio-conmon-{ID}.scope")), None);
        assert_eq!(parse(&format!("/system.slice/crio-conmon-{ID}.scope")), None);
        assert_eq!(parse(&format!("/kubepods/burstable/pod{UID}/crio-conmon-{ID}")), None);
        assert_eq!(parse(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
    }

    #[test]
    fn cgroupfs_driver() {
        for qos in ["burstable/", "besteffort/", ""] {
            assert_eq!(
                parse(&format!("/kubepods/{qos}pod{UID}/{ID}")),
                container("containerd", ID, Some(UID))
            );
            assert_eq!(
                parse(&format!("/kubepods/{qos}pod{UID}/crio-{ID}")),
                container("cri-o", ID, Some(UID))
            );
        }
    }

    #[test]
    fn static_pod_uid_is_a_config_hash() {
        let hash = "6c5d5e8b1e4b6b2a8e4b8a1f5c2d3e4f";
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse(&path), container("containerd", ID, Some(hash)));
        assert_eq!(
            parse(&format!("/kubepods/burstable/pod{hash}/{ID}")),
            container("containerd", ID, Some(hash))
        );
    }

    #[test]
    fn unparsed_systemd_form() {
        let path = format!(
            "/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}"
        );
        assert_eq!(parse(&path), container("containerd", ID, Some(UID)));
        assert_eq!(
            parse(&format!("/x/kubepods-pod{UID_}.slice:crio:{ID}")),
            container("cri-o", ID, Some(UID))
        );
        assert_eq!(parse(&format!("/x/kubepods-pod{UID_}.slice:other:{ID}")), None);
    }

    #[test]
    fn docker_outside_kubernetes() {
        assert_eq!(parse(&format!("/docker/{ID}")), container("docker", ID, None));
        assert_eq!(parse(&format!("/system.slice/docker-{ID}.scope")), container("docker", ID, None));
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.scope/init.scope")),
            container("docker", ID, None)
        );
    }

    #[test]
    fn podman_and_nerdctl() {
        assert_eq!(parse(&format!("/machine.slice/libpod-{ID}.scope")), container("podman", ID, None));
        assert_eq!(
            parse(&format!("/machine.slice/libpod-{ID}.scope/container")),
            container("podman", ID, None)
        );
        let rootless = format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        assert_eq!(parse(&rootless), container("podman", ID, None));
        assert_eq!(parse(&format!("/libpod_parent/libpod-{ID}")), container("podman", ID, None));
        assert_eq!(parse(&format!("/system.slice/nerdctl-{ID}.scope")), container("containerd", ID, None));
    }

    #[test]
    fn nested_takes_the_innermost_container() {
        // kind, cgroup v1.
        let path = format!("/docker/{OUTER}/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse(&path), container("containerd", ID, Some(UID)));
        // kind, cgroup v2 with the node's systemd driver, seen from the host.
        let path = format!(
            "/system.slice/docker-{OUTER}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse(&path), container("containerd", ID, Some(UID)));
        // Docker-in-Docker: the inner container's own cgroup, outside any pod.
        assert_eq!(parse(&format!("/docker/{OUTER}/docker/{ID}")), container("docker", ID, None));
        // Docker inside a pod's container: the pod it runs in still applies.
        let path = format!("/kubepods/pod{UID}/{OUTER}/docker/{ID}");
        assert_eq!(parse(&path), container("docker", ID, Some(UID)));
    }

    #[test]
    fn relative_to_another_cgroup_namespace() {
        let path = format!("/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope");
        assert_eq!(parse(&path), container("containerd", ID, Some(UID)));
        assert_eq!(parse(&format!("/../cri-containerd-{ID}.scope")), container("containerd", ID, None));
    }

    #[test]
    fn not_containers() {
        for path in [
            "/",
            "",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service",
            "/system.slice/ssh.service",
            "/system.slice/containerd.service",
            "/init.scope",
            // A pod's own cgroup holds no process of a container.
            &format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
            &format!("/kubepods/burstable/pod{UID}"),
            // Ids that are too short, upper case, or bare where no runtime puts them.
            &format!("/docker/{}", &ID[..12]),
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            &format!("/system.slice/{ID}"),
            &format!("/kubepods.slice/cri-containerd-{ID}x.scope"),
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }

    #[test]
    fn proc_cgroup_v2() {
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(from_proc_cgroup(&text), container("containerd", ID, Some(UID)));
        assert_eq!(from_proc_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n"), None);
        assert_eq!(from_proc_cgroup(""), None);
    }

    #[test]
    fn proc_cgroup_v1_and_hybrid() {
        let v1 = format!(
            "12:hugetlb:/kubepods/besteffort/pod{UID}/{ID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n"
        );
        assert_eq!(from_proc_cgroup(&v1), container("containerd", ID, Some(UID)));
        let docker =
            format!("12:net_cls,net_prio:/docker/{ID}\n10:rdma:/\n0::/system.slice/containerd.service\n");
        assert_eq!(from_proc_cgroup(&docker), container("docker", ID, None));
    }

    #[test]
    fn proc_cgroup_prefers_a_line_naming_the_pod() {
        let text = format!(
            "11:pids:/system.slice/docker-{ID}.scope\n10:memory:/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}\n"
        );
        assert_eq!(from_proc_cgroup(&text), container("containerd", ID, Some(UID)));
    }

    #[test]
    fn this_process() {
        // Whatever this test runs in, reading it must not fail or panic; a gone pid is None.
        let _ = of_pid(std::process::id());
        assert_eq!(of_pid(u32::MAX), None);
    }
}
