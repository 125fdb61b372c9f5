use faultline_crds::TapConfig;

use super::*;

fn params() -> BuildParams {
    BuildParams {
        namespace: "faultline-system".into(),
        agent_image: "faultline/agent:dev".into(),
        operator_url: "http://faultline-operator.faultline-system.svc:8080".into(),
        operator_ca_secret: None,
        agent_image_pull_secrets: Vec::new(),
        agent_priority_class: Some("faultline-agent".into()),
    }
}

fn fixture(name: &str) -> TapConfig {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut tap: TapConfig = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    // What the API server adds.
    tap.metadata.uid = Some("0d9c9d6e-0000-4000-8000-000000000001".into());
    tap
}

fn container(ds: &DaemonSet) -> &k8s_openapi::api::core::v1::Container {
    let pod = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    &pod.containers[0]
}

#[test]
fn the_spec_example_becomes_a_daemonset_whose_args_carry_every_timeout_and_the_backend() {
    let c = build(&fixture("spec-example.yaml"), &params()).expect("builds");
    let args = container(&c.daemon_set).args.clone().expect("args");
    for want in [
        "run",
        "--capture-backend=afpacket",
        "--syn-timeout-ms=3000",
        "--close-timeout-ms=5000",
        "--pair-timeout-ms=30000",
        "--tcp-stream-channel-timeout-ms=10000",
        "--idle-timeout-ms=300000",
        "--dns-timeout-ms=5000",
        "--tls-handshake-timeout-ms=10000",
        "--packet-loss-threshold=0.01",
        "--dissector=http",
        "--dissector=dns",
        "--dissector=tls",
    ] {
        assert!(args.iter().any(|a| a == want), "missing {want} in {args:?}");
    }
    assert_eq!(c.daemon_set.metadata.name.as_deref(), Some("faultline-agent-default"));
    assert_eq!(c.daemon_set.metadata.namespace.as_deref(), Some("faultline-system"));
    assert_eq!(container(&c.daemon_set).image.as_deref(), Some("faultline/agent:dev"));
}

#[test]
fn everything_in_the_spec_reaches_the_agents() {
    let c = build(&fixture("full.yaml"), &params()).expect("builds");
    let ctr = container(&c.daemon_set);
    let args = ctr.args.clone().expect("args");
    for want in [
        "--capture-backend=libpcap",
        "--syn-timeout-ms=1500",
        "--close-timeout-ms=2500",
        "--pair-timeout-ms=20000",
        "--tcp-stream-channel-timeout-ms=8000",
        "--idle-timeout-ms=600000",
        "--dns-timeout-ms=2000",
        "--packet-loss-threshold=0.05",
        "--interface=eth0",
        "--interface=cni0",
        "--bpf-filter=tcp or icmp",
        "--dissector=http",
        "--dissector=dns",
        "--show-stream-timeouts",
        "--recorder=errors",
        "--engine-threads=3",
    ] {
        assert!(args.iter().any(|a| a == want), "missing {want} in {args:?}");
    }
    assert_eq!(ctr.image.as_deref(), Some("registry.example/faultline-agent:1.2.3"));
    assert_eq!(ctr.image_pull_policy.as_deref(), Some("Always"));
    let pod = c.daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod");
    assert_eq!(pod.node_selector.as_ref().and_then(|n| n.get("kubernetes.io/os")).map(String::as_str), Some("linux"));
    assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
    let limits = ctr.resources.as_ref().and_then(|r| r.limits.as_ref()).expect("limits");
    assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("256Mi"));
    let config = c.config_map.data.as_ref().and_then(|d| d.get("config.json")).expect("config");
    let config: serde_json::Value = serde_json::from_str(config).expect("json");
    assert!(config.get("watchNamespaces").is_none(), "agents do not name entries");
    assert_eq!(config["recorder"]["mode"], "errors");
    assert_eq!(config["timeouts"]["pairTimeoutMs"], 20000);
}

#[test]
fn agents_get_least_privilege() {
    let c = build(&fixture("spec-example.yaml"), &params()).expect("builds");
    let pod = c.daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod");
    assert_eq!(pod.host_network, Some(true));
    let sc = container(&c.daemon_set).security_context.as_ref().expect("security context");
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(caps.add.as_deref(), Some(&["NET_RAW".to_owned(), "NET_ADMIN".to_owned()][..]));
    // No API token at all; the only token is the one it shows the operator, audience-bound to ingest.
    assert_eq!(pod.automount_service_account_token, Some(false));
    let token = pod.volumes.iter().flatten().find(|v| v.name == "ingest-token").expect("ingest token volume");
    let sources = token.projected.as_ref().and_then(|p| p.sources.as_ref()).expect("projected");
    let sat = sources[0].service_account_token.as_ref().expect("a ServiceAccount token");
    assert_eq!(sat.audience.as_deref(), Some("faultline.dev/ingest"));
    let env = container(&c.daemon_set).env.iter().flatten();
    let file = env.filter(|e| e.name == "FAULTLINE_TOKEN_FILE").find_map(|e| e.value.clone());
    assert_eq!(file.as_deref(), Some("/var/run/secrets/faultline.dev/ingest/token"));
}

