//! Responses ringway writes itself, framed as HTTP/1.1.

use crate::exchange::Reply;
use crate::http::write::simple_response;
use crate::io::owned::write_out;
use monoio::io::AsyncWriteRent;
use std::time::Duration;

pub async fn reply<C: AsyncWriteRent>(client: &mut C, r: Reply, t: Duration) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256);
    let loc: Vec<(&str, &[u8])> = r.location.as_deref().map(|l| ("Location", l)).into_iter().collect();
    simple_response(&mut out, r.status, &loc, &r.body, r.close);
    write_out(client, &mut out, 0, t).await
}
