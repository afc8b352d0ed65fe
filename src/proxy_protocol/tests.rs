//! Table-driven cases for both versions: each valid header is also fed in every split, and each
//! invalid one must be refused no later than whole.

use super::*;
use std::net::SocketAddr;

fn addrs(src: &str, dst: &str) -> Header {
    Header::Proxy(Some(Addresses {
        source: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
    }))
}

/// A v2 header: command byte, family byte, then the payload (addresses and TLVs).
fn v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[ver_cmd, family]);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const TCP4_ADDRS: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb];

fn tcp6_addrs() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&"2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&[0x1f, 0x90, 0x01, 0xbb]);
    p
}

fn with_tlvs(addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    [addresses, tlvs].concat()
}

/// (name, bytes of the header, what it says). A trailing request follows in each test.
fn valid() -> Vec<(&'static str, Vec<u8>, Header, Version)> {
    let worst =
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    let max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    // AWS's VPC endpoint TLV (0xEA), ALPN (0x01), a NOOP padding TLV (0x04) of zero length.
    let tlvs = [&[0xea, 0, 5, 1][..], b"vpce", &[0x01, 0, 2], b"h2", &[0x04, 0, 0]].concat();
    vec![
        (
            "v1 TCP4",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n".to_vec(),
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
            Version::V1,
        ),
        (
            "v1 TCP6",
            b"PROXY TCP6 2001:db8::1 2001:db8::2 8080 443\r\n".to_vec(),
            addrs("[2001:db8::1]:8080", "[2001:db8::2]:443"),
            Version::V1,
        ),
        (
            "v1 TCP6 mapped",
            b"PROXY TCP6 ::ffff:192.0.2.1 ::1 0 1\r\n".to_vec(),
            addrs("[::ffff:192.0.2.1]:0", "[::1]:1"),
            Version::V1,
        ),
        (
            "v1 worst case, 107 bytes",
            worst.as_bytes().to_vec(),
            addrs(&format!("[{max}]:65535"), &format!("[{max}]:65535")),
            Version::V1,
        ),
        (
            "v1 UNKNOWN",
            b"PROXY UNKNOWN\r\n".to_vec(),
            Header::Proxy(None),
            Version::V1,
        ),
        (
            "v1 UNKNOWN with ignored rest",
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
            Header::Proxy(None),
            Version::V1,
        ),
        (
            "v2 PROXY TCP4",
            v2(0x21, 0x11, &TCP4_ADDRS),
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
            Version::V2,
        ),
        (
            "v2 PROXY UDP4",
            v2(0x21, 0x12, &TCP4_ADDRS),
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
            Version::V2,
        ),
        (
            "v2 PROXY TCP6",
            v2(0x21, 0x21, &tcp6_addrs()),
            addrs("[2001:db8::1]:8080", "[2001:db8::2]:443"),
            Version::V2,
        ),
        (
            "v2 PROXY TCP4 + TLVs",
            v2(0x21, 0x11, &with_tlvs(&TCP4_ADDRS, &tlvs)),
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
            Version::V2,
        ),
        (
            "v2 PROXY TCP6 + TLVs",
            v2(0x21, 0x21, &with_tlvs(&tcp6_addrs(), &tlvs)),
            addrs("[2001:db8::1]:8080", "[2001:db8::2]:443"),
            Version::V2,
        ),
        (
            "v2 LOCAL, no addresses",
            v2(0x20, 0x00, &[]),
            Header::Local,
            Version::V2,
        ),
        (
            "v2 LOCAL with addresses and TLVs",
            v2(0x20, 0x11, &with_tlvs(&TCP4_ADDRS, &tlvs)),
            Header::Local,
            Version::V2,
        ),
        (
            "v2 LOCAL, undefined family ignored",
            v2(0x20, 0xff, &[1, 2, 3]),
            Header::Local,
            Version::V2,
        ),
        ("v2 PROXY UNSPEC", v2(0x21, 0x00, &[]), Header::Proxy(None), Version::V2),
        (
            "v2 PROXY UNSPEC with opaque bytes",
            v2(0x21, 0x00, &[9, 9, 9, 9]),
            Header::Proxy(None),
            Version::V2,
        ),
        (
            "v2 PROXY UNIX",
            v2(0x21, 0x31, &[b'/'; 216]),
            Header::Proxy(None),
            Version::V2,
        ),
        (
            "v2 longest payload",
            v2(
                0x21,
                0x11,
                &with_tlvs(&TCP4_ADDRS, &[&[0x04, 0x0f, 0xf1][..], &[0; 4081]].concat()),
            ),
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
            Version::V2,
        ),
    ]
}

#[test]
fn valid_headers_whole_and_in_every_split() {
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for (name, bytes, header, version) in valid() {
        let stream = [&bytes[..], request].concat();
        let want = Parse::Complete {
            header,
            version,
            len: bytes.len(),
        };
        assert_eq!(parse(&stream), Ok(want), "{name}");
        assert_eq!(parse(&bytes), Ok(want), "{name}: header alone");
        // However the reads split it, every prefix of the header waits for more.
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(Parse::Incomplete), "{name}: first {cut} bytes");
        }
    }
}

