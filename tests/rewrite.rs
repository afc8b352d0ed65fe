//! Sub-path rewriting: strip / replace / keep, the query passed byte for byte, and the mapping back
//! of Location, Content-Location and Set-Cookie Path= when the prefix was stripped or replaced.

mod common;
use common::*;

const Q: &str = "?a=%2F&b=1+2&c=&&d=%E2%9C%93&e=x%20y&f=/..//&g=%zz";

fn proxy_for(backend: &Backend, route_extra: &str) -> Ringway {
    let cfg = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n{}[[route]]\nprefix = \"/grafana/\"\nupstream = \"g\"\n{route_extra}\n",
        upstream("g", backend.addr)
    );
    Ringway::start(&cfg)
}

/// Path only of a Location value (drops scheme and authority if absolute).
fn path_of(loc: &str) -> &str {
    match loc.find("://") {
        Some(i) => {
            let rest = &loc[i + 3..];
            rest.find('/').map(|j| &rest[j..]).unwrap_or("/")
        }
        None => loc,
    }
}

#[test]
fn strip_prefix_sends_the_rest_and_the_query_byte_for_byte() {
    let b = Backend::echo();
    let p = proxy_for(&b, "strip_prefix = true");
    let cases = [
        (format!("/grafana/api/health{Q}"), format!("/api/health{Q}")),
        ("/grafana/".to_string(), "/".to_string()),
        ("/grafana/?x=1".to_string(), "/?x=1".to_string()),
        (
            "/grafana/public/build/app.js?v=3".to_string(),
            "/public/build/app.js?v=3".to_string(),
        ),
        ("/grafana/d/abc/my%20dash".to_string(), "/d/abc/my%20dash".to_string()),
        ("/grafana/grafana/x".to_string(), "/grafana/x".to_string()),
    ];
    for (public, want) in cases {
        let r = raw_roundtrip(p.addr(), &get_req(&public, "h.test", &[]));
        assert_eq!(r.echo().url, want, "public {public}");
    }
}

#[test]
fn replace_prefix_swaps_it_and_keeps_the_query() {
    let b = Backend::echo();
    let p = proxy_for(&b, "replace_prefix = \"/other/\"");
    let r = raw_roundtrip(p.addr(), &get_req(&format!("/grafana/api/x{Q}"), "h.test", &[]));
    assert_eq!(r.echo().url, format!("/other/api/x{Q}"));
    let r = raw_roundtrip(p.addr(), &get_req("/grafana/", "h.test", &[]));
    assert_eq!(r.echo().url, "/other/");
}

#[test]
fn default_keeps_the_path() {
    let b = Backend::echo();
    let p = proxy_for(&b, "");
    let r = raw_roundtrip(p.addr(), &get_req(&format!("/grafana/api/x{Q}"), "h.test", &[]));
    assert_eq!(r.echo().url, format!("/grafana/api/x{Q}"));
}

/// A backend answering redirects and cookies the way an app unaware of its public prefix does.
fn unaware_app(upstream_path_prefix: &'static str) -> Backend {
    let slot = std::sync::Arc::new(std::sync::OnceLock::<std::net::SocketAddr>::new());
    let s2 = slot.clone();
    let b = Backend::with(move |_, url| {
        let own = s2.get().copied().unwrap();
        let p = upstream_path_prefix;
        match url {
            u if u.ends_with("/rel") => Reply::fixed(302, &[("Location", &format!("{p}login?next=%2F"))], ""),
            u if u.ends_with("/abs-upstream") => {
                Reply::fixed(302, &[("Location", &format!("http://{own}{p}login"))], "")
            }
            u if u.ends_with("/abs-host") => {
                Reply::fixed(302, &[("Location", &format!("http://public.test{p}login"))], "")
            }
            u if u.ends_with("/elsewhere") => Reply::fixed(302, &[("Location", "https://sso.other.test/auth?x=1")], ""),
            u if u.ends_with("/content-location") => {
                Reply::fixed(200, &[("Content-Location", &format!("{p}api/dashboards/1"))], "x")
            }
            u if u.ends_with("/cookie") => Reply::fixed(
                200,
                &[
                    ("Set-Cookie", &format!("grafana_session=abc; Path={p}; HttpOnly")),
                    ("Set-Cookie", &format!("other=1; path={p}api; SameSite=Lax")),
                    ("Set-Cookie", "elsewhere=1; Path=/unrelated"),
                ],
                "x",
            ),
            _ => Reply::Echo,
        }
    });
    slot.set(b.addr).unwrap();
    b
}

