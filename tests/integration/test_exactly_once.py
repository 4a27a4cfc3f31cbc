"""Exactly once under SIGKILL, restarts and two processes sharing a topic (real broker, real processes)."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyiceberg.catalog.sql import SqlCatalog

from tableflow import offsets as om
from tableflow.config import load_config
from tableflow.lake import open_catalog
from tests.duck import iceberg_connection
from tests.service import Service, write_config

EVENT_SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "tests",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "payload", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def _raw(i: int) -> bytes:
    return f"record-{i}".encode()


class Feed:
    """Produces ``count`` records in the background and remembers which record landed where."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        count: int,
        partitions: int,
        rate: float,
        serialize: Callable[[int], bytes] = _raw,
        first: int = 0,
    ) -> None:
        self.topic, self.count, self.partitions, self.rate = topic, count, partitions, rate
        self.first = first
        self.serialize = serialize
        self.delivered: dict[tuple[int, int], int] = {}
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        for i in range(self.first, self.first + self.count):

            def delivered(err: Any, msg: Any, i: int = i) -> None:
                assert err is None, err
                self.delivered[(msg.partition(), msg.offset())] = i

            self._producer.produce(
                self.topic, value=self.serialize(i), key=str(i).encode(),
                partition=i % self.partitions, on_delivery=delivered,
            )  # fmt: skip
            if i % 500 == 0:
                self._producer.poll(0)
                ahead = (i - self.first) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        self._producer.flush(60)

    def start(self) -> Feed:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(120)
        assert len(self.delivered) == self.count

    def positions(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for partition, offset in self.delivered:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        return ends


def _table(data_dir: Path, identifier: str) -> Any:
    settings = load_config(None, data_dir=data_dir)
    catalog = open_catalog(settings)
    assert isinstance(catalog, SqlCatalog)
    return catalog.load_table(identifier)


def _wait_caught_up(data_dir: Path, identifier: str, topic: str, ends: dict[int, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    held: dict[int, int] = {}
    while time.monotonic() < deadline:
        try:
            held = om.table_offsets(_table(data_dir, identifier)).get(topic, {})
        except Exception:
            held = {}
        if held == ends:
            return
        time.sleep(0.5)
    raise AssertionError(f"table holds {held}, topic ends at {ends}")


def _wait_log(log: Path, pattern: str, at_least: int = 1, timeout_s: float = 60) -> int:
    """Until ``log`` holds ``at_least`` lines matching ``pattern``; returns how many it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = len(re.findall(pattern, log.read_text()))
        if found >= at_least:
            return found
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} lines matching {pattern!r} within {timeout_s}s; see {log}")


def _wait_assigned(log: Path, timeout_s: float = 60) -> None:
    """Until the service writing ``log`` has been given partitions."""
    _wait_log(log, r"assigned \{\d", timeout_s=timeout_s)


def _assert_exactly_once(data_dir: Path, identifier: str, feed: Feed) -> None:
    data = _table(data_dir, identifier).scan().to_arrow()
    keys = list(zip(data["_kafka_partition"].to_pylist(), data["_kafka_offset"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} duplicate rows"
    assert set(keys) == set(feed.delivered), (
        f"missing {len(set(feed.delivered) - set(keys))}, unexpected {len(set(keys) - set(feed.delivered))}"
    )
    if "_kafka_value" in data.column_names:
        got = dict(zip(keys, data["_kafka_value"].to_pylist(), strict=True))
        assert got == {k: _raw(i) for k, i in feed.delivered.items()}
    else:
        got_ids = dict(zip(keys, data["id"].to_pylist(), strict=True))
        assert got_ids == feed.delivered
        payloads = dict(zip(data["id"].to_pylist(), data["payload"].to_pylist(), strict=True))
        assert all(payloads[i] == f"payload-{i}" for i in feed.delivered.values())


def _avro_serializer(registry_url: str, topic: str) -> Callable[[int], bytes]:
    """confluent-kafka's own AvroSerializer against the service's embedded registry (schema id cached)."""
    client = SchemaRegistryClient({"url": registry_url})
    serializer = AvroSerializer(client, json.dumps(EVENT_SCHEMA))
    context = SerializationContext(topic, MessageField.VALUE)

    def serialize(i: int) -> bytes:
        value = serializer({"id": i, "payload": f"payload-{i}", "note": None if i % 3 else "third"}, context)
        assert value is not None
        return value

    serialize(0)  # registers the schema now, while the service is up
    return serialize


def _chaos(bootstrap: str, topic: str, tmp_path: Path, count: int, kills: int, rate: float, fmt: str) -> None:
    data_dir = tmp_path / "data"
    table = {"topic": topic, "format": fmt, "commit_interval_s": 0.5, "max_buffer_records": 3000}
    port = write_config(tmp_path / "tableflow.yaml", data_dir, bootstrap, [table])
    identifier = load_config(None, tables=[table]).tables[0].identifier
    service = Service(tmp_path / "tableflow.yaml", port, tmp_path / "service.log")
    rng = random.Random(7)
    serialize = _raw
    if fmt == "avro":
        # Killed, not stopped: the embedded broker (Tansu) wedges a group whose member leaves mid-join.
        service.start()
        serialize = _avro_serializer(f"{service.url}/schema-registry", topic)
        service.kill()
    feed = Feed(bootstrap, topic, count, 4, rate, serialize).start()
    try:
        for _ in range(kills):
            service.start()
            time.sleep(rng.uniform(1.0, 5.0))
            service.kill()
        feed.join()
        service.start()
        _wait_caught_up(data_dir, identifier, topic, feed.positions(), timeout_s=180)
    finally:
        service.stop()
    _assert_exactly_once(data_dir, identifier, feed)
    if fmt == "avro":
        _assert_duckdb_reads(data_dir, identifier, count)


def _assert_duckdb_reads(data_dir: Path, identifier: str, count: int) -> None:
    """DuckDB's iceberg extension reads the table straight from its metadata file."""
    table = _table(data_dir, identifier)
    con = iceberg_connection()
    rows, ids = con.execute(
        f"SELECT count(*), count(DISTINCT id) FROM iceberg_scan('{table.metadata_location}')"
    ).fetchone()
    assert rows == ids == count


@pytest.mark.parametrize("fmt", ["raw", "avro"])
def test_sigkill_during_ingestion_loses_and_duplicates_nothing(
    bootstrap: str, make_topic: Any, tmp_path: Path, fmt: str
) -> None:
    _chaos(bootstrap, make_topic(partitions=4), tmp_path, count=20_000, kills=3, rate=2_000, fmt=fmt)


def test_sigkill_while_a_commit_is_in_flight(bootstrap: str, make_topic: Any, tmp_path: Path) -> None:
    """The commit thread writes and commits one buffer while the loop reads into the next. Each round leaves a
    backlog, then kills the service right after its first commit lands, while it catches up: the next commit is
    then being written or committed, and the buffer after it filling."""
    topic = make_topic(partitions=4)
    data_dir = tmp_path / "data"
    table = {"topic": topic, "format": "raw", "commit_interval_s": 0.2, "max_buffer_records": 1000}
    port = write_config(tmp_path / "tableflow.yaml", data_dir, bootstrap, [table])
    identifier = load_config(None, tables=[table]).tables[0].identifier
    log = tmp_path / "service.log"
    service = Service(tmp_path / "tableflow.yaml", port, log)
    rng = random.Random(11)
    feed = Feed(bootstrap, topic, 0, 4, 1.0)
    commits = 0
    try:
        for round_ in range(4):
            backlog = Feed(bootstrap, topic, 40_000, 4, 1e6, first=round_ * 40_000).start()
            backlog.join()
            feed.delivered.update(backlog.delivered)
            service.start()
            if round_ == 3:
                break
            commits = _wait_log(log, r"commit table=", at_least=commits + 1)
            time.sleep(rng.uniform(0.0, 0.1))
            service.kill()
            commits = _wait_log(log, r"commit table=")
        _wait_caught_up(data_dir, identifier, topic, feed.positions(), timeout_s=120)
    finally:
        service.stop()
    _assert_exactly_once(data_dir, identifier, feed)


@pytest.mark.slow
def test_sigkill_five_times_over_100k_avro_records(bootstrap: str, make_topic: Any, tmp_path: Path) -> None:
    _chaos(bootstrap, make_topic(partitions=4), tmp_path, count=100_000, kills=5, rate=4_000, fmt="avro")


def test_two_processes_share_a_topic_exactly_once(bootstrap: str, make_topic: Any, tmp_path: Path) -> None:
    topic = make_topic(partitions=4)
    data_dir = tmp_path / "data"
    table = {"topic": topic, "format": "raw", "commit_interval_s": 0.5}
    port_a = write_config(tmp_path / "a.yaml", data_dir, bootstrap, [table])
    port_b = write_config(tmp_path / "b.yaml", data_dir, bootstrap, [table])
    identifier = load_config(None, tables=[table]).tables[0].identifier
    feed = Feed(bootstrap, topic, 20_000, 4, 1_500).start()
    with (
        Service(tmp_path / "a.yaml", port_a, tmp_path / "a.log").start(),
        Service(tmp_path / "b.yaml", port_b, tmp_path / "b.log").start() as b,
    ):
        _wait_assigned(tmp_path / "b.log")  # Tansu wedges a group whose member leaves mid-join
        b.stop()  # a takes b's partitions over mid-stream
        b.start()
        feed.join()
        _wait_caught_up(data_dir, identifier, topic, feed.positions(), timeout_s=120)
    _assert_exactly_once(data_dir, identifier, feed)
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "assigned" in logs
