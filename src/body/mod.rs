//! Message bodies between the client and the upstream: the strict chunked decoder (`chunked`)
//! and large plaintext bodies relayed with splice(2) (`splice`).

pub mod chunked;
pub mod splice;
