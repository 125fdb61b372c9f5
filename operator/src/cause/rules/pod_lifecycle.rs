//! A pod's own life explaining an error on a connection it was part of — a reset, a refusal or a half
//! connection: `PodTerminating` when its deletion had begun before the error (a rollout, a scale-down,
//! an eviction), `ContainerRestarted` when one of its containers terminated within 2 s of it (an
//! OOM kill, a crash). The server's end is asked first.

use faultline_model::cause::{Cause, CauseReason, ObjectRef};
use faultline_model::{Entry, Timestamp};

use super::{ms_between, Attempt, Failure, Verdict};
use crate::cause::state::{PodState, State};

/// How close to the error a container's end must be to explain it.
const AROUND_MS: f64 = 2_000.0;

/// The pods at the ends of an error that a pod's life can explain, the server's first, and when the
/// error was decided (a request left unanswered fails when its connection ends, not when it was sent).
fn ends<'a>(e: &Entry, s: &'a State) -> (Vec<&'a PodState>, Timestamp) {
    let Some(a) = Attempt::of(e) else { return (Vec::new(), e.timestamp) };
    if !matches!(a.failure, Failure::Reset | Failure::Refused | Failure::Half) {
        return (Vec::new(), a.decided);
    }
    ([a.server, a.client].iter().filter_map(|ip| s.pod_at(ip, a.at)).collect(), a.decided)
}

pub fn terminating(e: &Entry, s: &State) -> Verdict {
    let (pods, decided) = ends(e, s);
    for pod in pods {
        let Some(began) = pod.deleting.filter(|d| *d <= decided) else { continue };
        let before = decided.millis_since(began) / 1000.0;
        let by = match (&pod.disruption, &pod.owner) {
            (Some(reason), _) => format!("evicted ({reason})"),
            (None, Some((kind, name))) => format!("owner {kind} {}/{name}", pod.namespace),
            (None, None) => "deleted directly".to_owned(),
        };
        let message = format!(
            "pod {}/{} was terminating: its deletion began {before:.1} s before the error ({by})",
            pod.namespace, pod.name
        );
        let mut objects = vec![ObjectRef::new("Pod", Some(&pod.namespace), &pod.name)];
        if let Some((kind, name)) = &pod.owner {
            objects.push(ObjectRef::new(kind, Some(&pod.namespace), name));
        }
        let evidence = vec![
            format!("pod {}/{}: deletion began at {began}", pod.namespace, pod.name),
            format!("the error at {decided}"),
        ];
        return Ok(Some(Cause { reason: CauseReason::PodTerminating, message, objects, evidence }));
    }
    Ok(None)
}

pub fn restarted(e: &Entry, s: &State) -> Verdict {
    let (pods, decided) = ends(e, s);
    for pod in pods {
        let near = pod
            .terminations
            .iter()
            .filter(|t| ms_between(t.finished, decided) <= AROUND_MS)
            .min_by(|x, y| ms_between(x.finished, decided).total_cmp(&ms_between(y.finished, decided)));
        let Some(t) = near else { continue };
        let how = match &t.reason {
            Some(r) => format!("{r} (exit {})", t.exit_code),
            None => format!("exit {}", t.exit_code),
        };
        let gap = ms_between(t.finished, decided) / 1000.0;
        let when = if t.finished <= decided { "before" } else { "after" };
        let message = format!(
            "container {} of pod {}/{} terminated {gap:.1} s {when} the error: {how}",
            t.container, pod.namespace, pod.name
        );
        let objects = vec![ObjectRef::new("Pod", Some(&pod.namespace), &pod.name)];
        let evidence = vec![
            format!("container {} terminated at {}: {how}", t.container, t.finished),
            format!("the error at {decided}"),
        ];
        return Ok(Some(Cause { reason: CauseReason::ContainerRestarted, message, objects, evidence }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::rules::fixtures::*;
    use crate::cause::state::Termination;

    #[test]
    fn a_reset_from_a_pod_being_deleted_by_a_rollout() {
        let s = shop().edit_pod("shop", "web", |p| p.deleting = Some(at(99)));
        let c = terminating(&reset(CART_IP, WEB_IP, 8080), &s).expect("known").expect("a cause");
        assert_eq!(
            c.message,
            "pod shop/web was terminating: its deletion began 1.0 s before the error (owner ReplicaSet shop/web-5d8f7)"
        );
        let evicted = shop().edit_pod("shop", "web", |p| {
            p.deleting = Some(at(99));
            p.disruption = Some("EvictionByEvictionAPI".into());
        });
        let c = terminating(&half(CART_IP, WEB_IP, 8080), &evicted).expect("known").expect("a cause");
        assert!(c.message.ends_with("(evicted (EvictionByEvictionAPI))"), "{}", c.message);
    }

    #[test]
    fn a_request_sent_before_the_deletion_and_cut_by_it() {
        // Sent at 100 s, the connection closed under it 3 s later — after the deletion began at 102 s.
        let s = shop().edit_pod("shop", "web", |p| p.deleting = Some(at(102)));
        let mut e = half(CART_IP, WEB_IP, 8080);
        e.elapsed_time = 3_000.0;
        let c = terminating(&e, &s).expect("known").expect("a cause");
        assert!(c.message.contains("began 1.0 s before the error"), "{}", c.message);
    }

    #[test]
    fn no_termination_cause_before_the_deletion_or_on_a_syn_timeout() {
        let later = shop().edit_pod("shop", "web", |p| p.deleting = Some(at(101)));
        assert_eq!(terminating(&reset(CART_IP, WEB_IP, 8080), &later), Ok(None), "deleted after the error");
        let s = shop().edit_pod("shop", "web", |p| p.deleting = Some(at(99)));
        assert_eq!(terminating(&syn_timeout(CART_IP, WEB_IP, 8080), &s), Ok(None));
    }

    #[test]
    fn a_container_oom_killed_around_the_error() {
        let oom = |finished| {
            shop().edit_pod("shop", "web", move |p| {
                p.terminations.push(Termination {
                    container: "app".into(),
                    reason: Some("OOMKilled".into()),
                    exit_code: 137,
                    finished,
                })
            })
        };
        let c = restarted(&reset(CART_IP, WEB_IP, 8080), &oom(Timestamp(100_400_000_000)))
            .expect("known")
            .expect("a cause");
        assert_eq!(c.message, "container app of pod shop/web terminated 0.4 s after the error: OOMKilled (exit 137)");
        assert_eq!(restarted(&reset(CART_IP, WEB_IP, 8080), &oom(at(97))), Ok(None), "3 s before: another story");
        assert_eq!(restarted(&reset(CART_IP, WEB_IP, 8080), &shop()), Ok(None));
    }
}
