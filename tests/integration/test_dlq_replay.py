"""``tableflow dlq replay``: dead letters whose schema was registered late land in the table exactly once.

Producers serialize with confluent-kafka's AvroSerializer against their own registry; the pipeline reads schemas
from the service's embedded registry, which does not know the id yet, so every record is dead-lettered. Then the
schema is registered there (same id) and the dead letters are replayed while ingestion keeps running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tableflow import offsets as om
from tableflow.config import TableSettings, load_config
from tableflow.ingest.buffer import Buffer
from tableflow.ingest.commit import DLQ_SCHEMA, Committer
from tableflow.ingest.replay import OPERATION_KEY, DeadLetterReplay, ReplayResult, replay_dead_letters
from tableflow.lake import open_catalog, state_engine
from tableflow.schema.store import SchemaStore
from tests.avro_ingest import AvroPipeline, avro_pipeline
from tests.schema_registry.server import serve_registry

ORDER = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}, {"name": "price", "type": "double"}],
}
GARBAGE = {5: b"\x00\x01garbage", 12: b"not avro at all"}
"""Records (by index) no schema fixes: an id no registry has, and no Confluent framing."""
BASE_MS = 1_700_000_000_000
DEAD = 24


@dataclass(frozen=True)
class Sent:
    value: dict[str, Any] | None
    key: bytes
    headers: list[dict[str, Any]]
    timestamp: datetime


@dataclass
class Setup:
    pipeline: AvroPipeline
    table: TableSettings
    sent: dict[tuple[int, int], Sent]
    producer: Producer
    serialize: AvroSerializer

    @property
    def dlq(self) -> str:
        return f"{self.pipeline.identifier}__dlq"

    def produce(self, first: int, count: int) -> None:
        """Records ``first`` .. ``first + count - 1`` over two partitions; GARBAGE indices carry bad bytes."""
        context = SerializationContext(self.pipeline.topic, MessageField.VALUE)
        for i in range(first, first + count):
            value = {"id": i, "item": f"item-{i}", "price": i * 1.5}
            sent = Sent(
                None if i in GARBAGE else value,
                f"k{i}".encode(),
                [{"key": "trace", "value": f"t{i}".encode()}],
                datetime.fromtimestamp((BASE_MS + i) / 1000, UTC),
            )

            def delivered(error: KafkaError | None, message: Message, sent: Sent = sent) -> None:
                assert error is None, error
                self.sent[(message.partition(), message.offset())] = sent

            self.producer.produce(
                self.pipeline.topic,
                value=GARBAGE.get(i) or self.serialize(value, context),
                key=sent.key,
                headers=[("trace", f"t{i}".encode())],
                partition=i % 2,
                timestamp=BASE_MS + i,
                on_delivery=delivered,
            )
        assert self.producer.flush(30) == 0

    def ends(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for partition, offset in self.sent:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        return ends

    def caught_up(self) -> None:
        ends = self.ends()
        self.pipeline.wait(lambda: self.pipeline.positions() == ends, "the table reaches the topic's end")

    def register_late(self) -> None:
        """The fix: the writer schema registered in the service's registry, under the id producers used."""
        self.pipeline.registry.register_schema(f"{self.pipeline.topic}-value", Schema(json.dumps(ORDER), "AVRO"))
        assert self.pipeline.registry.get_latest_version(f"{self.pipeline.topic}-value").schema_id == _producer_id(
            self.serialize
        )

    def replay(self, **options: Any) -> ReplayResult:
        return replay_dead_letters(self.pipeline.catalog, self.table, self.pipeline.ingestor.source, **options)

    def keys(self, identifier: str) -> list[tuple[int, int]]:
        rows = self.pipeline.rows(identifier)
        return list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist(), strict=True))

    def good(self) -> set[tuple[int, int]]:
        return {key for key, sent in self.sent.items() if sent.value is not None}

    def bad(self) -> set[tuple[int, int]]:
        return set(self.sent) - self.good()

    def check_table(self) -> None:
        """Every decodable record exactly once, with its values and its original Kafka metadata."""
        rows = self.pipeline.rows().to_pylist()
        keys = [(row["_kafka_partition"], row["_kafka_offset"]) for row in rows]
        assert len(keys) == len(set(keys)), "duplicates in the table"
        assert set(keys) == self.good()
        for row in rows:
            sent = self.sent[(row["_kafka_partition"], row["_kafka_offset"])]
            assert {name: row[name] for name in ("id", "item", "price")} == sent.value
            assert row["_kafka_topic"] == self.pipeline.topic
            assert (row["_kafka_key"], row["_kafka_headers"], row["_kafka_timestamp"]) == (
                sent.key,
                sent.headers,
                sent.timestamp,
            )


