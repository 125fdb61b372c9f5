//! ErrorView (namespaced, short name `ev`): a live, filtered summary of entries. It sees entries whose
//! source or destination pod is in its own namespace, so RBAC on ErrorViews is access control to error data.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Several printer columns share a type, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "faultline.dev",
    version = "v1alpha1",
    kind = "ErrorView",
    namespaced,
    shortname = "ev",
    status = "ErrorViewStatus",
    derive = "PartialEq",
    doc = "A live summary of the entries that match a KFL query, in this namespace.",
    printcolumn(name = "Query", type_ = "string", json_path = ".spec.query"),
    printcolumn(name = "Matched", type_ = "integer", json_path = ".status.matched"),
    printcolumn(name = "Last Seen", type_ = "date", json_path = ".status.lastSeen"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ErrorViewSpec {
    /// The KFL query, e.g. `response.status > 400 or error or icmp or tcp`.
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("!self.matches('^\\\\s*$')").message("query must not be empty"))]
    pub query: String,
    /// Only entries from the last this many seconds are counted.
    #[serde(default = "default_window_seconds")]
    #[schemars(range(min = 10, max = 604_800))]
    pub window_seconds: i32,
    /// Publish matching entries as Events on the involved Pods.
    #[serde(default)]
    pub publish_events: bool,
    /// How many recent matching entries to keep in status.
    #[serde(default = "default_samples")]
    #[schemars(range(max = 50))]
    pub samples: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorViewStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, or `QueryInvalid` with the parser's message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Entries that matched within the window.
    #[serde(default)]
    pub matched: i64,
    /// Counts by kind: TCP state, ICMP type, dissection, half connection, HTTP status class.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts_by_kind: BTreeMap<String, i64>,
    /// Counts by cause (SPEC §3.7: `NetworkPolicyDenied`, `NoReadyEndpoints`, …); errors without one are
    /// not counted here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts_by_cause: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_pairs: Vec<PairCount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Counts within the window in buckets of `bucketSeconds` (a sixtieth of the window, at least a
    /// second): what the other fields are summed from, kept in status so that an operator restart resumes
    /// the counts instead of resetting them. At most about 60 buckets, each with at most 20 pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<Bucket>,
    /// The width of each bucket, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_seconds: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Unix time of the bucket's start, in seconds.
    pub start: i64,
    pub matched: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub causes: BTreeMap<String, i64>,
    /// `source -> destination` to count; endpoints that are not pods are counted by address, without
    /// their (ephemeral) port, and pairs beyond the most frequent 20 under `(other pairs)`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pairs: BTreeMap<String, i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairCount {
    pub source: String,
    pub destination: String,
    pub count: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub id: String,
    pub timestamp: String,
    pub summary: String,
    /// Why, where the cluster's state shows it: the cause's reason and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

fn default_window_seconds() -> i32 {
    900
}
fn default_samples() -> i32 {
    5
}
