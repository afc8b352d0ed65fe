//! Response compression for routes with `compress = true`: `negotiate` picks zstd, br or gzip
//! from the client's Accept-Encoding, `eligible` holds the never-compress rules, `head` edits
//! the response head (Content-Encoding, Vary, ETag), `encoder` compresses a stream in bounded
//! memory and `relay` carries the upstream body through it to the client, chunked.
//!
//! The exchange calls [`offer`] once the request is routed, [`response_allows`] and
//! [`write_headers`] while it writes the client's response head, and [`relay`] for the body.

pub mod eligible;
pub mod encoder;
pub mod head;
pub mod negotiate;
pub mod relay;

pub use crate::config::Encoding;
pub use eligible::{offer, response_allows};
pub use encoder::Encoder;
pub use head::{replaces, write_headers};
pub use relay::{relay, CompressedSink, RelayError, Totals};
