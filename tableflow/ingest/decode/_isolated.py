"""The columnar Avro reader, in a worker process where a hang or a crash costs a timeout instead of the service.

The reader (polars-avro's arrow-rs core, ~20x fastavro per record) is not safe on untrusted bytes. Measured
with polars-avro 0.13: asked for more rows when bytes are left over in a block, it spins forever at 100% CPU
(so it is asked for exactly one batch of exactly the expected rows); unions of several types make polars panic;
and reading through a Python file object it segfaulted on a truncated datum (so it reads files by path).

Framing: the datums of one writer schema go into one block of an Avro object container file whose schema wraps
the writer schema as ``{m: fixed(8), h: fixed(5), v: <writer schema>}``. The block is ``marker + value +
marker + value ...`` where each value is the record as it came from Kafka, Confluent header included: ``m``
reads a random marker, ``h`` the header, ``v`` the datum, so building the block is one ``bytes.join``. A datum
read short or long shifts the next row's ``m``; the worker accepts the result only when there are as many rows
as values and every ``m`` and ``h`` is what was written, so each datum was read exactly to its end (bytes after
the last datum are left unread, as Confluent's deserializer ignores them too). It then casts to the table's
Arrow types and answers in Arrow IPC.

The worker is a fresh interpreter (``python -m`` this module), so none of the parent's state, librdkafka's
threads and locks above all, is copied the way a bare fork would copy it. Not multiprocessing's ``spawn``
either: it re-runs the parent's ``__main__`` module in the child, so a script without an ``if __name__ ==
"__main__"`` guard runs again there (measured: it did, and failed), and any main module's imports cost startup
time. Small messages travel over a socket pair; the container and the Arrow IPC answer go through two memory
files that both processes open by path, which cut the process boundary's cost from 75 ms to 10 ms for 200k
order events compared with sending them through the socket.

The worker never outlives the parent: it exits on EOF of its socket, checks between requests whether the
parent is still its parent, and arms a real-time timer with the default SIGALRM action (terminate) around each
read, so even a hang that never releases the GIL ends.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import IO, TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from tableflow.ingest.decode._wire import HEADER_BYTES

if TYPE_CHECKING:
    from polars_avro._avro_rs import AvroSource

logger = logging.getLogger(__name__)

_STARTUP_SECONDS = 60.0  # importing polars in a fresh interpreter on a busy machine
_GRACE_SECONDS = 2.0  # the worker's own timer fires this long after the parent gave up on it
_PARENT_CHECK_SECONDS = 1.0
_MARKER_BYTES = 8
_REQUEST = struct.Struct("!dQ?")  # timeout, number of values, whether the columns are the record's fields
_OK = b"ok"


class ReadFailed(Exception):
    """The values could not be read columnar (reader error, panic, misread datum, dead worker)."""


class ReadTimedOut(ReadFailed):
    """The reader did not answer in time, so its worker was killed: most likely it was spinning."""


@dataclass(frozen=True)
class Framing:
    """What the worker needs for one writer schema: its container header and the Arrow schema to cast to."""

    container_header: bytes  # magic, metadata (the wrapper schema, null codec), sync marker
    target: bytes  # the table's Arrow schema, serialized
    record: bool  # the columns are the record's fields (else the one column of ``target``)


def framing(writer_schema: Any, target: pa.Schema, record: bool) -> Framing:
    """The framing for ``writer_schema`` (parsed JSON), whose values become a table of ``target``."""
    wrapper = {
        "type": "record",
        "name": "__tableflow_frame",  # no namespace: the writer schema's names resolve as they do standalone
        "fields": [
            {"name": "m", "type": {"type": "fixed", "name": "__tableflow_marker", "size": _MARKER_BYTES}},
            {"name": "h", "type": {"type": "fixed", "name": "__tableflow_header", "size": HEADER_BYTES}},
            {"name": "v", "type": writer_schema},
        ],
    }
    metadata = {b"avro.schema": json.dumps(wrapper).encode(), b"avro.codec": b"null"}
    entries = b"".join(_long(len(k)) + k + _long(len(v)) + v for k, v in metadata.items())
    header = b"Obj\x01" + _long(len(metadata)) + entries + _long(0) + os.urandom(16)
    return Framing(header, target.serialize().to_pybytes(), record)


def _long(value: int) -> bytes:
    """An Avro long: zig-zag, then base-128 varint."""
    encoded = (value << 1) ^ (value >> 63)
    out = bytearray()
    while encoded > 0x7F:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


@dataclass
class _Spool:
    """A file both processes open by ``path``: memory-backed and nameless on Linux (a killed worker leaves
    nothing behind), and read by path because reading a Python file object the reader crashed (segfault) on a
    truncated datum."""

    file: IO[bytes]
    path: str

    @classmethod
    def create(cls, name: str) -> _Spool:
        if hasattr(os, "memfd_create"):  # the worker inherits the descriptor under the same number
            fd = os.memfd_create(f"tableflow-avro-{name}")
            return cls(os.fdopen(fd, "w+b"), f"/proc/self/fd/{fd}")
        file = tempfile.NamedTemporaryFile(prefix=f"tableflow-avro-{name}-")  # noqa: SIM115 - closed by _terminate
        return cls(file, file.name)

    def fd(self) -> int:
        return self.file.fileno()

    def clear(self) -> None:
        self.file.seek(0)
        self.file.truncate()


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    request: _Spool  # the container file the parent writes and the worker reads
    response: _Spool  # the Arrow IPC stream the worker writes and the parent reads


class IsolatedReader:
    """Reads values columnar in one worker process, one request at a time; started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._finalizer: weakref.finalize[[_Worker], IsolatedReader] | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id, None while no worker runs."""
        return None if self._worker is None else self._worker.process.pid

    def read(self, frame: Framing, values: Sequence[bytes], timeout: float) -> pa.Table:
        """``values`` (Confluent-framed, all with the same header) as a table of the framing's target schema.

        ReadFailed says why not; ReadTimedOut when the worker had to be killed.
        """
        marker = os.urandom(_MARKER_BYTES)
        head = _REQUEST.pack(timeout + _GRACE_SECONDS, len(values), frame.record) + marker + values[0][:HEADER_BYTES]
        with self._lock:
            worker = self._start()
            _write_container(worker.request.file, frame.container_header, marker, values)
            try:
                worker.conn.send_bytes(head)
                worker.conn.send_bytes(frame.target)
                if not worker.conn.poll(timeout):
                    self._stop()
                    raise ReadTimedOut(f"the columnar reader did not finish within {timeout:.1f} s")
                status = worker.conn.recv_bytes()
            except (EOFError, OSError) as exc:
                self._stop()
                raise ReadFailed(f"the columnar reader's process died ({exc!r})") from exc
            worker.request.clear()
            if status != _OK:
                raise ReadFailed(status.decode(errors="replace"))
            with pa.OSFile(worker.response.path) as response:  # read into memory: the file is reused
                table = pa.ipc.open_stream(response).read_all()
            worker.response.clear()
        return table

    def start_soon(self) -> None:
        """Start the worker on a thread of its own now (it takes ~0.3 s), so the first ``read`` finds it
        running; a pipeline calls this before joining its consumer group. A failure here is only logged:
        ``read`` tries again and reports it."""

        def start() -> None:
            try:
                with self._lock:
                    self._start()
            except ReadFailed as exc:
                logger.warning("could not start the columnar reader ahead of time: %s", exc)

        threading.Thread(target=start, name="tableflow-avro-reader-start", daemon=True).start()

    def close(self) -> None:
        """Stop the worker (idempotent); the next ``read`` starts a new one."""
        with self._lock:
            self._stop()

    def _start(self) -> _Worker:
        if self._worker is not None:
            return self._worker
        ours, theirs = socket.socketpair()
        request, response = _Spool.create("request"), _Spool.create("response")
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), str(os.getpid()), request.path, response.path],
                stdin=subprocess.DEVNULL,
                pass_fds=[theirs.fileno(), request.fd(), response.fd()],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},  # what the parent imports from
            )
        worker = self._worker = _Worker(process, Connection(ours.detach()), request, response)
        self._finalizer = weakref.finalize(self, _terminate, worker)
        try:
            ready = worker.conn.poll(_STARTUP_SECONDS) and worker.conn.recv_bytes() == _OK
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._stop()
            raise ReadFailed(f"the columnar reader's process did not start within {_STARTUP_SECONDS:.0f} s")
        logger.debug("started columnar Avro reader process %s", process.pid)
        return worker

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once; also runs at interpreter exit if close() never was
        self._worker = self._finalizer = None


def _terminate(worker: _Worker) -> None:
    worker.conn.close()  # a worker waiting for a request sees EOF and exits by itself
    try:
        worker.process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()
    worker.request.file.close()
    worker.response.file.close()


def _serve(conn: Connection, parent: int, request: str, response: str) -> None:
    """The worker's loop: a request in, Arrow IPC out, until the socket closes or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the socket
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the read timer's expiry terminates the worker
    reader = _load_reader()  # before saying ready: startup is not read time
    conn.send_bytes(_OK)
    while True:
        while not conn.poll(_PARENT_CHECK_SECONDS):
            if os.getppid() != parent:
                return
        try:
            head, target = conn.recv_bytes(), conn.recv_bytes()
        except EOFError:
            return
        limit, count, record = _REQUEST.unpack_from(head)
        marker = head[_REQUEST.size : _REQUEST.size + _MARKER_BYTES]
        header = head[_REQUEST.size + _MARKER_BYTES :]
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            target_schema = pa.ipc.read_schema(pa.py_buffer(target))
            table = _read(reader, request, count, marker, header, target_schema, record)
            with pa.OSFile(response, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        except BaseException as exc:  # pyo3's PanicException derives from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            conn.send_bytes(f"{type(exc).__name__}: {exc}".encode())
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send_bytes(_OK)


def _write_container(spool: IO[bytes], container_header: bytes, marker: bytes, values: Sequence[bytes]) -> None:
    """An object container file of one block, ``marker + value + marker + value ...``, framed by the header."""
    block = marker.join(values)
    spool.seek(0)
    spool.truncate()
    for piece in (container_header, _long(len(values)), _long(len(marker) + len(block)), marker, block):
        spool.write(piece)
    spool.write(container_header[-16:])  # the sync marker
    spool.flush()


def _load_reader() -> type[AvroSource]:
    """polars-avro's native reader, loaded without the package, which imports polars: that would cost each
    worker 65 MB and 0.3 s (measured) for nothing, as the reader hands out Arrow data directly."""
    package = importlib.util.find_spec("polars_avro")
    assert package is not None and package.submodule_search_locations is not None, "polars-avro is not installed"
    spec = importlib.machinery.PathFinder.find_spec("polars_avro._avro_rs", list(package.submodule_search_locations))
    assert spec is not None and spec.loader is not None, "polars-avro has no native reader module"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast("type[AvroSource]", module.AvroSource)


def _read(
    reader: type[AvroSource], path: str, count: int, marker: bytes, header: bytes, target: pa.Schema, record: bool
) -> pa.Table:
    """The container at ``path`` read, checked against its framing, and cast to ``target``."""
    # One batch of all rows, and never a second request: measured, with bytes left over after the last row
    # (trailing bytes after the last datum) the reader spins forever when asked for more.
    batch = next(iter(reader([path], False, False).batch_iter(count, None)), None)
    if batch is None:
        raise ReadFailed(f"the reader returned no rows for {count} values")
    raw = pa.record_batch(batch)
    if raw.num_rows != count:
        raise ReadFailed(f"the reader returned {raw.num_rows} rows for {count} values")
    for column, expected in (("m", marker), ("h", header)):
        if not pc.all(pc.equal(raw.column(column), pa.scalar(expected, pa.binary(len(expected))))).as_py():
            raise ReadFailed("a datum was not read exactly to its end: it does not match its writer schema")
    values = raw.column("v")
    table = pa.Table.from_struct_array(values) if record else pa.Table.from_arrays([values], [target.field(0).name])
    return table.cast(target)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])), int(sys.argv[2]), sys.argv[3], sys.argv[4])
