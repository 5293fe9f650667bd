//! The service datapath's tables, in the layout of `cilium service list` and
//! `cilium-dbg bpf lb|ct|nat list` (Go tabwriter, Cilium's settings).

use std::fmt::Write as _;

use rackd_api::lb::{CtEntry, LbMapEntry, LbService, NatEntry};

use crate::tabwriter::TabWriter;

/// `addr:port`, IPv6 in brackets, with `/UDP` for UDP so a TCP and a UDP frontend on one port
/// stay apart (TCP is printed bare, as in the Cilium versions the seeds show).
pub fn frontend(ip: &str, port: u16, protocol: &str) -> String {
    let hostport = host_port(ip, port);
    if protocol.eq_ignore_ascii_case("TCP") || protocol.is_empty() {
        hostport
    } else {
        format!("{hostport}/{}", protocol.to_ascii_uppercase())
    }
}

/// `addr:port`, IPv6 in brackets.
pub fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `rackctl service list`: `ID  Frontend  Service Type  Backend`, one line per backend.
pub fn services_table(services: &[LbService]) -> String {
    let mut w = TabWriter::cilium();
    w.line("ID\tFrontend\tService Type\tBackend\t");
    for s in services {
        let spec = &s.spec;
        let fe = &spec.frontend_address;
        let head = format!(
            "{}\t{}\t{}\t",
            spec.id,
            frontend(&fe.ip, fe.port, &fe.protocol),
            spec.flags.type_
        );
        if spec.backend_addresses.is_empty() {
            w.line(&format!("{head}\t"));
        }
        for (i, b) in spec.backend_addresses.iter().enumerate() {
            let cell = format!("{} => {} ({})", i + 1, host_port(&b.ip, b.port), b.state);
            if i == 0 {
                w.line(&format!("{head}{cell}\t"));
            } else {
                w.line(&format!("\t\t\t{cell}\t"));
            }
        }
    }
    w.finish()
}

/// `rackctl bpf lb list`: `SERVICE ADDRESS  BACKEND ADDRESS (REVNAT_ID) (SLOT)`.
pub fn lb_map_table(entries: &[LbMapEntry]) -> String {
    let mut w = TabWriter::cilium();
    w.line("SERVICE ADDRESS\tBACKEND ADDRESS (REVNAT_ID) (SLOT)");
    for e in entries {
        let mut backend = format!("{} ({}) ({})", e.backend_address, e.rev_nat_id, e.slot);
        if !e.flags.is_empty() {
            let _ = write!(backend, " [{}]", e.flags.join(", "));
        }
        w.line(&format!("{} ({})\t{backend}", e.service_address, e.slot));
    }
    w.finish()
}

/// `rackctl bpf ct list`: one line per entry, as `cilium-dbg bpf ct list global`.
pub fn ct_list(entries: &[CtEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = write!(
            out,
            "{} {} {} -> {} expires={} RevNAT={} BackendID={}",
            e.proto,
            e.direction,
            e.source,
            e.destination,
            e.expires_in_sec,
            e.rev_nat_id,
            e.backend_id
        );
        if !e.flags.is_empty() {
            let _ = write!(out, " Flags=[ {} ]", e.flags.join(" "));
        }
        out.push('\n');
    }
    out
}

