//! One request's exchange, whatever protocol the client speaks: route → access → rewrite →
//! forward to the upstream → response rewrite → log.

pub mod forward;
pub mod rewrite;
