//! Responses ringway writes itself, framed as HTTP/1.1: the head through `H1Head`, as for a
//! proxied response, then the body, in one write.

use super::response_head::H1Head;
use crate::exchange::reply::{hand_head, Reply};
use crate::io::owned::write_out;
use monoio::io::AsyncWriteRent;
use std::time::Duration;

pub async fn reply<C: AsyncWriteRent>(client: &mut C, r: Reply, t: Duration) -> std::io::Result<()> {
    let mut out = render(&r);
    write_out(client, &mut out, 0, t).await
}

/// The reply as HTTP/1.1 bytes, head and body.
fn render(r: &Reply) -> Vec<u8> {
    // HTTP/1.0 clients get the same head: a reply states `Connection: close` or nothing.
    let mut head = H1Head::new(Vec::with_capacity(256), false);
    hand_head(r, &mut head);
    let mut out = head.out;
    let (body, tail) = r.body_parts();
    out.extend_from_slice(body);
    out.extend_from_slice(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::reply::ReplyBody;

    fn text(r: &Reply) -> String {
        String::from_utf8(render(r)).unwrap()
    }

    #[test]
    fn replies_are_framed_with_their_length() {
        let failure = Reply::text(502, "upstream a (127.0.0.1:1) refused the connection", true);
        assert_eq!(
            text(&failure),
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 48\r\n\
             Connection: close\r\n\r\nupstream a (127.0.0.1:1) refused the connection\n"
        );
        let redirect = Reply::text(301, "", false).with("Location", &b"/app/"[..]);
        assert_eq!(
            text(&redirect),
            "HTTP/1.1 301 Moved Permanently\r\nLocation: /app/\r\nContent-Length: 0\r\n\r\n"
        );
        // An auth service's answer to a HEAD request: its own reason and length, no body.
        let mut relayed = Reply::text(401, "", false).with("WWW-Authenticate", &b"Bearer"[..]);
        relayed.reason = Some("Login Please".into());
        relayed.body = ReplyBody::Bytes {
            data: b"log in".to_vec(),
            send: false,
        };
        assert_eq!(
            text(&relayed),
            "HTTP/1.1 401 Login Please\r\nWWW-Authenticate: Bearer\r\nContent-Length: 6\r\n\r\n"
        );
    }
}
