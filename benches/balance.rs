//! Server selection among 100 servers for each algorithm: what one request pays to choose.
//! Run: `cargo bench --bench balance`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringway::config::load_str;
use ringway::upstream::balance::hash64;
use ringway::upstream::{Board, Tried, Upstreams};
use std::path::Path;
use std::sync::Arc;

fn config(balance: &str) -> String {
    let servers: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "{{ addr = \"10.0.{}.{}:3000\", weight = {} }}",
                i / 250,
                i % 250 + 1,
                i % 3 + 1
            )
        })
        .collect();
    format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.app]\nservers = [{}]\nbalance = \"{balance}\"\n[[route]]\nupstream = \"app\"\n",
        servers.join(", ")
    )
}

fn select(c: &mut Criterion) {
    let mut group = c.benchmark_group("select_among_100");
    for balance in ["round_robin", "least_conn", "p2c", "hash"] {
        let plan = load_str(&config(balance), Path::new("bench.toml")).unwrap_or_else(|_| panic!("{balance}"));
        let ups = Upstreams::new(&plan, Arc::new(Board::new(&plan)));
        let up = &plan.upstreams[0];
        let tried = Tried::default();
        let keys: Vec<u64> = (0..1024u32).map(|k| hash64(&k.to_le_bytes())).collect();
        let mut k = 0;
        group.bench_function(balance, |b| {
            b.iter(|| {
                k = (k + 1) & 1023;
                let affinity = (balance == "hash").then(|| keys[k]);
                black_box(ups.try_pick(up, 0, black_box(affinity), &tried).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, select);
criterion_main!(benches);
