"""DuckDB 1.4 with its iceberg extension, attached to the served catalog the way users attach it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from tests.catalog.conftest import CatalogServer
from tests.catalog.server import duckdb_attach
from tests.ingest import ingest_json


@pytest.fixture
def lake(server: CatalogServer) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb_attach(server.uri)
    try:
        yield con
    finally:
        con.close()


def test_duckdb_reads_an_ingested_table(
    server: CatalogServer, lake: duckdb.DuckDBPyConnection, make_topic: Any, kafka_settings: dict[str, Any]
) -> None:
    ingest_json(server.backing, kafka_settings, make_topic(), "kafka.orders", 12, server.settings.data_dir)
    count, topics, last = lake.execute(
        "SELECT count(*), count(DISTINCT _kafka_topic), max(_kafka_offset) FROM lake.kafka.orders"
    ).fetchone()  # type: ignore[misc]
    assert (count, topics, last) == (12, 1, 11)


def test_duckdb_creates_and_inserts_pyiceberg_reads_back(
    server: CatalogServer, lake: duckdb.DuckDBPyConnection
) -> None:
    lake.execute("CREATE SCHEMA lake.duck")
    lake.execute("CREATE TABLE lake.duck.events (id INTEGER, kind VARCHAR)")
    lake.execute("INSERT INTO lake.duck.events VALUES (1, 'click'), (2, 'view'), (3, 'click')")
    lake.execute("INSERT INTO lake.duck.events VALUES (4, 'buy')")
    assert lake.execute("SELECT count(*) FROM lake.duck.events").fetchone() == (4,)

    client = server.client()
    table = client.load_table("duck.events")
    assert sorted(table.scan().to_arrow()["id"].to_pylist()) == [1, 2, 3, 4]
    assert len(table.metadata.snapshots) == 2
    client.close()
