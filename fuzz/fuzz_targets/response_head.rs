//! Upstream response heads: parsed and rewritten for the client by `build_response_head` for
//! every route and request shape. What ringway writes must be one complete, well-formed head.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::client::h1::response_head::H1Head;
use ringway::exchange::response_head::{build_response_head, HeadParse};
use ringway::http::has_bare_cr_or_lf;
use ringway_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rbuf)) = data.split_first() else {
        return;
    };
    let plan = plan();
    let o = outgoing((flags >> 4) as usize, flags);
    let route = &plan.routes[o.route];
    let mut head = H1Head::new(Vec::new(), o.client_http10);
    match build_response_head(rbuf, &mut head, plan, route, &o) {
        Ok(HeadParse::Final(r)) => {
            let out = head.out;
            assert!(r.head_len <= rbuf.len());
            assert!(!has_bare_cr_or_lf(&out), "client head with a bare CR or LF: {out:?}");
            let mut headers = [httparse::EMPTY_HEADER; 256];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&out) {
                Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len()),
                other => panic!(
                    "client head does not parse ({other:?}): {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
            assert_eq!(resp.code, Some(r.status));
        }
        Ok(HeadParse::Interim(n)) => assert!(n <= rbuf.len()),
        Ok(HeadParse::Partial) | Err(_) => {}
    }
});
