"""Real HTTP servers for catalog tests and the benchmark: uvicorn on a loopback port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa
import uvicorn
from fastapi import FastAPI
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from catalog import create_catalog_app
from tableflow.config import Settings
from tests.duck import iceberg_connection


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` on 127.0.0.1, a free port; yields ``http://127.0.0.1:PORT``, stops the server after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="catalog-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the catalog test server did not start within 15 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def service_app(catalog: Catalog, settings: Settings) -> FastAPI:
    """The catalog mounted the way the service's app mounts it, so clients use ``.../iceberg``."""
    app = FastAPI()
    app.mount("/iceberg", create_catalog_app(catalog, settings))
    return app


def ingested_table(catalog: Catalog, identifier: str, topic: str, rows: int = 10, **properties: str) -> Table:
    """A table shaped like one the ingest pipeline writes: ``_kafka_*`` columns, managed-table properties."""
    namespace = identifier.rsplit(".", 1)[0]
    catalog.create_namespace_if_not_exists(namespace)
    data = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "name": pa.array([f"name-{i}" for i in range(rows)], pa.string()),
            "_kafka_topic": pa.array([topic] * rows, pa.string()),
            "_kafka_partition": pa.array([0] * rows, pa.int32()),
            "_kafka_offset": pa.array(range(rows), pa.int64()),
            "_kafka_timestamp": pa.array(
                [1_700_000_000_000_000 + i for i in range(rows)], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    table = catalog.create_table(
        identifier,
        schema=data.schema,
        properties={"tableflow.managed": "true", "tableflow.topic": topic, **properties},
    )
    table.append(data)
    return table


def duckdb_attach(uri: str) -> duckdb.DuckDBPyConnection:
    """DuckDB attached to the catalog at ``uri`` as ``lake``."""
    con = iceberg_connection()
    con.execute(f"ATTACH 'warehouse' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none')")
    return con
