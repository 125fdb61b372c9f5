//! TapConfig → the objects that make up its agents. Pure: no client, no clock, so it is unit-tested from
//! YAML. Everything the agents need is on their command line (each timeout, the backend, interfaces,
//! filter, dissectors), and the whole configuration also sits in a ConfigMap whose hash is a pod-template
//! annotation: any change to the spec changes the template and so rolls the DaemonSet.

use faultline_crds::{RecorderMode, TapConfig, TapConfigSpec};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::Resource;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Label every child carries; the controller maps children back to their TapConfig by it.
pub const TAPCONFIG_LABEL: &str = "faultline.dev/tapconfig";
pub const CONFIG_HASH_ANNOTATION: &str = "faultline.dev/config-hash";

/// What `build` needs besides the TapConfig: where children go and the defaults the operator was given.
#[derive(Clone, Debug)]
pub struct BuildParams {
    pub namespace: String,
    pub agent_image: String,
    /// Where agents send their entries.
    pub operator_url: String,
    /// A Secret (in `namespace`) whose `ca.crt` signs the operator's serving certificate; mounted into the
    /// agents so that they verify the operator. None: the operator serves plain HTTP.
    pub operator_ca_secret: Option<String>,
    /// Pull secrets for TapConfigs that do not name their own.
    pub agent_image_pull_secrets: Vec<String>,
    /// The PriorityClass for TapConfigs that do not name one (the chart installs `faultline-agent`).
    pub agent_priority_class: Option<String>,
}

/// Where agents find the operator's CA certificate.
pub const OPERATOR_CA_DIR: &str = "/etc/faultline-operator-ca";
/// Where agents find the token they show the operator: audience `faultline.dev/ingest`, so it is worth
/// nothing to the API server or anyone else, and the API-audience token never leaves the agent.
pub const INGEST_TOKEN_DIR: &str = "/var/run/secrets/faultline.dev/ingest";

/// The objects one TapConfig owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub daemon_set: DaemonSet,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("the TapConfig has no name or uid yet")]
    Unnamed,
    #[error("invalid spec: {0}")]
    Invalid(String),
    #[error("internal: {0}")]
    Serde(String),
}

/// The name of every child of TapConfig `tap`.
pub fn child_name(tap: &str) -> String {
    format!("{CHILD_PREFIX}{tap}")
}

const CHILD_PREFIX: &str = "faultline-agent-";
/// The longest TapConfig name whose children's names are valid (object names are at most 253).
pub const MAX_TAPCONFIG_NAME: usize = 253 - CHILD_PREFIX.len();

/// A name as a label value (at most 63 characters): itself when it fits, else its first 50 characters
/// and a digest of the whole, so that two long names never share a value.
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let digest = format!("{:x}", Sha256::digest(name.as_bytes()));
    let head: String = name.chars().take(50).collect();
    format!("{}-{}", head.trim_end_matches(['-', '.']), &digest[..12])
}

