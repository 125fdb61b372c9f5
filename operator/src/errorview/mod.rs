//! ErrorViews: entries are counted as they arrive (`live::Views`, fed by ingest); every couple of seconds
//! each view's status is computed for its window and written — at most once per round, only when it
//! changed, and at most `WRITES_PER_ROUND` views a round (those written longest ago first), so API
//! writes stay bounded whatever the entry rate and however many namespaces have views. Matching entries of views with
//! `publishEvents` go to the Event publisher as they are counted.

pub mod live;
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
use crate::store::Store;
use crate::tapconfig::status::condition;
use live::Views;

const ROUND: Duration = Duration::from_secs(2);
/// Status writes per round, at most (10 a second). A view in each of 500 namespaces would otherwise be 250
/// writes a second; past the budget, a view's counts wait in memory for a later round.
const WRITES_PER_ROUND: usize = 20;

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
    // The round each view's status was last written, by uid: who goes first when the budget bites.
    let mut last_written: HashMap<String, u64> = HashMap::new();
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = &mut shutdown => break,
        }
        views.sync(&reader.state(), &store);
        round += 1;
        let changed: Vec<_> = views
            .statuses(crate::clock::now())
            .into_iter()
            .filter_map(|(v, st)| changed(&v, st).map(|st| (v, st)))
            .collect();
        let (now, later) = budget(changed, &mut last_written, round, WRITES_PER_ROUND);
        ctx.metrics.status_writes_deferred.inc_by(later as u64);
        for (v, st) in now {
            if let Err(e) = write(&ctx, &v, st).await {
                tracing::warn!(view = %format!("{}/{}", v.namespace().unwrap_or_default(), v.name_any()), error = %e, "status update failed");
            }
        }
    }
    // Counting stops with the term; a last write keeps what was counted since the last round (over the
    // budget: the next leader resumes from what was written, and a lost lease may not wait).
    let changed: Vec<_> = views
        .statuses(crate::clock::now())
        .into_iter()
        .filter_map(|(v, st)| changed(&v, st).map(|st| (v, st)))
        .collect();
    for (v, st) in budget(changed, &mut last_written, round + 1, WRITES_PER_ROUND).0 {
        let _ = write(&ctx, &v, st).await;
    }
    views.deactivate();
    watch.abort();
}

/// The status to write for `v`, or `None` when it is what the view already has.
fn changed(v: &ErrorView, mut st: faultline_crds::ErrorViewStatus) -> Option<faultline_crds::ErrorViewStatus> {
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
    (old != st).then_some(st)
}

/// Picks at most `max` of the `changed` views to write in round `round`, those written longest ago (or
/// never) first, and records them as written. Returns them and how many were put off.
fn budget<T>(
    mut changed: Vec<(Arc<ErrorView>, T)>,
    last_written: &mut HashMap<String, u64>,
    round: u64,
    max: usize,
) -> (Vec<(Arc<ErrorView>, T)>, usize) {
    let uid = |v: &ErrorView| v.metadata.uid.clone().unwrap_or_else(|| format!("{:?}/{}", v.namespace(), v.name_any()));
    changed.sort_by_key(|(v, _)| last_written.get(&uid(v)).copied().unwrap_or(0));
    let later = changed.len().saturating_sub(max);
    changed.truncate(max);
    for (v, _) in &changed {
        last_written.insert(uid(v), round);
    }
    // Views gone for good would otherwise stay here forever.
    if last_written.len() > 4 * max.max(changed.len()) + 1024 {
        last_written.retain(|_, r| round.saturating_sub(*r) < 10_000);
    }
    (changed, later)
}

async fn write(ctx: &Context, v: &ErrorView, st: faultline_crds::ErrorViewStatus) -> Result<(), kube::Error> {
    let ns = v.namespace().unwrap_or_default();
    let patch = json!({"apiVersion": ErrorView::api_version(&()), "kind": ErrorView::kind(&()), "status": st});
    Api::<ErrorView>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&v.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    ctx.metrics.wrote("errorview_status");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str) -> Arc<ErrorView> {
        let mut v = ErrorView::new(name, serde_json::from_value(json!({"query": "error"})).expect("spec"));
        v.metadata.namespace = Some("shop".into());
        v.metadata.uid = Some(format!("uid-{name}"));
        Arc::new(v)
    }

    #[test]
    fn the_budget_bites_and_every_view_gets_its_turn() {
        let views: Vec<_> = (0..5).map(|i| view(&format!("v{i}"))).collect();
        let mut last = HashMap::new();
        let mut written = Vec::new();
        for round in 1..=3 {
            let changed = views.iter().map(|v| (v.clone(), ())).collect();
            let (now, later) = budget(changed, &mut last, round, 2);
            assert_eq!((now.len(), later), (2, 3));
            written.extend(now.into_iter().map(|(v, _)| v.name_any()));
        }
        // Six writes over three rounds: the five views each once before any goes twice.
        let mut first_five = written[..5].to_vec();
        first_five.sort();
        assert_eq!(first_five, ["v0", "v1", "v2", "v3", "v4"]);
    }

    #[test]
    fn under_the_budget_everything_is_written() {
        let mut last = HashMap::new();
        let changed = vec![(view("a"), ()), (view("b"), ())];
        let (now, later) = budget(changed, &mut last, 1, 20);
        assert_eq!((now.len(), later), (2, 0));
    }
}
