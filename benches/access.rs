//! Access-step hot paths: a basic-auth check answered from the worker's memory (what every
//! request after a dashboard's first one costs), and an allow/deny lookup among 1,000 CIDRs.
//! Run: `cargo bench --bench access`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringway::auth::htpasswd::{decode_basic, Memory, Users};
use ringway::auth::ip::CidrList;
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn remembered_basic_auth(c: &mut Criterion) {
    let users = Users::parse("alice:$2b$04$GMUzl5fDNuAcxCY98x9YhefCEwPl01Ajq7IfQK4eeoy1c2STEc31S\n").unwrap();
    let memory = Memory::new(1);
    let remember = Duration::from_secs(3600);
    let now = Instant::now();
    // The first check runs bcrypt and is remembered.
    assert!(memory
        .check(0, &users, b"alice", b"wonderland", remember, now)
        .is_some());
    c.bench_function("basic auth, remembered (decode + digest + compare)", |b| {
        b.iter(|| {
            let mut buf = [0u8; 512];
            let (u, p) = decode_basic(black_box(b"Basic YWxpY2U6d29uZGVybGFuZA=="), &mut buf).unwrap();
            memory.check(0, &users, u, p, remember, now)
        })
    });
}

fn cidr_lookup(c: &mut Criterion) {
    // 1,000 disjoint blocks of mixed sizes, IPv4 and IPv6.
    let mut entries = Vec::new();
    for i in 0..800u32 {
        let a = 0x0b00_0000 + i * 0x1_0000; // 11.0.0.0/16, 11.1.0.0/16, ...
        entries.push(format!(
            "{}/{}",
            std::net::Ipv4Addr::from(a),
            if i % 2 == 0 { 16 } else { 24 }
        ));
    }
    for i in 0..200u32 {
        entries.push(format!("2001:db8:{:x}::/48", i));
    }
    let list = CidrList::parse(entries.iter().map(|s| s.as_str())).unwrap();
    let hit: IpAddr = "11.200.0.77".parse().unwrap();
    let miss: IpAddr = "192.0.2.1".parse().unwrap();
    let v6: IpAddr = "2001:db8:c7::1".parse().unwrap();
    assert!(list.contains(hit) && !list.contains(miss) && list.contains(v6));
    c.bench_function("allow/deny lookup among 1,000 CIDRs (hit, miss, v6)", |b| {
        b.iter(|| {
            (
                list.contains(black_box(hit)),
                list.contains(black_box(miss)),
                list.contains(black_box(v6)),
            )
        })
    });
}

criterion_group!(benches, remembered_basic_auth, cidr_lookup);
criterion_main!(benches);
