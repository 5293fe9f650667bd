//! kube-proxy's `iptables-restore` input for a set of Services, written the way
//! `pkg/proxy/iptables/proxier.go` (`syncProxyRules`, Kubernetes 1.29+) writes it.
//!
//! Our own code, following kube-proxy's output line by line: the same chains (KUBE-SERVICES,
//! KUBE-SVC-*, KUBE-SVL-*, KUBE-EXT-*, KUBE-SEP-*, KUBE-MARK-MASQ, KUBE-POSTROUTING, the filter
//! table's KUBE-FORWARD...), the same argument order, the same `statistic` probabilities
//! (`%0.10f` of 1/n), the same chain-name hashes ([`crate::hash`]), and the same "large cluster
//! mode" (more than 1000 endpoints: no comments on the SVC/SEP rules). kube-proxy feeds this to
//! `iptables-restore -w 5 -W 100000 --noflush --counters`.
//!
//! Settings assumed (kube-proxy's defaults): `--masquerade-bit 14`, `--cluster-cidr` set (the
//! local-traffic detector is by CIDR), `nodePortAddresses` unset (match all),
//! `localhostNodePorts` true, `nf_conntrack_tcp_be_liberal` 0, `--random-fully` supported.
//! All endpoints are ready and on this node.

use std::fmt::Write as _;

use crate::hash::chain_suffix;
use crate::model::{CLUSTER_CIDR, Policy, ServiceSpec};

/// kube-proxy's masquerade mark for bit 14, as `fmt.Sprintf("%#08x", 1<<14)` prints it.
pub const MASQ_MARK: &str = "0x004000";

/// kube-proxy's `largeClusterEndpointsThreshold`.
const LARGE_CLUSTER_ENDPOINTS: u64 = 1000;

/// Which Services' own chains a sync writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync<'a> {
    /// Full sync: every Service's chains (a fresh node, or kube-proxy's hourly resync).
    Full,
    /// Partial sync after one Service's endpoints changed: KUBE-SERVICES and the other
    /// top-level chains are still rewritten in full, but only this Service's SVC/EXT/SEP chains.
    Partial(&'a str),
}

/// A generated restore input and what it contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreInput {
    /// The text for `iptables-restore --noflush`.
    pub text: String,
    /// Rules (`-A`/`-I` lines) in the nat table.
    pub nat_rules: u64,
    /// Chain lines in the nat table.
    pub nat_chains: u64,
    /// Rules in the filter table.
    pub filter_rules: u64,
}

impl RestoreInput {
    fn rule(&mut self, nat: bool, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        if nat {
            self.nat_rules += 1;
        } else {
            self.filter_rules += 1;
        }
    }
}

/// Chain names of one Service port.
struct Names {
    svc: String,
    svl: String,
    ext: String,
}

fn names(s: &ServiceSpec) -> Names {
    let h = chain_suffix(&[&s.port_name, s.proto.as_str()]);
    Names {
        svc: format!("KUBE-SVC-{h}"),
        svl: format!("KUBE-SVL-{h}"),
        ext: format!("KUBE-EXT-{h}"),
    }
}

fn sep_chain(s: &ServiceSpec, ep: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        chain_suffix(&[&s.port_name, s.proto.as_str(), ep])
    )
}

fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// The restore input of one `syncProxyRules` for `services` (`total_endpoints` decides large
/// cluster mode, as kube-proxy counts it before writing).
pub fn restore_input(
    services: impl Iterator<Item = ServiceSpec>,
    total_endpoints: u64,
    sync: Sync<'_>,
) -> RestoreInput {
    let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS;
    let mut out = RestoreInput::default();
    // The nat table's rules go to a second buffer: kube-proxy writes all chain lines first.
    let mut nat = RestoreInput::default();

    out.text.push_str("*filter\n");
    for c in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
        "KUBE-FIREWALL",
    ] {
        let _ = writeln!(out.text, ":{c} - [0:0]");
    }
    out.rule(
        false,
        "-A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" \
         -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
    );
    out.rule(
        false,
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
    );
    out.rule(
        false,
        &format!(
            "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" \
             -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"
        ),
    );
    out.rule(
        false,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" \
         -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );
    out.text.push_str("COMMIT\n*nat\n");
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(out.text, ":{c} - [0:0]");
        out.nat_chains += 1;
    }
    nat.rule(
        true,
        &format!("-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
    );
    nat.rule(
        true,
        &format!("-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}"),
    );
    nat.rule(
        true,
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" \
         -j MASQUERADE --random-fully",
    );
    nat.rule(
        true,
        &format!("-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}"),
    );

    for s in services {
        write_service(&mut out, &mut nat, &s, large, sync);
    }
    nat.rule(
        true,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be \
         the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
    );
    out.text.push_str(&nat.text);
    out.text.push_str("COMMIT\n");
    out.nat_rules += nat.nat_rules;
    out
}

