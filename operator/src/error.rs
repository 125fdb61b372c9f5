use crate::tapconfig::build::BuildError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("object has no name")]
    Unnamed,
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Build(BuildError::Invalid(_)) => "invalid",
            Error::Build(_) => "build",
            Error::Unnamed => "unnamed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
