"""Bad records among good ones: exactly the bad rows become errors, the rest decodes, nothing hangs.

Also the columnar reader's worker process: the two paths agree on real events, ``close()`` stops the worker,
a hang is cut off by the timeout, and a worker whose parent died exits by itself.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tableflow.config import SchemaRegistrySettings
from tableflow.errors import DecodeError, SchemaError
from tableflow.ingest.decode.avro import AvroDecoder
from tableflow.schema.registry import RemoteRegistry
from tableflow.schema.store import SchemaStore
from tests.decode.conftest import Serialize
from tests.decode.orders import ORDER, order

EVENTS = 2000


@pytest.fixture(scope="module")
def orders(avro_values: Serialize) -> list[bytes]:
    rnd = random.Random(7)
    return avro_values("orders", ORDER, [order(i, rnd) for i in range(EVENTS)])


def _poisoned(orders: list[bytes], json_schema_values: Serialize) -> tuple[list[bytes | None], dict[int, str]]:
    """The events with poison pills at known rows, and a phrase each row's error must contain."""
    good = orders[10]
    header, datum = good[:5], good[5:]
    json_record = json_schema_values("json-on-avro", {"type": "object"}, [{"a": 1}])[0]
    values: list[bytes | None] = list(orders)
    poison = {
        1: (random.Random(1).randbytes(40), "wrong magic byte 0x"),
        2: (b"\x00" + (2**31 - 1).to_bytes(4, "big") + datum, "schema id 2147483647 is not registered"),
        3: (header + datum[: len(datum) // 2], "Avro datum truncated"),
        5: (b"\x01" + good[1:], "wrong magic byte 0x01"),
        6: (b"", "empty value"),
        7: (json_record, "is a JSON schema, but this table's format is avro"),
        9: (header + b"\xff\xff\xff\xff\x0f" + datum, "Avro datum"),  # a string 2^31 bytes long
        11: (b"\x00\x00\x01", "shorter than the Confluent wire format's 5-byte header"),
    }
    for row, (value, _) in poison.items():
        values[row] = value
    values[4] = good + b"\x00\x01\x02"  # bytes after the datum: ignored, as Confluent's deserializer does
    values[8] = None  # a tombstone
    return values, {row: phrase for row, (_, phrase) in poison.items()}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["columnar", "per_record"])
def test_exactly_the_poison_pills_fail(
    path: str, orders: list[bytes], json_schema_values: Serialize, store: SchemaStore, request: pytest.FixtureRequest
) -> None:
    decoder: AvroDecoder = request.getfixturevalue(path)
    values, phrases = _poisoned(orders, json_schema_values)

    decoded = decoder.decode(values)

    assert {error.row: str(error.error) for error in decoded.errors}.keys() == phrases.keys()
    for error in decoded.errors:
        assert isinstance(error.error, DecodeError)
        assert phrases[error.row] in str(error.error), str(error.error)
    events, tombstones = decoded.parts
    assert list(tombstones.rows) == [8]
    good_rows = [row for row in range(EVENTS) if row not in phrases and row != 8]
    assert list(events.rows) == good_rows
    clean = AvroDecoder(store, columnar_min_rows=2**62).decode([orders[10] if r == 4 else orders[r] for r in good_rows])
    assert events.table.equals(clean.parts[0].table)


def test_trailing_bytes_after_the_last_datum_do_not_hang_the_reader(
    avro_values: Serialize, columnar: AvroDecoder, caplog: pytest.LogCaptureFixture
) -> None:
    """Measured: the reader spins forever on bytes left after the last row if asked for another batch."""
    counter = {"type": "record", "name": "Counter", "fields": [{"name": "n", "type": "long"}]}
    values: list[bytes | None] = list(avro_values("counters", counter, [{"n": n} for n in range(EVENTS)]))
    values[-1] = values[-1] + b"\x00\x01"  # type: ignore[operator]

    decoded = columnar.decode(values)

    assert decoded.errors == [] and not _fallbacks(caplog)  # read columnar, trailing bytes ignored
    assert decoded.parts[0].table.column("n").to_pylist() == list(range(EVENTS))


def test_a_read_that_times_out_is_killed_and_the_schema_decoded_record_by_record(
    orders: list[bytes], store: SchemaStore, caplog: pytest.LogCaptureFixture
) -> None:
    values: list[bytes | None] = list(orders[:10])
    expected = AvroDecoder(store, columnar_min_rows=2**62).decode(values).parts[0].table
    workers = _workers()
    with AvroDecoder(store, columnar_min_rows=1, timeout_seconds=-1.0) as decoder:  # no time at all
        decoded = decoder.decode(values)

        assert decoded.errors == [] and decoded.parts[0].table.equals(expected)
        assert decoder.reader_pid is None and _workers() == workers  # the worker was killed
        assert "did not finish within" in caplog.text and "one by one for" in caplog.text
        assert decoder.decode(values).parts[0].table.equals(expected)
        assert decoder.reader_pid is None  # paused: no new worker for this schema for a while


def test_columnar_and_per_record_paths_agree(
    orders: list[bytes], columnar: AvroDecoder, per_record: AvroDecoder, caplog: pytest.LogCaptureFixture
) -> None:
    values: list[bytes | None] = list(orders)

    by_columns, by_records = columnar.decode(values), per_record.decode(values)

    assert not _fallbacks(caplog)  # no fallback: the columnar path did the work
    assert by_columns.errors == by_records.errors == []
    assert by_columns.parts[0].table.schema == by_records.parts[0].table.schema
    assert by_columns.parts[0].table.equals(by_records.parts[0].table)
    assert by_columns.parts[0].table.column("customer").type == pa.struct(
        [("id", pa.int64()), ("country", pa.string())]
    )


def test_close_stops_the_worker(orders: list[bytes], store: SchemaStore) -> None:
    decoder = AvroDecoder(store, columnar_min_rows=1)
    decoder.decode(list(orders[:5]))
    pid = decoder.reader_pid
    assert pid is not None and _alive(pid)

    decoder.close()

    assert decoder.reader_pid is None
    assert not _alive(pid)
    assert decoder.decode(list(orders[:5])).parts[0].table.num_rows == 5  # a closed decoder starts a new one
    decoder.close()


_PARENT = """
import pyarrow as pa
from tableflow.ingest.decode._isolated import IsolatedReader, framing

reader = IsolatedReader()
table = reader.read(framing("long", pa.schema([("value", pa.int64())]), False), [b"\\0\\0\\0\\0\\1\\2"], 10.0)
assert table.column("value").to_pylist() == [1]
print(reader.pid, flush=True)
input()  # then exit without closing the reader, unless killed first
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("end", ["killed", "exits"])
def test_the_worker_does_not_outlive_its_parent(end: str) -> None:
    """The parent holds librdkafka and may be SIGKILLed, or exit without closing its decoders."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert parent.stdout is not None and parent.stdin is not None
    worker = int(parent.stdout.readline())
    assert _alive(worker)

    if end == "killed":
        parent.kill()
    else:
        parent.stdin.write(b"\n")
        parent.stdin.flush()
    assert parent.wait(timeout=30) == (-9 if end == "killed" else 0)

    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)


def test_an_unreachable_registry_fails_the_batch(orders: list[bytes]) -> None:
    """The pipeline retries a batch when the registry is down, rather than dead-lettering every record."""
    registry = RemoteRegistry(SchemaRegistrySettings(url="http://127.0.0.1:9"))  # the discard port: refused
    with AvroDecoder(registry) as decoder, pytest.raises(SchemaError, match="unreachable"):
        decoder.decode(orders[:3])


def _fallbacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The decoders' warnings: each one means a columnar read failed."""
    return [r for r in caplog.records if r.name.startswith("tableflow.ingest") and r.levelno >= logging.WARNING]


def _workers() -> set[int]:
    """The live columnar reader workers this process started."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            pid = int(entry.name)
        except (ValueError, OSError):
            continue
        if b"tableflow.ingest.decode._isolated" in command and _parent(pid) == os.getpid() and _alive(pid):
            found.add(pid)
    return found


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie): only its parent can reap it."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"
