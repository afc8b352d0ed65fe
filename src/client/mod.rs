//! Client connections: each protocol's connection loop hands requests to `exchange`.

pub mod h1;