#[test]
fn invalid_headers_are_refused_with_their_reason() {
    let v1_long = format!("PROXY UNKNOWN {}\r\n", "a".repeat(100));
    let bad_tlv = with_tlvs(&TCP4_ADDRS, &[0x01, 0, 9, b'h', b'2']);
    let cases: Vec<(&str, Vec<u8>, Error)> = vec![
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            Error::NotProxyProtocol,
        ),
        (
            "TLS ClientHello",
            vec![0x16, 0x03, 0x01, 0x02, 0x00],
            Error::NotProxyProtocol,
        ),
        (
            "lowercase v1",
            b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            Error::NotProxyProtocol,
        ),
        ("P then garbage", b"PRIX".to_vec(), Error::NotProxyProtocol),
        (
            "v1 UDP4",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            Error::V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN"),
        ),
        (
            "v1 UNKNOWNX",
            b"PROXY UNKNOWNX\r\n".to_vec(),
            Error::V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN"),
        ),
        (
            "v1 without CRLF within 107 bytes",
            v1_long.into_bytes(),
            Error::V1TooLong,
        ),
        (
            "v1 bare LF",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
            Error::V1Malformed("LF without CR"),
        ),
        (
            "v1 CR inside",
            b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n".to_vec(),
            Error::V1Malformed("a byte that is not printable ASCII"),
        ),
        (
            "v1 NUL",
            b"PROXY UNKNOWN \0\r\n".to_vec(),
            Error::V1Malformed("a byte that is not printable ASCII"),
        ),
        (
            "v1 double space",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n".to_vec(),
            Error::V1Malformed("missing destination address"),
        ),
        (
            "v1 missing ports",
            b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n".to_vec(),
            Error::V1Malformed("missing source port"),
        ),
        (
            "v1 extra field",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n".to_vec(),
            Error::V1Malformed("more fields than addresses and ports"),
        ),
        (
            "v1 IPv6 under TCP4",
            b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(),
            Error::V1Malformed("not an IPv4 address"),
        ),
        (
            "v1 IPv4 under TCP6",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            Error::V1Malformed("not an IPv6 address"),
        ),
        (
            "v1 octal-looking address",
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            Error::V1Malformed("not an IPv4 address"),
        ),
        (
            "v1 port 65536",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".to_vec(),
            Error::V1Malformed("port above 65535"),
        ),
        (
            "v1 port leading zero",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n".to_vec(),
            Error::V1Malformed("port is not a decimal number without leading zeros"),
        ),
        (
            "v1 port with sign",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n".to_vec(),
            Error::V1Malformed("port is not a decimal number without leading zeros"),
        ),
        (
            "v2 broken signature",
            b"\r\n\r\n\0\r\nQUIX\n".to_vec(),
            Error::NotProxyProtocol,
        ),
        ("v2 version 1", v2(0x11, 0x11, &TCP4_ADDRS), Error::V2Version(1)),
        ("v2 version 3", v2(0x31, 0x11, &TCP4_ADDRS), Error::V2Version(3)),
        ("v2 command 2", v2(0x22, 0x11, &TCP4_ADDRS), Error::V2Command(2)),
        ("v2 family 0x13", v2(0x21, 0x13, &TCP4_ADDRS), Error::V2Family(0x13)),
        ("v2 family 0x41", v2(0x21, 0x41, &TCP4_ADDRS), Error::V2Family(0x41)),
        (
            "v2 length over the bound",
            v2(0x21, 0x11, &[0; V2_MAX_PAYLOAD + 1]),
            Error::V2TooLong(V2_MAX_PAYLOAD + 1),
        ),
        ("v2 length 65535", v2(0x21, 0x11, &[0; 65535]), Error::V2TooLong(65535)),
        (
            "v2 TCP4 too short",
            v2(0x21, 0x11, &TCP4_ADDRS[..8]),
            Error::V2ShortAddresses {
                family: 0x11,
                need: 12,
                have: 8,
            },
        ),
        (
            "v2 TCP6 too short",
            v2(0x21, 0x21, &TCP4_ADDRS),
            Error::V2ShortAddresses {
                family: 0x21,
                need: 36,
                have: 12,
            },
        ),
        (
            "v2 UNIX too short",
            v2(0x21, 0x31, &[0; 108]),
            Error::V2ShortAddresses {
                family: 0x31,
                need: 216,
                have: 108,
            },
        ),
        ("v2 TLV past the end", v2(0x21, 0x11, &bad_tlv), Error::V2Tlv),
        (
            "v2 half a TLV header",
            v2(0x21, 0x11, &with_tlvs(&TCP4_ADDRS, &[0x01, 0])),
            Error::V2Tlv,
        ),
    ];
    for (name, bytes, error) in cases {
        assert_eq!(parse(&bytes), Err(error), "{name}");
        // No prefix is ever taken for a header, and once refused stays refused.
        let mut refused = false;
        for cut in 0..bytes.len() {
            match parse(&bytes[..cut]) {
                Ok(Parse::Incomplete) => {
                    assert!(!refused, "{name}: refused at a shorter prefix, then waiting at {cut}")
                }
                Err(_) => refused = true,
                Ok(other) => panic!("{name}: first {cut} bytes gave {other:?}"),
            }
        }
    }
}

