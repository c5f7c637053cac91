//! The bus: the port, its events and the in-process adapter are the domain's
//! ([`parla_domain::bus`]); the cluster adapter (Kafka + Redis) is `parla-cluster`.

pub use parla_domain::bus::*;
