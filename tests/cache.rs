//! The response cache through the built binary, against a scripted upstream that records every
//! request it gets: hits and misses with `Cache-Status`, freshness running out, revalidation
//! with a 304, `Vary`, what is never stored (private, no-store, Set-Cookie, Authorization, a
//! body cut short), the LRU bound, `max_object`, micro-caching with `cache_ttl`, coalesced
//! misses, purges on the admin endpoint, two users behind `[auth]`, and hits over HTTP/2.

mod cache_support;
mod common;
use cache_support::*;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_fresh_response_is_served_from_memory_until_it_expires() {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let up = Scripted::start(move |_, _, req| {
        let i = seen.fetch_add(1, Ordering::SeqCst);
        match path(req).as_str() {
            "/chunked" => Step::reply(&chunked(&[("Cache-Control", "max-age=60")], b"chunked body")),
            _ => Step::reply(&response(
                200,
                &[("Cache-Control", "max-age=1"), ("X-N", &i.to_string())],
                b"hello",
            )),
        }
    });
    let p = proxy(up.addr, "", "");
    let a = get(&p.url("/a?x=1"));
    assert_eq!(
        (a.status, status(&a), a.text().as_str()),
        (200, "ringway; fwd=miss", "hello")
    );
    let b = get(&p.url("/a?x=1"));
    assert_eq!(
        (b.status, status(&b), b.text().as_str()),
        (200, "ringway; hit", "hello")
    );
    assert_eq!(b.header("x-n"), a.header("x-n"), "the stored head is sent again");
    assert!(b.header("age").is_some());
    assert_eq!(count(&up, "/a?x=1"), 1);
    // Another query is another key.
    assert_eq!(status(&get(&p.url("/a?x=2"))), "ringway; fwd=miss");
    // HEAD is answered from the GET entry.
    let h = http(&agent(), "HEAD", &p.url("/a?x=1"), &[], None);
    assert_eq!(
        (h.status, status(&h), h.header("content-length")),
        (200, "ringway; hit", Some("5"))
    );
    assert!(h.body.is_empty());
    // max-age=1 runs out: the next request goes upstream again.
    std::thread::sleep(Duration::from_millis(1100));
    let c = get(&p.url("/a?x=1"));
    assert_eq!((status(&c), c.text().as_str()), ("ringway; fwd=miss", "hello"));
    assert_eq!(count(&up, "/a?x=1"), 2);
    // A chunked body is stored decoded and served with its length.
    assert_eq!(get(&p.url("/chunked")).text(), "chunked body");
    let c = get(&p.url("/chunked"));
    assert_eq!((status(&c), c.text().as_str()), ("ringway; hit", "chunked body"));
    assert_eq!(c.header("content-length"), Some("12"));
    assert_eq!(count(&up, "/chunked"), 1);
    assert!(metric(&p, "ringway_cache_hits_total") >= 3);
    assert!(metric(&p, "ringway_cache_misses_total") >= 3);
    assert!(metric(&p, "ringway_cache_bytes") > 0);
}

#[test]
fn a_stale_entry_is_revalidated_and_refreshed_by_304() {
    let up = Scripted::start(|_, _, req| match field(req, "if-none-match").as_deref() {
        Some("\"v1\"") => Step::reply(&response(
            304,
            &[("ETag", "\"v1\""), ("Cache-Control", "max-age=1")],
            b"",
        )),
        _ => Step::reply(&response(
            200,
            &[("ETag", "\"v1\""), ("Cache-Control", "max-age=1")],
            b"body one",
        )),
    });
    let p = proxy(up.addr, "", "");
    assert_eq!(status(&get(&p.url("/r"))), "ringway; fwd=miss");
    std::thread::sleep(Duration::from_millis(1100));
    let r = get(&p.url("/r"));
    assert_eq!(r.status, 200);
    assert_eq!(status(&r), "ringway; fwd=stale; fwd-status=304");
    assert_eq!(r.text(), "body one");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(field(&reqs[1], "if-none-match").as_deref(), Some("\"v1\""));
    // Refreshed: fresh again for another second.
    let r = get(&p.url("/r"));
    assert_eq!((status(&r), r.text().as_str()), ("ringway; hit", "body one"));
    assert_eq!(up.requests().len(), 2);
    // A reload (no-cache) revalidates even a fresh entry.
    let r = get_with(&p.url("/r"), &[("Cache-Control", "no-cache")]);
    assert_eq!((r.status, r.text().as_str()), (200, "body one"));
    assert_eq!(up.requests().len(), 3);
    assert!(metric(&p, "ringway_cache_stale_total") >= 2);
}