def _producer_id(serializer: AvroSerializer) -> int:
    """The schema id the producers' serializer framed its records with."""
    value = serializer({"id": 0, "item": "", "price": 0.0}, SerializationContext("probe", MessageField.VALUE))
    return int.from_bytes(value[1:5], "big")


@pytest.fixture
def dead_lettered(
    bootstrap: str, make_topic: Any, data_dir: Path, kafka_settings: dict[str, Any], tmp_path: Path
) -> Iterator[Setup]:
    """DEAD records (GARBAGE among them) ingested in two commits while the service's registry lacks their
    schema: all dead-lettered; ingestion keeps running."""
    topic = make_topic(partitions=2)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'producers-registry.db'}")
    table = {"topic": topic, "format": "avro", "commit_interval_s": 0.5}
    try:
        with (
            serve_registry(SchemaStore(engine)) as url,
            avro_pipeline(bootstrap, topic, data_dir, kafka_settings, [table]) as pipeline,
        ):
            producers = SchemaRegistryClient({"url": url, "max.retries": 0})
            setup = Setup(
                pipeline,
                TableSettings(**table),
                {},
                Producer({"bootstrap.servers": bootstrap, "linger.ms": 5}),
                AvroSerializer(producers, json.dumps(ORDER)),
            )
            for first in (0, DEAD // 2):  # two commits: two dead-letter files
                setup.produce(first, DEAD // 2)
                setup.caught_up()
            pipeline.wait(lambda: pipeline.positions(setup.dlq) == setup.ends(), "the dead letters are committed")
            assert pipeline.rows().num_rows == 0
            assert set(setup.keys(setup.dlq)) == set(setup.sent)
            yield setup
            producers.close()
    finally:
        engine.dispose()


def test_replay_lands_every_dead_letter_once_beside_live_ingestion(dead_lettered: Setup) -> None:
    setup = dead_lettered
    setup.register_late()
    dry = setup.replay(dry_run=True)
    assert dry == ReplayResult(read=DEAD, replayed=DEAD - len(GARBAGE), still_failing=len(GARBAGE))
    assert setup.pipeline.rows().num_rows == 0
    assert len(setup.keys(setup.dlq)) == DEAD

    stop = threading.Event()

    def live() -> None:  # records that decode now, produced while the replay commits
        first = DEAD
        while not stop.is_set() and first < DEAD + 200:
            setup.produce(first, 5)
            first += 5

    producing = threading.Thread(target=live)
    producing.start()
    reports: list[ReplayResult] = []
    try:
        result = setup.replay(progress=reports.append, chunk_rows=5)
    finally:
        stop.set()
        producing.join(60)
    assert result == ReplayResult(read=DEAD, replayed=DEAD - len(GARBAGE), still_failing=len(GARBAGE))
    assert len(reports) >= 2 and reports[-1] == result  # a report per group of files
    assert len(setup.sent) > DEAD, "records were produced while the replay ran"
    setup.caught_up()
    setup.check_table()
    assert set(setup.keys(setup.dlq)) == setup.bad()

    table = setup.pipeline.catalog.load_table(setup.pipeline.identifier)
    replays = [s for s in table.snapshots() if s.summary and s.summary[OPERATION_KEY] == "dlq-replay"]
    assert replays, "the replay commit is marked"
    for snapshot in replays:  # carries the offset map its parent had, unchanged
        assert snapshot.parent_snapshot_id is not None
        parent = table.snapshot_by_id(snapshot.parent_snapshot_id)
        assert om.snapshot_offsets(table, snapshot) == om.snapshot_offsets(table, parent)
    dlq = setup.pipeline.catalog.load_table(setup.dlq)
    current = dlq.current_snapshot()  # the delete carries the dead-letter table's own map forward
    assert current is not None and current.summary is not None and current.summary[OPERATION_KEY] == "dlq-replay"
    assert om.decode(current.summary[om.OFFSETS_KEY])[setup.pipeline.topic] == {0: DEAD // 2, 1: DEAD // 2}

    snapshot_before = table.current_snapshot()
    assert setup.replay() == ReplayResult(read=len(GARBAGE), still_failing=len(GARBAGE))
    assert setup.pipeline.catalog.load_table(setup.pipeline.identifier).current_snapshot() == snapshot_before
    setup.check_table()


def test_a_crash_between_append_and_delete_leaves_no_duplicates(dead_lettered: Setup) -> None:
    setup = dead_lettered
    setup.register_late()
    pipeline = setup.pipeline
    with DeadLetterReplay(pipeline.catalog, setup.table, pipeline.ingestor.source) as replay:
        for chunk in replay.chunks():  # step (a) only: the process dies before the deletes
            rows, _ = replay.decode(chunk)
            replay.append(rows)
    setup.check_table()
    assert len(setup.keys(setup.dlq)) == DEAD

    result = setup.replay()
    assert result == ReplayResult(read=DEAD, already_present=DEAD - len(GARBAGE), still_failing=len(GARBAGE))
    setup.check_table()
    assert set(setup.keys(setup.dlq)) == setup.bad()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tableflow.cli", "--log-level", "WARNING", "dlq", "replay", *args]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TABLEFLOW_")}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False)


