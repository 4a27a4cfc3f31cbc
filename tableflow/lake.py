"""Opening the Iceberg catalog and the state database that sits beside it.

The embedded default is a SQLite catalog plus a file warehouse under ``data_dir``. Tableflow's own state
(embedded Schema Registry, API-created tables) lives in the catalog's database when the catalog is SQL, so one
database backs everything; with a non-SQL catalog it lives in ``data_dir/state.db``.
"""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.catalog.sql import SqlCatalog
from sqlalchemy import Engine, create_engine, event

from tableflow.config import Settings
from tableflow.errors import ConfigError


def embedded_catalog_properties(data_dir: Path) -> dict[str, str]:
    root = data_dir.resolve()
    (root / "warehouse").mkdir(parents=True, exist_ok=True)
    return {"type": "sql", "uri": f"sqlite:///{root}/catalog.db", "warehouse": (root / "warehouse").as_uri()}


def open_catalog(settings: Settings) -> Catalog:
    """Load the configured pyiceberg catalog (embedded SQLite when ``catalog.properties`` is empty)."""
    properties = dict(settings.catalog.properties) or embedded_catalog_properties(settings.data_dir)
    try:
        catalog = load_catalog(settings.catalog.name, **properties)
    except (ValueError, NotImplementedError) as exc:
        raise ConfigError(f"catalog: cannot load catalog from catalog.properties: {exc}") from exc
    if isinstance(catalog, SqlCatalog) and catalog.engine.dialect.name == "sqlite":
        _tune_sqlite(catalog.engine)
    return catalog


def _tune_sqlite(engine: Engine) -> None:
    """Wait for locks instead of failing: several threads and processes share one SQLite file."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.close()

    engine.dispose()


def state_engine(settings: Settings, catalog: Catalog) -> Engine:
    """The database for Tableflow's own state: the catalog's when it is SQL, else ``data_dir/state.db``."""
    if isinstance(catalog, SqlCatalog):
        return catalog.engine
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{settings.data_dir.resolve()}/state.db")
    _tune_sqlite(engine)
    return engine
