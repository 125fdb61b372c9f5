//! Reconcile one TapConfig: dereference → check it overlaps no older TapConfig (from the controller's own
//! cache) → validate and build (pure) → apply (server-side apply, forced, one field manager) → update
//! status. Every child carries an owner
//! reference to the TapConfig, so deleting it lets the garbage collector remove them: no finalizer, which
//! would outlive an uninstalled operator and leave the TapConfig stuck Terminating.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_crds::TapConfig;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{predicates, reflector, watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::build::{build, child_name, owner_of, BuildError, Children, TAPCONFIG_LABEL};
use super::error::{At, Error, Result, Step};
use super::overlap::overlapped_by;
use super::status::{status, unchanged, Outcome};
use crate::context::{Context, MANAGER};

/// The finalizer earlier versions put on TapConfigs; removed wherever it is found.
pub const LEGACY_FINALIZER: &str = "faultline.dev/cleanup";
const CONTROLLER: &str = "tapconfig";

/// What one reconcile needs: the shared context and the controller's cache of every TapConfig (overlaps
/// are decided from it, not from a list call per reconcile).
struct Reconciler {
    ctx: Arc<Context>,
    taps: Store<TapConfig>,
}

/// Children of a cluster-scoped owner live in a namespace, so their owner reference is read here
/// (kube's owner mapping would give the TapConfig the child's namespace).
fn by_owner<K: Resource>(child: K) -> Option<ObjectRef<TapConfig>> {
    owner_of(child.meta()).map(ObjectRef::new)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let taps: Api<TapConfig> = Api::all(ctx.client.clone());
    let ns = ctx.build.namespace.as_str();
    let daemon_sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let service_accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let owned = || watcher::Config::default().labels(TAPCONFIG_LABEL);
    // Only spec changes (a new generation) trigger a reconcile; status writes — the controller's own and
    // the capture statistics — do not. Children and the periodic requeue cover everything else.
    let (reader, writer) = reflector::store();
    let changed_specs = reflector(writer, watcher(taps, watcher::Config::default().any_semantic()))
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    // A Secret an export names (a collector's token, a CA) changed: its TapConfigs are reconciled now, so
    // a rotated token is sent at once rather than refused until the periodic requeue.
    // Their metadata only: the operator keeps no Secret's contents but those it reads to export.
    let secrets: Api<PartialObjectMeta<Secret>> = Api::namespaced(ctx.client.clone(), ns);
    let taps_naming = {
        let taps = reader.clone();
        move |secret: PartialObjectMeta<Secret>| -> Vec<ObjectRef<TapConfig>> {
            let name = secret.name_any();
            taps.state()
                .iter()
                .filter(|t| crate::export::config::secrets(t.spec.export.as_ref()).any(|s| s == name))
                .map(|t| ObjectRef::from_obj(t.as_ref()))
                .collect()
        }
    };
    // Its cache stops with this controller: so does the task that reads it (a replica that leads again
    // starts another, on the new cache).
    let pruning = tokio::spawn(stop_exports_of_deleted(ctx.clone(), reader.clone()));
    let reconciler = Arc::new(Reconciler { ctx, taps: reader.clone() });
    // Every kind the controller owns is watched: a child edited or deleted by hand is put back at once,
    // not at the next periodic requeue.
    Controller::for_stream(changed_specs, reader)
        .watches(daemon_sets, owned(), by_owner)
        .watches(config_maps, owned(), by_owner)
        .watches(service_accounts, owned(), by_owner)
        .watches(secrets, watcher::Config::default(), taps_naming)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, reconciler)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(tapconfig = %obj.name, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
    pruning.abort();
}

/// A deleted TapConfig is not reconciled (no finalizer): its exporter is stopped here, once a minute,
/// when the controller's cache no longer holds it.
async fn stop_exports_of_deleted(ctx: Arc<Context>, taps: Store<TapConfig>) {
    if taps.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let names: std::collections::HashSet<String> = taps.state().iter().map(|t| t.name_any()).collect();
        ctx.exports.retain(|name| names.contains(name));
    }
}

async fn reconcile(tap: Arc<TapConfig>, r: Arc<Reconciler>) -> Result<Action> {
    let ctx = &r.ctx;
    let started = Instant::now();
    let res = async {
        drop_legacy_finalizer(&tap, ctx).await?;
        if tap.metadata.deletion_timestamp.is_some() {
            // The garbage collector removes the children (they are owned).
            return Ok(Action::await_change());
        }
        // The first objects reach the controller before the cache holds them all: an overlap decided
        // from half a list would start agents that the next reconcile removes.
        r.taps.wait_until_ready().await.map_err(|_| Error::CacheGone)?;
        apply(&tap, &r.taps.state(), ctx).await
    }
    .await;
    ctx.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    ctx.metrics.count(CONTROLLER, if res.is_ok() { "ok" } else { "error" });
    res
}