#[test]
fn children_are_owned_and_labelled() {
    let c = build(&fixture("spec-example.yaml"), &params()).expect("builds");
    let metas = [&c.service_account.metadata, &c.config_map.metadata, &c.daemon_set.metadata];
    for m in metas {
        let owner = &m.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("TapConfig", "default", Some(true)));
        assert_eq!(owner_of(m), Some("default"));
        assert_eq!(m.labels.as_ref().and_then(|l| l.get(TAPCONFIG_LABEL)).map(String::as_str), Some("default"));
    }
}

#[test]
fn a_spec_change_changes_the_pod_template() {
    let a = build(&fixture("spec-example.yaml"), &params()).expect("builds");
    let mut changed = fixture("spec-example.yaml");
    changed.spec.recorder.mode = faultline_crds::RecorderMode::Continuous;
    let b = build(&changed, &params()).expect("builds");
    let hash = |c: &Children| {
        c.daemon_set.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.annotations.clone())
    };
    assert_ne!(hash(&a), hash(&b), "a field that is only in the ConfigMap must still roll the pods");
    let mut timeout = fixture("spec-example.yaml");
    timeout.spec.timeouts.syn_timeout_ms = 4000;
    let c = build(&timeout, &params()).expect("builds");
    assert_ne!(container(&a.daemon_set).args, container(&c.daemon_set).args);
    let mut threads = fixture("spec-example.yaml");
    threads.spec.agent.engine_threads = Some(4);
    let d = build(&threads, &params()).expect("builds");
    assert_ne!(hash(&a), hash(&d), "engine threads roll the pods");
    assert!(
        !container(&a.daemon_set).args.iter().flatten().any(|a| a.starts_with("--engine-threads")),
        "unset: the agent takes its CPU limit"
    );
}

#[test]
fn invalid_specs_say_what_is_wrong() {
    let mut tap = fixture("spec-example.yaml");
    tap.spec.timeouts.close_timeout_ms = 0;
    tap.spec.interfaces = vec!["eth0".into(), "eth0".into()];
    tap.spec.bpf_filter = Some("tcp\nor udp".into());
    let err = build(&tap, &params()).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "invalid spec: timeouts.closeTimeoutMs is 0, must be between 1 and 3600000; interfaces: \"eth0\" is listed \
         twice; bpfFilter must be one line without control characters"
    );
    let mut unnamed = fixture("spec-example.yaml");
    unnamed.metadata.uid = None;
    assert_eq!(build(&unnamed, &params()), Err(BuildError::Unnamed));
}

#[test]
fn with_tls_the_agents_get_the_operators_ca_and_nothing_else_of_its_secret() {
    let p = BuildParams {
        operator_url: "https://faultline-operator.faultline-system.svc:8080".into(),
        operator_ca_secret: Some("faultline-operator-tls".into()),
        ..params()
    };
    let c = build(&fixture("spec-example.yaml"), &p).expect("builds");
    let pod = c.daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == "operator-ca").expect("CA volume");
    let secret = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("faultline-operator-tls"));
    let items: Vec<(&str, &str)> = secret.items.iter().flatten().map(|i| (i.key.as_str(), i.path.as_str())).collect();
    assert_eq!(items, [("ca.crt", "ca.crt")], "never the key");
    let ctr = container(&c.daemon_set);
    let env: Vec<(&str, Option<&str>)> =
        ctr.env.iter().flatten().map(|e| (e.name.as_str(), e.value.as_deref())).collect();
    assert!(env.contains(&("FAULTLINE_OPERATOR_CA_FILE", Some("/etc/faultline-operator-ca/ca.crt"))), "{env:?}");
    assert!(env.contains(&("FAULTLINE_OPERATOR_URL", Some("https://faultline-operator.faultline-system.svc:8080"))));
    let mount = ctr.volume_mounts.iter().flatten().find(|m| m.name == "operator-ca").expect("mount");
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/faultline-operator-ca", Some(true)));

    let plain = build(&fixture("spec-example.yaml"), &params()).expect("builds");
    let pod = plain.daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "operator-ca"), "no CA without TLS");
}

