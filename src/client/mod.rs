//! Client connections: each protocol's connection loop hands requests to `exchange`.

pub mod counted;
pub mod h1;
pub mod h2;
