//! TapConfig status from what reconcile found. Pure, so the conditions are unit-tested.

use faultline_crds::{TapConfig, TapConfigStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What one reconcile came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Children applied; the DaemonSet reports this many agents scheduled and ready; `export`: why the
    /// OTLP export cannot run, when it cannot.
    Applied { desired: i32, ready: i32, export: Option<String> },
    /// The spec is invalid: nothing was changed.
    Invalid(String),
    /// The API server refused a child (its message).
    ApplyFailed(String),
    /// The node selector overlaps an older TapConfig's: no agents (why).
    Overlaps(String),
    /// The DaemonSet could not create its pods (the controller's message).
    FailedCreate(String),
}

pub fn status(tap: &TapConfig, outcome: &Outcome, now: &Time) -> TapConfigStatus {
    let old = tap.status.clone().unwrap_or_default();
    let generation = tap.metadata.generation;
    let (ready, degraded) = match outcome {
        Outcome::Applied { desired, ready, export } => {
            let r = if *desired > 0 && ready == desired {
                ("True", "AgentsReady", format!("{ready} of {desired} agents ready"))
            } else if *desired == 0 {
                (
                    "False",
                    "NoAgentsScheduled",
                    "no node runs an agent yet: check nodeSelector and tolerations".to_owned(),
                )
            } else {
                ("False", "AgentsNotReady", format!("{ready} of {desired} agents ready"))
            };
            let degraded = match export {
                Some(why) => ("True", "ExportUnusable", format!("entries are not exported over OTLP: {why}")),
                None => ("False", "Reconciled", "agents, RBAC and configuration are applied".to_owned()),
            };
            (r, degraded)
        }
        Outcome::Invalid(msg) => (("False", "InvalidSpec", msg.clone()), ("True", "InvalidSpec", msg.clone())),
        Outcome::ApplyFailed(msg) => (("False", "ApplyFailed", msg.clone()), ("True", "ApplyFailed", msg.clone())),
        Outcome::Overlaps(msg) => (("False", "Overlaps", msg.clone()), ("True", "Overlaps", msg.clone())),
        Outcome::FailedCreate(msg) => {
            let m = format!("the DaemonSet cannot create agent pods: {msg}");
            (("False", "FailedCreate", m.clone()), ("True", "FailedCreate", m))
        }
    };
    let (desired_agents, ready_agents) = match outcome {
        Outcome::Applied { desired, ready, .. } => (*desired, *ready),
        Outcome::Overlaps(_) => (0, 0),
        _ => (old.desired_agents, old.ready_agents),
    };
    // Only the conditions this controller owns: `PacketLoss` and `nodes` belong to the statistics writer,
    // and server-side apply merges the two by condition type.
    let conditions = [("Degraded", degraded), ("Ready", ready)]
        .into_iter()
        .map(|(type_, (status, reason, message))| {
            condition(&old.conditions, type_, status, reason, message, generation, now)
        })
        .collect();
    TapConfigStatus { observed_generation: generation, conditions, desired_agents, ready_agents, nodes: Vec::new() }
}

/// Whether `new` (this controller's part of the status) is already what `old` says.
pub fn unchanged(old: Option<&TapConfigStatus>, new: &TapConfigStatus) -> bool {
    let Some(old) = old else { return false };
    let mine = |s: &TapConfigStatus| {
        let conds: Vec<Condition> =
            s.conditions.iter().filter(|c| c.type_ == "Ready" || c.type_ == "Degraded").cloned().collect();
        (s.observed_generation, s.desired_agents, s.ready_agents, conds)
    };
    mine(old) == mine(new)
}

/// A condition, keeping its last transition time when its status did not change.
pub fn condition(
    old: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn tap() -> TapConfig {
        let mut t = TapConfig::new("default", serde_json::from_str("{}").expect("empty spec"));
        t.metadata.generation = Some(3);
        t
    }

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(1_795_821_177 + s).expect("time"))
    }

    fn cond<'a>(s: &'a TapConfigStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).expect("condition")
    }

    #[test]
    fn ready_when_every_scheduled_agent_is_ready() {
        let s = status(&tap(), &Outcome::Applied { desired: 2, ready: 2, export: None }, &at(0));
        assert_eq!((cond(&s, "Ready").status.as_str(), cond(&s, "Ready").reason.as_str()), ("True", "AgentsReady"));
        assert_eq!(cond(&s, "Degraded").status, "False");
        assert_eq!((s.desired_agents, s.ready_agents, s.observed_generation), (2, 2, Some(3)));
        let s = status(&tap(), &Outcome::Applied { desired: 2, ready: 1, export: None }, &at(0));
        assert_eq!(cond(&s, "Ready").message, "1 of 2 agents ready");
        let s = status(&tap(), &Outcome::Applied { desired: 0, ready: 0, export: None }, &at(0));
        let broken = Some("Secret faultline-system/otlp does not exist".to_owned());
        let d = status(&tap(), &Outcome::Applied { desired: 1, ready: 1, export: broken }, &at(0));
        let degraded = d.conditions.iter().find(|c| c.type_ == "Degraded").expect("Degraded is set");
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "ExportUnusable"));
        assert!(degraded.message.contains("does not exist"), "{}", degraded.message);
        assert_eq!(cond(&s, "Ready").reason, "NoAgentsScheduled");
    }

    #[test]
    fn invalid_and_failed_specs_are_degraded_with_the_reason() {
        let s = status(&tap(), &Outcome::Invalid("timeouts.synTimeoutMs is 0".into()), &at(0));
        assert_eq!(cond(&s, "Degraded").status, "True");
        assert_eq!(cond(&s, "Degraded").reason, "InvalidSpec");
        assert_eq!(cond(&s, "Ready").message, "timeouts.synTimeoutMs is 0");
        let s = status(&tap(), &Outcome::ApplyFailed("DaemonSet is invalid".into()), &at(0));
        assert_eq!(cond(&s, "Ready").reason, "ApplyFailed");
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut t = tap();
        t.status = Some(status(&t, &Outcome::Applied { desired: 1, ready: 0, export: None }, &at(0)));
        let same = status(&t, &Outcome::Applied { desired: 1, ready: 0, export: None }, &at(60));
        assert_eq!(cond(&same, "Ready").last_transition_time, at(0));
        let changed = status(&t, &Outcome::Applied { desired: 1, ready: 1, export: None }, &at(60));
        assert_eq!(cond(&changed, "Ready").last_transition_time, at(60));
        assert_eq!(cond(&changed, "Degraded").last_transition_time, at(0), "Degraded stayed False");
    }
}
