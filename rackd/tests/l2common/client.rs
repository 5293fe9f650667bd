//! What the client sees: the prober (an ARP request and a neighbour solicitation for the
//! VIPs every 10 ms from a raw socket, every answer recorded with its source MAC) and
//! `ping -D`, a real client's view of an outage.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ARP reply to the client.
    Reply4,
    /// Gratuitous ARP for the VIP.
    Garp4,
    /// Solicited NA to the client.
    Reply6,
    /// Unsolicited NA for the VIP.
    Una6,
}

#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub t: Instant,
    pub kind: Kind,
    pub mac: [u8; 6],
}

#[derive(Debug, Default)]
pub struct Events {
    pub requests: Vec<Instant>,
    pub events: Vec<Event>,
}

impl Events {
    /// The request windows: from one request to the next (the last one: until the prober
    /// stopped, `None`).
    fn windows(&self) -> impl Iterator<Item = (Instant, Option<Instant>)> + '_ {
        self.requests
            .iter()
            .enumerate()
            .map(|(k, start)| (*start, self.requests.get(k + 1).copied()))
    }

    /// The MACs that sent `kind` in the window from `start` to `end`.
    fn macs_in(&self, kind: Kind, start: Instant, end: Option<Instant>) -> BTreeSet<[u8; 6]> {
        self.events
            .iter()
            .filter(|e| e.kind == kind && e.t >= start && end.is_none_or(|end| e.t < end))
            .map(|e| e.mac)
            .collect()
    }

    /// Request windows in which replies came from two MACs.
    pub fn double_answers(&self, kind: Kind) -> usize {
        self.windows()
            .filter(|(start, end)| self.macs_in(kind, *start, *end).len() > 1)
            .count()
    }

    /// The windows `(start, end)` selected by `phase`, and which MACs answered them.
    pub fn answered(
        &self,
        kind: Kind,
        phase: impl Fn(Instant, Option<Instant>) -> bool,
    ) -> Answered {
        let mut a = Answered::default();
        for (start, end) in self.windows().filter(|(s, e)| phase(*s, *e)) {
            a.windows += 1;
            for mac in self.macs_in(kind, start, end) {
                *a.by.entry(mac).or_default() += 1;
            }
        }
        a
    }
}

/// Raw-socket ARP/NS prober on the client's eth0.
pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<std::io::Result<Events>>,
}

impl Prober {
    pub fn start(lab: &L2Lab, interval: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mac = lab.client_mac;
        let sock = PacketSocket::open(&lab.client, "eth0").unwrap();
        let handle = std::thread::spawn(move || probe_loop(&sock, mac, interval, &s));
        Prober { stop, handle }
    }

    /// Stops the prober; panics if it could not send a probe.
    pub fn stop(self) -> Events {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("prober: {e}"))
    }
}

/// Sends an ARP request and a neighbour solicitation every `interval` and records what
/// comes back, until `stop`. A probe that cannot be sent ends it with the error: a window
/// only counts once both frames of its probe went out.
fn probe_loop(
    sock: &PacketSocket,
    mac: [u8; 6],
    interval: Duration,
    stop: &AtomicBool,
) -> std::io::Result<Events> {
    let arp = datapath::packet::arp_request(mac, CLIENT4, VIP4);
    let ns = datapath::packet::neighbour_solicitation(mac, CLIENT6, VIP6);
    let mut ev = Events::default();
    let mut buf = [0u8; 2048];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            let failed = |what: &str, e: std::io::Error| {
                std::io::Error::new(
                    e.kind(),
                    format!("sending the {what} (probe {}): {e}", ev.requests.len() + 1),
                )
            };
            sock.send(&arp).map_err(|e| failed("ARP request", e))?;
            sock.send(&ns)
                .map_err(|e| failed("neighbour solicitation", e))?;
            ev.requests.push(now);
            next = now + interval;
        }
        let wait = next.saturating_duration_since(Instant::now());
        if !sock.wait_readable(wait.max(Duration::from_millis(1))) {
            continue;
        }
        while let Some(frame) = sock.recv_nowait(&mut buf) {
            let t = Instant::now();
            if let Some((kind, src)) = classify(frame, mac) {
                ev.events.push(Event { t, kind, mac: src });
            }
        }
    }
    Ok(ev)
}

/// ARP replies to us / gratuitous ARP for VIP4, solicited NA to us / unsolicited NA for VIP6.
fn classify(f: &[u8], me: [u8; 6]) -> Option<(Kind, [u8; 6])> {
    if f.len() < 14 {
        return None;
    }
    let src: [u8; 6] = f[6..12].try_into().ok()?;
    if src == me {
        return None;
    }
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0806 if f.len() >= 42 => {
            let op = u16::from_be_bytes([f[20], f[21]]);
            let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
            let tpa = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
            if spa != VIP4 {
                return None;
            }
            if op == 2 && tpa == CLIENT4 {
                Some((Kind::Reply4, src))
            } else if tpa == VIP4 {
                Some((Kind::Garp4, src))
            } else {
                None
            }
        }
        0x86dd if f.len() >= 78 && f[20] == 58 && f[54] == 136 => {
            let target: [u8; 16] = f[62..78].try_into().ok()?;
            if Ipv6Addr::from(target) != VIP6 {
                return None;
            }
            let solicited = f[58] & 0x40 != 0;
            Some((if solicited { Kind::Reply6 } else { Kind::Una6 }, src))
        }
        _ => None,
    }
}

// ---- ping ----------------------------------------------------------------------------------

/// `ping -D -i 0.01` from the client: what a real client experiences.
pub struct Ping {
    p: Process,
}

impl Ping {
    pub fn start(lab: &L2Lab, ip: &str) -> Ping {
        let name = format!(
            "ping-{}-{}",
            ip.replace(':', "_"),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let p = lab
            .client
            .spawn(
                lab.dir.path(),
                &name,
                &["ping", "-n", "-D", "-i", "0.01", "-W", "0.1", ip],
            )
            .unwrap();
        Ping { p }
    }

    /// Stops ping and returns the longest gap between two consecutive replies that spans or
    /// follows `fault`.
    pub fn stop_and_max_gap(mut self, fault: SystemTime) -> Duration {
        let _ = self.p.sigterm();
        let _ = self.p.wait_timeout(Duration::from_secs(5));
        let log = self.p.log();
        let fault = fault.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let times: Vec<f64> = log
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| {
                let s = l.strip_prefix('[')?;
                s[..s.find(']')?].parse().ok()
            })
            .collect();
        let mut max = 0f64;
        for w in times.windows(2) {
            if w[1] >= fault {
                max = max.max(w[1] - w[0]);
            }
        }
        if times.last().is_none_or(|l| *l < fault) {
            // No reply after the fault at all.
            return Duration::MAX;
        }
        Duration::from_secs_f64(max)
    }
}
