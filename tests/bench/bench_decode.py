"""Decode benchmark: records per second for Avro (per record and columnar) and JSON, on order events.

Run with ``python -m tests.bench.bench_decode``. Values are framed as the Confluent serializers frame them
(magic byte, schema id, datum) against the embedded registry in a temporary SQLite file. Each measurement is
the best of a few runs after a warm-up, so the columnar reader's worker process is already running; its
startup is reported on its own, as is the cost of the process boundary (the worker's steps done in-process)
and the throughput of two decoders (two tables, two workers) decoding at once on their own threads.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import fastavro
import pyarrow as pa
import sqlalchemy as sa

from tableflow.ingest.decode import _isolated
from tableflow.ingest.decode.avro import AvroDecoder
from tableflow.ingest.decode.json import JsonDecoder
from tableflow.schema.avro import parse_avro
from tableflow.schema.store import Schema, SchemaStore
from tests.decode.orders import ORDER, WIDE_ORDER, as_json, order, wide_order

EVENTS = 200_000
WIDE_EVENTS = 50_000
RUNS = 3
SMALL_BATCHES = (50, 200, 500, 1000, 5000)


def _best(action: Callable[[], object], runs: int = RUNS) -> float:
    """Seconds of the fastest of ``runs`` calls, after one warm-up call."""
    action()
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def _framed(schema_id: int, schema: dict[str, Any], events: Sequence[dict[str, Any]]) -> list[bytes | None]:
    parsed = fastavro.parse_schema(schema)
    header = b"\x00" + schema_id.to_bytes(4, "big")
    values: list[bytes | None] = []
    for event in events:
        buffer = io.BytesIO()
        buffer.write(header)
        fastavro.schemaless_writer(buffer, parsed, event)
        values.append(buffer.getvalue())
    return values


def _fastavro_per_record(schema: dict[str, Any], values: Sequence[bytes | None]) -> None:
    parsed = fastavro.parse_schema(schema)
    for value in values:
        assert value is not None
        fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None)


def _in_process_read(reader: type[Any], frame: _isolated.Framing, values: Sequence[bytes]) -> pa.Table:
    """The worker's own steps, run in this process: what the columnar read costs without the process boundary."""
    marker = os.urandom(8)
    spool = _isolated._Spool.create("bench")
    with spool.file:
        _isolated._write_container(spool.file, frame.container_header, marker, values)
        target = pa.ipc.read_schema(pa.py_buffer(frame.target))
        return _isolated._read(reader, spool.path, len(values), marker, values[0][:5], target, frame.record)


def _in_threads(actions: Sequence[Callable[[], object]]) -> None:
    threads = [threading.Thread(target=action) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds / 1000:9.0f}k rec/s"