def test_cli_replays_from_a_config_file(
    dead_lettered: Setup, data_dir: Path, kafka_settings: dict[str, Any], tmp_path: Path
) -> None:
    setup = dead_lettered
    config = tmp_path / "tableflow.yaml"
    tables = [{"topic": setup.pipeline.topic}, {"topic": "never-ingested"}]
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "kafka": kafka_settings, "tables": tables}))
    identifier = setup.pipeline.identifier
    setup.register_late()

    dry = _cli("--config", str(config), "--table", identifier, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"dlq replay {identifier} (dry run): read {DEAD}, would replay {DEAD - len(GARBAGE)}," in dry.stdout
    assert len(setup.keys(setup.dlq)) == DEAD

    done = _cli("--config", str(config), "--table", identifier, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = f"read {DEAD}, replayed {DEAD - len(GARBAGE)}, already present 0, still failing {len(GARBAGE)}"
    assert f"dlq replay {identifier}: {summary}, waiting 0" in done.stdout
    assert f"tableflow: dlq replay {identifier}: read " in done.stderr  # progress
    setup.check_table()
    assert set(setup.keys(setup.dlq)) == setup.bad()

    unknown = _cli("--config", str(config), "--table", "kafka.nope", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no table 'kafka.nope' is configured" in unknown.stderr
    no_dlq = _cli("--config", str(config), "--table", "kafka.never_ingested", cwd=tmp_path)
    assert no_dlq.returncode == 2
    assert "has no dead-letter table kafka.never_ingested__dlq" in no_dlq.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables:\n  - topic: x\n    on_eror: dlq\n")
    invalid = _cli("--config", str(bad), "--table", identifier, cwd=tmp_path)
    assert invalid.returncode == 2
    assert "tables.0.on_eror: unknown key" in invalid.stderr


def _dead_letters(topic: str, offsets: range) -> pa.Table:
    now = datetime.now(UTC)
    rows = [
        {"_kafka_topic": topic, "_kafka_partition": 0, "_kafka_offset": offset, "_kafka_timestamp": now,
         "_kafka_value": b"v%d" % offset, "error_class": "DecodeError", "error_message": "test", "failed_at": now}
        for offset in offsets
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=DLQ_SCHEMA)


def test_dead_letters_past_the_tables_position_wait_for_its_commit(data_dir: Path) -> None:
    """A dead letter whose batch has not reached the table yet (dead letters commit first) is left alone:
    ingestion may still read it again. A raw table, where every dead letter decodes, isolates the rule."""
    settings = load_config(None, data_dir=data_dir, tables=[{"topic": "events", "format": "raw"}])
    table = settings.tables[0]
    catalog = open_catalog(settings)
    committer = Committer(catalog, table, raw=True)
    buffer = Buffer()
    buffer.assign(0, None)
    buffer.add([], _dead_letters(table.topic, range(2)), {0: 2}, 0)
    committer.commit(buffer)  # dead letters 0 and 1, the table's position 2
    committer._commit_dead([_dead_letters(table.topic, range(2, 3))], {0: 3})  # then a crash before the table's

    result = replay_dead_letters(catalog, table, SchemaStore(state_engine(settings, catalog)))
    assert result == ReplayResult(read=3, replayed=2, waiting=1)
    main = catalog.load_table(table.identifier).scan().to_arrow()
    assert sorted(zip(main["_kafka_offset"].to_pylist(), main["_kafka_value"].to_pylist(), strict=True)) == [
        (0, b"v0"),
        (1, b"v1"),
    ]
    assert catalog.load_table(committer.dlq_identifier).scan().to_arrow()["_kafka_offset"].to_pylist() == [2]
