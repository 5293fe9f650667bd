//! UPDATE decode/encode throughput on a full-table-like stream: 1,000,000 IPv4 prefixes in
//! about 330,000 distinct attribute sets, 2-6 hop AS paths, communities on a third of them.
//!
//! `cargo bench -p bgpd-wire --bench update_codec -- --warm-up-time 1 --measurement-time 3`
//! Set `BGPD_WIRE_DUMP_STREAM=<file>` to write the encoded stream (for comparing decoders).

#![allow(clippy::unwrap_used)] // Benchmark setup may unwrap.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

use bgpd_wire::*;
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};

const PREFIXES: u32 = 1_000_000;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

/// (attribute set, prefixes) groups: 1 to 5 prefixes per set, 3 on average.
fn table() -> Vec<(Arc<PathAttributes>, NextHop, Vec<IpNet>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let mut i = 0u32;
    while i < PREFIXES {
        let hops = 2 + rng.next() % 5;
        let path: Vec<u32> = (0..hops)
            .map(|h| {
                if h == 0 {
                    65000
                } else {
                    1 + rng.next() % 400_000
                }
            })
            .collect();
        let communities = if rng.next().is_multiple_of(3) {
            (0..1 + rng.next() % 4)
                .map(|_| Community(rng.next()))
                .collect()
        } else {
            Vec::new()
        };
        let attrs = PathAttributes {
            origin: if rng.next().is_multiple_of(10) {
                Origin::Incomplete
            } else {
                Origin::Igp
            },
            as_path: AsPath {
                segments: vec![AsSegment::Sequence(path)],
            },
            med: rng.next().is_multiple_of(2).then(|| rng.next() % 1000),
            communities,
            ..Default::default()
        };
        let n = (1 + rng.next() % 5).min(PREFIXES - i);
        let prefixes = (i..i + n)
            .map(|k| {
                // Spread /24s (and some /22s) over 1.0.0.0-223.255.255.255.
                let addr = Ipv4Addr::from((1u32 << 24) + k * 256);
                let len = if k.is_multiple_of(7) { 22 } else { 24 };
                IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
            })
            .collect();
        out.push((
            Arc::new(attrs),
            NextHop::V4(Ipv4Addr::new(192, 0, 2, 1 + (i % 200) as u8)),
            prefixes,
        ));
        i += n;
    }
    out
}

fn encode_all(table: &[(Arc<PathAttributes>, NextHop, Vec<IpNet>)], ctx: &SessionContext) -> Bytes {
    let mut b = UpdateBuilder::new(ctx);
    for (attrs, nh, prefixes) in table {
        let enc = EncodedAttributes::new(attrs, ctx);
        b.announce(&enc, *nh, prefixes).unwrap();
    }
    b.finish()
}

/// What a sender does: encode into a 64 KiB batch, hand the batch to the socket, go on.
fn encode_batched(
    table: &[(Arc<PathAttributes>, NextHop, Vec<IpNet>)],
    ctx: &SessionContext,
) -> usize {
    let mut b = UpdateBuilder::with_capacity(ctx, 64 * 1024);
    let mut total = 0;
    for (attrs, nh, prefixes) in table {
        let enc = EncodedAttributes::new(attrs, ctx);
        b.announce(&enc, *nh, prefixes).unwrap();
        if b.len() >= 60 * 1024 {
            total += black_box(b.take()).len();
        }
    }
    total + b.finish().len()
}

fn decode_all(stream: &Bytes, ctx: &SessionContext) -> usize {
    let mut buf = BytesMut::from(&stream[..]);
    let mut n = 0;
    while let Some(m) = decode_frame(&mut buf, ctx).unwrap() {
        if let Message::Update(u) = m {
            n += u.nlri.len();
            black_box(u);
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let ctx = SessionContext::four_octet();
    let table = table();
    let stream = encode_all(&table, &ctx);
    assert_eq!(decode_all(&stream, &ctx), PREFIXES as usize);
    assert_eq!(encode_batched(&table, &ctx), stream.len());
    eprintln!(
        "stream: {} attribute sets, {} prefixes, {} octets ({:.1} MB)",
        table.len(),
        PREFIXES,
        stream.len(),
        stream.len() as f64 / 1e6
    );
    if let Ok(path) = std::env::var("BGPD_WIRE_DUMP_STREAM") {
        std::fs::write(path, &stream).unwrap();
    }

    let mut g = c.benchmark_group("full_table");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(PREFIXES)));
    g.bench_function("decode_1M_prefixes", |b| {
        b.iter(|| decode_all(black_box(&stream), &ctx))
    });
    g.bench_function("encode_1M_prefixes", |b| {
        b.iter(|| encode_batched(black_box(&table), &ctx))
    });
    g.finish();

    let mut g = c.benchmark_group("full_table_bytes");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("decode_stream", |b| {
        b.iter(|| decode_all(black_box(&stream), &ctx))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
