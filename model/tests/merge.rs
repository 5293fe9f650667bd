//! Snapshot cross-object checks and the last-good merge.
#![allow(clippy::unwrap_used)]

use rackd_model::{
    Change, CheckOptions, Kind, MergeOutcome, ObjectKey, ParsedSource, Problem, Snapshot,
    parse_documents, secret_value,
};

fn peer(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata:\n  name: {name}\nspec:\n  ebgpMultihop: 1\n{extra}"
    )
}

fn secret(ns: &str, name: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n  {key}: s3cret\n"
    )
}

fn cluster(peer_ref: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata:\n  name: cc\nspec:\n  bgpInstances:\n  - name: i\n    localASN: 65001\n    peers:\n    - name: tor\n      peerAddress: 10.0.0.1\n      peerASN: 65000\n      peerConfigRef:\n        name: {peer_ref}\n"
    )
}

fn pool(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: {name}\nspec:\n  blocks:\n  - cidr: {cidr}\n"
    )
}

fn docs(parts: &[&str]) -> String {
    parts.join("---\n")
}

fn build(sources: &[(&str, &str)]) -> MergeOutcome {
    let parsed: Vec<ParsedSource> = sources.iter().map(|(n, t)| parse_documents(n, t)).collect();
    Snapshot::build(&parsed, &CheckOptions::default())
}

fn merge(prev: &Snapshot, sources: &[(&str, &str)]) -> MergeOutcome {
    let parsed: Vec<ParsedSource> = sources.iter().map(|(n, t)| parse_documents(n, t)).collect();
    Snapshot::merge(prev, &parsed, &CheckOptions::default())
}

fn pool_cidr(s: &Snapshot, name: &str) -> Option<String> {
    s.lb_ip_pools()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| p.spec.blocks[0].cidr.clone())
}

#[test]
fn invalid_new_version_keeps_previous() {
    let first = build(&[("pools.yaml", &pool("a", "10.0.0.0/24"))]);
    assert!(first.errors.is_empty());
    let next = merge(
        &first.snapshot,
        &[("pools.yaml", &pool("a", "10.0.0.0/99"))],
    );
    assert_eq!(next.errors.len(), 1);
    assert!(next.errors[0].kept_previous);
    assert!(
        next.errors[0]
            .to_string()
            .ends_with("(keeping the last good version)"),
        "{}",
        next.errors[0]
    );
    assert_eq!(
        pool_cidr(&next.snapshot, "a").as_deref(),
        Some("10.0.0.0/24")
    );
    // Fixing it applies the new version.
    let fixed = merge(&next.snapshot, &[("pools.yaml", &pool("a", "10.0.1.0/24"))]);
    assert!(fixed.errors.is_empty());
    assert_eq!(
        pool_cidr(&fixed.snapshot, "a").as_deref(),
        Some("10.0.1.0/24")
    );
}

#[test]
fn invalid_object_without_previous_is_left_out() {
    let out = build(&[(
        "pools.yaml",
        &docs(&[&pool("a", "bad"), &pool("b", "10.0.0.0/24")]),
    )]);
    assert_eq!(out.errors.len(), 1);
    assert!(!out.errors[0].kept_previous);
    assert_eq!(out.snapshot.len(), 1);
    assert!(pool_cidr(&out.snapshot, "b").is_some());
}

#[test]
fn unparseable_document_keeps_previous_objects_of_that_source() {
    let good = docs(&[&pool("a", "10.0.0.0/24"), &pool("b", "10.0.1.0/24")]);
    let first = build(&[
        ("pools.yaml", &good),
        ("other.yaml", &pool("c", "10.0.2.0/24")),
    ]);
    assert!(first.errors.is_empty());
    // `b` becomes invalid YAML (so its name is unknown), `a` is edited, `c`'s file deleted.
    let broken = docs(&[
        &pool("a", "10.0.9.0/24"),
        "apiVersion: cilium.io/v2\nkind: [oops\n",
    ]);
    let next = merge(&first.snapshot, &[("pools.yaml", &broken)]);
    assert_eq!(next.errors.len(), 1);
    assert!(matches!(next.errors[0].problem, Problem::Yaml { .. }));
    assert_eq!(
        pool_cidr(&next.snapshot, "a").as_deref(),
        Some("10.0.9.0/24")
    );
    assert_eq!(
        pool_cidr(&next.snapshot, "b").as_deref(),
        Some("10.0.1.0/24"),
        "b must not disappear"
    );
    assert_eq!(
        pool_cidr(&next.snapshot, "c"),
        None,
        "deleting a whole file deletes its objects"
    );
}

