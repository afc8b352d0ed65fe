//! Compiling `[compress]`: the media types worth compressing, the size below which a response
//! is sent as it is, and the level of each encoding. Routes opt in with `compress = true`.

use super::schema::*;
use super::*;

/// A content coding ringway can produce, in the order it prefers them when a client accepts
/// several equally: zstd compresses about as well as gzip at a fraction of the CPU, brotli
/// compresses best, gzip is what every client has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Zstd = 0,
    Br = 1,
    Gzip = 2,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Br, Encoding::Gzip];

    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// `type/subtype`, or `type/*` for a whole top-level type; stored lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaRange {
    Exact(String),
    AnySubtype(String),
}

impl MediaRange {
    /// Whether a Content-Type essence (`type/subtype`, no parameters) falls in this range.
    pub fn matches(&self, essence: &[u8]) -> bool {
        match self {
            MediaRange::Exact(t) => essence.eq_ignore_ascii_case(t.as_bytes()),
            MediaRange::AnySubtype(top) => {
                essence.len() > top.len() + 1
                    && essence[..top.len()].eq_ignore_ascii_case(top.as_bytes())
                    && essence[top.len()] == b'/'
            }
        }
    }

    fn parse(text: &str) -> Result<MediaRange, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (top, sub) = lower
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a media type (write type/subtype or type/*)"))?;
        if !is_token(top) || top == "*" || !is_token(sub) {
            return Err(format!("`{text}` is not a media type (write type/subtype or type/*)"));
        }
        Ok(match sub {
            "*" => MediaRange::AnySubtype(top.to_string()),
            _ => MediaRange::Exact(lower),
        })
    }
}

/// `[compress]` compiled.
#[derive(Clone, Debug)]
pub struct CompressPlan {
    pub types: Vec<MediaRange>,
    /// A response whose Content-Length is below this is not worth the encoder's set-up.
    pub min_size: u64,
    pub gzip_level: u32,
    pub brotli_level: u32,
    pub zstd_level: i32,
}

/// Text, scripts, data and vector images; not images, video, archives or fonts already packed
/// (woff2 is brotli inside), which only cost CPU to compress again.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/manifest+json",
    "application/ld+json",
    "application/x-ndjson",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/wasm",
    "application/x-font-ttf",
    "application/vnd.ms-fontobject",
    "font/ttf",
    "font/otf",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
];

impl Default for CompressPlan {
    fn default() -> Self {
        CompressPlan {
            types: DEFAULT_TYPES
                .iter()
                .map(|t| MediaRange::parse(t).expect("default types parse"))
                .collect(),
            min_size: 1024,
            // Within the CPU per byte of nginx's usual gzip_comp_level 1..6, each compressing
            // at least as small as gzip 6 (`cargo bench --bench compress`, docs/configuration.md).
            gzip_level: 5,
            brotli_level: 3,
            zstd_level: 3,
        }
    }
}

impl Compiler<'_> {
    pub(super) fn compress(&mut self, raw: Option<&S<RawCompress>>) -> CompressPlan {
        let mut plan = CompressPlan::default();
        let Some(raw) = raw.map(|r| r.get_ref()) else {
            return plan;
        };
        if let Some(types) = &raw.types {
            let mut parsed = Vec::new();
            for t in types.get_ref() {
                match MediaRange::parse(t) {
                    Ok(m) => parsed.push(m),
                    Err(msg) => self.error(types, "compress.types", msg),
                }
            }
            plan.types = parsed;
        }
        if let Some(n) = self.size(&raw.min_size, "compress.min_size") {
            plan.min_size = n;
        }
        if let Some(l) = self.level(&raw.gzip_level, "compress.gzip_level", 1, 9) {
            plan.gzip_level = l as u32;
        }
        if let Some(l) = self.level(&raw.brotli_level, "compress.brotli_level", 0, 11) {
            plan.brotli_level = l as u32;
        }
        // 20..22 are zstd's "ultra" levels, whose windows break the memory bound per stream.
        if let Some(l) = self.level(&raw.zstd_level, "compress.zstd_level", 1, 19) {
            plan.zstd_level = l as i32;
        }
        plan
    }

    fn level(&mut self, v: &Option<S<i64>>, key: &str, min: i64, max: i64) -> Option<i64> {
        let l = v.as_ref()?;
        let n = *l.get_ref();
        if (min..=max).contains(&n) {
            Some(n)
        } else {
            self.error(l, key, format!("level {n} is out of range (use {min} to {max})"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<Plan, Vec<ConfigError>> {
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"127.0.0.1:3000\"]\n\
             [[route]]\nupstream = \"a\"\ncompress = true\n{extra}"
        );
        load_str(&text, Path::new("t.toml"))
    }

    #[test]
    fn defaults_and_overrides() {
        let plan = load("").unwrap_or_else(|e| panic!("{}", e[0]));
        assert!(plan.routes[0].compress);
        assert_eq!(plan.compress.min_size, 1024);
        assert!(plan.compress.types.iter().any(|t| t.matches(b"text/html")));
        assert!(plan.compress.types.iter().any(|t| t.matches(b"application/JSON")));
        assert!(!plan.compress.types.iter().any(|t| t.matches(b"image/png")));
        assert!(!plan.compress.types.iter().any(|t| t.matches(b"text/")));
        let plan = load("[compress]\ntypes = [\"text/css\", \"application/*\"]\nmin_size = \"4k\"\ngzip_level = 1\nbrotli_level = 0\nzstd_level = 19\n")
            .unwrap_or_else(|e| panic!("{}", e[0]));
        let c = &plan.compress;
        assert_eq!(
            (c.min_size, c.gzip_level, c.brotli_level, c.zstd_level),
            (4096, 1, 0, 19)
        );
        assert!(c.types.iter().any(|t| t.matches(b"application/wasm")));
        assert!(!c.types.iter().any(|t| t.matches(b"text/html")));
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let cases = [
            ("gzip_level = 0", "compress.gzip_level"),
            ("gzip_level = 10", "compress.gzip_level"),
            ("brotli_level = 12", "compress.brotli_level"),
            ("zstd_level = 22", "compress.zstd_level"),
            ("min_size = \"1 parsec\"", "compress.min_size"),
            ("types = [\"text\"]", "compress.types"),
            ("types = [\"*/*\"]", "compress.types"),
        ];
        for (line, key) in cases {
            let errors = load(&format!("[compress]\n{line}\n")).err().expect(line);
            let e = &errors[0];
            assert_eq!((e.key.as_str(), e.line), (key, 9), "{line}: {e}");
        }
        let errors = load("[compress]\nlevel = 3\n").err().expect("unknown key refused");
        assert_eq!(errors[0].line, 9, "{}", errors[0]);
    }
}
