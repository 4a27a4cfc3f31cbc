"""``tableflow demo``: an embedded broker, live order events and the full service, queried while it runs.

Everything lives under ``./tableflow-data/demo``, which is wiped at every start: the embedded broker keeps its
topics in memory only, so the Kafka positions a previous run recorded in the table would point at records that
no longer exist. Printing is this module's job: it is a user-facing command, not library code.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import uvicorn
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastapi import FastAPI
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.table import Table

from tableflow import offsets as om
from tableflow.broker import EmbeddedBroker
from tableflow.config import Settings, load_config
from tableflow.errors import TableflowError

DATA_DIR: Final = Path("tableflow-data") / "demo"
TOPIC: Final = "orders"
PARTITIONS: Final = 3
SUBJECT: Final = f"{TOPIC}-value"
REPORT_EVERY_S: Final = 3.0
_MAX_PER_TICK: Final = 5_000
FAST_GROUP_JOIN: Final[dict[str, str | int | float | bool]] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
"""The embedded broker answers a consumer's first JoinGroup after half the session timeout: 22.5 s with
librdkafka's default of 45 s, 3 s with this."""

ORDER_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "Order",
    "namespace": "tableflow.demo",
    "fields": [
        {"name": "order_id", "type": "string"},
        {
            "name": "customer",
            "type": {
                "type": "record",
                "name": "Customer",
                "fields": [
                    {"name": "id", "type": "long"},
                    {"name": "country", "type": "string"},
                    {"name": "email", "type": ["null", "string"]},
                ],
            },
        },
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Item",
                    "fields": [
                        {"name": "sku", "type": "string"},
                        {"name": "qty", "type": "int"},
                        {"name": "unit_price", "type": "double"},
                    ],
                },
            },
        },
        {"name": "attributes", "type": {"type": "map", "values": "string"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {
            "name": "status",
            "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED", "CANCELLED"]},
        },
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "channel", "type": "string"},
        {"name": "total", "type": "double"},
    ],
}
"""The demo's order event; the ingest benchmark produces the same records."""

_COUNTRIES: Final = ("US", "DE", "GB", "FR", "NL", "ES", "IT", "SE", "JP", "BR", "IN", "CA")
_COUNTRY_WEIGHTS: Final = (30, 12, 10, 8, 5, 6, 6, 3, 6, 5, 5, 4)
_STATUSES: Final = ("NEW", "PAID", "SHIPPED", "CANCELLED")
_STATUS_WEIGHTS: Final = (20, 50, 25, 5)
_CHANNELS: Final = ("web", "ios", "android", "store")
_CHANNEL_WEIGHTS: Final = (45, 25, 20, 10)
_PROMOS: Final[tuple[dict[str, str], ...]] = ({}, {}, {}, {"promo": "SPRING10"}, {"gift": "yes"}, {"coupon": "WELCOME"})
_NOTES: Final = ("leave at door", "call on arrival", "gift wrap")


def make_order(i: int, rng: random.Random) -> dict[str, Any]:
    """Order number ``i`` with plausible values; 60-100 bytes of Avro (1-3 items, optional email and note)."""
    customer = rng.randint(1, 50_000)
    items: list[dict[str, Any]] = []
    total = 0.0
    for _ in range(rng.choices((1, 2, 3), (65, 30, 5))[0]):
        qty, price = rng.randint(1, 3), rng.randint(199, 9999) / 100
        items.append({"sku": f"SKU-{rng.randint(0, 9999):04d}", "qty": qty, "unit_price": price})
        total += qty * price
    return {
        "order_id": f"o{i:08d}",
        "customer": {
            "id": customer,
            "country": rng.choices(_COUNTRIES, _COUNTRY_WEIGHTS)[0],
            "email": f"c{customer}@mail.com" if rng.random() < 0.7 else None,
        },
        "items": items,
        "attributes": rng.choice(_PROMOS),
        "note": rng.choice(_NOTES) if rng.random() < 0.05 else None,
        "status": rng.choices(_STATUSES, _STATUS_WEIGHTS)[0],
        "created_at": datetime.now(UTC),
        "channel": rng.choices(_CHANNELS, _CHANNEL_WEIGHTS)[0],
        "total": round(total, 2),
    }


