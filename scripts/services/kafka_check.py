"""Readiness check for the test Kafka broker: exits 0 once librdkafka (through confluent-kafka,
the same C client as the Rust rdkafka crate) can fetch metadata, create a topic, produce with an
idempotent producer and read the message back in a consumer group; the topic is deleted after.

Usage: kafka_check.py BOOTSTRAP TIMEOUT_SECONDS. Retries until the timeout, then prints the
last error on stderr and exits 1.
"""

import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

# Quiet clients: librdkafka would log every refused connection while the broker boots.
COMMON = {"log_level": 0}


def check(bootstrap: str, deadline: float) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    metadata = admin.list_topics(timeout=5)
    topic = "parla-services-check-" + uuid.uuid4().hex[:8]
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=15
    )
    try:
        payload = uuid.uuid4().bytes
        producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, **COMMON}
        )
        producer.produce(topic, payload)
        if producer.flush(15):
            raise RuntimeError("message not delivered within 15 s")
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": topic,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "fetch.wait.max.ms": 10,
                **COMMON,
            }
        )
        try:
            consumer.subscribe([topic])
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError("consumer group did not receive the message")
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    raise RuntimeError(f"consumer error: {msg.error()}")
                if msg.value() == payload:
                    break
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])[topic].result(timeout=15)
    return f"{len(metadata.brokers)} broker(s), cluster id {metadata.cluster_id}"


def main() -> int:
    bootstrap = sys.argv[1]
    deadline = time.monotonic() + float(sys.argv[2])
    last = None
    while time.monotonic() < deadline:
        try:
            print(check(bootstrap, deadline))
            return 0
        except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
            last = e
            time.sleep(1)
    print(f"Kafka check failed: {last!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
