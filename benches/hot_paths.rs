//! Hot paths of one proxied request, measured without I/O: request-head decision (parse, checks,
//! route, upstream head), route lookup among 1,000 routes, path rewrite, response-head rewrite.
//! Run: `cargo bench --bench hot_paths`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringway::client::h1::decide_bytes as decide;
use ringway::client::h1::response_head::H1Head;
use ringway::config::load_str;
use ringway::exchange::outgoing::Outgoing;
use ringway::exchange::response_head::build_response_head;
use ringway::exchange::Decision;
use ringway::http::client_info::ClientInfo;
use ringway::http::normalize_host;
use ringway::http::Framing;
use std::path::Path;

const BASE: &str = "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.grafana]\nservers = [\"127.0.0.1:3000\"]\n";

const GRAFANA_REQUEST: &[u8] = b"GET /grafana/api/dashboards/uid/abc?orgId=1&from=now-6h HTTP/1.1\r\n\
Host: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0\r\n\
Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\n\
Cookie: grafana_session=0123456789abcdef0123456789abcdef\r\nConnection: keep-alive\r\n\r\n";

fn subpath_plan() -> ringway::config::Plan {
    let text = format!(
        "{BASE}[[route]]\nprefix = \"/grafana/\"\nupstream = \"grafana\"\nstrip_prefix = true\n\
         [route.request_headers]\nset = {{ \"X-WEBAUTH-USER\" = \"viewer\" }}\n"
    );
    load_str(&text, Path::new("bench.toml")).unwrap_or_else(|e| panic!("{}", e[0]))
}

fn bench_decide(c: &mut Criterion) {
    let plan = subpath_plan();
    let access = ringway::auth::WorkerAccess::new(&plan);
    let info = ClientInfo::new(
        "10.1.2.3:40000".parse().unwrap(),
        Some("127.0.0.1:8080".parse().unwrap()),
        false,
    );
    let mut out = Vec::with_capacity(4096);
    c.bench_function("request head: parse + check + route + upstream head", |b| {
        b.iter(|| {
            out.clear();
            match decide(&plan, &access, &info, black_box(GRAFANA_REQUEST), &mut out) {
                Decision::Forward(o) => black_box(o.route),
                _ => unreachable!("the bench request is forwarded"),
            }
        })
    });
    c.bench_function("request head: httparse only", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            black_box(req.parse(black_box(GRAFANA_REQUEST)).unwrap())
        })
    });
}

fn bench_route_lookup(c: &mut Criterion) {
    let mut text = String::from(BASE);
    for i in 0..1000 {
        let host = if i % 4 == 0 {
            format!("host = \"app{}.example.com\"\n", i % 50)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[route]]\n{host}prefix = \"/team{}/app{}/\"\nupstream = \"grafana\"\n",
            i / 10,
            i
        ));
    }
    text.push_str("[[route]]\nprefix = \"/\"\nupstream = \"grafana\"\n");
    let plan = load_str(&text, Path::new("bench.toml")).unwrap_or_else(|e| panic!("{}", e[0]));
    let paths: [&[u8]; 4] = [
        b"/team42/app421/api/query",
        b"/team99/app999/",
        b"/static/js/app.js",
        b"/team3/app35/d/x/y/z",
    ];
    c.bench_function("route lookup among 1,000 routes", |b| {
        b.iter(|| {
            let mut hbuf = [0u8; 256];
            let host = normalize_host(b"App8.Example.com:443", &mut hbuf);
            for p in paths {
                black_box(plan.table(0).lookup(&plan.routes, host, black_box(p)));
            }
        })
    });
}

fn bench_rewrite(c: &mut Criterion) {
    let plan = subpath_plan();
    let route = &plan.routes[0];
    let mut out = Vec::with_capacity(256);
    c.bench_function("path rewrite (check + strip)", |b| {
        b.iter(|| {
            out.clear();
            let p = ringway::exchange::rewrite::check_path(black_box(b"/grafana/public/build/app.3f2a.js")).unwrap();
            ringway::exchange::rewrite::upstream_path(route, &p, 8, &mut out);
            black_box(out.len())
        })
    });
}

fn bench_response_head(c: &mut Criterion) {
    let plan = subpath_plan();
    let response = b"HTTP/1.1 302 Found\r\nCache-Control: no-store\r\nContent-Type: text/html; charset=utf-8\r\n\
Location: /login\r\nSet-Cookie: redirect_to=%2F; Path=/; HttpOnly; SameSite=Lax\r\n\
X-Content-Type-Options: nosniff\r\nX-Frame-Options: deny\r\nDate: Sat, 21 Nov 2026 00:00:00 GMT\r\n\
Content-Length: 29\r\n\r\n";
    let o = Outgoing {
        route: 0,
        upstream: 0,
        server: 0,
        framing: Framing::None,
        expect_continue: false,
        is_head: false,
        client_keep_alive: true,
        client_http10: false,
        request_host: Some("example.com".into()),
        upgrade: false,
        affinity: None,
        idempotent: true,
        host_at: None,
        cors_origin: None,
        listener: 0,
        proxy_header: None,
        compress: None,
        cache: None,
    };
    let mut out = H1Head::new(Vec::with_capacity(4096), false);
    c.bench_function("response head rewrite (Location + Set-Cookie mapped)", |b| {
        b.iter(|| black_box(build_response_head(black_box(response), &mut out, &plan, &plan.routes[0], &o).is_ok()))
    });
}

criterion_group!(
    benches,
    bench_decide,
    bench_route_lookup,
    bench_rewrite,
    bench_response_head
);
criterion_main!(benches);