async fn drop_legacy_finalizer(tap: &TapConfig, ctx: &Context) -> Result<()> {
    let finalizers = tap.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == LEGACY_FINALIZER) {
        return Ok(());
    }
    let keep: Vec<&String> = finalizers.iter().filter(|f| *f != LEGACY_FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": keep, "resourceVersion": tap.metadata.resource_version}});
    Api::<TapConfig>::all(ctx.client.clone())
        .patch(&tap.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .at(Step::DropLegacyFinalizer)?;
    Ok(())
}

fn error_policy(tap: Arc<TapConfig>, err: &Error, r: Arc<Reconciler>) -> Action {
    let ctx = &r.ctx;
    tracing::warn!(tapconfig = %tap.name_any(), error = %err, kind = err.metric_label(), "will retry");
    ctx.metrics.count(CONTROLLER, err.metric_label());
    Action::requeue(Duration::from_secs(15))
}

async fn apply(tap: &TapConfig, all: &[Arc<TapConfig>], ctx: &Context) -> Result<Action> {
    if let Some(older) = overlapped_by(tap, all.iter().map(|t| t.as_ref())) {
        let msg = format!(
            "its nodeSelector overlaps TapConfig {:?}, which is older and already runs agents there: two agents \
             on one node would report everything twice. Give the two disjoint node selectors.",
            older.name_any()
        );
        remove_agents(tap, ctx).await?;
        update_status(tap, ctx, &Outcome::Overlaps(msg)).await?;
        // Re-checked when either changes, and now and then (the older one may go away).
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let children = match build(tap, &ctx.build) {
        Ok(c) => c,
        Err(BuildError::Invalid(msg)) => {
            tracing::info!(tapconfig = %tap.name_any(), problem = %msg, "invalid spec");
            update_status(tap, ctx, &Outcome::Invalid(msg)).await?;
            // Nothing will fix itself: wait for the user to change the spec.
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    };
    match apply_children(&children, ctx).await {
        Ok(ds) => {
            configure_export(tap, ctx).await;
            let st = ds.status.clone().unwrap_or_default();
            // Pods the DaemonSet could not create (Pod Security admission refusing host networking, a
            // quota) show only as Events on the DaemonSet: say so, not merely "0 of N ready".
            let missing =
                st.desired_number_scheduled > st.current_number_scheduled || st.number_unavailable.unwrap_or(0) > 0;
            if missing {
                if let Some(msg) = failed_create(&ds, ctx).await {
                    update_status(tap, ctx, &Outcome::FailedCreate(msg)).await?;
                    return Ok(Action::requeue(Duration::from_secs(15)));
                }
            }
            let export = ctx.exports.problem(&tap.name_any());
            let outcome = Outcome::Applied { desired: st.desired_number_scheduled, ready: st.number_ready, export };
            update_status(tap, ctx, &outcome).await?;
            Ok(Action::requeue(Duration::from_secs(if missing { 15 } else { 300 })))
        }
        // The API server refused what the spec asked for (say, limits below requests): say so and wait.
        Err(e) if e.refused().is_some() => {
            let msg = e.refused().unwrap_or_default().to_owned();
            update_status(tap, ctx, &Outcome::ApplyFailed(msg)).await?;
            Ok(Action::await_change())
        }
        Err(e) => {
            let _ = update_status(tap, ctx, &Outcome::ApplyFailed(e.to_string())).await;
            Err(e)
        }
    }
}

/// Starts, changes or stops the TapConfig's OTLP exporter (`spec.export`). A configuration that cannot
/// be used (a missing Secret) does not stop the agents: its entries are counted as dropped.
async fn configure_export(tap: &TapConfig, ctx: &Context) {
    let wanted = crate::export::config::wanted(&ctx.client, &ctx.build.namespace, tap.spec.export.as_ref()).await;
    ctx.exports.configure(&tap.name_any(), wanted);
}

/// Server-side applies every child; returns the DaemonSet as stored (with its status).
async fn apply_children(c: &Children, ctx: &Context) -> Result<DaemonSet> {
    let client = &ctx.client;
    let ns = ctx.build.namespace.as_str();
    let pp = PatchParams::apply(MANAGER).force();
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| m.name.clone().unwrap_or_default();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .patch(&name(&c.service_account.metadata), &pp, &Patch::Apply(&c.service_account))
        .await
        .at(Step::ApplyServiceAccount)?;
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(&name(&c.config_map.metadata), &pp, &Patch::Apply(&c.config_map))
        .await
        .at(Step::ApplyConfigMap)?;
    let ds = Api::<DaemonSet>::namespaced(client.clone(), ns)
        .patch(&name(&c.daemon_set.metadata), &pp, &Patch::Apply(&c.daemon_set))
        .await
        .at(Step::ApplyDaemonSet)?;
    Ok(ds)
}

async fn update_status(tap: &TapConfig, ctx: &Context, outcome: &Outcome) -> Result<()> {
    let name = tap.meta().name.clone().ok_or(Error::Unnamed)?;
    let st = status(tap, outcome, &Time(Timestamp::now()));
    if unchanged(tap.status.as_ref(), &st) {
        return Ok(());
    }
    let patch = json!({"apiVersion": TapConfig::api_version(&()), "kind": TapConfig::kind(&()), "status": st});
    Api::<TapConfig>::all(ctx.client.clone())
        .patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .at(Step::UpdateStatus)?;
    Ok(())
}

/// The newest `FailedCreate` Event of the DaemonSet from the last two minutes, if any: its message.
async fn failed_create(ds: &DaemonSet, ctx: &Context) -> Option<String> {
    let name = ds.metadata.name.clone()?;
    let fields = format!("involvedObject.kind=DaemonSet,involvedObject.name={name},reason=FailedCreate");
    let events = Api::<Event>::namespaced(ctx.client.clone(), &ctx.build.namespace)
        .list(&ListParams::default().fields(&fields))
        .await
        .ok()?;
    let seen = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    let newest = events.items.into_iter().max_by_key(seen)?;
    let age = Timestamp::now().duration_since(seen(&newest)?);
    (age.as_secs() < 120).then(|| newest.message.unwrap_or_default())
}

/// An overlapping TapConfig runs no agent: its DaemonSet (if an earlier spec made one) goes.
async fn remove_agents(tap: &TapConfig, ctx: &Context) -> Result<()> {
    let child = child_name(&tap.name_any());
    let ds = Api::<DaemonSet>::namespaced(ctx.client.clone(), &ctx.build.namespace);
    match ds.delete(&child, &DeleteParams::background()).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()).at(Step::RemoveAgents),
    }
}