def run_demo(duration_s: float | None, rate: int, port: int) -> None:
    """Topic ``orders`` → table ``kafka.orders``, live; stop after ``duration_s`` or at Ctrl-C, cleanly either way.

    A timed run raises TableflowError if the table ends up empty, so scripts and tests can rely on the exit code.
    """
    if rate < 1:
        raise TableflowError(f"--rate must be at least 1 order event per second, not {rate}")
    data_dir = DATA_DIR.resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    _quiet_logs()
    print(f"Tableflow demo: {rate} order events/s into topic '{TOPIC}' → Iceberg table 'kafka.{TOPIC}'")
    print(f"  data: {data_dir} (wiped at every start: the embedded broker keeps nothing between runs)")
    with EmbeddedBroker() as broker:
        _create_topic(broker.bootstrap_servers)
        print(f"  broker: embedded Kafka-compatible broker at {broker.bootstrap_servers}, topic '{TOPIC}'")
        settings = load_config(
            None,
            data_dir=data_dir,
            kafka={"bootstrap_servers": broker.bootstrap_servers, "properties": FAST_GROUP_JOIN},
            server={"host": "127.0.0.1", "port": port},
            tables=[
                {"topic": TOPIC, "format": "avro", "commit_interval_s": 2, "partition_by": ["day(_kafka_timestamp)"]}
            ],
        )
        identifier = settings.tables[0].identifier
        with _service(settings) as app:
            catalog: Catalog = app.state.catalog
            _print_howto(port, identifier)
            producer = _OrderProducer(broker.bootstrap_servers, f"http://127.0.0.1:{port}/schema-registry", rate)
            producer.start()
            try:
                _watch(catalog, identifier, producer, duration_s)
            except KeyboardInterrupt:
                print("\nstopping (Ctrl-C) ...")
            finally:
                producer.stop()
            produced = producer.delivered
            _drain(catalog, identifier, produced)
            print("stopping the service (the workers commit what they hold) ...")
        rows = _rows(_load(catalog, identifier))
        last_error = app.state.ingestor.workers[identifier].status.last_error
    print(f"done: produced {produced:,} orders; {identifier} holds {rows:,} rows")
    if duration_s is not None and rows == 0:
        why = f"; the worker's last error: {last_error.message}" if last_error else ""
        raise TableflowError(f"the demo produced {produced:,} orders in {duration_s:g}s but {identifier} is empty{why}")


def _quiet_logs() -> None:
    """Per-commit INFO lines would bury the live view; --log-level DEBUG still shows everything."""
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.DEBUG:
        for name in ("tableflow", "pyiceberg", "api", "catalog", "httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _create_topic(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        future.result(timeout=30)


@contextmanager
def _service(settings: Settings) -> Iterator[FastAPI]:
    """The whole app under uvicorn in a thread; leaving stops it, which commits and stops the workers."""
    from api.app import create_app

    app = create_app(settings)
    host, port = settings.server.host, settings.server.port
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="tableflow-demo-server", daemon=True)
    thread.start()
    try:
        _wait_healthy(f"http://{host}:{port}/healthz", server, thread)
        yield app
    finally:
        server.should_exit = True
        thread.join(90)


def _wait_healthy(url: str, server: uvicorn.Server, thread: threading.Thread, timeout_s: float = 30) -> None:
    """Until this server listens (not another process on the port) and ``/healthz`` answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise TableflowError(f"the service could not start on {url} (is the port taken? pass --port)")
        if server.started:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise TableflowError(f"the service did not answer {url} within {timeout_s:g}s")


def _print_howto(port: int, identifier: str) -> None:
    uri = f"http://127.0.0.1:{port}/iceberg"
    print(f"  service: http://127.0.0.1:{port}  (schema registry: /schema-registry, Iceberg REST catalog: /iceberg)")
    print()
    print(f"Query the table while the demo runs; the REST catalog is {uri}")
    print("  pyiceberg:")
    print("    from pyiceberg.catalog.rest import RestCatalog")
    print(f'    table = RestCatalog("lake", uri="{uri}").load_table("{identifier}")')
    print('    print(table.scan(selected_fields=("order_id", "customer", "total")).to_arrow())')
    print("  DuckDB (1.4+, iceberg extension):")
    print("    INSTALL iceberg; LOAD iceberg;")
    print(f"    ATTACH 'warehouse' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none');")
    print(f"    SELECT customer.country, count(*), sum(total) FROM lake.{identifier} GROUP BY 1 ORDER BY 3 DESC;")
    print()


class _OrderProducer:
    """Registers the order schema and produces ``rate`` events per second from a background thread."""

    def __init__(self, bootstrap: str, registry_url: str, rate: int) -> None:
        self.rate = rate
        self.delivered = 0
        self.error: BaseException | None = None
        self._bootstrap = bootstrap
        self._registry = SchemaRegistryClient({"url": registry_url})
        self._schema_str = json.dumps(ORDER_SCHEMA)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tableflow-demo-producer", daemon=True)

    def start(self) -> None:
        """Register the schema here, so a registry failure stops the demo before anything runs."""
        schema_id = self._registry.register_schema(SUBJECT, Schema(self._schema_str, "AVRO"))
        print(f"  registered subject '{SUBJECT}' as schema id {schema_id} in the embedded schema registry")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise TableflowError(f"the demo producer failed: {self.error}") from self.error

    def _run(self) -> None:
        try:
            self._produce()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def _produce(self) -> None:
        serialize = AvroSerializer(self._registry, self._schema_str, conf={"auto.register.schemas": False})
        context = SerializationContext(TOPIC, MessageField.VALUE)
        producer = Producer({"bootstrap.servers": self._bootstrap, "linger.ms": 20})
        rng = random.Random(7)
        started = time.monotonic()
        produced = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            for _ in range(min(due - produced, _MAX_PER_TICK)):  # a rate beyond what we can serialize stays live
                order = make_order(produced, rng)
                producer.produce(
                    TOPIC, key=order["order_id"].encode(), value=serialize(order, context), on_delivery=self._delivered
                )
                produced += 1
            producer.poll(0)
            self._stop.wait(0.05)
        if producer.flush(30):
            raise TableflowError("some order events were not delivered to the broker within 30s")

    def _delivered(self, error: KafkaError | None, _: Message) -> None:
        if error is not None:
            self.error = TableflowError(f"delivery failed: {error.str()}")
        else:
            self.delivered += 1


def _load(catalog: Catalog, identifier: str) -> Table | None:
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        return None


def _rows(table: Table | None) -> int:
    snapshot = table.current_snapshot() if table is not None else None
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary["total-records"] or 0)


def _watch(catalog: Catalog, identifier: str, producer: _OrderProducer, duration_s: float | None) -> None:
    """Print the table's state every few seconds until ``duration_s`` passes (forever without it)."""
    started = time.monotonic()
    end = None if duration_s is None else started + duration_s
    print("Live (Ctrl-C to stop):" if end is None else f"Live for {duration_s:g}s:")
    totals = _CountryTotals()
    next_report = started + REPORT_EVERY_S
    while end is None or time.monotonic() < end:
        if producer.error is not None:
            raise TableflowError(f"the demo producer failed: {producer.error}") from producer.error
        if time.monotonic() >= next_report:
            _report(catalog, identifier, producer.delivered, time.monotonic() - started, totals)
            next_report += REPORT_EVERY_S
        time.sleep(0.1 if end is None else max(0.0, min(0.1, end - time.monotonic())))


