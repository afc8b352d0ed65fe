//! The shipped example configs: every `config/*.toml` passes `ringway check`, the deployment-guide
//! scenarios are all represented, and each example actually serves its routes when run with its
//! listeners moved to 127.0.0.1:0 and its upstreams pointed at a test backend.

mod common;
use common::*;

fn examples() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(config_dir())
        .expect("config/ directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_passes_check() {
    let files = examples();
    assert!(!files.is_empty(), "no config/*.toml found");
    for f in &files {
        let o = run_cli(&["check", "--config", f.to_str().unwrap()]);
        assert!(o.status.success(), "{} failed check:\n{}", f.display(), stderr_of(&o));
        assert!(
            !stdout_of(&o).trim().is_empty(),
            "{}: check printed nothing",
            f.display()
        );
    }
}

fn routes(v: &toml::Value) -> Vec<toml::Value> {
    v.get("route").and_then(|r| r.as_array()).cloned().unwrap_or_default()
}

fn flag(r: &toml::Value, key: &str) -> bool {
    r.get(key).and_then(|x| x.as_bool()).unwrap_or(false)
}

#[test]
fn every_deployment_guide_scenario_has_an_example() {
    let parsed: Vec<(String, toml::Value)> = examples()
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            (
                f.display().to_string(),
                text.parse::<toml::Value>().expect("valid TOML"),
            )
        })
        .collect();
    let any_route = |pred: &dyn Fn(&toml::Value) -> bool| parsed.iter().any(|(_, v)| routes(v).iter().any(pred));
    let prefix = |r: &toml::Value| r.get("prefix").and_then(|p| p.as_str()).unwrap_or("/").to_string();
    let host = |r: &toml::Value| r.get("host").and_then(|p| p.as_str()).map(str::to_string);
    let set_has = |r: &toml::Value, table: &str, key: &str| {
        r.get(table)
            .and_then(|t| t.get("set"))
            .and_then(|s| s.as_table())
            .is_some_and(|s| s.keys().any(|k| k.eq_ignore_ascii_case(key)))
    };
    let scenarios: [(&str, bool); 8] = [
        (
            "Grafana at the root of a subdomain",
            any_route(&|r| host(r).is_some() && prefix(r) == "/"),
        ),
        (
            "Grafana under a sub-path, prefix stripped",
            any_route(&|r| flag(r, "strip_prefix") && prefix(r) != "/"),
        ),
        (
            "Grafana serve_from_sub_path / Thanos route prefix (prefix kept)",
            any_route(&|r| prefix(r) != "/" && !flag(r, "strip_prefix") && r.get("replace_prefix").is_none()),
        ),
        (
            "Stash with X-Forwarded-Prefix",
            any_route(&|r| {
                prefix(r).contains("stash") && (flag(r, "strip_prefix") || r.get("replace_prefix").is_some())
            }),
        ),
        (
            "embedded dashboard injecting X-WEBAUTH-USER",
            any_route(&|r| set_has(r, "request_headers", "X-WEBAUTH-USER")),
        ),
        (
            "embedded dashboard adding Access-Control-Allow-Origin",
            any_route(&|r| set_has(r, "response_headers", "Access-Control-Allow-Origin")),
        ),
        (
            "host + prefix rule",
            any_route(&|r| host(r).is_some() && prefix(r) != "/"),
        ),
        (
            "case-insensitive prefix",
            any_route(&|r| flag(r, "prefix_case_insensitive")),
        ),
    ];
    let missing: Vec<&str> = scenarios.iter().filter(|(_, ok)| !ok).map(|(n, _)| *n).collect();
    assert!(missing.is_empty(), "no example config for: {missing:?}");
}

/// Moves every listener to 127.0.0.1:0 and every upstream server to `to`.
fn localize(v: &mut toml::Value, to: std::net::SocketAddr) {
    if let Some(ls) = v.get_mut("listener").and_then(|l| l.as_array_mut()) {
        for l in ls {
            l.as_table_mut()
                .unwrap()
                .insert("bind".into(), toml::Value::String("127.0.0.1:0".into()));
        }
    }
    if let Some(ups) = v.get_mut("upstream").and_then(|u| u.as_table_mut()) {
        for (_, u) in ups.iter_mut() {
            let servers = toml::Value::Array(vec![toml::Value::String(to.to_string())]);
            u.as_table_mut().unwrap().insert("servers".into(), servers);
        }
    }
}

#[test]
fn every_example_serves_its_routes() {
    let b = Backend::echo();
    for f in examples() {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut v: toml::Value = text.parse().unwrap();
        localize(&mut v, b.addr);
        let p = Ringway::start(&toml::to_string(&v).unwrap());
        for r in routes(&v) {
            let prefix = r.get("prefix").and_then(|p| p.as_str()).unwrap_or("/").to_string();
            let base = if prefix.ends_with('/') {
                prefix.clone()
            } else {
                format!("{prefix}/")
            };
            let host = match r.get("host").and_then(|h| h.as_str()) {
                Some(h) => h.replace('*', "probe"),
                None => "unlisted-host.test".to_string(),
            };
            let path = format!("{base}probe?q=1");
            let want = if flag(&r, "strip_prefix") {
                "/probe?q=1".to_string()
            } else if let Some(rep) = r.get("replace_prefix").and_then(|x| x.as_str()) {
                format!("{}/probe?q=1", rep.trim_end_matches('/'))
            } else {
                path.clone()
            };
            let resp = raw_roundtrip(p.addr(), &get_req(&path, &host, &[]));
            assert_eq!(resp.status, 200, "{}: Host {host} {path}: {}", f.display(), resp.text());
            assert_eq!(resp.echo().url, want, "{}: Host {host} {path}", f.display());
        }
    }
}
