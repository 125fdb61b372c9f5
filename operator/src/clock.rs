//! Wall-clock time in the engine's unit.

use faultline_model::Timestamp;

pub fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

/// A time the API server stated (a condition's transition, a creation or deletion time); before the
/// epoch reads as 0.
pub fn from_api(t: &k8s_openapi::jiff::Timestamp) -> Timestamp {
    Timestamp(u64::try_from(t.as_nanosecond()).unwrap_or(0))
}
