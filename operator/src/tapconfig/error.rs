//! What can stop a reconcile, and at which step: "apply the DaemonSet: 403 …" says where to look, a bare
//! "kubernetes API: 403" does not.

use std::fmt;

use crate::tapconfig::build::BuildError;

/// The reconcile step that talked to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    DropLegacyFinalizer,
    ApplyServiceAccount,
    ApplyConfigMap,
    ApplyDaemonSet,
    RemoveAgents,
    UpdateStatus,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::DropLegacyFinalizer => "remove the legacy finalizer",
            Step::ApplyServiceAccount => "apply the agents' ServiceAccount",
            Step::ApplyConfigMap => "apply the agents' ConfigMap",
            Step::ApplyDaemonSet => "apply the agent DaemonSet",
            Step::RemoveAgents => "remove the agents of an overlapping TapConfig",
            Step::UpdateStatus => "update the TapConfig's status",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step}: {source}")]
    Kube {
        step: Step,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("object has no name")]
    Unnamed,
    /// The reflector feeding the TapConfig cache is gone: the controller is shutting down.
    #[error("the TapConfig cache stopped")]
    CacheGone,
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Build(BuildError::Invalid(_)) => "invalid",
            Error::Build(_) => "build",
            Error::Unnamed => "unnamed",
            Error::CacheGone => "cache",
        }
    }

    /// The API server's refusal of what was sent (400, 422): a spec it will not take, not a passing fault.
    pub fn refused(&self) -> Option<&str> {
        match self {
            Error::Kube { source: kube::Error::Api(e), .. } if e.code == 400 || e.code == 422 => Some(&e.message),
            _ => None,
        }
    }
}

/// Names the step a kube call belongs to: `api.patch(…).await.at(Step::ApplyDaemonSet)?`.
pub trait At<T> {
    fn at(self, step: Step) -> Result<T>;
}

impl<T> At<T> for std::result::Result<T, kube::Error> {
    fn at(self, step: Step) -> Result<T> {
        self.map_err(|source| Error::Kube { step, source })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure(&format!("code {code}"), "Invalid").with_code(code).boxed())
    }

    #[test]
    fn an_error_says_the_step_and_only_refusals_are_refusals() {
        let e = Err::<(), _>(api(422)).at(Step::ApplyDaemonSet).expect_err("an error stays an error");
        assert!(e.to_string().starts_with("apply the agent DaemonSet: "), "{e}");
        assert_eq!(e.refused(), Some("code 422"));
        assert_eq!(e.metric_label(), "kube");
        let e = Err::<(), _>(api(503)).at(Step::UpdateStatus).expect_err("an error stays an error");
        assert!(e.to_string().starts_with("update the TapConfig's status: "), "{e}");
        assert_eq!(e.refused(), None, "an unavailable server is retried, not reported as a bad spec");
    }
}
