//! Route lookup: host (exact, then wildcard, then any), then the longest path prefix on segment
//! boundaries. Built once from the plan; a lookup allocates nothing unless a case-insensitive
//! prefix exists in the host group it searches.

use crate::config::{HostMatch, RoutePlan};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a for the route maps. Their keys come from the config and never change, so a key a
/// client picks cannot lengthen any probe sequence: SipHash's flood resistance buys nothing here
/// and cost more than the rest of a lookup of a short prefix.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<Fnv>>;

/// What a path lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteHit {
    /// Index into `Plan::routes`.
    pub route: usize,
    /// Bytes of the client's path covered by the route's key (stripped when the route rewrites).
    pub matched: usize,
    /// The path is exactly the key of a prefix written with a trailing slash: redirect to it.
    pub bare_prefix: bool,
}

#[derive(Default)]
pub struct RouteTable {
    exact: KeyMap<PrefixSet>,
    /// Suffix (`.example.com`) and routes, longest suffix first.
    suffix: Vec<(Box<[u8]>, PrefixSet)>,
    any: PrefixSet,
}

#[derive(Default)]
struct PrefixSet {
    keys: KeyMap<usize>,
    /// Lower-cased keys of case-insensitive routes.
    folded: KeyMap<usize>,
    max_len: usize,
}

impl RouteTable {
    pub fn build(routes: &[RoutePlan]) -> RouteTable {
        RouteTable::build_from(routes, |_| true)
    }

    /// A table of the routes `keep` accepts (those serving one listener); indices stay those of
    /// `routes`.
    pub fn build_from(routes: &[RoutePlan], keep: impl Fn(&&RoutePlan) -> bool) -> RouteTable {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate().filter(|(_, r)| keep(r)) {
            let set = match &r.host {
                HostMatch::Any => &mut t.any,
                HostMatch::Exact(h) => t.exact.entry(h.as_bytes().into()).or_default(),
                HostMatch::Suffix(s) => {
                    let pos = t.suffix.iter().position(|(k, _)| **k == *s.as_bytes());
                    let pos = pos.unwrap_or_else(|| {
                        t.suffix.push((s.as_bytes().into(), PrefixSet::default()));
                        t.suffix.len() - 1
                    });
                    &mut t.suffix[pos].1
                }
            };
            set.insert(r, i);
        }
        t.suffix.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        t
    }

    /// `host` is lower-case without port (see [`normalize_host`]); `path` has no query.
    pub fn lookup(&self, routes: &[RoutePlan], host: Option<&[u8]>, path: &[u8]) -> Option<RouteHit> {
        if let Some(h) = host {
            if let Some(set) = self.exact.get(h) {
                if let Some(hit) = set.find(routes, path) {
                    return Some(hit);
                }
            }
            for (suffix, set) in &self.suffix {
                if h.len() > suffix.len() && h.ends_with(suffix) {
                    if let Some(hit) = set.find(routes, path) {
                        return Some(hit);
                    }
                }
            }
        }
        self.any.find(routes, path)
    }
}

impl PrefixSet {
    fn insert(&mut self, r: &RoutePlan, index: usize) {
        let key = r.key.as_bytes();
        self.max_len = self.max_len.max(key.len());
        if r.case_insensitive {
            self.folded.insert(key.to_ascii_lowercase().into(), index);
        } else {
            self.keys.insert(key.into(), index);
        }
    }

    fn find(&self, routes: &[RoutePlan], path: &[u8]) -> Option<RouteHit> {
        if self.keys.is_empty() && self.folded.is_empty() {
            return None;
        }
        let folded_path = (!self.folded.is_empty()).then(|| path.to_ascii_lowercase());
        // Candidate ends, longest first: the whole path, then every position of a '/'.
        let mut end = path.len();
        loop {
            if end <= self.max_len && (end == path.len() || path[end] == b'/') {
                let hit = self
                    .keys
                    .get(&path[..end])
                    .or_else(|| folded_path.as_ref().and_then(|f| self.folded.get(&f[..end])));
                if let Some(&route) = hit {
                    let bare_prefix = end == path.len() && routes[route].redirects_bare_prefix();
                    return Some(RouteHit {
                        route,
                        matched: end,
                        bare_prefix,
                    });
                }
            }
            if end == 0 {
                return None;
            }
            end = memchr::memrchr(b'/', &path[..end]).unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use crate::http::normalize_host;
    use std::path::Path;

    fn table(routes: &str) -> crate::config::Plan {
        let text = format!("[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n{routes}");
        load_str(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{}", e[0]))
    }

    fn find(p: &crate::config::Plan, host: &str, path: &str) -> Option<(usize, usize, bool)> {
        let mut buf = [0u8; 256];
        let h = normalize_host(host.as_bytes(), &mut buf);
        p.table(0)
            .lookup(&p.routes, h, path.as_bytes())
            .map(|h| (p.routes[h.route].number, h.matched, h.bare_prefix))
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let p = table(
            "[[route]]\nprefix = \"/\"\nupstream = \"a\"\n\
             [[route]]\nprefix = \"/grafana/\"\nupstream = \"a\"\n\
             [[route]]\nprefix = \"/grafana/api\"\nupstream = \"a\"\n",
        );
        let cases = [
            ("/", (1, 0, false)),
            ("/grafanax", (1, 0, false)),
            ("/grafana", (2, 8, true)),
            ("/grafana/", (2, 8, false)),
            ("/grafana/d/x", (2, 8, false)),
            ("/grafana/api", (3, 12, false)),
            ("/grafana/apix", (2, 8, false)),
            ("/grafana/api/ds", (3, 12, false)),
        ];
        for (path, want) in cases {
            assert_eq!(find(&p, "x", path), Some(want), "{path}");
        }
    }

    #[test]
    fn host_groups_fall_through() {
        let p = table(
            "[[route]]\nhost = \"example.com\"\nprefix = \"/grafana/\"\nupstream = \"a\"\n\
             [[route]]\nhost = \"*.example.com\"\nupstream = \"a\"\n\
             [[route]]\nprefix = \"/\"\nupstream = \"a\"\n",
        );
        assert_eq!(find(&p, "Example.COM:8080", "/grafana/x").unwrap().0, 1);
        assert_eq!(find(&p, "example.com", "/other").unwrap().0, 3);
        assert_eq!(find(&p, "a.b.example.com", "/other").unwrap().0, 2);
        assert_eq!(find(&p, "example.com.", "/grafana/").unwrap().0, 1);
        assert_eq!(find(&p, "elsewhere", "/grafana/").unwrap().0, 3);
    }

    #[test]
    fn case_insensitive_prefix() {
        let p = table("[[route]]\nprefix = \"/grafana/\"\nprefix_case_insensitive = true\nupstream = \"a\"\n");
        assert_eq!(find(&p, "x", "/GraFana/api"), Some((1, 8, false)));
        assert_eq!(find(&p, "x", "/GRAFANA"), Some((1, 8, true)));
        assert_eq!(find(&p, "x", "/other"), None);
    }

    #[test]
    fn no_match_without_root_route() {
        let p = table("[[route]]\nprefix = \"/app/\"\nupstream = \"a\"\n");
        assert_eq!(find(&p, "x", "/"), None);
        assert_eq!(find(&p, "x", "/application"), None);
    }
}