#[test]
fn vary_keeps_one_entry_per_request_value() {
    let up = Scripted::start(|_, _, req| {
        let accept = field(req, "accept").unwrap_or_default();
        Step::reply(&response(
            200,
            &[("Cache-Control", "max-age=60"), ("Vary", "Accept")],
            accept.as_bytes(),
        ))
    });
    let p = proxy(up.addr, "", "");
    for accept in ["text/a", "text/b"] {
        let r = get_with(&p.url("/v"), &[("Accept", accept)]);
        assert_eq!((status(&r), r.text().as_str()), ("ringway; fwd=miss", accept));
    }
    for accept in ["text/a", "text/b", "text/a"] {
        let r = get_with(&p.url("/v"), &[("Accept", accept)]);
        assert_eq!((status(&r), r.text().as_str()), ("ringway; hit", accept));
    }
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn private_no_store_cookies_authorization_and_cut_bodies_are_never_stored() {
    let up = Scripted::start(|_, _, req| {
        let p = path(req);
        let fields: &[(&str, &str)] = match p.as_str() {
            "/private" => &[("Cache-Control", "private, max-age=60")],
            "/no-store" => &[("Cache-Control", "no-store, max-age=60")],
            "/cookie" => &[("Cache-Control", "max-age=60"), ("Set-Cookie", "session=secret")],
            "/public-cookie" => &[("Cache-Control", "public, max-age=60"), ("Set-Cookie", "theme=dark")],
            "/error" => &[("Cache-Control", "max-age=60")],
            _ => &[("Cache-Control", "max-age=60")],
        };
        if p == "/cut" {
            // Announces 100 bytes, sends 10, closes.
            return Step::reply_close(
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\n0123456789",
            );
        }
        let code = if p == "/error" { 500 } else { 200 };
        Step::reply(&response(code, fields, p.as_bytes()))
    });
    let p = proxy(up.addr, "", "");
    for path in ["/private", "/no-store", "/cookie", "/error"] {
        for _ in 0..2 {
            let r = get(&p.url(path));
            assert_eq!((status(&r), r.text().as_str()), ("ringway; fwd=miss", path));
        }
        assert_eq!(count(&up, path), 2, "{path} must not be stored");
    }
    // The client's cookie is its own, but a public response is shared without it.
    let first = get(&p.url("/public-cookie"));
    assert_eq!(first.header("set-cookie"), Some("theme=dark"));
    let hit = get(&p.url("/public-cookie"));
    assert_eq!((status(&hit), hit.header("set-cookie")), ("ringway; hit", None));
    // A request with Authorization is not stored unless the response says public.
    for _ in 0..2 {
        let r = get_with(&p.url("/authorized"), &[("Authorization", "Bearer abc")]);
        assert_eq!(status(&r), "ringway; fwd=miss");
    }
    assert_eq!(count(&up, "/authorized"), 2);
    // A request that asks for no-store is neither served nor stored.
    get(&p.url("/plain"));
    let r = get_with(&p.url("/plain"), &[("Cache-Control", "no-store")]);
    assert_eq!(r.header("cache-status"), None);
    assert_eq!(count(&up, "/plain"), 2);
    // A body cut short reaches the client as an error and is not kept.
    for _ in 0..2 {
        let mut c = RawClient::connect(p.addr());
        c.send(&get_req("/cut", "localhost", &[]));
        assert!(c.try_read_response(false).is_err(), "a cut body must not look complete");
    }
    assert!(wait_until(Duration::from_secs(2), || count(&up, "/cut") == 2));
}

#[test]
fn the_store_is_bounded_by_bytes_and_objects_above_max_object_pass_through() {
    let up = Scripted::start(|_, _, req| {
        let p = path(req);
        let len = if p.starts_with("/big") { 20_000 } else { 10_000 };
        let body = pattern(len, 3);
        if p == "/big-chunked" {
            return Step::reply(&chunked(&[("Cache-Control", "max-age=60")], &body));
        }
        Step::reply(&response(200, &[("Cache-Control", "max-age=60")], &body))
    });
    let p = proxy(up.addr, "[cache]\nsize = \"48KB\"\nmax_object = \"16KB\"\n", "");
    for i in 0..8 {
        let r = get(&p.url(&format!("/o/{i}")));
        assert_eq!(r.body, pattern(10_000, 3));
    }
    // Four entries of 10 KB fit in 48 KB: the oldest went, the newest are hits.
    assert_eq!(status(&get(&p.url("/o/7"))), "ringway; hit");
    assert_eq!(status(&get(&p.url("/o/0"))), "ringway; fwd=miss");
    assert!(metric(&p, "ringway_cache_evictions_total") >= 4);
    assert!(metric(&p, "ringway_cache_bytes") <= 48 * 1024);
    // Larger than max_object: relayed whole every time, never stored (stated or chunked length).
    for path in ["/big", "/big-chunked"] {
        for _ in 0..2 {
            let r = get(&p.url(path));
            assert_eq!((status(&r), r.body.len()), ("ringway; fwd=miss", 20_000));
            assert_eq!(r.body, pattern(20_000, 3));
        }
        assert_eq!(count(&up, path), 2);
    }
}

#[test]
fn cache_ttl_micro_caches_200_responses_without_cache_headers() {
    let up = Scripted::start(|_, _, req| match path(req).as_str() {
        "/missing" => Step::reply(&response(404, &[], b"no")),
        "/no-cache" => Step::reply(&response(200, &[("Cache-Control", "no-cache")], b"fresh")),
        _ => Step::reply(&response(200, &[("Content-Type", "application/json")], b"{\"data\":1}")),
    });
    let p = proxy(up.addr, "", "cache_ttl = \"1s\"\n");
    get(&p.url("/api/v1/query_range?q=up"));
    let r = get(&p.url("/api/v1/query_range?q=up"));
    assert_eq!((status(&r), r.text().as_str()), ("ringway; hit", "{\"data\":1}"));
    assert_eq!(count(&up, "/api/v1/query_range?q=up"), 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(status(&get(&p.url("/api/v1/query_range?q=up"))), "ringway; fwd=miss");
    for path in ["/missing", "/no-cache"] {
        get(&p.url(path));
        get(&p.url(path));
        assert_eq!(
            count(&up, path),
            2,
            "{path}: only 200 without caching headers is micro-cached"
        );
    }
}

#[test]
fn concurrent_misses_make_one_upstream_request() {
    let up = Scripted::start(|_, _, _| Step {
        delay: Duration::from_millis(400),
        bytes: response(200, &[("Cache-Control", "max-age=60")], b"slow answer"),
        close: false,
    });
    let p = proxy(up.addr, "", "");
    let url = p.url("/slow");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&url))
        })
        .collect();
    let answers: Vec<HttpResp> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for a in &answers {
        assert_eq!((a.status, a.text().as_str()), (200, "slow answer"));
    }
    assert_eq!(up.requests().len(), 1, "the waiting misses are served from the first");
    let misses = answers.iter().filter(|a| status(a) == "ringway; fwd=miss").count();
    assert_eq!(misses, 1);
}

