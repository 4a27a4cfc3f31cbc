"""A columnar Avro reader in a worker process, where a hang or a panic costs a timeout instead of the service.

The columnar reader (polars-avro's arrow-rs core) is fast but not safe on untrusted bytes: a datum with bytes
left over makes it loop forever at 100% CPU, some unions make it panic. So it runs in a long-lived worker
started with ``spawn`` (the parent has librdkafka threads, which a fork would copy in an unknown state). The
parent sends an Avro object container file and gets Arrow IPC back, or an error, or nothing within the
timeout, in which case it kills the worker and starts another on the next call.

The worker never outlives the parent: it exits on EOF of its pipe, checks between requests whether the parent
is still its parent, and arms a real-time timer with the default SIGALRM action (terminate) around each read,
so even a hang that never releases the GIL ends.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import struct
import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from io import BytesIO
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import BinaryIO

import pyarrow as pa

logger = logging.getLogger(__name__)

_STARTUP_SECONDS = 60.0  # importing polars in a fresh interpreter on a busy machine
_GRACE_SECONDS = 2.0  # the worker's own timer fires this long after the parent gave up on it
_PARENT_CHECK_SECONDS = 1.0
_BATCH_ROWS = 1 << 16
_OK = b"ok"


class ReadFailed(Exception):
    """The container could not be read columnar (reader error, panic, timeout, a dead worker)."""


class ReadTimedOut(ReadFailed):
    """The reader did not answer in time, so its worker was killed: most likely it was spinning."""


class IsolatedReader:
    """Reads Avro object container files into Arrow tables in one worker process, one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._finalizer: weakref.finalize[[BaseProcess, Connection], IsolatedReader] | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id, None while no worker runs."""
        return None if self._process is None else self._process.pid

    def read(self, container: bytes, timeout: float) -> pa.Table:
        """The container's rows as Arrow (as the reader returns them); ReadFailed says why not."""
        with self._lock:
            conn = self._connection()
            try:
                conn.send_bytes(struct.pack("!d", timeout + _GRACE_SECONDS))
                conn.send_bytes(container)
                if not conn.poll(timeout):
                    self._stop()
                    raise ReadTimedOut(f"the columnar reader did not finish within {timeout:.1f} s")
                status = conn.recv_bytes()
                if status != _OK:
                    raise ReadFailed(status.decode(errors="replace"))
                payload = conn.recv_bytes()
            except (EOFError, OSError) as exc:
                self._stop()
                raise ReadFailed(f"the columnar reader's process died ({exc!r})") from exc
        return pa.ipc.open_stream(payload).read_all()

    def close(self) -> None:
        """Stop the worker (idempotent); the next ``read`` would start a new one."""
        with self._lock:
            self._stop()

    def _connection(self) -> Connection:
        if self._conn is not None:
            return self._conn
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(target=_serve, args=(theirs, os.getpid()), name="tableflow-avro-reader", daemon=True)
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        self._finalizer = weakref.finalize(self, _terminate, process, ours)
        try:
            ready = ours.poll(_STARTUP_SECONDS) and ours.recv_bytes() == _OK
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._stop()
            raise ReadFailed(f"the columnar reader's process did not start within {_STARTUP_SECONDS:.0f} s")
        logger.debug("started columnar Avro reader process %s", process.pid)
        return ours

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once, also at interpreter exit if close() was never called
        self._process = self._conn = self._finalizer = None


def _terminate(process: BaseProcess, conn: Connection) -> None:
    conn.close()  # a worker waiting for a request sees EOF and exits by itself
    process.join(timeout=1.0)
    if process.is_alive():
        process.kill()
        process.join()
    process.close()


def _serve(conn: Connection, parent: int) -> None:
    """The worker's loop: container in, Arrow IPC stream out, until the pipe closes or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the pipe
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the read timer's expiry terminates the worker
    import polars_avro  # noqa: F401 - load polars before saying ready, so startup never eats a read's timeout

    conn.send_bytes(_OK)
    while True:
        while not conn.poll(_PARENT_CHECK_SECONDS):
            if os.getppid() != parent:
                return
        try:
            (limit,) = struct.unpack("!d", conn.recv_bytes())
            container = conn.recv_bytes()
        except EOFError:
            return
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            buffer = _read(container)
        except BaseException as exc:  # pyo3's PanicException derives from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            conn.send_bytes(f"{type(exc).__name__}: {exc}".encode())
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send_bytes(_OK)
        conn.send_bytes(buffer)


def _read(container: bytes) -> pa.Buffer:
    from polars_avro._avro_rs import AvroSource

    stream = BytesIO(container)

    def rewound() -> AbstractContextManager[BinaryIO]:
        stream.seek(0)
        return nullcontext(stream)

    source = AvroSource([rewound], False, False)
    schema = pa.record_batch(source.schema()).schema
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in source.batch_iter(_BATCH_ROWS, None):
            writer.write_batch(pa.record_batch(batch))
    return sink.getvalue()