/// `rackctl bpf nat list`: one line per entry, as `cilium-dbg bpf nat list` (with the
/// expiry where Cilium prints the creation time, which rackd does not keep).
pub fn nat_list(entries: &[NatEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = writeln!(
            out,
            "{} {} {} -> {} {} expires={}",
            e.proto, e.direction, e.source, e.destination, e.xlate, e.expires_in_sec
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_api::lb::{BackendAddress, FrontendAddress, LbServiceSpec, ServiceSpecFlags};

    fn svc(id: u32, ip: &str, backends: &[&str]) -> LbService {
        LbService {
            spec: LbServiceSpec {
                id,
                frontend_address: FrontendAddress {
                    ip: ip.into(),
                    port: 80,
                    protocol: "TCP".into(),
                    scope: "external".into(),
                },
                backend_addresses: backends
                    .iter()
                    .map(|b| BackendAddress {
                        ip: (*b).into(),
                        port: 80,
                        state: "active".into(),
                        ..Default::default()
                    })
                    .collect(),
                flags: ServiceSpecFlags {
                    type_: "ClusterIP".into(),
                    ..Default::default()
                },
            },
        }
    }

    /// The seed's `cilium service list` (002, webpod behind 10.10.249.114): the same cells;
    /// the seed's columns are wider only because of its other (elided) services.
    #[test]
    fn service_list_matches_the_seed() {
        let t = services_table(&[svc(9, "10.10.249.114", &["172.16.2.139", "172.16.1.235"])]);
        assert_eq!(
            t,
            concat!(
                "ID   Frontend           Service Type   Backend                         \n",
                "9    10.10.249.114:80   ClusterIP      1 => 172.16.2.139:80 (active)   \n",
                "                                       2 => 172.16.1.235:80 (active)   \n",
            )
        );
    }

    #[test]
    fn ipv6_and_udp_frontends_and_a_service_without_backends() {
        assert_eq!(frontend("2001:db8::1", 80, "TCP"), "[2001:db8::1]:80");
        assert_eq!(frontend("10.0.0.1", 53, "UDP"), "10.0.0.1:53/UDP");
        let t = services_table(&[svc(3, "2001:db8:dead:beef::", &[])]);
        assert!(
            t.contains("3    [2001:db8:dead:beef::]:80   ClusterIP"),
            "{t}"
        );
    }

    /// The seed's `cilium bpf lb list | grep 10.10.249.114`: the same cells (the seed's
    /// frontend row has an extra `(0)` column from a newer build; ours follows the header).
    #[test]
    fn lb_map_rows() {
        let row = |slot, backend: &str, flags: &[&str]| LbMapEntry {
            service_address: "10.10.249.114:80".into(),
            slot,
            backend_address: backend.into(),
            rev_nat_id: 9,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        };
        let t = lb_map_table(&[
            row(0, "0.0.0.0:0", &["ClusterIP", "non-routable"]),
            row(2, "172.16.1.235:80", &[]),
        ]);
        assert_eq!(
            t,
            concat!(
                "SERVICE ADDRESS        BACKEND ADDRESS (REVNAT_ID) (SLOT)\n",
                "10.10.249.114:80 (0)   0.0.0.0:0 (9) (0) [ClusterIP, non-routable]\n",
                "10.10.249.114:80 (2)   172.16.1.235:80 (9) (2)\n",
            )
        );
    }

    #[test]
    fn ct_and_nat_lines() {
        let ct = ct_list(&[CtEntry {
            proto: "TCP".into(),
            direction: "OUT".into(),
            source: "10.0.3.2:41234".into(),
            destination: "172.18.255.200:80".into(),
            expires_in_sec: 21599,
            rev_nat_id: 5,
            backend_id: 2,
            flags: vec!["ESTABLISHED".into()],
        }]);
        assert_eq!(
            ct,
            "TCP OUT 10.0.3.2:41234 -> 172.18.255.200:80 expires=21599 RevNAT=5 BackendID=2 Flags=[ ESTABLISHED ]\n"
        );
        let nat = nat_list(&[NatEntry {
            proto: "TCP".into(),
            direction: "OUT".into(),
            source: "10.1.1.10:40000".into(),
            destination: "192.0.2.1:443".into(),
            xlate: "XLATE_SRC 10.0.1.2:40000".into(),
            expires_in_sec: 3,
        }]);
        assert_eq!(
            nat,
            "TCP OUT 10.1.1.10:40000 -> 192.0.2.1:443 XLATE_SRC 10.0.1.2:40000 expires=3\n"
        );
    }
}
