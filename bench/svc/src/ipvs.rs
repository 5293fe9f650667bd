//! `ipvsadm -R` input for the same Services: one virtual service per frontend (cluster IP and
//! LoadBalancer IPs), round robin, one masquerading real server per endpoint, as kube-proxy's
//! IPVS mode programs them (`-s rr`, `-m`, weight 1).
//!
//! kube-proxy's IPVS mode also binds every frontend address to its `kube-ipvs0` dummy device and
//! fills ipsets for its iptables rules; both are left out here (the issue asks for `ipvsadm -R`),
//! so these figures are a lower bound for kube-proxy's IPVS programming.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::ServiceSpec;

/// Frontends of a Service as `addr:port`.
fn frontends(s: &ServiceSpec) -> impl Iterator<Item = (Ipv4Addr, u16)> + '_ {
    std::iter::once(s.cluster_ip)
        .chain(s.lb_ips.iter().copied())
        .map(|a| (a, s.port))
}

fn flag(s: &ServiceSpec) -> &'static str {
    match s.proto {
        crate::model::Proto::Tcp => "-t",
        crate::model::Proto::Udp => "-u",
    }
}

/// Restore input creating every virtual service and real server; also returns the number of
/// virtual services.
pub fn restore_input(services: impl Iterator<Item = ServiceSpec>) -> (String, u64) {
    let mut out = String::new();
    let mut count = 0u64;
    for s in services {
        let f = flag(&s);
        for (addr, port) in frontends(&s) {
            count += 1;
            let _ = writeln!(out, "-A {f} {addr}:{port} -s rr");
            for ep in &s.endpoints {
                let _ = writeln!(out, "-a {f} {addr}:{port} -r {ep} -m -w 1");
            }
        }
    }
    (out, count)
}

/// Restore input turning `before` into `after` (same frontends, endpoints changed): deletes the
/// real servers that went away, adds the new ones.
pub fn change_input(before: &ServiceSpec, after: &ServiceSpec) -> String {
    let mut out = String::new();
    let f = flag(after);
    for (addr, port) in frontends(after) {
        for ep in before
            .endpoints
            .iter()
            .filter(|e| !after.endpoints.contains(e))
        {
            let _ = writeln!(out, "-d {f} {addr}:{port} -r {ep}");
        }
        for ep in after
            .endpoints
            .iter()
            .filter(|e| !before.endpoints.contains(e))
        {
            let _ = writeln!(out, "-a {f} {addr}:{port} -r {ep} -m -w 1");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Policy, Shape, Workload};

    #[test]
    fn shape() {
        let w = Workload::new(2, 2, Shape::LoadBalancer, Policy::Cluster).unwrap();
        let (text, vs) = restore_input(w.all());
        assert_eq!(vs, 4);
        assert_eq!(text.lines().count(), 4 * 3);
        assert!(text.contains("-A -t 100.64.0.2:80 -s rr\n"));
        assert!(text.contains("-a -t 10.96.0.2:80 -r 10.128.0.4:8080 -m -w 1\n"));
        let c = change_input(&w.service(1), &w.service_changed(1));
        assert_eq!(
            c,
            "-d -t 10.96.0.2:80 -r 10.128.0.3:8080\n-a -t 10.96.0.2:80 -r 10.192.0.2:8080 -m -w 1\n\
             -d -t 100.64.0.2:80 -r 10.128.0.3:8080\n-a -t 100.64.0.2:80 -r 10.192.0.2:8080 -m -w 1\n"
        );
    }
}
