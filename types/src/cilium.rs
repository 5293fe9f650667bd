//! Cilium's names that rackd reads or writes: LoadBalancer classes, annotations and labels
//! (cilium-compat.md §1.3, §2, §4).

/// `loadBalancerClass` handled by the BGP control plane (`BGPLoadBalancerClass`).
pub const CLASS_BGP_CONTROL_PLANE: &str = "io.cilium/bgp-control-plane";
/// `loadBalancerClass` handled by L2 announcements.
pub const CLASS_L2_ANNOUNCER: &str = "io.cilium/l2-announcer";

/// LB-IPAM: requested IPs, comma separated.
pub const ANNOTATION_IPS: &str = "lbipam.cilium.io/ips";
/// Older alias of [`ANNOTATION_IPS`].
pub const ANNOTATION_IPS_ALIAS: &str = "io.cilium/lb-ipam-ips";
/// LB-IPAM: the sharing key.
pub const ANNOTATION_SHARING_KEY: &str = "lbipam.cilium.io/sharing-key";
/// Older alias of [`ANNOTATION_SHARING_KEY`].
pub const ANNOTATION_SHARING_KEY_ALIAS: &str = "io.cilium/lb-ipam-sharing-key";
/// LB-IPAM: namespaces (or `*`) a service may share an IP with.
pub const ANNOTATION_SHARING_CROSS_NAMESPACE: &str = "lbipam.cilium.io/sharing-cross-namespace";
/// Older alias of [`ANNOTATION_SHARING_CROSS_NAMESPACE`].
pub const ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS: &str =
    "io.cilium/lb-ipam-sharing-cross-namespace";

/// Synthetic label carrying a Service's namespace, matched by service selectors.
pub const SERVICE_NAMESPACE_LABEL: &str = "io.kubernetes.service.namespace";
/// Synthetic label carrying a Service's name, matched by service selectors.
pub const SERVICE_NAME_LABEL: &str = "io.kubernetes.service.name";
/// Pod label Cilium uses to match an egress policy's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The label an EndpointSlice names its Service by (Kubernetes `discovery.k8s.io`).
pub const ENDPOINTSLICE_SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Key of the TCP-MD5 password in a BGP auth Secret.
pub const AUTH_SECRET_PASSWORD_KEY: &str = "password";
/// Namespace of BGP auth Secrets unless `--bgp-secrets-namespace` says otherwise (Helm's
/// `bgpControlPlane.secretsNamespace.name`).
pub const DEFAULT_BGP_SECRETS_NAMESPACE: &str = "kube-system";
