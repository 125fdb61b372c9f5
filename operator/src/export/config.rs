//! A TapConfig's `spec.export` dereferenced: its Secrets read (headers, CA) and the target built. The
//! reconcile that applies the TapConfig calls this; the controller watches the Secrets of the operator's
//! namespace and reconciles the TapConfigs that name one when it changes, so a changed spec or a rotated
//! Secret takes effect at once.

use std::collections::BTreeMap;

use faultline_crds::{ExportSpec, OTLP_CA_KEY};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use faultline_otlp::{Protocol, Target};

use super::Wanted;

/// The Secrets (of the operator's namespace) that `spec` names, whichever sends.
pub fn secrets(spec: Option<&ExportSpec>) -> impl Iterator<Item = &str> {
    let otlp = spec.and_then(|s| s.otlp.as_ref());
    let headers = otlp.and_then(|o| o.headers.as_ref()).map(|h| h.secret_name.as_str());
    let ca = otlp.and_then(|o| o.tls.as_ref()?.ca_secret.as_ref()).map(|c| c.secret_name.as_str());
    headers.into_iter().chain(ca)
}

/// What `spec` asks for, with a fingerprint of everything it was built from (the spec and the Secrets'
/// contents); `None` when it asks for no export.
pub async fn wanted(client: &Client, namespace: &str, spec: Option<&ExportSpec>) -> Option<(String, Wanted)> {
    // Agents that send are configured by their DaemonSet (`agent_args`), not here.
    let otlp = spec?.otlp.as_ref().filter(|o| o.sender == faultline_crds::ExportSender::Operator)?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut fingerprint = Sha256::new();
    fingerprint.update(serde_json::to_vec(otlp).unwrap_or_default());
    let read = |name: &str| {
        let secrets = secrets.clone();
        let name = name.to_owned();
        async move {
            match secrets.get_opt(&name).await {
                Ok(Some(s)) => Ok(s.data.unwrap_or_default()),
                Ok(None) => Err(format!("Secret {namespace}/{name} does not exist")),
                Err(e) => Err(format!("Secret {namespace}/{name} cannot be read: {e}")),
            }
        }
    };
    let headers = match &otlp.headers {
        Some(h) => match read(&h.secret_name).await {
            Ok(data) => data,
            Err(why) => return Some((why.clone(), Wanted::Broken(why))),
        },
        None => BTreeMap::new(),
    };
    let ca = match otlp.tls.as_ref().and_then(|t| t.ca_secret.as_ref()) {
        Some(s) => match read(&s.secret_name).await {
            Ok(mut data) => match data.remove(OTLP_CA_KEY) {
                Some(pem) => Some(pem.0),
                None => {
                    let why = format!("Secret {namespace}/{} has no {OTLP_CA_KEY}", s.secret_name);
                    return Some((why.clone(), Wanted::Broken(why)));
                }
            },
            Err(why) => return Some((why.clone(), Wanted::Broken(why))),
        },
        None => None,
    };
    let headers: Vec<(String, String)> =
        headers.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect();
    for (k, v) in &headers {
        fingerprint.update(k.as_bytes());
        fingerprint.update([0]);
        fingerprint.update(v.as_bytes());
        fingerprint.update([0]);
    }
    if let Some(ca) = &ca {
        fingerprint.update(ca);
    }
    let fingerprint = format!("{:x}", fingerprint.finalize());
    let server_name = otlp.tls.as_ref().and_then(|t| t.server_name.as_deref());
    let queue_size = usize::try_from(otlp.queue_size).unwrap_or(1).max(1);
    Some(match Target::new(&otlp.endpoint, protocol(otlp.protocol), &headers, ca.as_deref(), server_name) {
        Ok(target) => (fingerprint, Wanted::Send { target, queue_size }),
        Err(e) => (fingerprint, Wanted::Broken(e.to_string())),
    })
}

fn protocol(p: faultline_crds::OtlpProtocol) -> Protocol {
    match p {
        faultline_crds::OtlpProtocol::Grpc => Protocol::Grpc,
        faultline_crds::OtlpProtocol::HttpProtobuf => Protocol::HttpProtobuf,
    }
}