#[test]
fn unknown_kind_retains_only_objects_of_that_name() {
    let first = build(&[(
        "pools.yaml",
        &docs(&[&pool("a", "10.0.0.0/24"), &pool("b", "10.0.1.0/24")]),
    )]);
    // `b` removed from the file, plus a document of a kind we do not know: that
    // document is identified, so `b` really is deleted.
    let text = docs(&[
        &pool("a", "10.0.0.0/24"),
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: x\n",
    ]);
    let next = merge(&first.snapshot, &[("pools.yaml", &text)]);
    assert_eq!(next.errors.len(), 1);
    assert_eq!(next.snapshot.len(), 1);
    assert!(!next.errors[0].kept_previous);
    // A misspelt kind on an existing object keeps that object.
    let text = docs(&[
        &pool("a", "10.0.0.0/24"),
        &pool("b", "10.0.1.0/24").replace(
            "kind: CiliumLoadBalancerIPPool",
            "kind: CiliumLoadBalancerIPPol",
        ),
    ]);
    let next = merge(&first.snapshot, &[("pools.yaml", &text)]);
    assert_eq!(next.errors.len(), 1);
    assert!(next.errors[0].kept_previous);
    assert_eq!(
        pool_cidr(&next.snapshot, "b").as_deref(),
        Some("10.0.1.0/24")
    );
}

#[test]
fn unreadable_source_keeps_everything_from_it() {
    let first = build(&[("pools.yaml", &pool("a", "10.0.0.0/24"))]);
    let next = Snapshot::merge(
        &first.snapshot,
        &[ParsedSource::unreadable("pools.yaml", "permission denied")],
        &CheckOptions::default(),
    );
    assert_eq!(next.errors.len(), 1);
    assert!(
        next.errors[0]
            .to_string()
            .contains("cannot read source: permission denied")
    );
    assert!(pool_cidr(&next.snapshot, "a").is_some());
}

#[test]
fn deletion_and_unchanged_merge_is_idempotent() {
    let text = docs(&[&pool("a", "10.0.0.0/24"), &pool("b", "10.0.1.0/24")]);
    let first = build(&[("pools.yaml", &text)]);
    let again = merge(&first.snapshot, &[("pools.yaml", &text)]);
    assert!(again.errors.is_empty());
    assert_eq!(again.snapshot, first.snapshot);
    let fewer = merge(
        &first.snapshot,
        &[("pools.yaml", &pool("a", "10.0.0.0/24"))],
    );
    assert!(fewer.errors.is_empty());
    assert_eq!(fewer.snapshot.len(), 1);
}

#[test]
fn duplicate_names_within_a_kind() {
    let out = build(&[
        ("1.yaml", &pool("a", "10.0.0.0/24")),
        (
            "2.yaml",
            &docs(&[&pool("a", "10.0.1.0/24"), &peer("a", "")]),
        ),
    ]);
    assert_eq!(out.errors.len(), 1, "{:#?}", out.errors);
    let e = &out.errors[0];
    assert!(matches!(e.problem, Problem::Duplicate { .. }));
    assert_eq!(e.location.source, "2.yaml");
    assert!(
        e.to_string()
            .contains("already defined at 1.yaml: document 1"),
        "{e}"
    );
    assert_eq!(
        pool_cidr(&out.snapshot, "a").as_deref(),
        Some("10.0.0.0/24")
    );
    // Same name, different kind: no clash.
    assert!(out.snapshot.bgp_peer_config("a").is_some());
    // Same name in different namespaces: no clash either.
    let out = build(&[(
        "s.yaml",
        &docs(&[
            &secret("ns1", "s", "password"),
            &secret("ns2", "s", "password"),
        ]),
    )]);
    assert!(out.errors.is_empty());
}

#[test]
fn missing_auth_secret_is_an_error_on_the_peer_config() {
    let out = build(&[("bgp.yaml", &peer("tor", "  authSecretRef: bgp-auth\n"))]);
    assert_eq!(out.errors.len(), 1);
    let e = &out.errors[0];
    assert_eq!(
        e.object.as_ref().unwrap().to_string(),
        "CiliumBGPPeerConfig tor"
    );
    let s = e.to_string();
    assert!(
        s.contains("spec.authSecretRef: Secret kube-system/bgp-auth does not exist"),
        "{s}"
    );
    assert!(out.snapshot.bgp_peer_config("tor").is_none());

    // Secret in the wrong namespace, or without `password`.
    let out = build(&[(
        "bgp.yaml",
        &docs(&[
            &peer("tor", "  authSecretRef: bgp-auth\n"),
            &secret("default", "bgp-auth", "password"),
        ]),
    )]);
    assert_eq!(out.errors.len(), 1);
    let out = build(&[(
        "bgp.yaml",
        &docs(&[
            &peer("tor", "  authSecretRef: bgp-auth\n"),
            &secret("kube-system", "bgp-auth", "passwd"),
        ]),
    )]);
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0]
            .to_string()
            .contains("has no key \"password\"")
    );

    // Present: fine, and the password is readable.
    let out = build(&[(
        "bgp.yaml",
        &docs(&[
            &peer("tor", "  authSecretRef: bgp-auth\n"),
            &secret("kube-system", "bgp-auth", "password"),
        ]),
    )]);
    assert!(out.errors.is_empty());
    let s = out.snapshot.secret("kube-system", "bgp-auth").unwrap();
    assert_eq!(secret_value(s, "password"), Some(&b"s3cret"[..]));

    // The namespace is configurable (Cilium --bgp-secrets-namespace).
    let parsed = parse_documents(
        "bgp.yaml",
        &docs(&[
            &peer("tor", "  authSecretRef: bgp-auth\n"),
            &secret("default", "bgp-auth", "password"),
        ]),
    );
    let out = Snapshot::build(
        &[parsed],
        &CheckOptions {
            bgp_secrets_namespace: "default".into(),
        },
    );
    assert!(out.errors.is_empty());
}

