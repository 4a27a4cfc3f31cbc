"""The service's one FastAPI app: health, management API, metrics, Schema Registry, Iceberg REST catalog, ingestion.

Ingestion workers start with the app and stop (committing what they buffered) when it shuts down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, params
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pyiceberg.catalog.sql import SqlCatalog

from api.auth import Authenticator, Role
from api.management import install_management
from api.metrics import metrics_router
from api.schema_registry import create_registry_app
from catalog import create_catalog_app
from tableflow.config import Settings
from tableflow.ingest.service import Ingestor
from tableflow.lake import open_catalog, state_engine
from tableflow.schema.registry import RemoteRegistry, SchemaSource
from tableflow.schema.store import SchemaStore

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    catalog = open_catalog(settings)
    store = SchemaStore(state_engine(settings, catalog))
    source: SchemaSource = RemoteRegistry(settings.schema_registry) if settings.schema_registry.url else store
    ingestor = Ingestor(settings, catalog, source)
    auth = Authenticator(settings.auth)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        ingestor.start()
        try:
            yield
        finally:
            await run_in_threadpool(ingestor.stop)

    app = FastAPI(title="Tableflow", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.ingestor = ingestor
    app.state.catalog = catalog

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Readiness: every table's worker is consuming (or deliberately paused)."""
        states = {status.identifier: status.state for status in ingestor.statuses()}
        ready = all(state in ("running", "paused", "suspended") for state in states.values())
        return JSONResponse({"ready": ready, "tables": states}, status_code=200 if ready else 503)

    install_management(app, ingestor, auth)
    app.include_router(metrics_router(ingestor, auth))
    app.mount(
        "/schema-registry",
        create_registry_app(
            store, dependencies=[_depends(auth, "reader")], write_dependencies=[_depends(auth, "writer")]
        ),
    )
    if isinstance(catalog, SqlCatalog):
        app.mount("/iceberg", create_catalog_app(catalog, settings))
    else:
        log.warning("the REST catalog is served for SQL catalogs only; /iceberg is off for this configuration")
    return app


def _depends(auth: Authenticator, role: Role) -> params.Depends:
    return params.Depends(auth.require(role))
