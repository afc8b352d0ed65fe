//! The PROXY protocol parser fed the same bytes whole and as a reader would see them (read sizes
//! from the first input bytes): the verdict and the header's length must not depend on the
//! split, a complete header must parse the same from exactly its own bytes, and the addresses
//! it carries must survive encoding in both versions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::proxy_protocol::{encode, parse, Header, Parse, Version, MAX_LEN};

/// Feeds `input` growing by the read sizes in `pieces`; returns the first verdict that is not
/// "read more", and how many bytes had arrived by then.
fn incremental(input: &[u8], pieces: &[u8]) -> (Result<Parse, ringway::proxy_protocol::Error>, usize) {
    let mut have = 0;
    let mut k = 0;
    loop {
        let step = pieces.get(k).map_or(input.len() - have, |&p| p as usize % 23 + 1);
        k += 1;
        have = (have + step).min(input.len());
        let verdict = parse(&input[..have]);
        if verdict != Ok(Parse::Incomplete) || have == input.len() {
            return (verdict, have);
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let split = input
        .first()
        .map_or(0, |&b| (b as usize % 8).min(input.len().saturating_sub(1)));
    let (pieces, data) = input.split_at(split + usize::from(!input.is_empty()));
    let whole = parse(data);
    let (split_verdict, arrived) = incremental(data, pieces);
    match (&whole, &split_verdict) {
        (Err(_), Err(_)) => {}
        _ => assert_eq!(whole, split_verdict, "split reads changed the verdict"),
    }
    match whole {
        Ok(Parse::Incomplete) => assert!(data.len() < MAX_LEN, "waited past the bound"),
        Ok(Parse::Complete { header, len, .. }) => {
            assert!(len <= arrived && len <= MAX_LEN);
            assert_eq!(parse(&data[..len]), whole, "the header alone parses differently");
            if len > 0 {
                assert_eq!(parse(&data[..len - 1]), Ok(Parse::Incomplete));
            }
            if let Header::Proxy(Some(addrs)) = header {
                for version in [Version::V1, Version::V2] {
                    let mut out = Vec::new();
                    encode(version, &header, &mut out);
                    match parse(&out) {
                        Ok(Parse::Complete {
                            header: Header::Proxy(Some(back)),
                            len,
                            ..
                        }) => {
                            assert_eq!(len, out.len());
                            assert_eq!(back, addrs, "{version:?} changed the addresses");
                        }
                        other => panic!("{version:?} encoding of {header:?} parsed as {other:?}"),
                    }
                }
            }
        }
        Err(_) => {}
    }
});
