//! Responses ringway writes itself (refusals, redirects, upstream failures), as status,
//! Location and body; the client protocol frames them.

use crate::http::write::simple_response;
use crate::http::RequestError;
use crate::io::owned::write_out;
use monoio::io::AsyncWriteRent;
use std::borrow::Cow;
use std::time::Duration;

/// A response ringway writes itself.
pub struct Reply {
    pub status: u16,
    /// The route that produced it, if any (redirects), for `ringway route`.
    pub route: Option<usize>,
    pub location: Option<Vec<u8>>,
    pub body: Cow<'static, str>,
    pub close: bool,
}

impl Reply {
    pub fn refused(e: RequestError) -> Self {
        Reply {
            status: e.status(),
            route: None,
            location: None,
            body: Cow::Borrowed(e.reason()),
            close: true,
        }
    }
}

pub async fn reply<C: AsyncWriteRent>(client: &mut C, r: Reply, t: Duration) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256);
    let loc: Vec<(&str, &[u8])> = r.location.as_deref().map(|l| ("Location", l)).into_iter().collect();
    simple_response(&mut out, r.status, &loc, &r.body, r.close);
    write_out(client, &mut out, 0, t).await
}
