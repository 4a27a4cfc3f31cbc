"""Iceberg REST catalog server, mounted at ``/iceberg`` in the service's app.

Engines (Trino, Spark, Flink, DuckDB, pyiceberg) point their REST catalog ``uri`` at ``http://host:8181/iceberg``
and see every table in the catalog database, including the ones Tableflow ingests.
"""

from __future__ import annotations

from fastapi import FastAPI
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog

from api.auth import Authenticator
from catalog.errors import install_error_handlers
from catalog.routes import build_router
from catalog.store import CatalogStore
from tableflow.config import Settings
from tableflow.errors import ConfigError


def create_catalog_app(catalog: Catalog, settings: Settings) -> FastAPI:
    """The REST catalog as an ASGI app over ``catalog``, which must be the SQL catalog the pipeline uses."""
    if not isinstance(catalog, SqlCatalog):
        raise ConfigError(
            "the REST catalog serves a SQL catalog, but catalog.properties loads a "
            f"{type(catalog).__name__}; set catalog.properties.type: sql (or leave catalog.properties empty "
            "for the embedded one), or point engines at that catalog directly"
        )
    app = FastAPI(title="Tableflow Iceberg REST catalog", openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.include_router(build_router(CatalogStore(catalog, settings), Authenticator(settings.auth), catalog.name))
    return app


__all__ = ["create_catalog_app"]
