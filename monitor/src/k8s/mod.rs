//! Kubernetes identity of a process: its container and pod from its cgroup, and the pod's name,
//! namespace and labels from a watch of this node's pods.

pub(crate) mod cgroup;
pub(crate) mod pods;

pub(crate) use cgroup::Container;
pub(crate) use pods::{K8sError, PodCache, PodMeta, WatchOptions, spawn_watch};
