use super::*;

/// The committed YAML is what crdgen writes now: regenerate with `make crds` when this fails.
#[test]
fn committed_yaml_is_current() {
    let committed = include_str!("../faultline.dev.yaml");
    let generated = crds_yaml().expect("serialises");
    assert!(committed == generated, "crds/faultline.dev.yaml is stale: run `make crds` and commit it");
}

#[test]
fn spec_defaults_match_the_spec_example() {
    let tap: TapConfigSpec = serde_json::from_value(serde_json::json!({})).expect("empty spec is valid");
    assert_eq!(tap.capture_backend, CaptureBackend::Afpacket);
    assert_eq!(tap.timeouts, Timeouts::default());
    assert_eq!(
        (tap.timeouts.syn_timeout_ms, tap.timeouts.close_timeout_ms, tap.timeouts.pair_timeout_ms),
        (3000, 5000, 30000)
    );
    assert_eq!(tap.timeouts.tcp_stream_channel_timeout_ms, 10000);
    assert_eq!(tap.timeouts.dns_timeout_ms, 5000);
    assert_eq!(tap.packet_loss_threshold, 0.01);
    assert_eq!(tap.timeouts.tls_handshake_timeout_ms, 10000);
    // Every dissector implemented (SPEC §4: "default all").
    assert_eq!(tap.dissectors, Dissector::ALL.to_vec());
    assert_eq!(tap.dissectors[..4], [Dissector::Http, Dissector::Dns, Dissector::Tls, Dissector::Http2]);
    assert_eq!(tap.recorder.mode, RecorderMode::None);
}

#[test]
fn schema_carries_the_validation() {
    let yaml = crds_yaml().expect("serialises");
    for needle in [
        "closeTimeoutMs must not exceed idleTimeoutMs",
        "query must not be empty",
        "- afpacket",
        "- pfring",
        "maximum: 3600000",
        "shortNames:\n    - tap",
        "shortNames:\n    - ev",
        "subresources:\n      status: {}",
        "scope: Cluster",
        "scope: Namespaced",
    ] {
        assert!(yaml.contains(needle), "missing {needle:?}");
    }
}
