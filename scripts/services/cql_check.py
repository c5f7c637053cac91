"""Readiness check for the test Cassandra: exits 0 once a real CQL client can read the server's
version, create a keyspace and a table, write, read, and run a lightweight transaction.

Usage: cql_check.py HOST:PORT TIMEOUT_SECONDS. Prints the server's release_version on stdout;
retries until the timeout, then prints the last error on stderr and exits 1.
"""

import logging
import sys
import time
import uuid

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy


def check(host: str, port: int) -> str:
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=20)
    cluster = Cluster(
        [host],
        port=port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=5,
        control_connection_timeout=5,
    )
    try:
        session = cluster.connect()
        version = session.execute("SELECT release_version FROM system.local").one()[0]
        ks = "parla_services_check_" + uuid.uuid4().hex[:8]
        session.execute(
            f"CREATE KEYSPACE {ks} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        try:
            session.execute(f"CREATE TABLE {ks}.t (id int PRIMARY KEY, v text)")
            session.execute(f"INSERT INTO {ks}.t (id, v) VALUES (1, 'one')")
            row = session.execute(f"SELECT v FROM {ks}.t WHERE id = 1").one()
            if row is None or row.v != "one":
                raise RuntimeError(f"read back {row!r} instead of 'one'")
            # Lightweight transactions go through Paxos: the first insert applies, the second not.
            first = session.execute(f"INSERT INTO {ks}.t (id, v) VALUES (2, 'a') IF NOT EXISTS").one()
            second = session.execute(f"INSERT INTO {ks}.t (id, v) VALUES (2, 'b') IF NOT EXISTS").one()
            if not first[0] or second[0]:
                raise RuntimeError(f"LWT answered {first!r}, {second!r}")
        finally:
            session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        return version
    finally:
        cluster.shutdown()


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    deadline = time.monotonic() + float(sys.argv[2])
    # The driver warns about every failed connection attempt while the server boots.
    logging.basicConfig(level=logging.CRITICAL)
    last = None
    while time.monotonic() < deadline:
        try:
            print(check(host, int(port)))
            return 0
        except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
            last = e
            time.sleep(1)
    print(f"CQL check failed: {last!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
