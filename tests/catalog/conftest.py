"""Catalog fixtures: the backing SQL catalog, the REST catalog served over real HTTP, pyiceberg clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.rest import RestCatalog

from tableflow.config import Settings
from tableflow.lake import open_catalog
from tests.catalog.server import serve, service_app


@dataclass
class CatalogServer:
    """A running service: ``uri`` is what engines are configured with."""

    base_url: str
    settings: Settings
    backing: Catalog

    @property
    def uri(self) -> str:
        return f"{self.base_url}/iceberg"

    def client(self, **properties: str) -> RestCatalog:
        return RestCatalog("lake", uri=self.uri, **properties)

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.uri, timeout=30, **kwargs)


StartServer = Callable[..., CatalogServer]


@pytest.fixture
def start_server(data_dir: Path) -> Iterator[StartServer]:
    """Start a catalog server with settings overrides; every server is stopped at teardown."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> CatalogServer:
            settings = Settings(data_dir=data_dir, **overrides)
            backing = open_catalog(settings)
            stack.callback(backing.close)
            base_url = stack.enter_context(serve(service_app(backing, settings)))
            return CatalogServer(base_url, settings, backing)

        yield start


@pytest.fixture
def server(start_server: StartServer) -> CatalogServer:
    return start_server()


@pytest.fixture
def rest(server: CatalogServer) -> Iterator[RestCatalog]:
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def http(server: CatalogServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client