#[test]
fn purge_drops_entries_under_a_prefix_on_every_worker() {
    let up = Scripted::start(|_, _, req| {
        Step::reply(&response(200, &[("Cache-Control", "max-age=60")], path(req).as_bytes()))
    });
    let p = proxy(up.addr, "", "");
    for path in ["/grafana/public/a.js", "/grafana/public/b.js", "/grafana/api/c"] {
        get(&p.url(path));
        assert_eq!(status(&get(&p.url(path))), "ringway; hit");
    }
    let purge = |q: &str| {
        http(
            &agent(),
            "POST",
            &format!("http://{}/cache/purge{q}", p.admin_addr()),
            &[],
            Some(b""),
        )
    };
    let r = purge("?prefix=/grafana/public/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(&get(&p.url("/grafana/public/a.js"))), "ringway; fwd=miss");
    assert_eq!(status(&get(&p.url("/grafana/public/b.js"))), "ringway; fwd=miss");
    assert_eq!(status(&get(&p.url("/grafana/api/c"))), "ringway; hit");
    assert_eq!(purge("?prefix=grafana").status, 400);
    assert_eq!(purge("").status, 400);
    let g = http(
        &agent(),
        "GET",
        &format!("http://{}/cache/purge?prefix=/", p.admin_addr()),
        &[],
        None,
    );
    assert_eq!(g.status, 405);
}

#[test]
fn two_users_behind_auth_never_see_each_others_responses() {
    let dir = TempDir::new();
    // alice:wonderland (bcrypt) and bob:hunter2 (sha-crypt).
    let htpasswd = dir.write(
        "users",
        "alice:$2b$04$GMUzl5fDNuAcxCY98x9YhefCEwPl01Ajq7IfQK4eeoy1c2STEc31S\n\
         bob:$5$saltsalt$OIdfjX.u4Y3SJ4I2bX8w5BMf1VAUhHABNUirScDzZi3\n",
    );
    let up = Scripted::start(|_, _, req| {
        let user = field(req, "x-webauth-user").unwrap_or_default();
        let cc = if path(req) == "/public" {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        Step::reply(&response(
            200,
            &[("Cache-Control", cc)],
            format!("for {user}").as_bytes(),
        ))
    });
    let auth = format!(
        "[auth.staff]\nbasic = {{ htpasswd = \"{}\" }}\nidentity_header = \"X-WEBAUTH-USER\"\n",
        htpasswd.display()
    );
    let p = proxy(up.addr, &auth, "auth = \"staff\"\n");
    let alice = ("Authorization", "Basic YWxpY2U6d29uZGVybGFuZA==");
    let bob = ("Authorization", "Basic Ym9iOmh1bnRlcjI="); // bob:hunter2
    for _ in 0..2 {
        for (who, name) in [(alice, "alice"), (bob, "bob")] {
            for path in ["/private", "/public"] {
                let r = get_with(&p.url(path), &[who]);
                assert_eq!((r.status, r.text()), (200, format!("for {name}")), "{path}");
            }
        }
    }
    // Not marked public: never stored; public: stored once per user.
    assert_eq!(count(&up, "/private"), 4);
    assert_eq!(count(&up, "/public"), 2);
    assert_eq!(get(&p.url("/public")).status, 401);
}

#[test]
fn hits_misses_and_revalidation_over_http2() {
    let up = Scripted::start(|_, _, req| match (path(req).as_str(), field(req, "if-none-match")) {
        ("/stale", Some(_)) => Step::reply(&response(
            304,
            &[("ETag", "\"e\""), ("Cache-Control", "max-age=1")],
            b"",
        )),
        ("/stale", None) => Step::reply(&response(
            200,
            &[("ETag", "\"e\""), ("Cache-Control", "max-age=1")],
            b"etagged",
        )),
        (_, _) => Step::reply(&chunked(&[("Cache-Control", "max-age=60")], &pattern(600_000, 5))),
    });
    let p = proxy(up.addr, "", "");
    let url = p.url("/asset.js");
    let (code, st, body) = curl_h2(&url, &[]);
    assert_eq!((code, st.as_str(), body.len()), (200, "ringway; fwd=miss", 600_000));
    let (code, st, body) = curl_h2(&url, &[]);
    assert_eq!((code, st.as_str()), (200, "ringway; hit"));
    assert_eq!(body, pattern(600_000, 5));
    // An HTTP/1.1 client gets the same entry.
    assert_eq!(get(&url).body, pattern(600_000, 5));
    assert_eq!(count(&up, "/asset.js"), 1);
    let (code, st, body) = curl_h2(&url, &["-I"]);
    assert_eq!((code, st.as_str(), body.len()), (200, "ringway; hit", 0));
    curl_h2(&p.url("/stale"), &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let (code, st, body) = curl_h2(&p.url("/stale"), &[]);
    assert_eq!((code, st.as_str()), (200, "ringway; fwd=stale; fwd-status=304"));
    assert_eq!(body, b"etagged");
}

#[test]
fn cache_keys_are_checked() {
    let dir = TempDir::new();
    let check = |text: &str| {
        let path = dir.write("c.toml", text);
        stderr_of(&run_cli(&["check", "--config", path.to_str().unwrap()]))
    };
    let base = "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n";
    let err = check(&format!("{base}[[route]]\nupstream = \"a\"\ncache_ttl = \"1s\"\n"));
    assert!(err.contains("route.cache_ttl") && err.contains("cache = true"), "{err}");
    let err = check(&format!(
        "[cache]\nsize = \"1MB\"\nmax_object = \"2MB\"\n{base}[[route]]\nupstream = \"a\"\ncache = true\n"
    ));
    assert!(err.contains("cache.max_object"), "{err}");
    let err = check(&format!(
        "[cache]\nsize = \"lots\"\n{base}[[route]]\nupstream = \"a\"\ncache = true\n"
    ));
    assert!(err.contains("cache.size"), "{err}");
    let ok = run_cli(&[
        "check",
        "--config",
        dir.write(
            "ok.toml",
            &format!("[cache]\nsize = \"64MB\"\n{base}[[route]]\nupstream = \"a\"\ncache = true\ncache_ttl = \"1s\"\n"),
        )
        .to_str()
        .unwrap(),
    ]);
    assert!(ok.status.success(), "{}", stderr_of(&ok));
}

#[test]
fn compressed_variants_are_stored_once_per_encoding() {
    use std::io::Read;
    let script: Vec<u8> = (0..20_000)
        .map(|i| b"function dashboard() { return 42; }\n"[i % 36])
        .collect();
    let body = script.clone();
    let up = Scripted::start(move |_, _, _| {
        let fields = [
            ("Cache-Control", "public, max-age=60"),
            ("Content-Type", "text/javascript"),
        ];
        Step::reply(&chunked(&fields, &body))
    });
    let p = proxy(up.addr, "", "compress = true\n");
    let gzip = |r: &HttpResp| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut out).unwrap();
        out
    };
    let first = get_with(&p.url("/app.js"), &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        (status(&first), first.header("content-encoding")),
        ("ringway; fwd=miss", Some("gzip"))
    );
    assert_eq!(gzip(&first), script);
    // The worker counts the compressed response once it has finished with it, which may be
    // just after the client read its last byte.
    let gzip_out = || metric(&p, "ringway_compress_out_bytes_total{encoding=\"gzip\"}");
    assert!(wait_until(Duration::from_secs(5), || gzip_out() > 0));
    let compressed_out = gzip_out();
    for accept in ["gzip", "gzip, deflate"] {
        let hit = get_with(&p.url("/app.js"), &[("Accept-Encoding", accept)]);
        assert_eq!(
            (status(&hit), hit.header("content-encoding")),
            ("ringway; hit", Some("gzip"))
        );
        assert_eq!(hit.header("content-length"), Some(&*hit.body.len().to_string()));
        assert_eq!(gzip(&hit), script);
    }
    // The hits were not compressed again.
    assert_eq!(gzip_out(), compressed_out);
    assert_eq!(up.requests().len(), 1);
    // Another encoding (here none) is another entry, stored as the client gets it.
    for expect in ["ringway; fwd=miss", "ringway; hit"] {
        let plain = get(&p.url("/app.js"));
        assert_eq!((status(&plain), plain.header("content-encoding")), (expect, None));
        assert_eq!(plain.body, script);
    }
    assert_eq!(up.requests().len(), 2);
}