fn write_service(
    out: &mut RestoreInput,
    nat: &mut RestoreInput,
    s: &ServiceSpec,
    large: bool,
    sync: Sync<'_>,
) {
    let p = s.proto.as_str();
    let n = names(s);
    let name = &s.port_name;
    let port = s.port;
    if s.endpoints.is_empty() {
        // kube-proxy REJECTs in the filter table; our workloads always have endpoints.
        out.rule(
            false,
            &format!(
                "-A KUBE-SERVICES -m comment --comment \"{name} has no endpoints\" -m {p} -p {p} \
                 -d {} --dport {port} -j REJECT",
                s.cluster_ip
            ),
        );
        return;
    }
    // Capture the cluster IP and the LoadBalancer IPs (always written, even in a partial sync).
    nat.rule(
        true,
        &format!(
            "-A KUBE-SERVICES -m comment --comment \"{name} cluster IP\" -m {p} -p {p} -d {} \
             --dport {port} -j {}",
            s.cluster_ip, n.svc
        ),
    );
    for lb in &s.lb_ips {
        nat.rule(
            true,
            &format!(
                "-A KUBE-SERVICES -m comment --comment \"{name} loadbalancer IP\" -m {p} -p {p} \
                 -d {lb} --dport {port} -j {}",
                n.ext
            ),
        );
    }
    if let Sync::Partial(only) = sync
        && only != name
    {
        return;
    }
    let chain = |out: &mut RestoreInput, c: &str| {
        let _ = writeln!(out.text, ":{c} - [0:0]");
        out.nat_chains += 1;
    };
    // Internal traffic from outside the cluster CIDR is masqueraded.
    nat.rule(
        true,
        &format!(
            "-A {} -m comment --comment \"{name} cluster IP\" -m {p} -p {p} -d {} --dport {port} \
             ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ",
            n.svc, s.cluster_ip
        ),
    );
    if !s.lb_ips.is_empty() {
        chain(out, &n.ext);
        let ext = &n.ext;
        match s.policy {
            Policy::Cluster => nat.rule(
                true,
                &format!(
                    "-A {ext} -m comment --comment \"masquerade traffic for {name} external \
                     destinations\" -j KUBE-MARK-MASQ"
                ),
            ),
            Policy::Local => {
                nat.rule(
                    true,
                    &format!(
                        "-A {ext} -m comment --comment \"pod traffic for {name} external \
                         destinations\" -s {CLUSTER_CIDR} -j {}",
                        n.svc
                    ),
                );
                nat.rule(
                    true,
                    &format!(
                        "-A {ext} -m comment --comment \"masquerade LOCAL traffic for {name} \
                         external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
                    ),
                );
                nat.rule(
                    true,
                    &format!(
                        "-A {ext} -m comment --comment \"route LOCAL traffic for {name} external \
                         destinations\" -m addrtype --src-type LOCAL -j {}",
                        n.svc
                    ),
                );
            }
        }
        let policy_chain = match s.policy {
            Policy::Cluster => &n.svc,
            Policy::Local => &n.svl,
        };
        nat.rule(true, &format!("-A {ext} -j {policy_chain}"));
    }
    let eps: Vec<(String, String)> = s
        .endpoints
        .iter()
        .map(|e| {
            let ep = e.to_string();
            (sep_chain(s, &ep), ep)
        })
        .collect();
    let mut policy_chains = vec![&n.svc];
    if s.policy == Policy::Local {
        policy_chains.push(&n.svl);
    }
    for pc in policy_chains {
        chain(out, pc);
        let count = eps.len();
        for (i, (sep, ep)) in eps.iter().enumerate() {
            let mut line = format!("-A {pc}");
            if !large {
                let _ = write!(line, " -m comment --comment \"{name} -> {ep}\"");
            }
            if i + 1 < count {
                let _ = write!(
                    line,
                    " -m statistic --mode random --probability {}",
                    probability(count - i)
                );
            }
            let _ = write!(line, " -j {sep}");
            nat.rule(true, &line);
        }
    }
    for (sep, ep) in &eps {
        chain(out, sep);
        let comment = if large {
            String::new()
        } else {
            format!(" -m comment --comment {name}")
        };
        let ip = ep.split(':').next().unwrap_or(ep);
        nat.rule(
            true,
            &format!("-A {sep}{comment} -s {ip} -j KUBE-MARK-MASQ"),
        );
        nat.rule(
            true,
            &format!("-A {sep}{comment} -m {p} -p {p} -j DNAT --to-destination {ep}"),
        );
    }
}

