//! The bus: the port and its events are the domain's ([`parla_domain::bus`]); its adapters are
//! here — [`memory::InProcessBus`] (one process) and [`cluster::ClusterBus`] (Kafka + Redis).

pub use parla_domain::bus::*;

pub mod cluster;
pub mod memory;