def _avro_scenario(name: str, store: SchemaStore, schema: dict[str, Any], events: list[dict[str, Any]]) -> None:
    schema_id = store.register(f"bench-{name}-value", Schema(json.dumps(schema))).schema_id
    values = _framed(schema_id, schema, events)
    jsons: list[bytes | None] = [json.dumps(as_json(event)).encode() for event in events]
    size = sum(len(v) for v in values if v is not None) / len(values)
    json_size = sum(len(v) for v in jsons if v is not None) / len(jsons)
    rows = len(values)
    print(f"\n{name}: {rows} events, {size:.0f} bytes of Avro ({json_size:.0f} of JSON) per event")

    per_record_fastavro = _best(lambda: _fastavro_per_record(schema, values), runs=1)
    with AvroDecoder(store, columnar_min_rows=2**62) as per_record:
        per_record_arrow = _best(lambda: per_record.decode(values), runs=1)
    with AvroDecoder(store) as columnar:
        started = time.perf_counter()
        columnar.decode(values[:1000])
        startup = time.perf_counter() - started
        columnar_seconds = _best(lambda: columnar.decode(values))
    avro = parse_avro(json.dumps(schema), "bench")
    frame = _isolated.framing(schema, avro.schema, avro.record)
    present = cast("list[bytes]", values)
    reader = _isolated.IsolatedReader()
    worker_read = _best(lambda: reader.read(frame, present, 60.0))
    reader.close()
    native = _isolated._load_reader()
    in_process_read = _best(lambda: _in_process_read(native, frame, present))
    json_decoder = JsonDecoder()  # the warm-up batch teaches it the types, as in a running pipeline
    json_seconds = _best(lambda: json_decoder.decode(jsons))

    print(f"  fastavro per record (Python dicts only)      {_rate(rows, per_record_fastavro)}   1.0x")
    print(
        f"  AvroDecoder, per-record path (to Arrow)      {_rate(rows, per_record_arrow)}"
        f"  {per_record_fastavro / per_record_arrow:4.1f}x"
    )
    print(
        f"  AvroDecoder, columnar path                   {_rate(rows, columnar_seconds)}"
        f"  {per_record_fastavro / columnar_seconds:4.1f}x"
    )
    print(
        f"  JsonDecoder on the same events as JSON       {_rate(rows, json_seconds)}"
        f"  {per_record_fastavro / json_seconds:4.1f}x"
    )
    print(
        f"  columnar read in-process {in_process_read * 1000:7.1f} ms, through the worker "
        f"{worker_read * 1000:7.1f} ms: the process boundary costs {(worker_read - in_process_read) * 1000:.1f} ms "
        f"({(worker_read - in_process_read) / columnar_seconds:.0%} of the decode)"
    )
    print(f"  worker startup and first 1000 records: {startup * 1000:.0f} ms")
    poisoned = list(values)
    poisoned[len(values) // 3] = present[0][:20]  # one truncated datum
    with AvroDecoder(store) as bisecting:
        with_poison = _best(lambda: bisecting.decode(poisoned), runs=1)
    print(f"  columnar, one truncated record among them    {_rate(rows, with_poison)}  (halving finds it)")
    with AvroDecoder(store) as first, AvroDecoder(store) as second:
        both = _best(lambda: _in_threads([lambda: first.decode(values), lambda: second.decode(values)]))
    print(
        f"  two decoders in two threads (two tables):    {_rate(2 * rows, both)}"
        f"  {2 * rows / both / (rows / columnar_seconds):4.1f}x one decoder"
    )


def _small_batches(store: SchemaStore) -> None:
    schema_id = store.register("bench-small-value", Schema(json.dumps(ORDER))).schema_id
    rnd = random.Random(5)
    values = _framed(schema_id, ORDER, [order(i, rnd) for i in range(max(SMALL_BATCHES))])
    print("\nsmall batches, ms per batch (where the columnar path starts to pay):")
    print(f"  {'records':>8} {'per-record':>11} {'columnar':>9}")
    with AvroDecoder(store, columnar_min_rows=2**62) as per_record, AvroDecoder(store, columnar_min_rows=1) as columnar:
        for size in SMALL_BATCHES:
            batch = values[:size]
            slow = _best(lambda batch=batch: per_record.decode(batch), runs=5)  # type: ignore[misc]
            fast = _best(lambda batch=batch: columnar.decode(batch), runs=5)  # type: ignore[misc]
            print(f"  {size:>8} {slow * 1000:>11.2f} {fast * 1000:>9.2f}")


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the poisoned batch's fallback warnings are expected here
    with tempfile.TemporaryDirectory() as directory:
        engine = sa.create_engine(f"sqlite:///{Path(directory) / 'catalog.db'}")
        store = SchemaStore(engine)
        rnd = random.Random(1)
        _avro_scenario("order events", store, ORDER, [order(i, rnd) for i in range(EVENTS)])
        _avro_scenario("wide order events", store, WIDE_ORDER, [wide_order(i, rnd) for i in range(WIDE_EVENTS)])
        _small_batches(store)
        engine.dispose()


if __name__ == "__main__":
    main()
