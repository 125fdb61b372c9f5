//! ErrorViews: every couple of seconds each view reads the entries that arrived since it last looked,
//! counts those its query matches and its namespace may see, and writes its status — at most once per
//! round, and only when it changed, so API writes stay bounded whatever the entry rate. Matching entries
//! of views with `publishEvents` go to the Event publisher.

pub mod view;

use std::collections::HashMap;
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
use crate::events::Events;
use crate::store::Store;
use crate::tapconfig::status::condition;
use view::ViewState;

const ROUND: Duration = Duration::from_secs(2);

pub async fn run(
    ctx: Arc<Context>,
    store: Arc<Store>,
    events: Arc<Events>,
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
    let mut states: HashMap<String, ViewState> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = &mut shutdown => break,
        }
        let views = reader.state();
        states.retain(|uid, _| views.iter().any(|v| v.uid().as_deref() == Some(uid.as_str())));
        for v in views {
            let Some(uid) = v.uid() else { continue };
            if let Err(e) = round(&ctx, &store, &events, &mut states, &uid, &v).await {
                tracing::warn!(view = %format!("{}/{}", v.namespace().unwrap_or_default(), v.name_any()), error = %e, "status update failed");
            }
        }
    }
    watch.abort();
}

async fn round(
    ctx: &Context,
    store: &Store,
    events: &Events,
    states: &mut HashMap<String, ViewState>,
    uid: &str,
    v: &ErrorView,
) -> Result<(), kube::Error> {
    let ns = v.namespace().unwrap_or_default();
    let cluster_wide = ns == ctx.build.namespace;
    // A view first seen reads the whole store: those entries arrived since this operator started, so none
    // of them is in the counts it resumes from its status, and a new view shows recent entries at once.
    let state = states.entry(uid.to_owned()).or_insert_with(|| ViewState::resume(v, 0));
    if state.generation != v.metadata.generation {
        // The spec changed: the new query counts what the store holds, afresh.
        *state = ViewState::resume(v, 0);
    }
    let (fresh, cursor) = store.since(state.cursor);
    state.cursor = cursor;
    let samples = usize::try_from(v.spec.samples.max(0)).unwrap_or(0);
    for e in &fresh {
        if state.observe(e, &ns, cluster_wide, samples) && v.spec.publish_events {
            events.record_for_view(v, e);
        }
    }
    let now = crate::clock::now();
    let mut st = state.status(v, now);
    let old = v.status.clone().unwrap_or_default();
    let t = Time(JiffTimestamp::now());
    st.conditions = match &state.query {
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
