//! `faultline-operator cleanup`: removes every TapConfig and ErrorView and waits for their agents to be
//! gone. The chart runs it as a pre-delete hook: `helm uninstall` must leave no Faultline object and no
//! privileged agent behind (CRDs stay, as Helm never deletes them; they hold nothing once this ran).

use std::time::{Duration, Instant};

use faultline_crds::{ErrorView, TapConfig};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};

use crate::tapconfig::build::TAPCONFIG_LABEL;

pub async fn run(client: Client, namespace: &str, timeout: Duration) -> Result<(), String> {
    let dp = DeleteParams::foreground();
    let taps: Api<TapConfig> = Api::all(client.clone());
    let all = taps.list(&ListParams::default()).await.map_err(|e| format!("listing TapConfigs: {e}"))?;
    for t in all {
        match taps.delete(&t.name_any(), &dp).await {
            Ok(_) => tracing::info!(tapconfig = %t.name_any(), "deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(format!("deleting TapConfig {}: {e}", t.name_any())),
        }
    }
    let views: Api<ErrorView> = Api::all(client.clone());
    for v in views.list(&ListParams::default()).await.map_err(|e| format!("listing ErrorViews: {e}"))? {
        let ns = v.namespace().unwrap_or_default();
        match Api::<ErrorView>::namespaced(client.clone(), &ns).delete(&v.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(format!("deleting ErrorView {ns}/{}: {e}", v.name_any())),
        }
    }
    // The agents go with their TapConfigs (owner references): wait until no agent DaemonSet is left.
    let ds: Api<DaemonSet> = Api::namespaced(client, namespace);
    let started = Instant::now();
    loop {
        let left = ds.list(&ListParams::default().labels(TAPCONFIG_LABEL)).await.map_err(|e| e.to_string())?;
        if left.items.is_empty() {
            tracing::info!("every TapConfig, ErrorView and agent is gone");
            return Ok(());
        }
        if started.elapsed() > timeout {
            let names: Vec<String> = left.items.iter().map(|d| d.name_any()).collect();
            return Err(format!("agents still present after {timeout:?}: {names:?}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
