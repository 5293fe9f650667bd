// Shared by the fuzz targets through `include!`.

/// A session context chosen by one fuzz byte: 2/4-octet AS, extended messages, ADD-PATH
/// receive and extended next hop each on or off.
#[allow(dead_code)]
fn ctx_from(b: u8) -> bgpd_wire::SessionContext {
    use bgpd_wire::Family;
    let both = vec![Family::Ipv4Unicast, Family::Ipv6Unicast];
    bgpd_wire::SessionContext {
        four_octet_as: b & 1 != 0,
        extended_message: b & 2 != 0,
        add_path_rx: if b & 4 != 0 { both.clone() } else { Vec::new() },
        add_path_tx: if b & 8 != 0 { both.clone() } else { Vec::new() },
        extended_next_hop: if b & 16 != 0 { vec![Family::Ipv4Unicast] } else { Vec::new() },
        families: both,
    }
}

/// Wraps `body` in a header of type `t` (length clamped to what fits the context).
#[allow(dead_code)]
fn framed(t: u8, body: &[u8], max: usize) -> Vec<u8> {
    let body = &body[..body.len().min(max - 19)];
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    m.push(t);
    m.extend_from_slice(body);
    m
}
