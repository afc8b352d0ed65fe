//! The files shipped for deployment: the container seccomp profiles (the runtime's default, and
//! ringway's that adds exactly the three io_uring syscalls to it) and the configuration the
//! Debian package installs, which the built binary must accept.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const IO_URING: [&str; 3] = ["io_uring_enter", "io_uring_register", "io_uring_setup"];

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/seccomp").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How many times each syscall name is allowed without conditions (no argument filter, no
/// capability or architecture rule): the list a container without extra capabilities gets.
fn unconditional_allows(profile: &Value) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for rule in profile["syscalls"].as_array().expect("syscalls is a list") {
        let conditional = ["args", "includes", "excludes"]
            .iter()
            .any(|k| rule.get(k).is_some_and(|v| !v.is_null()));
        if rule["action"] == "SCMP_ACT_ALLOW" && !conditional {
            for n in rule["names"].as_array().expect("names is a list") {
                *names.entry(n.as_str().expect("a name").to_string()).or_insert(0) += 1;
            }
        }
    }
    names
}

/// Every rule's names, whatever its action and conditions.
fn all_names(profile: &Value) -> Vec<String> {
    let rules = profile["syscalls"].as_array().expect("syscalls is a list");
    rules
        .iter()
        .flat_map(|r| r["names"].as_array().expect("names is a list").iter())
        .map(|n| n.as_str().expect("a name").to_string())
        .collect()
}

#[test]
fn default_profile_is_the_runtime_default_which_denies_io_uring() {
    let default = load("docker-default.json");
    assert_eq!(default["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(
        default["defaultErrnoRet"], 1,
        "EPERM, as Docker returns for io_uring_setup"
    );
    let allowed = unconditional_allows(&default);
    // A few a network server cannot live without, so a truncated file is noticed.
    for needed in ["accept4", "epoll_wait", "splice", "openat", "futex"] {
        assert!(allowed.contains_key(needed), "{needed} missing");
    }
    assert!(allowed.len() > 300, "only {} syscalls allowed", allowed.len());
    let names = all_names(&default);
    for call in IO_URING {
        assert!(
            !names.iter().any(|n| n == call),
            "{call} appears in the default profile"
        );
    }
}

#[test]
fn ringway_profile_is_the_default_plus_exactly_the_three_io_uring_syscalls() {
    let default = load("docker-default.json");
    let derived = load("ringway-io_uring.json");
    let mut expected = unconditional_allows(&default);
    for call in IO_URING {
        expected.insert(call.to_string(), 1);
    }
    assert_eq!(unconditional_allows(&derived), expected);

    // Nothing else differs: the same top-level fields, and every rule identical once the three
    // names are taken out of the one that gained them.
    let mut stripped = derived.clone();
    for rule in stripped["syscalls"].as_array_mut().unwrap() {
        let names = rule["names"].as_array_mut().unwrap();
        names.retain(|n| !IO_URING.contains(&n.as_str().unwrap()));
    }
    assert_eq!(
        stripped, default,
        "the derived profile changes more than the io_uring syscalls"
    );
}

#[test]
fn packaged_configuration_passes_check() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/debian/ringway.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run ringway check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("0.0.0.0:80"), "{stdout}");
}

/// `ringway check` on a configuration file; panics with its output when it fails.
fn check(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run ringway check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stdout}{stderr}", config.display());
    stdout
}

#[test]
fn scale_out_recipes_pass_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for n in ["ringway-1.toml", "ringway-2.toml"] {
        let text = check(&root.join("haproxy-tcp").join(n));
        assert!(text.contains("proxy_protocol (from 1 range(s))"), "{text}");
    }
    // The Kubernetes ConfigMap's ringway.toml: its block scalar, indented four spaces.
    let yaml = std::fs::read_to_string(root.join("kubernetes/configmap.yaml")).unwrap();
    let toml: String = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("ringway.toml: |"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    assert!(toml.contains("proxy_protocol = true"), "{toml}");
    let dir = std::env::temp_dir().join(format!("ringway-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringway.toml");
    // Its upstream is a cluster DNS name, which must resolve at load time: point it at loopback.
    std::fs::write(
        &path,
        toml.replace("app.default.svc.cluster.local:8080", "127.0.0.1:8080"),
    )
    .unwrap();
    let text = check(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(text.contains("0.0.0.0:8080 proxy_protocol (from 1 range(s))"), "{text}");
}
