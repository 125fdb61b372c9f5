//! What the schema cannot say about a TapConfig. The API server enforces types, enums, ranges and the CEL
//! rules; this catches the rest (and everything, should the CRD in a cluster be older than this operator),
//! so that a bad spec becomes a condition that says what is wrong instead of a broken DaemonSet.

use std::collections::BTreeSet;

use crate::TapConfigSpec;

/// Every problem of `spec`, joined; `Ok` when there is none.
pub fn validate(spec: &TapConfigSpec) -> Result<(), String> {
    let mut problems = Vec::new();
    let t = &spec.timeouts;
    for (timeout, v) in t.each() {
        if v < 1 || v > timeout.max {
            problems.push(format!("timeouts.{} is {v}, must be between 1 and {}", timeout.field, timeout.max));
        }
    }
    if t.close_timeout_ms > t.idle_timeout_ms {
        problems.push("timeouts.closeTimeoutMs must not exceed timeouts.idleTimeoutMs".to_owned());
    }
    if !(0.0..=1.0).contains(&spec.packet_loss_threshold) {
        problems.push(format!("packetLossThreshold is {}, must be between 0 and 1", spec.packet_loss_threshold));
    }
    let mut seen = BTreeSet::new();
    for i in &spec.interfaces {
        let ok = !i.is_empty() && i.len() <= 15 && i.chars().all(|c| c.is_ascii_alphanumeric() || "_.:@-".contains(c));
        if !ok {
            problems.push(format!("interfaces: {i:?} is not an interface name"));
        }
        if !seen.insert(i) {
            problems.push(format!("interfaces: {i:?} is listed twice"));
        }
    }
    if let Some(f) = &spec.bpf_filter {
        if f.chars().any(|c| c.is_control()) {
            problems.push("bpfFilter must be one line without control characters".to_owned());
        }
    }
    if let Some(image) = &spec.agent.image {
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            problems.push(format!("agent.image {image:?} is not an image reference"));
        }
    }
    let mut dissectors = BTreeSet::new();
    for d in &spec.dissectors {
        if !dissectors.insert(*d) {
            problems.push(format!("dissectors: {d} is listed twice"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timeout_is_checked_the_dns_and_tls_ones_too() {
        assert_eq!(validate(&TapConfigSpec::default()), Ok(()));
        for (timeout, _) in TapConfigSpec::default().timeouts.each() {
            let mut spec = TapConfigSpec::default();
            spec.timeouts.set(timeout.field, 0);
            let err = validate(&spec).expect_err(timeout.field);
            assert!(err.contains(&format!("timeouts.{} is 0", timeout.field)), "{err}");
        }
    }
}
