//! Why an error happened, where the cluster's state shows it (SPEC §3.7): the operator gives an error
//! entry a `cause` from the entry and the state at the entry's time. Only what the evidence supports is
//! claimed: no cause is better than a wrong one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An explanation of one error entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub reason: CauseReason,
    /// One line an SRE can act on ("NetworkPolicy shop/web-ingress selects web and admits nothing from
    /// orders/cart on 8080/TCP").
    pub message: String,
    /// The objects it names (policies, the Service, the pod).
    #[serde(default)]
    pub objects: Vec<ObjectRef>,
    /// What it rests on, in words (each fact of the state that was read).
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// The reasons of SPEC §3.7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CauseReason {
    NetworkPolicyDenied,
    NoReadyEndpoints,
    PortNotServed,
    PodTerminating,
    ContainerRestarted,
    ServiceNotFound,
}

impl CauseReason {
    pub const ALL: [CauseReason; 6] = [
        CauseReason::NetworkPolicyDenied,
        CauseReason::NoReadyEndpoints,
        CauseReason::PortNotServed,
        CauseReason::PodTerminating,
        CauseReason::ContainerRestarted,
        CauseReason::ServiceNotFound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CauseReason::NetworkPolicyDenied => "NetworkPolicyDenied",
            CauseReason::NoReadyEndpoints => "NoReadyEndpoints",
            CauseReason::PortNotServed => "PortNotServed",
            CauseReason::PodTerminating => "PodTerminating",
            CauseReason::ContainerRestarted => "ContainerRestarted",
            CauseReason::ServiceNotFound => "ServiceNotFound",
        }
    }
}

impl fmt::Display for CauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes object a cause names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// `Pod`, `Service`, `NetworkPolicy`, `Namespace`, `EndpointSlice`, a workload kind.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef { kind: kind.to_owned(), namespace: namespace.map(str::to_owned), name: name.to_owned() }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}
