//! TapConfig → the objects that make up its agents. Pure: no client, no clock, so it is unit-tested from
//! YAML. Everything the agents need is on their command line (each timeout, the backend, interfaces,
//! filter, dissectors), and the whole configuration also sits in a ConfigMap whose hash is a pod-template
//! annotation: any change to the spec changes the template and so rolls the DaemonSet.

use std::collections::BTreeMap;

use faultline_crds::{RecorderMode, TapConfig, TapConfigSpec};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, LocalObjectReference, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SecretVolumeSource, SecurityContext, ServiceAccount, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
    let mut owner = tap.controller_owner_ref(&()).ok_or(BuildError::Unnamed)?;
    // Only the garbage collector's link: blocking the owner's deletion would need the finalizers
    // subresource of TapConfigs in the operator's RBAC, for nothing the operator relies on.
    owner.block_owner_deletion = None;
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
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "faultline-agent".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), label.clone()),
        ("app.kubernetes.io/managed-by".to_owned(), "faultline-operator".to_owned()),
        (TAPCONFIG_LABEL.to_owned(), label.clone()),
    ]);
    let meta = ObjectMeta {
        name: Some(child.clone()),
        namespace: Some(p.namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    let config = agent_config(spec);
    let config_text = serde_json::to_string_pretty(&config).map_err(|e| BuildError::Serde(e.to_string()))?;
    let hash = format!("{:x}", Sha256::digest(config_text.as_bytes()));

    let service_account = ServiceAccount { metadata: meta.clone(), ..ServiceAccount::default() };
    let config_map = ConfigMap {
        metadata: meta.clone(),
        data: Some(BTreeMap::from([("config.json".to_owned(), config_text)])),
        ..ConfigMap::default()
    };
    let selector = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "faultline-agent".to_owned()),
        (TAPCONFIG_LABEL.to_owned(), label),
    ]);
    let port = spec.agent.port;
    let http_probe = |path: &str, period: i32, failures: Option<i32>| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: failures,
        ..Probe::default()
    };
    let env = |name: &str, value: String| EnvVar { name: name.to_owned(), value: Some(value), ..EnvVar::default() };
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.to_owned(), ..Default::default() }),
            ..Default::default()
        }),
        ..EnvVar::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    let mut env_vars = vec![
        field("NODE_NAME", "spec.nodeName"),
        field("POD_NAMESPACE", "metadata.namespace"),
        env("FAULTLINE_OPERATOR_URL", p.operator_url.clone()),
        env("FAULTLINE_TOKEN_FILE", format!("{INGEST_TOKEN_DIR}/token")),
    ];
    let mut mounts = vec![mount("scratch", "/var/lib/faultline", false), mount("ingest-token", INGEST_TOKEN_DIR, true)];
    // Scratch holds continuous recordings (at most maxTotalBytes) and nothing else: bounded, so a full
    // disk evicts the agent rather than its neighbours.
    let scratch_limit = match spec.recorder.mode {
        RecorderMode::Continuous => spec.recorder.max_total_bytes.unwrap_or(256 << 20) + (64 << 20),
        _ => 64 << 20,
    };
    let mut volumes = vec![
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(scratch_limit.to_string())),
                ..Default::default()
            }),
            ..Volume::default()
        },
        // The kubelet rotates it; the agent reads the file for every batch.
        Volume {
            name: "ingest-token".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(faultline_model::ingest::INGEST_AUDIENCE.to_owned()),
                        expiration_seconds: Some(3600),
                        path: "token".into(),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Volume::default()
        },
    ];
    if let Some(secret) = &p.operator_ca_secret {
        // Only the CA certificate: the operator's key stays out of the agents' pods.
        volumes.push(Volume {
            name: "operator-ca".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(vec![KeyToPath { key: "ca.crt".into(), path: "ca.crt".into(), mode: None }]),
                ..Default::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("operator-ca", OPERATOR_CA_DIR, true));
        env_vars.push(env("FAULTLINE_OPERATOR_CA_FILE", format!("{OPERATOR_CA_DIR}/ca.crt")));
    }
    // Agents that export themselves read the export's Secrets (in this namespace) as files.
    if let Some(otlp) = spec.agents_export() {
        env_vars.push(env("FAULTLINE_TAPCONFIG", name.clone()));
        let ca = otlp.tls.as_ref().and_then(|t| t.ca_secret.as_ref());
        let secrets = [
            ("otlp-headers", otlp.headers.as_ref(), faultline_crds::OTLP_HEADERS_DIR, None),
            ("otlp-ca", ca, faultline_crds::OTLP_CA_DIR, Some(faultline_crds::OTLP_CA_KEY)),
        ];
        for (volume, secret, dir, only) in secrets {
            let Some(secret) = secret else { continue };
            volumes.push(Volume {
                name: volume.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.secret_name.clone()),
                    items: only.map(|k| vec![KeyToPath { key: k.into(), path: k.into(), mode: None }]),
                    ..Default::default()
                }),
                ..Volume::default()
            });
            mounts.push(mount(volume, dir, true));
        }
    }
    let container = Container {
        name: "agent".into(),
        image: Some(spec.agent.image.clone().unwrap_or_else(|| p.agent_image.clone())),
        image_pull_policy: spec.agent.image_pull_policy.map(|policy| policy.as_str().to_owned()),
        args: Some(faultline_crds::agent_args(spec)),
        // The host's network: this port is taken on every node the TapConfig selects.
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // Alive while the engine and capture threads work (a dead thread fails /healthz); ready once
        // capturing.
        liveness_probe: Some(http_probe("/healthz", 10, Some(3))),
        readiness_probe: Some(http_probe("/readyz", 5, None)),
        env: Some(env_vars),
        resources: Some(spec.agent.resources.clone().unwrap_or_else(default_resources)),
        // Raw sockets need NET_RAW, promiscuous mode and PACKET_STATISTICS need NET_ADMIN; nothing else.
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec!["NET_RAW".into(), "NET_ADMIN".into()]),
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let pull_secrets: Vec<String> = match &spec.agent.image_pull_secrets {
        Some(list) => list.iter().map(|r| r.name.clone()).collect(),
        None => p.agent_image_pull_secrets.clone(),
    };
    let pod_spec = PodSpec {
        service_account_name: Some(child.clone()),
        // Agents never call the API server (the operator names pods): no API token in the pod, only the
        // projected ingest token.
        automount_service_account_token: Some(false),
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(30),
        image_pull_secrets: (!pull_secrets.is_empty())
            .then(|| pull_secrets.into_iter().map(|name| LocalObjectReference { name }).collect()),
        priority_class_name: spec.agent.priority_class_name.clone().or_else(|| p.agent_priority_class.clone()),
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
        ..PodSpec::default()
    };
    let daemon_set = DaemonSet {
        metadata: meta,
        spec: Some(DaemonSetSpec {
            selector: LabelSelector { match_labels: Some(selector), ..LabelSelector::default() },
            // A tenth of the fleet at a time (at least one): a large fleet rolls in reasonable time, a small
            // one keeps most of its agents.
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::String("10%".into())),
                    ..Default::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    };
    Ok(Children { service_account, config_map, daemon_set })
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

fn default_resources() -> ResourceRequirements {
    let q = |v: &str| Quantity(v.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_owned(), q("100m")), ("memory".to_owned(), q("128Mi"))])),
        limits: Some(BTreeMap::from([("memory".to_owned(), q("512Mi"))])),
        ..ResourceRequirements::default()
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
