"""Two committers of one table racing on a real SQLite catalog: a lost race must neither drop the winner's
positions from the offset map nor append rows the winner already committed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from tableflow import offsets as om
from tableflow.config import TableSettings
from tableflow.errors import FencedError
from tableflow.ingest.buffer import Buffer
from tableflow.ingest.commit import Committer
from tableflow.ingest.records import MessageBatch

TOPIC = "races"


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path / 'catalog.db'}", warehouse=f"file://{tmp_path}")


def _committer(catalog: SqlCatalog) -> Committer:
    return Committer(catalog, TableSettings(topic=TOPIC, table="kafka.races"))


def _buffer(partition: int, start: int, count: int) -> Buffer:
    """``count`` records of ``partition`` from offset ``start``, the table holding ``start`` (None at 0)."""
    offsets = list(range(start, start + count))
    batch = MessageBatch(
        TOPIC, [partition] * count, offsets, [0] * count, [None] * count, [b""] * count, [None] * count
    )
    rows = batch.metadata().append_column("v", pa.array(offsets, pa.int64()))
    buffer = Buffer()
    buffer.assign(partition, start or None)
    buffer.add([rows], None, {partition: start + count}, count)
    return buffer


def _committers(catalog: SqlCatalog) -> tuple[Committer, Committer]:
    """Two committers of a table whose schema already fits the rows, so a lost race changes no schema (a
    schema change makes pyiceberg's own retry give up, which would hide what these tests are about)."""
    a, b = _committer(catalog), _committer(catalog)
    a.commit(_buffer(partition=2, start=0, count=1))
    return a, b


def _racing(loser: Committer, winner: Committer, buffer: Buffer) -> None:
    """Make ``winner`` commit ``buffer`` right after ``loser`` loads the table for its next commit attempt."""
    load: Callable[[], Table] = loser.ensure_table
    pending = [buffer]

    def load_then_lose() -> Table:
        table = load()
        if pending:
            winner.commit(pending.pop())
        return table

    loser.ensure_table = load_then_lose  # type: ignore[method-assign]


def test_a_lost_race_keeps_the_winners_positions(catalog: SqlCatalog) -> None:
    a, b = _committers(catalog)
    _racing(a, b, _buffer(partition=1, start=0, count=7))

    a.commit(_buffer(partition=0, start=0, count=5))

    table = catalog.load_table("kafka.races")
    assert om.table_offsets(table) == {TOPIC: {0: 5, 1: 7, 2: 1}}
    assert table.scan().to_arrow().num_rows == 13


def test_a_lost_race_on_the_same_partition_is_fenced_not_appended_twice(catalog: SqlCatalog) -> None:
    a, b = _committers(catalog)
    _racing(a, b, _buffer(partition=0, start=0, count=5))

    with pytest.raises(FencedError):
        a.commit(_buffer(partition=0, start=0, count=5))

    table = catalog.load_table("kafka.races")
    assert om.table_offsets(table) == {TOPIC: {0: 5, 2: 1}}
    assert sorted(table.scan().to_arrow().filter(pc.field("_kafka_partition") == 0)["v"].to_pylist()) == list(range(5))