#[test]
fn garbage_is_refused_at_the_first_byte_that_cannot_start_a_header() {
    for (input, at) in [
        (&b"GET"[..], 1),
        (b"PUT", 2),
        (b"\r\n\r\n\0\r\nQUIT\n\x21\x99", 14),
        (b"\r\nGET", 3),
        (b"PROXY TCP5", 10),
        (b"PROXY TCP4 1.2.3.4\t", 19),
    ] {
        assert_eq!(parse(&input[..at - 1]), Ok(Parse::Incomplete), "{input:?}");
        assert!(parse(&input[..at]).is_err(), "{input:?}");
    }
}

#[test]
fn encoded_headers_parse_back() {
    let cases = [
        addrs("192.0.2.1:56324", "198.51.100.7:443"),
        addrs("[2001:db8::1]:8080", "[2001:db8::2]:443"),
        addrs("0.0.0.0:0", "255.255.255.255:65535"),
        Header::Proxy(None),
        Header::Local,
    ];
    for header in cases {
        for version in [Version::V1, Version::V2] {
            let mut out = Vec::new();
            encode(version, &header, &mut out);
            // v1 has no LOCAL: it says UNKNOWN, which is served the same way.
            let expect = match (version, header) {
                (Version::V1, Header::Local) => Header::Proxy(None),
                _ => header,
            };
            let want = Parse::Complete {
                header: expect,
                version,
                len: out.len(),
            };
            assert_eq!(parse(&out), Ok(want), "{header:?} as {version:?}: {out:?}");
        }
    }
}

#[test]
fn mixed_families_are_sent_as_ipv6() {
    let mixed = addrs("192.0.2.1:1000", "[2001:db8::2]:443");
    let mut line = Vec::new();
    encode(Version::V1, &mixed, &mut line);
    assert_eq!(line, b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1000 443\r\n");
    let mut bin = Vec::new();
    encode(Version::V2, &mixed, &mut bin);
    let Ok(Parse::Complete { header, .. }) = parse(&bin) else {
        panic!("{bin:?}")
    };
    let source: SocketAddr = "[::ffff:192.0.2.1]:1000".parse().unwrap();
    assert_eq!(header.source(), Some(source));
}

#[test]
fn exact_wire_bytes() {
    let header = addrs("192.0.2.1:56324", "198.51.100.7:443");
    let mut out = Vec::new();
    encode(Version::V1, &header, &mut out);
    assert_eq!(out, b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
    out.clear();
    encode(Version::V2, &header, &mut out);
    assert_eq!(out, v2(0x21, 0x11, &TCP4_ADDRS));
    out.clear();
    encode(Version::V2, &Header::Local, &mut out);
    assert_eq!(out, v2(0x20, 0x00, &[]));
}

#[test]
fn errors_say_what_was_wrong() {
    assert_eq!(
        Error::V2TooLong(65535).to_string(),
        "PROXY v2 header announces 65535 bytes of addresses and TLVs (at most 4096 accepted)"
    );
    assert_eq!(
        Error::V1Malformed("port above 65535").to_string(),
        "malformed PROXY v1 header: port above 65535"
    );
}

/// Bytes HAProxy 2.6.12 sent with `send-proxy-v2 proxy-v2-options unique-id` (a 0x05 TLV) and
/// with `send-proxy`, captured on loopback in front of curl's request.
#[test]
fn headers_captured_from_haproxy() {
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x26\x7f\x00\x00\x01\x7f\x00\x00\x01\xe1\x86\xab\x2f".to_vec();
    v2.extend_from_slice(b"\x05\x00\x17ringway-127.0.0.1-57734");
    let header_len = v2.len();
    v2.extend_from_slice(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:43823\r\n");
    let want = addrs("127.0.0.1:57734", "127.0.0.1:43823");
    assert_eq!(
        parse(&v2),
        Ok(Parse::Complete {
            header: want,
            version: Version::V2,
            len: header_len
        })
    );

    let v1 = b"PROXY TCP4 127.0.0.1 127.0.0.1 34732 41557\r\nGET / HTTP/1.1\r\n";
    let want = addrs("127.0.0.1:34732", "127.0.0.1:41557");
    assert_eq!(
        parse(v1),
        Ok(Parse::Complete {
            header: want,
            version: Version::V1,
            len: 44
        })
    );
}
