"""pyiceberg's RestCatalog against the served catalog: the full table lifecycle and concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    ForbiddenError,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from tests.catalog.conftest import CatalogServer, StartServer
from tests.catalog.server import ingested_table

ROWS = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])


def rows(*ids: int) -> pa.Table:
    return pa.table({"id": list(ids), "name": [f"n{i}" for i in ids]}, schema=ROWS)


def test_namespace_lifecycle(rest: RestCatalog) -> None:
    rest.create_namespace("analytics", {"owner": "data"})
    rest.create_namespace(("analytics", "daily"))
    with pytest.raises(NamespaceAlreadyExistsError):
        rest.create_namespace("analytics")

    assert ("analytics",) in rest.list_namespaces()
    assert rest.list_namespaces("analytics") == [("analytics", "daily")]
    assert rest.namespace_exists(("analytics", "daily"))
    assert not rest.namespace_exists("nope")

    properties = rest.load_namespace_properties("analytics")
    assert properties["owner"] == "data"
    assert properties["location"].endswith("/warehouse/analytics")

    summary = rest.update_namespace_properties("analytics", removals={"owner", "absent"}, updates={"tier": "gold"})
    assert (summary.updated, summary.removed, summary.missing) == (["tier"], ["owner"], ["absent"])
    assert "owner" not in rest.load_namespace_properties("analytics")

    with pytest.raises(NamespaceNotEmptyError):
        rest.drop_namespace("analytics")
    rest.drop_namespace(("analytics", "daily"))
    rest.drop_namespace("analytics")
    with pytest.raises(NoSuchNamespaceError):
        rest.load_namespace_properties("analytics")


def test_table_lifecycle(rest: RestCatalog, server: CatalogServer) -> None:
    rest.create_namespace("shop")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "name", StringType(), required=False),
        NestedField(3, "at", TimestamptzType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="name"))
    table = rest.create_table("shop.orders", schema=schema, partition_spec=spec, properties={"k": "v"})
    assert table.spec().fields[0].name == "name"
    with pytest.raises(TableAlreadyExistsError):
        rest.create_table("shop.orders", schema=schema)

    data = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "name": ["a", "b"],
            "at": pa.array([1_700_000_000_000_000, 1_700_086_400_000_000], pa.timestamp("us", tz="UTC")),
        }
    )
    table.append(data)
    table.append(data)
    assert rest.load_table("shop.orders").scan().to_arrow().num_rows == 4

    with table.update_schema() as update:
        update.add_column("note", StringType())
    loaded = rest.load_table("shop.orders")
    assert loaded.schema().find_field("note").field_id == 4
    assert len(loaded.metadata.snapshots) == 2

    with loaded.transaction() as tx:
        tx.set_properties(extra="1")
        tx.remove_properties("k")
    assert rest.load_table("shop.orders").properties.get("extra") == "1"
    assert "k" not in rest.load_table("shop.orders").properties

    rest.rename_table("shop.orders", "shop.orders_v2")
    assert rest.list_tables("shop") == [("shop", "orders_v2")]
    with pytest.raises(NoSuchTableError):
        rest.load_table("shop.orders")

    metadata_location = rest.load_table("shop.orders_v2").metadata_location
    rest.drop_table("shop.orders_v2")
    assert not rest.table_exists("shop.orders_v2")
    registered = rest.register_table("shop.restored", metadata_location)
    assert registered.scan().to_arrow().num_rows == 4
    with pytest.raises(TableAlreadyExistsError):
        rest.register_table("shop.restored", metadata_location)

    rest.purge_table("shop.restored")
    assert not rest.table_exists("shop.restored")
    data_files = list((server.settings.data_dir / "warehouse" / "shop" / "orders").rglob("*.parquet"))
    assert data_files == []
    rest.drop_namespace("shop")


def test_staged_create_writes_nothing_until_commit(rest: RestCatalog, server: CatalogServer) -> None:
    rest.create_namespace("stage")
    tx = rest.create_table_transaction("stage.events", schema=ROWS)
    table_dir = Path(server.settings.data_dir) / "warehouse" / "stage" / "events"
    assert not rest.table_exists("stage.events")
    assert not table_dir.exists()
    tx.append(rows(1, 2, 3))
    tx.commit_transaction()
    assert rest.load_table("stage.events").scan().to_arrow().num_rows == 3


def test_lost_race_answers_commit_failed_and_retry_keeps_both(rest: RestCatalog, server: CatalogServer) -> None:
    rest.create_namespace("race")
    # No client-side retries, so the conflict surfaces here instead of inside pyiceberg's retry loop.
    rest.create_table("race.t", schema=ROWS, properties={"commit.retry.num-retries": "0"})
    other = server.client()
    mine = rest.load_table("race.t")
    theirs = other.load_table("race.t")

    mine.append(rows(1))
    with pytest.raises(CommitFailedException):
        theirs.append(rows(2))
    theirs.refresh()
    theirs.append(rows(2))

    final = rest.load_table("race.t")
    assert sorted(final.scan().to_arrow()["id"].to_pylist()) == [1, 2]
    assert len(final.metadata.snapshots) == 2
    other.close()


def test_concurrent_writers_lose_no_snapshot(server: CatalogServer) -> None:
    setup = server.client()
    setup.create_namespace("busy")
    setup.create_table("busy.t", schema=ROWS, properties={"commit.retry.num-retries": "0"})
    writers, appends = 4, 3
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        client = server.client()
        try:
            for n in range(appends):
                for _attempt in range(50):
                    table = client.load_table("busy.t")
                    try:
                        table.append(rows(worker * 100 + n))
                        break
                    except CommitFailedException:
                        continue
                else:
                    raise AssertionError(f"writer {worker} did not get append {n} in after 50 attempts")
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    final = setup.load_table("busy.t")
    expected = sorted(w * 100 + n for w in range(writers) for n in range(appends))
    assert sorted(final.scan().to_arrow()["id"].to_pylist()) == expected
    assert len(final.metadata.snapshots) == writers * appends
    setup.close()


def test_ingested_tables_are_read_only_by_default(rest: RestCatalog, server: CatalogServer) -> None:
    ingested_table(server.backing, "kafka.orders", "orders")
    table = rest.load_table("kafka.orders")
    assert table.scan().to_arrow().num_rows == 10
    with pytest.raises(ForbiddenError, match="ingested_tables_writable"):
        table.append(table.scan().to_arrow())
    with pytest.raises(ForbiddenError):
        rest.drop_table("kafka.orders")
    with pytest.raises(ForbiddenError):
        rest.rename_table("kafka.orders", "kafka.elsewhere")
    assert rest.load_table("kafka.orders").scan().to_arrow().num_rows == 10


def test_ingested_tables_writable_when_configured(start_server: StartServer) -> None:
    server = start_server(rest_catalog={"ingested_tables_writable": True})
    ingested_table(server.backing, "kafka.orders", "orders")
    client = server.client()
    table = client.load_table("kafka.orders")
    table.append(table.scan().to_arrow())
    assert client.load_table("kafka.orders").scan().to_arrow().num_rows == 20
    client.close()
