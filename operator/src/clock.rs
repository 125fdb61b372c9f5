//! Wall-clock time in the engine's unit.

use faultline_model::Timestamp;

pub fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}