#[test]
fn agent_pods_have_probes_a_priority_class_pull_secrets_and_bounded_scratch() {
    let c = build(&fixture("spec-example.yaml"), &params()).expect("builds");
    let ds = c.daemon_set.spec.as_ref().expect("spec");
    let pod = ds.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.priority_class_name.as_deref(), Some("faultline-agent"), "the operator's default class");
    assert!(pod.image_pull_secrets.is_none(), "none unless configured");
    let ctr = container(&c.daemon_set);
    let live = ctr.liveness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("liveness");
    let ready = ctr.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("readiness");
    assert_eq!((live.path.as_deref(), ready.path.as_deref()), (Some("/healthz"), Some("/readyz")));
    let args = ctr.args.clone().expect("args");
    assert!(args.contains(&"--http-addr=0.0.0.0:9102".to_owned()), "{args:?}");
    let scratch = pod.volumes.iter().flatten().find(|v| v.name == "scratch").expect("scratch");
    assert_eq!(scratch.empty_dir.as_ref().and_then(|e| e.size_limit.clone()).map(|q| q.0), Some("67108864".into()));
    let max_unavailable =
        ds.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref()).and_then(|r| r.max_unavailable.clone());
    assert_eq!(max_unavailable, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("10%".into())));

    // The TapConfig's own choices win over the operator's defaults.
    let mut tap = fixture("spec-example.yaml");
    tap.spec.agent.priority_class_name = Some("system-node-critical".into());
    tap.spec.agent.image_pull_secrets =
        Some(vec![k8s_openapi::api::core::v1::LocalObjectReference { name: "regcred".into() }]);
    tap.spec.agent.port = 19102;
    let p = BuildParams { agent_image_pull_secrets: vec!["default-cred".into()], ..params() };
    let c = build(&tap, &p).expect("builds");
    let pod = c.daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-node-critical"));
    let names: Vec<&str> = pod.image_pull_secrets.iter().flatten().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["regcred"]);
    assert!(container(&c.daemon_set).args.iter().flatten().any(|a| a == "--http-addr=0.0.0.0:19102"));
    let c = build(&fixture("spec-example.yaml"), &p).expect("builds");
    let pod = c.daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    let names: Vec<&str> = pod.image_pull_secrets.iter().flatten().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["default-cred"], "the operator's default when the TapConfig names none");
}

#[test]
fn long_names_make_valid_labels_and_too_long_ones_are_refused() {
    let mut tap = fixture("spec-example.yaml");
    let long = format!("a{}", "b-".repeat(60));
    tap.metadata.name = Some(long.clone());
    let c = build(&tap, &params()).expect("builds");
    let labels = c.daemon_set.metadata.labels.as_ref().expect("labels");
    for v in labels.values() {
        assert!(v.len() <= 63 && v.ends_with(|c: char| c.is_ascii_alphanumeric()), "{v}");
    }
    assert_eq!(owner_of(&c.daemon_set.metadata), Some(long.as_str()), "the owner is found whatever the label");
    assert_ne!(label_value(&long), label_value(&format!("{long}x")), "distinct names, distinct values");
    assert_eq!(label_value("short"), "short");
    tap.metadata.name = Some("x".repeat(MAX_TAPCONFIG_NAME + 1));
    assert!(matches!(build(&tap, &params()), Err(BuildError::Invalid(m)) if m.contains("at most")));
}

#[test]
fn agents_that_export_get_the_flags_and_the_secrets_and_the_operator_alone_gets_nothing() {
    let mut tap = fixture("spec-example.yaml");
    let otlp = |sender: &str| {
        serde_json::from_value::<faultline_crds::ExportSpec>(serde_json::json!({"otlp": {
            "endpoint": "https://otel.observability.svc:4318", "protocol": "http/protobuf", "sender": sender,
            "headers": {"secretName": "otlp-headers"}, "queueSize": 500,
            "tls": {"caSecret": {"secretName": "otlp-ca"}, "serverName": "otel"}}}))
        .expect("an export spec")
    };
    tap.spec.export = Some(otlp("agents"));
    let c = build(&tap, &params()).expect("builds");
    let ctr = container(&c.daemon_set);
    let args: Vec<&str> = ctr.args.iter().flatten().map(String::as_str).filter(|a| a.starts_with("--otlp-")).collect();
    assert_eq!(
        args,
        [
            "--otlp-endpoint=https://otel.observability.svc:4318",
            "--otlp-protocol=http/protobuf",
            "--otlp-queue-size=500",
            "--otlp-headers-dir=/etc/faultline/otlp-headers",
            "--otlp-ca-file=/etc/faultline/otlp-ca/ca.crt",
            "--otlp-server-name=otel",
        ]
    );
    let pod = c.daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    let secret_of = |volume: &str| {
        let v = pod.volumes.iter().flatten().find(|v| v.name == volume).expect("volume");
        let s = v.secret.as_ref().expect("a Secret volume");
        (s.secret_name.clone(), s.items.iter().flatten().map(|i| i.key.clone()).collect::<Vec<_>>())
    };
    assert_eq!(secret_of("otlp-headers"), (Some("otlp-headers".into()), Vec::new()), "every key a header");
    assert_eq!(secret_of("otlp-ca"), (Some("otlp-ca".into()), vec!["ca.crt".to_owned()]), "only the CA");
    let mounts: Vec<(&str, &str)> =
        ctr.volume_mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str())).collect();
    assert!(mounts.contains(&("otlp-headers", "/etc/faultline/otlp-headers")), "{mounts:?}");
    assert!(mounts.contains(&("otlp-ca", "/etc/faultline/otlp-ca")), "{mounts:?}");

    tap.spec.export = Some(otlp("operator"));
    let c = build(&tap, &params()).expect("builds");
    assert!(container(&c.daemon_set).args.iter().flatten().all(|a| !a.starts_with("--otlp-")));
    let pod = c.daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    assert!(pod.volumes.iter().flatten().all(|v| !v.name.starts_with("otlp-")), "the operator reads the Secrets");
}
