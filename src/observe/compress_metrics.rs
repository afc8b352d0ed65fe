//! The compression families of `/metrics`: per encoding, the responses compressed and their
//! body bytes before and after (counters), and the ratio of the two since start-up (a gauge
//! computed at scrape time, so a dashboard needs no query of its own for it).

use super::metrics::family;
use crate::config::Encoding;
use std::fmt::Write;

const COUNTERS: [(&str, &str); 3] = [
    (
        "ringway_compressed_responses_total",
        "Responses compressed, by encoding (cut ones included).",
    ),
    (
        "ringway_compress_in_bytes_total",
        "Response body bytes read from upstreams for compression, by encoding.",
    ),
    (
        "ringway_compress_out_bytes_total",
        "Compressed body bytes sent to clients (chunk framing excluded), by encoding.",
    ),
];

/// Writes the families; `counts` gives an encoding's [responses, bytes in, bytes out].
pub(super) fn render(out: &mut String, counts: impl Fn(Encoding) -> [u64; 3]) {
    for (i, (name, help)) in COUNTERS.into_iter().enumerate() {
        family(out, name, "counter", help);
        for e in Encoding::ALL {
            let _ = writeln!(out, "{name}{{encoding=\"{}\"}} {}", e.token(), counts(e)[i]);
        }
    }
    let name = "ringway_compress_ratio";
    family(
        out,
        name,
        "gauge",
        "Compressed bytes out per byte in since start-up, by encoding (0.25: four times smaller); \
         absent for an encoding that has compressed nothing yet.",
    );
    for e in Encoding::ALL {
        if let Some(r) = ratio(counts(e)) {
            let _ = writeln!(out, "{name}{{encoding=\"{}\"}} {r}", e.token());
        }
    }
}

/// Bytes out over bytes in; `None` before any byte went in (0/0 is no ratio).
fn ratio([_, bytes_in, bytes_out]: [u64; 3]) -> Option<f64> {
    (bytes_in > 0).then(|| bytes_out as f64 / bytes_in as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_per_encoding_from_the_counters() {
        let mut out = String::new();
        render(&mut out, |e| match e {
            Encoding::Gzip => [2, 4000, 1000],
            _ => [0, 0, 0],
        });
        assert!(
            out.contains("ringway_compress_ratio{encoding=\"gzip\"} 0.25\n"),
            "{out}"
        );
        assert!(!out.contains("ringway_compress_ratio{encoding=\"br\"}"), "{out}");
        assert!(out.contains("# TYPE ringway_compress_ratio gauge\n"), "{out}");
        assert!(
            out.contains("ringway_compress_out_bytes_total{encoding=\"gzip\"} 1000\n"),
            "{out}"
        );
    }
}
