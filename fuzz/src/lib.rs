//! Shared fixture for the fuzz targets: a compiled plan with plain, host, stripped, replaced and
//! case-insensitive routes, and the per-thread state `decide` needs.

use ringway::auth::WorkerAccess;
use ringway::config::{load_str, Plan};
use ringway::exchange::outgoing::Outgoing;
use ringway::http::Framing;
use ringway::http::client_info::ClientInfo;
use std::path::Path;
use std::sync::OnceLock;

const CONFIG: &str = r#"
[server]
workers = 1

[[listener]]
bind = "127.0.0.1:0"

[upstream.app]
servers = ["127.0.0.1:9"]

[upstream.other]
servers = ["127.0.0.1:10", "127.0.0.1:11"]
balance = "hash"
hash_key = "header:X-User"

[[route]]
upstream = "app"

[[route]]
prefix = "/grafana/"
upstream = "app"
strip_prefix = true

[[route]]
prefix = "/stash/"
upstream = "other"
replace_prefix = "/s/"
preserve_host = false

[[route]]
host = "*.example.com"
prefix = "/API"
prefix_case_insensitive = true
upstream = "other"
strip_prefix = true

[route.request_headers]
set = { "X-Set" = "1" }
remove = ["X-Remove"]

[route.response_headers]
add = { "X-Added" = "1" }
"#;

pub fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| load_str(CONFIG, Path::new("fuzz.toml")).expect("the fuzz fixture config compiles"))
}

thread_local! {
    pub static ACCESS: WorkerAccess = WorkerAccess::new(plan());
}

pub fn client_info() -> ClientInfo {
    ClientInfo::new("127.0.0.1:40000".parse().unwrap(), "127.0.0.1:8080".parse().ok(), false)
}

/// An exchange as `decide` would leave it, varied by `flags` (bit 0 HEAD, 1 HTTP/1.0 client,
/// 2 upgrade asked, 3 client keep-alive, 4 gzip accepted) and aimed at `route`.
pub fn outgoing(route: usize, flags: u8) -> Outgoing {
    let plan = plan();
    let route = route % plan.routes.len();
    Outgoing {
        route,
        upstream: plan.routes[route].upstream,
        server: 0,
        affinity: None,
        idempotent: true,
        host_at: None,
        framing: Framing::None,
        expect_continue: false,
        is_head: flags & 1 != 0,
        client_keep_alive: flags & 8 != 0,
        client_http10: flags & 2 != 0,
        request_host: Some("h.example.com".into()),
        cors_origin: None,
        upgrade: flags & 4 != 0,
        listener: 0,
        proxy_header: None,
        compress: (flags & 16 != 0).then_some(ringway::compress::Encoding::Gzip),
        cache: None,
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