/// The jump rules kube-proxy (and kubelet) insert with separate `iptables -I` calls before its
/// first restore (`iptablesJumpChains`), as one restore input for a fresh namespace. Not part of
/// the timed programming: kube-proxy does this once at start.
pub fn jump_rules() -> RestoreInput {
    let mut out = RestoreInput::default();
    out.text.push_str("*filter\n");
    for c in [
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-SERVICES",
        "KUBE-FORWARD",
        "KUBE-PROXY-FIREWALL",
        "KUBE-FIREWALL",
    ] {
        let _ = writeln!(out.text, ":{c} - [0:0]");
    }
    let new = "-m conntrack --ctstate NEW ";
    for (chain, target, comment, extra) in [
        (
            "INPUT",
            "KUBE-EXTERNAL-SERVICES",
            "kubernetes externally-visible service portals",
            new,
        ),
        (
            "FORWARD",
            "KUBE-EXTERNAL-SERVICES",
            "kubernetes externally-visible service portals",
            new,
        ),
        (
            "INPUT",
            "KUBE-NODEPORTS",
            "kubernetes health check service ports",
            "",
        ),
        (
            "FORWARD",
            "KUBE-SERVICES",
            "kubernetes service portals",
            new,
        ),
        ("OUTPUT", "KUBE-SERVICES", "kubernetes service portals", new),
        ("FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules", ""),
        (
            "INPUT",
            "KUBE-PROXY-FIREWALL",
            "kubernetes load balancer firewall",
            new,
        ),
        (
            "OUTPUT",
            "KUBE-PROXY-FIREWALL",
            "kubernetes load balancer firewall",
            new,
        ),
        (
            "FORWARD",
            "KUBE-PROXY-FIREWALL",
            "kubernetes load balancer firewall",
            new,
        ),
    ] {
        out.rule(
            false,
            &format!("-I {chain} {extra}-m comment --comment \"{comment}\" -j {target}"),
        );
    }
    out.rule(false, "-I INPUT -j KUBE-FIREWALL");
    out.rule(false, "-I OUTPUT -j KUBE-FIREWALL");
    out.text.push_str("COMMIT\n*nat\n");
    for c in ["KUBE-SERVICES", "KUBE-POSTROUTING"] {
        let _ = writeln!(out.text, ":{c} - [0:0]");
        out.nat_chains += 1;
    }
    for (chain, target, comment) in [
        ("OUTPUT", "KUBE-SERVICES", "kubernetes service portals"),
        ("PREROUTING", "KUBE-SERVICES", "kubernetes service portals"),
        (
            "POSTROUTING",
            "KUBE-POSTROUTING",
            "kubernetes postrouting rules",
        ),
    ] {
        out.rule(
            true,
            &format!("-I {chain} -m comment --comment \"{comment}\" -j {target}"),
        );
    }
    out.text.push_str("COMMIT\n");
    out
}