pub fn build(tap: &TapConfig, p: &BuildParams) -> Result<Children, BuildError> {
    let name = tap.meta().name.clone().ok_or(BuildError::Unnamed)?;
    let uid = tap.meta().uid.clone().ok_or(BuildError::Unnamed)?;
    faultline_crds::validate(&tap.spec).map_err(BuildError::Invalid)?;
    if name.len() > MAX_TAPCONFIG_NAME {
        return Err(BuildError::Invalid(format!(
            "the name is {} characters; its agents' objects need it to be at most {MAX_TAPCONFIG_NAME}",
            name.len()
        )));
    }
    let spec = &tap.spec;
    let child = child_name(&name);
    let label = label_value(&name);
    let labels = json!({
        "app.kubernetes.io/name": "faultline-agent",
        "app.kubernetes.io/instance": label,
        "app.kubernetes.io/managed-by": "faultline-operator",
        TAPCONFIG_LABEL: label,
    });
    let owner = json!([{
        "apiVersion": TapConfig::api_version(&()),
        "kind": TapConfig::kind(&()),
        "name": name,
        "uid": uid,
        "controller": true,
    }]);
    let meta = |namespaced: bool| {
        let mut m = json!({"name": child, "labels": labels, "ownerReferences": owner});
        if namespaced {
            m["namespace"] = json!(p.namespace);
        }
        m
    };
    let config = agent_config(spec);
    let config_text = serde_json::to_string_pretty(&config).map_err(|e| BuildError::Serde(e.to_string()))?;
    let hash = format!("{:x}", Sha256::digest(config_text.as_bytes()));

    let service_account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(true)});
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(true),
        "data": {"config.json": config_text},
    });
    let selector = json!({"app.kubernetes.io/name": "faultline-agent", TAPCONFIG_LABEL: label});
    let image = spec.agent.image.clone().unwrap_or_else(|| p.agent_image.clone());
    let port = spec.agent.port;
    let mut container = json!({
        "name": "agent",
        "image": image,
        "args": faultline_crds::agent_args(spec),
        // The host's network: this port is taken on every node the TapConfig selects.
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        // Alive while the engine and capture threads work (a dead thread fails /healthz); ready once
        // capturing.
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 5},
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "FAULTLINE_OPERATOR_URL", "value": p.operator_url},
            {"name": "FAULTLINE_TOKEN_FILE", "value": format!("{INGEST_TOKEN_DIR}/token")},
        ],
        "resources": spec.agent.resources.clone().map_or_else(default_resources, |r| json!(r)),
        // Raw sockets need NET_RAW, promiscuous mode and PACKET_STATISTICS need NET_ADMIN; nothing else.
        "securityContext": {
            "privileged": false,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]},
        },
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/var/lib/faultline"},
            {"name": "ingest-token", "mountPath": INGEST_TOKEN_DIR, "readOnly": true},
        ],
    });
    if let Some(policy) = spec.agent.image_pull_policy {
        container["imagePullPolicy"] = json!(policy.as_str());
    }
    // Scratch holds continuous recordings (at most maxTotalBytes) and nothing else: bounded, so a full
    // disk evicts the agent rather than its neighbours.
    let scratch_limit = match spec.recorder.mode {
        RecorderMode::Continuous => spec.recorder.max_total_bytes.unwrap_or(256 << 20) + (64 << 20),
        _ => 64 << 20,
    };
    let mut volumes = vec![
        json!({"name": "scratch", "emptyDir": {"sizeLimit": scratch_limit.to_string()}}),
        // The kubelet rotates it; the agent reads the file for every batch.
        json!({"name": "ingest-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": faultline_model::ingest::INGEST_AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}}),
    ];
    if let Some(secret) = &p.operator_ca_secret {
        // Only the CA certificate: the operator's key stays out of the agents' pods.
        volumes.push(json!({"name": "operator-ca", "secret": {"secretName": secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}));
        if let Some(mounts) = container["volumeMounts"].as_array_mut() {
            mounts.push(json!({"name": "operator-ca", "mountPath": OPERATOR_CA_DIR, "readOnly": true}));
        }
        if let Some(env) = container["env"].as_array_mut() {
            env.push(json!({"name": "FAULTLINE_OPERATOR_CA_FILE", "value": format!("{OPERATOR_CA_DIR}/ca.crt")}));
        }
    }
    let mut pod_spec = json!({
        "serviceAccountName": child,
        // Agents never call the API server (the operator names pods): no API token in the pod, only the
        // projected ingest token.
        "automountServiceAccountToken": false,
        "hostNetwork": true,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": 30,
    });
    let pull_secrets: Vec<String> = match &spec.agent.image_pull_secrets {
        Some(list) => list.iter().map(|r| r.name.clone()).collect(),
        None => p.agent_image_pull_secrets.clone(),
    };
    if !pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = json!(pull_secrets.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
    }
    if let Some(class) = spec.agent.priority_class_name.as_ref().or(p.agent_priority_class.as_ref()) {
        pod_spec["priorityClassName"] = json!(class);
    }
    if let Some(sel) = &spec.node_selector {
        pod_spec["nodeSelector"] = json!(sel);
    }
    if let Some(t) = &spec.tolerations {
        pod_spec["tolerations"] = json!(t);
    }
    let daemon_set = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(true),
        "spec": {
            "selector": {"matchLabels": selector},
            // A tenth of the fleet at a time (at least one): a large fleet rolls in reasonable time, a small
            // one keeps most of its agents.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": labels, "annotations": {CONFIG_HASH_ANNOTATION: hash}},
                "spec": pod_spec,
            },
        },
    });
    Ok(Children {
        service_account: typed(service_account)?,
        config_map: typed(config_map)?,
        daemon_set: typed(daemon_set)?,
    })
}

/// Everything the agent is configured with, for people to read (`kubectl get cm`) and for the pod-template
/// hash; the agent itself takes it all as flags. (Which namespaces to watch is the operator's business:
/// it names the entries.)
fn agent_config(spec: &TapConfigSpec) -> Value {
    json!({
        "captureBackend": spec.capture_backend,
        "timeouts": spec.timeouts,
        "packetLossThreshold": spec.packet_loss_threshold,
        "interfaces": spec.interfaces,
        "bpfFilter": spec.bpf_filter,
        "dissectors": spec.dissectors,
        "recorder": spec.recorder,
        "showStreamTimeouts": spec.show_stream_timeouts,
        "engineThreads": spec.agent.engine_threads,
    })
}

fn default_resources() -> Value {
    json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})
}

/// Converts to the typed object, and checks that nothing was lost on the way: a misspelled field would
/// be silently dropped by serde, so the round trip must give back exactly what was built.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> Result<T, BuildError> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| BuildError::Serde(e.to_string()))?;
    let back = serde_json::to_value(&t).map_err(|e| BuildError::Serde(e.to_string()))?;
    if strip_nulls(back) != strip_nulls(v) {
        return Err(BuildError::Serde("built object does not round-trip through its type".into()));
    }
    Ok(t)
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// The name of the TapConfig a child belongs to, from its label.
/// The TapConfig that owns a child, by its owner reference (labels may hold a shortened name).
pub fn owner_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&str> {
    let owners = meta.owner_references.as_deref()?;
    owners
        .iter()
        .find(|o| o.kind == "TapConfig" && o.api_version.starts_with("faultline.dev/"))
        .map(|o| o.name.as_str())
}

#[cfg(test)]
mod tests;
