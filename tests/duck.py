"""DuckDB with the iceberg extension from the ``duckdb-ext-*`` wheels (no network needed)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest


def iceberg_connection() -> duckdb.DuckDBPyConnection:
    try:
        import duckdb_ext
    except ImportError:
        pytest.skip("duckdb-ext-iceberg is not installed; pip install -e '.[dev]'")
    directory = next(Path(root) / "extensions" for root in duckdb_ext.__path__ if (Path(root) / "extensions").is_dir())
    con = duckdb.connect()
    con.execute(f"SET extension_directory='{directory}'")
    con.execute("LOAD iceberg")
    return con