/// `input` with [`jump_rules`] merged into its table sections, for a restore *without*
/// `--noflush` (which replaces every table it names, so the jumps must be in the same sections):
/// a whole node's nat and filter tables in one input.
pub fn with_jumps(input: &RestoreInput) -> String {
    let jumps = jump_rules();
    let mut out = String::with_capacity(input.text.len() + jumps.text.len());
    let mut table = "";
    let mut inserted = false;
    for line in input.text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t;
            inserted = false;
        } else if !inserted && !line.starts_with(':') {
            // First rule (or COMMIT) of the section: the chains are declared by now.
            let mut in_table = false;
            for j in jumps.text.lines() {
                if let Some(t) = j.strip_prefix('*') {
                    in_table = t == table;
                } else if in_table && j.starts_with("-I ") {
                    out.push_str(j);
                    out.push('\n');
                }
            }
            inserted = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Shape, Workload};

    #[test]
    fn small_service_shape() {
        let w = Workload::new(1, 3, Shape::LoadBalancer, Policy::Cluster).unwrap();
        let r = restore_input(w.all(), w.endpoints(), Sync::Full);
        let t = &r.text;
        assert!(t.starts_with("*filter\n"));
        assert!(t.ends_with("COMMIT\n"));
        // Three endpoints: probabilities 1/3, 1/2, then an unconditional jump.
        assert!(t.contains("--probability 0.3333333333 -j KUBE-SEP-"), "{t}");
        assert!(t.contains("--probability 0.5000000000 -j KUBE-SEP-"), "{t}");
        assert!(t.contains("-m tcp -p tcp -j DNAT --to-destination 10.128.0.3:8080"));
        assert!(t.contains("-m comment --comment \"bench/svc-00000:http -> 10.128.0.1:8080\""));
        assert!(t.contains("\"bench/svc-00000:http loadbalancer IP\" -m tcp -p tcp -d 100.64.0.1"));
        assert!(t.contains("-j MASQUERADE --random-fully"));
        assert!(t.contains(&format!("--or-mark {MASQ_MARK}")));
        // KUBE-SERVICES(2) + SVC masq(1) + EXT(2) + SVC(3) + SEP(3x2) + 4 fixed + nodeports.
        assert_eq!(r.nat_rules, 2 + 1 + 2 + 3 + 6 + 4 + 1);
        // 4 fixed + EXT + SVC + 3 SEP.
        assert_eq!(r.nat_chains, 4 + 1 + 1 + 3);
        assert_eq!(r.filter_rules, 4);
    }

    #[test]
    fn large_cluster_mode_drops_comments() {
        let w = Workload::new(200, 10, Shape::ClusterIp, Policy::Cluster).unwrap();
        let r = restore_input(w.all(), w.endpoints(), Sync::Full);
        assert!(!r.text.contains(" -> 10.128."));
        assert!(r.text.contains("\"bench/svc-00199:http cluster IP\""));
        // KUBE-SERVICES(1) + masq(1) + SVC(10) + SEP(20) per Service.
        assert_eq!(r.nat_rules, 200 * 32 + 5);
    }

    #[test]
    fn partial_sync_rewrites_only_the_changed_service() {
        let w = Workload::new(100, 10, Shape::LoadBalancer, Policy::Cluster).unwrap();
        let c = w.changed_index();
        let changed = w.service_changed(c);
        let r = restore_input(
            w.all_with_change(c),
            w.endpoints(),
            Sync::Partial(&changed.port_name),
        );
        // Every Service's KUBE-SERVICES rules, one Service's chains.
        assert_eq!(r.nat_chains, 4 + 1 + 1 + 10);
        assert_eq!(r.nat_rules, 100 * 2 + (1 + 2 + 10 + 20) + 4 + 1);
        assert!(r.text.contains("--to-destination 10.192.0.51:8080"));
    }

    #[test]
    fn jumps_merged_into_sections() {
        let w = Workload::new(1, 1, Shape::ClusterIp, Policy::Cluster).unwrap();
        let r = restore_input(w.all(), w.endpoints(), Sync::Full);
        let t = with_jumps(&r);
        assert_eq!(t.matches("*nat").count(), 1);
        assert_eq!(t.matches("-I ").count(), 14);
        let nat = t.split("*nat").nth(1).unwrap();
        assert!(nat.contains("-I PREROUTING -m comment --comment \"kubernetes service portals\""));
        assert!(!nat.contains("-I INPUT"));
    }

    #[test]
    fn local_policy_has_svl_chain() {
        let w = Workload::new(1, 2, Shape::LoadBalancer, Policy::Local).unwrap();
        let r = restore_input(w.all(), w.endpoints(), Sync::Full);
        assert!(r.text.contains(":KUBE-SVL-"));
        assert!(r.text.contains("--src-type LOCAL -j KUBE-MARK-MASQ"));
        assert!(!r.text.contains("masquerade traffic for"));
    }
}
