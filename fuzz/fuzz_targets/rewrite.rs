//! Path checks and rewrites: `check_path` never lets a dot segment through and is stable (a
//! checked path checks to itself, so no later decoding can reveal a new segment); prefix
//! rewriting and the reverse mapping of Location and Set-Cookie never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::exchange::rewrite::{check_path, map_cookie_path, map_location, upstream_path};
use ringway_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let plan = plan();
    if let Ok(path) = check_path(data) {
        let again = check_path(&path).expect("a checked path passes the check again");
        assert_eq!(&*again, &*path, "checking a checked path changed it");
        for seg in path.split(|&b| b == b'/') {
            assert!(seg != b"." && seg != b"..", "dot segment let through: {path:?}");
        }
        let mut host_buf = [0u8; 256];
        let host = ringway::http::normalize_host(b"a.example.com", &mut host_buf);
        if let Some(hit) = plan.table(0).lookup(&plan.routes, host, &path) {
            let mut out = Vec::new();
            upstream_path(&plan.routes[hit.route], &path, hit.matched, &mut out);
            assert!(out.first() == Some(&b'/'), "upstream path not absolute: {out:?}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for route in &plan.routes {
            let _ = map_location(route, text, "127.0.0.1:9", Some("a.example.com"));
            let _ = map_cookie_path(route, text);
        }
    }
});
