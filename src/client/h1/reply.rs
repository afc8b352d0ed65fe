//! Responses ringway writes itself, framed as HTTP/1.1: the head through `H1Head`, as for a
//! proxied response, then the body, in one write.

use super::response_head::H1Head;
use crate::exchange::reply::{hand_head, Reply};
use crate::io::owned::write_out;
use monoio::io::AsyncWriteRent;
use std::time::Duration;

pub async fn reply<C: AsyncWriteRent>(client: &mut C, r: Reply, t: Duration) -> std::io::Result<()> {
    // HTTP/1.0 clients get the same head: a reply states `Connection: close` or nothing.
    let mut head = H1Head::new(Vec::with_capacity(256), false);
    hand_head(&r, &mut head);
    let mut out = head.out;
    let (body, tail) = r.body_parts();
    out.extend_from_slice(body);
    out.extend_from_slice(tail);
    write_out(client, &mut out, 0, t).await
}
