"""Ingest benchmark: Tableflow's pipeline against a raw consumer and a naive per-record pipeline, one run.

Run with ``python -m tests.bench.bench_ingest`` (``make bench``). An embedded broker and an embedded schema
registry serve order events (``tableflow.demo``'s schema, Confluent wire format) and a ~1 KiB wide variant. Per
dataset it measures:

* (a) raw consume: a confluent-kafka consumer pulling every message, no decoding: the ceiling.
* (b) naive: ``fastavro.schemaless_reader`` per record, ``pa.Table.from_pylist``, a pyiceberg append per 10k.
* (c) Tableflow: the real ``TableWorker`` end to end; for processing-only the pieces the worker uses
  (``MessageBatch``, ``AvroDecoder``, the worker's row assembly, ``Buffer``, ``Committer.commit``).

(b) and (c) run end to end (broker → committed snapshots) and processing-only (the messages (a) consumed, held
in memory: decode → map → write → commit). End to end is timed from the first records delivered to the last
offset committed, so startup (connecting, offset lookups, the group join) is left out; it is shown separately.
Each phase runs ``--reps`` times; the table shows the median and the spread.

Then 1,000 ``Committer.commit`` calls of 1k rows each show whether commit latency stays flat as snapshots pile
up. The last two lines are the headline ratios for the order events: ``vs_naive`` (c/b, processing-only) and
``vs_raw_consume`` (c/a, end to end).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyiceberg.catalog.sql import SqlCatalog
from sqlalchemy import create_engine

from api.schema_registry import create_registry_app
from tableflow.broker import EmbeddedBroker, free_port
from tableflow.config import Settings, load_config
from tableflow.demo import FAST_GROUP_JOIN, ORDER_SCHEMA, make_order
from tableflow.ingest.buffer import Buffer
from tableflow.ingest.commit import Committer
from tableflow.ingest.decode.avro import AvroDecoder
from tableflow.ingest.records import MessageBatch
from tableflow.ingest.worker import TableWorker, _rows
from tableflow.lake import open_catalog
from tableflow.schema.store import SchemaStore

PARTITIONS = 4
CONSUME_BATCH = 10_000
WIDE_STRINGS = 15
WIDE_DOUBLES = 15
LATENCY_ROWS = 1_000
LATENCY_MARKS = (1, 10, 100, 300, 500, 1000)
PLAIN_APPEND_COMMITS = 300
FLOOR_VS_NAIVE = 5.0
FLOOR_VS_RAW_CONSUME = 0.6
TIMEOUT_S = 600.0

WIDE_SCHEMA: dict[str, Any] = {
    **ORDER_SCHEMA,
    "name": "WideOrder",
    "fields": [
        *ORDER_SCHEMA["fields"],
        *({"name": f"text_{i:02d}", "type": "string"} for i in range(WIDE_STRINGS)),
        *({"name": f"metric_{i:02d}", "type": "double"} for i in range(WIDE_DOUBLES)),
    ],
}
"""The order plus 15 strings of ~50 characters and 15 doubles: about 1 KiB of Avro per record."""

_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
)  # fmt: skip


def make_wide(i: int, rng: random.Random) -> dict[str, Any]:
    record = make_order(i, rng)
    for n in range(WIDE_STRINGS):
        record[f"text_{n:02d}"] = " ".join(rng.choices(_WORDS, k=8))
    for n in range(WIDE_DOUBLES):
        record[f"metric_{n:02d}"] = rng.random() * 1000
    return record


@dataclass(frozen=True)
class Dataset:
    name: str
    schema: dict[str, Any]
    make: Callable[[int, random.Random], dict[str, Any]]
    records: int
    commit_every: int
    """Buffered records that trigger a Tableflow commit (the naive pipeline commits every 10k batch). A multiple
    of the 10k consume batch, so the last records of a run do not wait for the 1 s commit interval."""


@dataclass(frozen=True)
class Result:
    """One phase's timings, one per repetition; the table shows the median and the spread of rates."""

    dataset: str
    phase: str
    records: int
    seconds: list[float]
    value_bytes: int
    rss_mb: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.records / self.median_s

    def line(self) -> str:
        spread = f"{self.records / max(self.seconds):,.0f}-{self.records / min(self.seconds):,.0f}"
        return (
            f"{self.dataset:<7} {self.phase:<36} {self.records:>9,} {self.median_s:>8.2f} {self.rate:>10,.0f} "
            f"{spread:>17} {self.value_bytes / self.median_s / 1e6:>7.1f} {self.rss_mb:>9,.0f}"
        )


