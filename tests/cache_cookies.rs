//! `cache_bypass_cookies` through the built binary, against a scripted upstream that records
//! every request: a request carrying a cookie the route names (alone, among others, or in a
//! second Cookie field) is neither answered from nor stored in the cache, other cookies are
//! cached, a response that says `public` is stored for that cookie; the same over HTTP/2,
//! whose cookie crumbs arrive as separate fields; and bad names are refused at start-up.

mod cache_support;
mod common;
use cache_support::*;
use common::*;

/// The upstream answers every path with a shared-cacheable body naming the path; `/public*`
/// says `public`.
fn upstream_answering() -> Scripted {
    Scripted::start(|_, _, req| {
        let p = path(req);
        let cc = if p.starts_with("/public") {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        Step::reply(&response(200, &[("Cache-Control", cc)], p.as_bytes()))
    })
}

/// Sends `GET path` with the extra header lines over HTTP/1.1; Cache-Status and body.
fn fetch(p: &Ringway, path: &str, extra: &[&str]) -> (String, String) {
    let r = raw_roundtrip(p.addr(), &get_req(path, "localhost", extra));
    assert_eq!(r.status, 200, "{path}");
    let status = r.header("cache-status").unwrap_or("").to_string();
    (status, String::from_utf8_lossy(&r.body).into_owned())
}

const ROUTE: &str = "cache_bypass_cookies = [\"grafana_session\", \"remember_me\"]\n";

#[test]
fn a_named_cookie_bypasses_the_cache_and_other_cookies_do_not() {
    let up = upstream_answering();
    let p = proxy(up.addr, "", ROUTE);
    let miss = "ringway; fwd=miss";
    let cases: [(&str, &[&str]); 4] = [
        ("/named", &["Cookie: grafana_session=abc"]),
        ("/among", &["Cookie: theme=dark; grafana_session=abc; lang=en"]),
        ("/second", &["Cookie: theme=dark", "Cookie: remember_me=1"]),
        ("/spaced", &["Cookie: theme=dark;grafana_session=abc"]),
    ];
    for (path, cookies) in cases {
        for _ in 0..2 {
            assert_eq!(fetch(&p, path, cookies), (miss.to_string(), path.to_string()));
        }
        assert_eq!(
            count(&up, path),
            2,
            "{path} with {cookies:?} must reach the upstream each time"
        );
        // Nor does it serve what anonymous requests stored.
        fetch(&p, path, &[]);
        assert_eq!(fetch(&p, path, &[]).0, "ringway; hit");
        assert_eq!(fetch(&p, path, cookies).0, miss, "{path}");
        assert_eq!(count(&up, path), 4, "{path}");
    }
    // Other cookies, and names that only contain or resemble a named one, are cached.
    let others: [&[&str]; 3] = [
        &["Cookie: theme=dark"],
        &["Cookie: grafana_session_expiry=5; my_grafana_session=1"],
        &["Cookie: Grafana_Session=abc"],
    ];
    for (i, cookies) in others.into_iter().enumerate() {
        let path = format!("/other{i}");
        assert_eq!(fetch(&p, &path, cookies).0, miss);
        assert_eq!(fetch(&p, &path, cookies), ("ringway; hit".to_string(), path.clone()));
        assert_eq!(count(&up, &path), 1, "{cookies:?}");
    }
    // A response that says public is stored, for the request's own cookies.
    let mine = ["Cookie: grafana_session=abc"];
    assert_eq!(fetch(&p, "/public", &mine).0, miss);
    assert_eq!(
        fetch(&p, "/public", &mine),
        ("ringway; hit".to_string(), "/public".to_string())
    );
    assert_eq!(count(&up, "/public"), 1);
    assert_eq!(fetch(&p, "/public", &["Cookie: grafana_session=xyz"]).0, miss);
    assert_eq!(count(&up, "/public"), 2);
}

#[test]
fn a_named_cookie_bypasses_the_cache_over_http2() {
    let up = upstream_answering();
    let p = proxy(up.addr, "", ROUTE);
    let cookie = |v: &str| ["-H".to_string(), format!("Cookie: {v}")];
    let h2 = |path: &str, cookies: &[&str]| {
        let args: Vec<String> = cookies.iter().flat_map(|c| cookie(c)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, status, body) = curl_h2(&p.url(path), &args);
        assert_eq!((code, String::from_utf8_lossy(&body).as_ref()), (200, path), "{path}");
        status
    };
    for _ in 0..2 {
        assert_eq!(h2("/named", &["grafana_session=abc"]), "ringway; fwd=miss");
        // Crumbs in two fields: joined into one Cookie field, still found.
        assert_eq!(
            h2("/crumbs", &["theme=dark", "grafana_session=abc"]),
            "ringway; fwd=miss"
        );
    }
    assert_eq!((count(&up, "/named"), count(&up, "/crumbs")), (2, 2));
    h2("/other", &["theme=dark", "lang=en"]);
    assert_eq!(h2("/other", &["theme=dark", "lang=en"]), "ringway; hit");
    assert_eq!(count(&up, "/other"), 1);
    h2("/public", &["grafana_session=abc"]);
    assert_eq!(h2("/public", &["grafana_session=abc"]), "ringway; hit");
    assert_eq!(count(&up, "/public"), 1);
}

#[test]
fn bad_cookie_names_are_refused_at_start_up() {
    let dir = TempDir::new();
    let check = |route: &str| {
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\
             [[route]]\nupstream = \"a\"\n{route}"
        );
        let path = dir.write("c.toml", &text);
        let out = run_cli(&["check", "--config", path.to_str().unwrap()]);
        (out.status.success(), stderr_of(&out))
    };
    for (route, says) in [
        (
            "cache = true\ncache_bypass_cookies = [\"a b\"]\n",
            "`a b` is not a cookie name",
        ),
        (
            "cache = true\ncache_bypass_cookies = [\"\"]\n",
            "`` is not a cookie name",
        ),
        (
            "cache = true\ncache_bypass_cookies = [\"s=1\"]\n",
            "`s=1` is not a cookie name",
        ),
        ("cache_bypass_cookies = [\"sid\"]\n", "needs cache = true"),
    ] {
        let (ok, err) = check(route);
        assert!(
            !ok && err.contains("route.cache_bypass_cookies") && err.contains(says),
            "{route}: {err}"
        );
    }
    // A single string instead of a list: the file and line of the mistake.
    let (ok, err) = check("cache = true\ncache_bypass_cookies = \"sid\"\n");
    assert!(
        !ok && err.contains("c.toml:8") && err.contains("expected a sequence"),
        "{err}"
    );
    let (ok, err) = check("cache = true\ncache_bypass_cookies = [\"grafana_session\", \"__Host-sid\"]\n");
    assert!(ok, "{err}");
}