#[test]
fn base64_secret_data() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bgp-auth\n  namespace: kube-system\ndata:\n  password: czNjcmV0\n";
    let out = build(&[("s.yaml", text)]);
    assert!(out.errors.is_empty());
    assert_eq!(
        secret_value(
            out.snapshot.secret("kube-system", "bgp-auth").unwrap(),
            "password"
        ),
        Some(&b"s3cret"[..])
    );
}

#[test]
fn changed_peer_config_with_broken_secret_reverts() {
    let first = build(&[("bgp.yaml", &peer("tor", ""))]);
    assert!(first.errors.is_empty());
    let next = merge(
        &first.snapshot,
        &[("bgp.yaml", &peer("tor", "  authSecretRef: nope\n"))],
    );
    assert_eq!(next.errors.len(), 1);
    assert!(next.errors[0].kept_previous);
    assert!(
        next.snapshot
            .bgp_peer_config("tor")
            .unwrap()
            .spec
            .auth_secret_ref
            .is_none()
    );
}

#[test]
fn deleting_a_referenced_secret_keeps_the_secret() {
    let s = secret("kube-system", "bgp-auth", "password");
    let first = build(&[
        ("bgp.yaml", &peer("tor", "  authSecretRef: bgp-auth\n")),
        ("secret.yaml", &s),
    ]);
    assert!(first.errors.is_empty());
    let next = merge(
        &first.snapshot,
        &[("bgp.yaml", &peer("tor", "  authSecretRef: bgp-auth\n"))],
    );
    assert_eq!(next.errors.len(), 1, "{:#?}", next.errors);
    assert!(next.errors[0].kept_previous);
    assert!(next.snapshot.secret("kube-system", "bgp-auth").is_some());
    assert!(next.snapshot.bgp_peer_config("tor").is_some());
}

#[test]
fn missing_peer_config_is_an_error_on_the_cluster_config() {
    let out = build(&[("bgp.yaml", &cluster("generic"))]);
    assert_eq!(out.errors.len(), 1);
    let s = out.errors[0].to_string();
    assert!(
        s.contains("spec.bgpInstances[0].peers[0].peerConfigRef.name: CiliumBGPPeerConfig generic does not exist"),
        "{s}"
    );
    let out = build(&[(
        "bgp.yaml",
        &docs(&[&cluster("generic"), &peer("generic", "")]),
    )]);
    assert!(out.errors.is_empty());

    // Cascade: a PeerConfig dropped for its Secret takes its ClusterConfig down with
    // it on a fresh build, since there is nothing older to run on.
    let out = build(&[(
        "bgp.yaml",
        &docs(&[
            &cluster("generic"),
            &peer("generic", "  authSecretRef: x\n"),
        ]),
    )]);
    assert_eq!(out.errors.len(), 2, "{:#?}", out.errors);
    assert!(out.snapshot.is_empty());
    let _ = ObjectKey::cluster(Kind::BgpClusterConfig, "cc");
}

#[test]
fn diff_reports_added_updated_removed_but_not_moves() {
    let first = build(&[(
        "1.yaml",
        &docs(&[&pool("a", "10.0.0.0/24"), &pool("b", "10.0.1.0/24")]),
    )]);
    // `a` moves to another file unchanged, `b` changes, `c` is new; then `c` goes.
    let next = merge(
        &first.snapshot,
        &[
            ("2.yaml", &pool("a", "10.0.0.0/24")),
            (
                "1.yaml",
                &docs(&[&pool("b", "10.0.2.0/24"), &pool("c", "10.0.3.0/24")]),
            ),
        ],
    );
    let pk = |n: &str| ObjectKey::cluster(Kind::LoadBalancerIPPool, n);
    assert_eq!(
        next.snapshot.diff(&first.snapshot),
        vec![(pk("b"), Change::Updated), (pk("c"), Change::Added)]
    );
    assert_eq!(
        first.snapshot.diff(&next.snapshot),
        vec![(pk("b"), Change::Updated), (pk("c"), Change::Removed)]
    );
    assert!(next.snapshot.diff(&next.snapshot).is_empty());
}
