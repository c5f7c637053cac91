//! The store port is the domain's ([`parla_domain::store`]), re-exported here under its old
//! path; its adapters are crates of their own (`parla-store-redb`, `parla-store-cql`), chosen
//! by the binary.

pub use parla_domain::store::*;
