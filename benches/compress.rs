//! What compressing a response body costs per encoding and level, through the same
//! `compress::Encoder` the relay uses (64 KiB pushes, then finish), on a 1 MiB script made like
//! `loadtest/compress.sh`'s. Prints each setting's compressed size once, so CPU and ratio can be
//! read side by side; the figures behind the default levels in docs/configuration.md.
//!
//!   cargo bench --bench compress

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringway::compress::{Encoder, Encoding};
use ringway::config::CompressPlan;

/// A script bundle's shape: functions with varied names and numbers from a fixed-seed generator.
fn script(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut s: u64 = 12345;
    let mut next = |m: u64| {
        s = s * 16807 % 2147483647;
        s % m
    };
    while out.len() < len {
        let (a, b) = (next(9973), next(257));
        let line = format!(
            "function f{a}_{b:x}(e,t){{var n=e[{b}]||t.get(\"k{a}\");return n&&n.v{}?n.map(function(r){{return r*{a}+{b}}}):null}}\n",
            b % 13
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

fn compress(encoding: Encoding, plan: &CompressPlan, body: &[u8]) -> usize {
    let mut e = Encoder::new(encoding, plan).expect("encoder");
    let mut sent = 0;
    for piece in body.chunks(64 * 1024) {
        e.push(piece).expect("push");
        sent += e.output().len();
        e.output().clear();
    }
    e.finish().expect("finish");
    sent + e.output().len()
}

fn bench_encoders(c: &mut Criterion) {
    let body = script(1 << 20);
    let settings: [(Encoding, u32); 9] = [
        (Encoding::Gzip, 1),
        (Encoding::Gzip, 2),
        (Encoding::Gzip, 5),
        (Encoding::Gzip, 6),
        (Encoding::Br, 3),
        (Encoding::Br, 4),
        (Encoding::Br, 5),
        (Encoding::Zstd, 3),
        (Encoding::Zstd, 6),
    ];
    let mut g = c.benchmark_group("compress 1 MiB script");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.sample_size(20);
    for (encoding, level) in settings {
        let mut plan = CompressPlan::default();
        match encoding {
            Encoding::Gzip => plan.gzip_level = level,
            Encoding::Br => plan.brotli_level = level,
            Encoding::Zstd => plan.zstd_level = level as i32,
        }
        let name = format!("{} {level}", encoding.token());
        println!("{name}: {} bytes", compress(encoding, &plan, &body));
        g.bench_with_input(BenchmarkId::from_parameter(&name), &body, |b, body| {
            b.iter(|| compress(encoding, &plan, body))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_encoders);
criterion_main!(benches);
