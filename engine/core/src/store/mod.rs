//! The store: the port is the domain's ([`parla_domain::store`]); its adapters are here —
//! [`redb::RedbStore`] (embedded, the default) and [`cql::CqlStore`] (ScyllaDB / Cassandra) —
//! with the [`conformance`] suite both pass.

pub use parla_domain::store::*;

pub mod conformance;
pub mod cql;
pub mod redb;
