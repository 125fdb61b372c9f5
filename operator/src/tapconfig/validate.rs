//! What the schema cannot say about a TapConfig. The API server enforces types, enums, ranges and the CEL
//! rules; this catches the rest (and everything, should the CRD in a cluster be older than this operator),
//! so that a bad spec becomes a condition that says what is wrong instead of a broken DaemonSet.

use std::collections::BTreeSet;

use faultline_crds::TapConfigSpec;

pub fn validate(spec: &TapConfigSpec) -> Result<(), String> {
    let mut problems = Vec::new();
    let t = &spec.timeouts;
    for (name, v, max) in [
        ("synTimeoutMs", t.syn_timeout_ms, 3_600_000),
        ("closeTimeoutMs", t.close_timeout_ms, 3_600_000),
        ("pairTimeoutMs", t.pair_timeout_ms, 3_600_000),
        ("tcpStreamChannelTimeoutMs", t.tcp_stream_channel_timeout_ms, 3_600_000),
        ("idleTimeoutMs", t.idle_timeout_ms, 86_400_000),
    ] {
        if v < 1 || v > max {
            problems.push(format!("timeouts.{name} is {v}, must be between 1 and {max}"));
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
        if !dissectors.insert(d.as_str()) {
            problems.push(format!("dissectors: {} is listed twice", d.as_str()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