HEADER = (
    f"{'data':<7} {'phase':<36} {'records':>9} {'seconds':>8} {'rec/s':>10} {'rec/s min-max':>17} "
    f"{'MB/s':>7} {'peak RSS':>9}"
)


def peak_rss_mb() -> float:
    """This process's peak RSS so far (Linux reports KiB), so each phase shows the high-water mark up to its end;
    the decoder's worker process is not included."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Env:
    """The broker, the registry (HTTP for producers, in-process for decoders) and a scratch directory."""

    def __init__(self, broker: EmbeddedBroker, store: SchemaStore, registry_url: str, root: Path) -> None:
        self.broker = broker
        self.store = store
        self.registry_url = registry_url
        self.root = root

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def scratch(self, name: str) -> Path:
        path = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir()
        return path


def serve_registry(store: SchemaStore) -> tuple[str, Callable[[], None]]:
    """The embedded registry's HTTP API under uvicorn in a thread; returns its URL and a stop function."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_registry_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the embedded schema registry did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(30)

    return f"http://127.0.0.1:{port}", stop


def produce(env: Env, dataset: Dataset) -> tuple[str, int, float]:
    """A fresh topic holding ``dataset.records`` records, produced in big batches (the broker's cost is per batch).

    Returns the topic, the bytes of all values and the seconds it took.
    """
    topic = f"bench-{dataset.name}-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": env.bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(timeout=30)
    registry = SchemaRegistryClient({"url": env.registry_url})
    serialize = AvroSerializer(registry, json.dumps(dataset.schema))
    context = SerializationContext(topic, MessageField.VALUE)
    producer = Producer(
        {
            "bootstrap.servers": env.bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    rng = random.Random(42)
    size = 0
    started = time.perf_counter()
    for i in range(dataset.records):
        value = serialize(dataset.make(i, rng), context)
        assert value is not None
        size += len(value)
        producer.produce(topic, value=value, key=str(i).encode(), partition=i % PARTITIONS)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"{topic}: records left undelivered after 120s")
    seconds = time.perf_counter() - started
    return topic, size, seconds


def _consumer(env: Env, topic: str) -> Consumer:
    consumer = Consumer(
        {"bootstrap.servers": env.bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    return consumer


class Clock:
    """Two starting points of an end-to-end timing, both ending when the caller reads them.

    ``assigned``: partitions assigned (adds connecting and the offset lookups, ~0.5 s with librdkafka here);
    ``first``: the first records delivered, which leaves the steady-state rate. Startup is a constant, so it
    flatters a short run; ``first`` is the stricter measure and the headline one.
    """

    def __init__(self) -> None:
        self.assigned: float | None = None
        self.first: float | None = None

    def assign(self) -> None:
        if self.assigned is None:
            self.assigned = time.perf_counter()

    def mark(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def read(self) -> tuple[float, float]:
        """Seconds since the first records and since the assignment."""
        assert self.first is not None and self.assigned is not None, "no record arrived"
        now = time.perf_counter()
        return now - self.first, now - self.assigned


def consumed(env: Env, topic: str, count: int, clock: Clock) -> Iterator[list[Message]]:
    """Batches of ``consume(num_messages=10000)`` from the start of every partition until ``count`` messages."""
    clock.assign()
    consumer = _consumer(env, topic)
    seen = 0
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: only {seen} of {count} messages within {TIMEOUT_S:.0f}s")
            batch = [m for m in consumer.consume(num_messages=CONSUME_BATCH, timeout=1.0) if m.error() is None]
            if batch:
                clock.mark()
                seen += len(batch)
                yield batch
    finally:
        consumer.close()


def chunks(messages: Sequence[Message], size: int = CONSUME_BATCH) -> Iterator[Sequence[Message]]:
    for start in range(0, len(messages), size):
        yield messages[start : start + size]


def raw_consume(env: Env, dataset: Dataset, topic: str) -> tuple[list[Message], tuple[float, float]]:
    """(a): the consumer alone; the messages it got (kept for the processing-only runs) and its timings."""
    clock = Clock()
    messages: list[Message] = []
    for batch in consumed(env, topic, dataset.records, clock):
        messages.extend(batch)
    return messages, clock.read()


# -- (b) the naive pipeline ---------------------------------------------------------------------------------


def arrow_type(avro: Any) -> pa.DataType:
    """The Arrow type a naive script would write for an Avro type (the subset the bench schemas use)."""
    if isinstance(avro, list):
        (kind,) = [branch for branch in avro if branch != "null"]
        return arrow_type(kind)
    if isinstance(avro, str):
        avro = {"type": avro}
    kind = avro["type"]
    if avro.get("logicalType") == "timestamp-millis":
        return pa.timestamp("us", tz="UTC")
    if kind == "record":
        return pa.struct([pa.field(f["name"], arrow_type(f["type"])) for f in avro["fields"]])
    if kind == "array":
        return pa.list_(arrow_type(avro["items"]))
    if kind == "map":
        return pa.map_(pa.string(), arrow_type(avro["values"]))
    primitives = {"string": pa.string(), "enum": pa.string(), "long": pa.int64(), "int": pa.int32()}
    return primitives.get(kind) or {"double": pa.float64(), "boolean": pa.bool_(), "bytes": pa.binary()}[kind]


class Naive:
    """What a first script does: decode record by record into dicts, build Arrow from them, append per batch."""

    def __init__(self, env: Env, dataset: Dataset) -> None:
        path = env.scratch(f"naive-{dataset.name}")
        catalog = SqlCatalog("naive", uri=f"sqlite:///{path}/catalog.db", warehouse=path.as_uri())
        catalog.create_namespace("bench")
        self.schema = pa.schema(
            [
                *arrow_type(dataset.schema),
                pa.field("_kafka_partition", pa.int32()),
                pa.field("_kafka_offset", pa.int64()),
                pa.field("_kafka_timestamp", pa.timestamp("us", tz="UTC")),
            ]
        )
        self.table = catalog.create_table("bench.naive", schema=self.schema)
        self.store = env.store
        self.writers: dict[int, Any] = {}

    def _writer(self, schema_id: int) -> Any:
        if schema_id not in self.writers:
            text = self.store.get_schema(schema_id).schema_str
            self.writers[schema_id] = fastavro.parse_schema(json.loads(text))
        return self.writers[schema_id]

    def ingest(self, batch: Sequence[Message]) -> None:
        rows = []
        for message in batch:
            value = message.value()
            assert value is not None
            record = fastavro.schemaless_reader(io.BytesIO(value[5:]), self._writer(int.from_bytes(value[1:5])), None)
            assert isinstance(record, dict)
            record["_kafka_partition"] = message.partition()
            record["_kafka_offset"] = message.offset()
            record["_kafka_timestamp"] = datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC)
            rows.append(record)
        self.table.append(pa.Table.from_pylist(rows, schema=self.schema))

    def rows(self) -> int:
        return self.table.refresh().scan().count()


def naive_e2e(env: Env, dataset: Dataset, topic: str) -> float:
    naive = Naive(env, dataset)
    clock = Clock()
    for batch in consumed(env, topic, dataset.records, clock):
        naive.ingest(batch)
    seconds, _ = clock.read()
    assert naive.rows() == dataset.records, f"naive table holds {naive.rows()} rows, not {dataset.records}"
    return seconds


def naive_processing(env: Env, dataset: Dataset, messages: list[Message]) -> float:
    naive = Naive(env, dataset)
    started = time.perf_counter()
    for batch in chunks(messages):
        naive.ingest(batch)
    seconds = time.perf_counter() - started
    assert naive.rows() == dataset.records, f"naive table holds {naive.rows()} rows, not {dataset.records}"
    return seconds


# -- (c) Tableflow --------------------------------------------------------------------------------------------


def tableflow_settings(env: Env, dataset: Dataset, topic: str, **table: Any) -> Settings:
    """Settings with one avro table in a fresh data dir; quick group joins (see ``FAST_GROUP_JOIN``)."""
    return load_config(
        None,
        data_dir=env.scratch(f"tableflow-{dataset.name}"),
        kafka={"bootstrap_servers": env.bootstrap, "properties": FAST_GROUP_JOIN},
        tables=[{"topic": topic, "format": "avro", "max_buffer_records": dataset.commit_every, **table}],
    )


class TimedWorker(TableWorker):
    """The real worker, noting when it gets its partitions and its first records (as the raw consumer is timed)."""

    clock: Clock

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.clock.assign()
        super()._on_assign(consumer, partitions)

    def _ingest(self, messages: list[Message]) -> None:
        self.clock.mark()
        super()._ingest(messages)


def tableflow_e2e(env: Env, dataset: Dataset, topic: str) -> tuple[float, float, float]:
    """The real worker (consumer group, decoder process, commits) until every offset is in the table.

    Returns seconds from the first records, from the assignment and from ``start()`` (adds the group join).
    """
    settings = tableflow_settings(env, dataset, topic, commit_interval_s=1.0)
    table = settings.tables[0]
    catalog = open_catalog(settings)
    worker = TimedWorker(settings, table, catalog, env.store)
    worker.clock = Clock()
    started = time.perf_counter()
    worker.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while sum(dict(worker.status.committed).values()) < dataset.records:
            if time.monotonic() > deadline or worker.status.state == "failed":
                raise RuntimeError(f"Tableflow worker: {worker.status}")
            time.sleep(0.01)
        since_first, since_assigned = worker.clock.read()
        with_startup = time.perf_counter() - started
    finally:
        worker.stop()
    rows = catalog.load_table(table.identifier).scan().count()
    assert rows == dataset.records, f"Tableflow table holds {rows} rows, not {dataset.records}"
    return since_first, since_assigned, with_startup


class Pipeline:
    """The worker's processing steps on messages already in memory: decode → rows → buffer → commit."""

    def __init__(self, env: Env, dataset: Dataset, topic: str) -> None:
        settings = tableflow_settings(env, dataset, topic)
        self.table = settings.tables[0]
        self.committer = Committer(open_catalog(settings), self.table)
        self.committer.ensure_table()
        self.decoder = AvroDecoder(env.store)
        self.buffer = Buffer()
        for partition in range(PARTITIONS):
            self.buffer.assign(partition, None)

    def ingest(self, messages: Sequence[Message]) -> None:
        batch = MessageBatch.from_messages(self.table.topic, messages)
        decoded = self.decoder.decode(batch.values)
        assert not decoded.errors, decoded.errors[0]
        next_offsets = {p: o + 1 for p, o in zip(batch.partitions, batch.offsets, strict=True)}
        self.buffer.add(_rows(decoded, batch.metadata()), None, next_offsets, batch.value_bytes())
        if self.buffer.records >= self.table.max_buffer_records:
            self.commit()

    def commit(self) -> None:
        if self.buffer.advanced():
            self.committer.commit(self.buffer)
            self.buffer = self.buffer.successor()

    def rows(self) -> int:
        return self.committer.ensure_table().scan().count()


def tableflow_processing(env: Env, dataset: Dataset, topic: str, messages: list[Message]) -> float:
    pipeline = Pipeline(env, dataset, topic)
    try:
        # One batch untimed: big enough for the columnar reader, so its worker process starts here.
        pipeline.decoder.decode([m.value() for m in messages[:CONSUME_BATCH]])
        started = time.perf_counter()
        for batch in chunks(messages):
            pipeline.ingest(batch)
        pipeline.commit()
        seconds = time.perf_counter() - started
    finally:
        pipeline.decoder.close()
    assert pipeline.rows() == dataset.records, f"Tableflow table holds {pipeline.rows()} rows"
    return seconds


# -- commit latency ---------------------------------------------------------------------------------------------


def commit_latency(env: Env, topic: str, messages: list[Message], commits: int) -> list[float]:
    """``commits`` commits of 1k rows through ``Committer.commit`` with expiry keeping the minimum of snapshots."""
    dataset = Dataset("latency", ORDER_SCHEMA, make_order, LATENCY_ROWS, LATENCY_ROWS)
    pipeline = Pipeline(env, dataset, topic)
    try:
        batch = MessageBatch.from_messages(topic, messages[:LATENCY_ROWS])
        piece = pa.concat_tables(_rows(pipeline.decoder.decode(batch.values), batch.metadata()))
    finally:
        pipeline.decoder.close()
    settings = tableflow_settings(env, dataset, topic, properties={"history.expire.max-snapshot-age-ms": "0"})
    committer = Committer(open_catalog(settings), settings.tables[0])
    committer.ensure_table()
    latencies = []
    for n in range(commits):
        buffer = Buffer()
        buffer.assign(0, None if n == 0 else n * LATENCY_ROWS)
        buffer.add([piece], None, {0: (n + 1) * LATENCY_ROWS}, batch.value_bytes())
        started = time.perf_counter()
        committer.commit(buffer)
        latencies.append(time.perf_counter() - started)
    snapshots = len(committer.ensure_table().metadata.snapshots)
    print(f"  Committer.commit: {commits} commits, {snapshots} snapshots kept at the end")
    return latencies


def plain_append_latency(env: Env, messages: list[Message], commits: int) -> list[float]:
    """The reference the issue measured: pyiceberg's ``table.append`` (fast append, no expiry), 1k rows each."""
    naive = Naive(env, Dataset("latency", ORDER_SCHEMA, make_order, LATENCY_ROWS, LATENCY_ROWS))
    latencies = []
    for _ in range(commits):
        started = time.perf_counter()
        naive.ingest(messages[:LATENCY_ROWS])
        latencies.append(time.perf_counter() - started)
    return latencies


def print_latencies(name: str, latencies: list[float]) -> None:
    """Commit #k as measured, and the median of the five commits ending at #k (less noisy)."""
    marks = [k for k in LATENCY_MARKS if k <= len(latencies)]
    single = "  ".join(f"#{k}: {latencies[k - 1] * 1000:6.1f}" for k in marks)
    window = "  ".join(f"#{k}: {statistics.median(latencies[max(0, k - 5) : k]) * 1000:6.1f}" for k in marks)
    print(f"  {name:<34} ms   {single}")
    print(f"  {'  (median of 5 ending there)':<34} ms   {window}")


# -- main -------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One dataset's results by phase, plus its topic and messages (reused by the commit latency phase)."""

    topic: str
    messages: list[Message]
    results: dict[str, Result]


def bench_dataset(env: Env, dataset: Dataset, reps: int) -> Run:
    """Every phase for one dataset, ``reps`` rounds of all phases (so a busy moment hits every phase alike)."""
    topic, size, produce_s = produce(env, dataset)
    timings: dict[str, list[float]] = {"produce (AvroSerializer)": [produce_s]}
    rss: dict[str, float] = {"produce (AvroSerializer)": peak_rss_mb()}

    def took(phase: str, seconds: float) -> None:
        timings.setdefault(phase, []).append(seconds)
        rss[phase] = peak_rss_mb()

    messages: list[Message] = []
    for round_ in range(1, reps + 1):
        print(f"  {dataset.name}: round {round_} of {reps} ...", file=sys.stderr, flush=True)
        messages, (first, assigned) = raw_consume(env, dataset, topic)
        took("(a) raw consume", first)
        took("(a) raw consume from assign()", assigned)
        took("(b) naive end to end", naive_e2e(env, dataset, topic))
        first, assigned, startup = tableflow_e2e(env, dataset, topic)
        took("(c) tableflow end to end", first)
        took("(c) tableflow e2e from assignment", assigned)
        took("(c) tableflow e2e incl. group join", startup)
        took("(b) naive processing-only", naive_processing(env, dataset, messages))
        took("(c) tableflow processing-only", tableflow_processing(env, dataset, topic, messages))
    results = {
        phase: Result(dataset.name, phase, dataset.records, seconds, size, rss[phase])
        for phase, seconds in timings.items()
    }
    for result in results.values():
        print(result.line(), flush=True)
    return Run(topic, messages, results)


def ratios(run: Run) -> tuple[float, float, float]:
    """Tableflow over naive (processing-only); Tableflow over raw consume, end to end from the first records
    (the headline) and from the assignment."""
    rate = {phase: result.rate for phase, result in run.results.items()}
    return (
        rate["(c) tableflow processing-only"] / rate["(b) naive processing-only"],
        rate["(c) tableflow end to end"] / rate["(a) raw consume"],
        rate["(c) tableflow e2e from assignment"] / rate["(a) raw consume from assign()"],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_ingest", description="Ingest benchmark.")
    parser.add_argument(
        "--records",
        type=int,
        default=int(os.environ.get("TABLEFLOW_BENCH_RECORDS", "200000")),
        help="order events (default 200000, or TABLEFLOW_BENCH_RECORDS); below ~100k end-to-end rates are noise",
    )
    parser.add_argument("--wide-records", type=int, default=None, help="~1 KiB records (default: records / 4)")
    parser.add_argument("--commits", type=int, default=1000, help="commits in the latency phase (default 1000)")
    parser.add_argument("--skip-commit-latency", action="store_true", help="skip the commit latency phase")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measured phase (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    datasets = [
        Dataset("orders", ORDER_SCHEMA, make_order, args.records, 50_000),
        Dataset("wide", WIDE_SCHEMA, make_wide, args.wide_records or max(1, args.records // 4), 10_000),
    ]
    with tempfile.TemporaryDirectory(prefix="tableflow-bench-") as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        store = SchemaStore(create_engine(f"sqlite:///{root}/registry.db"))
        registry_url, stop_registry = serve_registry(store)
        try:
            env = Env(broker, store, registry_url, root)
            print(
                f"{os.cpu_count()} CPUs; embedded broker {broker.bootstrap_servers}; {PARTITIONS} partitions per "
                f"topic; median of {args.reps} runs per phase; end to end: from the first records delivered "
                "(rows 'from assign...' add connecting and the offset lookups)"
            )
            print(HEADER)
            runs = {dataset.name: bench_dataset(env, dataset, args.reps) for dataset in datasets}
            orders = runs["orders"]
            if not args.skip_commit_latency:
                print(f"\nCommit latency, {LATENCY_ROWS:,}-row commits (milliseconds):", flush=True)
                latencies = commit_latency(env, orders.topic, orders.messages, args.commits)
                print_latencies("Committer.commit (merge + expiry)", latencies)
                plain = plain_append_latency(env, orders.messages, min(args.commits, PLAIN_APPEND_COMMITS))
                print_latencies("pyiceberg table.append (reference)", plain)
                print(f"  peak RSS {peak_rss_mb():,.0f} MB")
        finally:
            stop_registry()
    print()
    for name, run in runs.items():
        vs_naive, vs_raw, vs_raw_assigned = ratios(run)
        print(
            f"{name}: Tableflow/naive processing-only {vs_naive:.2f}x (floor {FLOOR_VS_NAIVE:g}); Tableflow/raw "
            f"consume end to end {vs_raw:.2f} (floor {FLOOR_VS_RAW_CONSUME:g}), from assignment {vs_raw_assigned:.2f}"
        )
    vs_naive, vs_raw, _ = ratios(runs["orders"])
    print(f"vs_naive: {vs_naive:.2f}")
    print(f"vs_raw_consume: {vs_raw:.2f}")


if __name__ == "__main__":
    main()
