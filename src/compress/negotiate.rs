//! Content negotiation: which encoding a client's `Accept-Encoding` lets ringway send (RFC 9110
//! §12.5.3). The highest q-value wins; `q=0` refuses a coding; `*` stands for every coding not
//! named; an explicit `identity` that outranks every coding keeps the response as it is. Ties
//! go to ringway's order of preference (zstd, br, gzip).

use crate::config::Encoding;
use crate::http::trim;

/// Quality in thousandths (RFC 9110 allows three decimals), so comparisons are exact.
type Q = u16;

/// The encoding to use for a client that sent these `Accept-Encoding` values (every field of
/// that name, in order); `None` keeps the response uncompressed.
pub fn choose<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Encoding> {
    let mut named: [Option<Q>; 3] = [None; 3];
    let mut star: Option<Q> = None;
    let mut identity: Option<Q> = None;
    for value in values {
        for member in value.split(|&b| b == b',') {
            let mut parts = member.split(|&b| b == b';');
            let coding = trim(parts.next().unwrap_or(b""));
            if coding.is_empty() {
                continue;
            }
            let mut q = 1000;
            for param in parts {
                let param = trim(param);
                if param.len() >= 2 && param[0].eq_ignore_ascii_case(&b'q') && param[1] == b'=' {
                    // A malformed weight makes the member meaningless: treat it as a refusal.
                    q = parse_q(trim(&param[2..])).unwrap_or(0);
                }
            }
            let slot = if coding == b"*" {
                &mut star
            } else if coding.eq_ignore_ascii_case(b"identity") {
                &mut identity
            } else if coding.eq_ignore_ascii_case(b"x-gzip") {
                &mut named[Encoding::Gzip as usize]
            } else {
                match Encoding::ALL
                    .iter()
                    .find(|e| coding.eq_ignore_ascii_case(e.token().as_bytes()))
                {
                    Some(e) => &mut named[*e as usize],
                    None => continue,
                }
            };
            // Listed twice: the higher weight stands.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    let mut best: Option<(Encoding, Q)> = None;
    for e in Encoding::ALL {
        let q = named[e as usize].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((e, q));
        }
    }
    let (e, q) = best?;
    match identity {
        Some(i) if i > q => None,
        _ => Some(e),
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_q(v: &[u8]) -> Option<Q> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut q: Q = match int[0] {
        b'0' => 0,
        b'1' => 1000,
        _ => return None,
    };
    let mut scale = 100;
    for d in frac {
        q += Q::from(d - b'0') * scale;
        scale /= 10;
    }
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(v: &str) -> Option<&'static str> {
        choose(std::iter::once(v.as_bytes())).map(Encoding::token)
    }

    #[test]
    fn q_value_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("gzip", Some("gzip")),
            ("x-gzip", Some("gzip")),
            ("GZIP, deflate", Some("gzip")),
            ("gzip, deflate, br, zstd", Some("zstd")),
            ("gzip, br", Some("br")),
            ("br;q=0.5, gzip;q=0.8", Some("gzip")),
            ("zstd;q=0.1, br;q=0.9, gzip;q=0.9", Some("br")),
            ("gzip;q=0", None),
            ("gzip;q=0.000", None),
            ("gzip ; q=1.0", Some("gzip")),
            ("gzip;Q=0.3", Some("gzip")),
            ("*", Some("zstd")),
            ("*;q=0", None),
            ("*, zstd;q=0", Some("br")),
            ("*;q=0.2, gzip;q=0.5", Some("gzip")),
            ("identity", None),
            ("deflate", None),
            ("gzip;q=0.5, identity", None),
            ("gzip;q=0.5, identity;q=0.5", Some("gzip")),
            ("gzip, identity;q=0", Some("gzip")),
            ("gzip;q=2", None),
            ("gzip;q=0.5555", None),
            ("gzip;q=abc", None),
            ("gzip;q=0, gzip", Some("gzip")),
            (",, ,gzip,", Some("gzip")),
        ];
        for (value, want) in cases {
            assert_eq!(pick(value), *want, "Accept-Encoding: {value}");
        }
    }

    #[test]
    fn several_fields_are_one_list() {
        let fields: [&[u8]; 2] = [b"gzip;q=0.4", b"br;q=0.6"];
        assert_eq!(choose(fields.into_iter()), Some(Encoding::Br));
    }
}
