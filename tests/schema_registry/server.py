"""A real uvicorn serving the registry in a thread, mounted the way ``tableflow serve`` mounts it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from api.schema_registry import create_registry_app
from tableflow.schema.store import SchemaStore


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port in a thread; yields its base URL, stops it after."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="registry-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start the registry app")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_registry(store: SchemaStore) -> Iterator[str]:
    """The registry over ``store`` at ``/schema-registry``; yields its URL."""
    app = FastAPI()
    app.mount("/schema-registry", create_registry_app(store))
    with serve(app) as base:
        yield f"{base}/schema-registry"
