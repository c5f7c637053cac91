//! Distributed mode for the tests: the real servers `scripts/services.sh` starts (Redis, Kafka,
//! Cassandra), or why a test is skipped, and in-process nodes of one cluster.

use super::*;

/// Partitions of a test cluster's inbound topic.
pub const PARTITIONS: u32 = 6;

/// The servers the tests need, or why they are skipped.
pub struct Services {
    pub kafka: String,
    pub redis: String,
    pub cql: String,
}

pub fn services(test: &str) -> Option<Services> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (get("PARLA_TEST_KAFKA"), get("PARLA_TEST_REDIS"), get("PARLA_TEST_CQL")) {
        (Some(kafka), Some(redis), Some(cql)) => Some(Services { kafka, redis, cql }),
        _ => {
            println!(
                "{test}: skipped: PARLA_TEST_KAFKA, PARLA_TEST_REDIS and PARLA_TEST_CQL must be \
                 set (eval \"$(scripts/services.sh start)\")"
            );
            None
        }
    }
}

/// Two in-process nodes of one cluster, each with every role.
pub async fn two_nodes(
    services: &Services,
    tweak: impl Fn(&mut parla_config::Settings),
) -> (TestServer, TestServer) {
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let clustered = |s: &mut parla_config::Settings| {
        s.store.backend = "cql".into();
        s.store.cql_nodes = vec![services.cql.clone()];
        s.store.cql_keyspace = format!("parla_test_{run}");
        s.cluster.bus = "kafka".into();
        s.cluster.kafka_brokers = services.kafka.clone();
        s.cluster.kafka_topic_prefix = format!("parla-test-{run}");
        s.cluster.kafka_partitions = PARTITIONS;
        s.cluster.redis_url = services.redis.clone();
        s.cluster.kafka_session_timeout_ms = 6000;
        s.auth.jwt_secret = "cluster-test-secret-of-at-least-32-bytes".into();
        s.demo.enabled = false;
        tweak(s);
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path());
    clustered(&mut settings);
    parla::migrate(&settings).await.expect("migrations");
    (start_with(clustered).await, start_with(clustered).await)
}
