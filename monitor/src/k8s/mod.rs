//! Kubernetes identity of a process: its container and pod from its cgroup, and the pod's name,
//! namespace and labels from a watch of this node's pods.

pub mod cgroup;
pub mod pods;

pub use cgroup::Container;
pub use pods::{K8sError, PodCache, PodMeta, WatchOptions, spawn_watch};