fn check_mapped_back(p: &Ringway, upstream_addr: std::net::SocketAddr, upstream_prefix: &str) {
    let r = get_with(&p.url("/grafana/rel"), &[("Host", "public.test")]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("Location"),
        Some("/grafana/login?next=%2F"),
        "relative Location"
    );

    let r = get_with(&p.url("/grafana/abs-upstream"), &[("Host", "public.test")]);
    let loc = r.header("Location").unwrap().to_string();
    assert_eq!(
        path_of(&loc),
        "/grafana/login",
        "Location absolute to the upstream address: {loc}"
    );
    assert!(
        !loc.contains(&upstream_addr.to_string()),
        "the upstream's own address must not leak to the client: {loc}"
    );

    let r = get_with(&p.url("/grafana/abs-host"), &[("Host", "public.test")]);
    let loc = r.header("Location").unwrap();
    assert_eq!(
        path_of(loc),
        "/grafana/login",
        "Location absolute to the request's Host: {loc}"
    );
    if loc.contains("://") {
        assert!(loc.starts_with("http://public.test/"), "{loc}");
    }

    let r = get_with(&p.url("/grafana/elsewhere"), &[("Host", "public.test")]);
    assert_eq!(
        r.header("Location"),
        Some("https://sso.other.test/auth?x=1"),
        "foreign Location is left alone"
    );

    let r = get_with(&p.url("/grafana/content-location"), &[("Host", "public.test")]);
    assert_eq!(r.header("Content-Location"), Some("/grafana/api/dashboards/1"));

    let r = get_with(&p.url("/grafana/cookie"), &[("Host", "public.test")]);
    let cookies = r.all("Set-Cookie");
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    let session = cookies.iter().find(|c| c.starts_with("grafana_session=")).unwrap();
    assert!(
        session.contains("Path=/grafana/;") || session.contains("Path=/grafana;"),
        "root cookie path gets the public prefix: {session}"
    );
    assert!(session.contains("HttpOnly"), "{session}");
    let other = cookies.iter().find(|c| c.starts_with("other=")).unwrap();
    assert!(other.to_ascii_lowercase().contains("path=/grafana/api;"), "{other}");
    let elsewhere = cookies.iter().find(|c| c.starts_with("elsewhere=")).unwrap();
    if upstream_prefix == "/" {
        // everything is under the upstream's root, so this path gets the public prefix too
        assert_eq!(*elsewhere, "elsewhere=1; Path=/grafana/unrelated");
    } else {
        assert_eq!(
            *elsewhere, "elsewhere=1; Path=/unrelated",
            "a path outside the upstream prefix stays"
        );
    }
}

#[test]
fn stripped_prefix_maps_location_content_location_and_cookie_path_back() {
    let b = unaware_app("/");
    let p = proxy_for(&b, "strip_prefix = true");
    check_mapped_back(&p, b.addr, "/");
}

#[test]
fn replaced_prefix_maps_location_content_location_and_cookie_path_back() {
    let b = unaware_app("/other/");
    let p = proxy_for(&b, "replace_prefix = \"/other/\"");
    check_mapped_back(&p, b.addr, "/other/");
}

#[test]
fn kept_prefix_leaves_responses_alone() {
    // serve_from_sub_path: the app already answers with public paths; nothing may be doubled.
    let b = unaware_app("/grafana/");
    let p = proxy_for(&b, "");
    let r = get_with(&p.url("/grafana/rel"), &[("Host", "public.test")]);
    assert_eq!(r.header("Location"), Some("/grafana/login?next=%2F"));
    let r = get_with(&p.url("/grafana/cookie"), &[("Host", "public.test")]);
    let cookies = r.all("Set-Cookie");
    assert!(
        cookies.contains(&"grafana_session=abc; Path=/grafana/; HttpOnly"),
        "{cookies:?}"
    );
}
