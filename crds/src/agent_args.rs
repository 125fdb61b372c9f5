//! A TapConfig as its agents' command line: every timeout, the backend, interfaces, filter, dissectors,
//! recorder and an export the agents send (the agent takes nothing else from the spec). Pure, beside the types, so that the agent's own
//! tests parse exactly these arguments back (`agent/src/cli.rs`): the CRD's defaults, the operator's
//! arguments and the engine's defaults cannot drift apart.

use crate::{RecorderMode, TapConfigSpec};

/// Where the agent pod mounts a `sender: agents` export's headers Secret and CA Secret.
pub const OTLP_HEADERS_DIR: &str = "/etc/faultline/otlp-headers";
pub const OTLP_CA_DIR: &str = "/etc/faultline/otlp-ca";
/// The CA bundle's key in an export's `tls.caSecret`, and its file's name where agents mount it.
pub const OTLP_CA_KEY: &str = "ca.crt";

/// The agent's command line: the same flags as `faultline-agent analyze`, named after the TapConfig fields.
pub fn agent_args(spec: &TapConfigSpec) -> Vec<String> {
    let mut args = vec!["run".to_owned(), format!("--capture-backend={}", spec.capture_backend.as_str())];
    args.extend(spec.timeouts.each().into_iter().map(|(t, v)| format!("{}={v}", t.flag())));
    args.push(format!("--packet-loss-threshold={}", spec.packet_loss_threshold));
    args.push(format!("--http-addr=0.0.0.0:{}", spec.agent.port));
    args.extend(spec.interfaces.iter().map(|i| format!("--interface={i}")));
    if let Some(f) = &spec.bpf_filter {
        args.push(format!("--bpf-filter={f}"));
    }
    args.extend(spec.dissectors.iter().map(|d| format!("--dissector={d}")));
    if spec.show_stream_timeouts {
        args.push("--show-stream-timeouts".to_owned());
    }
    if let Some(n) = spec.agent.engine_threads {
        args.push(format!("--engine-threads={n}"));
    }
    match spec.recorder.mode {
        RecorderMode::None => {}
        RecorderMode::Errors => args.push("--recorder=errors".to_owned()),
        RecorderMode::Continuous => {
            args.push("--recorder=continuous".to_owned());
            if let Some(max) = spec.recorder.max_total_bytes {
                args.push(format!("--record-max-bytes={max}"));
            }
        }
    }
    if let Some(otlp) = spec.agents_export() {
        args.push(format!("--otlp-endpoint={}", otlp.endpoint));
        args.push(format!("--otlp-protocol={}", otlp.protocol.as_str()));
        args.push(format!("--otlp-queue-size={}", otlp.queue_size));
        if otlp.headers.is_some() {
            args.push(format!("--otlp-headers-dir={OTLP_HEADERS_DIR}"));
        }
        if let Some(tls) = &otlp.tls {
            if tls.ca_secret.is_some() {
                args.push(format!("--otlp-ca-file={OTLP_CA_DIR}/{OTLP_CA_KEY}"));
            }
            if let Some(name) = &tls.server_name {
                args.push(format!("--otlp-server-name={name}"));
            }
        }
    }
    args
}
