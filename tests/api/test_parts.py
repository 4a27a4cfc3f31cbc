"""The pieces under the API, without a broker: lag arithmetic, the commit histogram, the table config store."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from pyiceberg.catalog.sql import SqlCatalog

from tableflow import offsets as om
from tableflow.config import TableSettings
from tableflow.ingest.status import Durations, PartitionProgress, table_progress
from tableflow.tables_store import TableExistsError, TableStore


def test_lag_runs_from_the_tables_position_or_the_low_watermark(tmp_path: Path) -> None:
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=(tmp_path / "w").as_uri())
    catalog.create_namespace("kafka")
    table = catalog.create_table(
        "kafka.t",
        schema=pa.schema([pa.field("x", pa.int64())]),
        properties={om.INITIAL_OFFSETS_PROPERTY: om.encode({"t": {0: 5, 1: 2}})},
    )
    progress = table_progress(table, "t", {0: (0, 9), 1: (4, 10), 2: (3, 7)})
    assert progress.partitions == [
        PartitionProgress(0, 5, 9, 4),
        PartitionProgress(1, 2, 10, 6),  # records below the low watermark are gone: not lag
        PartitionProgress(2, None, 7, 4),  # nothing committed: everything still in the topic
    ]
    assert (progress.lag, progress.last_snapshot_id, progress.last_commit_at) == (14, None, None)

    unknown = table_progress(table, "t", None)  # Kafka did not answer
    assert unknown.lag is None
    assert [(p.committed_offset, p.lag) for p in unknown.partitions] == [(5, None), (2, None)]
    assert table_progress(None, "t", {0: (0, 3)}).partitions == [PartitionProgress(0, None, 3, 3)]


def test_commit_durations_are_cumulative_prometheus_buckets() -> None:
    durations = Durations()
    for seconds in (0.005, 0.01, 0.3, 100.0):
        durations.observe(seconds)
    buckets = dict(durations.cumulative())
    assert (buckets["0.01"], buckets["0.25"], buckets["0.5"], buckets["60.0"], buckets["+Inf"]) == (2, 2, 3, 3, 4)
    assert durations.sum == pytest.approx(100.315)


def test_the_store_keeps_what_the_caller_set(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/state.db")
    store = TableStore(engine)
    orders = TableSettings(topic="orders", format="raw")
    store.insert(orders)
    with pytest.raises(TableExistsError):
        store.insert(orders)
    store.update(TableSettings(topic="orders", format="raw", commit_interval_s=2))
    store.set_paused("kafka.orders", True)
    store.insert(TableSettings(topic="clicks", table="web.clicks"))

    again = TableStore(engine)  # as after a restart
    entries = {entry.settings.identifier: entry for entry in again.entries()}
    assert set(entries) == {"kafka.orders", "web.clicks"}
    assert entries["kafka.orders"].paused and not entries["web.clicks"].paused
    assert entries["kafka.orders"].settings.model_dump(exclude_unset=True) == {
        "topic": "orders",
        "table": "kafka.orders",  # pinned, so a change of naming rules never renames a table
        "format": "raw",
        "commit_interval_s": 2.0,
    }
    again.delete("web.clicks")
    assert [entry.settings.identifier for entry in again.entries()] == ["kafka.orders"]


def test_a_stored_config_that_no_longer_validates_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/state.db")
    store = TableStore(engine)
    store.insert(TableSettings(topic="good", format="raw"))
    with engine.begin() as conn:
        stale = '{"topic": "old", "gone": 1}'  # written by a version that had a field this one does not
        conn.execute(sa.text("INSERT INTO tableflow_tables VALUES ('kafka.old', :config, false)"), {"config": stale})
    assert [entry.settings.identifier for entry in store.entries()] == ["kafka.good"]
    assert "kafka.old no longer validates" in caplog.text
