//! Request head and body framing, as a client sends them: the head goes through `decide` (parse,
//! checks, route, access, upstream head); whatever is forwarded must be one complete request
//! that ringway itself reads with the same framing, and a chunked body is re-framed losslessly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::body::chunked::{write_chunk_header, ChunkedDecoder, Step, LAST_CHUNK};
use ringway::http::request::inspect;
use ringway::http::{has_bare_cr_or_lf, Framing};
use ringway::client::h1::decide_bytes as decide;
use ringway::exchange::Decision;
use ringway_fuzz::*;

/// Decodes a chunked body; None on a framing error or when it does not end.
fn decode(mut input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut used = 0;
    while !d.is_done() {
        if input.is_empty() {
            return None;
        }
        let n = match d.step(input).ok()? {
            Step::Data(n) => {
                data.extend_from_slice(&input[..n]);
                n
            }
            Step::Skip(n) | Step::Done(n) => n,
        };
        used += n;
        input = &input[n..];
    }
    Some((data, used))
}

fuzz_target!(|data: &[u8]| {
    let Some(end) = find(data, b"\r\n\r\n") else { return };
    let (head, body) = data.split_at(end + 4);
    let mut out = Vec::new();
    let decision = ACCESS.with(|access| decide(plan(), access, &client_info(), head, &mut out));
    let o = match decision {
        Decision::Forward(o) | Decision::Authorize(o, _) => o,
        Decision::Reply(_) | Decision::Answer(_) => return,
    };
    assert!(!has_bare_cr_or_lf(&out), "upstream head with a bare CR or LF: {out:?}");
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "upstream head has trailing bytes"),
        other => panic!(
            "upstream head does not parse ({other:?}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
    let facts = inspect(
        req.method.unwrap(),
        req.path.unwrap().as_bytes(),
        req.version.unwrap(),
        req.headers,
    )
    .unwrap_or_else(|e| {
        panic!(
            "ringway refuses its own upstream head ({e:?}): {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(
        facts.framing, o.framing,
        "the upstream would frame the body differently"
    );
    if o.framing == Framing::Chunked {
        if let Some((decoded, _)) = decode(body) {
            // Re-framed as the exchange does: one chunk per piece, then the last chunk.
            let mut again = Vec::new();
            if !decoded.is_empty() {
                write_chunk_header(&mut again, decoded.len());
                again.extend_from_slice(&decoded);
                again.extend_from_slice(b"\r\n");
            }
            again.extend_from_slice(LAST_CHUNK);
            let (round, used) = decode(&again).expect("re-framed body decodes");
            assert_eq!(round, decoded);
            assert_eq!(used, again.len());
        }
    }
});
