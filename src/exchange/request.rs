//! The protocol-neutral request head the exchange works on. A client protocol produces it from
//! its own parse (HTTP/1.1: the httparse result, borrowing the client's buffer, so no header
//! byte is copied) and hands it to [`super::decide`].

/// One request as the exchange sees it.
pub struct RequestHead<'h> {
    pub method: &'h str,
    /// The request target as sent: origin-form (`/path?query`) or absolute-form.
    pub target: &'h [u8],
    /// HTTP/1 minor version: 0 for HTTP/1.0 (no keep-alive by default, no chunked responses,
    /// no upgrade), 1 otherwise.
    pub version: u8,
    /// Every header field of the request, Host included, in the order received.
    pub headers: &'h [httparse::Header<'h>],
    /// The text the headers were parsed from, when there is one: header lines passed upstream
    /// unchanged are copied from it a run at a time. Empty when the client protocol has no such
    /// text; each line is then written from its name and value.
    pub raw: &'h [u8],
}
