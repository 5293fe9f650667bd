//! Malformed input: every error class of the loader and every validation rule (one case per
//! rule, so the file grows with the schema; over 1,000 lines on purpose).
#![allow(clippy::unwrap_used)]

use rackd_model::{ConfigError, Problem, parse_documents};

/// Parses `yaml` expecting exactly one error and no object; returns the error.
fn one_error(yaml: &str) -> ConfigError {
    let p = parse_documents("bad.yaml", yaml);
    assert!(
        p.objects.is_empty(),
        "unexpectedly loaded: {:#?}",
        p.objects
    );
    assert_eq!(p.errors.len(), 1, "{:#?}", p.errors);
    p.errors.into_iter().next().unwrap()
}

/// Expects a validation error naming `path` (exactly) among its field errors.
fn invalid_at(yaml: &str, path: &str) -> String {
    let e = one_error(yaml);
    let Problem::Invalid(fields) = &e.problem else {
        panic!("expected a validation error, got {e}");
    };
    assert!(
        fields.iter().any(|f| f.path == path),
        "no error at {path}: {e}"
    );
    e.to_string()
}

fn ok(yaml: &str) {
    let p = parse_documents("ok.yaml", yaml);
    assert!(
        p.errors.is_empty(),
        "{:#?}",
        p.errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    assert_eq!(p.objects.len(), 1);
}

const CC: &str =
    "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata:\n  name: cc\nspec:\n";
const PC: &str =
    "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata:\n  name: pc\nspec:\n";
const AD: &str =
    "apiVersion: cilium.io/v2\nkind: CiliumBGPAdvertisement\nmetadata:\n  name: ad\nspec:\n";
const NO: &str = "apiVersion: cilium.io/v2\nkind: CiliumBGPNodeConfigOverride\nmetadata:\n  name: node1\nspec:\n";
const POOL: &str =
    "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: pool\nspec:\n";
const L2: &str = "apiVersion: cilium.io/v2alpha1\nkind: CiliumL2AnnouncementPolicy\nmetadata:\n  name: l2\nspec:\n";
const EG: &str =
    "apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata:\n  name: eg\nspec:\n";

fn cc_peer(peer: &str) -> String {
    format!(
        "{CC}  bgpInstances:\n  - name: i\n    localASN: 65001\n    peers:\n    - name: p\n{peer}"
    )
}

fn advert(a: &str) -> String {
    format!("{AD}  advertisements:\n  - {a}\n")
}

fn egress(extra: &str) -> String {
    format!(
        "{EG}  selectors:\n  - podSelector: {{}}\n  destinationCIDRs: [10.0.0.0/8]\n  egressGateway:\n    nodeSelector: {{}}\n{extra}"
    )
}

// ===== loader error classes =====

#[test]
fn invalid_yaml_reports_line_and_keeps_other_documents() {
    let text = format!("{PC}  {{}}\n---\nkind: [unclosed\n---\n{POOL}  blocks: []\n");
    let p = parse_documents("mixed.yaml", &text);
    assert_eq!(p.objects.len(), 2, "{:#?}", p.errors);
    assert_eq!(p.errors.len(), 1);
    let e = &p.errors[0];
    assert!(matches!(e.problem, Problem::Yaml { .. }), "{e}");
    assert_eq!(e.location.document, 2);
    assert_eq!(e.location.line, Some(8), "{e}");
    assert!(
        e.to_string()
            .starts_with("mixed.yaml: document 2 (line 8): invalid YAML"),
        "{e}"
    );
    assert!(!e.to_string().contains("column"), "{e}");
}

#[test]
fn tabs_and_bad_indentation_are_yaml_errors() {
    let e = one_error("apiVersion: v1\nkind: Node\nmetadata:\n\tname: x\n");
    assert!(matches!(e.problem, Problem::Yaml { .. }), "{e}");
    let e = one_error("a: 1\n b: 2\n");
    assert!(matches!(e.problem, Problem::Yaml { .. }), "{e}");
}

#[test]
fn duplicate_yaml_keys_are_errors() {
    let e = one_error(&format!("{PC}  ebgpMultihop: 2\n  ebgpMultihop: 3\n"));
    assert!(
        matches!(e.problem, Problem::Yaml { .. } | Problem::Decode { .. }),
        "{e}"
    );
}

#[test]
fn not_an_object() {
    let e = one_error("- a\n- b\n");
    assert!(matches!(e.problem, Problem::NotAnObject { .. }), "{e}");
    let e = one_error("just a string\n");
    assert!(matches!(e.problem, Problem::NotAnObject { .. }), "{e}");
    let e = one_error("apiVersion: v1\nmetadata: {name: x}\n");
    assert!(e.to_string().contains("kind is missing"), "{e}");
    let e = one_error("kind: Node\nmetadata: {name: x}\n");
    assert!(e.to_string().contains("apiVersion is missing"), "{e}");
    let e = one_error("kind: [Node]\napiVersion: v1\n");
    assert!(e.to_string().contains("kind is not a string"), "{e}");
}

#[test]
fn unknown_kind() {
    let e = one_error(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: rule1\n",
    );
    assert!(matches!(e.problem, Problem::UnknownKind { .. }), "{e}");
    let s = e.to_string();
    assert!(
        s.contains("CiliumNetworkPolicy rule1")
            && s.contains("expected one of CiliumBGPClusterConfig"),
        "{s}"
    );
    // Kinds are case-sensitive.
    let e = one_error("apiVersion: v1\nkind: service\nmetadata:\n  name: s\n");
    assert!(matches!(e.problem, Problem::UnknownKind { .. }), "{e}");
}

#[test]
fn unknown_api_version() {
    let e = one_error(&PC.replace("cilium.io/v2\n", "cilium.io/v3\n"));
    assert!(
        matches!(e.problem, Problem::UnknownApiVersion { .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("expected cilium.io/v2 or cilium.io/v2alpha1"),
        "{e}"
    );
    // L2 policies are served only as v2alpha1 by Cilium.
    let e = one_error(&format!("{}  {{}}\n", L2.replace("v2alpha1", "v2")));
    assert!(
        matches!(e.problem, Problem::UnknownApiVersion { .. }),
        "{e}"
    );
    // Egress policies only as v2.
    let e = one_error(&egress("").replace("cilium.io/v2\n", "cilium.io/v2alpha1\n"));
    assert!(
        matches!(e.problem, Problem::UnknownApiVersion { .. }),
        "{e}"
    );
    let e = one_error("apiVersion: v2\nkind: Service\nmetadata:\n  name: s\n");
    assert!(
        matches!(e.problem, Problem::UnknownApiVersion { .. }),
        "{e}"
    );
}

#[test]
fn wrong_type_names_field_path_and_line() {
    let e = one_error(&cc_peer(
        "      peerAddress: 10.0.0.1\n      peerASN: \"65000\"\n",
    ));
    let Problem::Decode { path, message } = &e.problem else {
        panic!("{e}")
    };
    assert_eq!(path, "spec.bgpInstances[0].peers[0].peerASN");
    assert!(
        message.starts_with("invalid type: string \"65000\", expected i64"),
        "{message}"
    );
    assert_eq!(e.location.line, Some(12), "{e}");
    assert_eq!(e.object.as_ref().unwrap().name.as_deref(), Some("cc"));
}

#[test]
fn unknown_fields_are_errors() {
    let e = one_error(&format!("{PC}  timers:\n    holdTime: 30\n"));
    let Problem::Decode { path, message } = &e.problem else {
        panic!("{e}")
    };
    assert_eq!(path, "spec.timers.holdTime");
    assert!(message.contains("unknown field `holdTime`"), "{message}");
    // At the root and in metadata too.
    let e = one_error(&format!("{PC}  {{}}\nspce: {{}}\n"));
    assert!(e.to_string().contains("spce: unknown field"), "{e}");
    let e = one_error("apiVersion: v1\nkind: Node\nmetadata:\n  name: n\n  lables: {a: b}\n");
    assert!(
        e.to_string().contains("metadata.lables: unknown field"),
        "{e}"
    );
}

#[test]
fn missing_required_fields() {
    let e = one_error(&format!("{CC}  nodeSelector: {{}}\n"));
    assert!(
        e.to_string().contains("missing field `bgpInstances`"),
        "{e}"
    );
    let e =
        one_error("apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata:\n  name: pc\n");
    assert!(e.to_string().contains("missing field `spec`"), "{e}");
    let e = one_error(&format!(
        "{PC}  gracefulRestart:\n    restartTimeSeconds: 10\n"
    ));
    assert!(e.to_string().contains("missing field `enabled`"), "{e}");
    let e = one_error(&egress("").replace("  egressGateway:\n    nodeSelector: {}\n", ""));
    assert!(
        e.to_string().contains("missing field `egressGateway`"),
        "{e}"
    );
}

#[test]
fn enum_values() {
    let e = one_error(&format!(
        "{PC}  families:\n  - afi: ipv5\n    safi: unicast\n"
    ));
    assert!(
        e.to_string()
            .contains("unknown variant `ipv5`, expected one of"),
        "{e}"
    );
    let e = one_error(&format!(
        "{PC}  families:\n  - afi: ipv4\n    safi: Unicast\n"
    ));
    assert!(e.to_string().contains("unknown variant `Unicast`"), "{e}");
    let e = one_error(&advert("advertisementType: PodCidr"));
    assert!(e.to_string().contains("unknown variant `PodCidr`"), "{e}");
    let e = one_error(&advert(
        "advertisementType: Service\n    service:\n      addresses: [LoadBalancerIp]",
    ));
    assert!(
        e.to_string().contains("unknown variant `LoadBalancerIp`"),
        "{e}"
    );
    let e = one_error(&advert(
        "advertisementType: PodCIDR\n    attributes:\n      communities:\n        wellKnown: [no-exports]",
    ));
    assert!(
        e.to_string().contains("unknown variant `no-exports`"),
        "{e}"
    );
    let e = one_error(&format!("{POOL}  allowFirstLastIPs: Maybe\n"));
    assert!(e.to_string().contains("unknown variant `Maybe`"), "{e}");
    let e = one_error(&cc_peer("      autoDiscovery:\n        mode: Gateway\n"));
    assert!(e.to_string().contains("unknown variant `Gateway`"), "{e}");
}

#[test]
fn metadata_rules() {
    let e = one_error("apiVersion: v1\nkind: Node\nmetadata:\n  labels: {a: b}\n");
    assert!(
        e.to_string().contains("metadata.name (line 4): missing"),
        "{e}"
    );
    invalid_at(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: Node_1\n",
        "metadata.name",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: 1svc\n",
        "metadata.name",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: Bad_NS\n",
        "metadata.namespace",
    );
    invalid_at(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n\n  labels:\n    'bad key': v\n",
        "metadata.labels.bad key",
    );
}

// ===== ClusterConfig =====

#[test]
fn cluster_config_instances_count_and_names() {
    invalid_at(&format!("{CC}  bgpInstances: []\n"), "spec.bgpInstances");
    let many: String = (0..17).map(|i| format!("  - name: i{i}\n")).collect();
    invalid_at(&format!("{CC}  bgpInstances:\n{many}"), "spec.bgpInstances");
    invalid_at(
        &format!("{CC}  bgpInstances:\n  - name: a\n  - name: a\n"),
        "spec.bgpInstances[1].name",
    );
    invalid_at(
        &format!("{CC}  bgpInstances:\n  - name: ''\n"),
        "spec.bgpInstances[0].name",
    );
    let long = "x".repeat(256);
    invalid_at(
        &format!("{CC}  bgpInstances:\n  - name: {long}\n"),
        "spec.bgpInstances[0].name",
    );
}

#[test]
fn cluster_config_asn_and_port_ranges() {
    for asn in ["0", "4294967296", "-1"] {
        invalid_at(
            &format!("{CC}  bgpInstances:\n  - name: i\n    localASN: {asn}\n"),
            "spec.bgpInstances[0].localASN",
        );
    }
    ok(&format!(
        "{CC}  bgpInstances:\n  - name: i\n    localASN: 4294967295\n"
    ));
    for port in ["0", "65536"] {
        invalid_at(
            &format!("{CC}  bgpInstances:\n  - name: i\n    localPort: {port}\n"),
            "spec.bgpInstances[0].localPort",
        );
    }
    invalid_at(
        &cc_peer("      peerAddress: 10.0.0.1\n      peerASN: 4294967296\n"),
        "spec.bgpInstances[0].peers[0].peerASN",
    );
    ok(&cc_peer("      peerAddress: 10.0.0.1\n      peerASN: 0\n"));
}

/// `bmpServers` (Cilium's BMP shape): address, port and statistics ranges, unique names, the
/// policy enum, required fields; a full entry and the defaults are accepted.
#[test]
fn cluster_config_bmp_servers() {
    let bmp = |entry: &str| {
        format!("{CC}  bgpInstances:\n  - name: i\n    localASN: 65001\n    bmpServers:\n{entry}")
    };
    ok(&bmp("    - {name: c, peerAddress: 10.0.0.9}\n"));
    ok(&bmp(
        "    - {name: c, peerAddress: 'fd00::9', peerPort: 1790, monitoringPolicy: all, statisticsTimeout: 15}\n",
    ));
    invalid_at(
        &bmp("    - {name: c, peerAddress: collector}\n"),
        "spec.bgpInstances[0].bmpServers[0].peerAddress",
    );
    invalid_at(
        &bmp("    - {name: c, peerAddress: 10.0.0.9, peerPort: 0}\n"),
        "spec.bgpInstances[0].bmpServers[0].peerPort",
    );
    invalid_at(
        &bmp("    - {name: c, peerAddress: 10.0.0.9, statisticsTimeout: 14}\n"),
        "spec.bgpInstances[0].bmpServers[0].statisticsTimeout",
    );
    invalid_at(
        &bmp("    - {name: c, peerAddress: 10.0.0.9}\n    - {name: c, peerAddress: 10.0.0.10}\n"),
        "spec.bgpInstances[0].bmpServers[1].name",
    );
    for bad in [
        "    - {name: c, peerAddress: 10.0.0.9, monitoringPolicy: everything}\n",
        "    - {peerAddress: 10.0.0.9}\n",
        "    - {name: c, peerAddress: 10.0.0.9, station: x}\n",
    ] {
        let p = parse_documents("bad.yaml", &bmp(bad));
        assert_eq!(p.errors.len(), 1, "{bad}");
    }
}

#[test]
fn cluster_config_peer_address() {
    for bad in [
        "10.0.0.256",
        "010.0.0.1",
        "fd00::1::2",
        "10.0.0.1%eth0",
        "fe80::1%",
        "host.example",
    ] {
        invalid_at(
            &cc_peer(&format!("      peerAddress: '{bad}'\n")),
            "spec.bgpInstances[0].peers[0].peerAddress",
        );
    }
    for good in ["10.0.0.1", "fd00:10:0:1::1", "fe80::1%eth0", " 10.0.0.1 "] {
        ok(&cc_peer(&format!("      peerAddress: '{good}'\n")));
    }
}

#[test]
fn cluster_config_peer_cel_rules() {
    // one of peerAddress or autoDiscovery
    invalid_at(
        &cc_peer("      peerASN: 65000\n"),
        "spec.bgpInstances[0].peers[0]",
    );
    // defaultGateway required with mode DefaultGateway
    invalid_at(
        &cc_peer("      autoDiscovery:\n        mode: DefaultGateway\n"),
        "spec.bgpInstances[0].peers[0].autoDiscovery.defaultGateway",
    );
    ok(&cc_peer(
        "      autoDiscovery:\n        mode: DefaultGateway\n        defaultGateway:\n          addressFamily: ipv6\n",
    ));
    // exactly one of unnumbered/defaultGateway with mode Unnumbered
    invalid_at(
        &cc_peer("      autoDiscovery:\n        mode: Unnumbered\n"),
        "spec.bgpInstances[0].peers[0].autoDiscovery",
    );
    ok(&cc_peer(
        "      autoDiscovery:\n        mode: Unnumbered\n        unnumbered:\n          interface: eth0\n",
    ));
    // peerInterface needs a link-local peerAddress
    invalid_at(
        &cc_peer("      peerAddress: fd00::1\n      peerInterface: eth0\n"),
        "spec.bgpInstances[0].peers[0].peerAddress",
    );
    ok(&cc_peer(
        "      peerAddress: fe80::1\n      peerInterface: eth0\n",
    ));
    // duplicate peer names
    let text = format!(
        "{}    - name: p\n      peerAddress: 10.0.0.2\n",
        cc_peer("      peerAddress: 10.0.0.1\n")
    );
    invalid_at(&text, "spec.bgpInstances[0].peers[1].name");
}

#[test]
fn cluster_config_selector_errors() {
    let text = format!(
        "{CC}  nodeSelector:\n    matchExpressions:\n    - key: rack\n      operator: In\n  bgpInstances:\n  - name: i\n"
    );
    let s = invalid_at(&text, "spec.nodeSelector.matchExpressions[0].values");
    assert!(s.contains("expected at least one value"), "{s}");
    let text = format!(
        "{CC}  nodeSelector:\n    matchExpressions:\n    - key: rack\n      operator: Equals\n      values: [a]\n  bgpInstances:\n  - name: i\n"
    );
    let e = one_error(&text);
    // The CRD enum catches it at decode time? No: LabelSelector's operator is a free
    // string in k8s-openapi, so it is our selector validation that reports it.
    assert!(
        e.to_string().contains("unsupported operator \"Equals\""),
        "{e}"
    );
    let text = format!(
        "{CC}  nodeSelector:\n    matchLabels:\n      rack: 'a b'\n  bgpInstances:\n  - name: i\n"
    );
    invalid_at(&text, "spec.nodeSelector.matchLabels.rack");
}

#[test]
fn cluster_config_version_specific_fields() {
    let r = "      peerAddress: 10.0.0.1\n      peerConfigRef:\n        name: pc\n        group: cilium.io\n        kind: CiliumBGPPeerConfig\n";
    invalid_at(
        &cc_peer(r),
        "spec.bgpInstances[0].peers[0].peerConfigRef.group",
    );
    ok(&cc_peer(r).replace("cilium.io/v2\n", "cilium.io/v2alpha1\n"));
    let bad = cc_peer(r)
        .replace("cilium.io/v2\n", "cilium.io/v2alpha1\n")
        .replace("kind: CiliumBGPPeerConfig\n", "kind: Secret\n");
    invalid_at(&bad, "spec.bgpInstances[0].peers[0].peerConfigRef.kind");
    invalid_at(
        &cc_peer("      peerAddress: 10.0.0.1\n      peerConfigRef:\n        name: Bad_Name\n"),
        "spec.bgpInstances[0].peers[0].peerConfigRef.name",
    );
}

// ===== PeerConfig =====

/// `spec.bfd` (cilium#48251): ranges, the required `enabled`, unknown fields, and BFD on
/// single-hop peers only; the defaults and a full block are accepted.
#[test]
fn peer_config_bfd() {
    ok(&format!("{PC}  bfd:\n    enabled: true\n"));
    ok(&format!(
        "{PC}  bfd:\n    enabled: true\n    desiredMinTxIntervalMicroseconds: 300000\n    \
         requiredMinRxIntervalMicroseconds: 300000\n    detectMultiplier: 3\n"
    ));
    invalid_at(
        &format!("{PC}  bfd:\n    enabled: true\n    desiredMinTxIntervalMicroseconds: 0\n"),
        "spec.bfd.desiredMinTxIntervalMicroseconds",
    );
    invalid_at(
        &format!(
            "{PC}  bfd:\n    enabled: true\n    requiredMinRxIntervalMicroseconds: 4294967296\n"
        ),
        "spec.bfd.requiredMinRxIntervalMicroseconds",
    );
    invalid_at(
        &format!("{PC}  bfd:\n    enabled: true\n    detectMultiplier: 256\n"),
        "spec.bfd.detectMultiplier",
    );
    let s = invalid_at(
        &format!("{PC}  ebgpMultihop: 2\n  bfd:\n    enabled: true\n"),
        "spec.bfd.enabled",
    );
    assert!(s.contains("single-hop"), "{s}");
    // Disabled BFD on a multihop peer is no error (the control of the rule above).
    ok(&format!(
        "{PC}  ebgpMultihop: 2\n  bfd:\n    enabled: false\n"
    ));
    // Malformed: `enabled` missing, an unknown field, a string interval.
    for bad in [
        "  bfd:\n    detectMultiplier: 3\n",
        "  bfd:\n    enabled: true\n    minTx: 3\n",
        "  bfd:\n    enabled: true\n    detectMultiplier: three\n",
    ] {
        let p = parse_documents("bad.yaml", &format!("{PC}{bad}"));
        assert_eq!(p.errors.len(), 1, "{bad}");
    }
}

#[test]
fn peer_config_timers() {
    invalid_at(
        &format!("{PC}  timers:\n    holdTimeSeconds: 2\n    keepAliveTimeSeconds: 1\n"),
        "spec.timers.holdTimeSeconds",
    );
    invalid_at(
        &format!("{PC}  timers:\n    holdTimeSeconds: 65536\n"),
        "spec.timers.holdTimeSeconds",
    );
    invalid_at(
        &format!("{PC}  timers:\n    keepAliveTimeSeconds: 0\n"),
        "spec.timers.keepAliveTimeSeconds",
    );
    invalid_at(
        &format!("{PC}  timers:\n    connectRetryTimeSeconds: 0\n"),
        "spec.timers.connectRetryTimeSeconds",
    );
    let s = invalid_at(
        &format!("{PC}  timers:\n    holdTimeSeconds: 9\n    keepAliveTimeSeconds: 10\n"),
        "spec.timers.keepAliveTimeSeconds",
    );
    assert!(s.contains("keepAliveTimeSeconds <= holdTimeSeconds"), "{s}");
    // The CEL rule sees the defaulted keepalive (30) too.
    invalid_at(
        &format!("{PC}  timers:\n    holdTimeSeconds: 20\n"),
        "spec.timers.keepAliveTimeSeconds",
    );
    ok(&format!(
        "{PC}  timers:\n    holdTimeSeconds: 3\n    keepAliveTimeSeconds: 1\n"
    ));
    ok(&format!(
        "{PC}  timers:\n    holdTimeSeconds: 9\n    keepAliveTimeSeconds: 9\n"
    ));
}

#[test]
fn peer_config_other_ranges() {
    invalid_at(
        &format!("{PC}  transport:\n    peerPort: 0\n"),
        "spec.transport.peerPort",
    );
    invalid_at(&format!("{PC}  ebgpMultihop: 0\n"), "spec.ebgpMultihop");
    invalid_at(&format!("{PC}  ebgpMultihop: 256\n"), "spec.ebgpMultihop");
    invalid_at(
        &format!("{PC}  gracefulRestart:\n    enabled: true\n    restartTimeSeconds: 4096\n"),
        "spec.gracefulRestart.restartTimeSeconds",
    );
    invalid_at(
        &format!("{PC}  gracefulRestart:\n    enabled: true\n    restartTimeSeconds: 0\n"),
        "spec.gracefulRestart.restartTimeSeconds",
    );
    invalid_at(
        &format!("{PC}  authSecretRef: 'bad/secret'\n"),
        "spec.authSecretRef",
    );
    invalid_at(
        &format!(
            "{PC}  families:\n  - afi: ipv4\n    safi: unicast\n  - afi: ipv4\n    safi: unicast\n"
        ),
        "spec.families[1]",
    );
    invalid_at(
        &format!(
            "{PC}  families:\n  - afi: ipv4\n    safi: unicast\n    advertisements:\n      matchExpressions:\n      - key: a\n        operator: Exists\n        values: [x]\n"
        ),
        "spec.families[0].advertisements.matchExpressions[0].values",
    );
}

#[test]
fn peer_config_version_specific_fields() {
    invalid_at(
        &format!("{PC}  transport:\n    localPort: 1790\n"),
        "spec.transport.localPort",
    );
    let alpha = PC.replace("cilium.io/v2\n", "cilium.io/v2alpha1\n");
    ok(&format!("{alpha}  transport:\n    localPort: 1790\n"));
    invalid_at(
        &format!("{alpha}  transport:\n    localPort: 0\n"),
        "spec.transport.localPort",
    );
    invalid_at(
        &format!("{alpha}  transport:\n    sourceInterface: lo\n"),
        "spec.transport.sourceInterface",
    );
}

// ===== Advertisement =====

#[test]
fn advertisement_cel_rules() {
    invalid_at(
        &advert("advertisementType: Service"),
        "spec.advertisements[0].service",
    );
    invalid_at(
        &advert("advertisementType: PodCIDR\n    service:\n      addresses: [ClusterIP]"),
        "spec.advertisements[0].service",
    );
    invalid_at(
        &advert("advertisementType: Interface"),
        "spec.advertisements[0].interface",
    );
    invalid_at(
        &advert(
            "advertisementType: Service\n    service:\n      addresses: [ClusterIP]\n    interface:\n      name: lo",
        ),
        "spec.advertisements[0].interface",
    );
    invalid_at(
        &advert("advertisementType: PodCIDR\n    selector: {}"),
        "spec.advertisements[0].selector",
    );
    ok(&advert(
        "advertisementType: Interface\n    interface:\n      name: lo",
    ));
    ok(&advert(
        "advertisementType: CiliumPodIPPool\n    selector: {}",
    ));
}

#[test]
fn advertisement_service_options() {
    invalid_at(
        &advert("advertisementType: Service\n    service:\n      addresses: []"),
        "spec.advertisements[0].service.addresses",
    );
    invalid_at(
        &advert(
            "advertisementType: Service\n    service:\n      addresses: [ClusterIP]\n      aggregationLengthIPv4: 32",
        ),
        "spec.advertisements[0].service.aggregationLengthIPv4",
    );
    invalid_at(
        &advert(
            "advertisementType: Service\n    service:\n      addresses: [ClusterIP]\n      aggregationLengthIPv6: 128",
        ),
        "spec.advertisements[0].service.aggregationLengthIPv6",
    );
    invalid_at(
        &advert("advertisementType: Interface\n    interface:\n      name: ''"),
        "spec.advertisements[0].interface.name",
    );
}

#[test]
fn advertisement_communities() {
    let base = "advertisementType: PodCIDR\n    attributes:\n      communities:\n";
    invalid_at(
        &advert(&format!("{base}        standard: ['65536:1']")),
        "spec.advertisements[0].attributes.communities.standard[0]",
    );
    invalid_at(
        &advert(&format!("{base}        standard: ['65000:99', 'x']")),
        "spec.advertisements[0].attributes.communities.standard[1]",
    );
    invalid_at(
        &advert(&format!("{base}        large: ['1:2']")),
        "spec.advertisements[0].attributes.communities.large[0]",
    );
    ok(&advert(&format!(
        "{base}        standard: ['65000:99', '4294967295']\n        large: ['4294967295:1:2']\n        wellKnown: [no-export]"
    )));
    invalid_at(
        &advert("advertisementType: PodCIDR\n    attributes:\n      localPreference: -1"),
        "spec.advertisements[0].attributes.localPreference",
    );
}

// ===== NodeConfigOverride =====

#[test]
fn node_override_rules() {
    invalid_at(&format!("{NO}  bgpInstances: []\n"), "spec.bgpInstances");
    invalid_at(
        &format!("{NO}  bgpInstances:\n  - name: i\n    routerID: 10.0.0.256\n"),
        "spec.bgpInstances[0].routerID",
    );
    invalid_at(
        &format!("{NO}  bgpInstances:\n  - name: i\n    routerID: 'fd00::1'\n"),
        "spec.bgpInstances[0].routerID",
    );
    invalid_at(
        &format!(
            "{NO}  bgpInstances:\n  - name: a\n    routerID: 1.1.1.1\n  - name: b\n    routerID: 1.1.1.1\n"
        ),
        "spec.bgpInstances[1].routerID",
    );
    invalid_at(
        &format!("{NO}  bgpInstances:\n  - name: i\n    localASN: 0\n"),
        "spec.bgpInstances[0].localASN",
    );
    invalid_at(
        &format!("{NO}  bgpInstances:\n  - name: i\n    localPort: 70000\n"),
        "spec.bgpInstances[0].localPort",
    );
    invalid_at(
        &format!(
            "{NO}  bgpInstances:\n  - name: i\n    peers:\n    - name: p\n      localAddress: nope\n"
        ),
        "spec.bgpInstances[0].peers[0].localAddress",
    );
    invalid_at(
        &format!(
            "{NO}  bgpInstances:\n  - name: i\n    peers:\n    - name: p\n      localAddress: 10.0.0.1\n      peerInterface: eth0\n"
        ),
        "spec.bgpInstances[0].peers[0].localAddress",
    );
    invalid_at(
        &format!("{NO}  bgpInstances:\n  - name: i\n    peers:\n    - name: p\n    - name: p\n"),
        "spec.bgpInstances[0].peers[1].name",
    );
    ok(&format!(
        "{NO}  bgpInstances:\n  - name: i\n    routerID: 10.0.0.1\n    localPort: 1790\n    peers:\n    - name: p\n      localAddress: 10.0.0.1\n"
    ));
    // The same under the deprecated v2alpha1, which users may still have, with its checks.
    let alpha = NO.replace("cilium.io/v2\n", "cilium.io/v2alpha1\n");
    ok(&format!(
        "{alpha}  bgpInstances:\n  - name: i\n    routerID: 10.0.0.1\n    localPort: 1790\n    peers:\n    - name: p\n      localAddress: 10.0.0.1\n"
    ));
    invalid_at(
        &format!("{alpha}  bgpInstances:\n  - name: i\n    routerID: 10.0.0.256\n"),
        "spec.bgpInstances[0].routerID",
    );
}

#[test]
fn advertisement_v2alpha1() {
    let alpha = AD.replace("cilium.io/v2\n", "cilium.io/v2alpha1\n");
    ok(&format!(
        "{alpha}  advertisements:\n  - advertisementType: Service\n    service:\n      addresses: [LoadBalancerIP]\n    selector:\n      matchLabels: {{app: x}}\n    attributes:\n      communities:\n        standard: [\"65000:100\"]\n      localPreference: 200\n"
    ));
    invalid_at(
        &format!("{alpha}  advertisements:\n  - advertisementType: Interface\n"),
        "spec.advertisements[0].interface",
    );
}

// ===== LB pool =====

#[test]
fn lb_pool_blocks() {
    invalid_at(
        &format!("{POOL}  blocks:\n  - cidr: 10.0.0.0/33\n"),
        "spec.blocks[0].cidr",
    );
    invalid_at(
        &format!("{POOL}  blocks:\n  - cidr: 10.0.0.0\n"),
        "spec.blocks[0].cidr",
    );
    invalid_at(
        &format!("{POOL}  blocks:\n  - stop: 10.0.0.9\n"),
        "spec.blocks[0]",
    );
    invalid_at(
        &format!("{POOL}  blocks:\n  - cidr: 10.0.0.0/24\n    start: 10.0.0.1\n"),
        "spec.blocks[0]",
    );
    invalid_at(
        &format!("{POOL}  blocks:\n  - start: 10.0.0.x\n"),
        "spec.blocks[0].start",
    );
    invalid_at(
        &format!("{POOL}  blocks:\n  - start: 10.0.0.9\n    stop: 10.0.0.1\n"),
        "spec.blocks[0].stop",
    );
    invalid_at(
        &format!("{POOL}  blocks:\n  - start: 10.0.0.9\n    stop: 'fd00::1'\n"),
        "spec.blocks[0].stop",
    );
    ok(&format!(
        "{POOL}  blocks:\n  - start: 10.0.0.9\n  - start: 10.0.0.1\n    stop: 10.0.0.9\n  - cidr: 'fd00::/120'\n"
    ));
}

#[test]
fn lb_pool_v2alpha1_cidrs() {
    let alpha = POOL.replace("cilium.io/v2\n", "cilium.io/v2alpha1\n");
    let p = parse_documents(
        "p.yaml",
        &format!("{alpha}  cidrs:\n  - cidr: 10.0.0.0/24\n"),
    );
    assert!(p.errors.is_empty(), "{:#?}", p.errors);
    let rackd_model::Object::LoadBalancerIPPool(pool) = &*p.objects[0].object else {
        panic!()
    };
    assert_eq!(pool.spec.blocks[0].cidr.as_deref(), Some("10.0.0.0/24"));
    assert!(pool.spec.cidrs.is_none());
    invalid_at(
        &format!("{POOL}  cidrs:\n  - cidr: 10.0.0.0/24\n"),
        "spec.cidrs",
    );
    invalid_at(
        &format!("{alpha}  cidrs:\n  - cidr: 10.0.0.0/99\n"),
        "spec.blocks[0].cidr",
    );
}

#[test]
fn lb_pool_selector() {
    invalid_at(
        &format!("{POOL}  serviceSelector:\n    matchLabels:\n      'example.com/': x\n"),
        "spec.serviceSelector.matchLabels.example.com/",
    );
}

// ===== L2 policy =====

#[test]
fn l2_interface_regexes_must_compile() {
    let s = invalid_at(
        &format!("{L2}  interfaces:\n  - ^eth[0-9]+\n  - 'eth[0-9'\n"),
        "spec.interfaces[1]",
    );
    assert!(s.contains("does not compile"), "{s}");
    invalid_at(
        &format!("{L2}  interfaces:\n  - '(?P<x'\n"),
        "spec.interfaces[0]",
    );
    ok(&format!(
        "{L2}  interfaces: ['^ens[0-9]+', 'bond0']\n  loadBalancerIPs: true\n"
    ));
}

#[test]
fn l2_selectors() {
    invalid_at(
        &format!(
            "{L2}  nodeSelector:\n    matchExpressions:\n    - key: node-role.kubernetes.io/control-plane\n      operator: DoesNotExist\n      values: [x]\n"
        ),
        "spec.nodeSelector.matchExpressions[0].values",
    );
    invalid_at(
        &format!("{L2}  serviceSelector:\n    matchLabels:\n      color: 'blue!'\n"),
        "spec.serviceSelector.matchLabels.color",
    );
}

// ===== Egress =====

#[test]
fn egress_rules() {
    ok(&egress(""));
    invalid_at(
        &egress("").replace(
            "  destinationCIDRs: [10.0.0.0/8]\n",
            "  destinationCIDRs: []\n",
        ),
        "spec.destinationCIDRs",
    );
    invalid_at(
        &egress("").replace(
            "  destinationCIDRs: [10.0.0.0/8]\n",
            "  destinationCIDRs: [10.0.0.0/40]\n",
        ),
        "spec.destinationCIDRs[0]",
    );
    invalid_at(
        &egress("  excludedCIDRs: [nope]\n"),
        "spec.excludedCIDRs[0]",
    );
    invalid_at(
        &egress("").replace("  selectors:\n  - podSelector: {}\n", "  selectors: []\n"),
        "spec.selectors",
    );
    invalid_at(
        &egress("").replace("  - podSelector: {}\n", "  - nodeSelector: {}\n"),
        "spec.selectors[0]",
    );
    invalid_at(
        &egress("    egressIP: 10.0.0.300\n"),
        "spec.egressGateway.egressIP",
    );
    invalid_at(
        &egress("    egressIP: 10.0.0.1\n    interface: eth0\n"),
        "spec.egressGateway",
    );
    ok(&egress("    egressIP: ''\n    interface: eth0\n"));
    let many: String = (0..65).map(|_| "  - nodeSelector: {}\n").collect();
    invalid_at(
        &egress(&format!("  egressGateways:\n{many}")),
        "spec.egressGateways",
    );
    invalid_at(
        &egress("  egressGateways:\n  - nodeSelector:\n      matchLabels:\n        'a/b/c': x\n"),
        "spec.egressGateways[0].nodeSelector.matchLabels.a/b/c",
    );
}

// ===== core objects =====

#[test]
fn core_objects() {
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  type: Balancer\n",
        "spec.type",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  externalTrafficPolicy: local\n",
        "spec.externalTrafficPolicy",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  externalIPs: [1.2.3]\n",
        "spec.externalIPs[0]",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  loadBalancerIP: x\n",
        "spec.loadBalancerIP",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: nope\n",
        "status.loadBalancer.ingress[0].ip",
    );
    invalid_at(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  podCIDRs: [10.1.0.0/99]\n",
        "spec.podCIDRs[0]",
    );
    let e = one_error(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  password: '!!notbase64'\n",
    );
    assert!(matches!(e.problem, Problem::Decode { .. }), "{e}");
    let e = one_error(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: e\nendpoints: []\n",
    );
    assert!(e.to_string().contains("addressType"), "{e}");
    invalid_at(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: e\naddressType: IPv6\nendpoints:\n- addresses: [10.0.0.1]\n",
        "endpoints[0].addresses[0]",
    );
    invalid_at(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: e\naddressType: IPv5\n",
        "addressType",
    );
    ok(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: kube-system\nstringData:\n  password: hunter2\n",
    );
    ok(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: e\n  labels:\n    kubernetes.io/service-name: svc\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  nodeName: n1\n  conditions: {ready: true}\n",
    );
}

#[test]
fn remaining_rules() {
    invalid_at(
        &cc_peer("      peerAddress: 10.0.0.1\n").replace("- name: p\n", "- name: ''\n"),
        "spec.bgpInstances[0].peers[0].name",
    );
    invalid_at(
        &cc_peer("      peerAddress: fe80::1\n      peerInterface: ''\n"),
        "spec.bgpInstances[0].peers[0].peerInterface",
    );
    invalid_at(
        &cc_peer(
            "      autoDiscovery:\n        mode: DefaultGateway\n        defaultGateway:\n          addressFamily: ipv4\n        unnumbered:\n          interface: eth0\n",
        ),
        "spec.bgpInstances[0].peers[0].autoDiscovery.unnumbered",
    );
    invalid_at(
        &cc_peer(
            "      autoDiscovery:\n        mode: Unnumbered\n        unnumbered:\n          interface: ''\n",
        ),
        "spec.bgpInstances[0].peers[0].autoDiscovery.unnumbered.interface",
    );
    invalid_at(
        &format!("{PC}  transport:\n    sourceInterface: ''\n"),
        "spec.transport.sourceInterface",
    );
    invalid_at(
        &format!(
            "{NO}  bgpInstances:\n  - name: i\n    peers:\n    - name: p\n      localPort: 0\n"
        ),
        "spec.bgpInstances[0].peers[0].localPort",
    );
    invalid_at(
        &format!(
            "{NO}  bgpInstances:\n  - name: i\n    peers:\n    - name: p\n      peerInterface: ''\n"
        ),
        "spec.bgpInstances[0].peers[0].peerInterface",
    );
    invalid_at(
        &egress(&format!("    egressIP: '{}'\n", "1".repeat(40))),
        "spec.egressGateway.egressIP",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  internalTrafficPolicy: Node\n",
        "spec.internalTrafficPolicy",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  clusterIP: 10.96.0\n",
        "spec.clusterIP",
    );
    invalid_at(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  clusterIPs: [None, x]\n",
        "spec.clusterIPs[1]",
    );
    ok(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  clusterIP: None\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n",
    );
    invalid_at(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  podCIDR: 10.1.0.0\n",
        "spec.podCIDR",
    );
}

#[test]
fn every_document_gets_an_object_or_an_error() {
    let text = format!(
        "{PC}  {{}}\n---\n# empty\n---\n[1, 2\n---\n{}---\n{L2}  interfaces: ['(']\n---\napiVersion: v1\nkind: Deployment\nmetadata:\n  name: p\n",
        egress("")
    );
    let p = parse_documents("many.yaml", &text);
    assert_eq!(p.objects.len(), 2);
    assert_eq!(p.errors.len(), 3);
    let docs: Vec<_> = p.errors.iter().map(|e| e.location.document).collect();
    assert_eq!(docs, vec![2, 4, 5]);
}

#[test]
fn unknown_fields_in_core_objects() {
    let e = one_error(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  typ: LoadBalancer\n",
    );
    assert!(e.to_string().contains("spec.typ: unknown field"), "{e}");
    let e = one_error(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n  - prot: 81\n",
    );
    assert!(
        e.to_string().contains("spec.ports[1].prot: unknown field"),
        "{e}"
    );
    let e = one_error(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  podCIRDs: [10.0.0.0/24]\n",
    );
    assert!(
        e.to_string().contains("spec.podCIRDs: unknown field"),
        "{e}"
    );
    // Nulls and empty values that encoders omit are not mistaken for unknown fields.
    ok(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  creationTimestamp: null\n  labels: {}\nspec:\n  ports: []\n  selector: {}\nstatus:\n  loadBalancer: {}\n",
    );
}

#[test]
fn validation_errors_carry_the_field_line() {
    let text = format!(
        "{PC}  {{}}\n---\n{CC}  bgpInstances:\n  - name: i\n    localASN: 0\n    peers:\n    - name: p\n      peerASN: 1\n"
    );
    let p = parse_documents("lines.yaml", &text);
    assert_eq!(p.errors.len(), 1);
    let e = &p.errors[0];
    assert_eq!(e.location.line, Some(15), "{e}");
    let Problem::Invalid(fields) = &e.problem else {
        panic!("{e}")
    };
    let lines: Vec<_> = fields.iter().map(|f| (f.path.as_str(), f.line)).collect();
    // The peer has neither address nor autoDiscovery: reported at the peer's line.
    assert_eq!(
        lines,
        vec![
            ("spec.bgpInstances[0].localASN", Some(15)),
            ("spec.bgpInstances[0].peers[0]", Some(17))
        ]
    );
    assert!(
        e.to_string()
            .contains("spec.bgpInstances[0].localASN (line 15): 0 is out of range"),
        "{e}"
    );
    // Dotted label keys and missing fields resolve to the closest written node.
    let text = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n\n  labels:\n    ok: v\n    example.com/bad key: v\n";
    let e = one_error(text);
    assert_eq!(e.location.line, Some(7), "{e}");
    let e = one_error(&format!("{CC}  bgpInstances: []\n"));
    assert_eq!(e.location.line, Some(6), "{e}");
}

/// A marker followed only by a comment, then the real document's marker (as when files are
/// concatenated, or a comment introduces the next object): one object, no error.
#[test]
fn a_comment_between_markers_is_no_document() {
    let p = rackd_model::parse_documents(
        "c.yaml",
        "---\n# the pool\n---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec:\n  blocks: [{cidr: 10.0.0.0/24}]\n",
    );
    assert!(p.errors.is_empty(), "{:#?}", p.errors);
    assert_eq!(p.objects.len(), 1);
    assert_eq!(p.objects[0].origin.location.line, Some(4));
}

// ===== Pods =====

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  namespace: shop\n  labels:\n    app: web\n";

#[test]
fn pods() {
    invalid_at(
        &format!("{POD}status:\n  podIPs:\n  - ip: 10.244.0.300\n"),
        "status.podIPs[0].ip",
    );
    invalid_at(&format!("{POD}status:\n  podIP: x\n"), "status.podIP");
    let e = one_error(&format!("{POD}spec:\n  nodeName: [a]\n"));
    assert!(
        matches!(&e.problem, Problem::Decode { path, .. } if path == "spec.nodeName"),
        "{e}"
    );
    let e = one_error(&format!("{POD}spec:\n  nodname: n1\n"));
    assert!(matches!(e.problem, Problem::Decode { .. }), "{e}");
    assert!(e.to_string().contains("nodname"), "{e}");
    let e = one_error(&format!("{POD}extra: 1\n"));
    assert!(e.to_string().contains("extra"), "{e}");
    let e = one_error("apiVersion: v2\nkind: Pod\nmetadata:\n  name: p\n");
    assert!(
        matches!(e.problem, Problem::UnknownApiVersion { .. }),
        "{e}"
    );
    invalid_at(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Web_0\n",
        "metadata.name",
    );

    // Positive control, and what the service datapath reads from it.
    let yaml = format!(
        "{POD}spec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: x\nstatus:\n  podIP: 10.244.1.5\n  podIPs:\n  - ip: 10.244.1.5\n  - ip: fd00:244:1::5\n"
    );
    ok(&yaml);
    let snap = rackd_model::Snapshot::build(
        &[parse_documents("pods.yaml", &yaml)],
        &rackd_model::CheckOptions::default(),
    )
    .snapshot;
    let pod = snap.pod("shop", "web-0").unwrap();
    assert_eq!(rackd_model::pod_node(pod), Some("n1"));
    assert_eq!(
        rackd_model::pod_ips(pod),
        vec![
            "10.244.1.5".parse::<std::net::IpAddr>().unwrap(),
            "fd00:244:1::5".parse().unwrap()
        ]
    );
    assert_eq!(
        pod.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("app")
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(snap.pods().count(), 1);
    assert!(snap.pod("default", "web-0").is_none());
    // A Pod without a namespace lands in `default`, as the API server does.
    let snap = rackd_model::Snapshot::build(
        &[parse_documents(
            "p.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\nstatus:\n  podIP: 10.0.0.9\n",
        )],
        &rackd_model::CheckOptions::default(),
    )
    .snapshot;
    let pod = snap.pod("default", "solo").unwrap();
    assert_eq!(rackd_model::pod_node(pod), None);
    assert_eq!(
        rackd_model::pod_ips(pod),
        vec!["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]
    );
}

// ===== Namespaces =====

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: hoth\n";

/// A Namespace is read for its labels only (the egress gateway's `namespaceSelector`): its
/// name is a DNS-1123 label, its labels are label maps, unknown fields and wrong types are
/// errors like any core object's.
#[test]
fn namespaces() {
    // A Namespace name is a label: no dots (most objects' names are DNS subdomains), no
    // upper case, at most 63 characters.
    for bad in ["out.post", "Hoth", "-hoth", &"n".repeat(64)] {
        let e = invalid_at(
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: '{bad}'\n"),
            "metadata.name",
        );
        assert!(e.contains("not a valid Namespace name"), "{e}");
    }
    let e = one_error("apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n");
    assert!(
        e.to_string().contains("metadata.name (line 4): missing"),
        "{e}"
    );
    invalid_at(
        &format!("{NS}  labels:\n    'bad key': v\n"),
        "metadata.labels.bad key",
    );
    let e = one_error(&format!("{NS}  labels: [tier]\n"));
    assert!(
        matches!(&e.problem, Problem::Decode { path, .. } if path == "metadata.labels"),
        "{e}"
    );
    let e = one_error(&format!("{NS}spec:\n  finalizers: kubernetes\n"));
    assert!(
        matches!(&e.problem, Problem::Decode { path, .. } if path == "spec.finalizers"),
        "{e}"
    );
    let e = one_error(&format!("{NS}spec:\n  finaliser: [kubernetes]\n"));
    assert!(
        e.to_string().contains("spec.finaliser: unknown field"),
        "{e}"
    );
    let e = one_error(&format!("{NS}extra: 1\n"));
    assert!(e.to_string().contains("extra"), "{e}");
    let e = one_error("apiVersion: v2\nkind: Namespace\nmetadata:\n  name: hoth\n");
    assert!(
        matches!(e.problem, Problem::UnknownApiVersion { .. }),
        "{e}"
    );

    // Positive control, as `kubectl get ns -o yaml` shows one: cluster-scoped (a namespace
    // given in its metadata is dropped, as the API server does), labels kept.
    let yaml = format!(
        "{NS}  namespace: default\n  labels:\n    kubernetes.io/metadata.name: hoth\n    tier: outpost\nspec:\n  finalizers: [kubernetes]\nstatus:\n  phase: Active\n"
    );
    ok(&yaml);
    let snap = rackd_model::Snapshot::build(
        &[parse_documents("ns.yaml", &yaml)],
        &rackd_model::CheckOptions::default(),
    )
    .snapshot;
    let all: Vec<_> = snap.namespaces().collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].metadata.namespace, None);
    assert_eq!(
        all[0]
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("tier")
            .map(String::as_str),
        Some("outpost")
    );
    let key = rackd_model::ObjectKey::cluster(rackd_model::Kind::Namespace, "hoth");
    assert!(snap.get(&key).is_some(), "keyed without a namespace");
}
