//! Responses ringway writes itself (refusals, redirects, upstream failures), as status,
//! Location and body; the client protocol frames them.

use crate::http::RequestError;
use std::borrow::Cow;

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