def _report(catalog: Catalog, identifier: str, produced: int, elapsed_s: float, totals: _CountryTotals) -> None:
    table = _load(catalog, identifier)
    if table is None:
        print(f"[{elapsed_s:5.0f}s] produced {produced:,}; waiting for the table to be created")
        return
    positions = om.table_offsets(table).get(TOPIC, {})
    offsets = " ".join(f"p{p}={o:,}" for p, o in sorted(positions.items())) or "none yet"
    print(
        f"[{elapsed_s:5.0f}s] produced {produced:,} | {identifier}: {_rows(table):,} rows, "
        f"{_plural(len(table.metadata.snapshots), 'snapshot')} | next offsets {offsets}"
    )
    top = totals.top(table)
    if top:
        print("        top countries: " + " · ".join(f"{c} {n:,} orders ${r:,.2f}" for c, n, r in top))


class _CountryTotals:
    """Orders and revenue by customer country, straight from the table's files.

    Each report reads only the data files it has not read before, so a long demo does not rescan a growing
    table every few seconds. If files it read are gone (rewritten by compaction), it counts again from scratch.
    """

    def __init__(self) -> None:
        self._read: set[str] = set()
        self._by_country: dict[str, tuple[int, float]] = {}

    def top(self, table: Table, count: int = 3) -> list[tuple[str, int, float]]:
        """The ``count`` countries with the most revenue: (country, orders, revenue)."""
        if table.current_snapshot() is None or "customer" not in {f.name for f in table.schema().fields}:
            return []
        scan = table.scan(selected_fields=("customer", "total"))
        tasks = list(scan.plan_files())
        paths = {task.file.file_path for task in tasks}
        if not self._read <= paths:
            self._read, self._by_country = set(), {}
        fresh = [task for task in tasks if task.file.file_path not in self._read]
        if fresh:
            data = ArrowScan(table.metadata, table.io, scan.projection(), scan.row_filter).to_table(fresh)
            countries = pa.table({"country": pc.struct_field(data["customer"], "country"), "total": data["total"]})
            grouped = countries.group_by("country").aggregate([("total", "count"), ("total", "sum")])
            columns = (grouped[name].to_pylist() for name in ("country", "total_count", "total_sum"))
            for country, orders, revenue in zip(*columns, strict=True):
                before = self._by_country.get(country, (0, 0.0))
                self._by_country[country] = (before[0] + orders, before[1] + revenue)
            self._read |= {task.file.file_path for task in fresh}
        ranked = sorted(self._by_country.items(), key=lambda item: item[1][1], reverse=True)[:count]
        return [(country, orders, revenue) for country, (orders, revenue) in ranked]


def _drain(catalog: Catalog, identifier: str, produced: int, timeout_s: float = 10) -> None:
    """Give the worker a couple of commit intervals to land what was produced, so the final count matches."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _rows(_load(catalog, identifier)) < produced:
        time.sleep(0.25)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
