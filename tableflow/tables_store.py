"""Table configs created through the management API, persisted in the state database so they survive restarts.

One table, ``tableflow_tables``, written with portable SQLAlchemy Core (SQLite or PostgreSQL, like the
registry's). A row holds the config exactly as the caller gave it (``exclude_unset``), so defaults apply to API
tables the way they apply to tables in the config file, plus whether an operator paused the table.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import ValidationError

from tableflow.config import TableSettings
from tableflow.errors import TableflowError

log = logging.getLogger(__name__)

_metadata = sa.MetaData()
_tables = sa.Table(
    "tableflow_tables",
    _metadata,
    sa.Column("identifier", sa.String(255), primary_key=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
)


class TableExistsError(TableflowError):
    """A table with this identifier is already configured."""


@dataclass(frozen=True)
class StoredTable:
    settings: TableSettings
    paused: bool


class TableStore:
    """API-created table configs; each call is its own transaction, so any thread may use it."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        try:
            _metadata.create_all(engine)
        except sa.exc.DBAPIError:  # another instance created it between our check and our CREATE
            _metadata.create_all(engine)

    def entries(self) -> list[StoredTable]:
        """Every stored config that still validates; one that does not is logged and left out, not fatal."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_tables).order_by(_tables.c.identifier)).all()
        stored = []
        for row in rows:
            try:
                stored.append(StoredTable(TableSettings.model_validate_json(row.config), bool(row.paused)))
            except ValidationError as exc:
                log.error("stored table config %s no longer validates, not ingesting it: %s", row.identifier, exc)
        return stored

    def insert(self, settings: TableSettings) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.insert(_tables).values(identifier=settings.identifier, config=_encode(settings)))
        except sa.exc.IntegrityError as exc:
            raise TableExistsError(f"table {settings.identifier!r} already exists") from exc

    def update(self, settings: TableSettings) -> None:
        self._set(settings.identifier, config=_encode(settings))

    def set_paused(self, identifier: str, paused: bool) -> None:
        self._set(identifier, paused=paused)

    def delete(self, identifier: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.delete(_tables).where(_tables.c.identifier == identifier))

    def _set(self, identifier: str, **values: object) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.update(_tables).where(_tables.c.identifier == identifier).values(**values))


def _encode(settings: TableSettings) -> str:
    """What the caller set, with the identifier pinned so a change of naming rules never renames a table."""
    return json.dumps({**settings.model_dump(mode="json", exclude_unset=True), "table": settings.identifier})
