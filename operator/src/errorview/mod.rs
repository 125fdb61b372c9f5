//! ErrorViews: entries are counted as they arrive (`live::Views`, fed by ingest); every couple of seconds
//! each view's status is computed for its window and written — at most once per round, and only when it
//! changed, so API writes stay bounded whatever the entry rate. Matching entries of views with
//! `publishEvents` go to the Event publisher as they are counted.

pub mod live;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use faultline_crds::ErrorView;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp as JiffTimestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::context::{Context, MANAGER};
use crate::store::Store;
use crate::tapconfig::status::condition;
use live::Views;

const ROUND: Duration = Duration::from_secs(2);

/// Runs for one lead term: resumes every view from its status, lets ingest count, and writes statuses
/// until `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    store: Arc<Store>,
    views: Arc<Views>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let api: Api<ErrorView> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store();
    let watch = reflector::reflector(writer, watcher::watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "ErrorView watch error (retrying)");
            }
        });
    let watch = tokio::spawn(watch);
    tokio::pin!(shutdown);
    // Every view known before counting starts: an entry must not find its view missing.
    tokio::select! {
        r = reader.wait_until_ready() => { if r.is_err() { watch.abort(); return; } }
        _ = &mut shutdown => { watch.abort(); return; }
    }
    views.activate(&reader.state(), &store);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = &mut shutdown => break,
        }
        views.sync(&reader.state(), &store);
        for (v, st) in views.statuses(crate::clock::now()) {
            if let Err(e) = write(&ctx, &v, st).await {
                tracing::warn!(view = %format!("{}/{}", v.namespace().unwrap_or_default(), v.name_any()), error = %e, "status update failed");
            }
        }
    }
    // Counting stops with the term; a last write keeps what was counted since the last round.
    for (v, st) in views.statuses(crate::clock::now()) {
        let _ = write(&ctx, &v, st).await;
    }
    views.deactivate();
    watch.abort();
}

async fn write(ctx: &Context, v: &ErrorView, mut st: faultline_crds::ErrorViewStatus) -> Result<(), kube::Error> {
    let ns = v.namespace().unwrap_or_default();
    let old = v.status.clone().unwrap_or_default();
    let t = Time(JiffTimestamp::now());
    st.conditions = match faultline_kfl::Query::parse(&v.spec.query) {
        Ok(_) => vec![condition(
            &old.conditions,
            "Ready",
            "True",
            "Active",
            format!("{} entries matched in the last {} s", st.matched, v.spec.window_seconds),
            v.metadata.generation,
            &t,
        )],
        Err(e) => vec![
            condition(&old.conditions, "QueryInvalid", "True", "ParseError", e.to_string(), v.metadata.generation, &t),
            condition(&old.conditions, "Ready", "False", "QueryInvalid", e.to_string(), v.metadata.generation, &t),
        ],
    };
    if old == st {
        return Ok(());
    }
    let patch = json!({"apiVersion": ErrorView::api_version(&()), "kind": ErrorView::kind(&()), "status": st});
    Api::<ErrorView>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&v.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    ctx.metrics.wrote("errorview_status");
    Ok(())
}
