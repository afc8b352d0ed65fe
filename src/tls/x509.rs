//! What the loader needs to know about a server certificate: its DNS names (from the
//! subjectAltName, via webpki) and its validity period. webpki does not expose the validity, so a
//! few lines of DER walking read it from the TBSCertificate.

use std::fmt;

use rustls::pki_types::CertificateDer;

/// Facts about one end-entity certificate.
pub(crate) struct CertInfo {
    /// DNS names of the subjectAltName, lower-case; wildcards keep their `*.` prefix.
    pub dns_names: Vec<String>,
    /// `None` if the validity field could not be read (webpki accepted the certificate, so this
    /// only happens with time formats outside RFC 5280).
    pub validity: Option<(Time, Time)>,
}

/// Parses an end-entity certificate; the error text comes from webpki.
pub(crate) fn inspect(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let cert = webpki::EndEntityCert::try_from(der).map_err(|e| e.to_string())?;
    let dns_names = cert.valid_dns_names().map(|n| n.to_ascii_lowercase()).collect();
    Ok(CertInfo {
        dns_names,
        validity: validity(der),
    })
}

/// A UTC time as written in a certificate, to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Time {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Time {
    /// Seconds since 1970-01-01T00:00:00Z (days-from-civil, proleptic Gregorian calendar).
    pub fn unix(&self) -> i64 {
        let y = if self.month <= 2 { self.year - 1 } else { self.year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// notBefore and notAfter of a DER certificate:
/// Certificate ::= SEQUENCE { tbs SEQUENCE { [0] version OPTIONAL, serial INTEGER,
/// signature AlgorithmIdentifier, issuer Name, validity SEQUENCE { notBefore, notAfter }, .. } .. }
fn validity(der: &[u8]) -> Option<(Time, Time)> {
    let (tag, cert, _) = next(der)?;
    check(tag == 0x30)?;
    let (tag, tbs, _) = next(cert)?;
    check(tag == 0x30)?;
    let (tag, _, mut rest) = next(tbs)?;
    if tag == 0xa0 {
        (_, _, rest) = next(rest)?; // that was the version; this is the serial
    }
    let (_, _signature, rest) = next(rest)?;
    let (_, _issuer, rest) = next(rest)?;
    let (tag, validity, _) = next(rest)?;
    check(tag == 0x30)?;
    let (tag_before, before, rest) = next(validity)?;
    let (tag_after, after, _) = next(rest)?;
    Some((time(tag_before, before)?, time(tag_after, after)?))
}

/// One DER element: (tag, contents, what follows). Single-byte tags only, which is all X.509 uses
/// up to the validity.
fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        check((1..=4).contains(&n) && rest.len() >= n)?;
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    check(rest.len() >= len)?;
    Some((tag, &rest[..len], &rest[len..]))
}

/// UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ).
fn time(tag: u8, text: &[u8]) -> Option<Time> {
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = i64::from(digits(&text[..2])?);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 15) => (i64::from(digits(&text[..4])?), &text[4..]),
        _ => return None,
    };
    check(rest[10] == b'Z')?;
    let t = Time {
        year,
        month: digits(&rest[0..2])?,
        day: digits(&rest[2..4])?,
        hour: digits(&rest[4..6])?,
        minute: digits(&rest[6..8])?,
        second: digits(&rest[8..10])?,
    };
    check((1..=12).contains(&t.month) && (1..=31).contains(&t.day))?;
    check(t.hour < 24 && t.minute < 60 && t.second < 61)?;
    Some(t)
}

fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn check(ok: bool) -> Option<()> {
    ok.then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_generalized_times() {
        let t = time(0x17, b"200101000000Z").unwrap();
        assert_eq!(t.unix(), 1_577_836_800);
        assert_eq!(t.to_string(), "2020-01-01 00:00:00 UTC");
        assert_eq!(time(0x17, b"491231235959Z").unwrap().year, 2049);
        assert_eq!(time(0x17, b"500101000000Z").unwrap().year, 1950);
        assert_eq!(time(0x18, b"19700101000000Z").unwrap().unix(), 0);
        assert_eq!(time(0x18, b"20240229120000Z").unwrap().unix(), 1_709_208_000);
        assert_eq!(time(0x18, b"40960101000000Z").unwrap().unix(), 67_090_118_400);
    }

    #[test]
    fn malformed_times_are_none() {
        for (tag, text) in [
            (0x17, &b"2001010000Z"[..]),
            (0x17, b"200101000000+"),
            (0x17, b"201301000000Z"),
            (0x18, b"2020010100000aZ"),
            (0x02, b"200101000000Z"),
        ] {
            assert_eq!(time(tag, text), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn der_lengths() {
        assert_eq!(next(&[0x30, 0x01, 0xaa, 0xbb]), Some((0x30, &[0xaa][..], &[0xbb][..])));
        let long = [&[0x04, 0x81, 0x80][..], &[7u8; 0x80]].concat();
        assert_eq!(next(&long).map(|(_, c, r)| (c.len(), r.len())), Some((0x80, 0)));
        assert_eq!(next(&[0x30, 0x02, 0xaa]), None);
        assert_eq!(next(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(next(&[0x30]), None);
    }
}
